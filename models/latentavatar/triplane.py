"""Tri-plane features: a StyleGAN-like generator θ → three planes, and point sampling on them.

Plane order and axes (world coordinates divided by `bound`, so the planes span [-bound, bound]):
plane 0 = xy (width ← x, height ← y), plane 1 = xz (width ← x, height ← z),
plane 2 = yz (width ← y, height ← z). Sampling is bilinear with `align_corners=False`
(pixel i of n covers [-1 + 2i/n, -1 + 2(i+1)/n]); points outside the planes read zeros.
The features of the three planes are summed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def project_onto_planes(points: torch.Tensor, bound: float = 1.0) -> torch.Tensor:
    """(B, P, 3) → (B, 3, P, 2) normalised (width, height) coordinates on the xy, xz, yz planes."""
    p = points / bound
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    return torch.stack([torch.stack([x, y], -1), torch.stack([x, z], -1), torch.stack([y, z], -1)], 1)


def sample_triplane(planes: torch.Tensor, points: torch.Tensor, bound: float = 1.0) -> torch.Tensor:
    """planes (B, 3, C, H, W), points (B, P, 3) → (B, P, C): sum of the three bilinear samples."""
    b, n_planes, c, h, w = planes.shape
    assert n_planes == 3, planes.shape
    assert points.ndim == 3 and points.shape[0] == b and points.shape[2] == 3, points.shape
    grid = project_onto_planes(points, bound).reshape(b * 3, 1, -1, 2)          # (B*3, 1, P, 2)
    feats = F.grid_sample(planes.reshape(b * 3, c, h, w), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)                                   # (B*3, C, 1, P)
    return feats.reshape(b, 3, c, -1).sum(dim=1).transpose(1, 2)                 # (B, P, C)


# ------------------------------------------------------------------ generator

class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution with weight demodulation and equalised learning rate."""

    def __init__(self,
                 cin: int,            # input channels
                 cout: int,           # output channels
                 kernel: int,         # kernel size (odd)
                 w_dim: int,          # style vector size
                 demodulate: bool = True,
                 activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.affine = nn.Linear(w_dim, cin)
        nn.init.normal_(self.affine.weight, std=1.0 / math.sqrt(w_dim))
        nn.init.ones_(self.affine.bias)
        self.scale = 1.0 / math.sqrt(cin * kernel * kernel)
        self.demodulate, self.activate, self.pad = demodulate, activate, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, cin, h, wd = x.shape
        style = self.affine(w)                                                   # (B, Cin)
        weight = self.weight[None] * self.scale * style[:, None, :, None, None]  # (B, Cout, Cin, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        cout = weight.shape[1]
        out = F.conv2d(x.reshape(1, b * cin, h, wd), weight.reshape(b * cout, cin, *weight.shape[-2:]),
                       padding=self.pad, groups=b)
        out = out.reshape(b, cout, h, wd) + self.bias[None, :, None, None]
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activate else out


class TriplaneGenerator(nn.Module):
    """θ (B, D) → planes (B, 3, C, H, W): mapping MLP, learned 4x4 constant, upsample + modulated convs."""

    def __init__(self,
                 code_dim: int,          # size of the expression code θ
                 plane_channels: int,    # C, channels of each plane
                 plane_res: int,         # H = W of each plane (a power of two ≥ 8)
                 max_channels: int = 128,  # channels at 4x4, halved per doubling down to `min_channels`
                 min_channels: int = 32,
                 w_dim: int = 128):      # style vector size
        super().__init__()
        self.plane_channels, self.plane_res = plane_channels, plane_res
        self.mapping = nn.Sequential(nn.Linear(code_dim, w_dim), nn.LeakyReLU(0.2),
                                     nn.Linear(w_dim, w_dim), nn.LeakyReLU(0.2))
        self.const = nn.Parameter(torch.randn(max_channels, 4, 4))
        convs, res, cin = [], 4, max_channels
        convs.append(ModulatedConv2d(cin, cin, 3, w_dim))
        while res < plane_res:
            res *= 2
            cout = max(min_channels, cin // 2) if res > 16 else cin
            convs.append(ModulatedConv2d(cin, cout, 3, w_dim))
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.to_planes = ModulatedConv2d(cin, 3 * plane_channels, 1, w_dim, demodulate=False, activate=False)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        assert code.ndim == 2, code.shape
        b = code.shape[0]
        w = self.mapping(code)
        x = self.const[None].expand(b, -1, -1, -1)
        for i, conv in enumerate(self.convs):
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = conv(x, w)
        planes = self.to_planes(x, w)                                            # (B, 3*C, H, W)
        return planes.reshape(b, 3, self.plane_channels, self.plane_res, self.plane_res)
