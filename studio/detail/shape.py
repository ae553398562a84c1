"""The face's shape the controls predict, and the warp that moves a frame's face toward it: a ridge
regression from controls to the tracked mesh (`ShapeModel`), the mesh's triangulation over the image
(`MeshLattice`), and the smoothed, capped backward offsets between two meshes (`shape_field`)."""
from __future__ import annotations

import cv2
import numpy as np


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
