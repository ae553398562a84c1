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


# ------------------------------------------------------------------ torch converters and PSNR

def test_uint8_converters_roundtrip_and_values():
    import torch

    rng = np.random.default_rng(0)
    imgs = (rng.random((2, 5, 7, 3)) * 255).astype(np.uint8)
    for rng_ in ((-1, 1), (0, 1)):
        t = metrics.from_uint8(imgs, rng_)
        assert t.shape == (2, 3, 5, 7) and t.dtype == torch.float32
        assert float(t.min()) >= rng_[0] and float(t.max()) <= rng_[1]
        assert np.array_equal(metrics.to_uint8(t, rng_), imgs)
    x = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert metrics.to_uint8(x)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]   # clamped, rounded
    assert metrics.from_uint8(imgs[0]).shape == (1, 3, 5, 7)                    # a single (H, W, 3) image
    with pytest.raises(ValueError):
        metrics.to_uint8(torch.zeros(2, 5, 7, 3))                               # channels last
    with pytest.raises(ValueError):
        metrics.from_uint8(imgs.astype(np.float32))
    with pytest.raises(ValueError):
        metrics.from_uint8(imgs, (1, 1))


def test_psnr_tensor_matches_numpy_psnr():
    import torch

    rng = np.random.default_rng(1)
    a = (rng.random((3, 16, 16, 3)) * 255).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    ref = metrics.psnr_each(a, b)
    for rng_ in ((-1, 1), (0, 1)):
        got = metrics.psnr_tensor(metrics.from_uint8(a, rng_), metrics.from_uint8(b, rng_), rng_)
        assert got.shape == (3,)
        assert np.allclose(got.numpy(), ref, atol=1e-3)
    t = metrics.from_uint8(a)
    assert torch.all(metrics.psnr_tensor(t, t) == 100.0)
    # closed form on the [-1, 1] scale: an offset of 0.2 is 0.1 on [0, 1] → 20 dB
    z = torch.zeros(1, 3, 4, 4)
    assert float(metrics.psnr_tensor(z, z + 0.2)) == pytest.approx(20.0, abs=1e-4)
    with pytest.raises(ValueError):
        metrics.psnr_tensor(t, t[:1])


# ------------------------------------------------------------------ sharpness

def _texture(size: int = 128, seed: int = 0) -> np.ndarray:
    """A face-sized detailed image: smooth shading plus fine random texture."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.2 * np.sin(6 * xx) * np.cos(4 * yy)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (size, size)), (0, 0), 0.7)
    img = np.clip(base + 0.15 * fine, 0, 1)[..., None] * np.array([1.0, 0.8, 0.7])
    return (img * 255).astype(np.uint8)


def test_sharpness_ratio_identical_blurred_and_resolution_fair():
    import cv2

    x = _texture(256)
    assert metrics.sharpness_ratio_each(x, x)[0] == pytest.approx(1.0, abs=1e-12)
    ratios = [metrics.sharpness_ratio_each(cv2.GaussianBlur(x, (0, 0), s), x)[0] for s in (0.7, 1.5, 3.0)]
    assert 1.0 > ratios[0] > ratios[1] > ratios[2] > 0
    # a 128 px render that is exactly the real 256 px crop area-downscaled is as sharp as the video
    small = cv2.resize(x, (128, 128), interpolation=cv2.INTER_AREA)
    assert metrics.sharpness_ratio_each(small[None], x[None])[0] == pytest.approx(1.0, abs=1e-9)
    # ... and a 128 px render blown up to 256 px is not
    big = cv2.resize(cv2.GaussianBlur(small, (0, 0), 1.0), (256, 256), interpolation=cv2.INTER_LINEAR)
    assert metrics.sharpness_ratio_each(big[None], x[None])[0] < 0.6
    summary = metrics.sharpness_summary(np.array([0.2, np.nan, 0.4, 0.9]))
    assert summary == {"median": pytest.approx(0.4), "mean": pytest.approx(0.5)}
    assert metrics.sharpness_summary(np.array([np.nan])) == {"median": None, "mean": None}
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert np.isnan(metrics.sharpness_ratio_each(x[:64, :64], flat)[0])   # no real energy: undefined
    with pytest.raises(ValueError):
        metrics.sharpness_ratio_each(x[None], x[None, :, :200])


def test_sharpness_counts_only_the_face_region():
    size = 96
    x = _texture(size)
    y = x.copy()
    y[:, :15] = 128                                  # flatten a band outside the face ellipse
    mask = metrics.face_mask(size)
    assert not mask[:, :17].any() and mask[size // 2, size // 2]
    assert metrics.sharpness_ratio_each(y[None], x[None], mask[None])[0] == pytest.approx(1.0, abs=1e-12)
    assert metrics.sharpness_ratio_each(y[None], x[None], np.ones((1, size, size), bool))[0] < 0.95


def test_face_mask_from_landmarks_and_fallback():
    ang = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ring = np.stack([30 + 10 * np.cos(ang), 40 + 20 * np.sin(ang)], 1)
    m = metrics.face_mask(64, ring)
    assert m[40, 30] and not m[40, 45] and not m[10, 30]              # the hull, not the default ellipse
    assert abs(m.sum() - np.pi * 10 * 20) < 0.15 * np.pi * 10 * 20    # edge pixels are filled too
    ellipse = metrics.face_mask(64)
    assert np.array_equal(metrics.face_mask(64, np.zeros((478, 2))), ellipse)   # degenerate mesh → ellipse
    assert 0.25 < ellipse.mean() < 0.45


# ------------------------------------------------------------------ ArcFace feature distance

def test_feature_distance_structure_random_network():
    """A randomly initialised MobileFaceNet: only the structural properties (no claim about faces)."""
    import torch

    from models.arcface import MobileFaceNet

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = MobileFaceNet().eval().requires_grad_(False)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    d0 = metrics.feature_distance_tensor(net, x, x)
    assert d0.shape == (2,) and float(d0.abs().max()) < 1e-5
    dxy, dyx = metrics.feature_distance_tensor(net, x, y), metrics.feature_distance_tensor(net, y, x)
    assert torch.allclose(dxy, dyx, atol=1e-6) and bool((dxy > 1e-3).all()) and bool((dxy <= 2).all())
    assert metrics.feature_distance_tensor(net, x[:, :, :56, :56], y[:, :, :56, :56], aligned=False).shape == (2,)
    x.requires_grad_(True)                           # usable as a loss
    metrics.feature_distance_tensor(net, x, y).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    with pytest.raises(ValueError):
        metrics.feature_distance_tensor(net, x, y[:1])


def test_feature_distance_none_without_weights(monkeypatch):
    monkeypatch.setattr(metrics, "arcface_weights", lambda: None)
    img = np.zeros((1, 64, 64, 3), np.uint8)
    assert metrics.feature_distance(img, img) is None and metrics.feature_distance_each(img, img) is None


VIDEO = shared_dir() / "data" / "videos" / "subject_turns_d3.mp4"


@pytest.mark.skipif(not WEIGHTS.exists(), reason=f"ArcFace weights not found at {WEIGHTS} (../shared is absent)")
@pytest.mark.skipif(not VIDEO.exists(), reason=f"shared video not found at {VIDEO} (../shared is absent)")
def test_feature_distance_real_face_grows_with_blur_and_noise(monkeypatch):
    import cv2
    import torch

    torch.set_num_threads(1)
    monkeypatch.setattr(metrics, "arcface_weights", lambda: WEIGHTS)
    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    for _ in range(2):                               # frame 0 and a later frame of the same person
        ok, f = cap.read()
        assert ok
        frames.append(cv2.cvtColor(cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        cap.set(cv2.CAP_PROP_POS_FRAMES, 60)
    cap.release()
    x = frames[0][None]
    assert metrics.feature_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    blur = [metrics.feature_distance(x, cv2.GaussianBlur(frames[0], (0, 0), s)[None]) for s in (0.7, 1.5, 3.0, 5.0)]
    assert all(b2 > b1 for b1, b2 in zip(blur, blur[1:])), blur
    rng = np.random.default_rng(0)
    def noisy(s):
        return np.clip(frames[0] + rng.normal(0, s, frames[0].shape), 0, 255).astype(np.uint8)[None]

    noise = [metrics.feature_distance(x, noisy(s)) for s in (5, 15, 40)]
    assert 0 < noise[0] < noise[1] < noise[2], noise
    # symmetric
    y = frames[1][None]
    assert metrics.feature_distance(x, y) == pytest.approx(metrics.feature_distance(y, x), rel=1e-4)
    assert metrics.feature_distance_each(np.concatenate([x, x]), np.concatenate([x, y])).shape == (2,)
