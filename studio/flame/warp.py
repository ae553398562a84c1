"""FLAME geometry on the render: move the face's landmarks as FLAME says a control change moves them.

Why: both engines learn the expressions the clip shows, and in a clip the FLAME coefficients move
together (with each other and with head pose). Moved alone, a slider then barely changes the render:
on d3 the trained engines showed 0-10 % of most coefficients' FLAME geometry (README, Measured),
while the same measure reads a real face warped along one coefficient at r 0.96-1.00. The engines
are faithful near the expression combinations they were trained on, so this module adds, on top of
the render, only the FLAME geometry that those combinations lack:

1. what the render shows: the training frames whose expression latent (the code the engine renders
   from: θ of the NeRF engine, the StyleGAN engine's early-layer offsets; each dimension
   standardised over the training frames) is nearest the render's, blended by
   exp(−(d / d_min − 1) / temperature). An engine that renders a slider faithfully moves its latent
   with it, so the frames follow and nothing is added; one that ignores a slider keeps its latent,
   and the slider's whole FLAME geometry is added. (Without an engine, the frames nearest by
   standardised controls stand in.)
2. the FLAME landmarks (the subject's fitted shape) of the rendered controls minus the blend of
   those frames' fitted landmarks, rotated by the fitted head rotation of the training frames
   nearest the render's yaw and pitch and scaled to the crop by a similarity fit of each such
   frame's FLAME landmarks to its tracked crop landmarks: a per-landmark image displacement;
3. that displacement spread over the image by normalised Gaussian interpolation (σ 3 px at 128 px,
   fading to zero away from the face) and applied with one bicubic backward warp.

For controls the clip shows, the frames the render shows are near them and the warp is near zero;
for one slider moved alone it is that slider's FLAME geometry. A warp cannot make what the render
lacks: a jaw opened further than the engine renders stretches the lips rather than showing teeth.
`Avatar` applies it to the engine's soft render, before detail from the video (whose flow then
follows the warped face), for avatars on FLAME controls when FLAME's files are present;
``Avatar.open(..., flame_geometry=False)``, the viewer's "FLAME geometry" box and the CLI's
``--no-flame-warp`` turn it off, and `studio.evaluation` scores the FLAME sliders both ways.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

REFERENCE_SIZE = 128


@dataclass(frozen=True)
class FlameWarpConfig:
    neighbours: int = 4
    """Training frames blended for what the render shows, and for where its landmarks are."""
    temperature: float = 0.5
    """Weight of a frame: exp(−(d / d_min − 1) / temperature), d its squared standardised distance."""
    pose_weight: float = 2.0
    """Weight of standardised yaw and pitch against each standardised expression control."""
    sigma: float = 3.0
    """σ (px at 128 px) of the Gaussian that spreads landmark displacements over the image."""
    fade: float = 0.05
    """Share of the peak landmark density below which the displacement fades to zero."""
    min_shift: float = 0.02
    """Largest landmark displacement (px) below which the render is returned unchanged."""


def similarity_to(points: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Scale s and translation t minimising ‖s · points + t − target‖² (no rotation): (L, 2) each."""
    pm, tm = points.mean(0), target.mean(0)
    p, q = points - pm, target - tm
    s = float((p * q).sum() / max((p * p).sum(), 1e-12))
    return s, tm - s * pm


class FlameGeometry:
    """The subject's FLAME fit and tracked landmarks of the training frames, ready to warp renders."""

    def __init__(self, model, embedding, shape: np.ndarray, expression: np.ndarray, jaw: np.ndarray,
                 rotation: np.ndarray, crop_landmarks: np.ndarray, controls: np.ndarray,
                 rest_expression: np.ndarray, rest_jaw: np.ndarray, size: int,
                 config: FlameWarpConfig = FlameWarpConfig(), latents=None):
        """`expression` (N, E), `jaw` (N, 3), `rotation` (N, 3) axis-angle: each training frame's fit;
        `crop_landmarks` (N, 478, 2): tracked landmarks in render pixels; `controls` (N, 2 + 1 + E'):
        the frames' controls as the engine takes them (measured from the rest face
        `rest_expression`, `rest_jaw`); `latents`: the engine's ``expression_latents`` (controls →
        (B, D)), or None to compare controls instead."""
        import torch

        from models.flame import rodrigues

        from ..detail import ControlIndex

        self.model, self.size, self.config = model, int(size), config
        self._face_idx = torch.as_tensor(embedding.face_idx).long()
        self._bary = torch.as_tensor(embedding.bary, dtype=torch.float32)
        self._shape = torch.as_tensor(np.asarray(shape, np.float32))[None]
        self.n_expression = int(expression.shape[1])
        self._rest_expression = np.asarray(rest_expression, np.float32)
        self._rest_jaw = np.asarray(rest_jaw, np.float32)
        controls = np.asarray(controls, np.float32)
        self._controls = controls
        self._latents = latents
        if latents is not None:
            z = np.asarray(latents(controls), np.float64)
            self._z_mean, self._z_std = z.mean(0), np.maximum(z.std(0), 1e-6)
            self._z = (z - self._z_mean) / self._z_std
        else:
            self._index = ControlIndex(controls, config.pose_weight)
        pose = np.asarray(controls[:, :2], np.float64)
        self._pose_mean, self._pose_std = pose.mean(0), np.maximum(pose.std(0), 1e-6)
        self._pose = (pose - self._pose_mean) / self._pose_std
        # each frame's landmarks in FLAME's space (eyes at rest: they cancel in the differences)
        self._lm = self._landmarks(np.asarray(expression, np.float32), np.asarray(jaw, np.float32))  # (N, L, 3)
        self._R = rodrigues(torch.as_tensor(np.asarray(rotation, np.float32))).numpy()             # (N, 3, 3)
        # which tracked landmark each embedding landmark is (the embedding covers MediaPipe's points)
        ids = np.asarray(getattr(embedding, "landmark_indices", np.arange(self._lm.shape[1])), int)
        self._src = np.asarray(crop_landmarks, np.float64)[:, ids]                                  # (N, L, 2)
        self._scale = np.empty(len(self._lm))
        for j in range(len(self._lm)):
            self._scale[j], _ = similarity_to(self._project(j, self._lm[j]), self._src[j])
        self._sigma = config.sigma * self.size / REFERENCE_SIZE

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_project(cls, project, size: int, engine=None,
                     config: FlameWarpConfig = FlameWarpConfig()) -> "FlameGeometry | None":
        """None when FLAME's files are not configured or the project has no FLAME fit. `engine`: the
        avatar's engine; when it has ``expression_latents`` the frames a render shows are found by them."""
        from ..errors import StudioError
        from ..model_files import flame_paths
        from ..tracking.data import TrackingData
        from .controls import rest_controls
        from .files import load_flame
        from .sequences import read_sequence

        paths = flame_paths()
        if paths is None or project.record("flame").get("status") != "done":
            return None
        try:
            tracking = TrackingData.from_project(project, controls="flame")
            train, _ = tracking.split()
            seq = read_sequence(project.output("flame", "sequence"))
            with np.load(project.output("flame", "sequence")) as z:
                shape = z["shape"] if "shape" in z.files else None
            rest = rest_controls(seq)
            if shape is None or rest is None or seq.pose is None or not len(train):
                return None
            model, emb = load_flame(*paths)
            scale = size / float(tracking.crop_size)
            crop_lm = np.stack([tracking.crop_landmarks(int(r)) for r in train]) * scale
            return cls(model, emb, shape, seq.expression[train], seq.jaw[train], seq.pose[train], crop_lm,
                       tracking.controls(train), seq.rest_expression, seq.rest_jaw, size, config,
                       latents=getattr(engine, "expression_latents", None))
        except (StudioError, OSError, KeyError, ValueError):
            return None

    # ------------------------------------------------------------------ geometry
    def _landmarks(self, expression: np.ndarray, jaw: np.ndarray) -> np.ndarray:
        """(B, E) coefficients and (B, 3) jaw axis-angle → (B, L, 3) FLAME landmarks (float64)."""
        import torch

        with torch.no_grad():
            B = len(expression)
            lm = self.model.landmarks(self._face_idx, self._bary, shape=self._shape.expand(B, -1),
                                      expression=torch.as_tensor(expression, dtype=torch.float32),
                                      jaw_pose=torch.as_tensor(jaw, dtype=torch.float32), batch_size=B)
        return lm.numpy().astype(np.float64)

    def _project(self, j: int, points: np.ndarray) -> np.ndarray:
        """(..., L, 3) FLAME points → (..., L, 2) image directions (x right, y down) in frame j's
        head rotation, before scale."""
        cam = points @ self._R[j].T
        return np.stack([cam[..., 0], -cam[..., 1]], -1)

    def flame_parameters(self, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 2 + 1 + E') controls → (B, E) expression and (B, 3) jaw of FLAME (the rest face added
        back; coefficients the controls lack stay at the rest face's)."""
        c = np.asarray(controls, np.float32)
        B = len(c)
        expr = np.repeat(self._rest_expression[None, :self.n_expression], B, 0).copy()
        k = min(self.n_expression, c.shape[1] - 3)
        expr[:, :k] += c[:, 3:3 + k]
        jaw = np.repeat(self._rest_jaw[None], B, 0).copy()
        jaw[:, 0] += c[:, 2]
        return expr, jaw

    def _nearest(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, N) squared distances → (B, k) indices and weights summing to 1."""
        from ..detail import soft_nearest

        return soft_nearest(d, self.config.neighbours, self.config.temperature, relative=True)

    def shown(self, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, C) controls → (B, k) training frames whose expression the render shows, and weights."""
        c = np.asarray(controls, np.float32).reshape(len(controls), -1)
        if self._latents is None:
            return self._nearest(self._index.distances(c))
        z = (np.asarray(self._latents(c), np.float64) - self._z_mean) / self._z_std
        a = self._z
        d = ((z ** 2).sum(1)[:, None] - 2 * z @ a.T + (a ** 2).sum(1)[None]) / z.shape[1]
        return self._nearest(np.maximum(d, 0.0))

    def displacements(self, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, C) controls → where each landmark is in the render (B, L, 2) and how far FLAME says
        it should move (B, L, 2), in render pixels."""
        c = np.asarray(controls, np.float32).reshape(len(controls), -1)
        idx, w = self.shown(c)
        p = (np.asarray(c[:, :2], np.float64) - self._pose_mean) / self._pose_std
        d_pose = ((p[:, None] - self._pose[None]) ** 2).sum(-1)
        pidx, pw = self._nearest(d_pose)
        target = self._landmarks(*self.flame_parameters(c))                        # (B, L, 3)
        where = np.zeros((len(c),) + self._src.shape[1:])
        shift = np.zeros_like(where)
        for b in range(len(c)):
            delta = target[b] - np.tensordot(w[b], self._lm[idx[b]], axes=1)        # (L, 3) FLAME space
            for m, vm in zip(pidx[b], pw[b]):
                where[b] += vm * self._src[m]
                shift[b] += vm * self._scale[m] * self._project(m, delta)
        return where, shift

    # ------------------------------------------------------------------ the warp
    def field(self, where: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """(L, 2) landmark positions and displacements → (S, S, 2) backward map offsets (where each
        output pixel samples the render, minus the pixel's own position): the displacements splatted
        (bilinear) at the landmarks' destinations, Gaussian-blurred and divided by the blurred
        splat weight, which fades to zero away from the face."""
        S = self.size
        dst = where + shift
        x, y = dst[:, 0], dst[:, 1]
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = x - x0, y - y0
        den = np.zeros((S, S), np.float64)
        num = np.zeros((S, S, 2), np.float64)
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = x0 + dx, y0 + dy
            ok = (xi >= 0) & (xi < S) & (yi >= 0) & (yi < S)
            np.add.at(den, (yi[ok], xi[ok]), w[ok])
            np.add.at(num, (yi[ok], xi[ok]), w[ok, None] * shift[ok])
        den = cv2.GaussianBlur(den.astype(np.float32), (0, 0), self._sigma)
        num = cv2.GaussianBlur(num.astype(np.float32), (0, 0), self._sigma)
        return -num / (den + self.config.fade * max(float(den.max()), 1e-12))[..., None]

    def fields(self, controls: np.ndarray) -> list:
        """(B, C) controls → per render the (S, S, 2) backward offsets of FLAME's geometry, or None where
        no landmark moves more than `min_shift` (see `field`)."""
        where, shift = self.displacements(controls)
        return [None if np.abs(shift[b]).max(initial=0.0) < self.config.min_shift else self.field(where[b], shift[b])
                for b in range(len(shift))]

    def warp_image(self, image: np.ndarray, where: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 image with the points `where` (L, 2) moved by `shift` (L, 2) px, smoothly
        in between (see `field`); unchanged when no point moves more than `min_shift`."""
        if np.abs(shift).max(initial=0.0) < self.config.min_shift:
            return image
        return remap_by(image, self.field(where, shift))

    def apply(self, images: np.ndarray, controls: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 renders of `controls` (B, C) → the same with FLAME's geometry added."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"expected (B, {self.size}, {self.size}, 3) renders, got {images.shape}")
        return remap_each(images, self.fields(controls))


def remap_each(images: np.ndarray, fields: list | None) -> np.ndarray:
    """`remap_by` of each image by its field (None: the image as it is); `images` itself when
    `fields` is None."""
    if fields is None:
        return images
    return np.stack([im if f is None else remap_by(im, f) for im, f in zip(images, fields)])


def remap_by(image: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(S, S, C) image sampled at each pixel's position plus `offsets` (S, S, 2), bicubic; same dtype."""
    S = image.shape[0]
    gy, gx = np.mgrid[0:S, 0:S].astype(np.float32)
    out = cv2.remap(image.astype(np.float32), gx + offsets[..., 0], gy + offsets[..., 1], cv2.INTER_CUBIC,
                    borderMode=cv2.BORDER_REFLECT)
    if image.dtype == np.uint8:
        return np.clip(out, 0, 255).astype(np.uint8)
    return out.astype(image.dtype)
