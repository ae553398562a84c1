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

    def crop_landmarks(self, row: int) -> np.ndarray:
        """(478, 2) landmarks of row `row` in crop pixels."""
        lm = self.landmarks[row, :, :2]
        A = self.transforms[row]
        return lm @ A[:, :2].T + A[:, 2]

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
