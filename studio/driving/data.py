"""Face images of the avatar's subject and of the actor, as the Y-shaped network reads them.

Both come from the `track` stage's FFHQ-style aligned crops, so the two people's faces already
sit at the same place: a fixed square over the face (the region LatentAvatar's encoder sees,
brows to chin), optionally put on a grey background with the tracked matte (the two videos'
backgrounds must not enter the shared code), resized to the network's side. Held as uint8
tensors in memory (300 frames at 64 px are 3.7 MB).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

FACE_FRACTION = 0.75
"""Side of the face square as a share of the aligned crop (as `models.latentavatar.face_region`)."""
FACE_OFFSET_Y = 0.04
"""Downward shift of the square's centre, as a share of the crop (covers mouth and chin)."""
BACKGROUND = 128
"""Grey level put behind the matte."""


def face_square(crop_size: int) -> tuple[int, int, int]:
    """(x0, y0, side) of the face square in an aligned crop of side `crop_size`."""
    side = int(round(crop_size * FACE_FRACTION))
    x0 = (crop_size - side) // 2
    y0 = min(crop_size - side, max(0, x0 + int(round(crop_size * FACE_OFFSET_Y))))
    return x0, y0, side


def face_images(tracking, rows, size: int, matte: bool = True, chunk: int = 64) -> torch.Tensor:
    """(N, 3, size, size) uint8 face squares of `rows` of a `TrackingData`."""
    rows = np.asarray(rows, int)
    x0, y0, side = face_square(tracking.crop_size)
    out = np.zeros((len(rows), size, size, 3), np.uint8)
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        crops = tracking.crops(part).astype(np.float32)                      # (n, S, S, 3)
        if matte:
            m = tracking.mattes(part)[..., None]                              # (n, S, S, 1)
            crops = crops * m + BACKGROUND * (1 - m)
        for k, c in enumerate(crops):
            sq = c[y0:y0 + side, x0:x0 + side]
            interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
            out[i + k] = np.clip(cv2.resize(sq, (size, size), interpolation=interp) + 0.5, 0, 255).astype(np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, R, R) → float in [0, 1]."""
    return images.float() / 255.0


def augment(images: torch.Tensor, rng: np.random.Generator, shift: float = 0.04, scale: float = 0.05,
            rotate_deg: float = 4.0, brightness: float = 0.06, contrast: float = 0.12) -> torch.Tensor:
    """Random similarity jitter and brightness/contrast change of (B, 3, R, R) images in [0, 1].

    Every random number comes from the numpy generator `rng` (the training loop's, which is
    checkpointed), so a resumed run draws the same jitter as one that never stopped.
    """
    b = images.shape[0]
    s = 1.0 + rng.uniform(-scale, scale, b)
    a = np.radians(rng.uniform(-rotate_deg, rotate_deg, b))
    t = rng.uniform(-shift, shift, (b, 2)) * 2                                  # in [-1, 1] grid units
    theta = np.zeros((b, 2, 3), np.float32)
    theta[:, 0, 0], theta[:, 0, 1] = s * np.cos(a), -s * np.sin(a)
    theta[:, 1, 0], theta[:, 1, 1] = s * np.sin(a), s * np.cos(a)
    theta[:, :, 2] = t
    grid = F.affine_grid(torch.from_numpy(theta).to(images.device), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = torch.from_numpy(1.0 + rng.uniform(-contrast, contrast, b).astype(np.float32)).to(images.device)
    bias = torch.from_numpy(rng.uniform(-brightness, brightness, b).astype(np.float32)).to(images.device)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * gain.view(b, 1, 1, 1) + mean + bias.view(b, 1, 1, 1)
    return out.clamp(0, 1)


def focus_map(tracking, rows, size: int, extra: float) -> torch.Tensor:
    """(1, 1, size, size) L1 weights over the face square: 1 + `extra` on the eyes, brows and mouth
    of the person's mean aligned face (from the tracked landmarks), 1 elsewhere, soft edges."""
    from ..stages.mappers import region_mask

    rows = np.asarray(rows, int)
    x0, y0, side = face_square(tracking.crop_size)
    parts = 1.0 - region_mask(tracking, rows, tracking.crop_size)                 # (S, S): 1 on eyes/brows/mouth
    sq = cv2.resize(parts[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(1.0 + extra * np.clip(sq, 0, 1).astype(np.float32))[None, None]
