"""Stage `pti` (PVP): pivotal tuning (Roich et al.) of the prior generator on the pivot frames.

1. Inversion: every pivot is projected into W (W+ as an option) by optimisation from the subject
   prior's latent of that frame (or w_avg for an imported generator), with L2 + perceptual loss. The constant
   noise maps the avatar renders with are optimised jointly for all pivots under the StyleGAN2
   projector's noise regulariser (no spatial autocorrelation at any scale) and renormalised
   after each step, so a still pose still gives a still image.
2. Tuning: the generator is fine-tuned on all pivots jointly with L2 + perceptual loss, the ArcFace
   face losses when the ArcFace file is configured (`studio.stages.face`), plus the locality regulariser: latents sampled between each pivot and random latents of the subject's
   latent distribution must render as the untuned generator renders them. Tuning stops early
   when the mean pivot PSNR reaches the target, or at the step cap of the preset.
3. Evaluation: pivot PSNR/SSIM, held-out PSNR/SSIM (held-out frames placed by a short W inversion
   into the frozen tuned generator), and the evenness of a 16-step interpolation between the two
   pivots farthest apart in yaw (largest step / mean step; the issue asks for <= 2).

Perceptual loss: LPIPS when an LPIPS backbone file is configured, otherwise the no-download
substitute of `models.perceptual` ((1 - MS-SSIM) + Laplacian-pyramid L1).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..atomic import atomic_path, write_json
from ..compute import channels_last, precision_option
from ..config import opt
from ..loop import TrainingLoop
from ..metrics import psnr_tensor, to_uint8
from ..pvp.common import load_frames, load_pictures, perceptual_loss, preview_grid, reconstruction_loss, within_picture
from ..tracking.data import TrackingData
from .base import StageContext, StageSpec, register
from .face import face_loss, face_terms


@dataclass
class PTIConfig:
    invert_steps: int = opt(60, "Optimisation steps of the pivot inversion.", minimum=0)
    invert_lr: float = opt(0.03, "Learning rate of the inversion.", minimum=1e-5, maximum=1.0, advanced=True)
    wplus: bool = opt(False, "Invert into W+ (one latent per layer) instead of W.")
    optimize_noise: bool = opt(True, "Optimise the constant noise maps during inversion (with noise regularisation).",
                               advanced=True)
    noise_reg: float = opt(1e4, "Weight of the noise regulariser.", minimum=0.0, advanced=True)
    tune_steps: int = opt(500, "Step cap of the generator tuning.", minimum=0)
    tune_batch: int = opt(8, "Pivots per tuning step.", minimum=1, maximum=64)
    tune_lr: float = opt(3e-4, "Learning rate of the tuning (PTI uses 3e-4).", minimum=1e-6, maximum=0.1,
                         advanced=True)
    w_perceptual: float = opt(1.0, "Weight of the perceptual loss.", minimum=0.0, advanced=True)
    face_weight: float = opt(0.2, "Weight of the face feature loss in the tuning: distances of the ArcFace network's "
                                  "intermediate feature maps between the pivot renders and their frames (the eval's "
                                  "feature distance). Needs the ArcFace file (`avatar-studio models add arcface "
                                  "FILE`); without it the loss is left out and the stage says so.", minimum=0.0,
                             advanced=True)
    identity_weight: float = opt(0.1, "Weight of the identity loss in the tuning (1 − ArcFace embedding cosine).",
                                 minimum=0.0, advanced=True)
    face_batch: int = opt(4, "How many of each tuning batch's pivots the face losses look at (0 = all).", minimum=0,
                          maximum=64, advanced=True)
    locality_weight: float = opt(0.1, "Weight of the locality regulariser (PTI: 0.1).", minimum=0.0, advanced=True)
    locality_every: int = opt(4, "Apply the locality regulariser every N steps.", minimum=1, advanced=True)
    locality_alpha: float = opt(0.3, "How far towards a random latent the regularised latents lie (0..1).",
                                minimum=0.0, maximum=1.0, advanced=True)
    heldout_invert_steps: int = opt(30, "W-inversion steps that place each held-out frame for the held-out "
                                        "PSNR/SSIM (the generator stays frozen).", minimum=0, advanced=True)
    target_psnr: float = opt(31.0, "Stop tuning once the mean pivot PSNR reaches this (dB).", minimum=10.0,
                             maximum=60.0)
    time_budget_min: float = opt(0.0, "Optional wall-clock cap on inversion + tuning in minutes (0 = no cap; pauses "
                                      "do not count). The stage says when it cut training short.", minimum=0.0)
    checkpoint_every_s: float = opt(45.0, "Seconds between checkpoints.", minimum=0.0, advanced=True)
    threads: int = opt(0, "CPU threads (0 = the cores other programs leave free, re-checked as it runs).", minimum=0,
                       advanced=True)
    precision: str = precision_option()
    seed: int = opt(0, "Random seed.", advanced=True)


PRESETS = {"preview": PTIConfig(),
           "quality": PTIConfig(invert_steps=500, tune_steps=3000, tune_batch=8, target_psnr=33.0,
                                face_batch=0, checkpoint_every_s=120.0)}


def noise_buffers(G) -> list[torch.Tensor]:
    return [b for n, b in G.synthesis.named_buffers() if n.endswith("noise_const")]


def noise_regularizer(noises: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2 projector's regulariser: squared autocorrelation at lag 1, over a pyramid."""
    loss = torch.zeros(())
    for n in noises:
        x = n[None, None]
        while True:
            loss = loss + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return loss


def _broadcast(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    return w if w.ndim == 3 else w[:, None, :].expand(-1, num_ws, -1)


def run(ctx: StageContext, cfg: PTIConfig):
    from models.stylegan2.checkpoint import load_generator, save_generator

    from ..metrics import ssim_each
    from .prior import load_encoder

    dev = torch.device(ctx.device)
    loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=cfg.checkpoint_every_s,
                        max_minutes=cfg.time_budget_min, threads=cfg.threads,
                        precision=cfg.precision)
    proj = ctx.project
    trk = TrackingData.from_project(proj)
    rows = np.array(proj.result("pivots")["rows"], int)
    G, gcfg = load_generator(proj.output("prior", "generator"), device=dev)
    res = G.img_resolution
    targets = load_frames(trk, rows, res).to(dev)
    pictures = load_pictures(trk, rows, res)   # None unless a pivot's crop shows bars or the frame's edge
    pictures = None if pictures is None else pictures.to(dev)
    pick = (lambda idx: None) if pictures is None else (lambda idx: pictures[idx])
    k = len(rows)
    perc = perceptual_loss(dev) if cfg.w_perceptual > 0 else None
    face, face_note = face_loss(cfg.face_weight > 0 or cfg.identity_weight > 0, dev,
                                "face_weight=0 and identity_weight=0")
    channels_last(G, face, device=dev)   # faster convolutions on a CPU (the tuned copy inherits it)
    prior_latents = prior_rows = None
    if "latents" in (proj.record("prior").get("outputs") or {}):
        with np.load(proj.output("prior", "latents")) as z:
            prior_latents = torch.from_numpy(z["ws"]).float().to(dev)
            prior_rows = z["rows"]

    # initial latents: the subject prior's latent of each pivot frame (pivots are training frames),
    # else its encoder, else w_avg (an imported generator)
    with torch.no_grad():
        where = {int(r): i for i, r in enumerate(prior_rows)} if prior_rows is not None else {}
        if all(int(r) in where for r in rows) and prior_latents is not None:
            w0 = prior_latents[[where[int(r)] for r in rows]].clone()
        elif "encoder" in (proj.record("prior").get("outputs") or {}):
            w0 = load_encoder(proj, dev)(targets)
        else:
            w0 = G.mapping.w_avg[None].repeat(k, 1)
    if cfg.wplus:
        w0 = w0[:, None, :].repeat(1, G.num_ws, 1)
    ws = loop.track("ws", w0.clone().requires_grad_(True))
    noises = noise_buffers(G)
    for i, n in enumerate(noises):
        loop.track(f"noise{i}", n)

    # ---------------------------------------------------------------- 1. inversion
    params = [ws] + (noises if cfg.optimize_noise else [])
    if cfg.optimize_noise and not loop.is_done("invert"):
        for n in noises:
            n.requires_grad_(True)
    opt_i = loop.track("opt_i", torch.optim.Adam(params, lr=cfg.invert_lr, betas=(0.9, 0.999)))
    last: dict = {}

    def invert_step(i: int) -> dict:
        frac = i / max(1, cfg.invert_steps)
        lr = cfg.invert_lr * min(1.0, (1 - frac) / 0.25) * min(1.0, frac / 0.05 + 0.05)  # warm-up, ramp-down
        for g in opt_i.param_groups:
            g["lr"] = lr
        mine = loop.shard(k)  # all pivots every step: each process inverts its share of them
        out = G.synthesis(_broadcast(ws[mine], G.num_ws), noise_mode="const")
        loss, logs = reconstruction_loss(out, within_picture(targets[mine], out, pick(mine)), "l2", perc,
                                         cfg.w_perceptual)
        if cfg.optimize_noise and cfg.noise_reg > 0:
            nr = noise_regularizer(noises)
            loss = loss + cfg.noise_reg * nr
            logs["noise_reg"] = nr.item()
        opt_i.zero_grad(set_to_none=True)
        loss.backward()
        opt_i.step()
        if cfg.optimize_noise:
            with torch.no_grad():
                for n in noises:
                    n.sub_(n.mean()).div_(n.std().clamp_min(1e-8))
        last.update(x=targets[mine], out=out)
        return logs

    yield from loop.part("invert", cfg.invert_steps, invert_step,
                         preview=lambda: preview_grid(last["x"], last["out"]), preview_every=25)
    for n in noises:
        n.requires_grad_(False)
    if "inv_psnr" not in loop.vars:
        with torch.no_grad():
            out = G.synthesis(_broadcast(ws, G.num_ws), noise_mode="const")
            loop.vars["inv_psnr"] = float(psnr_tensor(out, within_picture(targets, out, pictures)).mean())

    # ---------------------------------------------------------------- 2. tuning
    G.requires_grad_(False).eval()
    G_tuned = copy.deepcopy(G).train().requires_grad_(False)
    G_tuned.synthesis.requires_grad_(True)
    for n in noise_buffers(G_tuned):
        n.requires_grad_(False)
    loop.track("G_tuned", G_tuned)
    opt_t = loop.track("opt_t", torch.optim.Adam(G_tuned.synthesis.parameters(), lr=cfg.tune_lr))
    w_piv = ws.detach()
    lat_src = prior_latents if prior_latents is not None else w_piv.reshape(k, -1, w_piv.shape[-1])[:, 0]
    lat_mu, lat_sd = lat_src.mean(0), lat_src.std(0).clamp_min(1e-4)

    def pivot_psnr() -> torch.Tensor:
        with torch.no_grad():
            out = torch.cat([G_tuned.synthesis(_broadcast(w_piv[i: i + 16], G.num_ws), noise_mode="const")
                             for i in range(0, k, 16)])
        return psnr_tensor(out, within_picture(targets, out, pictures))

    def tune_step(i: int) -> dict:
        idx = torch.from_numpy(loop.shard(loop.rng.choice(k, size=min(cfg.tune_batch, k), replace=False)))
        wb = _broadcast(w_piv[idx], G.num_ws)
        out = G_tuned.synthesis(wb, noise_mode="const")
        target = within_picture(targets[idx], out, pick(idx))
        loss, logs = reconstruction_loss(out, target, "l2", perc, cfg.w_perceptual)
        if face is not None:
            dist, ident = face_terms(face, out, target, cfg.face_batch)
            loss = loss + cfg.face_weight * dist + cfg.identity_weight * ident
            logs.update(face=dist.item(), identity=ident.item())
        if cfg.locality_weight > 0 and i % cfg.locality_every == 0:
            if prior_latents is None:  # an imported generator: w_z = mapping(z), as in the paper
                with torch.no_grad():
                    wz = G.mapping(torch.randn(len(idx), G.z_dim, device=dev), None)
            else:  # a subject prior's mapping network is untrained: w_z from its latent distribution
                z = lat_mu + lat_sd * torch.randn(len(idx), lat_mu.shape[-1], device=dev)
                wz = _broadcast(z, G.num_ws)
            wr = wb + cfg.locality_alpha * (wz - wb)
            with torch.no_grad():
                ref = G.synthesis(wr, noise_mode="const")
            got = G_tuned.synthesis(wr, noise_mode="const")
            lloc = F.mse_loss(got, ref) + (perc(got, ref) if perc is not None else 0.0)
            loss = loss + cfg.locality_weight * lloc
            logs["locality"] = lloc.item()
        opt_t.zero_grad(set_to_none=True)
        loss.backward()
        opt_t.step()
        if (i + 1) % 25 == 0 or i + 1 == cfg.tune_steps:
            loop.vars["pivot_psnr"] = float(pivot_psnr().mean())
            logs["pivot_psnr"] = loop.vars["pivot_psnr"]
            if loop.vars["pivot_psnr"] >= cfg.target_psnr:
                loop.stop_part()
        last.update(x=targets[idx], out=out)
        return logs

    yield from loop.part("tune", cfg.tune_steps, tune_step, preview=lambda: preview_grid(last["x"], last["out"]),
                         preview_every=25)
    figures = loop.finish()

    # ---------------------------------------------------------------- results
    G_tuned.eval().requires_grad_(False)
    with torch.no_grad():
        recon = torch.cat([G_tuned.synthesis(_broadcast(w_piv[i: i + 16], G.num_ws), noise_mode="const")
                           for i in range(0, k, 16)])
    seen = within_picture(targets, recon, pictures)   # the video's black bars are not scored
    p = psnr_tensor(recon, seen).cpu().numpy()
    s = ssim_each(to_uint8(recon), to_uint8(seen))
    held_summary = heldout_metrics(proj, trk, G_tuned, dev, cfg.heldout_invert_steps, perc, prior_latents, prior_rows)
    smooth = interpolation_smoothness(G_tuned, _broadcast(w_piv, G.num_ws), trk.pose[rows, 0])
    save_generator(G_tuned.cpu(), gcfg, ctx.workdir / "generator.safetensors")
    with atomic_path(ctx.workdir / "latents.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ws=_broadcast(w_piv, G.num_ws).cpu().numpy(), rows=rows)
    from ..report import grid, save_png

    tiles = [np.concatenate([a, b], axis=0) for a, b in zip(to_uint8(targets), to_uint8(recon))]
    save_png(ctx.workdir / "pivots_recon.png", grid(tiles, cols=min(12, k)))
    write_json(ctx.workdir / "pivots_metrics.json", {"rows": rows.tolist(), "psnr": p.round(3).tolist(),
                                                      "ssim": np.asarray(s).round(4).tolist()})
    pm = figures["part_minutes"]
    return {"outputs": {"generator": f"{ctx.stage}/generator.safetensors", "latents": f"{ctx.stage}/latents.npz",
                        "recon": f"{ctx.stage}/pivots_recon.png", "metrics": f"{ctx.stage}/pivots_metrics.json"},
            "warnings": loop.warnings() + ([face_note] if face_note else []),
            "summary": {"pivots": k, "face_loss": face is not None, "pivot_psnr": round(float(p.mean()), 2), "pivot_psnr_min": round(float(p.min()), 2),
                        "pivot_ssim": round(float(np.mean(s)), 4), "inversion_psnr": round(loop.vars["inv_psnr"], 2),
                        "invert_steps": figures["steps"].get("invert", 0), "tune_steps": figures["steps"].get("tune", 0),
                        "invert_min": pm.get("invert", 0.0), "tune_min": pm.get("tune", 0.0), **held_summary,
                        "interp_max_over_mean": round(smooth, 2), **loop.summary_figures(figures)}}


def interpolation_smoothness(G, ws: torch.Tensor, yaw: np.ndarray, steps: int = 16) -> float:
    """Largest image change of one step of a `steps`-step interpolation between the two pivots
    farthest apart in yaw, over the mean step (1 = perfectly even; the issue asks for <= 2)."""
    a, b = ws[int(np.argmin(yaw))], ws[int(np.argmax(yaw))]
    t = torch.linspace(0, 1, steps + 1, device=ws.device)[:, None, None]
    with torch.no_grad():
        imgs = G.synthesis(a + t * (b - a), noise_mode="const")
    d = (imgs[1:] - imgs[:-1]).abs().flatten(1).mean(1)
    return float(d.max() / d.mean().clamp_min(1e-12))


def heldout_metrics(proj, trk: TrackingData, G, dev, steps: int, perc=None, prior_latents=None,
                    prior_rows=None) -> dict:
    """PSNR / SSIM of up to 18 held-out frames (never trained on, never pivots) rendered by the tuned
    generator after a `steps`-step W inversion (the generator stays frozen). Start: the encoder's
    latent, else the prior latent of the training frame nearest in pixels, else w_avg. With an
    encoder, the PSNR without inversion is reported too (`heldout_psnr_direct`)."""
    from ..metrics import ssim_each
    from ..pvp.common import invert_w, nearest_latents
    from .prior import load_encoder

    _, held = trk.split()
    if not len(held):
        return {}
    held = held[:: max(1, len(held) // 16)]
    x = load_frames(trk, held, G.img_resolution).to(dev)
    keep = load_pictures(trk, held, G.img_resolution)   # the video's black bars are not scored
    out = {}
    with torch.no_grad():
        if "encoder" in (proj.record("prior").get("outputs") or {}):
            w0 = load_encoder(proj, dev)(x)
            rec = G.synthesis(_broadcast(w0, G.num_ws), noise_mode="const")
            out["heldout_psnr_direct"] = round(float(psnr_tensor(rec, within_picture(x, rec, keep)).mean()), 2)
        elif prior_latents is not None:
            frames = load_frames(trk, prior_rows, 32)
            w0 = nearest_latents(x, frames, prior_latents)
        else:
            w0 = G.mapping.w_avg[None].repeat(len(x), 1)
    w = invert_w(G, x, w0, steps, perc) if steps else w0
    with torch.no_grad():
        rec = G.synthesis(_broadcast(w, G.num_ws), noise_mode="const")
    x = within_picture(x, rec, keep)
    out.update(heldout_psnr=round(float(psnr_tensor(rec, x).mean()), 2),
               heldout_ssim=round(float(np.mean(ssim_each(to_uint8(rec), to_uint8(x)))), 4),
               heldout_frames=int(len(held)), heldout_invert_steps=steps)
    return out


register(StageSpec(name="pti", title="Pivotal tuning", config_cls=PTIConfig, presets=PRESETS, run=run,
                   depends_on=("pivots", "prior"), models=("arcface", "lpips"), trains=True, parallel=True,
                   description="Inverts each pivot frame and tunes the generator on all pivots, so it reproduces "
                               "this person closely."))
