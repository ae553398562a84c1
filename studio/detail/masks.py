"""Regions of a frame or a render as soft (N, S, S) masks: the eyes, brows and mouth from the tracked
landmarks (`feature_masks`; each region on its own: `region_masks`), the face mesh's hull
(`face_hull_masks`), and where an appearance edit changed the render (`edit_keep_mask`)."""
from __future__ import annotations

import cv2
import numpy as np

from .config import REFERENCE_SIZE


def _draw_regions(m: np.ndarray, lm: np.ndarray, regions, kernel, grow: float) -> None:
    """Fill the convex hull of each landmark index set of `regions` into `m` (in place), grown and feathered."""
    for idx in regions:
        cv2.fillConvexPoly(m, cv2.convexHull(lm[list(idx)]).astype(np.int32), 1.0)
    if kernel is not None:
        m[:] = cv2.GaussianBlur(cv2.dilate(m, kernel), (0, 0), grow / 2 + 1.0)


def _grow_kernel(grow: float):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(round(grow)) + 1,) * 2) if grow > 0 else None


def feature_masks(landmarks: np.ndarray, size: int, grow: float) -> np.ndarray:
    """(N, P, 2) face-mesh landmarks in pixels of a `size` image → (N, size, size) float32 masks, 1 over
    the eyes with their brows and the mouth (`studio.tracking.geometry.FEATURE_REGIONS`), grown by
    `grow` px and feathered. A frame whose landmarks are missing (NaN) gets 1 everywhere."""
    from ..tracking.geometry import FEATURE_REGIONS

    lms = np.asarray(landmarks, np.float32)
    out = np.zeros((len(lms), size, size), np.float32)
    k = _grow_kernel(grow)
    for m, lm in zip(out, lms):
        if not np.isfinite(lm).all():
            m[:] = 1.0
            continue
        _draw_regions(m, lm, FEATURE_REGIONS, k, grow)
    return np.clip(out, 0.0, 1.0)


def region_masks(landmarks: np.ndarray, size: int, grow: float, parts=((0, 1, 2),)) -> np.ndarray:
    """One frame's (P, 2) face-mesh landmarks in pixels of a `size` image → (R, size, size) float32 masks,
    one per entry of `parts` (each a tuple of indices into `studio.tracking.geometry.FEATURE_REGIONS`:
    0 the subject's right eye with its brow, 1 the left, 2 the mouth), grown by `grow` px and feathered
    as `feature_masks`. Missing landmarks (NaN): all 0 (no region can be told apart)."""
    from ..tracking.geometry import FEATURE_REGIONS

    lm = np.asarray(landmarks, np.float32)
    out = np.zeros((len(parts), size, size), np.float32)
    if not np.isfinite(lm).all():
        return out
    k = _grow_kernel(grow)
    for m, part in zip(out, parts):
        _draw_regions(m, lm, [FEATURE_REGIONS[i] for i in part], k, grow)
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


def edit_keep_mask(edited: np.ndarray, unedited: np.ndarray, size: int,
                   low: float = 6.0, high: float = 24.0) -> np.ndarray:
    """(B, S, S) float in [0, 1]: where an appearance edit changed the render (blurred absolute
    difference of the two renders, mean over colour, 0 below `low` and 1 above `high` grey levels),
    so the render's own detail is added there."""
    diff = np.abs(edited.astype(np.float32) - unedited.astype(np.float32)).mean(-1)
    sigma = 2.0 * size / REFERENCE_SIZE
    diff = np.stack([cv2.GaussianBlur(d, (0, 0), sigma) for d in diff])
    return np.clip((diff - low) / (high - low), 0, 1)
