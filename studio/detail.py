"""Detail from the video: fine detail of the subject's own frames laid over an engine's render.

Both engines, trained for minutes on a CPU, render a soft face: held-out renders keep about 5 % of
the real frames' high-frequency energy (eyes and teeth smeared), while the broad shape, pose, jaw
and colours are right. The video itself holds the detail. For each render this module

1. picks the training frames whose tracked controls are nearest the controls being rendered
   (standardised controls, yaw and pitch weighted ×2, as the retrieval baseline of `studio.evaluation`;
   the nearest frames by a blurred thumbnail when the caller has no controls, e.g. a learned driving
   code); optionally (`typical_weight`, off by default) preferring, among frames about as near, those
   that look most like the person as a whole (their ArcFace embeddings),
2. warps each toward the render with dense optical flow (OpenCV's DIS) computed between the render
   and the frame blurred to about the render's softness, the flow field smoothed so the warp moves
   features without tearing them, sampled with a Lanczos kernel (bicubic softened the finest detail);
   inside the face only part of that flow applies (a soft render's shapes are less right than the
   frame's), and part of the change of face shape from the frame's controls to the render's, as the
   tracked mesh moves with the controls (`ShapeModel`, `shape_share`),
3. keeps the render's low frequencies (a Gaussian low-pass of width `band_sigma`) and takes the
   frequencies above it from the warped frames, weighted by how near each frame's controls are,
   where the frames show the person (their tracked matte, warped with them); elsewhere (the
   background, past a frame's edge) the render keeps its own. Of that detail band, the finest part
   (above `fine_sigma`) is the frames' in the face and half of it outside the face (hair, neck,
   clothes: `outside_fine_share`); its middle part is the frames' in the eyes, brows and
   mouth (each frame's tracked landmarks, warped with it) and shared half and half with the
   render's own elsewhere (`mid_share`).

The result keeps what the engine decides (pose, jaw, expression shape, colour, appearance edits)
and shows the subject's real eyes, skin, hair and teeth. Where an appearance edit changed the
render, the caller passes `keep` and the render's own detail is added there too (an edit's colour
is in the low band and survives as it is; the edit's own edges are not lost).

It is one of the levers measured for "a face, not a blur" (see the README's table of what was tried);
`Avatar` applies it by default when the project still has its tracked crops, `--no-detail` (CLI)
and the viewer's "Detail from the video" box turn it off.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

REFERENCE_SIZE = 128
"""Image side the pixel widths below are given for; they scale with the render size."""

LATTICES_KEPT = 256
"""`VideoDetail` keeps the `MeshLattice` of this many frames (the last used; about 100 KB each)."""

SAMPLING = {"lanczos": cv2.INTER_LANCZOS4, "cubic": cv2.INTER_CUBIC}
"""`DetailConfig.sampling`: OpenCV's interpolation for resampling the warped frames."""


@dataclass(frozen=True)
class DetailConfig:
    band_sigma: float = 12.0
    """Gaussian σ (px at 128 px) splitting the render's low band from the frames' detail band. 12
    since 2026-12-02 (5 before): on d14 and d9 held-out frames the wider band raised ArcFace identity
    by 0.01 for both engines and PSNR by up to 0.06 dB (d14 now beats the retrieval baseline with
    both engines); on d3 it cost 0.14 dB (NeRF on FLAME controls) for +0.004 identity. The StyleGAN engine
    uses 24 since 2026-12-06 (its render's middle band is less right than the frames'; with the shape warp,
    held-out identity d3 0.899 → 0.902, d9 0.902 → 0.903, d14 unchanged, PSNR −0.02 / +0.04 / −0.09 dB)."""
    flow_sigma: float = 2.0
    """σ (px at 128 px) the frames are blurred by before the flow to the (soft) render is computed."""
    flow_smooth: float = 6.0
    """σ (px at 128 px) of the Gaussian that smooths the flow field (no tearing of eyes or teeth)."""
    neighbours: int = 3
    """Frames blended per render; the nearest dominates unless others are about as near."""
    temperature: float = 0.5
    """Weight of a frame: exp(−(d − d_min) / temperature), d the squared standardised control distance."""
    pose_weight: float = 2.0
    """Weight of standardised yaw and pitch against each standardised expression control."""
    pose_window: float = 15.0
    """Degrees: only frames whose yaw and pitch are both within this of the render's lend detail (or,
    where fewer than `neighbours` are, the ones nearest in pose). The flow cannot bridge a head turned
    the other way: with FLAME controls (51 expression inputs against 2 of pose) a driver's strong
    expressions picked frames turned 25° the other way and the face came out ghosted. Narrower windows
    cost identity on d3's held-out frames (ArcFace 0.857 without a window, 0.856 at 15°, 0.845 at 10°,
    0.817 at 6°): within a few degrees the frames' expressions differ more, and the flow bridges
    that worse than a moderate turn."""
    emphasis: float = 1.5
    """See `ControlIndex.distances`: how much more the expression controls a render moves far from
    the clip's average count in choosing its frames (0: plain distance). Measured on d3: one-slider
    sweeps pulled the frames toward the clip's rest face and the slider's detail with them (FLAME
    slider r 0.267 at 0, 0.519 at 1.5; named 0.756 / 0.829); held-out frames barely change."""
    emphasis_frames: bool = False
    """The emphasis also counts each frame's own far-out controls (`ControlIndex.distances`, `frames_too`):
    a frame showing a strong expression the render does not ask for is kept further away. Tried 2026-12-06 and
    left off: on the StyleGAN avatars' held-out frames identity d9 0.903 → 0.905, d14 0.864 → 0.869, d3 unchanged,
    but the jaw slider's sweep follows it less evenly (jaw r d3 0.965 → 0.910, d14 0.893 → 0.836): the frames that
    open the jaw wide also move other controls, which a one-slider sweep leaves at rest. README, "Four more
    tries on d9's open point"."""
    typical_weight: float = 0.0
    """How much frames that look like the person as a whole are preferred in choosing them (0: not at all,
    the default). Each frame's control distance is multiplied by exp(typical_weight · z), z its standardised
    ArcFace atypicality: 1 − the cosine between its embedding and the training frames' mean embedding, over
    the frames' median and standard deviation (`frame_atypicality`); needs the ArcFace file. Tried
    2026-12-06 and left off: judged without the held-out frames (each training frame's pick taken from
    outside its stretch of the clip, scored by ArcFace identity against the frame; mean over d3, d9 and d14)
    0.3 was best (0.9010 → 0.9059), and on the StyleGAN avatars' held-out frames it raised identity (d9
    0.903 → 0.907, d14 0.864 → 0.868, d3 +0.001) but the frames it prefers are nearer the person's everyday
    face, so the sliders showed less: mean r d9 0.930 → 0.914, d14 0.916 → 0.879 (its jaw 0.89 → 0.83,
    brow_frown 0.91 → 0.68), and d14's PSNR fell 0.15 dB. README, "Frames that look like the person"."""
    person_only: bool = True
    """Frames lend detail only where they show the person (their tracked matte, warped with them):
    the background behind the head moves in the crop with every head shift, which no control
    says, so a frame's background texture lands where the held-out frame has other texture."""
    matte_grow: float = 10.0
    """Pixels (at 128 px) the person matte is grown by (dilated, then feathered) before it gates the
    detail, so the face's outline and the hair's edge keep the frames' detail. With the bare matte
    (0) d9's held-out sharpness fell from 0.77 to 0.68 and its ArcFace feature distance from 0.091
    to 0.109 (the face's outline against the background lost its detail); at 10 both stay and PSNR
    gains 0.09–0.14 dB (d14, d9)."""
    render_fills: bool = True
    """Where the frames lend less than their full weight (background, past a frame's edge), the
    render's own detail fills the rest, so the image there is the render as it is, not its low band."""
    fine_sigma: float = 1.0
    """σ (px at 128 px) splitting the detail band: the frames lend everything finer than this in the
    face in full (the fine texture no engine renders here: lashes, pores, the glasses' rims), outside it
    `outside_fine_share` of it (hair strands)."""
    mid_share: float = 0.5
    """Outside the eyes, brows and mouth, the share of the band between `fine_sigma` and `band_sigma`
    that comes from the frames; the render gives the rest (1: the frames give all of it, as before
    2026-12-03). There the engine's own mid band is about as close to the held-out frames as the
    warped frames' (correlation 0.92 against 0.92 on d9's NeRF avatar, 0.88 against 0.87 on d3's
    StyleGAN avatar) and their errors differ, so the blend is closer than either. In the eyes and
    mouth the frames give all of it: the soft engines' eyes are where identity goes (blended there
    too, d3's StyleGAN held-out identity fell from 0.82 to 0.75). Measured in the README."""
    sampling: str = "lanczos"
    """How the warped frames are resampled: "lanczos" (OpenCV's 8×8 Lanczos; default since 2026-12-03)
    or "cubic" (bicubic, as before). Sampling between pixels softens the frames' finest detail, and
    bicubic more so: on held-out frames Lanczos raised the sharpness ratio by 0.04–0.08 on five avatars
    (d3 NeRF 0.685 → 0.765, d9 StyleGAN 0.700 → 0.788) with PSNR within ±0.03 dB and identity within
    ±0.001 (README, "Detail from the video")."""
    feature_share: float = 1.0
    """Inside the eyes, brows and mouth, the share of the middle band (`fine_sigma` to `band_sigma`) that
    comes from the frames (with `mid_share` < 1). 1 for both engines: the StyleGAN engine's eyes are smudges
    there; the NeRF engine draws the eyes, and from 2026-12-03 to 12-05 kept half of its own band there (0.5), which
    helped while the whole flow bent the frames onto its render, and cost identity once only half of the flow applies
    inside the face (README, "The frames' own eyes")."""
    feature_grow: float = 8.0
    """Pixels (at 128 px) the eyes-with-brows and mouth regions (each frame's tracked landmarks,
    warped with it) are grown by, then feathered, for `mid_share`."""
    face_flow: float = 1.0
    """Inside the face (the convex hull of each frame's tracked mesh, eroded by `face_erode` and
    feathered), the share of the flow to the render that is applied (1: all of it). The crops are
    aligned on the tracked mesh, so a frame near the render's controls already has its eyes, nose
    and mouth about where the held-out frame has them (d3: 1.2 px from the real held-out frame's
    mesh, mean over the landmarks at 128 px), while the flow to a soft render moves them toward the
    render's shapes, which are less right (d3 StyleGAN: the nearest frame alone scores ArcFace
    identity 0.91, warped to the render 0.84)."""
    face_flow_sharpness: float = 0.0
    """When > 0, the share of the flow applied inside the face is set per render instead of `face_flow`:
    min(1, s / this), where s is the render's own fine detail in the face (Laplacian energy of its nearest
    frame's face region) over that frame's. The flow can only lock onto structure the render has: a
    render about as sharp as the frames is followed in full, a blur hardly at all."""
    face_flow_floor: float = 0.0
    """With `face_flow_sharpness`: the share is (s − this) / (`face_flow_sharpness` − this), clipped to
    [0, 1], so a render with less than this share of its frame's fine detail in the face (a blur, whose
    flow would only pull the frame toward its smudges) gets none of the flow there; 0: s /
    `face_flow_sharpness` as before."""
    face_erode: float = 0.0
    """Pixels (at 128 px) the face hull is eroded by before it is feathered, for `face_flow`."""
    outside_fine_share: float = 0.5
    """Outside the face (each frame's tracked mesh hull grown by `outside_grow`, feathered, warped with
    the frame: hair, ears, neck, clothes), the share of the frames' finest band (above `fine_sigma`)
    that is lent (1: all of it, as before 2026-12-05); the rest is left out. No control places a hair
    strand or a fold of a collar, so a near frame's finest texture there lands beside the held-out
    frame's and adds error, while the face's own detail is placed by the tracked mesh. Held-out
    frames, 0.5 against 1 (README, "Fine texture outside the face"): PSNR +0.14, +0.20, +0.20 dB on
    the StyleGAN avatars of d14, d3 and d9 and +0.20 on d3's NeRF avatar, ArcFace identity within
    0.0004, the face's sharpness within 0.005. The render's own finest band there (the share left to
    it at first) is no nearer the held-out frames: with it the gains were 0.04–0.08 dB smaller."""
    shape_share: float = 0.5
    """Inside the face, each frame is also warped by the change of face shape from its own controls to the
    render's (`ShapeModel`: the tracked mesh the controls predict, a ridge regression fitted on the training
    frames), by this share of it (0: off). The flow to a soft render cannot see a mouth corner or a lid move
    by a pixel or two; the tracked mesh can, and a slider moves the face's shape with it even where the
    frames it picks show less. `avatar-studio eval`, six avatars (README, "The face shape the controls
    predict"): PSNR +0.11 to +0.38 dB, ArcFace feature distance lower on all six, identity within −0.001 to
    +0.008, yaw / pitch errors lower and slider mean r 0.83–0.92 → 0.90–0.93. The whole shift (1.0) lost
    identity on d3 and d9 held-out frames (−0.016 and −0.007 against 0.5)."""
    shape_ridge: float = 1.0
    """Ridge penalty of `ShapeModel` (on standardised controls; the intercept is not penalised)."""
    shape_smooth: float = 2.0
    """σ (px at 128 px) of the Gaussian that smooths the shape warp's offsets."""
    shape_cap: float = 6.0
    """Pixels (at 128 px): the shape warp moves no point further than this (a slider pushed past what the
    clip shows asks the linear model for shapes it never saw)."""
    outside_grow: float = 6.0
    """Pixels (at 128 px) the face hull is grown by for `outside_fine_share` (then feathered by 3 px), so
    the face's outline keeps the frames' finest detail (grown 2 px, the face's sharpness fell by 0.05)."""

    @property
    def needs_faces(self) -> bool:
        """Whether the frames' face-hull masks are needed (`face_flow` < 1, `face_flow_sharpness` or
        `shape_share` set)."""
        return self.face_flow < 1.0 or self.face_flow_sharpness > 0 or self.shape_share > 0

    @property
    def splits_outside(self) -> bool:
        """Whether only a share of the frames' finest band is lent outside the face (`outside_fine_share` < 1)."""
        return self.outside_fine_share < 1.0

    @property
    def splits_mid_band(self) -> bool:
        """Whether the middle band is shared with the render anywhere (`mid_share` or `feature_share`
        below 1), so the frames' eyes-and-mouth masks are needed."""
        return self.mid_share < 1.0 or self.feature_share < 1.0


def soft_nearest(d: np.ndarray, k: int, temperature: float, relative: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(B, N) distances → (B, k) indices of the nearest and weights summing to 1: the nearest weighs
    most, the others exp(−(d − d_min) / temperature) of it (`relative`: exp(−(d / d_min − 1) /
    temperature), for distances without a natural scale)."""
    k = max(1, min(int(k), d.shape[1]))
    idx = np.argsort(d, axis=1)[:, :k]
    dk = np.take_along_axis(d, idx, 1)
    gap = dk / np.maximum(dk[:, :1], 1e-9) - 1 if relative else dk - dk[:, :1]
    w = np.exp(-gap / max(temperature, 1e-6))
    return idx, w / w.sum(1, keepdims=True)


def feature_masks(landmarks: np.ndarray, size: int, grow: float) -> np.ndarray:
    """(N, P, 2) face-mesh landmarks in pixels of a `size` image → (N, size, size) float32 masks, 1 over
    the eyes with their brows and the mouth (`studio.tracking.geometry.FEATURE_REGIONS`), grown by
    `grow` px and feathered. A frame whose landmarks are missing (NaN) gets 1 everywhere."""
    from .tracking.geometry import FEATURE_REGIONS

    lms = np.asarray(landmarks, np.float32)
    out = np.zeros((len(lms), size, size), np.float32)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(round(grow)) + 1,) * 2) if grow > 0 else None
    for m, lm in zip(out, lms):
        if not np.isfinite(lm).all():
            m[:] = 1.0
            continue
        for idx in FEATURE_REGIONS:
            cv2.fillConvexPoly(m, cv2.convexHull(lm[list(idx)]).astype(np.int32), 1.0)
        if k is not None:
            m[:] = cv2.GaussianBlur(cv2.dilate(m, k), (0, 0), grow / 2 + 1.0)
    return np.clip(out, 0.0, 1.0)


def face_hull_masks(landmarks: np.ndarray, size: int, erode: float, feather: float) -> np.ndarray:
    """(N, P, 2) face-mesh landmarks in pixels of a `size` image → (N, size, size) float32 masks, 1 over
    the convex hull of each frame's mesh, eroded by `erode` px (grown by −`erode` when negative) and
    feathered (Gaussian σ `feather`). A frame whose landmarks are missing (NaN) gets 0 (the flow applies
    there in full; only a share of the finest band is lent there, as outside the face)."""
    lms = np.asarray(landmarks, np.float32)
    out = np.zeros((len(lms), size, size), np.float32)
    r = int(round(abs(erode)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2) if r > 0 else None
    for m, lm in zip(out, lms):
        if not np.isfinite(lm).all():
            continue
        cv2.fillConvexPoly(m, cv2.convexHull(lm).astype(np.int32), 1.0)
        if k is not None:
            m[:] = cv2.erode(m, k) if erode > 0 else cv2.dilate(m, k)
        if feather > 0:
            m[:] = cv2.GaussianBlur(m, (0, 0), feather)
    return np.clip(out, 0.0, 1.0)


class ShapeModel:
    """The tracked face mesh (crop pixels) the controls predict: a ridge regression, linear in the
    controls (each standardised by the training frames' mean and std; the intercept not penalised),
    fitted on the training frames. Frames without a mesh (NaN landmarks) are left out of the fit.
    Terms quadratic in the pose were tried and lost identity on all three shared clips (they
    extrapolate badly to the held-out frames' controls)."""

    def __init__(self, controls: np.ndarray, landmarks: np.ndarray, ridge: float = 1.0):
        c = np.asarray(controls, np.float64)
        lm = np.asarray(landmarks, np.float64)
        if c.ndim != 2 or lm.ndim != 3 or lm.shape[2] != 2 or len(c) != len(lm):
            raise ValueError(f"expected (N, C) controls and (N, P, 2) landmarks, got {c.shape}, {lm.shape}")
        ok = np.isfinite(c).all(1) & np.isfinite(lm).all((1, 2))
        if ok.sum() < 2:
            raise ValueError("a face-shape model needs at least two frames with a tracked mesh")
        self.points = int(lm.shape[1])
        self._mean, self._std = c[ok].mean(0), np.maximum(c[ok].std(0), 1e-6)
        x = self._design(c[ok])
        pen = np.eye(x.shape[1]) * float(ridge)
        pen[0, 0] = 0.0
        self._w = np.linalg.solve(x.T @ x + pen, x.T @ lm[ok].reshape(int(ok.sum()), -1))

    def _design(self, c: np.ndarray) -> np.ndarray:
        return np.concatenate([np.ones((len(c), 1)), (c - self._mean) / self._std], 1)

    def predict(self, controls: np.ndarray) -> np.ndarray:
        """(n, C) controls → (n, P, 2) landmarks."""
        c = np.asarray(controls, np.float64)
        if c.ndim != 2 or c.shape[1] != len(self._mean):
            raise ValueError(f"expected (n, {len(self._mean)}) controls, got {c.shape}")
        return (self._design(c) @ self._w).reshape(len(c), self.points, 2)


class MeshLattice:
    """Where each point of a `grid` px lattice over a `size` image falls in a triangulation of a frame's
    face mesh (plus the image's border): its triangle's three points and barycentric weights, computed
    once per frame, so that any offsets given at the mesh's points are spread over the image by a gather
    and a weighted sum (linear inside each triangle, falling to 0 at the border)."""

    def __init__(self, points: np.ndarray, size: int, grid: int = 64):
        from scipy.spatial import Delaunay

        pts = np.asarray(points, np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
            raise ValueError(f"expected (P, 2) finite points, got {pts.shape}")
        last = size - 1.0
        border = np.array([[x, y] for x in (0.0, last / 2, last) for y in (0.0, last / 2, last)
                           if x != y or x != last / 2])
        self.size, self.points = int(size), len(pts)
        self.grid = int(min(size, grid))
        ax = np.linspace(0.0, last, self.grid)
        gx, gy = np.meshgrid(ax, ax)
        q = np.stack([gx.ravel(), gy.ravel()], 1)
        tri = Delaunay(np.concatenate([pts, border]))
        simplex = tri.find_simplex(q)
        simplex = np.where(simplex < 0, tri.find_simplex(np.clip(q, 0.0, last), bruteforce=True), simplex)
        t = tri.transform[simplex]                                    # (G, 3, 2): affine to barycentric
        b = np.einsum("gij,gj->gi", t[:, :2], q - t[:, 2])
        self._vertices = tri.simplices[simplex].astype(np.int32)     # (G, 3)
        self._weights = np.concatenate([b, 1.0 - b.sum(1, keepdims=True)], 1).astype(np.float32)

    def spread(self, offsets: np.ndarray) -> np.ndarray:
        """(P, 2) offsets at the mesh's points → (size, size, 2) float32 over the image."""
        vals = np.concatenate([np.asarray(offsets, np.float64), np.zeros((8, 2))])
        f = (vals[self._vertices] * self._weights[..., None]).sum(1).reshape(self.grid, self.grid, 2)
        return cv2.resize(f.astype(np.float32), (self.size, self.size), interpolation=cv2.INTER_LINEAR)


def shape_field(source: np.ndarray, target: np.ndarray, size: int, smooth: float, cap: float,
                lattice: MeshLattice | None = None) -> np.ndarray:
    """Backward offsets (size, size, 2) float32 that move the points `source` (P, 2) of an image to
    `target` (P, 2): the warped image near `target[k]` samples the image near `source[k]`. The moves are
    spread over the image from the source points (`MeshLattice`; pass the frame's own to reuse it),
    smoothed by a Gaussian of σ `smooth` px, and turned round (one fixed-point step of b(p) = −f(p + b(p)),
    f the forward move: exact for a uniform move, within a small fraction of a pixel for the smooth moves of
    a few pixels used here); no offset longer than `cap` px."""
    src = np.asarray(source, np.float64)
    lattice = lattice if lattice is not None else MeshLattice(src, size)
    fwd = lattice.spread(np.asarray(target, np.float64) - src)
    if smooth > 0:
        fwd = cv2.GaussianBlur(fwd, (0, 0), smooth)
    # turned round: b(p) = −fwd(p + b(p)), one step from b = −fwd(p)
    gy, gx = np.mgrid[0:size, 0:size].astype(np.float32)
    f = -cv2.remap(fwd, gx - fwd[..., 0], gy - fwd[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if cap > 0:
        length = np.linalg.norm(f, axis=-1, keepdims=True)
        f = f * np.minimum(1.0, cap / np.maximum(length, 1e-6))
    return f.astype(np.float32)


class ControlIndex:
    """Nearest training frames by tracked controls: each control standardised by the training frames'
    mean and std, yaw and pitch weighted by `pose_weight`, squared Euclidean distance. The retrieval
    baseline of `studio.evaluation` and `VideoDetail` both use it."""

    def __init__(self, controls: np.ndarray, pose_weight: float = 2.0):
        c = np.asarray(controls, np.float64)
        if c.ndim != 2 or not len(c):
            raise ValueError(f"expected (N, C) training controls, got {c.shape}")
        self._mean, self._std = c.mean(0), np.maximum(c.std(0), 1e-6)
        self._w = np.ones(c.shape[1])
        self._w[:2] = pose_weight
        self._z = (c - self._mean) / self._std
        self._points = self._z * self._w

    def distances(self, query: np.ndarray, emphasis: float = 0.0, frames_too: bool = False) -> np.ndarray:
        """(n, C) controls → (n, N) squared distances to the training frames.

        `emphasis` > 0 weighs each expression control of a query by 1 + emphasis · |its standardised
        value|: the controls the query moves far from the clip's average count more than the
        ones it leaves near it (a slider pushed to its end should find frames that show it). With
        `frames_too` the weight of a control between a query and a frame is 1 + emphasis · the larger
        of the two |standardised values|: a frame that moves a control far which the query leaves at
        rest (a grin with closed eyes for an open-eyed query) is as far as one that lacks what the
        query moves."""
        q = np.asarray(query, np.float64)
        if q.ndim != 2 or q.shape[1] != self._points.shape[1]:
            raise ValueError(f"expected (n, {self._points.shape[1]}) controls, got {q.shape}")
        z = (q - self._mean) / self._std
        q = z * self._w
        a = self._points
        if emphasis <= 0:
            return (q ** 2).sum(1)[:, None] - 2 * q @ a.T + (a ** 2).sum(1)[None]
        far = np.abs(z[:, None, 2:])                                   # (n, 1, C-2), or (n, N, C-2) below
        if frames_too:
            far = np.maximum(far, np.abs(self._z[None, :, 2:]))
        g = np.ones(far.shape[:2] + (z.shape[1],))
        g[..., 2:] += emphasis * far
        return (((q[:, None, :] - a[None]) * g) ** 2).sum(-1)


def frame_atypicality(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) unit face embeddings of a clip's frames → (N,) how unlike the clip's person each frame
    looks, standardised: 1 − the cosine to the frames' mean embedding, minus its median, over its
    standard deviation (0 for every frame when they are all alike)."""
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2 or not len(e):
        raise ValueError(f"expected (N, D) embeddings, got {e.shape}")
    m = e.mean(0)
    m = m / max(float(np.linalg.norm(m)), 1e-12)
    a = 1.0 - e @ m
    sd = float(a.std())
    return np.zeros(len(e)) if sd < 1e-9 else (a - np.median(a)) / sd


EMBEDDINGS_FILE = "detail/frame_identity_{size}.npz"
"""Inside a project: the ArcFace embeddings of its training crops at one size (`frame_embeddings`)."""


def frame_embeddings(project, rows: np.ndarray, crops: np.ndarray) -> np.ndarray | None:
    """(N, 128) ArcFace embeddings of a project's training `crops` (tracked rows `rows`), or None without
    the ArcFace file. Computed once (440 frames took 17 s on a busy 2-core CPU) and kept in the project
    (`EMBEDDINGS_FILE`, written atomically) under a key of the frames and the ArcFace file, so a re-track
    or another ArcFace file computes them again; a project folder that cannot be written to computes them
    each time it is opened."""
    import hashlib

    from . import metrics
    from .errors import StudioError
    from .model_files import sha256_file

    weights = metrics.arcface_weights()
    if weights is None or not len(crops):
        return None
    h = hashlib.sha256(np.ascontiguousarray(rows, np.int64).tobytes())
    h.update(np.ascontiguousarray(crops).tobytes())
    try:
        key = f"frames {h.hexdigest()}; arcface {sha256_file(weights)}"
    except OSError:
        return None
    path = project.root / EMBEDDINGS_FILE.format(size=crops.shape[1])
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key and z["embeddings"].shape[0] == len(crops):
                return z["embeddings"].astype(np.float32)
    except (OSError, KeyError, ValueError, EOFError):   # absent, damaged or another layout: computed again
        pass
    try:
        emb = metrics.embeddings(crops)
    except Exception:   # noqa: BLE001 — a damaged ArcFace file: the frames are chosen by controls alone
        return None
    if emb is None:
        return None
    emb = np.asarray(emb, np.float32)

    def save(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, key=np.array(key), embeddings=emb)

    try:
        from .atomic import write_with

        write_with(path, save)
    except (StudioError, OSError):   # a read-only or full folder: used without keeping them
        pass
    return emb


class VideoDetail:
    """Training frames (aligned crops at the render size) and their controls, ready to lend detail."""

    def __init__(self, crops: np.ndarray, controls: np.ndarray | None, config: DetailConfig = DetailConfig(),
                 mattes: np.ndarray | None = None, features: np.ndarray | None = None,
                 faces: np.ndarray | None = None, wide_faces: np.ndarray | None = None,
                 landmarks: np.ndarray | None = None, embeddings: np.ndarray | None = None):
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
            mattes = np.asarray(mattes, np.float32)
            if mattes.shape != crops.shape[:3]:
                raise ValueError(f"expected {crops.shape[:3]} mattes, got {mattes.shape}")
            grow = config.matte_grow * crops.shape[1] / REFERENCE_SIZE
            if grow > 0:
                k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(round(grow)) + 1,) * 2)
                mattes = np.stack([cv2.GaussianBlur(cv2.dilate(m, k), (0, 0), grow / 2) for m in mattes])
            self.mattes = mattes
        self.features = None
        """(N, S, S) float32 eyes-and-mouth masks of the frames (`feature_masks`), or None: then the
        frames lend their whole detail band everywhere (`DetailConfig.mid_share` is not used)."""
        if features is not None:
            features = np.asarray(features, np.float32)
            if features.shape != crops.shape[:3]:
                raise ValueError(f"expected {crops.shape[:3]} feature masks, got {features.shape}")
            self.features = features
        self._fine = config.fine_sigma * scale
        self.faces = None
        """(N, S, S) float32 face-hull masks of the frames (`face_hull_masks`) for `face_flow` < 1."""
        if faces is not None:
            faces = np.asarray(faces, np.float32)
            if faces.shape != crops.shape[:3]:
                raise ValueError(f"expected {crops.shape[:3]} face masks, got {faces.shape}")
            self.faces = faces
        self.wide_faces = None
        """(N, S, S) float32 grown face-hull masks of the frames, for `outside_fine_share` < 1 (None: the
        frames lend their finest band everywhere)."""
        if wide_faces is not None:
            wide_faces = np.asarray(wide_faces, np.float32)
            if wide_faces.shape != crops.shape[:3]:
                raise ValueError(f"expected {crops.shape[:3]} wide face masks, got {wide_faces.shape}")
            self.wide_faces = wide_faces
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
        from .errors import StudioError
        from .tracking.data import TrackingData

        try:
            tracking = TrackingData.from_project(project, controls=controls)
            train, _ = tracking.split()
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
        if config.splits_mid_band or config.needs_faces or config.splits_outside:   # each frame's mesh, at `size`
            lms = tracking.crop_landmarks_at(train, size)
            if config.splits_mid_band:
                features = feature_masks(lms, size, config.feature_grow * scale)
            if config.needs_faces:
                faces = face_hull_masks(lms, size, config.face_erode * scale, 4.0 * scale)
            if config.splits_outside:
                wide = face_hull_masks(lms, size, -config.outside_grow * scale, 3.0 * scale)
        emb = frame_embeddings(project, train, crops) if config.typical_weight > 0 else None
        return cls(crops, ctl, config, mattes, features, faces, wide, lms if config.shape_share > 0 else None, emb)

    @property
    def has_controls(self) -> bool:
        return self._index is not None

    # ------------------------------------------------------------------ which frames
    def neighbours(self, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) indices into the frames and (B, k) weights summing to 1, by control distance."""
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
        return self._weights(d)

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
        from .metrics import laplacian_energy

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

    def apply(self, renders: np.ndarray, controls: np.ndarray | None = None,
              keep: np.ndarray | None = None, fields: list | None = None) -> np.ndarray:
        """(B, S, S, 3) uint8 renders → the same with the frames' detail.

        `controls` (B, C): what the renders were rendered from (the nearest frames are chosen by
        them; without them by image). `keep` (B, S, S) float in [0, 1]: where the render's own
        detail is added to the frames' (where an appearance edit changed the render). `fields`: per
        render None or (S, S, 2) backward offsets of a warp applied to the result (FLAME's geometry):
        the render is warped (it is soft), and the frames are matched to the unwarped render and
        sampled through both warps at once, so their detail is resampled once (warping the finished
        image cost the d3 held-out frames a tenth of their sharpness) and follows the warp exactly.
        """
        renders = np.asarray(renders)
        if renders.ndim != 4 or renders.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"expected (B, {self.size}, {self.size}, 3) renders, got {renders.shape}")
        if controls is not None and self._index is not None:
            idx, w = self.neighbours(controls)
        else:
            idx, w = self.neighbours_by_image(renders)
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
            flow_share = self.face_flow_for(renders[b], int(idx[b][0]))
            for j, wj in zip(idx[b], w[b]):
                if wj < 1e-3:
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
                detail += (wj * inside)[..., None] * band
                lent += wj * inside
            if self.config.render_fills:
                detail += np.clip(1.0 - lent, 0, 1)[..., None] * (r - low)
            if keep is not None:      # an edit's own detail (e.g. a frame of glasses) is added there
                detail += np.clip(np.asarray(keep[b], np.float32), 0, 1)[..., None] * (r - low)
            out[b] = np.clip(low + detail, 0, 255).astype(np.uint8)
        return out


def edit_keep_mask(edited: np.ndarray, unedited: np.ndarray, size: int,
                   low: float = 6.0, high: float = 24.0) -> np.ndarray:
    """(B, S, S) float in [0, 1]: where an appearance edit changed the render (blurred absolute
    difference of the two renders, mean over colour, 0 below `low` and 1 above `high` grey levels),
    so the render's own detail is added there."""
    diff = np.abs(edited.astype(np.float32) - unedited.astype(np.float32)).mean(-1)
    sigma = 2.0 * size / REFERENCE_SIZE
    diff = np.stack([cv2.GaussianBlur(d, (0, 0), sigma) for d in diff])
    return np.clip((diff - low) / (high - low), 0, 1)
