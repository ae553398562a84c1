"""Fit FLAME to tracked MediaPipe landmarks: per-frame expression, jaw, eyes, eyelids and head pose,
one shape vector for the clip.

Camera: orthographic with a per-frame scale (weak perspective), since the landmarks are in image
pixels. A FLAME point v (metres, y up, z towards the viewer) lands at

    u = s · (R v)_x + t_x,      w = −s · (R v)_y + t_y        (pixels, y down)

with R = rodrigues(rotation) the head rotation (FLAME's root joint stays at zero; the neck is not
separable from it in landmarks). MediaPipe's z is ignored by default (`z_weight`).

Loss per step, over the frames in the step (f) and the embedding's landmarks (l):

    mean_f,l ‖(p̂ − p) / face_f · 100‖²                 landmark error in % of the face size
  + w_expression · mean_f ‖ψ_f‖² + w_jaw · mean_f ‖jaw_f‖² + w_eyes … + w_eyelids …
  + w_shape · ‖β‖²
  + w_smooth · mean over consecutive tracked frames of ‖x_f − x_f−1‖² (expression, jaw, eyes,
    eyelids, rotation, translation / face, log scale)

face_f = sqrt(width · height) of the bounding box of frame f's tracked landmarks.
Adam, learning rate with a cosine decay to 10 % over `steps`; the first `rigid_steps` move only the
head pose, scale and translation (initialised per frame by a similarity fit of the template's
landmarks, so no frame starts facing the wrong way).

`FlameFitter` is what a training loop drives: ``step(i)`` does one update over all frames (or over
the next window of `batch_frames` consecutive frames) and returns the losses; `state_dict` /
`load_state_dict` make it resumable; `result()` gives a `FlameFit`. `fit_all` runs it to the end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from models.flame import FLAME, rodrigues
from models.flame_pickle import LandmarkEmbedding

from ..errors import InputError
from ..tracking import geometry as geo


@dataclass
class FitConfig:
    n_expression: int = 50
    """Expression coefficients fitted per frame (PVP and DECA use the first 50)."""
    n_shape: int = 100
    """Shape coefficients fitted once for the clip."""
    steps: int = 300
    """Optimisation steps (each over all frames, or over one window of `batch_frames`)."""
    rigid_steps: int = 60
    """The first steps move only head rotation, scale and translation."""
    lr: float = 0.03
    """Adam learning rate (cosine decay to 10 % over `steps`)."""
    batch_frames: int = 0
    """Frames per step (consecutive windows, cycling); 0 = all frames every step."""
    w_expression: float = 1e-3
    """L2 on the expression coefficients (per frame, sum over coefficients)."""
    w_jaw: float = 1e-2
    """L2 on the jaw rotation (radians)."""
    w_eyes: float = 1e-2
    """L2 on the eye rotations (radians)."""
    w_eyelids: float = 1e-2
    """L2 on the eyelid coefficients."""
    w_shape: float = 1e-3
    """L2 on the shape coefficients."""
    w_smooth: float = 0.05
    """Temporal smoothness between consecutive tracked frames."""
    z_weight: float = 0.0
    """Weight of MediaPipe's (relative, inferred) depth in the landmark loss; 0 = 2D only."""
    fit_eyes: str = "auto"
    """"auto": fit eye rotations when the embedding has landmarks on the eyeballs; "yes"; "no"."""


@dataclass
class FlameFit:
    """A clip's fitted FLAME parameters. Per-frame arrays have one row per tracked row (N);
    rows that were not fitted (no face) hold zeros and NaN errors, `fitted` says which."""

    fitted: np.ndarray       # (N,) bool
    shape: np.ndarray        # (S,) one identity for the clip
    expression: np.ndarray   # (N, E)
    jaw: np.ndarray          # (N, 3) axis-angle, radians
    eyes: np.ndarray         # (N, 6) left then right eye axis-angle (zeros when not fitted)
    eyelids: np.ndarray      # (N, 2) (zeros when the model has none)
    rotation: np.ndarray     # (N, 3) head rotation axis-angle (FLAME frame: y up, z to the viewer)
    scale: np.ndarray        # (N,) pixels per metre
    translation: np.ndarray  # (N, 2) pixels
    error_px: np.ndarray     # (N,) mean landmark distance in pixels
    error_pct: np.ndarray    # (N,) the same in % of the face size
    face_px: np.ndarray      # (N,) face size in pixels (sqrt of the landmark box area)
    eyes_fitted: bool = False
    info: dict = field(default_factory=dict)

    def summary(self) -> dict:
        e, p = self.error_px[self.fitted], self.error_pct[self.fitted]
        return {"frames": int(self.fitted.sum()), "error_px_mean": float(e.mean()) if len(e) else float("nan"),
                "error_px_p95": float(np.percentile(e, 95)) if len(e) else float("nan"),
                "error_pct_mean": float(p.mean()) if len(p) else float("nan"),
                "error_pct_max": float(p.max()) if len(p) else float("nan")}


def face_size(landmarks_px: np.ndarray) -> np.ndarray:
    """(N, P, ≥2) → (N,) sqrt(width · height) of each frame's landmark bounding box."""
    xy = landmarks_px[..., :2]
    span = xy.max(-2) - xy.min(-2)
    return np.sqrt(np.maximum(span[..., 0] * span[..., 1], 1e-6))


def rotation_log(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) → axis-angle (3,)."""
    cos = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    theta = math.acos(cos)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if theta < 1e-6:
        return w / 2
    if math.pi - theta < 1e-4:  # near 180°: axis from the symmetric part
        axis = np.sqrt(np.maximum((np.diag(R) + 1) / 2, 0))
        axis *= np.sign(w + (w == 0))
        return axis / np.linalg.norm(axis) * theta
    return w * theta / (2 * math.sin(theta))


class FlameFitter:
    """Fits FLAME to (N, 478, 3) pixel landmarks; see the module docstring for the model."""

    def __init__(self, model: FLAME, embedding: LandmarkEmbedding, landmarks_px: np.ndarray,
                 valid: np.ndarray | None = None, config: FitConfig | None = None):
        cfg = config or FitConfig()
        self.cfg = cfg
        self.model = model
        lm = np.asarray(landmarks_px, np.float64)
        if lm.ndim != 3 or lm.shape[2] < 2:
            raise InputError(f"FLAME fitting needs (frames, landmarks, 2 or 3) pixel landmarks, got {lm.shape}")
        if embedding.landmark_indices.max() >= lm.shape[1]:
            raise InputError(f"the landmark embedding uses MediaPipe landmark {int(embedding.landmark_indices.max())} "
                             f"but the tracking has {lm.shape[1]} per frame",
                             "track with mediapipe's 478-point face mesh")
        embedding.check(int(model.faces.shape[0]))
        valid = np.ones(len(lm), bool) if valid is None else np.asarray(valid, bool)
        self.n_rows = len(lm)
        self.rows = np.flatnonzero(valid)
        if len(self.rows) == 0:
            raise InputError("no tracked face to fit FLAME to", "check the tracking report")
        n_expr = min(cfg.n_expression, model.n_expr)
        n_shape = min(cfg.n_shape, model.n_shape)
        self.face_idx = torch.as_tensor(embedding.face_idx)
        self.bary = torch.as_tensor(embedding.bary, dtype=torch.float32)
        ids = embedding.landmark_indices
        F = len(self.rows)
        target = lm[self.rows][:, ids]                                           # (F, L, 2|3)
        self.face = face_size(lm[self.rows])                                     # (F,)
        self.target = torch.as_tensor(target[..., :2], dtype=torch.float32)
        self.target_z = torch.as_tensor(target[..., 2], dtype=torch.float32) if target.shape[2] > 2 else None
        self.face_t = torch.as_tensor(self.face, dtype=torch.float32)
        # consecutive tracked frames (for the smoothness term)
        self.pairs = torch.as_tensor(np.flatnonzero(np.diff(self.rows) == 1))
        # which parameters are observable
        w = model.lbs_weights[model.embedding_vertices(self.face_idx)[0]]        # (K, J)
        eyes_seen = bool((w[:, 3:5] > 0.5).any())
        self.eyes_on = cfg.fit_eyes == "yes" or (cfg.fit_eyes == "auto" and eyes_seen)
        self.eyelids_on = model.has_eyelids
        p = {"shape": torch.zeros(1, n_shape), "expression": torch.zeros(F, n_expr), "jaw": torch.zeros(F, 3),
             "eyes": torch.zeros(F, 6), "eyelids": torch.zeros(F, 2)}
        p.update(self._init_rigid(target))
        self.params = {k: torch.nn.Parameter(v.float()) for k, v in p.items()}
        self.rigid = ("rotation", "log_scale", "trans")
        self.opt = torch.optim.Adam(list(self.params.values()), lr=cfg.lr)
        self.steps_done = 0
        self.cursor = 0

    # ------------------------------------------------------------------ set-up
    def _template_landmarks(self) -> np.ndarray:
        with torch.no_grad():
            return self.model.landmarks(self.face_idx, self.bary, batch_size=1)[0].double().numpy()

    def _init_rigid(self, target: np.ndarray) -> dict:
        """Per-frame similarity fit (template landmarks → y-up landmarks) for rotation, scale, shift."""
        tmpl = self._template_landmarks()                                        # (L, 3) metres
        F = len(target)
        rot, log_s, trans = np.zeros((F, 3)), np.zeros((F, 1)), np.zeros((F, 2))
        for f in range(F):
            pts = target[f]
            if pts.shape[1] < 3:  # no depth: a flat face, rotation from the 2D similarity only
                pts = np.concatenate([pts, np.zeros((len(pts), 1))], 1)
            s, R, t = geo.umeyama(tmpl, geo.to_yup(pts))
            rot[f] = rotation_log(R)
            log_s[f] = math.log(max(s, 1e-6))
            trans[f] = (t[0], -t[1])
        trans /= self.face[:, None]                                              # optimised in face units
        return {"rotation": torch.as_tensor(rot), "log_scale": torch.as_tensor(log_s),
                "trans": torch.as_tensor(trans)}

    # ------------------------------------------------------------------ model
    def _project(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, L, 2) pixel positions and (n, L) depths (pixels, towards the viewer) of frames `idx`."""
        p = self.params
        n = len(idx)
        pts = self.model.landmarks(self.face_idx, self.bary, shape=p["shape"], expression=p["expression"][idx],
                                   jaw_pose=p["jaw"][idx], eye_pose=p["eyes"][idx] if self.eyes_on else None,
                                   eyelids=p["eyelids"][idx] if self.eyelids_on else None, batch_size=n)
        cam = pts @ rodrigues(p["rotation"][idx]).transpose(1, 2)                # (n, L, 3)
        s = p["log_scale"][idx].exp()[:, :, None]                               # (n, 1, 1)
        face = self.face_t[idx][:, None]
        uv = torch.stack([cam[..., 0], -cam[..., 1]], -1) * s + (p["trans"][idx] * face)[:, None]
        return uv, cam[..., 2] * s[..., 0]

    def _frames(self) -> torch.Tensor:
        F = len(self.rows)
        b = self.cfg.batch_frames
        if not b or b >= F:
            return torch.arange(F)
        start = self.cursor % F
        idx = torch.arange(start, min(F, start + b))
        self.cursor = (start + b) % F if start + b < F else 0
        return idx

    def _loss(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict]:
        cfg, p = self.cfg, self.params
        uv, z = self._project(idx)
        face = self.face_t[idx][:, None, None]
        lmk = (((uv - self.target[idx]) / face * 100) ** 2).sum(-1).mean()
        loss = lmk
        if cfg.z_weight and self.target_z is not None:
            # MediaPipe z: away from the camera, relative to the face centre; compare after centring
            zt = -self.target_z[idx]
            dz = (z - z.mean(1, keepdim=True)) - (zt - zt.mean(1, keepdim=True))
            loss = loss + cfg.z_weight * ((dz / face[..., 0] * 100) ** 2).mean()
        reg = cfg.w_expression * (p["expression"][idx] ** 2).sum(1).mean() + cfg.w_jaw * (p["jaw"][idx] ** 2).sum(1).mean()
        reg = reg + cfg.w_shape * (p["shape"] ** 2).sum()
        if self.eyes_on:
            reg = reg + cfg.w_eyes * (p["eyes"][idx] ** 2).sum(1).mean()
        if self.eyelids_on:
            reg = reg + cfg.w_eyelids * (p["eyelids"][idx] ** 2).sum(1).mean()
        smooth = torch.zeros(())
        inside = set(idx.tolist())
        pairs = [int(a) for a in self.pairs if int(a) in inside and int(a) + 1 in inside]
        if cfg.w_smooth and pairs:
            a = torch.as_tensor(pairs)
            for name in ("expression", "jaw", "rotation", "trans", "log_scale") + \
                    (("eyes",) if self.eyes_on else ()) + (("eyelids",) if self.eyelids_on else ()):
                smooth = smooth + ((p[name][a + 1] - p[name][a]) ** 2).sum(1).mean()
            loss = loss + cfg.w_smooth * smooth
        loss = loss + reg
        return loss, {"landmarks": float(lmk.detach()), "reg": float(reg.detach()), "smooth": float(smooth.detach())}

    # ------------------------------------------------------------------ training-loop API
    def step(self, i: int | None = None) -> dict:
        """One Adam update; returns {"loss", "landmarks" (mean squared % of face), "reg", "smooth", "lr"}."""
        cfg = self.cfg
        t = self.steps_done if i is None else int(i)
        lr = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, cfg.steps) / max(cfg.steps, 1))))
        for g in self.opt.param_groups:
            g["lr"] = lr
        idx = self._frames()
        self.opt.zero_grad(set_to_none=False)
        loss, logs = self._loss(idx)
        loss.backward()
        if t < cfg.rigid_steps:
            for name, prm in self.params.items():
                if name not in self.rigid and prm.grad is not None:
                    prm.grad.zero_()
        self.opt.step()
        self.steps_done = t + 1
        return {"loss": float(loss.detach()), **logs, "lr": lr}

    def state_dict(self) -> dict:
        return {"params": {k: v.detach().clone() for k, v in self.params.items()}, "opt": self.opt.state_dict(),
                "steps_done": self.steps_done, "cursor": self.cursor, "rows": torch.as_tensor(self.rows)}

    def load_state_dict(self, state: dict) -> None:
        rows = np.asarray(state["rows"])
        if not np.array_equal(rows, self.rows):
            raise ValueError("the saved FLAME fit belongs to other tracked frames")
        with torch.no_grad():
            for k, v in state["params"].items():
                if self.params[k].shape != v.shape:
                    raise ValueError(f"the saved FLAME fit has {k} of shape {tuple(v.shape)}, "
                                     f"expected {tuple(self.params[k].shape)}")
                self.params[k].copy_(v)
        self.opt.load_state_dict(state["opt"])
        self.steps_done = int(state["steps_done"])
        self.cursor = int(state["cursor"])

    @torch.no_grad()
    def result(self) -> FlameFit:
        p = self.params
        F = len(self.rows)
        uv = torch.cat([self._project(torch.arange(a, min(F, a + 256)))[0] for a in range(0, F, 256)])
        err = (uv - self.target).norm(dim=-1).mean(-1).numpy().astype(np.float64)  # (F,)
        N = self.n_rows

        def full(x: torch.Tensor, fill=0.0) -> np.ndarray:
            x = x.detach().numpy().astype(np.float64)
            out = np.full((N,) + x.shape[1:], fill)
            out[self.rows] = x
            return out

        fitted = np.zeros(N, bool)
        fitted[self.rows] = True
        face = np.full(N, np.nan)
        face[self.rows] = self.face
        err_px = np.full(N, np.nan)
        err_px[self.rows] = err
        return FlameFit(fitted=fitted, shape=p["shape"][0].detach().numpy().astype(np.float64),
                        expression=full(p["expression"]), jaw=full(p["jaw"]),
                        eyes=full(p["eyes"]) if self.eyes_on else np.zeros((N, 6)),
                        eyelids=full(p["eyelids"]) if self.eyelids_on else np.zeros((N, 2)),
                        rotation=full(p["rotation"]), scale=full(p["log_scale"].exp())[:, 0],
                        translation=full(p["trans"] * self.face_t[:, None]), error_px=err_px,
                        error_pct=err_px / face * 100, face_px=face, eyes_fitted=self.eyes_on,
                        info={"steps": self.steps_done, "landmarks": int(self.target.shape[1])})

    @torch.no_grad()
    def vertices(self, rows) -> np.ndarray:
        """(n, V, 2) full-mesh pixel positions for tracked rows `rows` (for drawing)."""
        pos = {int(r): i for i, r in enumerate(self.rows)}
        idx = torch.as_tensor([pos[int(r)] for r in rows])
        p = self.params
        v = self.model(shape=p["shape"], expression=p["expression"][idx], jaw_pose=p["jaw"][idx],
                       eye_pose=p["eyes"][idx] if self.eyes_on else None,
                       eyelids=p["eyelids"][idx] if self.eyelids_on else None, batch_size=len(idx)).vertices
        cam = v @ rodrigues(p["rotation"][idx]).transpose(1, 2)
        s = p["log_scale"][idx].exp()[:, :, None]
        uv = torch.stack([cam[..., 0], -cam[..., 1]], -1) * s + (p["trans"][idx] * self.face_t[idx][:, None])[:, None]
        return uv.numpy().astype(np.float64)


def fitter_for_tracking(model: FLAME, embedding: LandmarkEmbedding, tracking,
                        config: FitConfig | None = None) -> FlameFitter:
    """A fitter over a project's tracking (`TrackingData`: landmarks (N, 478, 3) pixels, valid)."""
    return FlameFitter(model, embedding, tracking.landmarks, tracking.valid, config)


def fit_all(model: FLAME, embedding: LandmarkEmbedding, landmarks_px: np.ndarray, valid: np.ndarray | None = None,
            config: FitConfig | None = None) -> tuple[FlameFit, FlameFitter]:
    """Run a `FlameFitter` for `config.steps` steps; returns the fit and the fitter."""
    fitter = FlameFitter(model, embedding, landmarks_px, valid, config)
    while fitter.steps_done < fitter.cfg.steps:
        fitter.step()
    return fitter.result(), fitter
