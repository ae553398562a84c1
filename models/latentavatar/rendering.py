"""Ray sampling and volume integration (the reference implementation; plain PyTorch).

Dimension names: B batch, R rays, S samples per ray, C channels.
"""
from __future__ import annotations

import torch


def sample_along_rays(origins: torch.Tensor, dirs: torch.Tensor, near: float, far: float, n_samples: int,
                      stratified: bool = False, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split [near, far] into `n_samples` equal bins and take one sample per bin.

    origins, dirs: (B, R, 3), dirs unit length. Returns t (B, R, S) distances, deltas (B, R, S) bin
    widths (the length each sample stands for), points (B, R, S, 3). Without `stratified` the samples
    are the bin midpoints (deterministic); with it, uniform within each bin.
    """
    b, r, _ = origins.shape
    edges = torch.linspace(near, far, n_samples + 1, device=origins.device, dtype=origins.dtype)
    width = edges[1:] - edges[:-1]                                               # (S,)
    if stratified:
        u = torch.rand(b, r, n_samples, device=origins.device, dtype=origins.dtype, generator=generator)
    else:
        u = torch.full((b, r, n_samples), 0.5, device=origins.device, dtype=origins.dtype)
    t = edges[:-1] + u * width                                                   # (B, R, S)
    deltas = width.expand(b, r, n_samples)
    points = origins[:, :, None, :] + t[..., None] * dirs[:, :, None, :]         # (B, R, S, 3)
    return t, deltas, points


def volume_integrate(sigma: torch.Tensor, values: torch.Tensor, deltas: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Emission-absorption quadrature (NeRF, eq. 3).

    sigma (B, R, S) ≥ 0 densities, values (B, R, S, C), deltas (B, R, S).
    Returns integrated values (B, R, C), accumulated opacity (B, R) = 1 - T_final,
    weights (B, R, S), and the transmittance reaching each sample (B, R, S).
    For piecewise-constant density the result is exact: T_final = exp(-Σ σ·δ).
    """
    tau = sigma * deltas                                                         # optical depth per bin
    alpha = 1.0 - torch.exp(-tau)
    trans = torch.exp(-torch.cumsum(tau, dim=-1) + tau)                          # exclusive cumsum
    weights = alpha * trans                                                      # (B, R, S)
    out = (weights[..., None] * values).sum(dim=-2)                              # (B, R, C)
    acc = weights.sum(dim=-1)                                                    # (B, R)
    return out, acc, weights, trans
