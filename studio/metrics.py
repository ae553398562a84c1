"""Image metrics shared by the engines' evaluation and the training stages.

Numpy measures take (H, W, 3) or (B, H, W, 3) arrays, uint8 (0..255) or float (0..1); batches give
the mean of the per-image values (the `*_each` functions give them image by image):

- PSNR, SSIM — reward a blurred mean face, so they are never reported alone;
- sharpness ratio — high-frequency energy of the face region of a render over that of the real
  crop (1.0 = as sharp as the video), at the render's resolution (`sharpness_ratio_each`);
- identity — ArcFace cosine similarity; None when no ArcFace file is configured;
- ArcFace feature distance — a perceptual distance on the intermediate feature maps of the same
  ArcFace network, a stand-in for LPIPS that needs no download (`feature_distance_each`); None
  without the ArcFace file;
- LPIPS — only when a VGG16/AlexNet backbone is configured.

Torch helpers used across the app: `psnr_tensor`, `to_uint8`, `from_uint8` (one set of
converters between (B, 3, H, W) float tensors and (B, H, W, 3) uint8 images).
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


# ------------------------------------------------------------------ torch converters

def _check_range(value_range) -> tuple[float, float]:
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    return lo, hi


def to_uint8(x, value_range=(-1, 1)) -> np.ndarray:
    """(B, 3, H, W) float tensor with values in `value_range` → (B, H, W, 3) uint8 numpy (clamped, rounded)."""
    import torch

    lo, hi = _check_range(value_range)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"to_uint8 expects a (B, 3, H, W) tensor, got {tuple(x.shape)}")
    y = (x.detach().float() - lo) * (255.0 / (hi - lo))
    return y.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(imgs, value_range=(-1, 1), device=None):
    """(B, H, W, 3) or (H, W, 3) uint8 images (numpy or tensor) → (B, 3, H, W) float32 tensor in `value_range`."""
    import torch

    lo, hi = _check_range(value_range)
    t = imgs if isinstance(imgs, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(imgs))
    if t.dtype != torch.uint8:
        raise ValueError(f"from_uint8 expects uint8 images, got {t.dtype}")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"from_uint8 expects (B, H, W, 3) images, got {tuple(t.shape)}")
    t = t.to(device) if device is not None else t
    return t.permute(0, 3, 1, 2).float() * ((hi - lo) / 255.0) + lo


def psnr_tensor(a, b, value_range=(-1, 1), max_db: float = 100.0):
    """Per-image PSNR in dB, (B,), of (B, C, H, W) tensors with values in `value_range`.

    Both are clamped to the range and measured on its width (peak 1 on the [0, 1] scale), so the
    figure equals `psnr_each` on the same images as uint8. Capped at `max_db` for identical images.
    """
    import torch

    lo, hi = _check_range(value_range)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"psnr_tensor expects two (B, C, H, W) tensors of one shape, got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")
    d = (a.clamp(lo, hi) - b.clamp(lo, hi)) / (hi - lo)
    mse = d.pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(10 ** (-max_db / 10)))).clamp_max(max_db)


# ------------------------------------------------------------------ sharpness

def luminance(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB → (H, W) float64 luma in [0, 1] (Rec. 601 weights)."""
    x = as_float(img)
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def face_mask(size: int, landmarks: np.ndarray | None = None) -> np.ndarray:
    """(size, size) bool face region of an aligned crop.

    `landmarks`: (K, 2) face landmarks in this crop's pixels (e.g. the tracked mesh scaled to
    `size`): their convex hull. Without them, or when they are degenerate (hull under 5 % of the
    crop), an ellipse over the face of an FFHQ-aligned crop (centre at 0.5, 0.52 of the side,
    semi-axes 0.30 and 0.38 of the side).
    """
    mask = np.zeros((size, size), np.uint8)
    if landmarks is not None and len(landmarks) >= 3 and np.all(np.isfinite(landmarks)):
        hull = cv2.convexHull(np.round(np.asarray(landmarks, np.float64)[:, :2]).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
        if mask.sum() >= 0.05 * size * size:
            return mask.astype(bool)
        mask[:] = 0
    centre = (int(round(0.5 * size)), int(round(0.52 * size)))
    axes = (max(1, int(round(0.30 * size))), max(1, int(round(0.38 * size))))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
    return mask.astype(bool)


def laplacian_energy(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Variance of the 3x3 Laplacian of the luminance of `img` (H, W, 3) over `mask` (H, W) bool
    (whole image when None). Image borders are excluded (one pixel)."""
    lap = cv2.Laplacian(luminance(img), cv2.CV_64F, ksize=1)
    keep = np.zeros(lap.shape, bool)
    keep[1:-1, 1:-1] = True
    if mask is not None:
        if mask.shape != lap.shape:
            raise ValueError(f"mask {mask.shape} does not match the image {lap.shape}")
        keep &= mask.astype(bool)
    vals = lap[keep]
    return float(vals.var()) if vals.size else float("nan")


def _to_size(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def sharpness_ratio_each(renders: np.ndarray, reals: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """Per-image sharpness ratio, (B,): Laplacian energy of the face region of each render over
    that of its real crop (`laplacian_energy`). 1.0 = as sharp as the video; a blur gives < 1.

    Resolution-fair: a 128 px render is not compared with a 256 px crop (which holds four times
    the fine detail). The larger of the two images is area-downscaled to the smaller one's size
    first — normally the real crop down to the render's size — and both are measured there.
    `masks`: (B, S, S) bool face regions at that size (see `face_mask`); the default ellipse when
    None. A real crop without any high-frequency energy gives NaN.
    """
    r, t = np.asarray(renders), np.asarray(reals)
    if r.ndim == 3:
        r, t = r[None], t[None]
    if r.ndim != 4 or t.ndim != 4 or len(r) != len(t) or r.shape[1] != r.shape[2] or t.shape[1] != t.shape[2]:
        raise ValueError(f"expected two (B, S, S, 3) batches of square crops, got {r.shape} and {t.shape}")
    size = min(r.shape[1], t.shape[1])
    out = np.full(len(r), np.nan)
    default = face_mask(size) if masks is None else None
    for i in range(len(r)):
        m = default if masks is None else np.asarray(masks[i]).astype(bool)
        e_true = laplacian_energy(_to_size(t[i], size), m)
        if e_true > 1e-12:
            out[i] = laplacian_energy(_to_size(r[i], size), m) / e_true
    return out


def sharpness_summary(ratios: np.ndarray) -> dict:
    """{"median", "mean"} of per-image sharpness ratios (NaNs left out; None when all are NaN)."""
    v = np.asarray(ratios, np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"median": None, "mean": None}
    return {"median": float(np.median(v)), "mean": float(np.mean(v))}


# ------------------------------------------------------------------ ArcFace feature distance

def feature_distance_tensor(net, x, y, aligned: bool = True):
    """ArcFace feature distance (a stand-in for LPIPS, not LPIPS), per image, (B,); differentiable.

    x, y: (B, 3, H, W) RGB in [0, 1]; with `aligned` they are FFHQ-aligned crops and the ArcFace
    face square is cut out first (as for identity), otherwise they are resized to 112.
    `net`: a `models.arcface.MobileFaceNet`. Its feature maps after `dw_conv` and at the ends of
    the 28, 14 and 7 px stages (`MobileFaceNet.feature_maps`) are unit-normalised over channels at
    every position, as LPIPS does, and compared: d = 1 − cos(x̂, ŷ) = ½‖x̂ − ŷ‖², averaged over
    positions, then over the four layers with equal weight (LPIPS learns per-channel weights on
    VGG/AlexNet features; neither the backbone nor the weights are available offline, so this uses
    a network trained on faces, unweighted). Range 0 (identical) .. 2.
    """
    import torch
    import torch.nn.functional as F
    from models.arcface import INPUT_SIZE, face_region_from_aligned, map_distance

    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected two (B, 3, H, W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")

    def prep(t):
        if aligned:
            return face_region_from_aligned(t)
        if t.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            return F.interpolate(t, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                 antialias=True)
        return t

    n = len(x)
    feats = net.feature_maps(prep(torch.cat([x, y], 0)))
    return map_distance([f[:n] for f in feats], [f[n:] for f in feats])


def feature_distance_each(a: np.ndarray, b: np.ndarray, aligned: bool = True, batch: int = 32) -> np.ndarray | None:
    """ArcFace feature distance (`feature_distance_tensor`), image by image (B,); None without the
    ArcFace file. a, b: (B, H, W, 3) uint8 (or float in [0, 1]) crops of one shape."""
    path = arcface_weights()
    if path is None:
        return None
    import torch

    x, y = _batch(a, b)
    net = _arcface(str(path))
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            tx = torch.from_numpy(x[i:i + batch]).permute(0, 3, 1, 2).float()
            ty = torch.from_numpy(y[i:i + batch]).permute(0, 3, 1, 2).float()
            out.append(feature_distance_tensor(net, tx, ty, aligned).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def feature_distance(a: np.ndarray, b: np.ndarray, aligned: bool = True) -> float | None:
    """Mean ArcFace feature distance over paired images; None without the ArcFace file."""
    d = feature_distance_each(a, b, aligned)
    return None if d is None else float(np.mean(d))
