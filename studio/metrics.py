"""Image metrics shared by the engines' evaluation: PSNR, SSIM, identity similarity, LPIPS.

Images are (H, W, 3) or (B, H, W, 3) arrays, uint8 (0..255) or float (0..1). Batches give the
mean of the per-image values. Identity similarity uses the ArcFace weights configured in the
Models settings (`studio.model_files.arcface_path`) and is None when they are absent; LPIPS is
None unless a VGG16/AlexNet backbone is configured.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np


def as_float(img: np.ndarray) -> np.ndarray:
    """uint8 → float64 / 255; floats pass through as float64 (expected in [0, 1])."""
    a = np.asarray(img)
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


def _batch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_float(a), as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    if a.ndim != 4:
        raise ValueError(f"expected (H, W, C) or (B, H, W, C) images, got {a.shape}")
    return a, b


def psnr_each(a: np.ndarray, b: np.ndarray, max_db: float = 100.0) -> np.ndarray:
    """Per-image PSNR in dB, (B,)."""
    a, b = _batch(a, b)
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return np.minimum(max_db, 10.0 * np.log10(1.0 / np.maximum(mse, 1e-20)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB (mean over a batch), peak 1.0 (255 for uint8)."""
    return float(np.mean(psnr_each(a, b)))


def ssim_each(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004: Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03), channel mean, (B,)."""
    a, b = _batch(a, b)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), sigma, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    out = []
    for x, y in zip(a, b):
        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        out.append(m[5:-5, 5:-5].mean() if min(m.shape[:2]) > 10 else m.mean())
    return np.array(out)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(ssim_each(a, b)))


# ------------------------------------------------------------------ identity (ArcFace)

def arcface_weights() -> Path | None:
    """The configured ArcFace MobileFaceNet file, or None."""
    try:
        from .model_files import arcface_path

        p = arcface_path()
    except Exception:
        p = None
    return Path(p) if p and Path(p).exists() else None


@lru_cache(maxsize=2)
def _arcface(path: str):
    from models.arcface import load_arcface

    return load_arcface(path)


def embeddings(images: np.ndarray, aligned: bool = True) -> np.ndarray | None:
    """(B, H, W, 3) uint8 crops → (B, 128) unit ArcFace embeddings, or None without weights.

    `aligned`: the images are FFHQ-aligned crops (the fixed face square is cut out first).
    """
    path = arcface_weights()
    if path is None:
        return None
    from models.arcface import embed

    arr = np.asarray(images)
    return embed(_arcface(str(path)), arr[None] if arr.ndim == 3 else arr, aligned=aligned).numpy()


def identity_similarity_each(a: np.ndarray, b: np.ndarray, aligned: bool = True) -> np.ndarray | None:
    """Cosine similarity of ArcFace embeddings, image by image (B,); None without weights."""
    ea, eb = embeddings(a, aligned), embeddings(b, aligned)
    if ea is None or eb is None:
        return None
    return np.sum(ea * eb, axis=1)


def identity_similarity(a: np.ndarray, b: np.ndarray, aligned: bool = True) -> float | None:
    """Mean ArcFace cosine similarity between paired images; None when the weights are absent."""
    s = identity_similarity_each(a, b, aligned)
    return None if s is None else float(np.mean(s))


def pairwise_identity(images: np.ndarray, aligned: bool = True) -> float | None:
    """Mean ArcFace cosine similarity over all pairs of distinct images; None without weights."""
    e = embeddings(images, aligned)
    if e is None or len(e) < 2:
        return None
    sims = e @ e.T
    n = len(e)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


# ------------------------------------------------------------------ LPIPS (optional)

def lpips_backbone() -> Path | None:
    try:
        from .model_files import lpips_path

        p = lpips_path()
    except Exception:
        p = None
    return Path(p) if p and Path(p).exists() else None


@lru_cache(maxsize=2)
def _lpips(path: str):
    from models.perceptual import PerceptualLoss

    return PerceptualLoss(path)


def lpips(a: np.ndarray, b: np.ndarray, backbone: str | Path | None = None) -> float | None:
    """Mean LPIPS distance with the configured (or given) backbone; None when none is configured."""
    path = Path(backbone) if backbone else lpips_backbone()
    if path is None:
        return None
    import torch

    x, y = _batch(a, b)
    tx = torch.from_numpy(x).permute(0, 3, 1, 2).float() * 2 - 1
    ty = torch.from_numpy(y).permute(0, 3, 1, 2).float() * 2 - 1
    loss = _lpips(str(path))
    with torch.no_grad():
        return float(np.mean([float(loss(tx[i:i + 1], ty[i:i + 1])) for i in range(len(tx))]))
