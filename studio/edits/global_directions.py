"""StyleCLIP global directions, in the adapters' per-layer latent space.

StyleCLIP's third method precomputes, once per generator, how each StyleSpace channel moves the
CLIP image embedding; a text direction Δt = CLIP(target) − CLIP(neutral) (averaged over prompt
templates) is then matched against those effects, channels whose relevance is under a threshold
β are zeroed, and a strength α scales the result. Any prompt then costs one matrix product.

Here the "channels" are the coordinates of the adapters' per-layer latent (W+ for StyleGAN, the
tri-plane generator's per-layer style for LatentAvatar), so the result is an ordinary (L, D)
offset that the edit model stores and applies like every other edit:

    effect[l, j] = mean_c normalise(E(render(x_c + σ_j e_j at layer l)) − E(render(x_c − σ_j e_j …)))
    relevance[l, j] = ⟨effect[l, j], Δt⟩ / max |relevance|
    offset[l, j] = relevance[l, j] · σ_j   where |relevance| ≥ β, else 0

x_c are the latents of a few control samples spread over the trained ranges, σ_j the spread of
coordinate j over the avatar's latents (at least `sigma_floor` of the latent's RMS size). The effect
is measured either as above ("finite", StyleCLIP's central difference: 2 · samples renders per
channel, 37 k renders for a 12 × 256 W+) or to first order ("gradient", the default): σ_j · ∂E/∂x_j
from one render and E backward passes per sample, the same measure where the generator is locally
linear, with a cost that does not grow with the channel count (on the d3 preview avatar with the
tests' 32-d CLIP: 9 s of work). `ChannelEffects` computes the effects step by step (`step()`,
`state_dict()`, `load_state_dict()`), so the shared training loop runs it with progress, checkpoints
and cancel (`studio.edits.global_jobs.compute_channel_effects`); the finished effects are cached in the
project with a key naming the trained model, the CLIP file and the settings they belong to.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, ProjectError
from .model import Edit

TEMPLATES = ("{}", "a photo of {}", "a face with {}", "a portrait of a person with {}", "a close-up photo of {}")


METHODS = ("gradient", "finite")


@dataclass
class ChannelEffectsConfig:
    samples: int = 6
    """Control samples (poses, expressions, views) whose renders are averaged per channel."""
    method: str = "gradient"
    """How a channel's effect is measured: "finite" is StyleCLIP's central difference, render(x ± σ_j e_j)
    per channel (2 · samples renders for every one of the L·D channels); "gradient" is its first-order
    form, the Jacobian of the CLIP embedding by the latent, σ_j J[:, j], from one render and E backward
    passes per sample (E = CLIP's embedding size), so the cost no longer grows with the channel count
    (on a 12 × 256 W+ and a 32-d CLIP about 100x fewer passes). Both normalise per sample and average."""
    chunk: int = 8
    """"finite": channels measured per `step()`; "gradient": embedding rows back-propagated per step."""
    sigma_floor: float = 0.1
    """σ_j is at least this share of the latent's RMS size. σ_j is coordinate j's spread over the latents
    the controls give; LatentAvatar's styles barely move with them (on the tests' tiny NeRF 1e-3 against an
    RMS of 1.2), which would make both the probe and the edit nothing. On the d3 StyleGAN preview avatar
    the floor (0.014) is under every coordinate's spread, so it changes nothing there."""
    seed: int = 0
    """Seed of the control samples."""

    def check(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown channel-effects method '{self.method}'", f"one of {', '.join(METHODS)}")
        if self.samples < 1 or self.chunk < 1:
            raise InputError(f"channel effects need samples ≥ 1 and chunk ≥ 1 (got {self.samples}, {self.chunk})")


class ChannelEffects:
    """The CLIP effect of every latent channel of one avatar, computed in resumable steps.

    `step()` does one unit of work (a chunk of channels, or a chunk of embedding rows of one
    sample's Jacobian); `steps` / `total_steps` count them; `effects` (L·D, E) is final once
    `done`. `state_dict()` holds everything a resumed run needs, so a run continued from it ends
    with the same effects as one that never stopped.
    """

    def __init__(self, adapter, clip, cfg: ChannelEffectsConfig | None = None):
        self.adapter, self.clip, self.cfg = adapter, clip, cfg or ChannelEffectsConfig()
        self.cfg.check()
        L, D = adapter.latent_shape
        g = torch.Generator().manual_seed(self.cfg.seed)
        with torch.no_grad():
            self.controls = adapter.sample_controls(self.cfg.samples, g)
            lat = adapter.latent_samples(256, self.cfg.seed)                                # (N, L, D)
            floor = self.cfg.sigma_floor * float(lat.pow(2).mean().sqrt())
            self.sigma = lat.mean(1).std(0).clamp_min(floor).cpu()                         # (D,)
        self.embed_dim = int(clip.encode_text(["x"]).shape[-1])
        self.effects = torch.zeros(L * D, self.embed_dim)
        self.jac = torch.zeros(0)
        """"gradient": the rows of the current sample's Jacobian done so far ((E, L·D), filled row-wise)."""
        self.next = 0
        """"finite": the next channel; "gradient": the next (sample, row chunk) step."""
        self.seconds = 0.0

    @property
    def channels(self) -> int:
        return self.effects.shape[0]

    @property
    def _row_chunks(self) -> int:
        return -(-self.embed_dim // self.cfg.chunk)

    @property
    def total(self) -> int:
        """Units of work: channels ("finite") or (sample, embedding-row chunk) steps ("gradient")."""
        return self.channels if self.cfg.method == "finite" else self.cfg.samples * self._row_chunks

    @property
    def total_steps(self) -> int:
        return -(-self.channels // self.cfg.chunk) if self.cfg.method == "finite" else self.total

    @property
    def steps(self) -> int:
        return -(-self.next // self.cfg.chunk) if self.cfg.method == "finite" else self.next

    @property
    def done(self) -> bool:
        return self.next >= self.total

    def step(self) -> dict[str, float]:
        if self.done:
            raise ValueError("the channel effects are finished")
        t0 = time.perf_counter()
        out = self._step_finite() if self.cfg.method == "finite" else self._step_gradient()
        self.seconds += time.perf_counter() - t0
        return out

    @torch.no_grad()
    def _step_finite(self) -> dict[str, float]:
        a, L, D = self.adapter, *self.adapter.latent_shape
        chan = torch.arange(self.next, min(self.next + self.cfg.chunk, self.total))
        base = a.latent(self.controls)                                              # (S, L, D)
        s = len(self.controls)
        n = len(chan)
        delta = torch.zeros(n, L, D, device=base.device)
        delta[torch.arange(n), chan // D, chan % D] = self.sigma[chan % D].to(base.device)
        lat = torch.cat([base[None] + delta[:, None], base[None] - delta[:, None]])  # (2n, S, L, D)
        ctl = self.controls.repeat(2 * n, 1)
        emb = self.clip.encode_images(a.render(lat.reshape(-1, L, D), ctl)).reshape(2, n, s, -1)
        eff = F.normalize(emb[0] - emb[1], dim=-1).mean(1)                          # (n, E)
        self.effects[chan] = eff.cpu()
        self.next = int(chan[-1]) + 1
        return {"channels": float(self.next), "of": float(self.total)}

    def _step_gradient(self) -> dict[str, float]:
        a, L, D = self.adapter, *self.adapter.latent_shape
        E, k = self.embed_dim, self._row_chunks
        s, r = divmod(self.next, k)
        rows = range(r * self.cfg.chunk, min((r + 1) * self.cfg.chunk, E))
        if r == 0:
            self.jac = torch.zeros(E, L * D)
        ctl = self.controls[s:s + 1]
        with torch.no_grad():
            base = a.latent(ctl)                                                    # (1, L, D)
        lat = base.clone().requires_grad_(True)
        with torch.enable_grad():
            emb = self.clip.encode_images(a.render(lat, ctl))[0]                    # (E,)
            for i, row in enumerate(rows):
                (g,) = torch.autograd.grad(emb[row], lat, retain_graph=i < len(rows) - 1)
                self.jac[row] = g.reshape(-1).cpu()
        self.next += 1
        if r == k - 1:   # this sample's Jacobian is complete: σ_j J[:, j], normalised per channel
            col = self.jac.t() * self.sigma.repeat(L)[:, None]                        # (L·D, E)
            self.effects += F.normalize(col, dim=-1) / self.cfg.samples
            self.jac = torch.zeros(0)
        return {"sample": float(s + 1), "of": float(self.cfg.samples)}

    def state_dict(self) -> dict:
        return {"effects": self.effects.clone(), "next": self.next, "sigma": self.sigma.clone(),
                "controls": self.controls.detach().cpu().clone(), "seconds": self.seconds,
                "jac": self.jac.clone(), "method": self.cfg.method}

    def load_state_dict(self, state: dict) -> None:
        if state["effects"].shape != self.effects.shape or state.get("method", "finite") != self.cfg.method:
            raise ProjectError("the saved channel effects belong to another model or method", "compute them again")
        self.effects = state["effects"].clone()
        self.next = int(state["next"])
        self.sigma = state["sigma"].clone()
        self.controls = state["controls"].to(self.controls.device)
        self.seconds = float(state["seconds"])
        self.jac = state.get("jac", torch.zeros(0)).clone()


# ----------------------------------------------------------------------------- cache
def save_effects(effects: ChannelEffects, path: str | Path, key: str) -> None:
    """Cache finished effects (safetensors, atomic); `key` names what they were computed from (the trained
    model, the CLIP file and the settings): `load_effects` with another key finds nothing."""
    from safetensors.torch import save_file

    from ..atomic import write_with

    if not effects.done:
        raise ValueError("channel effects are not finished")
    L, D = effects.adapter.latent_shape
    meta = {"key": key, "L": str(L), "D": str(D), "seconds": f"{effects.seconds:.2f}", "method": effects.cfg.method,
            "samples": str(effects.cfg.samples)}
    tensors = {"effects": effects.effects.contiguous(), "sigma": effects.sigma.contiguous()}
    write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def effects_meta(path: str | Path) -> dict | None:
    """The cache file's metadata (key, L, D, seconds, method, samples), or None when absent or unreadable."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 — a damaged cache is recomputed
        return None


def load_effects(path: str | Path, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(effects (L·D, E), sigma (D,)) from the cache, or None when absent, damaged or made for another key."""
    from safetensors import safe_open

    meta = effects_meta(path)
    if meta is None or meta.get("key") != key:
        return None
    try:
        with safe_open(str(path), "pt") as f:
            return f.get_tensor("effects"), f.get_tensor("sigma")
    except Exception:  # noqa: BLE001
        return None


# ----------------------------------------------------------------------------- a prompt → an edit
@torch.no_grad()
def text_direction(clip, prompt: str, neutral: str = "", templates=TEMPLATES) -> torch.Tensor:
    """(E,) unit Δt: the template-averaged prompt embedding minus the neutral one (or alone without it)."""
    def avg(text):
        e = clip.encode_text([t.format(text) for t in templates]).mean(0)
        return F.normalize(e, dim=-1)

    if not prompt.strip():
        raise InputError("a global-direction edit needs a prompt", "describe the look, e.g. --global \"blue hair\"")
    d = avg(prompt) - avg(neutral) if neutral.strip() else avg(prompt)
    return F.normalize(d, dim=-1).cpu()


def global_edit(effects: torch.Tensor, sigma: torch.Tensor, latent_shape: tuple[int, int], engine: str,
                direction: torch.Tensor, prompt: str, neutral: str = "", beta: float = 0.1,
                name: str | None = None) -> Edit:
    """The global-direction edit for a text direction (see the module docstring): one matrix product."""
    L, D = latent_shape
    if effects.shape[0] != L * D:
        raise ProjectError("the channel effects belong to another model", "compute them again")
    if not 0.0 <= beta < 1.0:
        raise InputError(f"the threshold β must be in [0, 1), not {beta:g}",
                         "e.g. --beta 0.1 (channels whose relevance is under β of the largest are left out)")
    rel = effects @ direction.to(effects)                                             # (L·D,)
    rel = rel / rel.abs().max().clamp_min(1e-12)
    kept = rel.abs() >= beta
    offset = (rel * kept).reshape(L, D) * sigma[None, :]
    return Edit(name=name or prompt, kind="global", engine=engine, offset=offset, prompt=prompt, neutral=neutral,
                layers=(0, L), threshold=float(beta), default_strength=1.0, strength_range=(-3.0, 3.0),
                label="appearance", summary={"channels_kept": int(kept.sum()), "channels": int(L * D)})


STRENGTHS = (2.0, 1.5, 1.0, 0.8, 0.65, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05)
"""Strengths `calibrate_strength` tries, largest first."""


@torch.no_grad()
def calibrate_strength(adapter, offset: torch.Tensor, arcface, floor: float | None = None,
                       candidates=STRENGTHS) -> tuple[float, dict[str, float]]:
    """The largest strength of `candidates` at which the edited face stays the same person (ArcFace cosine
    to the unedited render ≥ `floor` at every yaw of a 5-point sweep with the rest expression), as text
    edits choose theirs (`styleclip.StyleClipSearch.calibrate_strength`); the smallest candidate when none
    does. Returns (strength, {strength: worst cosine} for those tried)."""
    from models.arcface import face_region_from_aligned

    from .styleclip import IDENTITY_FLOOR

    floor = IDENTITY_FLOOR if floor is None else floor
    c = np.repeat(adapter.neutral()[None], 5, 0)
    c[:, 0] = np.linspace(adapter.lo[0], adapter.hi[0], 5)
    ct = torch.from_numpy(c).to(adapter.device)
    base = adapter.latent(ct)
    off = offset.to(base)

    def feat(img):
        return F.normalize(arcface(face_region_from_aligned((img + 1) / 2)), dim=-1)

    fb = feat(adapter.render(base, ct))
    tried: dict[str, float] = {}
    for s in candidates:
        worst = float((feat(adapter.render(base + s * off, ct)) * fb).sum(-1).min())
        tried[f"{s:g}"] = round(worst, 4)
        if worst >= floor:
            return float(s), tried
    return float(candidates[-1]), tried


@torch.no_grad()
def preview_strip(adapter, offset: torch.Tensor, strength: float = 1.0) -> np.ndarray:
    """(2·S, 3·S, 3) uint8: unedited (top) and edited (bottom) at both ends and the middle of the yaw range."""
    from ..metrics import to_uint8

    c = np.repeat(adapter.neutral()[None], 3, 0)
    c[:, 0] = [adapter.lo[0], (adapter.lo[0] + adapter.hi[0]) / 2, adapter.hi[0]]
    ct = torch.from_numpy(c).to(adapter.device)
    base = adapter.latent(ct)
    rows = [to_uint8(adapter.render(base, ct)), to_uint8(adapter.render(base + strength * offset.to(base), ct))]
    return np.concatenate([np.concatenate(list(r), 1) for r in rows], 0)
