"""StyleCLIP latent optimisation, made to survive pose and expression: one offset for all controls.

StyleCLIP (Patashnik et al., ICCV 2021) optimises one image's latent w against
1 − cos(CLIP(G(w)), CLIP(text)) + λ_L2‖w − w₀‖² (+ identity). Here a single offset δ (L, D) is
optimised jointly over renders spread over the avatar's trained pose and expression ranges
(random controls inside the ranges at every step; for LatentAvatar yaw/pitch are camera views),
so the edit holds across them by construction::

    loss = mean_aug [1 − cos(CLIP(aug(render(latent(c) + δ))), t)]      t = CLIP("prompt")
         + λ_L2 · mean_l ‖δ_l‖²
         + λ_id · (1 − cos(ArcFace(edited), ArcFace(unedited)))          when an ArcFace net is given
         + λ_bg · |edited − unedited| outside the face/hair mask         the keep-background option

With a neutral prompt the CLIP term is the direction form: 1 − cos(E(edited) − E(unedited),
t − t_neutral). `aug` is a few random crops (a share `crop_min`…1 of the side) resized to CLIP's
input, which keeps the offset from fooling CLIP with pixel-level patterns.

`StyleClipSearch` is step-wise (`step()`, `state_dict()` / `load_state_dict()`, `preview()`,
`result()`) so the shared training loop runs it with progress, checkpoints and cancel; a
resumed search continues with the same random controls. `find_text_edit` runs it to the end.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .model import Edit


@dataclass
class StyleClipConfig:
    prompt: str = ""
    """What the edit should make the avatar look like ("blue hair", "wearing glasses")."""
    neutral: str = ""
    """Optional neutral description ("a face"); with it the CLIP loss is the direction form."""
    name: str = ""
    """Name of the saved edit (default: the prompt)."""
    steps: int = 150
    """Optimisation steps."""
    batch: int = 4
    """Random control samples (poses, expressions, views) per step."""
    augmentations: int = 4
    """Random crops of each render given to CLIP."""
    crop_min: float = 0.8
    """Smallest crop side, as a share of the render's side."""
    lr: float = 0.05
    """Adam learning rate of the offset."""
    w_l2: float | None = None
    """λ_L2 on the offset (mean over layers of its squared norm); None = the engine's value
    (`EditAdapter.text_l2`: StyleCLIP's 0.008, 0.05 in the StyleGAN engine's W+)."""
    w_identity: float = 1.5
    """λ of the ArcFace identity loss (used when an ArcFace network is given). StyleCLIP's 0.3 let
    "red" on a full d3 preview avatar fall to ArcFace 0.63 to the unedited render; the saved default
    strength is then chosen to keep identity (`StyleClipSearch.calibrate_strength`)."""
    w_background: float = 0.0
    """λ of the L1 change outside the face/hair mask (0 = off)."""
    layers: tuple[int, int] | None = None
    """[start, stop) of the latent layers the offset may change (None = all)."""
    default_strength: float = 1.0
    """Strength the saved edit's slider starts at."""
    seed: int = 0
    """Seed of the control samples and crops."""


def augment(images: torch.Tensor, n: int, crop_min: float, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, S, S) → (n·B, 3, S, S): n random square crops (side crop_min…1 of S), resized back to S."""
    s = images.shape[-1]
    out = []
    for _ in range(n):
        side = int(round(s * (crop_min + (1 - crop_min) * float(torch.rand(1, generator=generator)))))
        side = max(2, min(s, side))
        x0, y0 = (int(torch.randint(0, s - side + 1, (1,), generator=generator)) for _ in range(2))
        crop = images[..., y0:y0 + side, x0:x0 + side]
        out.append(crop if side == s else F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False))
    return torch.cat(out)


IDENTITY_FLOOR = 0.85
"""ArcFace cosine to the unedited render that a text edit's default strength keeps (same person:
about 0.68 for this network per ../shared's README; different people about 0.33)."""


class StyleClipSearch:
    """One text edit being optimised on an adapter (`studio.edits.adapters`)."""

    def __init__(self, adapter, clip, cfg: StyleClipConfig, arcface=None):
        if not cfg.prompt.strip():
            raise InputError("a text edit needs a prompt", "describe the look, e.g. --text \"blue hair\"")
        self.adapter, self.clip, self.cfg, self.arcface = adapter, clip, cfg, arcface
        self.w_l2 = float(cfg.w_l2 if cfg.w_l2 is not None else getattr(adapter, "text_l2", 0.008))
        L, D = adapter.latent_shape
        lo, hi = cfg.layers if cfg.layers is not None else (0, L)
        if not 0 <= lo < hi <= L:
            raise InputError(f"layer range [{lo}, {hi}) does not fit this avatar's {L} latent layers",
                             f"give a range inside [0, {L})")
        dev = adapter.device
        self.layer_mask = torch.zeros(L, 1, device=dev)
        self.layer_mask[lo:hi] = 1.0
        self.offset = torch.zeros(L, D, device=dev, requires_grad=True)
        self.opt = torch.optim.Adam([self.offset], lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step_count = 0
        self.seconds = 0.0
        self.history: list[dict[str, float]] = []
        self.calibration: dict[str, float] = {}
        """Worst ArcFace cosine to the unedited render per strength tried by `calibrate_strength`."""
        clip.to(dev)
        with torch.no_grad():
            t = clip.encode_text([cfg.prompt])
            if cfg.neutral.strip():
                t = F.normalize(t - clip.encode_text([cfg.neutral]), dim=-1)
        self.target = t                                                       # (1, E)

    # ------------------------------------------------------------------ the step
    def delta(self) -> torch.Tensor:
        """(L, D) offset restricted to the layer range."""
        return self.offset * self.layer_mask

    def losses(self, controls: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, a = self.cfg, self.adapter
        with torch.no_grad():
            base = a.latent(controls)
            before = a.render(base, controls)
        after = a.render(base + self.delta(), controls)
        aug = augment(torch.cat([after, before]), cfg.augmentations, cfg.crop_min, self.gen)
        n = after.shape[0]
        emb = self.clip.encode_images(aug).view(cfg.augmentations, 2, n, -1)
        e_after, e_before = emb[:, 0], emb[:, 1].detach()
        if cfg.neutral.strip():
            d = F.normalize(e_after - e_before, dim=-1)
            clip_loss = (1 - (d * self.target).sum(-1)).mean()
        else:
            clip_loss = (1 - (e_after * self.target).sum(-1)).mean()
        l2 = self.delta().pow(2).sum(-1).mean()
        total = clip_loss + self.w_l2 * l2
        parts = {"clip": float(clip_loss.detach()), "l2": float(l2.detach())}
        if self.arcface is not None and cfg.w_identity > 0:
            from models.arcface import face_region_from_aligned

            fa = F.normalize(self.arcface(face_region_from_aligned((after + 1) / 2)), dim=-1)
            with torch.no_grad():
                fb = F.normalize(self.arcface(face_region_from_aligned((before + 1) / 2)), dim=-1)
            ident = (1 - (fa * fb).sum(-1)).mean()
            total = total + cfg.w_identity * ident
            parts["identity"] = float(ident.detach())
        if cfg.w_background > 0:
            with torch.no_grad():
                outside = 1 - a.face_mask(base, controls)
            bg = ((after - before).abs() * outside).mean()
            total = total + cfg.w_background * bg
            parts["background"] = float(bg.detach())
        parts["total"] = float(total.detach())
        return total, parts

    def step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        controls = self.adapter.sample_controls(self.cfg.batch, self.gen)
        total, parts = self.losses(controls)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        self.step_count += 1
        self.seconds += time.perf_counter() - t0
        self.history.append(parts)
        return parts

    @property
    def done(self) -> bool:
        return self.step_count >= self.cfg.steps

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        return {"offset": self.offset.detach().clone(), "opt": self.opt.state_dict(), "step": self.step_count,
                "seconds": self.seconds, "gen": self.gen.get_state(),
                "history": torch.tensor([[h["clip"], h["total"]] for h in self.history], dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.offset.copy_(state["offset"])
        self.opt.load_state_dict(state["opt"])
        self.step_count = int(state["step"])
        self.seconds = float(state["seconds"])
        self.gen.set_state(state["gen"])
        self.history = [{"clip": float(c), "total": float(t)} for c, t in state["history"].tolist()]

    # ------------------------------------------------------------------ results
    @torch.no_grad()
    def preview(self, strength: float = 1.0) -> np.ndarray:
        """(2·S, 3·S, 3) uint8: unedited (top) and edited (bottom) at the yaw range's ends and its middle."""
        from ..metrics import to_uint8

        a = self.adapter
        c = np.repeat(a.neutral()[None], 3, 0)
        c[:, 0] = [a.lo[0], (a.lo[0] + a.hi[0]) / 2, a.hi[0]]
        ct = torch.from_numpy(c).to(a.device)
        base = a.latent(ct)
        rows = [to_uint8(a.render(base, ct)), to_uint8(a.render(base + strength * self.delta(), ct))]
        return np.concatenate([np.concatenate(list(r), 1) for r in rows], 0)

    @torch.no_grad()
    def calibrate_strength(self, floor: float = IDENTITY_FLOOR,
                           candidates=(1.0, 0.8, 0.65, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05)) -> float | None:
        """The largest strength (of `candidates`) at which the edited face stays the same person
        (ArcFace cosine to the unedited render ≥ `floor` at every yaw of a 5-point sweep with the
        rest expression); it becomes the slider's starting value and what eval and export use by
        default. None without an ArcFace network (the configured default is kept)."""
        if self.arcface is None:
            return None
        from models.arcface import face_region_from_aligned

        a = self.adapter
        c = np.repeat(a.neutral()[None], 5, 0)
        c[:, 0] = np.linspace(a.lo[0], a.hi[0], 5)
        ct = torch.from_numpy(c).to(a.device)
        base = a.latent(ct)

        def feat(img):
            return F.normalize(self.arcface(face_region_from_aligned((img + 1) / 2)), dim=-1)

        fb = feat(a.render(base, ct))
        best = None
        for s in candidates:
            cos = (feat(a.render(base + s * self.delta(), ct)) * fb).sum(-1)
            self.calibration[f"{s:g}"] = round(float(cos.min()), 4)
            if float(cos.min()) >= floor:
                best = float(s)
                break
        self.cfg.default_strength = best if best is not None else float(candidates[-1])
        return self.cfg.default_strength

    def result(self) -> Edit:
        cfg = self.cfg
        first = self.history[: max(1, len(self.history) // 10)]
        last = self.history[-max(1, len(self.history) // 10):]
        summary = {"steps": self.step_count, "seconds": round(self.seconds, 2),
                   "clip_loss_start": round(float(np.mean([h["clip"] for h in first])), 5) if first else None,
                   "clip_loss_end": round(float(np.mean([h["clip"] for h in last])), 5) if last else None,
                   "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}}
        summary["w_l2"] = self.w_l2
        if self.calibration:
            summary["identity_by_strength"] = dict(self.calibration)
        L = self.adapter.latent_shape[0]
        return Edit(name=cfg.name or cfg.prompt, kind="text", engine=self.adapter.engine_name,
                    offset=self.delta().detach().cpu(), prompt=cfg.prompt, neutral=cfg.neutral,
                    layers=cfg.layers if cfg.layers is not None else (0, L), default_strength=cfg.default_strength,
                    strength_range=(-1.0, 2.0), label="appearance", summary=summary)


def find_text_edit(adapter, clip, prompt: str, arcface=None, on_step=None, **options) -> Edit:
    """Run a `StyleClipSearch` to the end and return its edit (tests, scripts)."""
    search = StyleClipSearch(adapter, clip, StyleClipConfig(prompt=prompt, **options), arcface=arcface)
    while not search.done:
        parts = search.step()
        if on_step is not None:
            on_step(search.step_count, parts)
    return search.result()


@torch.no_grad()
def clip_scores(clip, images: torch.Tensor, prompt: str) -> torch.Tensor:
    """(B, 3, S, S) in [-1, 1] → (B,) cosine of each image's CLIP embedding with the prompt's."""
    return (clip.encode_images(images) @ clip.encode_text([prompt]).t())[:, 0]
