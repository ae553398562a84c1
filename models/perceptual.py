"""Perceptual loss: LPIPS when a backbone file is given, otherwise a no-download substitute.

``PerceptualLoss(backbone_path=None)`` is an ``nn.Module``; ``forward(x, y)`` takes two
(B, 3, H, W) images in [-1, 1] and returns a scalar (mean over the batch).

LPIPS (``kind`` "lpips-vgg" / "lpips-alex"): the user supplies a torchvision-format
VGG16 or AlexNet state_dict (``features.N.weight`` / ``features.N.bias``; classifier keys
are ignored). The feature stacks below are written out layer by layer with torchvision's
indices, so such a file loads strictly. The linear heads (one 1x1 conv per tap, LPIPS v0.1
key names ``lin{k}.model.1.weight``) are read from the same file when it holds them, or from
``heads_path``; without them each tap gets uniform weights 1/C (the "baseline" variant of
the LPIPS paper: the mean of squared differences of unit-normalised features).

No-download substitute (``kind`` "nodownload"): ``1 - MS-SSIM`` (3 scales, Gaussian
window) plus an L1 on a 4-level Laplacian pyramid. Why this choice: it needs no
pretrained file at all, it costs a few small convolutions (fine on a 2-core CPU at
128x128), and it penalises what plain L1 lets through — loss of local contrast and of
edges at several scales — which is what LPIPS mostly buys for reconstruction. An ArcFace
distance was not used: it only sees the face square, needs the weights file, and is
already available separately as an identity loss.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------ LPIPS backbones

# (index in torchvision `features`, kind, args); taps are the ReLU outputs LPIPS uses.
_VGG16 = [(0, "conv", (3, 64, 3, 1, 1)), (2, "conv", (64, 64, 3, 1, 1)), (4, "pool", (2, 2, 0)),
          (5, "conv", (64, 128, 3, 1, 1)), (7, "conv", (128, 128, 3, 1, 1)), (9, "pool", (2, 2, 0)),
          (10, "conv", (128, 256, 3, 1, 1)), (12, "conv", (256, 256, 3, 1, 1)), (14, "conv", (256, 256, 3, 1, 1)),
          (16, "pool", (2, 2, 0)),
          (17, "conv", (256, 512, 3, 1, 1)), (19, "conv", (512, 512, 3, 1, 1)), (21, "conv", (512, 512, 3, 1, 1)),
          (23, "pool", (2, 2, 0)),
          (24, "conv", (512, 512, 3, 1, 1)), (26, "conv", (512, 512, 3, 1, 1)), (28, "conv", (512, 512, 3, 1, 1))]
_VGG16_TAPS = (2, 7, 14, 21, 28)        # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (after these convs)
_ALEX = [(0, "conv", (3, 64, 11, 4, 2)), (2, "pool", (3, 2, 0)), (3, "conv", (64, 192, 5, 1, 2)),
         (5, "pool", (3, 2, 0)), (6, "conv", (192, 384, 3, 1, 1)), (8, "conv", (384, 256, 3, 1, 1)),
         (10, "conv", (256, 256, 3, 1, 1))]
_ALEX_TAPS = (0, 3, 6, 8, 10)


class Backbone(nn.Module):
    """VGG16 or AlexNet `features` with torchvision key names; returns the five LPIPS taps."""

    def __init__(self, arch: str):
        super().__init__()
        layers, taps = (_VGG16, _VGG16_TAPS) if arch == "vgg" else (_ALEX, _ALEX_TAPS)
        self.arch = arch
        self.taps = taps
        mods: list[nn.Module] = []
        for idx, kind, args in layers:
            while len(mods) < idx:
                mods.append(nn.ReLU(inplace=False))  # the ReLU slots between convs keep the indices aligned
            if kind == "conv":
                mods.append(nn.Conv2d(args[0], args[1], args[2], args[3], args[4]))
            else:
                mods.append(nn.MaxPool2d(args[0], args[1], args[2]))
        mods.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*mods)
        self.channels = [self.features[i].out_channels for i in taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i - 1 in self.taps:  # output of the ReLU after a tapped conv
                outs.append(x)
        return outs


def detect_arch(state: dict) -> str:
    """"vgg" or "alex" from a torchvision state_dict's `features.*` keys."""
    if "features.28.weight" in state:
        return "vgg"
    w0 = state.get("features.0.weight")
    if "features.10.weight" in state and w0 is not None and tuple(w0.shape[-2:]) == (11, 11):
        return "alex"
    raise ValueError("the backbone file is neither a torchvision VGG16 nor an AlexNet state_dict "
                     "(expected keys like features.0.weight ... features.28.weight)")


def normalize_tensor(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS distance with a frozen backbone and (loaded or uniform) linear heads."""

    def __init__(self, arch: str):
        super().__init__()
        self.net = Backbone(arch)
        self.register_buffer("shift", torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([.458, .448, .450]).view(1, 3, 1, 1))
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.net.channels)
        for lin, c in zip(self.lins, self.net.channels):
            nn.init.constant_(lin.weight, 1.0 / c)
        self.heads_loaded = False

    def load_backbone(self, state: dict) -> None:
        feats = {k: v for k, v in state.items() if k.startswith("features.")}
        self.net.load_state_dict(feats, strict=True)

    def load_heads(self, state: dict) -> bool:
        keys = [f"lin{i}.model.1.weight" for i in range(len(self.lins))]
        if not all(k in state for k in keys):
            return False
        for lin, k in zip(self.lins, keys):
            lin.weight.data.copy_(state[k].view_as(lin.weight))
        self.heads_loaded = True
        return True

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.net((x - self.shift) / self.scale)
        fy = self.net((y - self.shift) / self.scale)
        total = 0.0
        for a, b, lin in zip(fx, fy, self.lins):
            d = (normalize_tensor(a) - normalize_tensor(b)) ** 2
            total = total + lin(d).mean(dim=(1, 2, 3))
        return total  # (B,)


# ------------------------------------------------------------------ no-download substitute

def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None, dtype=None) -> torch.Tensor:
    g = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-g ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim_terms(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, size: int = 11,
               sigma: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image SSIM and contrast-structure terms, (B,) each; x, y (B, C, H, W) in [0, data_range]."""
    size = min(size, x.shape[-1], x.shape[-2])
    g = _gaussian_window(size, sigma, x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mx * mx
    syy = _blur(y * y, g) - my * my
    sxy = _blur(x * y, g) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs
    return ssim.mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ms_ssim(x: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Multi-scale SSIM of (B, C, H, W) images in [0, 1] → (B,). Weights renormalised for `scales`."""
    w = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:scales], device=x.device, dtype=x.dtype)
    w = w / w.sum()
    vals = []
    for s in range(scales):
        ssim, cs = ssim_terms(x, y)
        vals.append(ssim if s == scales - 1 else cs)
        if s < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    # Floor at 0.01: the gradient of v**w grows like v**(w-1) as v -> 0 (about 1e4 at 1e-6), which
    # blew up generator training whenever a scale's contrast-structure term neared zero.
    vals_t = torch.stack(vals, dim=1).clamp_min(1e-2)  # (B, scales)
    return torch.prod(vals_t ** w, dim=1)


def laplacian_pyramid_l1(x: torch.Tensor, y: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Mean L1 between Laplacian pyramids (band-pass levels plus the low-pass rest) → (B,)."""
    total = 0.0
    for _ in range(levels):
        xd, yd = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        xu = F.interpolate(xd, size=x.shape[-2:], mode="bilinear", align_corners=False)
        yu = F.interpolate(yd, size=y.shape[-2:], mode="bilinear", align_corners=False)
        total = total + ((x - xu) - (y - yu)).abs().mean(dim=(1, 2, 3))
        x, y = xd, yd
        if min(x.shape[-2:]) < 4:
            break
    return total + (x - y).abs().mean(dim=(1, 2, 3))


class NoDownloadPerceptual(nn.Module):
    """(1 - MS-SSIM) + Laplacian-pyramid L1 on images in [-1, 1] → (B,)."""

    def __init__(self, scales: int = 3, levels: int = 4, pyramid_weight: float = 1.0):
        super().__init__()
        self.scales, self.levels, self.pyramid_weight = scales, levels, pyramid_weight

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x01, y01 = (x + 1) / 2, (y + 1) / 2
        scales = max(1, min(self.scales, int(torch.log2(torch.tensor(min(x.shape[-2:]) / 11.0)).item()) + 1))
        return (1 - ms_ssim(x01, y01, scales)) + self.pyramid_weight * laplacian_pyramid_l1(x01, y01, self.levels)


# ------------------------------------------------------------------ the public loss

class PerceptualLoss(nn.Module):
    """Perceptual distance between (B, 3, H, W) images in [-1, 1], averaged to a scalar.

    backbone_path: torchvision VGG16/AlexNet state_dict (`.pth`) for LPIPS, or None for the
        no-download substitute.
    heads_path: optional LPIPS v0.1 linear-head file (`lin{k}.model.1.weight`); ignored without
        a backbone.
    """

    def __init__(self, backbone_path: str | os.PathLike | None = None,
                 heads_path: str | os.PathLike | None = None):
        super().__init__()
        if backbone_path is None:
            self.kind = "nodownload"
            self.impl: nn.Module = NoDownloadPerceptual()
        else:
            state = torch.load(backbone_path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            arch = detect_arch(state)
            self.kind = f"lpips-{arch}"
            lp = LPIPS(arch)
            lp.load_backbone(state)
            if not lp.load_heads(state) and heads_path is not None:
                heads = torch.load(heads_path, map_location="cpu", weights_only=True)
                if not lp.load_heads(heads):
                    raise ValueError(f"{heads_path} holds no LPIPS linear heads (lin0.model.1.weight ...)")
            self.impl = lp
        self.impl.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "PerceptualLoss":  # the backbone stays in eval mode
        super().train(mode)
        self.impl.eval()
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"PerceptualLoss expects two (B, 3, H, W) images, got {tuple(x.shape)} {tuple(y.shape)}")
        # Always in float32, also inside a bfloat16 autocast region: SSIM's variances are differences of
        # near-equal means (E[x²] − E[x]²), which bfloat16's 8-bit mantissa turns into noise.
        with torch.autocast(x.device.type, enabled=False):
            return self.impl(x.float(), y.float()).mean()
