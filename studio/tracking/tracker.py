"""Face tracking with mediapipe's face mesh (478 landmarks with iris) and selfie segmentation.

`track_frames` is one streaming pass over decoded frames: landmarks for every frame, Gaussian
smoothing of landmarks and crop boxes over a short window (so only that window of frames is
held in memory), FFHQ-aligned crops and mattes written as they become final. `solve_pose_and_
expressions` then fits the subject's canonical face and reads pose and named expressions.
`track_images` re-tracks images (e.g. renders) with a project's canonical face and scaling.
"""
from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from . import geometry as geo
from .expressions import apply_scaling, fit_scaling, raw_features

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
logging.getLogger("absl").setLevel(logging.ERROR)


class FaceMesh:
    """mediapipe face mesh; returns the largest face's (478, 3) landmarks in pixels."""

    def __init__(self, video: bool = True, max_faces: int = 2, min_confidence: float = 0.5):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=not video, max_num_faces=max_faces,
                                                     refine_landmarks=True, min_detection_confidence=min_confidence,
                                                     min_tracking_confidence=min_confidence)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray | None, int]:
        h, w = rgb.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(rgb))
        faces = res.multi_face_landmarks or []
        if not faces:
            return None, 0
        best, best_area = None, -1.0
        for f in faces:
            lm = np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], np.float32)
            area = float(np.ptp(lm[:, 0]) * np.ptp(lm[:, 1]))
            if area > best_area:
                best, best_area = lm, area
        return best, len(faces)

    def close(self) -> None:
        self._mesh.close()


class Segmenter:
    """mediapipe selfie segmentation: (H, W, 3) RGB → (H, W) float32 matte in [0, 1]."""

    def __init__(self):
        import mediapipe as mp

        self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        res = self._seg.process(np.ascontiguousarray(rgb))
        return np.clip(res.segmentation_mask, 0.0, 1.0).astype(np.float32)

    def close(self) -> None:
        self._seg.close()


@dataclass
class TrackOptions:
    crop_size: int = 256
    landmark_sigma: float = 1.0
    box_sigma: float = 2.0
    max_faces: int = 2
    min_confidence: float = 0.5
    min_eye_distance: float = 12.0
    mattes: bool = True


@dataclass
class PassResult:
    n_frames: int
    valid: np.ndarray           # (N,) bool
    landmarks: np.ndarray       # (N, 478, 3) smoothed, frame pixels
    raw_landmarks: np.ndarray   # (N, 478, 3) unsmoothed
    transforms: np.ndarray      # (N, 2, 3)
    n_faces: np.ndarray         # (N,) faces seen
    reasons: dict               # why frames were skipped: {"no face": k, "face too small": k}


def _usable(lm: np.ndarray | None, w: int, h: int, opts: TrackOptions) -> str | None:
    if lm is None:
        return "no face"
    eye_l, eye_r, _, _ = geo.eye_mouth_points(lm[:, :2])
    if np.hypot(*(eye_r - eye_l)) < opts.min_eye_distance:
        return "face too small"
    inside = (lm[:, 0] >= -0.05 * w) & (lm[:, 0] <= 1.05 * w) & (lm[:, 1] >= -0.05 * h) & (lm[:, 1] <= 1.05 * h)
    if inside.mean() < 0.85:
        return "face cut off by the frame edge"
    return None


def track_frames(frames: Iterable[np.ndarray], out_dir: Path, opts: TrackOptions,
                 on_frame: Callable[[int], None] | None = None) -> Iterator[int]:
    """Stream over frames; write crops/mattes into out_dir; yield the row count as it grows.

    The generator's return value (StopIteration.value) is a `PassResult`.
    """
    crops_dir, mattes_dir = out_dir / "crops", out_dir / "mattes"
    crops_dir.mkdir(parents=True, exist_ok=True)
    mattes_dir.mkdir(parents=True, exist_ok=True)
    mesh = FaceMesh(video=True, max_faces=opts.max_faces, min_confidence=opts.min_confidence)
    seg = Segmenter() if opts.mattes else None
    radius = int(np.ceil(3 * max(opts.landmark_sigma, opts.box_sigma, 0.0)))
    raw_lm: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    valid: list[bool] = []
    n_faces: list[int] = []
    reasons: dict[str, int] = collections.Counter()
    pending: collections.deque = collections.deque()  # (row, frame)
    smooth_lm: dict[int, np.ndarray] = {}
    transforms: dict[int, np.ndarray] = {}
    zero_lm = np.zeros((478, 3), np.float32)

    def finish(row: int, frame: np.ndarray) -> None:
        if not valid[row]:
            return
        lo, hi = max(0, row - radius), min(len(valid), row + radius + 1)
        v = np.array(valid[lo:hi], bool)
        lm_win = np.stack(raw_lm[lo:hi])
        box_win = np.stack(boxes[lo:hi])
        lm_s = geo.smooth_at(lm_win, v, row - lo, opts.landmark_sigma)
        box_s = geo.smooth_at(box_win, v, row - lo, opts.box_sigma)
        A = geo.box_to_affine(box_s, opts.crop_size)
        crop = cv2.warpAffine(frame, A, (opts.crop_size, opts.crop_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        cv2.imwrite(str(crops_dir / f"{row:06d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if seg is not None:
            m = seg(crop)
            cv2.imwrite(str(mattes_dir / f"{row:06d}.png"), (m * 255 + 0.5).astype(np.uint8),
                        [cv2.IMWRITE_PNG_COMPRESSION, 1])
        smooth_lm[row] = lm_s.astype(np.float32)
        transforms[row] = A.astype(np.float32)

    try:
        for row, frame in enumerate(frames):
            h, w = frame.shape[:2]
            lm, nf = mesh(frame)
            why = _usable(lm, w, h, opts)
            ok = why is None
            if not ok:
                reasons[why] += 1
            raw_lm.append(lm if lm is not None else zero_lm)
            boxes.append(geo.ffhq_box(lm[:, :2]) if ok else np.zeros(4))
            valid.append(ok)
            n_faces.append(nf)
            pending.append((row, frame))
            while pending and pending[0][0] <= row - radius:
                finish(*pending.popleft())
            if on_frame:
                on_frame(row)
            yield row + 1
        while pending:
            finish(*pending.popleft())
    finally:
        mesh.close()
        if seg is not None:
            seg.close()
    n = len(valid)
    lm_arr = np.zeros((n, 478, 3), np.float32)
    tf_arr = np.zeros((n, 2, 3), np.float32)
    for r, v in smooth_lm.items():
        lm_arr[r] = v
    for r, v in transforms.items():
        tf_arr[r] = v
    return PassResult(n_frames=n, valid=np.array(valid, bool), landmarks=lm_arr,
                      raw_landmarks=np.stack(raw_lm).astype(np.float32) if raw_lm else np.zeros((0, 478, 3), np.float32),
                      transforms=tf_arr, n_faces=np.array(n_faces, np.int16), reasons=dict(reasons))


@dataclass
class Solved:
    pose: np.ndarray        # (N, 3) yaw, pitch, roll
    expr: np.ndarray        # (N, E) scaled
    raw_expr: np.ndarray    # (N, E)
    canonical: np.ndarray   # (468, 3)
    rigid_idx: np.ndarray   # (K,)
    scaling: dict


def canonical_landmarks(lm_px: np.ndarray, canon: np.ndarray, rigid_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(478, 3) pixel landmarks → (R, Q): rotation and landmarks in the canonical frame."""
    p = geo.to_yup(lm_px)
    s, R, t = geo.fit_pose(p[: geo.MESH_POINTS], canon, rigid_idx)
    q = ((p - t) @ R) / s  # R^T (p - t) / s, row-vector form
    return R, q


def solve_pose_and_expressions(landmarks: np.ndarray, valid: np.ndarray, max_shapes: int = 400) -> Solved:
    n = len(valid)
    rows = np.flatnonzero(valid)
    pick = rows if len(rows) <= max_shapes else rows[np.linspace(0, len(rows) - 1, max_shapes).astype(int)]
    canon, rigid = geo.canonical_face(geo.to_yup(landmarks[pick, : geo.MESH_POINTS]))
    pose = np.zeros((n, 3), np.float32)
    raw = np.zeros((n, len(_names())), np.float64)
    for r in rows:
        R, q = canonical_landmarks(landmarks[r], canon, rigid)
        pose[r] = geo.rotation_to_euler(R)
        raw[r] = raw_features(q)
    scaling = fit_scaling(raw[rows])
    expr = np.zeros_like(raw, dtype=np.float32)
    expr[rows] = apply_scaling(raw[rows], scaling)
    return Solved(pose=pose, expr=expr, raw_expr=raw.astype(np.float32), canonical=canon.astype(np.float32),
                  rigid_idx=rigid.astype(np.int32), scaling=scaling)


def _names() -> list[str]:
    from .data import EXPRESSION_NAMES

    return EXPRESSION_NAMES


class ImageTracker:
    """Re-track single images (renders, driver crops) with a subject's canonical face and scaling."""

    def __init__(self, canonical: np.ndarray, rigid_idx: np.ndarray, scaling: dict, min_confidence: float = 0.5):
        self.canonical, self.rigid_idx, self.scaling = canonical, rigid_idx, scaling
        self._mesh = FaceMesh(video=False, max_faces=1, min_confidence=min_confidence)

    @classmethod
    def from_tracking(cls, tracking) -> "ImageTracker":
        with np.load(tracking.root / "tracking.npz") as z:
            canon, rigid = z["canonical"], z["rigid_idx"]
        return cls(canon, rigid, tracking.meta["expression_scaling"])

    def __call__(self, rgb: np.ndarray) -> dict | None:
        lm, _ = self._mesh(rgb)
        if lm is None:
            return None
        R, q = canonical_landmarks(lm, self.canonical, self.rigid_idx)
        raw = raw_features(q)
        return {"pose": np.array(geo.rotation_to_euler(R), np.float32),
                "expr": apply_scaling(raw[None], self.scaling)[0], "landmarks": lm}

    def close(self) -> None:
        self._mesh.close()


def track_images(images: Iterable[np.ndarray], tracking) -> list[dict | None]:
    """Track each RGB uint8 image; None where no face is found.

    Each result: {"pose": (yaw, pitch, roll) degrees, "expr": (E,) scaled like the subject's
    own tracking, "landmarks": (478, 3) pixels}. `tracking` is the project's `TrackingData`.
    """
    tr = ImageTracker.from_tracking(tracking)
    try:
        return [tr(img) for img in images]
    finally:
        tr.close()
