"""Losses and one optimisation step of LatentAvatar (no file paths, no project knowledge).

A batch is a dict of tensors::

    image  (B, 3, s, s) aligned crops in [0, 1] at the output size
    face   (B, 3, e, e) encoder input (see `model.face_region`)
    matte  (B, 1, r, r) foreground matte at the low resolution, in [0, 1]
    yaw, pitch (B,) tracked head pose in degrees
    expr   (B, E) tracked expression controls

Encoder and decoder train jointly on the encoder's codes. On a random share of the samples
(`mapper_share`) the code comes from the expression mapper instead, so the decoder also
renders well from mapped codes and pose cannot hide in θ (the mapper never sees pose: the
camera must explain the head turn). The mapper also regresses the encoder's codes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import LatentAvatar


@dataclass
class LossWeights:
    perceptual: float = 0.3
    """λ of the perceptual loss on the final image."""
    low: float = 0.5
    """λ of the L1 loss on the low-resolution (volume-rendered) image."""
    mask: float = 0.3
    """λ of the L1 loss between the accumulated opacity and the matte."""
    code: float = 0.1
    """λ of the mapper's regression onto the (detached) encoder codes."""
    code_reg: float = 0.0
    """λ of an L2 penalty on the encoder's codes (0: the codes are already normalised to unit RMS)."""
    face: float = 0.0
    """λ of the face feature distance on the final image (needs a face loss, `models.arcface.FaceLoss`)."""
    identity: float = 0.0
    """λ of the identity loss (1 − embedding cosine) on the final image (the same face loss)."""
    face_batch: int = 0
    """How many of the batch's images the face loss looks at (the first ones; 0 = all): its pass through
    the face network costs about a third of a preview step at four images on a CPU."""


def jitter_controls(model: LatentAvatar, expr: torch.Tensor, sigma: float) -> torch.Tensor:
    """`expr` (B, E) plus Gaussian noise of `sigma` training standard deviations per control (the
    mapper's `expr_std`); `expr` itself when `sigma` is 0."""
    if sigma <= 0:
        return expr
    return expr + sigma * model.mapper.expr_std * torch.randn_like(expr)


def compute_losses(model: LatentAvatar, batch: dict[str, torch.Tensor], perceptual: torch.nn.Module | None,
                   weights: LossWeights, mapper_share: float = 0.5, stratified: bool = True,
                   face: torch.nn.Module | None = None, expr_noise: float = 0.0
                   ) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor]]:
    """Total loss, its parts as floats, and the render outputs. `face`: (x, y) → (feature distance,
    identity loss), each (B,) (`models.arcface.FaceLoss`); used when `weights.face` or
    `weights.identity` is above 0. `expr_noise`: the mapper sees the tracked controls with this much
    noise (`jitter_controls`), so frames whose controls nearly agree get nearly one code and what no
    control says (hair that swings, the light) is not tied to each training frame's code."""
    image = batch["image"]
    b = image.shape[0]
    code_enc = model.encode(batch["face"])
    code_map = model.map_expression(jitter_controls(model, batch["expr"], expr_noise))
    use_map = (torch.rand(b, device=image.device) < mapper_share)[:, None]
    code = torch.where(use_map, code_map, code_enc)
    out = model(code, batch["yaw"], batch["pitch"], stratified=stratified)
    r = out["low"].shape[-1]
    target_low = F.interpolate(image, size=(r, r), mode="area")
    mask_error = (out["mask"] - batch["matte"]).abs()
    keep = batch.get("picture")
    if keep is not None:   # (B, 1, S, S) in [0, 1]: where the crop shows the video's picture; elsewhere (its black
        # bars, the repeated frame edge) the target is the render itself, so no loss is taken there, clamped to
        # the colour range: the super-resolution output is not bounded, and with nothing holding it on the bars
        # it grew there until the whole image blew up (d14, near step 3000: l1 1e10, then NaN)
        image = image * keep + out["image"].detach().clamp(0, 1) * (1 - keep)
        keep_low = F.interpolate(keep, size=(r, r), mode="area")
        target_low = target_low * keep_low + out["low"].detach().clamp(0, 1) * (1 - keep_low)
        mask_error = mask_error * F.interpolate(keep, size=mask_error.shape[-2:], mode="area")
    parts = {
        "l1": (out["image"] - image).abs().mean(),
        "low": (out["low"] - target_low).abs().mean(),
        "mask": mask_error.mean(),
        "code": F.mse_loss(code_map, code_enc.detach()),
        "code_reg": code_enc.pow(2).mean(),
    }
    total = parts["l1"] + weights.low * parts["low"] + weights.mask * parts["mask"] \
        + weights.code * parts["code"] + weights.code_reg * parts["code_reg"]
    if perceptual is not None and weights.perceptual > 0:
        parts["perceptual"] = perceptual(out["image"] * 2 - 1, image * 2 - 1)
        total = total + weights.perceptual * parts["perceptual"]
    if face is not None and (weights.face > 0 or weights.identity > 0):
        k = weights.face_batch or b
        dist, ident = face(out["image"][:k], image[:k])
        parts["face"], parts["identity"] = dist.mean(), ident.mean()
        total = total + weights.face * parts["face"] + weights.identity * parts["identity"]
    floats = {k: float(v.detach()) for k, v in parts.items()}
    floats["total"] = float(total.detach())
    return total, floats, out


def train_step(model: LatentAvatar, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               perceptual: torch.nn.Module | None, weights: LossWeights, mapper_share: float = 0.5,
               stratified: bool = True, face: torch.nn.Module | None = None, expr_noise: float = 0.0
               ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total, floats, out = compute_losses(model, batch, perceptual, weights, mapper_share, stratified, face,
                                        expr_noise)
    total.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    if torch.isfinite(norm) and torch.isfinite(total.detach()):
        optimizer.step()
        floats["skipped"] = 0.0
    else:   # a NaN/inf loss or gradient would poison every weight through Adam: leave them as they are
        optimizer.zero_grad(set_to_none=True)
        floats["skipped"] = 1.0
    return floats, out


def mapper_step(model: LatentAvatar, optimizer: torch.optim.Optimizer, expr: torch.Tensor,
                codes: torch.Tensor, noise: float = 0.0) -> float:
    """One step of fitting the expression mapper to encoder codes: expr (B, E) → codes (B, D), the
    controls jittered by `noise` (`jitter_controls`)."""
    loss = F.mse_loss(model.mapper(jitter_controls(model, expr, noise)), codes)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def fit_mapper(model: LatentAvatar, expr: torch.Tensor, codes: torch.Tensor, steps: int = 500,
               lr: float = 1e-3, batch: int = 64, generator: torch.Generator | None = None) -> float:
    """Fit the expression mapper to encoder codes (N, E) → (N, D); returns the final MSE."""
    opt = torch.optim.Adam(model.mapper.parameters(), lr=lr)
    n = len(expr)
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch, n),), generator=generator)
        mapper_step(model, opt, expr[idx], codes[idx])
    with torch.no_grad():
        return float(F.mse_loss(model.mapper(expr), codes))
