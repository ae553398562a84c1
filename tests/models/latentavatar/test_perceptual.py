"""PerceptualLoss: the no-download substitute, and LPIPS loading from torchvision-layout files."""
from __future__ import annotations

import pytest
import torch

from models.perceptual import PerceptualLoss, ms_ssim

# torchvision layouts written out independently of models.perceptual: (index, out, in, kernel)
VGG16_CONVS = [(0, 64, 3), (2, 64, 64), (5, 128, 64), (7, 128, 128), (10, 256, 128), (12, 256, 256),
               (14, 256, 256), (17, 512, 256), (19, 512, 512), (21, 512, 512), (24, 512, 512),
               (26, 512, 512), (28, 512, 512)]
ALEX_CONVS = [(0, 64, 3, 11), (3, 192, 64, 5), (6, 384, 192, 3), (8, 256, 384, 3), (10, 256, 256, 3)]


def _fixture(path, arch: str, heads: bool = False):
    g = torch.Generator().manual_seed(0)
    sd = {}
    convs = [(i, o, c, 3) for i, o, c in VGG16_CONVS] if arch == "vgg" else ALEX_CONVS
    for i, o, c, k in convs:
        sd[f"features.{i}.weight"] = torch.randn(o, c, k, k, generator=g) * (2.0 / (c * k * k)) ** 0.5
        sd[f"features.{i}.bias"] = torch.zeros(o)
    sd["classifier.6.weight"] = torch.zeros(10, 4)  # ignored by the loader
    if heads:
        for k, (_, o, *_rest) in enumerate([convs[j] for j in ((1, 3, 6, 9, 12) if arch == "vgg" else range(5))]):
            sd[f"lin{k}.model.1.weight"] = torch.rand(1, o, 1, 1, generator=g)
    torch.save(sd, path)
    return sd


def _pair(seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    return x, (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def test_nodownload_basics():
    loss = PerceptualLoss()
    assert loss.kind == "nodownload"
    x, y = _pair()
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-4)
    d1 = loss(x, y)
    d2 = loss(x, (x + 0.6 * (y - x)).clamp(-1, 1))
    assert d1.ndim == 0 and d1 > d2 > 0
    xg = x.clone().requires_grad_(True)
    loss(xg, y).backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        loss(x, y[:, :1])


def test_ms_ssim_identity_and_range():
    x = torch.rand(1, 3, 64, 64)
    assert ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert 0 < ms_ssim(x, torch.rand(1, 3, 64, 64)).item() < 0.5


@pytest.mark.parametrize("arch", ["vgg", "alex"])
def test_lpips_loads_torchvision_layout(tmp_path, arch):
    sd = _fixture(tmp_path / f"{arch}.pth", arch)
    loss = PerceptualLoss(str(tmp_path / f"{arch}.pth"))
    assert loss.kind == f"lpips-{arch}"
    assert torch.equal(loss.impl.net.features[0].weight, sd["features.0.weight"])
    assert not loss.impl.heads_loaded
    x, y = _pair(size=64)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x, y).item() > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_lpips_heads_in_file(tmp_path):
    sd = _fixture(tmp_path / "vgg.pth", "vgg", heads=True)
    loss = PerceptualLoss(str(tmp_path / "vgg.pth"))
    assert loss.impl.heads_loaded
    assert torch.equal(loss.impl.lins[2].weight, sd["lin2.model.1.weight"])


def test_bad_backbone_file(tmp_path):
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError):
        PerceptualLoss(str(tmp_path / "bad.pth"))
