"""Which subject prior to train: a short, equal-steps comparison on a tracked project.

    python -m studio.benchmarks.prior_compare PROJECT [--steps 300] [--variants encoder,glo,encoder+gan]

Every variant trains the preview-size generator (`prior` stage defaults) for the same number of
steps from the same seed on the training crops, then is measured on held-out frames (the last
15 % of the clip, never trained on):

- ``direct``: held-out PSNR of the encoder's reconstruction (encoder variants only);
- ``inverted``: held-out PSNR / SSIM after a 30-step W inversion (L2 + perceptual), starting from
  the encoder latent, or for GLO from the latent of the training frame nearest in pixels.

Variants:
- ``encoder``: what the `prior` stage does (image→W encoder + synthesis, L1 + perceptual,
  Gaussian noise on the latents);
- ``glo``: per-frame learned latents in W (Bojanowski et al.), PCA-initialised, same loss/noise;
- ``encoder+gan``: ``encoder`` plus a light non-saturating GAN term (weight 0.05) and lazy R1
  (gamma 1, every 4 steps) with a small StyleGAN2 discriminator.

It prints one line per variant (and a JSON summary); it writes nothing into the project.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.nn import functional as F

from ..project import Project
from ..tracking.data import TrackingData
from ..compute import apply_threads
from ..metrics import psnr_tensor, to_uint8
from ..pvp.common import load_frames, perceptual_loss


def _pca_latents(imgs: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, 3, R, R) -> (N, dim) PCA coefficients of 32x32 thumbnails, scaled to unit mean square."""
    x = F.adaptive_avg_pool2d(imgs, 32).flatten(1)
    x = x - x.mean(0)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    z = (u * s)[:, :dim]
    if z.shape[1] < dim:
        z = torch.cat([z, 0.01 * torch.randn(len(z), dim - z.shape[1])], 1)
    return z / z.square().mean().sqrt()


def train_variant(variant: str, imgs: torch.Tensor, steps: int, batch: int, seed: int = 0, on_step=None):
    """Train one variant; returns (G, encode) where encode(imgs) -> (B, D) latents or None, and the
    latent table (N, D) of the training frames."""
    from models.encoders import LatentEncoder
    from models.stylegan2 import Discriminator

    from ..stages.prior import PriorConfig, _generator_config

    pc = PriorConfig()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    res = imgs.shape[-1]
    pc.resolution = res
    gcfg = _generator_config(pc)
    G = gcfg.build().train()
    perc = perceptual_loss("cpu")
    params = [{"params": G.synthesis.parameters()}]
    E = table = D = opt_d = None
    if variant.startswith("encoder"):
        E = LatentEncoder(res, gcfg.w_dim, channel_max=max(128, pc.channel_max))
        params.append({"params": E.parameters()})
    else:
        table = torch.nn.Parameter(_pca_latents(imgs, gcfg.w_dim))
        params.append({"params": [table], "lr": 1e-2})
    if variant.endswith("+gan"):
        D = Discriminator(res, channel_base=4096, channel_max=128)
        opt_d = torch.optim.Adam(D.parameters(), lr=pc.lr, betas=(0.0, 0.99))
    opt = torch.optim.Adam(params, lr=pc.lr, betas=(0.9, 0.99))
    threads = apply_threads("cpu")
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(imgs), size=batch))
        x = imgs[idx]
        w = E(x) if E is not None else table[idx]
        w_std = w.detach().std(0).mean().clamp_min(1e-3)
        wn = w + pc.latent_noise * w_std * torch.randn_like(w)
        out = G.synthesis(wn[:, None, :].expand(-1, G.num_ws, -1), noise_mode="const")
        loss = F.l1_loss(out, x) + pc.w_perceptual * perc(out, x)
        if D is not None:
            loss = loss + 0.05 * F.softplus(-D(out)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in params for p in g["params"]], 1.0)
        opt.step()
        if D is not None:
            d_loss = F.softplus(D(out.detach())).mean() + F.softplus(-D(x)).mean()
            if step % 4 == 0:  # lazy R1 on the real images
                xr = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(D(xr).sum(), xr, create_graph=True)
                d_loss = d_loss + 0.5 * 1.0 * 4 * g.square().sum((1, 2, 3)).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        if step % 50 == 49:
            threads = apply_threads("cpu", 0, threads)
        if on_step:
            on_step(step, float(loss))
    G.eval().requires_grad_(False)
    if E is not None:
        E.eval().requires_grad_(False)
        with torch.no_grad():
            table = torch.cat([E(imgs[i: i + 32]) for i in range(0, len(imgs), 32)])
    return G, E, table.detach()


def evaluate(G, E, table: torch.Tensor, train_imgs: torch.Tensor, held: torch.Tensor, invert_steps: int = 30) -> dict:
    from ..metrics import ssim_each

    perc = perceptual_loss("cpu")
    out: dict = {}
    with torch.no_grad():
        if E is not None:
            w0 = E(held)
            rec = G.synthesis(w0[:, None].expand(-1, G.num_ws, -1), noise_mode="const")
            out["direct_psnr"] = round(float(psnr_tensor(rec, held).mean()), 2)
        else:  # the latent of the training frame nearest in pixels
            a, b = F.adaptive_avg_pool2d(held, 32).flatten(1), F.adaptive_avg_pool2d(train_imgs, 32).flatten(1)
            w0 = table[torch.cdist(a, b).argmin(1)]
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.03)
    for _ in range(invert_steps):
        rec = G.synthesis(w[:, None].expand(-1, G.num_ws, -1), noise_mode="const")
        loss = F.mse_loss(rec, held) + perc(rec, held)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        rec = G.synthesis(w[:, None].expand(-1, G.num_ws, -1), noise_mode="const")
    out["inverted_psnr"] = round(float(psnr_tensor(rec, held).mean()), 2)
    out["inverted_ssim"] = round(float(np.mean(ssim_each(to_uint8(rec), to_uint8(held)))), 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--variants", default="encoder,glo,encoder+gan")
    args = ap.parse_args(argv)
    trk = TrackingData.from_project(Project.open(args.project))
    train, held = trk.split()
    imgs = load_frames(trk, train, args.resolution)
    held_imgs = load_frames(trk, held[:: max(1, len(held) // 16)][:16], args.resolution)
    results = {}
    for v in args.variants.split(","):
        t0 = time.perf_counter()
        G, E, table = train_variant(v, imgs, args.steps, args.batch)
        t_train = time.perf_counter() - t0
        r = evaluate(G, E, table, imgs, held_imgs)
        r.update(train_s=round(t_train, 1), s_per_step=round(t_train / args.steps, 2))
        results[v] = r
        print(f"{v:<12} {r}", flush=True)
    print(json.dumps({"steps": args.steps, "batch": args.batch, "heldout_frames": len(held_imgs), **results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
