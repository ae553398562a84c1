"""The video's own background behind the avatar: a clean plate of the scene.

The engines render a whole crop, background included, from the avatar's controls alone. They
cannot know where the head was in the video frame, so the background they draw is an average over
the clip: soft, and wrong wherever the phone or the head moved. Yet the tracked crops hold the real
background, and the tracked mattes say which pixels are the person. `ScenePlate` gathers those
background pixels of the *training* frames into one image in video-frame coordinates (each crop
mapped back by its tracked frame -> crop transform, pixels near the person left out), and lays it
behind a render at a placement:

- the viewer and export place the head where it was most of the clip (the median training
  transform, `ScenePlate.placement`);
- `avatar-studio eval` places each held-out frame's render where that frame's head was (its tracked
  transform): the head's position and size in the frame are the part of the tracked head pose the
  aligned crop takes out, as the yaw, pitch and roll sliders are the rest. This is how head-avatar
  papers with a static background (NeRFace) render held-out frames.

The person is cut out of the render by the same selfie segmentation the tracker uses for its mattes,
feathered outward by `SceneConfig.matte_blur` of the image's side. Where the plate has seen too little
background (behind the person for the whole clip, beyond the crops) it is filled from the background
around it, and that fill replaces the render's own background where the render looks like it (a pale
ghost of the clip's heads, uncovered when a slider turns the head), not where the render draws hair or
a shoulder its matte missed (`SceneConfig.fill_gate`). Built in memory when an avatar is opened (about
2 s for 500 crops); nothing is written to the project.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .tracking.data import centred_scale as _centred
from .tracking.data import crop_picture_share, picture_share


@dataclass(frozen=True)
class SceneConfig:
    erode: float = 5 / 256
    """Background pixels closer than this share of the crop's side to the person's matte are left
    out of the plate (the matte's edge is soft and hair strays past it)."""
    background_below: float = 0.1
    """A crop pixel is background where its matte (after erosion) is below this."""
    min_frames: float = 3.0
    """A plate pixel is fully trusted once this many frames have seen it (weights summed); below, it
    is blended with the render's own background; never seen: the render's."""
    edge_feather: float = 1 / 32
    """Where the plate's evidence ends it fades out over a Gaussian of this sigma (share of the image
    side) into the render's own background."""
    spread: tuple[float, float] = (20.0, 50.0)
    """Grey levels: where the frames that saw a plate pixel disagree about its colour (standard deviation
    over them) by more than the first, the plate is trusted less, and not at all past the second: a
    camera that walks, a door that opens, a screen that flickers. On d3, d9 and d14 (a phone held still
    or on a stand) 90 % of the plate is within 4–7 levels."""
    frame_edge: bool = True
    """Black bars the video has baked in (a portrait clip padded to a square, a letterboxed film;
    `TrackingData.picture`) lie over the avatar as they lay over the person in the video's crops (past the
    frame's edge, where the tracker repeats the edge, a bar's black repeats too). Only videos with bars and
    placements that reach them change. (d14 has a 60-px black bar down its left side, which ffmpeg's
    cropdetect also finds.)"""
    matte_blur: float = 1 / 64
    """The render's person matte is feathered outward by a Gaussian of this sigma, as a share of the
    image side (2 px at 128)."""
    fill_gate: float = 40.0
    """Grey levels (RGB distance). Where the plate has seen too little background, the background around
    it filled in (`ScenePlate.filled`) replaces the render's own as far as the render, blurred by
    `matte_blur`, is near it in colour: fully when equal, half at about 1.2 times this distance. A head
    turned to a slider's end uncovers places no training frame showed; there the render's background is a
    soft ghost of the clip's heads, and the plate's edge showed as a jagged seam (d3 and d9 at the yaw
    slider's ends). A wider gate also replaces hair and shoulders the render's matte missed: on the six
    avatars of 2026-12-06/07, 40 changed held-out PSNR by -0.02 to +0.05 dB and identity by at most 0.0004,
    60 cost d3 and d9 up to 0.08 dB, no gate (every hole filled) 0.5-0.6 dB on d3 and d9. 0: no fill, the render's own
    background stays in the holes."""


def _affine3(t: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(t, np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])


def _push_pull(color: np.ndarray, weight: np.ndarray, full: float) -> np.ndarray:
    """(H, W, 3) float32: the weighted colour `color / weight` where `weight` reaches `full`, and where
    it does not, filled from the surroundings. The sums are halved in size (a Gaussian pyramid) until a
    level is a few pixels; then each finer level keeps its own estimate as far as its weight reaches
    `full` and takes the coarser level's, enlarged, for the rest. Every pixel gets a colour where any
    pixel has weight (black where none has)."""
    levels = [(color, weight)]
    while min(levels[-1][1].shape) > 4:
        c, w = levels[-1]
        levels.append((cv2.pyrDown(c), cv2.pyrDown(w)))
    c, w = levels[-1]
    seen = w > 1e-6
    mean = c[seen].sum(0) / max(float(w[seen].sum()), 1e-6) if seen.any() else np.zeros(3, np.float32)
    est = np.where(seen[..., None], c / np.maximum(w, 1e-6)[..., None], mean).astype(np.float32)
    for c, w in reversed(levels[:-1]):
        up = cv2.pyrUp(est, dstsize=(w.shape[1], w.shape[0]))
        a = np.clip(w / full, 0.0, 1.0)[..., None]
        est = (a * (c / np.maximum(w, 1e-6)[..., None]) + (1.0 - a) * up).astype(np.float32)
    return est


class ScenePlate:
    """The background of the training frames in video-frame coordinates (see the module docstring).

    `color`: (H, W, 3) float32 background colour (RGB, 0..255) summed over the frames, each pixel
    weighted by how clearly it was background; `weight`: (H, W) float32 those weights summed (the
    colour is `color / weight`; the two are resampled apart and divided after, so the plate's holes
    do not bleed in as black); `scale`: plate pixels per video-frame pixel; `crop_size`: side of the tracked crops the
    transforms map to; `placement`: (2, 3) frame -> crop transform the viewer uses."""

    def __init__(self, color: np.ndarray, weight: np.ndarray, scale: float, crop_size: int,
                 placement: np.ndarray, config: SceneConfig | None = None, spread: np.ndarray | None = None,
                 picture: tuple[float, float, float, float] | None = None, frame_size: tuple[int, int] | None = None):
        self.color = np.asarray(color, np.float32)
        self.weight = np.asarray(weight, np.float32)
        self.spread = None if spread is None else np.asarray(spread, np.float32)
        """(H, W) float32: how much the frames disagreed about each pixel's colour (standard deviation,
        grey levels); None: not known (trusted as agreeing)."""
        self.scale = float(scale)
        self.crop_size = int(crop_size)
        self.placement = np.asarray(placement, np.float64).reshape(2, 3)
        self.config = config or SceneConfig()
        self.picture = None if picture is None else tuple(float(v) for v in picture)
        """(x0, y0, x1, y1) in video-frame pixels (x1, y1 exclusive): the video's picture, the frame less any
        black bars; None: not known (nothing is cut at its edge)."""
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        """(width, height) of the video frame in pixels, or None (not known)."""
        self._segmenter = None
        self._filled = None

    @property
    def filled(self) -> np.ndarray | None:
        """(H, W, 3) float32, built on first use: the plate's colour with its holes filled from the
        background around them (`_push_pull`). Only pixels the frames saw clearly (`min_frames`) and agreed
        about (`spread`) lend their colour, and not within `erode` of the edge of those: strands of hair
        the mattes missed darken the few frames that saw it, and the fill would carry them into the hole.
        The video's black bars lend nothing either (the scene goes on behind them; `composite` lays the
        bars over the result where the crop shows them). None where no pixel qualifies (a camera that walks all clip long): nothing is filled."""
        if self._filled is None:
            w = self.weight
            if self.spread is not None:
                lo, hi = self.config.spread
                w = w * np.clip((hi - self.spread) / max(hi - lo, 1e-6), 0.0, 1.0)
            sure = (w >= self.config.min_frames).astype(np.uint8)
            k = max(1.0, self.config.erode * self.crop_size * self.scale)
            inner = np.clip(cv2.distanceTransform(sure, cv2.DIST_L2, 3) / (2.0 * k) - 0.5, 0.0, 1.0)
            source = (w * inner).astype(np.float32)
            if self.picture is not None:   # plate pixel -> frame pixel: the inverse of `_centred(scale)`
                v, u = np.mgrid[0:w.shape[0], 0:w.shape[1]].astype(np.float64)
                k1 = (self.scale - 1.0) / 2.0
                source *= picture_share((u - k1) / self.scale, (v - k1) / self.scale, self.picture)
            if not np.any(source > 0):
                self._filled = False
                return None
            share = np.where(self.weight > 1e-3, source / np.maximum(self.weight, 1e-3), 0.0).astype(np.float32)
            self._filled = _push_pull(self.color * share[..., None], source, self.config.min_frames)
        return self._filled if self._filled is not False else None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_tracking(cls, tracking, rows, config: SceneConfig | None = None) -> "ScenePlate | None":
        """The plate of `tracking`'s crops at `rows` (pass the training rows, never held-out ones);
        None when there are no rows, no mattes or no transforms."""
        config = config or SceneConfig()
        rows = np.asarray(rows, int)
        if not len(rows) or getattr(tracking, "transforms", None) is None:
            return None
        if not all(tracking.matte_path(int(r)).exists() for r in rows[:: max(1, len(rows) // 8)]):
            return None
        transforms = np.asarray(tracking.transforms, np.float64)[rows]
        # crop pixels per frame pixel: the plate needs no more resolution than the crops had
        per_px = np.sqrt(np.abs(np.linalg.det(transforms[:, :, :2])))
        scale = float(min(1.0, np.median(per_px)))
        fw, fh = tracking.frame_size
        pw, ph = max(1, int(round(fw * scale))), max(1, int(round(fh * scale)))
        color = np.zeros((ph, pw, 3), np.float32)
        square = np.zeros((ph, pw, 3), np.float32)
        weight = np.zeros((ph, pw), np.float32)
        S = tracking.crop_size
        k = max(1, int(round(config.erode * S)))
        kernel = np.ones((k, k), np.uint8)
        to_plate = _centred(scale)
        used = 0
        for r, t in zip(rows, transforms):
            try:
                crop, matte = tracking.crop(int(r)).astype(np.float32), tracking.matte(int(r))
            except FileNotFoundError:
                continue
            if crop.shape[0] != S:
                crop = cv2.resize(crop, (S, S), interpolation=cv2.INTER_AREA)
            if matte.shape[0] != S:
                matte = cv2.resize(matte, (S, S), interpolation=cv2.INTER_LINEAR)
            bg = cv2.erode(1.0 - matte, kernel)
            bg = np.where(bg > 1.0 - config.background_below, bg, 0.0).astype(np.float32)
            m = (to_plate @ np.linalg.inv(_affine3(t)))[:2]   # crop -> plate
            # only the crop's footprint on the plate is warped (a small face in a 1080p frame: a few
            # percent of the plate)
            corners = np.array([[0, 0, 1], [S, 0, 1], [0, S, 1], [S, S, 1]], np.float64) @ m.T
            x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
            x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, (pw, ph))
            if x1 <= x0 or y1 <= y0:
                continue
            m_roi = m - np.array([[0, 0, x0], [0, 0, y0]], np.float64)
            box = (int(x1 - x0), int(y1 - y0))
            weight[y0:y1, x0:x1] += cv2.warpAffine(bg, m_roi, box, flags=cv2.INTER_LINEAR, borderValue=0)
            # weighted before the warp, so the crop's edge fades colour and weight alike
            color[y0:y1, x0:x1] += cv2.warpAffine(crop * bg[..., None], m_roi, box, flags=cv2.INTER_LINEAR,
                                                  borderValue=0)
            square[y0:y1, x0:x1] += cv2.warpAffine(crop * crop * bg[..., None], m_roi, box, flags=cv2.INTER_LINEAR,
                                                   borderValue=0)
            used += 1
        if not used or not np.any(weight > 0):
            return None
        w = np.maximum(weight, 1e-3)[..., None]
        spread = np.sqrt(np.clip(square / w - (color / w) ** 2, 0.0, None).mean(-1))
        return cls(color, weight, scale, S, np.median(transforms, axis=0), config, spread,
                   getattr(tracking, "picture", None), (fw, fh))

    @classmethod
    def from_project(cls, project, config: SceneConfig | None = None) -> "ScenePlate | None":
        """The plate of the project's training frames; None when it has no tracked crops and mattes."""
        from .errors import StudioError
        from .tracking.data import TrackingData, spread_rows

        try:
            tracking = TrackingData.from_project(project)
        except (StudioError, OSError, ValueError, KeyError):
            return None
        return cls.from_tracking(tracking, spread_rows(tracking.split()[0]), config)   # a long clip: some frames

    # ------------------------------------------------------------------ use
    def background(self, transform: np.ndarray | None, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The plate seen through a crop of side `size` at `transform` (frame -> crop at the tracked
        crop size; None: `placement`): (size, size, 3) float32 colour (NaN where the plate has seen no
        background) and (size, size) float32 trust in [0, 1]."""
        m = self._plate_to_crop(transform, size)
        color = cv2.warpAffine(self.color, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
        weight = cv2.warpAffine(self.weight, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
        seen = weight > 1e-3
        color = np.where(seen[..., None], color / np.maximum(weight, 1e-3)[..., None], np.nan).astype(np.float32)
        trust = np.clip(weight / self.config.min_frames, 0.0, 1.0)
        if self.spread is not None:   # the frames disagreed there: a moving camera or scene
            lo, hi = self.config.spread
            spread = cv2.warpAffine(self.spread, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
            trust = trust * np.clip((hi - spread) / max(hi - lo, 1e-6), 0.0, 1.0)
        sigma = self.config.edge_feather * size
        if sigma > 0:   # fade the plate in over a few pixels where its evidence ends: no seam
            trust = cv2.GaussianBlur(trust, (0, 0), sigma) * seen
        return color, trust

    def _plate_to_crop(self, transform: np.ndarray | None, size: int) -> np.ndarray:
        """(2, 3) plate pixels -> pixels of a crop of side `size` at `transform` (None: `placement`)."""
        t = self.placement if transform is None else transform
        return (_centred(size / self.crop_size) @ _affine3(t) @ np.linalg.inv(_centred(self.scale)))[:2]

    def filled_view(self, transform: np.ndarray | None, size: int) -> np.ndarray | None:
        """`filled` seen through a crop of side `size` at `transform` (as `background`): (size, size, 3)
        float32 colour everywhere (past the frame's edge, the fill's edge repeats, as the tracker's crops
        repeat the frame's); None where nothing is filled."""
        if self.filled is None:
            return None
        m = self._plate_to_crop(transform, size)
        return cv2.warpAffine(self.filled, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def picture_view(self, transform: np.ndarray | None, size: int) -> np.ndarray | None:
        """(size, size) float32 in [0, 1]: how much of each pixel of a crop of side `size` at `transform`
        (frame -> crop at the tracked crop size; None: `placement`) shows the video's picture rather than one
        of its black bars, as the tracker cuts its crops (past the frame's edge the edge repeats, a bar's
        black included); None when the crop shows no bar."""
        if self.picture is None or self.frame_size is None:
            return None
        if self.picture == (0.0, 0.0, float(self.frame_size[0]), float(self.frame_size[1])):
            return None   # no bars: the whole frame is picture
        t = self.placement if transform is None else np.asarray(transform, np.float64)
        if abs(np.linalg.det(t[:2, :2])) < 1e-12:   # no usable placement (a frame without a face)
            t = self.placement
        m = _centred(size / self.crop_size) @ _affine3(t)   # frame -> this crop
        held = crop_picture_share(m, size, self.frame_size, self.picture)
        return None if held.min() >= 1.0 else held

    def person_matte(self, image: np.ndarray) -> np.ndarray:
        """(S, S) float32 in [0, 1]: the person in `image` (selfie segmentation), softened."""
        if self._segmenter is None:
            from .tracking.tracker import Segmenter

            self._segmenter = Segmenter()
        a = self._segmenter(image)
        sigma = self.config.matte_blur * image.shape[0]
        # feathered outward only: the person's own pixels are never mixed with the plate (a symmetric
        # blur gave d9 0.2 dB more PSNR but softened the face's outline: sharpness 0.86 -> 0.72)
        return np.maximum(a, cv2.GaussianBlur(a, (0, 0), sigma)) if sigma > 0 else a

    def composite(self, images: np.ndarray, transforms: np.ndarray | None = None,
                  mattes: np.ndarray | None = None) -> np.ndarray:
        """`images` (B, S, S, 3) uint8 with the plate behind the person. `transforms`: (B, 2, 3) frame ->
        crop placements (None, or a row that is not finite, e.g. a frame without a face: `placement`);
        `mattes`: (B, S, S) person mattes in [0, 1] (None: segmented from each image)."""
        images = np.asarray(images)
        out = np.empty_like(images)
        for i, img in enumerate(images):
            t = None if transforms is None else np.asarray(transforms[i], np.float64)
            t = t if t is not None and np.all(np.isfinite(t)) else None
            bg, trust = self.background(t, img.shape[0])
            a = self.person_matte(img) if mattes is None else np.asarray(mattes[i], np.float32)
            f = img.astype(np.float32)
            bg = np.where(np.isnan(bg), f, bg)   # unseen: the render's own background ...
            fill = self.filled_view(t, img.shape[0]) if self.config.fill_gate > 0 else None
            if fill is not None:                 # ... or the fill, where the render looks like it
                sigma = self.config.matte_blur * img.shape[0]
                soft = cv2.GaussianBlur(f, (0, 0), sigma) if sigma > 0 else f
                near = np.exp(-0.5 * ((soft - fill) ** 2).sum(-1) / self.config.fill_gate ** 2)
                hole = (1.0 - trust) * near
                bg = (trust[..., None] * bg + hole[..., None] * fill) / np.maximum(trust + hole, 1e-6)[..., None]
                trust = trust + hole
            f = f + ((1.0 - a) * trust)[..., None] * (bg - f)
            if self.config.frame_edge:   # the video's black bars lie over the avatar as over the person
                held = self.picture_view(t, img.shape[0])
                if held is not None:   # black: bars decode as black (limited-range 16 becomes 0 in RGB)
                    f = held[..., None] * f
            out[i] = np.clip(f + 0.5, 0, 255).astype(np.uint8)
        return out

    def close(self) -> None:
        if self._segmenter is not None:
            self._segmenter.close()
            self._segmenter = None
