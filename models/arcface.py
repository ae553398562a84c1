"""ArcFace-trained MobileFaceNet: 128-d identity embeddings from 112x112 face crops.

The layout matches the state_dict of foamliu/MobileFaceNet (Apache-2.0), so the real
pretrained file loads with ``strict=True``::

    conv1     3x3 s2 3→64, BN, ReLU6                 (keys conv1.0, conv1.1)
    dw_conv   depthwise 3x3 64, BN, ReLU, 1x1 64→64, BN, ReLU
    features  inverted residuals (t, c, n, s) = (2,64,5,2) (4,128,1,2) (2,128,6,1) (4,128,1,2) (2,128,2,1)
    conv2     1x1 128→512, BN, ReLU6
    gdconv    depthwise 7x7 on 512 (global depthwise conv), BN
    conv3     1x1 512→128 with bias
    bn        BatchNorm1d(128), flatten

Input: (B, 3, 112, 112) RGB in [0, 1], normalised inside with the ImageNet mean/std.
Compare embeddings with cosine similarity (`identity_similarity`).

Getting a 112x112 crop from our FFHQ-aligned crops: `face_region_from_aligned` takes a fixed
centre square of 80 % of the side. In an FFHQ-style crop the eye distance is about a quarter
of the side and the eyes sit just above the centre; the 80 % square puts them where the
ArcFace 5-point template has them (eye distance ≈ 0.31 of the side, eye line ≈ 0.46 down),
to within a few pixels, which is all a similarity metric needs.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 112
EMBEDDING_DIM = 128
ALIGNED_FACE_FRACTION = 0.8
"""Side of the centre square of an FFHQ-aligned crop that is used as the ArcFace input."""
FEATURE_TAPS = (4, 11, 14)
"""Indices into `features` whose outputs `feature_maps` returns (the ends of the 28, 14 and 7 px stages)."""

_SETTINGS = [  # (expansion t, channels c, repeats n, stride s)
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
]


class ConvBNReLU(nn.Sequential):
    """conv (no bias) → BN → ReLU6; keys `.0` and `.1` as in the checkpoint."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class DepthWiseSeparable(nn.Module):
    """The `dw_conv` block: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.depthwise(x)))
        return F.relu(self.bn2(self.pointwise(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise 3x3, 1x1 project; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            ConvBNReLU(cin, hidden, 1),
            ConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


class GlobalDepthwise(nn.Module):
    """The `gdconv` block: depthwise 7x7 over the whole 7x7 map, then BN."""

    def __init__(self, channels: int = 512, kernel: int = 7):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.depthwise(x))


class MobileFaceNet(nn.Module):
    """(B, 3, 112, 112) RGB in [0, 1] → (B, 128) embeddings (not normalised)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.conv1 = ConvBNReLU(3, 64, 3, 2)
        self.dw_conv = DepthWiseSeparable(64)
        blocks, cin = [], 64
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*blocks)
        self.conv2 = ConvBNReLU(cin, 512, 1)
        self.gdconv = GlobalDepthwise(512, 7)
        self.conv3 = nn.Conv2d(512, EMBEDDING_DIM, 1)
        self.bn = nn.BatchNorm1d(EMBEDDING_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"MobileFaceNet expects (B, 3, 112, 112), got {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        x = self.dw_conv(self.conv1(x))
        x = self.conv2(self.features(x))
        x = self.conv3(self.gdconv(x))            # (B, 128, 1, 1)
        return self.bn(x.flatten(1))              # (B, 128)

    def feature_maps(self, x: torch.Tensor, taps: tuple[int, ...] = FEATURE_TAPS) -> list[torch.Tensor]:
        """Intermediate activations for perceptual distances: (B, 3, 112, 112) RGB in [0, 1] →
        [after `dw_conv` (B, 64, 56, 56)] + [after `features[i]` for i in `taps`].

        With the default taps: (B, 64, 28, 28), (B, 128, 14, 14), (B, 128, 7, 7) — the ends of
        the stride-2 stages. Stops after the last tap, so the embedding head is not run.
        """
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"MobileFaceNet expects (B, 3, 112, 112), got {tuple(x.shape)}")
        if any(not 0 <= t < len(self.features) for t in taps):
            raise ValueError(f"feature taps must lie in 0..{len(self.features) - 1}, got {taps}")
        x = (x - self.mean) / self.std
        x = self.dw_conv(self.conv1(x))           # (B, 64, 56, 56)
        out = [x]
        last = max(taps, default=-1)
        for i, block in enumerate(self.features[:last + 1]):
            x = block(x)
            if i in taps:
                out.append(x)
        return out


class FaceLoss(nn.Module):
    """A face loss from a frozen MobileFaceNet, for training: (x, y) (B, 3, S, S) FFHQ-aligned crops in
    [0, 1] → (feature distance, identity loss), each (B,), differentiable in x.

    - feature distance: as `studio.metrics.feature_distance_tensor` measures it (the maps after
      `dw_conv` and at `FEATURE_TAPS`, unit-normalised over channels, 1 − cos averaged over positions,
      then over the layers), a face-trained stand-in for LPIPS;
    - identity loss: 1 − cosine of the two embeddings.

    One pass through the network gives both: the embedding head runs on from the last tap. The target
    `y` is passed without gradient. The network stays in eval mode (BatchNorm uses its stored
    statistics) and its weights never train."""

    def __init__(self, net: MobileFaceNet):
        super().__init__()
        if max(FEATURE_TAPS) != len(net.features) - 1:
            raise ValueError("the feature taps must end at the last block for one pass to give the embedding")
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "FaceLoss":   # the frozen network never leaves eval mode
        return self

    def _pass(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        n = self.net
        x = face_region_from_aligned(images)
        maps = n.feature_maps(x)
        e = n.bn(n.conv3(n.gdconv(n.conv2(maps[-1]))).flatten(1))
        # the network may run in bfloat16 (an autocast region); the distances are taken in float32
        return [m.float() for m in maps], F.normalize(e.float(), dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, S, S) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
        mx, ex = self._pass(x)
        with torch.no_grad():
            my, ey = self._pass(y)
        return map_distance(mx, my), 1.0 - (ex * ey).sum(1)


def map_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Feature distance of two lists of feature maps (`MobileFaceNet.feature_maps`), per image (B,): each
    map unit-normalised over channels at every position, 1 − cos averaged over positions, then over layers."""
    return sum((1.0 - (F.normalize(x, dim=1, eps=1e-10) * F.normalize(y, dim=1, eps=1e-10)).sum(1))
               .flatten(1).mean(1) for x, y in zip(a, b)) / len(a)


def load_arcface(path: str | os.PathLike, device: str | torch.device = "cpu") -> MobileFaceNet:
    """Build MobileFaceNet and load a state_dict file strictly (never executes code from the file)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    net = MobileFaceNet()
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False).to(device)


def face_region_from_aligned(images: torch.Tensor, fraction: float = ALIGNED_FACE_FRACTION) -> torch.Tensor:
    """(B, 3, S, S) FFHQ-aligned crops → (B, 3, 112, 112): fixed centre square, bilinear resize."""
    s = images.shape[-1]
    side = int(round(s * fraction))
    off = (s - side) // 2
    face = images[..., off:off + side, off:off + side]
    return F.interpolate(face, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                         antialias=side > INPUT_SIZE)


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 / (H, W, 3) uint8 numpy, or a float (B, 3, H, W) tensor in [0, 1] → float tensor."""
    if isinstance(images, torch.Tensor):
        return images.float()
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return t / 255.0 if arr.dtype == np.uint8 else t


@torch.no_grad()
def embed(net: MobileFaceNet, images: np.ndarray | torch.Tensor, aligned: bool = True,
          batch: int = 32) -> torch.Tensor:
    """Unit-length (B, 128) embeddings.

    images: (B, H, W, 3) uint8 RGB, or (B, 3, H, W) float in [0, 1]. With `aligned` they are
    FFHQ-aligned crops and the face square is cut out first; otherwise they are resized to 112.
    """
    x = to_tensor(images)
    dev = next(net.parameters()).device
    out = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].to(dev)
        if aligned:
            xb = face_region_from_aligned(xb)
        elif xb.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            xb = F.interpolate(xb, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                               antialias=True)
        out.append(F.normalize(net(xb), dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0, EMBEDDING_DIM)


def identity_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of embeddings, row by row: (B, 128), (B, 128) → (B,)."""
    return F.cosine_similarity(a, b, dim=-1)
