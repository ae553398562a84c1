"""Stage `prior` (PVP): the StyleGAN2 generator that PTI starts from.

- With a pretrained StyleGAN2 configured (Models dialog / `avatar-studio models add stylegan2`,
  or the `pretrained` setting), it is imported (NVIDIA pkl, rosinality pt or our format) and used
  as is; PTI then starts from w_avg and samples its locality latents through the mapping network.
- Otherwise — the default, needing no download — a *subject prior* is trained from the video's
  own aligned training frames by reconstruction (L1 + perceptual), with Gaussian noise on the
  latents so that the neighbourhood of each latent decodes to similar faces (what makes pivot
  interpolation smooth and PTI's locality regulariser meaningful). The latents are either
  - ``glo``: one learned W latent per training frame (Bojanowski et al., "Optimizing the
    latent space of generative networks"), PCA-initialised, or
  - ``encoder`` (default): an image→W encoder (models/encoders.py) trained with the generator.
  The generator's w_avg is set to the mean latent; the latents are saved for PTI.

Why this objective (measured with `python -m studio.benchmarks.prior_compare`, subject_turns_d3,
128 px, batch 8, 2-core CPU shared with other jobs; held-out = 16 of the last 15 % of frames,
placed by a 30-step W inversion): encoder 250 steps / 342 s → 20.03 dB, SSIM 0.599; encoder +
light non-saturating GAN (0.05) + lazy R1, 250 steps / 444 s → 20.32 dB, 0.602; GLO 250 steps /
131 s → 18.77 dB, 0.542; GLO 650 steps / 386 s → 21.55 dB, 0.640. GLO costs 0.5 s per step
against 1.4 s (no encoder forward/backward), so in the same minutes it trains ~2.6x more steps
and ends ahead; the GAN term bought +0.3 dB for +30 % time and the instability a GAN brings, so
it is left out. A GAN alone does not give a usable face in the ~15 CPU minutes of the preview.
The default stays ``encoder`` because the whole chain (prior → PTI → mappers → eval) has been
measured with it; GLO's better held-out inversion has not yet been carried through the mappers.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..compute import channels_last, precision_option
from ..config import opt
from ..errors import InputError, StudioError
from ..loop import TrainingLoop
from ..metrics import psnr_tensor
from ..pvp.common import (load_frames, load_pictures, pca_latents, perceptual_loss, preview_grid,
                          reconstruction_loss, within_picture)
from ..tracking.data import TrackingData
from .base import StageContext, StageSpec, register


@dataclass
class PriorConfig:
    resolution: int = opt(128, "Image size of the generator (the avatar's size).", choices=(64, 128, 256, 512, 1024))
    method: str = opt("encoder", "How the subject prior learns its latents: 'glo' = one learned latent per training frame "
                             "(cheaper per step; better held-out quality in the same time, measured), 'encoder' = an "
                             "image-to-W encoder trained with the generator.", choices=("glo", "encoder"))
    pretrained: str | None = opt(None, "A pretrained StyleGAN2 file to start from instead of training a subject prior "
                                       "(empty = the one in the Models settings, if any).")
    steps: int = opt(1600, "Training steps of the subject prior.", minimum=1)
    batch: int = opt(8, "Frames per step.", minimum=1, maximum=64)
    time_budget_min: float = opt(0.0, "Optional wall-clock cap: stop after this many minutes of training even if "
                                      "steps remain (0 = no cap; pauses do not count). The stage says when it cut "
                                      "training short.", minimum=0.0)
    channel_max: int = opt(128, "Widest layer of the subject-prior generator.", choices=(64, 128, 256, 512),
                           advanced=True)
    w_dim: int = opt(256, "Latent (W) size of the subject prior.", choices=(64, 128, 256, 512), advanced=True)
    lr: float = opt(1e-3, "Learning rate (Adam).", minimum=1e-6, maximum=0.1, advanced=True)
    latent_lr: float = opt(1e-2, "Learning rate of the per-frame latents (method 'glo').", minimum=1e-6, maximum=1.0,
                           advanced=True)
    latent_noise: float = opt(0.15, "Std of the noise added to encoded latents during training (x latent std).",
                              minimum=0.0, maximum=2.0, advanced=True)
    w_perceptual: float = opt(1.0, "Weight of the perceptual loss.", minimum=0.0, advanced=True)
    checkpoint_every_s: float = opt(45.0, "Seconds between checkpoints.", minimum=0.0, advanced=True)
    threads: int = opt(0, "CPU threads (0 = the cores other programs leave free, re-checked as it runs).", minimum=0,
                       advanced=True)
    precision: str = precision_option()
    seed: int = opt(0, "Random seed.", advanced=True)


GOOD_EVERY = 50
"""Steps between in-memory copies of a state that trains well (what a runaway rolls back to)."""
MAX_ROLLBACKS = 3
"""Rollbacks (each halving the learning rate) before the prior is reported as diverged."""

PRESETS = {
    "preview": PriorConfig(),
    "quality": PriorConfig(resolution=256, steps=40000, batch=16, time_budget_min=0.0, channel_max=512, w_dim=512,
                           checkpoint_every_s=120.0),
}


def _generator_config(cfg: PriorConfig):
    from models.stylegan2.networks import GeneratorConfig

    g = GeneratorConfig.small(cfg.resolution)
    g.w_dim = g.z_dim = cfg.w_dim
    g.channel_max = cfg.channel_max
    g.channel_base = max(4096, cfg.channel_max * 32)
    return g


def _pretrained_path(cfg: PriorConfig):
    if cfg.pretrained:
        return cfg.pretrained
    from ..model_files import stylegan2_path

    p = stylegan2_path()
    return str(p) if p else None


def run(ctx: StageContext, cfg: PriorConfig):
    from models.encoders import LatentEncoder
    from models.stylegan2.checkpoint import CheckpointError, load_generator, save_generator

    dev = torch.device(ctx.device)
    trk = TrackingData.from_project(ctx.project)
    train, held = trk.split()
    gen_path = ctx.workdir / "generator.safetensors"

    pre = _pretrained_path(cfg)
    if pre:
        yield ctx.progress(0, 1, part="import", message=f"importing {pre}")
        if not Path(pre).expanduser().is_file():
            raise InputError(f"the pretrained StyleGAN2 file {pre} does not exist",
                             "fix the path in the Models settings or the `pretrained` setting, or clear it to "
                             "train a subject prior from the video")
        try:
            G, gcfg = load_generator(Path(pre).expanduser())
        except CheckpointError as exc:
            raise InputError(f"the pretrained StyleGAN2 file cannot be used: {exc}",
                             "choose an NVIDIA .pkl, a rosinality .pt or an Avatar Studio generator") from exc
        save_generator(G, gcfg, gen_path)
        yield ctx.progress(1, 1, part="import")
        return {"outputs": {"generator": f"{ctx.stage}/generator.safetensors"},
                "summary": {"source": "pretrained", "file": str(pre), "resolution": gcfg.img_resolution}}

    if len(train) < 4:
        raise InputError("too few training frames to learn a subject prior", "use a longer video")
    loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=cfg.checkpoint_every_s,
                        max_minutes=cfg.time_budget_min, threads=cfg.threads,
                        precision=cfg.precision)
    gcfg = _generator_config(cfg)
    G = gcfg.build().train().to(dev)
    yield ctx.progress(0, cfg.steps, part="prior", message=f"loading {len(train)} training frames")
    imgs = load_frames(trk, train, cfg.resolution)
    pictures = load_pictures(trk, train, cfg.resolution)   # None unless the crops show bars or the frame's edge
    E = table = None
    if cfg.method == "encoder":
        E = LatentEncoder(cfg.resolution, gcfg.w_dim, channel_max=max(128, cfg.channel_max)).to(dev)
        groups = [{"params": list(G.synthesis.parameters())}, {"params": list(E.parameters())}]
    else:  # GLO: one free latent per training frame, PCA-initialised
        table = torch.nn.Parameter(pca_latents(imgs, gcfg.w_dim, cfg.seed).to(dev))
        groups = [{"params": list(G.synthesis.parameters())}, {"params": [table], "lr": cfg.latent_lr}]
    channels_last(G, E, device=dev)   # faster convolutions on a CPU, before the optimiser sees the weights
    trained = [p for g in groups for p in g["params"]]
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.99))
    held_some = held[:: max(1, len(held) // 16)] if len(held) else train[:8]
    held_imgs = load_frames(trk, held_some, cfg.resolution)
    held_keep = load_pictures(trk, held_some, cfg.resolution)   # the video's black bars are not scored
    perc = perceptual_loss(dev) if cfg.w_perceptual > 0 else None
    loop.track("G", G)
    loop.track("E" if E is not None else "table", E if E is not None else table)
    loop.track("opt", opt)
    loop.vars.setdefault("ema", None)
    loop.vars.setdefault("skipped", 0)
    loop.vars.setdefault("rollbacks", 0)
    notes = loop.vars.setdefault("notes", [])  # kept in the checkpoint, so a resumed run still reports them
    last = {}
    goods: list[dict] = []  # the last two states that trained well, in memory: what a runaway rolls back to

    def keep_good(i: int) -> None:
        del goods[:-1]
        goods.append(dict(step=i, ema=loop.vars["ema"],
                          state=copy.deepcopy({"G": G.state_dict(), "opt": opt.state_dict(),
                                               "E": E.state_dict() if E is not None else None,
                                               "table": table.detach().clone() if table is not None else None})))

    def roll_back(i: int) -> None:
        """Many runaway batches in a row: the weights took a bad step. Go back to the last good state
        with half the learning rate (at most `MAX_ROLLBACKS` times) instead of giving up. The older of
        the two kept states is used: the newer one may already hold the step that went wrong."""
        if not goods or loop.vars["rollbacks"] >= MAX_ROLLBACKS:
            raise StudioError("the subject prior diverged (its loss exploded)",
                              "lower its learning rate with --set lr=0.0005 and run again")
        good = goods[0]
        del goods[1:]
        st = good["state"]
        G.load_state_dict(st["G"])
        if E is not None:
            E.load_state_dict(st["E"])
        else:
            with torch.no_grad():
                table.copy_(st["table"])
        lrs = [g["lr"] * 0.5 for g in opt.param_groups]  # half of what it is now, whatever the kept state had
        opt.load_state_dict(st["opt"])
        for g, lr in zip(opt.param_groups, lrs):
            g["lr"] = lr
        loop.vars.update(ema=good["ema"], skipped=0, rollbacks=loop.vars["rollbacks"] + 1)
        notes.append(f"the subject prior's loss ran away near step {i}; it went back to step {good['step']} and "
                     f"trains on with half the learning rate (rollback {loop.vars['rollbacks']} of {MAX_ROLLBACKS})")

    def step(i: int) -> dict:
        rng = loop.rng
        idx = torch.from_numpy(loop.shard(rng.integers(0, len(train), size=min(cfg.batch, len(train)))))
        x = imgs[idx].to(dev)
        keep = None if pictures is None else pictures[idx].to(dev)
        if E is not None and rng.random() < 0.5:  # flips double the encoder's data (a GLO latent is per frame)
            x = x.flip(3)
            keep = None if keep is None else keep.flip(3)
        w = E(x) if E is not None else table[idx.to(dev)]
        w_std = loop.batch_std(w.detach()).mean().clamp_min(1e-3)
        wn = w + cfg.latent_noise * w_std * torch.randn_like(w)
        out = G.synthesis(wn[:, None, :].expand(-1, G.num_ws, -1), noise_mode="const")
        loss, logs = reconstruction_loss(out, within_picture(x, out, keep), "l1", perc, cfg.w_perceptual)
        opt.zero_grad(set_to_none=True)
        lv = loop.all_mean(loss.item())  # every process takes the same skip decision
        ema = loop.vars["ema"]
        if not np.isfinite(lv) or (i >= 100 and ema is not None and lv > 4.0 * ema):
            loop.vars["skipped"] += 1  # a runaway batch: skip the update rather than let it wreck the network
            if loop.vars["skipped"] > 20:
                roll_back(i)
        else:
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(trained, 1.0)
            if not torch.isfinite(norm):  # a NaN/inf gradient would poison every weight through Adam
                opt.zero_grad(set_to_none=True)
                loop.vars["skipped"] += 1
                if loop.vars["skipped"] > 20:
                    roll_back(i)
            else:
                opt.step()
                loop.vars["ema"] = lv if ema is None else 0.98 * ema + 0.02 * lv
                loop.vars["skipped"] = 0
                if i % GOOD_EVERY == 0 or not goods:
                    keep_good(i + 1)
        last.update(x=x, out=out)
        return logs

    yield from loop.part("prior", cfg.steps, step, preview=lambda: preview_grid(last["x"], last["out"]),
                         preview_every=100)
    figures = loop.finish()

    # ---- finish: latent statistics, w_avg, held-out quality of the encoder's reconstructions
    G.eval()
    summary_held = {}
    with torch.no_grad():
        if E is not None:
            E.eval()
            lat = torch.cat([E(imgs[i: i + 32].to(dev)) for i in range(0, len(imgs), 32)])
            rec = G.synthesis(E(held_imgs.to(dev))[:, None].expand(-1, G.num_ws, -1), noise_mode="const")
            seen = within_picture(held_imgs.to(dev), rec, held_keep)
            summary_held["heldout_psnr_encoder"] = round(float(psnr_tensor(rec, seen).mean()), 2)
        else:
            lat = table.detach()
        G.mapping.w_avg.copy_(lat.mean(0))
    save_generator(G.cpu(), gcfg, gen_path)
    outputs = {"generator": f"{ctx.stage}/generator.safetensors", "latents": f"{ctx.stage}/latents.npz"}
    if E is not None:
        with atomic_path(ctx.workdir / "encoder.pt") as tmp:
            torch.save({"state_dict": E.cpu().state_dict(), "resolution": cfg.resolution, "w_dim": gcfg.w_dim,
                        "channel_max": max(128, cfg.channel_max)}, tmp)
        outputs["encoder"] = f"{ctx.stage}/encoder.pt"
    with atomic_path(ctx.workdir / "latents.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, rows=train, ws=lat.cpu().numpy())
    return {"outputs": outputs, "warnings": loop.warnings() + notes,
            "summary": {"source": "subject prior", "method": cfg.method, "steps": figures["steps"]["prior"],
                        "of_steps": cfg.steps, "minutes": figures["train_minutes"], **summary_held,
                        "resolution": cfg.resolution, **loop.summary_figures(figures)}}


def load_encoder(project, device="cpu"):
    from models.encoders import LatentEncoder

    ck = torch.load(project.output("prior", "encoder"), map_location=device, weights_only=True)
    E = LatentEncoder(ck["resolution"], ck["w_dim"], channel_max=ck["channel_max"]).to(device)
    E.load_state_dict(ck["state_dict"])
    return E.eval().requires_grad_(False)


register(StageSpec(name="prior", title="Subject prior", config_cls=PriorConfig, presets=PRESETS, run=run,
                   depends_on=("track",), models=("stylegan2", "lpips"), trains=True, parallel=True,
                   description="The StyleGAN2 generator PTI starts from: a pretrained one if configured, otherwise "
                               "one trained on your video's own frames (no download needed)."))
