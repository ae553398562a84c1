"""Helpers shared by the StyleGAN engine's stages (pivots / prior / pti / mappers) and its renderer."""
from __future__ import annotations

import numpy as np
import torch

from ..metrics import from_uint8, to_uint8
from ..tracking.data import TrackingData


def preview_grid(targets: torch.Tensor, outputs: torch.Tensor, k: int = 6) -> np.ndarray:
    """Two rows: targets over reconstructions, uint8."""
    k = min(k, len(targets))
    top = np.concatenate(list(to_uint8(targets[:k])), axis=1)
    bot = np.concatenate(list(to_uint8(outputs[:k])), axis=1)
    return np.concatenate([top, bot], axis=0)


def load_personal_generator(project, device="cpu"):
    """(G, pivot ws (K, L, D) tensor, pivot rows (K,)) from the finished `pti` stage (read by the
    `mappers` stage and the StyleGAN engine)."""
    from models.stylegan2.checkpoint import load_generator

    G, _ = load_generator(project.output("pti", "generator"), device=device)
    with np.load(project.output("pti", "latents")) as z:
        ws = torch.from_numpy(z["ws"]).float().to(device)
        rows = z["rows"].astype(int)
    if ws.ndim == 2:
        ws = ws[:, None, :].repeat(1, G.num_ws, 1)
    return G, ws, rows


def reconstruction_loss(out: torch.Tensor, target: torch.Tensor, kind: str = "l1", perceptual=None,
                        w_perceptual: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """`kind` ("l1" or "l2") + `w_perceptual` x perceptual loss of (B, 3, R, R) images; (loss, logs)."""
    base = torch.nn.functional.l1_loss(out, target) if kind == "l1" else torch.nn.functional.mse_loss(out, target)
    loss, logs = base, {kind: base.item()}
    if perceptual is not None:
        lp = perceptual(out, target)
        loss = loss + w_perceptual * lp
        logs["perceptual"] = lp.item()
    return loss, logs


def load_frames(tracking: TrackingData, rows, resolution: int) -> torch.Tensor:
    return from_uint8(tracking.crops(rows, size=resolution))


def load_pictures(tracking: TrackingData, rows, resolution: int) -> torch.Tensor | None:
    """(n, 1, R, R) uint8 masks, 255 where each row's crop shows the video's picture
    (`TrackingData.picture_masks`: not a black bar of the video, not past the frame's edge); None when
    every crop shows the picture throughout (then nothing is left out of the losses)."""
    m = tracking.picture_masks_u8(rows, resolution)
    return None if m is None else torch.from_numpy(m)[:, None]


def within_picture(target: torch.Tensor, out: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """`target` where `keep` ((B, 1, H, W) uint8 from `load_pictures`, or None) says its crop shows the
    video's picture, and the model's own `out` (detached) elsewhere, so every loss taken against it (L1/L2,
    perceptual, the face losses) ignores the black bars and the repeated frame edge: where they lie in a
    crop moves with the head, and a network trained on them draws a blurred bar into the picture."""
    if keep is None:
        return target
    k = keep.to(target.device, target.dtype) / 255.0
    return target * k + out.detach() * (1.0 - k)


def perceptual_loss(device):
    """LPIPS when a backbone file is configured, else the no-download substitute (see models.perceptual)."""
    from models.perceptual import PerceptualLoss

    from ..model_files import lpips_path

    p = lpips_path()
    return PerceptualLoss(str(p) if p else None).to(device).eval().requires_grad_(False)


def pca_latents(imgs: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """(N, 3, R, R) -> (N, dim) initial per-frame latents for GLO: PCA coefficients of 32x32
    thumbnails, scaled to unit mean square (so similar frames start with similar latents)."""
    x = torch.nn.functional.adaptive_avg_pool2d(imgs, 32).flatten(1)
    x = x - x.mean(0)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    z = (u * s)[:, :dim]
    if z.shape[1] < dim:
        g = torch.Generator().manual_seed(seed)
        z = torch.cat([z, 0.01 * torch.randn(len(z), dim - z.shape[1], generator=g)], 1)
    return z / z.square().mean().sqrt().clamp_min(1e-8)


def nearest_latents(x: torch.Tensor, frames: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """For each image in `x` (B, 3, R, R), the latent of the frame in `frames` (N, 3, R', R') that
    is nearest in 32x32 pixels -> (B, D). Starting point for inverting frames never trained on."""
    a = torch.nn.functional.adaptive_avg_pool2d(x, 32).flatten(1)
    b = torch.nn.functional.adaptive_avg_pool2d(frames.to(x.device), 32).flatten(1)
    return latents.to(x.device)[torch.cdist(a, b).argmin(1)]


def invert_w(G, x: torch.Tensor, w0: torch.Tensor, steps: int, perc=None, lr: float = 0.03) -> torch.Tensor:
    """Fit one W latent per image of (B, 3, R, R) `x` to the frozen generator G, from (B, D) `w0`,
    with Adam on L2 (+ perceptual); returns (B, D). Used to place held-out frames for evaluation."""
    w = w0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        rec = G.synthesis(w[:, None, :].expand(-1, G.num_ws, -1), noise_mode="const")
        loss = (rec - x).square().mean() + (perc(rec, x) if perc is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return w.detach()
