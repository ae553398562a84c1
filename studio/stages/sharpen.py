"""Stage `sharpen` (PVP): a sharpening head after the tuned generator (`models.sharpen_head`).

The StyleGAN engine's generator, trained for a preview's minutes, renders a soft face: on held-out
frames its face region keeps 5–10 % of the video's high-frequency energy and the eyes are smudges
(README, "Why the StyleGAN engine's render stays a blur"). LatentAvatar ends in a super-resolution
U-Net; this stage gives the StyleGAN engine the same kind of last step. A small U-Net learns to turn
the engine's render of each training frame (from that frame's tracked controls, through the trained
mappers) into the real frame.

The engine reproduces its training frames more exactly than new ones (d14: about 25 dB against 21 on
held-out frames), so a head trained on those renders as they are learns to trust them. Each render is
therefore degraded before the head sees it — a smooth random warp of about `warp_px` pixels and a
Gaussian blur of up to `blur` pixels — so that it learns to draw eyes, lips and hair onto a render that
is a little off, as held-out renders are. Losses: L1, the perceptual loss, and the ArcFace feature
distance and identity loss when the ArcFace file is configured (`studio.stages.face`).

The engine applies the head to every render (viewer, eval, export, edits, driving) once this stage is
done; an avatar trained before the stage existed renders without it until `avatar-studio run` trains it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..atomic import atomic_path, write_bytes, write_json
from ..compute import channels_last, precision_option
from ..config import opt, to_dict
from ..loop import TrainingLoop
from ..metrics import from_uint8, to_uint8
from ..pvp.common import load_pictures, perceptual_loss, within_picture
from ..tracking.data import TrackingData
from .base import StageContext, StageSpec, register
from .face import face_loss, face_terms


@dataclass
class SharpenConfig:
    steps: int = opt(600, "Training steps of the sharpening head.", minimum=1)
    batch: int = opt(8, "Training frames per step.", minimum=1, maximum=64)
    lr: float = opt(1e-3, "Learning rate (Adam), decayed (cosine) to a tenth over the steps.", minimum=1e-6,
                    maximum=1.0, advanced=True)
    channels: str = opt("16,32,64,96", "Widths of the U-Net's levels, full resolution first (32,64,96,128 costs "
                                       "twice the time a step).", advanced=True)
    warp_px: float = opt(1.5, "Size (pixels at the render's resolution) of the smooth random warp laid on each "
                              "training render, so the head learns to correct renders that are a little off.",
                         minimum=0.0, maximum=8.0, advanced=True)
    blur: float = opt(0.8, "Largest Gaussian blur (σ, pixels) laid on the training renders (each draws one from "
                           "0 to this).", minimum=0.0, maximum=4.0, advanced=True)
    w_l1: float = opt(1.0, "Weight of the L1 loss.", minimum=0.0, advanced=True)
    w_perceptual: float = opt(0.5, "Weight of the perceptual loss.", minimum=0.0, advanced=True)
    w_face: float = opt(0.2, "Weight of the face feature loss (ArcFace feature maps' distance, the eval's feature "
                             "distance). Needs the ArcFace file (`avatar-studio models add arcface FILE`).",
                        minimum=0.0, advanced=True)
    w_identity: float = opt(0.1, "Weight of the identity loss (1 − ArcFace embedding cosine).", minimum=0.0,
                            advanced=True)
    w_adv: float = opt(0.0, "Weight of the adversarial term: a small patch critic (`models.sharpen_head.PatchCritic`) "
                            "learns to tell the real frames from the head's output and the head learns to fool it "
                            "(0 = off, the default: on d3 it drew texture but no eyes, and identity did not rise; "
                            "README, \"An adversarial term in the sharpening head\").", minimum=0.0, advanced=True)
    adv_start: float = opt(0.25, "Share of the steps trained without the adversarial term first, so the critic "
                                 "meets a head that already reconstructs.", minimum=0.0, maximum=1.0, advanced=True)
    adv_conditional: bool = opt(False, "The critic sees the render beside the image (on) or the image alone (off, "
                                       "the default: on d3 the render-aware critic made the head blurrier).",
                                advanced=True)
    adv_lr: float = opt(2e-4, "Learning rate of the patch critic (Adam, betas 0.5 / 0.99).", minimum=1e-6,
                        maximum=1.0, advanced=True)
    w_features: float = opt(0.0, "Extra weight of the L1 loss inside the eyes with their brows and the mouth (each "
                                 "training frame's tracked landmarks, grown by `features_grow`): 0 = the whole "
                                 "image weighs the same.", minimum=0.0, advanced=True)
    features_grow: float = opt(4.0, "Pixels (at 128 px) the eyes-and-mouth regions of `w_features` are grown by, "
                                    "then feathered.", minimum=0.0, maximum=32.0, advanced=True)
    face_batch: int = opt(4, "How many of each step's frames the face losses look at (0 = all).", minimum=0,
                          maximum=64, advanced=True)
    time_budget_min: float = opt(0.0, "Optional wall-clock cap in minutes (0 = no cap; pauses do not count). The "
                                      "stage says when it cut training short.", minimum=0.0)
    checkpoint_every_s: float = opt(45.0, "Seconds between checkpoints.", minimum=0.0, advanced=True)
    threads: int = opt(0, "CPU threads (0 = the cores other programs leave free, re-checked as it runs).", minimum=0,
                       advanced=True)
    precision: str = precision_option()
    seed: int = opt(0, "Random seed.", advanced=True)


PRESETS = {"preview": SharpenConfig(),
           "quality": SharpenConfig(steps=6000, batch=16, face_batch=0, checkpoint_every_s=120.0)}


def parse_channels(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in str(text).replace(" ", "").split(",") if v)
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        from ..errors import InputError

        raise InputError(f"channels must be comma-separated positive widths such as 32,64,96,128, got '{text}'")
    return out


def degrade(x: torch.Tensor, rng: np.random.Generator, warp_px: float, blur: float) -> torch.Tensor:
    """(B, 3, S, S) renders → the same renders, each warped by a smooth random field of about `warp_px`
    pixels (a 4×4 grid of offsets, bicubically interpolated) and blurred by a Gaussian of σ drawn from
    [0, `blur`] (none under 0.2). All randomness comes from `rng`, so a resumed run draws the same."""
    b, _, h, w = x.shape
    if warp_px > 0:
        offsets = torch.from_numpy(rng.standard_normal((b, 2, 4, 4)).astype(np.float32)).to(x)
        offsets = offsets * torch.tensor([2.0 * warp_px / w, 2.0 * warp_px / h], device=x.device).view(1, 2, 1, 1)
        field = F.interpolate(offsets, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device),
                                indexing="ij")
        grid = torch.stack([xs, ys], -1)[None] + field
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    if blur > 0:
        sigmas = rng.uniform(0.0, blur, size=b)
        out = []
        for i, s in enumerate(sigmas):
            xi = x[i:i + 1]
            if s >= 0.2:
                r = int(math.ceil(3 * s))
                g = torch.exp(-torch.arange(-r, r + 1, device=x.device, dtype=x.dtype) ** 2 / (2 * s * s))
                g = g / g.sum()
                xi = F.conv2d(F.pad(xi, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).expand(3, 1, 1, -1),
                              groups=3)
                xi = F.conv2d(F.pad(xi, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1).expand(3, 1, -1, 1),
                              groups=3)
            out.append(xi)
        x = torch.cat(out)
    return x


def run(ctx: StageContext, cfg: SharpenConfig):
    from models.sharpen_head import PatchCritic, SharpenHead

    from ..engines.pvp import PVPEngine
    from ..evaluation import bar_keep, face_masks, score_images, within_bars

    dev = torch.device(ctx.device)
    loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=cfg.checkpoint_every_s,
                        max_minutes=cfg.time_budget_min, threads=cfg.threads,
                        precision=cfg.precision)
    proj = ctx.project
    engine = PVPEngine(proj, ctx.device, sharpen=False)   # the generator's own renders, whatever head exists
    trk = TrackingData.from_project(proj, controls=engine.controls)   # the sliders the mappers were trained on
    train, held = trk.split()
    size = engine.size
    yield ctx.progress(0, 1, part="renders", message=f"rendering {len(train)} training frames")
    ctl = trk.controls(train)
    renders = np.concatenate([engine.render_controls(ctl[i:i + 16]) for i in range(0, len(ctl), 16)])
    renders = from_uint8(renders)                                   # (N, 3, S, S) in [-1, 1]
    frames = from_uint8(trk.crops(train, size=size))
    pictures = load_pictures(trk, train, size)   # None unless the crops show bars or the frame's edge
    regions = None          # (N, 1, S, S) eyes-with-brows and mouth of each training frame, for w_features
    if cfg.w_features > 0:
        from ..detail import REFERENCE_SIZE, feature_masks

        lms = trk.crop_landmarks_at(train, size)
        regions = torch.from_numpy(feature_masks(lms, size, cfg.features_grow * size / REFERENCE_SIZE))[:, None]
    head = loop.track("head", SharpenHead(parse_channels(cfg.channels)).to(dev))
    opt_h = loop.track("opt", torch.optim.Adam(head.parameters(), lr=cfg.lr))
    critic = opt_c = None
    if cfg.w_adv > 0:
        critic = loop.track("critic", PatchCritic(conditional=cfg.adv_conditional).to(dev))
        opt_c = loop.track("opt_critic", torch.optim.Adam(critic.parameters(), lr=cfg.adv_lr, betas=(0.5, 0.99)))
    adv_from = int(round(cfg.adv_start * cfg.steps))
    perc = perceptual_loss(dev) if cfg.w_perceptual > 0 else None
    face, face_note = face_loss(cfg.w_face > 0 or cfg.w_identity > 0, dev, "w_face=0 and w_identity=0")
    channels_last(head, critic, face, device=dev)   # faster convolutions on a CPU
    last: dict = {}

    def step(i: int) -> dict:
        rng = loop.rng
        for g in opt_h.param_groups:
            g["lr"] = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, i / cfg.steps))))
        idx = torch.from_numpy(loop.shard(rng.integers(0, len(train), size=min(cfg.batch, len(train)))))
        x, y = renders[idx].to(dev), frames[idx].to(dev)
        m = None if regions is None else regions[idx].to(dev)
        keep = None if pictures is None else pictures[idx]
        if rng.random() < 0.5:             # mirrored faces are faces too
            x, y = x.flip(3), y.flip(3)
            m = None if m is None else m.flip(3)
            keep = None if keep is None else keep.flip(3)
        with torch.no_grad():
            x = degrade(x, loop.local_rng, cfg.warp_px, cfg.blur)   # per sample: this process's own draws
        out = head(x)
        y = within_picture(y, out, keep)
        l1 = F.l1_loss(out, y)
        loss = cfg.w_l1 * l1
        logs = {"l1": l1.item()}
        if m is not None:                  # the eyes and mouth weigh more
            lf = ((out - y).abs() * m).mean()
            loss = loss + cfg.w_l1 * cfg.w_features * lf
            logs["l1_features"] = lf.item()
        if perc is not None:
            lp = perc(out, y)
            loss = loss + cfg.w_perceptual * lp
            logs["perceptual"] = lp.item()
        if face is not None:
            dist, lid = face_terms(face, out, y, count=cfg.face_batch)
            loss = loss + cfg.w_face * dist + cfg.w_identity * lid
            logs.update(face=dist.item(), identity=lid.item())
        adv = critic is not None and i >= adv_from
        if adv:     # non-saturating GAN loss on the critic's patch logits; the critic is not stepped here
            critic.requires_grad_(False)
            lg = F.softplus(-critic(x, out)).mean()
            critic.requires_grad_(True)
            loss = loss + cfg.w_adv * lg
            logs["adv"] = lg.item()
        opt_h.zero_grad(set_to_none=True)
        loss.backward()
        opt_h.step()
        if adv:
            fake = out.detach()
            lc = F.softplus(-critic(x, y)).mean() + F.softplus(critic(x, fake)).mean()
            opt_c.zero_grad(set_to_none=True)
            lc.backward()
            opt_c.step()
            logs["critic"] = lc.item()
        last.update(x=x, out=out, y=y)
        return logs

    def preview():
        k = min(4, len(last["y"]))
        return np.concatenate([np.concatenate(list(to_uint8(last[n][:k])), 1) for n in ("y", "x", "out")], 0)

    yield from loop.part("sharpen", cfg.steps, step, preview=preview, preview_every=50)
    figures = loop.finish()
    head.eval().requires_grad_(False)
    final = ctx.workdir / "head.pt"
    with atomic_path(final) as tmp:
        torch.save(head.state_dict(), tmp)
    meta = {"format": "avatar-studio/sharpen-head", "version": 1, "channels": list(head.channels),
            "resolution": int(size), "config": to_dict(cfg)}
    write_json(ctx.workdir / "head.json", meta)
    # held-out frames before and after the head (engine alone, no detail): what it bought, and a sheet to look at
    heldout = {}
    if len(held):
        import cv2

        hc = trk.controls(held)
        before = np.concatenate([engine.render_controls(hc[i:i + 16]) for i in range(0, len(hc), 16)])
        with torch.no_grad():
            after = to_uint8(torch.cat([head(from_uint8(before[i:i + 16]).to(dev)).cpu()
                                        for i in range(0, len(before), 16)]))
        truth, masks = trk.crops(held, size=size), face_masks(trk, held, size)
        keep = bar_keep(trk, held, size)   # as `eval`'s "engine alone" row: the video's black bars left out
        for name, imgs in (("before", before), ("after", after)):
            s = score_images(imgs, within_bars(truth, imgs, keep), masks)
            heldout[name] = {k: s[k] for k in ("psnr", "identity", "feature_distance", "sharpness_median")}
        pick = np.linspace(0, len(held) - 1, min(8, len(held))).round().astype(int)
        sheet = np.concatenate([np.concatenate(list(a[pick]), 1) for a in (truth, before, after)], 0)
        ok, png = cv2.imencode(".png", sheet[..., ::-1])
        if ok:
            write_bytes(ctx.workdir / "heldout.png", png.tobytes())
    summary = {"steps": figures["steps"].get("sharpen", 0), "of_steps": cfg.steps, "face_loss": face is not None,
               "adversarial": critic is not None,
               "minutes": figures["train_minutes"], **loop.summary_figures(figures)}
    for name, s in heldout.items():
        summary.update({f"heldout_{k}_{name}": (None if v is None else round(float(v), 3)) for k, v in s.items()})
    return {"outputs": {"head": f"{ctx.stage}/head.pt", "meta": f"{ctx.stage}/head.json",
                        **({"heldout": f"{ctx.stage}/heldout.png"} if heldout else {})},
            "warnings": loop.warnings() + ([face_note] if face_note else []),
            "summary": summary}


register(StageSpec(name="sharpen", title="Sharpening head", config_cls=SharpenConfig, presets=PRESETS,
                   run=run, depends_on=("track", "mappers"), models=("arcface", "lpips"), trains=True, parallel=True,
                   description="Trains a small U-Net that draws the eyes, lips and hair the StyleGAN engine's "
                               "soft render lacks, on your video's training frames."))
