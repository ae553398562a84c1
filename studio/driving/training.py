"""One optimisation step of the Y-shaped network and of a mapping MLP.

`yshape_step` is LatentAvatar's iteration (section 4): one person per step; E_shared and that
person's decoder are updated, the other decoder is frozen for the step (its parameters get no
gradient, so Adam leaves them and their moments alone), though gradients still flow *through*
it on the cycle path back into E_shared. `mapper_step` fits a `models.yshape.CodeMapper` to
fixed (γ, target) pairs with everything else frozen.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.yshape import CodeMapper, YShapeNet, cycle_loss, other, reconstruction_loss


@dataclass
class LossWeights:
    ssim: float = 0.1
    """λ_ssim of 1 − SSIM beside the L1, in the reconstruction and the cycle."""
    code: float = 1e-4
    """λ_code of ‖γ*_other − γ‖₂ in the cycle."""
    cycle: bool = True
    """Whether the cycle term is used at all."""
    cycle_weight: float = 1.0
    """Weight of the whole cycle term against the reconstruction."""
    perceptual: float = 0.0
    """Weight of the perceptual loss (0 without a perceptual network)."""


def yshape_step(net: YShapeNet, optimizer: torch.optim.Optimizer, subject: str, inputs: torch.Tensor,
                targets: torch.Tensor, weights: LossWeights, perceptual: torch.nn.Module | None = None,
                clip: float = 5.0, focus: torch.Tensor | None = None) -> dict[str, float]:
    """One step for person `subject` ("ava" or "act"): inputs (B, 3, R, R) (augmented) and their
    clean targets, both in [0, 1]; `focus` an optional (1, 1, R, R) L1 weight map of that person's
    face (eyes and mouth count more). Returns the loss parts as floats (and "total")."""
    frozen = net.decoders[other(subject)]
    was = [p.requires_grad for p in frozen.parameters()]
    frozen.requires_grad_(False)
    try:
        net.train()
        optimizer.zero_grad(set_to_none=True)
        code = net.encode(inputs)
        total, parts = reconstruction_loss(net.decode(code, subject), targets, weights.ssim, perceptual,
                                           weights.perceptual, weight=focus)
        if weights.cycle and weights.cycle_weight > 0:
            cyc, cparts = cycle_loss(net, code, targets, subject, weights.ssim, weights.code, weight=focus)
            total = total + weights.cycle_weight * cyc
            parts.update(cparts)
        total.backward()
        trainable = [p for p in net.parameters() if p.grad is not None]
        if clip:
            torch.nn.utils.clip_grad_norm_(trainable, clip)
        optimizer.step()
    finally:
        for p, w in zip(frozen.parameters(), was):
            p.requires_grad_(w)
    out = {k: float(v.detach()) for k, v in parts.items()}
    out["total"] = float(total.detach())
    return out


def mapper_step(mapper: CodeMapper, optimizer: torch.optim.Optimizer, codes: torch.Tensor, targets: torch.Tensor,
                noise: float = 0.0) -> float:
    """Fit `mapper` on (B, D) codes → (B, T) targets (target units) for one step: the MSE of the
    standardised prediction. `noise`: std of Gaussian noise on the codes, × their spread."""
    mapper.train()
    x = codes + noise * mapper.in_std * torch.randn_like(codes) if noise > 0 else codes
    loss = F.mse_loss(mapper.normalised(x), (targets - mapper.out_mean) / mapper.out_std)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def encode_all(net: YShapeNet, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """γ (N, D) of (N, 3, R, R) uint8 images, in eval mode."""
    net.eval()
    dev = next(net.parameters()).device
    out = [net.encode(images[i:i + batch].to(dev).float() / 255.0) for i in range(0, len(images), batch)]
    return torch.cat(out) if out else torch.zeros(0, net.cfg.code_dim)
