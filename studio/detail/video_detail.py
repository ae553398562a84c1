"""`VideoDetail`: a project's training frames (crops, controls, mattes, masks, meshes) ready to lend
detail: it picks each render's frames, warps them onto the render (DIS optical flow, part of it inside
the face, plus the shape warp; Lanczos resampling) and lays their detail bands over the render's low
band (`VideoDetail.apply`)."""
from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

from .choice import (REGIONS, ControlIndex, LenderTrail, frame_atypicality, frame_embeddings, region_columns,
                     soft_nearest)
from .config import REFERENCE_SIZE, SAMPLING, DetailConfig
from .masks import face_hull_masks, feature_masks, region_masks
from .shape import MeshLattice, ShapeModel, shape_field

REGION_REACH = 4.0
"""`VideoDetail.lenders`: the eyes or the mouth are lent by other frames than the face's only where those are
within this many times the nearest frame's (squared, emphasised) control distance: one much further off shows
another moment of the clip."""

REGION_TURN = 5.0
"""`VideoDetail.lenders`: ... and turned no further from the render (yaw or pitch, degrees) than this or the
face's own frames: eyes from a frame turned less than the face's look back at the camera from another head
(d9's yaw sweep read 0.4° less turn without this limit)."""

LATTICES_KEPT = 256
"""`VideoDetail` keeps the `MeshLattice` of this many frames (the last used; about 100 KB each)."""


def _per_frame(masks, crops: np.ndarray, what: str) -> np.ndarray:
    """`masks` as (N, S, S) float32, one per crop of `crops` (N, S, S, 3); ValueError naming `what` otherwise."""
    masks = np.asarray(masks, np.float32)
    if masks.shape != crops.shape[:3]:
        raise ValueError(f"expected {crops.shape[:3]} {what}, got {masks.shape}")
    return masks

class VideoDetail:
    """Training frames (aligned crops at the render size) and their controls, ready to lend detail."""

    def __init__(self, crops: np.ndarray, controls: np.ndarray | None, config: DetailConfig = DetailConfig(),
                 mattes: np.ndarray | None = None, features: np.ndarray | None = None,
                 faces: np.ndarray | None = None, wide_faces: np.ndarray | None = None,
                 landmarks: np.ndarray | None = None, embeddings: np.ndarray | None = None,
                 sources: np.ndarray | None = None, regions: list[np.ndarray] | None = None):
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[1] != crops.shape[2] or not len(crops):
            raise ValueError(f"expected (N, S, S, 3) uint8 crops, got {crops.shape}")
        self.crops = crops.astype(np.uint8, copy=False)
        self.size = int(crops.shape[1])
        if config.sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {sorted(SAMPLING)}, got {config.sampling!r}")
        self.config = config
        scale = self.size / REFERENCE_SIZE
        self._band = config.band_sigma * scale
        self._flow_blur = config.flow_sigma * scale
        self._flow_smooth = config.flow_smooth * scale
        self.mattes = None
        """(N, S, S) float32 person mattes in [0, 1], or None (then every pixel of a frame lends)."""
        if mattes is not None and config.person_only:
            mattes = _per_frame(mattes, crops, "mattes")
            grow = config.matte_grow * crops.shape[1] / REFERENCE_SIZE
            if grow > 0:
                k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(round(grow)) + 1,) * 2)
                mattes = np.stack([cv2.GaussianBlur(cv2.dilate(m, k), (0, 0), grow / 2) for m in mattes])
            self.mattes = mattes
        if sources is not None:   # nothing from past the video's edge (`DetailConfig.frame_edge`)
            sources = _per_frame(sources, crops, "source masks")
            self.mattes = sources if self.mattes is None else self.mattes * sources
        self.features = None
        """(N, S, S) float32 eyes-and-mouth masks of the frames (`feature_masks`), or None: then the
        frames lend their whole detail band everywhere (`DetailConfig.mid_share` is not used)."""
        if features is not None:
            self.features = _per_frame(features, crops, "feature masks")
        self._fine = config.fine_sigma * scale
        self.faces = None
        """(N, S, S) float32 face-hull masks of the frames (`face_hull_masks`) for `face_flow` < 1."""
        if faces is not None:
            self.faces = _per_frame(faces, crops, "face masks")
        self.wide_faces = None
        """(N, S, S) float32 grown face-hull masks of the frames, for `outside_fine_share` < 1 (None: the
        frames lend their finest band everywhere)."""
        if wide_faces is not None:
            self.wide_faces = _per_frame(wide_faces, crops, "wide face masks")
        self._index = None
        if controls is not None:
            if np.ndim(controls) != 2 or len(controls) != len(crops):
                raise ValueError(f"expected ({len(crops)}, C) controls, got {np.shape(controls)}")
            self._index = ControlIndex(controls, config.pose_weight)
            self._pose = np.asarray(controls, np.float64)[:, :2]
        self.landmarks = None
        """(N, P, 2) float32 tracked face meshes of the frames (pixels at `size`), for `shape_share`."""
        self._shape = self._own_shape = None
        self._lattices: OrderedDict[int, MeshLattice] = OrderedDict()   # the last LATTICES_KEPT frames used
        if landmarks is not None and controls is not None and config.shape_share > 0:
            landmarks = np.asarray(landmarks, np.float32)
            if landmarks.ndim != 3 or landmarks.shape[0] != len(crops) or landmarks.shape[2] != 2:
                raise ValueError(f"expected ({len(crops)}, P, 2) landmarks, got {landmarks.shape}")
            try:
                self._shape = ShapeModel(controls, landmarks, config.shape_ridge)
            except ValueError:      # fewer than two frames with a mesh: no shape warp
                self._shape = None
            else:
                self.landmarks = landmarks
                self._own_shape = self._shape.predict(controls).astype(np.float32)
        self.regions = None
        """Control columns of each region (`region_columns`) for `region_match`, or None (off: no named
        controls, no meshes, or `region_match` 0)."""
        self._meshes = None
        if regions is not None and landmarks is not None and controls is not None and config.region_match > 0:
            self.regions = [np.asarray(c, np.int64) for c in regions]
            self._meshes = np.asarray(landmarks, np.float32)
            if self._meshes.ndim != 3 or self._meshes.shape[0] != len(crops):
                raise ValueError(f"expected ({len(crops)}, P, 2) landmarks, got {self._meshes.shape}")
        self.atypicality = None
        """(N,) `frame_atypicality` of the frames from their face `embeddings`, or None (no ArcFace file,
        or `typical_weight` 0): then frames are chosen by control distance alone."""
        if embeddings is not None and config.typical_weight > 0:
            embeddings = np.asarray(embeddings)
            if embeddings.ndim != 2 or embeddings.shape[0] != len(crops):
                raise ValueError(f"expected ({len(crops)}, D) embeddings, got {embeddings.shape}")
            self.atypicality = frame_atypicality(embeddings)
        self._thumbs = None
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        gy, gx = np.mgrid[0:self.size, 0:self.size].astype(np.float32)
        self._grid = (gx, gy)

    @classmethod
    def from_project(cls, project, size: int, controls: str = "named",
                     config: DetailConfig = DetailConfig()) -> "VideoDetail | None":
        """The training frames of `project` (not its held-out frames) at `size`, with their tracked
        controls in the engine's control set ("named" or "flame"); None when the project has no
        tracked crops (a moved or trimmed project renders without video detail)."""
        from ..errors import StudioError
        from ..tracking.data import TrackingData, spread_rows

        try:
            tracking = TrackingData.from_project(project, controls=controls)
            train = spread_rows(tracking.split()[0])    # a long clip: some of its frames, spread over it
            if not len(train):
                return None
            crops = tracking.crops(train, size=size)
            ctl = tracking.controls(train)
        except (StudioError, OSError, KeyError, ValueError):
            return None
        mattes = None
        if config.person_only:
            try:
                mattes = tracking.mattes(train, size=size)
            except (OSError, ValueError):    # an older project without mattes: whole frames lend
                mattes = None
        features = faces = wide = None
        scale = size / REFERENCE_SIZE
        lms = None
        regions = None
        if config.region_match > 0 and controls == "named":
            regions = region_columns(["yaw", "pitch"] + tracking.expression_names)
        if config.splits_mid_band or config.needs_faces or config.splits_outside or regions is not None:
            # each frame's mesh, at `size`
            lms = tracking.crop_landmarks_at(train, size)
            if config.splits_mid_band:
                features = feature_masks(lms, size, config.feature_grow * scale)
            if config.needs_faces:
                faces = face_hull_masks(lms, size, config.face_erode * scale, 4.0 * scale)
            if config.splits_outside:
                wide = face_hull_masks(lms, size, -config.outside_grow * scale, 3.0 * scale)
        emb = frame_embeddings(project, train, crops) if config.typical_weight > 0 else None
        sources = None
        if config.frame_edge > 0 and getattr(tracking, "transforms", None) is not None:
            sources = tracking.source_masks(train, size, config.frame_edge * scale)
            if sources.min() >= 0.999:
                sources = None
        return cls(crops, ctl, config, mattes, features, faces, wide,
                   lms if config.shape_share > 0 or regions is not None else None, emb, sources, regions)

    @property
    def has_controls(self) -> bool:
        return self._index is not None

    # ------------------------------------------------------------------ which frames
    def neighbours(self, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) indices into the frames and (B, k) weights summing to 1, by control distance."""
        return self._weights(self._distances(controls))

    def _distances(self, controls: np.ndarray) -> np.ndarray:
        """(B, N) how far each frame is from each render's controls for choosing it (inf: not at all)."""
        if self._index is None:
            raise ValueError("these frames have no controls; use neighbours_by_image")
        q = np.asarray(controls, np.float64).reshape(len(controls), -1)
        d = self._index.distances(q, self.config.emphasis, self.config.emphasis_frames)
        if self.atypicality is not None:   # frames that look like the person are nearer (`typical_weight`)
            d = d * np.exp(self.config.typical_weight * self.atypicality)[None]
        if self.config.pose_window > 0:
            dp = np.abs(q[:, None, :2] - self._pose[None]).max(-1)                  # (B, N) degrees
            k = max(1, min(self.config.neighbours, dp.shape[1]))
            kth = np.partition(dp, k - 1, axis=1)[:, k - 1:k]
            d = np.where((dp > self.config.pose_window) & (dp > kth), np.inf, d)
        return d

    def neighbours_by_image(self, renders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As `neighbours`, by the distance between blurred 24 px thumbnails of the renders and the
        frames (each thumbnail's mean removed)."""
        if self._thumbs is None:
            self._thumbs = self._thumbnails(self.crops)
        q = self._thumbnails(renders)
        a = self._thumbs
        d = (q ** 2).sum(1)[:, None] - 2 * q @ a.T + (a ** 2).sum(1)[None]
        d = d / max(1.0, float(np.median(d)))          # a scale comparable with the control distance
        return self._weights(d * 10.0)

    def _weights(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return soft_nearest(d, self.config.neighbours, self.config.temperature)

    def _thumbnails(self, images: np.ndarray) -> np.ndarray:
        out = []
        for im in images:
            g = cv2.GaussianBlur(im.astype(np.float32), (0, 0), 3.0 * self.size / REFERENCE_SIZE)
            out.append(cv2.resize(g, (24, 24), interpolation=cv2.INTER_AREA).ravel())
        f = np.stack(out).astype(np.float64)
        return f - f.mean(1, keepdims=True)

    # ------------------------------------------------------------------ the detail
    def warp(self, render: np.ndarray, frame: np.ndarray, then: np.ndarray | None = None,
             matte: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`frame` (S, S, 3) uint8 warped onto `render` (S, S, 3) uint8 (float32), and (S, S) float32
        in [0, 1]: where the warp sampled inside the frame (feathered over a pixel). Outside it the
        frame holds nothing: the edge is repeated there, and the detail leaves it out (mirroring the
        frame at its edge, as first built, put a mirrored earring by the border of d3's turned-head
        frames). `then` (S, S, 2): backward offsets of a further warp of the render (FLAME's
        geometry, `studio.flame.warp`), folded into the same single resampling of the frame.
        `matte` (S, S) float32: the frame's person matte; the returned weight is then also 0 where
        the warped frame shows background."""
        return self._warp(render, frame, then, matte)[:2]

    def _warp(self, render, frame, then, matte, face=None, face_flow: float | None = None, shape=None
              ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """`warp`, and the sampling maps it used (to warp more of the frame's planes the same way).
        `face` (S, S): the frame's face mask, inside which only `face_flow` (default: the config's) of the
        flow applies, and `shape` (S, S, 2) (`shape_field`) by `shape_share`."""
        mx, my = self._sampling(render, frame, then, face, face_flow, shape)
        inside = self._inside(mx, my)
        warped = cv2.remap(frame.astype(np.float32), mx, my, SAMPLING[self.config.sampling],
                           borderMode=cv2.BORDER_REPLICATE)
        if matte is not None:
            inside = inside * cv2.remap(matte, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return warped, inside.astype(np.float32), (mx, my)

    def _sampling(self, render: np.ndarray, frame: np.ndarray, then: np.ndarray | None,
                  face: np.ndarray | None = None, face_flow: float | None = None,
                  shape: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Where each pixel of the render samples `frame` (see `warp`): two (S, S) float32 maps."""
        share = self.config.face_flow if face_flow is None else float(face_flow)
        a = cv2.cvtColor(render, cv2.COLOR_RGB2GRAY)
        b = cv2.cvtColor(cv2.GaussianBlur(frame, (0, 0), self._flow_blur), cv2.COLOR_RGB2GRAY)
        flow = self._flow.calc(a, b, None)
        if self._flow_smooth > 0:
            flow = cv2.GaussianBlur(flow, (0, 0), self._flow_smooth)
        gx, gy = self._grid
        if face is not None and (share < 1.0 or shape is not None):
            inside = cv2.remap(face, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            if share < 1.0:   # the face keeps (most of) its own place
                flow = flow * (1.0 - (1.0 - share) * inside)[..., None]
            if shape is not None:   # ... and takes a share of the shape the controls predict
                flow = flow + (self.config.shape_share * inside)[..., None] * shape
        if then is not None:   # p → p + then(p) → that point's flow
            mx, my = gx + then[..., 0], gy + then[..., 1]
            flow = cv2.remap(flow, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            gx, gy = mx, my
        return gx + flow[..., 0], gy + flow[..., 1]

    def _undrift(self, low: np.ndarray, lent: np.ndarray, their_low: np.ndarray, keep) -> np.ndarray:
        """The render's low band `low`, moved toward the frames' colour where its mean over the person
        (`lent`; `their_low` the frames' low band summed as they lend) differs by more than
        `DetailConfig.colour_drift`, until it differs by that much. Measured and moved only where no
        appearance edit changed the render (`keep`), so an edit's own colour (blue hair, a tan) stays."""
        free = np.ones_like(lent) if keep is None else 1.0 - np.clip(np.asarray(keep, np.float32), 0, 1)
        weight = lent * free
        if weight.sum() <= 1.0:
            return low
        drift = ((free[..., None] * their_low).sum((0, 1)) - (weight[..., None] * low).sum((0, 1))) / weight.sum()
        far = float(np.linalg.norm(drift))
        if far <= self.config.colour_drift:
            return low
        shift = (drift * (1.0 - self.config.colour_drift / far)).astype(np.float32)
        return low + (np.clip(lent, 0, 1) * free)[..., None] * shift

    def _inside(self, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
        last = self.size - 1
        return np.clip(np.minimum(np.minimum(mx, last - mx), np.minimum(my, last - my)) + 1.0, 0.0, 1.0)

    def face_flow_for(self, render: np.ndarray, nearest: int) -> float | None:
        """The share of the flow applied inside the face for `render` (S, S, 3) uint8 whose nearest frame is
        `nearest`: with `face_flow_sharpness` set, (s − `face_flow_floor`) / (`face_flow_sharpness` −
        `face_flow_floor`) clipped to [0, 1], s the render's face Laplacian energy over the frame's, over the
        frame's face hull; otherwise None (the config's `face_flow`)."""
        c = self.config
        if c.face_flow_sharpness <= 0 or self.faces is None:
            return None
        from ..metrics import laplacian_energy

        m = self.faces[nearest] > 0.5
        if m.sum() < 16:
            return None
        e_frame = laplacian_energy(self.crops[nearest], m)
        if not np.isfinite(e_frame) or e_frame <= 1e-9:
            return None
        s = laplacian_energy(render, m) / e_frame
        floor = min(max(c.face_flow_floor, 0.0), 0.99 * c.face_flow_sharpness)
        return float(np.clip((s - floor) / (c.face_flow_sharpness - floor), 0.0, 1.0))

    def shape_field_for(self, frame: int, wanted: np.ndarray) -> np.ndarray | None:
        """Backward offsets (S, S, 2) that move frame `frame`'s face toward the shape `wanted` (P, 2) the
        render's controls predict: its tracked mesh plus the predicted change from its own controls to the
        render's. None without a mesh for that frame."""
        own = self.landmarks[frame]
        target = own + (np.asarray(wanted, np.float32) - self._own_shape[frame])
        if not (np.isfinite(own).all() and np.isfinite(target).all()):
            return None
        lattice = self._lattices.pop(frame, None)
        if lattice is None:
            from scipy.spatial import QhullError

            try:
                lattice = MeshLattice(own, self.size)
            except (ValueError, QhullError):       # qhull refusing the points: this frame lends unwarped
                return None
        self._lattices[frame] = lattice
        while len(self._lattices) > LATTICES_KEPT:
            self._lattices.popitem(last=False)
        scale = self.size / REFERENCE_SIZE
        return shape_field(own, target, self.size, self.config.shape_smooth * scale, self.config.shape_cap * scale,
                           lattice)

    def lenders(self, controls: np.ndarray) -> list[dict[int, tuple[float, np.ndarray | None]]]:
        """For each render of `controls` (B, C): {frame: (its weight, its (R,) weights inside `REGIONS`, or
        None where those are the same)}. The frames are `neighbours`. With `region_match`, where the render
        leaves a region at the subject's rest (each of its controls within `region_match` standard
        deviations of 0) and a lending frame moves it (one of them further than that from the render's: a
        wink, a glance), the region is lent instead by the frames chosen the same way among those that show
        it as the render asks, if any is within `REGION_REACH` times the nearest frame's distance and turned
        no further from the render than `REGION_TURN` or the face's own frames; otherwise, and wherever the
        render asks something of the region, it is lent as the face."""
        d = self._distances(controls)
        idx, w = self._weights(d)
        out = [{int(j): (float(wj), None) for j, wj in zip(idx[b], w[b])} for b in range(len(idx))]
        if self.regions is None:
            return out
        q = np.asarray(controls, np.float64).reshape(len(idx), -1)
        tol = self.config.region_match
        at_rest = self._index.region_rest(q, self.regions) <= tol                                  # (B, R)
        if not at_rest.any():           # every render asks something of each part (a held-out frame, a driver)
            return out
        shows = self._index.region_mismatch(q, np.broadcast_to(np.arange(len(self.crops)), d.shape),
                                            self.regions) <= tol                                   # (B, N, R)
        reach = REGION_REACH * d[np.arange(len(idx)), idx[:, 0]]
        turn = np.abs(q[:, None, :2] - self._pose[None]).max(-1)                  # (B, N) degrees off in pose
        for b in range(len(idx)):
            lending = idx[b][w[b] >= 1e-3]
            swap = [r for r in range(len(self.regions)) if at_rest[b, r] and not shows[b, lending, r].all()]
            if not swap:
                continue
            near = (d[b] <= reach[b]) & (turn[b] <= max(REGION_TURN, turn[b, lending].max()))
            lend = {int(j): (float(wj), np.full(len(self.regions), float(wj))) for j, wj in zip(idx[b], w[b])}
            changed = False
            for r in swap:
                dr = np.where(shows[b, :, r] & near, d[b], np.inf)
                if not np.isfinite(dr).any():
                    continue            # no frame near enough shows it at rest: lent as the face
                changed = True
                for _, regional in lend.values():
                    regional[r] = 0.0
                ridx, rw = self._weights(dr[None])
                for j, wj in zip(ridx[0], rw[0]):
                    if np.isfinite(dr[j]):
                        lend.setdefault(int(j), (0.0, np.zeros(len(self.regions))))[1][r] = wj
            if changed:
                out[b] = lend
        return out

    def _region_maps(self, frame: int, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
        """(R, S, S) `REGIONS` of frame `frame` (its tracked mesh, grown by `feature_grow` and feathered)
        where they land on the render (the frame's sampling maps `mx`, `my`)."""
        grow = self.config.feature_grow * self.size / REFERENCE_SIZE
        return np.stack([cv2.remap(m, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                         for m in region_masks(self._meshes[frame], self.size, grow, [part for part, _ in REGIONS])])

    def apply(self, renders: np.ndarray, controls: np.ndarray | None = None,
              keep: np.ndarray | None = None, fields: list | None = None,
              trail: LenderTrail | None = None) -> np.ndarray:
        """(B, S, S, 3) uint8 renders → the same with the frames' detail.

        `controls` (B, C): what the renders were rendered from (the nearest frames are chosen by
        them; without them by image). `keep` (B, S, S) float in [0, 1]: where the render's own
        detail is added to the frames' (where an appearance edit changed the render). `fields`: per
        render None or (S, S, 2) backward offsets of a warp applied to the result (FLAME's geometry):
        the render is warped (it is soft), and the frames are matched to the unwarped render and
        sampled through both warps at once, so their detail is resampled once (warping the finished
        image cost the d3 held-out frames a tenth of their sharpness) and follows the warp exactly.
        `trail`: the renders are consecutive frames of a clip, the lenders changed gradually (`LenderTrail`).
        """
        renders = np.asarray(renders)
        if renders.ndim != 4 or renders.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"expected (B, {self.size}, {self.size}, 3) renders, got {renders.shape}")
        if controls is not None and self._index is not None:
            lenders = self.lenders(controls)
        else:
            idx, w = self.neighbours_by_image(renders)
            lenders = [{int(j): (float(wj), None) for j, wj in zip(idx[b], w[b])} for b in range(len(idx))]
        if trail is not None:
            lenders = trail.follow(lenders, 0 if self.regions is None else len(self.regions))
        wanted = None
        if controls is not None and self._shape is not None and self.faces is not None:
            wanted = self._shape.predict(np.asarray(controls, np.float64).reshape(len(renders), -1))
        out = np.empty_like(renders, dtype=np.uint8)
        for b in range(len(renders)):
            then = None if fields is None else fields[b]
            r = renders[b].astype(np.float32)
            if then is not None:
                gx, gy = self._grid
                r = cv2.remap(r, gx + then[..., 0], gy + then[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            low = cv2.GaussianBlur(r, (0, 0), self._band)
            split = self.features is not None and self.config.splits_mid_band
            outside = self.wide_faces is not None and self.config.splits_outside
            r_mid = cv2.GaussianBlur(r, (0, 0), self._fine) - low if split else None
            detail = np.zeros_like(r)
            lent = np.zeros(r.shape[:2], np.float32)
            drifts = self.config.colour_drift > 0
            their_low = np.zeros_like(r) if drifts else None
            flow_share = self.face_flow_for(renders[b], next(iter(lenders[b])))
            regions = None      # where the regions lie on the render: the nearest frame's, warped (first below)
            for j, (wj, wr) in lenders[b].items():
                if wj < 1e-3 and (wr is None or wr.max() < 1e-3):
                    continue
                matte = None if self.mattes is None else self.mattes[j]
                face = None if self.faces is None else self.faces[j]
                shape = None if wanted is None else self.shape_field_for(int(j), wanted[b])
                warped, inside, (mx, my) = self._warp(renders[b], self.crops[j], then, matte, face, flow_share, shape)
                band = warped - cv2.GaussianBlur(warped, (0, 0), self._band)
                soft = cv2.GaussianBlur(warped, (0, 0), self._fine) if split or outside else None
                if split:   # fine band from the frame; mid band shared with the render outside the features
                    mid = soft - (warped - band)
                    feat = cv2.remap(self.features[j], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                    share = (self.config.mid_share + (self.config.feature_share - self.config.mid_share) * feat)[..., None]
                    band = band - (1.0 - share) * (mid - r_mid)
                if outside:   # outside the face only a share of the frame's finest band
                    wide = cv2.remap(self.wide_faces[j], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                    share = self.config.outside_fine_share + (1.0 - self.config.outside_fine_share) * wide
                    band = band - (1.0 - share)[..., None] * (warped - soft)
                if wr is not None:   # another share inside the regions (`lenders`)
                    if regions is None:
                        regions = self._region_maps(int(j), mx, my)
                    inside = (wj + ((wr - wj)[:, None, None] * regions).sum(0)) * inside
                else:
                    inside = wj * inside
                detail += inside[..., None] * band
                lent += inside
                if drifts:
                    their_low += inside[..., None] * (warped - band)
            if drifts:
                low = self._undrift(low, lent, their_low, None if keep is None else keep[b])
            if self.config.render_fills:
                detail += np.clip(1.0 - lent, 0, 1)[..., None] * (r - low)
            if keep is not None:      # an edit's own detail (e.g. a frame of glasses) is added there
                detail += np.clip(np.asarray(keep[b], np.float32), 0, 1)[..., None] * (r - low)
            out[b] = np.clip(low + detail, 0, 255).astype(np.uint8)
        return out
