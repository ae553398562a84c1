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

from models.yshape import (CodeMapper, ExpressionAnchor, SubjectCritic, YShapeNet, adversarial_loss, cycle_loss,
                           other, reconstruction_loss)


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
    adversarial: float = 0.0
    """Weight of the subject critic's reversed gradient on γ (0 = no critic; not in the paper)."""
    anchor: float = 0.0
    """Weight of the expression anchor's MSE (0 = no anchor; not in the paper)."""


@dataclass
class OtherBatch:
    """Faces of the other person, encoded in the same step for the critic and the anchor (no
    decoder sees them): inputs (B', 3, R, R) in [0, 1] and their standardised expressions (B', E)."""
    inputs: torch.Tensor
    expr: torch.Tensor | None = None


def yshape_step(net: YShapeNet, optimizer: torch.optim.Optimizer, subject: str, inputs: torch.Tensor,
                targets: torch.Tensor, weights: LossWeights, perceptual: torch.nn.Module | None = None,
                clip: float = 5.0, focus: torch.Tensor | None = None, pose: torch.Tensor | None = None,
                critic: SubjectCritic | None = None, anchor: ExpressionAnchor | None = None,
                expr: torch.Tensor | None = None, other_batch: OtherBatch | None = None) -> dict[str, float]:
    """One step for person `subject` ("ava" or "act"): inputs (B, 3, R, R) (augmented) and their
    clean targets, both in [0, 1]; `focus` an optional (1, 1, R, R) L1 weight map of that person's
    face (eyes and mouth count more); `pose` (B, P) their head pose for pose-conditioned decoders.

    With `critic` (and `weights.adversarial` > 0) the codes of this batch and of `other_batch`
    train the subject critic, whose reversed gradient makes E_shared's codes of the two people
    alike; with `anchor` (and `weights.anchor` > 0) a shared linear read-out must find each
    person's standardised expressions (`expr`, `other_batch.expr`) in γ. Both are updated by
    `optimizer` too. Returns the loss parts as floats (and "total")."""
    frozen = net.decoders[other(subject)]
    was = [p.requires_grad for p in frozen.parameters()]
    frozen.requires_grad_(False)
    try:
        net.train()
        optimizer.zero_grad(set_to_none=True)
        code = net.encode(inputs)
        total, parts = reconstruction_loss(net.decode(code, subject, pose), targets, weights.ssim, perceptual,
                                           weights.perceptual, weight=focus)
        if weights.cycle and weights.cycle_weight > 0:
            cyc, cparts = cycle_loss(net, code, targets, subject, weights.ssim, weights.code, weight=focus,
                                     pose=pose)
            total = total + weights.cycle_weight * cyc
            parts.update(cparts)
        other_code = net.encode(other_batch.inputs) if other_batch is not None else None
        if critic is not None and weights.adversarial > 0 and other_code is not None:
            adv, acc = adversarial_loss(critic, {subject: code, other(subject): other_code})
            total = total + weights.adversarial * adv
            parts["critic"], parts["critic_acc"] = adv, torch.tensor(acc)
        if anchor is not None and weights.anchor > 0 and expr is not None:
            pairs = [(code, expr)]
            if other_code is not None and other_batch.expr is not None:
                pairs.append((other_code, other_batch.expr))
            anc = sum(F.mse_loss(anchor(c), e) for c, e in pairs) / len(pairs)
            total = total + weights.anchor * anc
            parts["anchor"] = anc
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
