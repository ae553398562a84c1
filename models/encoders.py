"""Image → W encoder used to train the subject prior (reconstruction with encoded latents)."""
from __future__ import annotations

import math

import torch
from torch import nn


class LatentEncoder(nn.Module):
    """(B, 3, R, R) aligned face in [-1, 1] → (B, D) latent in W.

    A plain strided conv stack (R → 4) and a linear head. Predicting one w per frame (not W+)
    keeps the learned latent space compact, so pivots can be blended and interpolated.
    """

    def __init__(self,
                 resolution: int,       # R, a power of two ≥ 16
                 w_dim: int,            # D
                 channel_base: int = 4096,
                 channel_max: int = 256):
        super().__init__()
        assert resolution >= 16 and resolution & (resolution - 1) == 0, resolution
        n = int(math.log2(resolution)) - 2  # stages down to 4x4
        chans = [min(channel_max, channel_base // (resolution >> i)) for i in range(n + 1)]
        mods: list[nn.Module] = [nn.Conv2d(3, chans[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for a, b in zip(chans[:-1], chans[1:]):
            mods += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                     nn.Conv2d(b, b, 3, padding=1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*mods)
        self.head = nn.Linear(chans[-1] * 16, w_dim)
        self.resolution = resolution
        self.w_dim = w_dim

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.ndim == 4 and img.shape[1:] == (3, self.resolution, self.resolution), img.shape
        return self.head(self.features(img).flatten(1))
