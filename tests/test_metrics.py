"""studio.metrics: PSNR/SSIM against closed forms, identity similarity with and without weights."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from studio import metrics


def shared_dir() -> Path:
    env = os.environ.get("AVATAR_STUDIO_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


WEIGHTS = shared_dir() / "weights" / "arcface_mobilefacenet.pt"


def test_psnr_closed_form_and_dtypes():
    a = np.full((2, 8, 8, 3), 0.5)
    b = a + 0.1                                   # MSE 0.01 → 20 dB
    assert metrics.psnr(a, b) == pytest.approx(20.0, abs=1e-9)
    a8, b8 = np.full((8, 8, 3), 100, np.uint8), np.full((8, 8, 3), 110, np.uint8)
    assert metrics.psnr(a8, b8) == pytest.approx(10 * np.log10(255 ** 2 / 100), abs=1e-9)
    assert metrics.psnr(a8, a8) == 100.0          # identical images: capped, not inf
    with pytest.raises(ValueError):
        metrics.psnr(a, b[:1])


def test_ssim_properties():
    rng = np.random.default_rng(0)
    x = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-9)
    noisy = lambda s: np.clip(x + rng.normal(0, s, x.shape), 0, 255).astype(np.uint8)  # noqa: E731
    s1, s2 = metrics.ssim(x, noisy(10)), metrics.ssim(x, noisy(40))
    assert 1.0 > s1 > s2 > 0
    # a constant offset keeps structure: SSIM stays high while PSNR drops
    shifted = np.clip(x.astype(int) + 20, 0, 255).astype(np.uint8)
    assert metrics.ssim(x, shifted) > s2
    assert metrics.ssim(x / 255.0, shifted / 255.0) == pytest.approx(metrics.ssim(x, shifted), abs=1e-9)


def test_identity_none_without_weights(monkeypatch):
    monkeypatch.setattr(metrics, "arcface_weights", lambda: None)
    img = np.zeros((2, 64, 64, 3), np.uint8)
    assert metrics.identity_similarity(img, img) is None
    assert metrics.pairwise_identity(img) is None


@pytest.mark.skipif(not WEIGHTS.exists(), reason=f"ArcFace weights not found at {WEIGHTS} (../shared is absent)")
def test_identity_with_weights(monkeypatch):
    monkeypatch.setattr(metrics, "arcface_weights", lambda: WEIGHTS)
    rng = np.random.default_rng(0)
    a = (rng.random((2, 128, 128, 3)) * 255).astype(np.uint8)
    assert metrics.identity_similarity(a, a) == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= metrics.pairwise_identity(a) <= 1.0


def test_lpips_only_with_backbone(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(metrics, "lpips_backbone", lambda: None)
    a = np.zeros((1, 32, 32, 3), np.uint8)
    assert metrics.lpips(a, a) is None
    # a torchvision-layout AlexNet file written here
    convs = [(0, 64, 3, 11), (3, 192, 64, 5), (6, 384, 192, 3), (8, 256, 384, 3), (10, 256, 256, 3)]
    sd = {}
    for i, o, c, k in convs:
        sd[f"features.{i}.weight"] = torch.randn(o, c, k, k) * (2 / (c * k * k)) ** 0.5
        sd[f"features.{i}.bias"] = torch.zeros(o)
    torch.save(sd, tmp_path / "alexnet.pth")
    b = (np.random.default_rng(1).random((1, 64, 64, 3)) * 255).astype(np.uint8)
    assert metrics.lpips(b, b, backbone=tmp_path / "alexnet.pth") == pytest.approx(0.0, abs=1e-6)
    assert metrics.lpips(b, 255 - b, backbone=tmp_path / "alexnet.pth") > 0
