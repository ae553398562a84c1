"""PVP's control networks: pose → blend of pivot latents, expression → offsets of early layers.

Shapes: K pivots, L = number of ws of the generator, D = w_dim, B batch, E expressions.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), nn.LeakyReLU(0.2)]
        d = hidden
    last = nn.Linear(d, out_dim)
    nn.init.zeros_(last.weight)  # start at the centroid / at no offset
    nn.init.zeros_(last.bias)
    mods.append(last)
    return nn.Sequential(*mods)


class PoseMapper(nn.Module):
    """(yaw, pitch) → convex-ish weights over K pivot latents → (B, L, D) latent.

    The MLP predicts residuals r from the centroid (all weights 1/K at r = 0). Each weight is
    softplus(r + c) − β with c chosen so that r = 0 gives 1/K, then the weights are normalised to
    sum to one: every weight is ≥ −β, so the latent stays in the β-dilated convex hull of the
    pivots (β = 0 is the plain hull).
    """

    def __init__(self,
                 pivots: torch.Tensor,        # (K, L, D) pivot latents
                 hidden: int = 128,           # MLP width
                 layers: int = 3,             # MLP depth
                 beta: float = 0.05,          # hull dilation
                 pose_mean: torch.Tensor | None = None,  # (2,) for input standardisation
                 pose_std: torch.Tensor | None = None):  # (2,)
        super().__init__()
        assert pivots.ndim == 3, pivots.shape
        self.register_buffer("pivots", pivots.detach().clone())
        self.register_buffer("pose_mean", pose_mean if pose_mean is not None else torch.zeros(2))
        self.register_buffer("pose_std", pose_std if pose_std is not None else torch.ones(2))
        k = pivots.shape[0]
        self.beta = float(beta)
        target = 1.0 / k + self.beta
        self.shift = math.log(math.expm1(target))  # softplus^-1(1/K + β)
        self.net = _mlp(2, hidden, k, layers)

    def weights(self, pose: torch.Tensor) -> torch.Tensor:
        """(B, 2) degrees → (B, K) weights summing to 1, each ≥ −β."""
        x = (pose - self.pose_mean) / self.pose_std
        w = F.softplus(self.net(x) + self.shift) - self.beta
        return w / w.sum(dim=1, keepdim=True)

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        w = self.weights(pose)
        return torch.einsum("bk,kld->bld", w, self.pivots)


class ExpressionMapper(nn.Module):
    """(jaw, expression vector) → offsets for the first `n_layers` latents, one MLP per layer.

    PVP offsets the first 8 of 18 ws of a 1024 generator; a smaller generator scales that share.
    Inputs are standardised with `expr_mean` / `expr_std` (the training controls' statistics), as
    the pose mapper's are: FLAME controls mix units (jaw in radians, std ~0.05; coefficients, std
    ~1), and an unscaled jaw barely reaches the first layer, so the mapper learned to ignore it.
    A state dict saved before the standardisation (no ``expr_mean`` / ``expr_std``) loads with
    mean 0 and std 1, i.e. as it was trained.
    """

    def __init__(self,
                 in_dim: int,                 # number of expression inputs E
                 w_dim: int,                  # D
                 num_ws: int,                 # L
                 n_layers: int | None = None,  # how many early layers get an offset
                 hidden: int = 128,
                 layers: int = 3,
                 expr_mean: torch.Tensor | None = None,  # (E,) for input standardisation
                 expr_std: torch.Tensor | None = None):  # (E,)
        super().__init__()
        self.num_ws = num_ws
        self.n_layers = n_layers or max(1, round(num_ws * 8 / 18))
        self.register_buffer("expr_mean", torch.zeros(in_dim) if expr_mean is None
                             else torch.as_tensor(expr_mean, dtype=torch.float32).detach().clone())
        self.register_buffer("expr_std", torch.ones(in_dim) if expr_std is None
                             else torch.as_tensor(expr_std, dtype=torch.float32).detach().clone())
        assert self.expr_mean.shape == (in_dim,) and self.expr_std.shape == (in_dim,), (in_dim, self.expr_std.shape)
        self.nets = nn.ModuleList([_mlp(in_dim, hidden, w_dim, layers) for _ in range(self.n_layers)])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, fill in (("expr_mean", 0.0), ("expr_std", 1.0)):  # saved before the standardisation
            if prefix + name not in state_dict:
                state_dict[prefix + name] = torch.full_like(getattr(self, name), fill)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, expr: torch.Tensor) -> torch.Tensor:
        """(B, E) → (B, L, D) offsets (zeros beyond the first n_layers)."""
        x = (expr - self.expr_mean) / self.expr_std
        offs = torch.stack([net(x) for net in self.nets], dim=1)  # (B, n, D)
        pad = offs.new_zeros(offs.shape[0], self.num_ws - self.n_layers, offs.shape[2])
        return torch.cat([offs, pad], dim=1)


class ControlEstimator(nn.Module):
    """A small CNN that reads (yaw, pitch, expressions) back from an aligned face image.

    Trained per project on the video's own crops and tracked values (PVP used DECA, which is
    not available offline); differentiable, so mapper training can ask renders to show the
    commanded expression and keep the pose.
    """

    def __init__(self,
                 out_dim: int,                # 2 + E
                 resolution: int = 128,       # input side
                 width: int = 32):
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 4, width * 8]
        mods: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            mods += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GroupNorm(8, b), nn.SiLU()]
        self.features = nn.Sequential(*mods)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(chans[-1] * (resolution // 32) ** 2, 256), nn.SiLU(),
                                  nn.Linear(256, out_dim))
        self.resolution = resolution
        self.register_buffer("out_mean", torch.zeros(out_dim))
        self.register_buffer("out_std", torch.ones(out_dim))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) in [-1, 1] → (B, 2 + E) in control units."""
        if img.shape[-1] != self.resolution:
            img = F.interpolate(img, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False,
                                antialias=True)
        return self.head(self.features(img)) * self.out_std + self.out_mean
