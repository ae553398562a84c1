"""A sharpening head for the StyleGAN engine: a small U-Net that turns the generator's soft render into one
with eyes, lashes, lips and hair drawn, at the same resolution.

The small synthesis network trained in a preview's minutes learns high frequencies slowly under
reconstruction losses (README, "Why the StyleGAN engine's render stays a blur"); LatentAvatar ends in a
super-resolution U-Net for the same reason. This head plays that part after the generator: its output is
the render plus a learned residual, and the residual's last convolution starts at zero, so an untrained
head returns the render unchanged.

Shapes: B batch, S the render's side (divisible by 2^(levels−1)).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .stylegan2.layers import assert_shape


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True))


class SharpenHead(nn.Module):
    """(B, 3, S, S) render in [−1, 1] → (B, 3, S, S): the render plus a residual from a U-Net with one
    level per entry of `channels` (average-pool down, bilinear up, skips concatenated)."""

    def __init__(self,
                 channels: tuple[int, ...] = (16, 32, 64, 96),     # width of each level, full resolution first
                 ):
        super().__init__()
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels must be one or more positive widths, got {channels}")
        self.channels = tuple(int(c) for c in channels)
        self.down = nn.ModuleList()
        cin = 3
        for c in self.channels:
            self.down.append(_block(cin, c))
            cin = c
        self.up = nn.ModuleList(_block(self.channels[k] + self.channels[k - 1], self.channels[k - 1])
                                for k in range(len(self.channels) - 1, 0, -1))
        self.to_rgb = nn.Conv2d(self.channels[0], 3, 3, 1, 1)
        nn.init.zeros_(self.to_rgb.weight)   # untrained: the render passes through unchanged
        nn.init.zeros_(self.to_rgb.bias)

    @property
    def multiple(self) -> int:
        """The render's side must be a multiple of this."""
        return 2 ** (len(self.channels) - 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert_shape(img, [None, 3, None, None])
        if img.shape[-1] % self.multiple or img.shape[-2] % self.multiple:
            raise ValueError(f"the render's sides {tuple(img.shape[-2:])} must be multiples of {self.multiple}")
        skips = []
        h = img
        for k, block in enumerate(self.down):
            h = block(h if k == 0 else F.avg_pool2d(h, 2))
            skips.append(h)
        for k, block in enumerate(self.up):
            skip = skips[-2 - k]
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], 1))
        return img + self.to_rgb(h)


class PatchCritic(nn.Module):
    """A patch critic for the sharpening head's adversarial term (pix2pix-style when conditional).

    (B, 3, S, S) render and (B, 3, S, S) image, both in [−1, 1] → (B, 1, S/2^levels, S/2^levels) logits, one
    per patch: high where the image looks like a real frame for that render, low where it looks like the
    head's output. With `conditional` False the critic sees the image alone (the render is ignored): it
    then judges only whether the patch looks like the video, not whether it agrees with the render. With
    `levels` 3 each logit sees about 46 px of a 128 px render, the scale of an eye or the mouth, so the
    critic judges texture and local structure rather than the whole face. Spectral normalisation keeps it
    from overpowering the head in a preview's few hundred steps.
    """

    def __init__(self,
                 width: int = 32,    # channels of the first level, doubled at each further level
                 levels: int = 3,    # stride-2 convolutions
                 conditional: bool = True,   # the render is an input beside the image
                 ):
        super().__init__()
        if width < 1 or levels < 1:
            raise ValueError(f"width and levels must be positive, got {width}, {levels}")
        sn = nn.utils.parametrizations.spectral_norm
        layers: list[nn.Module] = []
        self.conditional = bool(conditional)
        cin, c = (6 if self.conditional else 3), int(width)
        for _ in range(int(levels)):
            layers += [sn(nn.Conv2d(cin, c, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
            cin, c = c, c * 2
        layers.append(sn(nn.Conv2d(cin, 1, 3, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, render: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        assert_shape(render, [None, 3, None, None])
        assert_shape(image, list(render.shape))
        return self.net(torch.cat([render, image], 1) if self.conditional else image)
