"""Reading a project's tracking results: the one API later stages use.

Files written by the `track` stage (all inside ``<project>/track/``)::

    tracking.npz    per-frame arrays (see `TrackingData`)
    tracking.json   names, sizes, fps, expression scaling, report figures
    crops/NNNNNN.png   aligned RGB face crops (frame number N of the decoded clip)
    mattes/NNNNNN.png  foreground matte for each crop (uint8, 255 = person)

Every array has one row per decoded frame; frames without a usable face have ``valid=False``
and no crop. ``train`` and ``heldout`` hold row indices: the last `HOLDOUT_FRACTION` of the
clip is never used for training or pivots, and every evaluation reports on it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

HOLDOUT_FRACTION = 0.15

EXPRESSION_NAMES = [
    "jaw_open", "smile_left", "smile_right", "pucker", "mouth_stretch",
    "brow_raise_left", "brow_raise_right", "brow_frown", "blink_left", "blink_right",
    "gaze_horizontal", "gaze_vertical",
]
"""The named expression sliders, in column order of `TrackingData.expr`. 0 = the subject's
neutral, 1 = a strong expression of theirs (gaze: -1..1, left/down negative)."""

POSE_NAMES = ["yaw", "pitch", "roll"]
"""Head pose columns in degrees. yaw > 0: the face turns towards the image's right side;
pitch > 0: the face tilts up; roll > 0: the head tilts counter-clockwise in the image."""


BAR_LIMIT = 24
"""Grey level (brightest channel, 0–255) under which a row or column at the frame's edge that no frame of
the clip ever showed brighter is a black bar (ffmpeg's cropdetect uses 24 too)."""


def picture_box(brightest: np.ndarray, limit: float = BAR_LIMIT) -> tuple[int, int, int, int] | None:
    """The video's picture inside any black bars baked into its frames (a portrait clip padded to a square,
    a letterboxed film): (H, W) brightest grey level each pixel showed over the clip → (x0, y0, x1, y1) in
    pixels, x1 and y1 exclusive (the whole frame when there are no bars); None when the bars would leave
    less than a quarter of either side (a dark clip, not bars)."""
    b = np.asarray(brightest, np.float32)
    if b.ndim != 2 or not b.size:
        return None
    h, w = b.shape
    dark_col, dark_row = b.max(0) < limit, b.max(1) < limit

    def run(dark: np.ndarray) -> int:
        n = np.argmin(dark) if not dark.all() else len(dark)
        return int(n)

    x0, x1 = run(dark_col), w - run(dark_col[::-1])
    y0, y1 = run(dark_row), h - run(dark_row[::-1])
    if x1 - x0 < w / 4 or y1 - y0 < h / 4:
        return None
    return x0, y0, x1, y1


def picture_share(x: np.ndarray, y: np.ndarray, picture) -> np.ndarray:
    """float32 in [0, 1]: how much of a bilinear sample at video-frame pixel coordinates (`x`, `y`) the
    picture (x0, y0, x1, y1; x1, y1 exclusive) holds: 1 inside, 0 a pixel past its edge."""
    x0, y0, x1, y1 = picture
    return (np.clip(x - x0 + 1.0, 0, 1) * np.clip(x1 - x, 0, 1)
            * np.clip(y - y0 + 1.0, 0, 1) * np.clip(y1 - y, 0, 1)).astype(np.float32)


def centred_scale(k: float) -> np.ndarray:
    """(3, 3) scaling by `k` about pixel centres (as an area resize does), not about the corner."""
    return np.array([[k, 0.0, (k - 1.0) / 2.0], [0.0, k, (k - 1.0) / 2.0], [0.0, 0.0, 1.0]])


def _frame_points(frame_to_crop: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Video-frame coordinates (x, y) of each pixel of a crop of side `size` cut by `frame_to_crop` ((2, 3)
    or (3, 3) affine, frame pixels -> crop pixels), and the crop's pixels per frame pixel."""
    A = np.vstack([np.asarray(frame_to_crop, np.float64)[:2], [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(A)
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    return x, y, float(np.sqrt(abs(np.linalg.det(A[:2, :2]))))


def crop_picture_share(frame_to_crop: np.ndarray, size: int, frame_size, picture) -> np.ndarray:
    """(size, size) float32 in [0, 1]: how much of each pixel of a crop cut by `frame_to_crop` ((2, 3) or
    (3, 3) affine, frame pixels -> this crop's pixels) shows the video's picture rather than a black bar,
    as the tracker cuts its crops: past the frame's edge the edge repeats (`BORDER_REPLICATE`), so a crop
    pixel there shows whatever the nearest edge pixel shows, picture or bar."""
    x, y, _ = _frame_points(frame_to_crop, size)
    fw, fh = frame_size
    return picture_share(np.clip(x, 0.0, fw - 1.0), np.clip(y, 0.0, fh - 1.0), picture)


def crop_source_share(frame_to_crop: np.ndarray, size: int, picture, ramp: float) -> np.ndarray:
    """(size, size) float32 in [0, 1]: how far each pixel of a crop cut by `frame_to_crop` ((2, 3) or (3, 3)
    affine, frame pixels -> this crop's pixels) lies inside the video's `picture` (x0, y0, x1, y1; x1, y1
    exclusive): 0 past its edge, where the crop shows the tracker's repetition of the frame's edge (a
    portrait clip's chin near the bottom of the frame: vertical streaks) or a black bar, rising to 1 over
    `ramp` crop pixels inside it."""
    x, y, per_px = _frame_points(frame_to_crop, size)
    x0, y0, x1, y1 = picture
    inside = np.minimum(np.minimum(x - x0, x1 - 1.0 - x), np.minimum(y - y0, y1 - 1.0 - y))   # frame px
    return np.clip((inside * per_px + 0.5) / max(ramp, 1e-6), 0.0, 1.0).astype(np.float32)


LENDING_MOST = 900
"""`spread_rows`: at most this many training frames lend the avatar detail and build the video's background
(`studio.detail.VideoDetail.from_project`, `studio.scene.ScenePlate.from_project`). Both held every training frame
in memory: a 2-minute clip (d9 looped six times, 2994 training frames) took 1.6 GB and 26 s before the viewer's
first render at 128 px, and 6.5 GB and 97 s at 256 px. The shared clips (301-499 training frames) are under it."""


def spread_rows(rows: np.ndarray, most: int | None = None) -> np.ndarray:
    """`rows` as they are when there are at most `most` (default `LENDING_MOST`), else `most` of them spread
    evenly over the clip (at 30 frames a second neighbouring frames are nearly the same picture)."""
    most = LENDING_MOST if most is None else int(most)
    rows = np.asarray(rows)
    if len(rows) <= most:
        return rows
    return rows[np.unique(np.linspace(0, len(rows) - 1, most).round().astype(np.int64))]


def split_rows(n_frames: int, valid: np.ndarray, holdout: float = HOLDOUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Rows for training and held-out evaluation: the last `holdout` share of the clip is held out."""
    cut = int(round(n_frames * (1.0 - holdout)))
    rows = np.arange(n_frames)
    train = rows[(rows < cut) & valid]
    held = rows[(rows >= cut) & valid]
    return train, held


@dataclass
class TrackingData:
    root: Path
    """The `track` stage folder."""
    fps: float
    """Frame rate of the decoded clip."""
    frame_size: tuple[int, int]
    """(W, H) of decoded frames (upright, after any downscale)."""
    crop_size: int
    """Side of the aligned square crops in pixels."""
    time: np.ndarray
    """(N,) seconds from the clip start (after trim)."""
    valid: np.ndarray
    """(N,) bool: a usable face was found."""
    pose: np.ndarray
    """(N, 3) yaw, pitch, roll in degrees (see POSE_NAMES)."""
    expr: np.ndarray
    """(N, E) scaled expression values (see EXPRESSION_NAMES)."""
    landmarks: np.ndarray
    """(N, 478, 3) smoothed landmarks in frame pixels (x, y, z; z in the same pixel scale)."""
    transforms: np.ndarray
    """(N, 2, 3) affine frame -> crop (apply to [x, y, 1])."""
    meta: dict = field(default_factory=dict)
    """Everything in tracking.json."""

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, track_dir: str | Path) -> "TrackingData":
        track_dir = Path(track_dir)
        meta = json.loads((track_dir / "tracking.json").read_text("utf-8"))
        with np.load(track_dir / "tracking.npz") as z:
            arrays = {k: z[k] for k in z.files}
        return cls(root=track_dir, fps=float(meta["fps"]), frame_size=tuple(meta["frame_size"]),
                   crop_size=int(meta["crop_size"]), time=arrays["time"], valid=arrays["valid"].astype(bool),
                   pose=arrays["pose"], expr=arrays["expr"], landmarks=arrays["landmarks"],
                   transforms=arrays["transforms"], meta=meta)

    @classmethod
    def from_project(cls, project, controls: str = "named") -> "TrackingData":
        """The project's tracking, with `expr` / `expression_names` the chosen control set's:
        "named" (the twelve named expressions) or "flame" (jaw + FLAME expression coefficients as
        the `flame` stage fitted them; see `studio.flame.controls`). Head pose is the tracked one."""
        data = cls.load(project.output("track", "tracking").parent)
        if controls == "named":
            return data
        if controls != "flame":
            from ..errors import ProjectError

            raise ProjectError(f"unknown control set '{controls}'", "control sets: named, flame")
        return data.with_flame_controls(project)

    def with_flame_controls(self, project) -> "TrackingData":
        """This tracking with the `flame` stage's controls as expressions (ProjectError when the
        stage has not run, or ran on other tracked frames)."""
        from ..errors import ProjectError
        from ..flame.controls import controls_from_sequence, flame_control_names
        from ..flame.sequences import read_sequence

        if project.record("flame").get("status") != "done":
            raise ProjectError("FLAME controls need the FLAME fit first (stage 'flame' has not finished)",
                               f"run `avatar-studio run-stage {project.root} flame`")
        seq = read_sequence(project.output("flame", "sequence"))
        if seq.n_frames != self.n_frames:
            raise ProjectError(f"the FLAME fit has {seq.n_frames} frames but the tracking has {self.n_frames}",
                               f"run `avatar-studio run-stage {project.root} flame` again")
        expr = controls_from_sequence(seq)
        names = flame_control_names(expr.shape[1] - 1)
        meta = {**self.meta, "expression_names": names, "controls": "flame"}
        return TrackingData(root=self.root, fps=self.fps, frame_size=self.frame_size, crop_size=self.crop_size,
                            time=self.time, valid=self.valid, pose=self.pose, expr=expr, landmarks=self.landmarks,
                            transforms=self.transforms, meta=meta)

    # ------------------------------------------------------------------ views
    @property
    def n_frames(self) -> int:
        return len(self.valid)

    @property
    def expression_names(self) -> list[str]:
        return list(self.meta.get("expression_names", EXPRESSION_NAMES))

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(train_rows, heldout_rows); see `split_rows`."""
        return split_rows(self.n_frames, self.valid, self.meta.get("holdout_fraction", HOLDOUT_FRACTION))

    def crop_path(self, row: int) -> Path:
        return self.root / "crops" / f"{row:06d}.png"

    def matte_path(self, row: int) -> Path:
        return self.root / "mattes" / f"{row:06d}.png"

    def crop(self, row: int) -> np.ndarray:
        """(S, S, 3) uint8 RGB aligned crop of row `row`."""
        img = cv2.imread(str(self.crop_path(row)), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(self.crop_path(row))
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def matte(self, row: int) -> np.ndarray:
        """(S, S) float32 in [0, 1]."""
        m = cv2.imread(str(self.matte_path(row)), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise FileNotFoundError(self.matte_path(row))
        return m.astype(np.float32) / 255.0

    def crops(self, rows, size: int | None = None) -> np.ndarray:
        """(n, S, S, 3) uint8 crops, resized to `size` when given (area filter)."""
        out = []
        for r in rows:
            c = self.crop(int(r))
            if size and size != c.shape[0]:
                c = cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
            out.append(c)
        return np.stack(out) if out else np.zeros((0, size or self.crop_size, size or self.crop_size, 3), np.uint8)

    def mattes(self, rows, size: int | None = None) -> np.ndarray:
        out = []
        for r in rows:
            m = self.matte(int(r))
            if size and size != m.shape[0]:
                m = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
            out.append(m)
        return np.stack(out) if out else np.zeros((0, size or self.crop_size, size or self.crop_size), np.float32)

    @property
    def picture(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in frame pixels (x1, y1 exclusive): the part of the frame the video's picture
        holds, without the black bars the tracker found baked into the clip (`picture_box`; tracked
        before 2026-12-05: the whole frame)."""
        box = self.meta.get("picture")
        if box is None or len(box) != 4:
            return 0.0, 0.0, float(self.frame_size[0]), float(self.frame_size[1])
        return tuple(float(v) for v in box)

    def picture_masks(self, rows, size: int | None = None) -> np.ndarray:
        """(n, size, size) float32 in [0, 1]: how much of each pixel of each row's crop shows the video's
        picture; 0 where it shows one of the video's black bars (`crop_picture_share`). No control says
        where a bar lies in a crop (it moves with the head), so the engines are not trained on them
        (`studio.pvp.common.within_picture`, `models.latentavatar.training.compute_losses`). All ones for a
        video without bars. At the crop size, then area-resized to `size`."""
        S = self.crop_size
        size = size or S
        out = np.ones((len(rows), size, size), np.float32)
        full = (0.0, 0.0, float(self.frame_size[0]), float(self.frame_size[1]))
        if self.picture == full:
            return out
        for i, r in enumerate(rows):
            A = np.asarray(self.transforms[int(r)], np.float64)
            if not np.all(np.isfinite(A)) or abs(np.linalg.det(A[:, :2])) < 1e-12:
                continue
            m = crop_picture_share(A, S, self.frame_size, self.picture)
            out[i] = m if size == S else cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
        return out

    def source_masks(self, rows, size: int, ramp: float) -> np.ndarray:
        """(n, size, size) float32 in [0, 1]: how far each pixel of each row's crop (at `size`) lies inside the
        video's picture (`crop_source_share`, rising over `ramp` pixels at `size`); 1 for a row without a
        usable transform."""
        out = np.ones((len(rows), size, size), np.float32)
        to_size = centred_scale(size / self.crop_size)
        for i, r in enumerate(rows):
            A = np.asarray(self.transforms[int(r)], np.float64)
            if not np.all(np.isfinite(A)) or abs(np.linalg.det(A[:, :2])) < 1e-12:
                continue
            out[i] = crop_source_share(to_size @ np.vstack([A, [0.0, 0.0, 1.0]]), size, self.picture, ramp)
        return out

    def bar_masks(self, rows, size: int | None = None) -> np.ndarray | None:
        """`picture_masks`, or None when every crop shows the picture throughout (no black bar in these rows),
        so that callers can skip the masking."""
        m = self.picture_masks(rows, size)
        if not len(m) or m.min() >= 0.999:
            return None
        return m

    def picture_masks_u8(self, rows, size: int | None = None) -> np.ndarray | None:
        """`bar_masks` as (n, size, size) uint8 (255 where a crop shows the video's picture), or None (the
        form both engines' training keeps on its device)."""
        m = self.bar_masks(rows, size)
        return None if m is None else np.round(m * 255).astype(np.uint8)

    def crop_landmarks(self, row: int) -> np.ndarray:
        """(478, 2) landmarks of row `row` in crop pixels."""
        lm = self.landmarks[row, :, :2]
        A = self.transforms[row]
        return lm @ A[:, :2].T + A[:, 2]

    def crop_landmarks_at(self, rows, size: int) -> np.ndarray:
        """(n, 478, 2) landmarks of `rows` in pixels of their crops resized to `size`."""
        if not len(rows):
            return np.zeros((0, self.landmarks.shape[1], 2), np.float64)
        return np.stack([self.crop_landmarks(int(r)) for r in rows]) * (size / float(self.crop_size))

    def controls(self, rows=None) -> np.ndarray:
        """(n, 2 + E) [yaw, pitch, expr...]: the inputs the avatar mappers take."""
        rows = np.arange(self.n_frames) if rows is None else np.asarray(rows)
        return np.concatenate([self.pose[rows, :2], self.expr[rows]], axis=1).astype(np.float32)

    def control_ranges(self) -> dict[str, tuple[float, float]]:
        """Range (min..max) of each control over the training rows: the range seen in training."""
        train, _ = self.split()
        names = ["yaw", "pitch"] + self.expression_names
        vals = self.controls(train)
        lo, hi = vals.min(axis=0), vals.max(axis=0)
        return {n: (float(a), float(b)) for n, a, b in zip(names, lo, hi)}
