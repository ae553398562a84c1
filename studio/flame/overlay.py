"""Draw a fitted FLAME mesh over the aligned crops, for the tracking report."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..report import grid, label, save_png

_SHIFT = 4  # sub-pixel bits for cv2 drawing


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """(F, 3) triangles → (M, 2) unique undirected edges."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(e, 1), axis=0)


def draw_mesh(image: np.ndarray, points: np.ndarray, faces: np.ndarray, color=(90, 220, 255),
              landmarks: np.ndarray | None = None, alpha: float = 0.6) -> np.ndarray:
    """Mesh wireframe over an RGB uint8 image.

    points: (V, 2) vertex positions in the image's pixels; faces: (F, 3); landmarks: optional
    (L, 2) tracked points drawn as small red dots. Returns a new image.
    """
    if image.ndim != 3 or image.shape[2] != 3 or points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"draw_mesh: expected an (H, W, 3) image and (V, 2) points, got {image.shape}, {points.shape}")
    layer = image.copy()
    p = np.round(points * (1 << _SHIFT)).astype(np.int64)
    lines = [p[e].reshape(2, 1, 2).astype(np.int32) for e in mesh_edges(np.asarray(faces))]
    cv2.polylines(layer, lines, False, color, 1, cv2.LINE_AA, _SHIFT)
    out = cv2.addWeighted(layer, alpha, image, 1 - alpha, 0)
    if landmarks is not None:
        for x, y in np.round(np.asarray(landmarks)[:, :2] * (1 << _SHIFT)).astype(np.int64):
            cv2.circle(out, (int(x), int(y)), 1 << _SHIFT, (255, 60, 60), -1, cv2.LINE_AA, _SHIFT)
    return out


def to_crop(points_px: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """(..., 2) frame pixels → crop pixels with a (2, 3) affine."""
    return points_px @ transform[:, :2].T + transform[:, 2]


def fit_overlays(fitter, tracking, rows, with_landmarks: bool = True) -> list[np.ndarray]:
    """The fitted mesh over the aligned crop of each row (a few frames for the report).

    fitter: a `FlameFitter` fitted to `tracking`'s landmarks; tracking: the project's
    `TrackingData` (crops and frame → crop transforms).
    """
    rows = [int(r) for r in rows]
    verts = fitter.vertices(rows)                                            # (n, V, 2) frame pixels
    faces = fitter.model.faces.numpy()
    out = []
    for i, r in enumerate(rows):
        A = tracking.transforms[r]
        lm = to_crop(tracking.landmarks[r, :, :2], A) if with_landmarks else None
        out.append(draw_mesh(tracking.crop(r), to_crop(verts[i], A), faces, landmarks=lm))
    return out


def save_fit_sheet(fitter, tracking, path: str | Path, count: int = 6, size: int = 256) -> Path:
    """A contact sheet of the fitted mesh over `count` crops spread over the clip, each labelled
    with its row and fit error; the frame with the largest error is always one of them. Written
    atomically as PNG."""
    fit = fitter.result()
    rows = np.flatnonzero(fit.fitted)
    pick = list(rows[np.linspace(0, len(rows) - 1, min(count, len(rows))).astype(int)])
    worst = int(rows[np.nanargmax(fit.error_px[rows])])
    if worst not in pick:
        pick[-1] = worst
    pick = sorted(set(int(r) for r in pick))
    tiles = []
    for r, img in zip(pick, fit_overlays(fitter, tracking, pick)):
        if img.shape[0] != size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        tiles.append(label(img, [f"frame {r}", f"{fit.error_px[r]:.2f} px ({fit.error_pct[r]:.2f} %)"]))
    path = Path(path)
    save_png(path, grid(tiles, cols=min(3, len(tiles))))
    return path
