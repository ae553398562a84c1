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
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from . import geometry as geo
from .data import picture_box
from .expressions import apply_scaling, fit_scaling, raw_features

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
logging.getLogger("absl").setLevel(logging.ERROR)


class FaceMesh:
    """mediapipe face mesh on the whole image; returns the largest face's (478, 3) landmarks in pixels."""

    def __init__(self, video: bool = True, max_faces: int = 2, min_confidence: float = 0.5):
        from .mediapipe_io import face_mesh

        self._mesh = face_mesh(static_image_mode=not video, max_num_faces=max_faces, refine_landmarks=True,
                               min_detection_confidence=min_confidence, min_tracking_confidence=min_confidence)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray | None, int]:
        h, w = rgb.shape[:2]
        faces = self._mesh.process(np.ascontiguousarray(rgb)).multi_face_landmarks or []
        if not faces:
            return None, 0
        best, best_area = None, -1.0
        for f in faces:
            lm = f * np.array([w, h, w], np.float32)
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

        from .mediapipe_io import started_quietly

        self._seg = started_quietly(lambda: mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0))

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
    """Frames whose face is smaller than this are skipped ("face too small"): pixels of the decoded frame,
    measured as the eye distance the face would have seen from the front (`geometry.face_size`), so a head
    turned to a near profile, whose eyes close up in the image, is judged by its size, not by its turn."""
    mattes: bool = True
    follow: bool = True
    """Find the face on a downscaled frame and run the mesh on the face region (`roi.FaceFollower`);
    False runs the mesh on the whole frame (slower on large frames)."""
    redetect_every: int = 10
    """With `follow`: run the face detector at least every this many frames."""


@dataclass
class PassResult:
    n_frames: int
    valid: np.ndarray           # (N,) bool
    landmarks: np.ndarray       # (N, 478, 3) smoothed, frame pixels
    raw_landmarks: np.ndarray   # (N, 478, 3) unsmoothed
    transforms: np.ndarray      # (N, 2, 3)
    n_faces: np.ndarray         # (N,) faces seen
    reasons: dict               # why frames were skipped: {"no face": k, "face too small": k}
    picture: tuple | None = None  # (x0, y0, x1, y1): the frame less any black bars (`data.picture_box`)
    segments: np.ndarray | None = None
    """(N,) int: which stretch of one face each row belongs to (`face_jumped`; -1 where no face was usable)."""


JUMP_MOVE = 0.5
"""Half-sides of the crop box: a tracked face whose box centre moves further than this from one usable frame to
the next, while another face is in view, is another face (the tracker switched to a larger one that came into
view, or back). A head moves at most 0.08 of it between frames on the clips here (d3, d9, d14, driver_tps, d14
as a landscape clip with a small face); a switch between two faces side by side moved it 1.5-2.6."""

JUMP_SIZE = 1.5
"""... or whose box grows or shrinks by more than this factor (at most 1.07 between frames on those clips)."""


def face_jumped(prev_box: np.ndarray, box: np.ndarray, gap: int = 1) -> bool:
    """Whether the face of crop box `box` (`geometry.ffhq_box`) is too far from `prev_box`, `gap` frames
    earlier, to be the same face moving (`JUMP_MOVE`, `JUMP_SIZE`; a longer gap allows 0.15 half-sides a frame)."""
    half0, half1 = float(np.hypot(*prev_box[2:])), float(np.hypot(*box[2:]))
    if half0 <= 0 or half1 <= 0:
        return False
    move = float(np.hypot(*(box[:2] - prev_box[:2]))) / half0
    return move > max(JUMP_MOVE, 0.15 * gap) or abs(np.log(half1 / half0)) > np.log(JUMP_SIZE)


def other_face_rows(res: PassResult) -> np.ndarray:
    """Rows whose tracked face is not the subject's: the pass's stretches of one face (`PassResult.segments`,
    split where the tracked face jumped to another in view) are grouped into faces, each stretch joined to the
    latest earlier one (not of the face it jumped from) that ended where it begins, else to the face before the
    one it jumped from; the face tracked in the most rows is the subject's. Empty where the face never jumped."""
    seg = res.segments
    if seg is None:
        return np.zeros(0, np.int64)
    seg = np.where(res.valid, seg, -1)
    rows = [np.flatnonzero(seg == s) for s in np.unique(seg[seg >= 0])]
    n_seg = len(rows)
    if n_seg < 2:
        return np.zeros(0, np.int64)
    lm = res.raw_landmarks
    first = [geo.ffhq_box(lm[r[0], :, :2]) for r in rows]
    last = [geo.ffhq_box(lm[r[-1], :, :2]) for r in rows]
    face = [0, 1]     # the second stretch is another face: the tracked face jumped to it
    for j in range(2, n_seg):
        # the face of the latest earlier stretch (not the face jumped from) that ended where this one begins;
        # else the face before the one jumped from (two faces in view, the tracker going back and forth)
        near = [k for k in range(j - 2, -1, -1) if face[k] != face[j - 1] and not face_jumped(last[k], first[j])]
        face.append(face[near[0]] if near else face[j - 2])
    counts: dict[int, int] = collections.Counter()
    for s, r in enumerate(rows):
        counts[face[s]] += len(r)
    subject = max(counts, key=lambda f: (counts[f], -f))
    others = [r for s, r in enumerate(rows) if face[s] != subject]
    return np.sort(np.concatenate(others)) if others else np.zeros(0, np.int64)


def _usable(lm: np.ndarray | None, w: int, h: int, opts: TrackOptions) -> str | None:
    if lm is None:
        return "no face"
    if geo.face_size(lm[:, :2]) < opts.min_eye_distance:
        return "face too small"
    inside = (lm[:, 0] >= -0.05 * w) & (lm[:, 0] <= 1.05 * w) & (lm[:, 1] >= -0.05 * h) & (lm[:, 1] <= 1.05 * h)
    if inside.mean() < 0.85:
        return "face cut off by the frame edge"
    return None


def _one_blas_thread():
    """Limit OpenBLAS to one thread for the pass; returns the limiter (`.restore_original_limits()`).

    The per-frame NumPy work is small (smoothing windows, pose fits): a second BLAS thread only
    spins between calls, about 9 ms of CPU per frame on the 1080p benchmark clip."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        class _Nothing:
            def restore_original_limits(self):
                pass

        return _Nothing()
    return threadpool_limits(limits=1, user_api="blas")


class _CropWriter:
    """Cuts, segments and writes the aligned crops in a worker thread, so that the PNG encoding
    and the selfie segmentation of one frame overlap the face mesh of the next (OpenCV and
    mediapipe release the GIL while they work)."""

    def __init__(self, crops_dir: Path, mattes_dir: Path, size: int, seg: "Segmenter | None", depth: int = 4):
        self.crops_dir, self.mattes_dir, self.size, self.seg = crops_dir, mattes_dir, size, seg
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="crop-writer", daemon=True)
        self._thread.start()

    def _write(self, row: int, frame: np.ndarray, A: np.ndarray) -> None:
        crop = cv2.warpAffine(frame, A, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        path = self.crops_dir / f"{row:06d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]):
            raise OSError(f"could not write {path}")
        if self.seg is not None:
            m = self.seg(crop)
            path = self.mattes_dir / f"{row:06d}.png"
            if not cv2.imwrite(str(path), (m * 255 + 0.5).astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise OSError(f"could not write {path}")

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # handed to the caller by put/finish
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, row: int, frame: np.ndarray, A: np.ndarray) -> None:
        self._check()
        self._queue.put((row, frame, A))

    def finish(self) -> None:
        """Wait until everything queued is written; raise the worker's error if it had one."""
        self._queue.put(None)
        self._thread.join()
        self._check()

    def stop(self) -> None:
        """Stop the worker (after `finish`, or when the pass is abandoned)."""
        if self._thread.is_alive():
            while True:  # drop what is still queued so the worker sees the end at once
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put(None)
            self._thread.join()


def track_frames(frames: Iterable[np.ndarray], out_dir: Path, opts: TrackOptions,
                 on_frame: Callable[[int], None] | None = None) -> Iterator[int]:
    """Stream over frames; write crops/mattes into out_dir; yield the row count as it grows.

    The generator's return value (StopIteration.value) is a `PassResult`.
    """
    crops_dir, mattes_dir = out_dir / "crops", out_dir / "mattes"
    crops_dir.mkdir(parents=True, exist_ok=True)
    mattes_dir.mkdir(parents=True, exist_ok=True)
    if opts.follow:
        from .roi import FaceFollower

        mesh = FaceFollower(min_confidence=opts.min_confidence, redetect_every=opts.redetect_every)
    else:
        mesh = FaceMesh(video=True, max_faces=opts.max_faces, min_confidence=opts.min_confidence)
    seg = Segmenter() if opts.mattes else None
    radius = int(np.ceil(3 * max(opts.landmark_sigma, opts.box_sigma, 0.0)))
    raw_lm: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    valid: list[bool] = []
    n_faces: list[int] = []
    segments: list[int] = []     # stretches of one face: a new one where the tracked face jumps to another
    last_seen: tuple[int, np.ndarray] | None = None   # (row, box) of the last usable face
    stretch = 0
    reasons: dict[str, int] = collections.Counter()
    pending: collections.deque = collections.deque()  # (row, frame)
    smooth_lm: dict[int, np.ndarray] = {}
    transforms: dict[int, np.ndarray] = {}
    zero_lm = np.zeros((478, 3), np.float32)

    writer = _CropWriter(crops_dir, mattes_dir, opts.crop_size, seg)
    blas = _one_blas_thread()

    def finish(row: int, frame: np.ndarray) -> None:
        if not valid[row]:
            return
        lo, hi = max(0, row - radius), min(len(valid), row + radius + 1)
        v = np.array(valid[lo:hi], bool) & (np.array(segments[lo:hi]) == segments[row])   # never across a jump
        lm_win = np.stack(raw_lm[lo:hi])
        box_win = np.stack(boxes[lo:hi])
        lm_s = geo.smooth_at(lm_win, v, row - lo, opts.landmark_sigma)
        box_s = geo.smooth_at(box_win, v, row - lo, opts.box_sigma)
        A = geo.box_to_affine(box_s, opts.crop_size)
        writer.put(row, frame, A)
        smooth_lm[row] = lm_s.astype(np.float32)
        transforms[row] = A.astype(np.float32)

    brightest = None   # the brightest each pixel of the frame gets over the clip: black bars stay dark
    try:
        for row, frame in enumerate(frames):
            h, w = frame.shape[:2]
            level = frame.max(-1)
            brightest = level.copy() if brightest is None or brightest.shape != level.shape \
                else np.maximum(brightest, level, out=brightest)
            lm, nf = mesh(frame)
            why = _usable(lm, w, h, opts)
            ok = why is None
            if not ok:
                reasons[why] += 1
            raw_lm.append(lm if lm is not None else zero_lm)
            boxes.append(geo.ffhq_box(lm[:, :2]) if ok else np.zeros(4))
            valid.append(ok)
            n_faces.append(nf)
            if ok and last_seen is not None and max(nf, n_faces[last_seen[0]]) >= 2 \
                    and face_jumped(last_seen[1], boxes[-1], row - last_seen[0]):
                stretch += 1
            segments.append(stretch if ok else -1)
            if ok:
                last_seen = (row, boxes[-1])
            pending.append((row, frame))
            while pending and pending[0][0] <= row - radius:
                finish(*pending.popleft())
            if on_frame:
                on_frame(row)
            yield row + 1
        while pending:
            finish(*pending.popleft())
        writer.finish()
    finally:
        writer.stop()
        blas.restore_original_limits()
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
                      transforms=tf_arr, n_faces=np.array(n_faces, np.int16), reasons=dict(reasons),
                      picture=None if brightest is None else picture_box(brightest),
                      segments=np.array(segments, np.int32))


def drop_rows(res: PassResult, rows, reason: str, out_dir: Path) -> int:
    """Mark rows as without a usable face after the pass (e.g. frames the decoder could not
    produce, which repeat the last good frame) and remove their crops and mattes. Returns how
    many usable rows were dropped."""
    dropped = 0
    for r in rows:
        r = int(r)
        if not (0 <= r < res.n_frames) or not res.valid[r]:
            continue
        res.valid[r] = False
        if res.segments is not None:
            res.segments[r] = -1
        res.landmarks[r] = 0.0
        res.transforms[r] = 0.0
        for sub in ("crops", "mattes"):
            (out_dir / sub / f"{r:06d}.png").unlink(missing_ok=True)
        dropped += 1
    if dropped:
        res.reasons[reason] = res.reasons.get(reason, 0) + dropped
    return dropped


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
    blas = _one_blas_thread()  # one small SVD per frame: a second BLAS thread would only spin
    try:
        return _solve(landmarks, valid, max_shapes)
    finally:
        blas.restore_original_limits()


def _solve(landmarks: np.ndarray, valid: np.ndarray, max_shapes: int) -> Solved:
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
    scaling = fit_scaling(raw[rows], pose[rows])  # near-frontal frames preferred as the rest face
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
