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
coordinate j over the avatar's latents. `ChannelEffects` computes the effects step by step
(`step()`, `state_dict()`, `load_state_dict()`), so the shared training loop runs it with
progress, checkpoints and cancel; the finished effects are cached in the project with a key
naming the trained model they belong to.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError, ProjectError
from .model import Edit

TEMPLATES = ("{}", "a photo of {}", "a face with {}", "a portrait of a person with {}", "a close-up photo of {}")


@dataclass
class ChannelEffectsConfig:
    samples: int = 6
    """Control samples (poses, expressions, views) whose renders are averaged per channel."""
    chunk: int = 8
    """Channels measured per `step()`."""
    seed: int = 0
    """Seed of the control samples."""


class ChannelEffects:
    """The CLIP effect of every latent channel of one avatar, computed in resumable steps."""

    def __init__(self, adapter, clip, cfg: ChannelEffectsConfig | None = None):
        self.adapter, self.clip, self.cfg = adapter, clip, cfg or ChannelEffectsConfig()
        L, D = adapter.latent_shape
        g = torch.Generator().manual_seed(self.cfg.seed)
        with torch.no_grad():
            self.controls = adapter.sample_controls(self.cfg.samples, g)
            self.sigma = adapter.latent_samples(256, self.cfg.seed).mean(1).std(0).cpu()      # (D,)
        E = clip.encode_text(["x"]).shape[-1]
        self.effects = torch.zeros(L * D, E)
        self.next = 0
        self.seconds = 0.0

    @property
    def total(self) -> int:
        return self.effects.shape[0]

    @property
    def done(self) -> bool:
        return self.next >= self.total

    @torch.no_grad()
    def step(self) -> dict[str, float]:
        t0 = time.perf_counter()
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
        self.seconds += time.perf_counter() - t0
        return {"channels": float(self.next), "of": float(self.total)}

    def state_dict(self) -> dict:
        return {"effects": self.effects.clone(), "next": self.next, "sigma": self.sigma.clone(),
                "controls": self.controls.detach().cpu().clone(), "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        if state["effects"].shape != self.effects.shape:
            raise ProjectError("the saved channel effects belong to another model", "compute them again")
        self.effects = state["effects"].clone()
        self.next = int(state["next"])
        self.sigma = state["sigma"].clone()
        self.controls = state["controls"].to(self.controls.device)
        self.seconds = float(state["seconds"])


# ----------------------------------------------------------------------------- cache
def save_effects(effects: ChannelEffects, path: str | Path, key: str) -> None:
    """Cache finished effects (safetensors, atomic); `key` names the trained model (e.g. its run id)."""
    from safetensors.torch import save_file

    from ..atomic import write_with

    if not effects.done:
        raise ValueError("channel effects are not finished")
    L, D = effects.adapter.latent_shape
    write_with(path, lambda tmp: save_file({"effects": effects.effects.contiguous(), "sigma": effects.sigma},
                                           str(tmp), metadata={"key": key, "L": str(L), "D": str(D),
                                                               "seconds": f"{effects.seconds:.2f}"}))


def load_effects(path: str | Path, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(effects (L·D, E), sigma (D,)) from the cache, or None when absent or made for another model."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        if (f.metadata() or {}).get("key") != key:
            return None
        return f.get_tensor("effects"), f.get_tensor("sigma")


# ----------------------------------------------------------------------------- a prompt → an edit
@torch.no_grad()
def text_direction(clip, prompt: str, neutral: str = "", templates=TEMPLATES) -> torch.Tensor:
    """(E,) unit Δt: the template-averaged prompt embedding minus the neutral one (or alone without it)."""
    def avg(text):
        e = clip.encode_text([t.format(text) for t in templates]).mean(0)
        return F.normalize(e, dim=-1)

    if not prompt.strip():
        raise InputError("a text edit needs a prompt", "describe the look, e.g. --text \"blue hair\"")
    d = avg(prompt) - avg(neutral) if neutral.strip() else avg(prompt)
    return F.normalize(d, dim=-1).cpu()


def global_edit(effects: torch.Tensor, sigma: torch.Tensor, latent_shape: tuple[int, int], engine: str,
                direction: torch.Tensor, prompt: str, neutral: str = "", beta: float = 0.15,
                name: str | None = None) -> Edit:
    """The global-direction edit for a text direction (see the module docstring)."""
    L, D = latent_shape
    if effects.shape[0] != L * D:
        raise ProjectError("the channel effects belong to another model", "compute them again")
    rel = effects @ direction                                                       # (L·D,)
    rel = rel / rel.abs().max().clamp_min(1e-12)
    kept = rel.abs() >= beta
    offset = (rel * kept).reshape(L, D) * sigma[None, :]
    return Edit(name=name or prompt, kind="global", engine=engine, offset=offset, prompt=prompt, neutral=neutral,
                layers=(0, L), threshold=float(beta), default_strength=1.0, strength_range=(-3.0, 3.0),
                label="appearance", summary={"channels_kept": int(kept.sum()), "channels": int(L * D)})
