"""Stage `nerf`: train the LatentAvatar engine (issue #6) on the tracked crops.

Part "train": encoder, tri-plane generator, point decoder and super-resolution train jointly
(L1 + λ·perceptual on the final image, λ·L1 on the volume-rendered low-res image, λ·mask loss
against the matte, and — when the ArcFace file is configured — λ·the ArcFace feature distance and
λ·identity loss on the final image). The camera of each frame comes from its tracked yaw/pitch (see
`models.latentavatar.camera`). Checkpoints are written atomically every `checkpoint_every_s`
seconds; a killed or cancelled run resumes from the last one.

Part "mapper": the expression mapper (tracked expression controls → θ) is fitted to the
encoder's codes of the training frames. It was already co-trained in part "train" (on a share of
the samples the decoder renders from its codes), so this is a short refinement.

Outputs (inside ``<project>/nerf/``): ``model.safetensors`` (state_dict) and ``avatar.json``
(model config, control names and ranges, training figures), read by `studio.engines.nerf`.
Held-out frames (the last 15 % of the clip) are never trained on; the summary reports their PSNR.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..atomic import atomic_path, write_json
from ..compute import precision_option
from ..config import opt
from ..errors import InputError, StudioError
from ..loop import TrainingLoop
from ..metrics import psnr_tensor, to_uint8
from ..nerf_format import FORMAT
from .base import StageContext, StageSpec, register
from .face import face_loss


@dataclass
class NerfConfig:
    size: int = opt(128, "Side of the rendered avatar in pixels (the super-resolution output).",
                    choices=(16, 32, 64, 128, 256, 512))
    low_res: int = opt(32, "Side of the volume-rendered image that super-resolution upsamples.",
                       choices=(8, 16, 32, 64, 128))
    samples: int = opt(24, "Samples per camera ray.", minimum=4, maximum=256)
    code_dim: int = opt(64, "Size of the latent expression code θ.", minimum=4, maximum=512)
    encoder_res: int = opt(64, "Side of the face region the encoder sees.", choices=(16, 32, 64, 128))
    plane_res: int = opt(64, "Side of each tri-plane.", choices=(16, 32, 64, 128, 256))
    plane_channels: int = opt(16, "Channels of each tri-plane.", minimum=2, maximum=96)
    steps: int = opt(7000, "Training steps (batches).", minimum=1)
    time_budget_min: float = opt(0.0, "Optional wall-clock cap in minutes (0 = no cap; pauses do not count). The "
                                      "stage says when it cut training short.", minimum=0.0)
    batch: int = opt(4, "Frames per training step.", minimum=1, maximum=64)
    lr: float = opt(1.5e-3, "Adam learning rate (cosine-decayed to a tenth).", minimum=1e-6, maximum=1e-1)
    perceptual_weight: float = opt(0.3, "Weight of the perceptual loss on the final image.", minimum=0.0)
    low_weight: float = opt(0.5, "Weight of the L1 loss on the low-resolution image.", minimum=0.0)
    mask_weight: float = opt(0.3, "Weight of the mask loss against the matte.", minimum=0.0)
    face_weight: float = opt(0.2, "Weight of the face feature loss on the final image: distances of the ArcFace "
                                  "network's intermediate maps, as the eval's feature distance measures them. Needs "
                                  "the ArcFace file (`avatar-studio models add arcface FILE`); without it the loss "
                                  "is left out and the stage says so.", minimum=0.0)
    identity_weight: float = opt(0.1, "Weight of the identity loss (1 − ArcFace embedding cosine) on the final "
                                      "image; the same ArcFace file.", minimum=0.0)
    face_batch: int = opt(2, "How many images of each batch the face losses look at (0 = all); on a CPU the "
                             "ArcFace pass costs about a third of a step at four.", minimum=0, maximum=64,
                          advanced=True)
    mapper_share: float = opt(0.7, "Share of training samples rendered from the expression mapper's code "
                                   "instead of the encoder's.", minimum=0.0, maximum=1.0, advanced=True)
    mapper_noise: float = opt(0.5, "Noise on the tracked controls the expression mapper sees in training and in "
                                   "its final fit, in training standard deviations per control: frames whose "
                                   "controls nearly agree then share a code, and what no control says (hair that "
                                   "swings, the light) is not learnt per frame.", minimum=0.0, maximum=2.0,
                            advanced=True)
    mapper_steps: int = opt(600, "Steps of the final mapper fit onto the encoder codes (0 = skip).", minimum=0,
                            advanced=True)
    picture_only: bool = opt(False, "Take no loss on black bars baked into the video (as the StyleGAN engine does): "
                                    "off: the d14 trainings with it on (2026-12-05) blew up near step 3000 (the "
                                    "super-resolution output grew on the bars); with the bars' targets clamped to "
                                    "the colour range a whole d14 run (2026-12-06) trained cleanly but measured the "
                                    "same as without (held-out 22.71 against 22.73 dB, identity 0.871 against "
                                    "0.869).", advanced=True)
    backbone: str = opt("", "VGG16/AlexNet torchvision .pth for an LPIPS perceptual loss; empty = the LPIPS "
                            "backbone set in the Models settings, else the no-download substitute.")
    threads: int = opt(0, "CPU threads for training (CPU only); 0 = auto: the cores other programs leave free, "
                          "re-checked as training runs (oversubscribed threads spin and slow down badly).",
                       minimum=0, maximum=256, advanced=True)
    precision: str = precision_option()
    checkpoint_every_s: float = opt(45.0, "Seconds between resumable checkpoints.", minimum=0.0, advanced=True)
    preview_every: int = opt(200, "Steps between preview images.", minimum=1, advanced=True)
    seed: int = opt(0, "Random seed.", advanced=True)
    controls: str = opt("named", "What the expression sliders are: 'named' = the twelve named expressions, 'flame' "
                                 "= jaw + FLAME expression coefficients (needs the FLAME fit, stage 'flame').",
                        choices=("named", "flame"))


MAX_SKIPPED = 50
"""Training steps in a row whose loss or gradient is not finite (skipped, weights untouched) before the stage
stops with a plain error instead of training on."""

PRESETS = {
    "preview": NerfConfig(),
    "quality": NerfConfig(size=512, low_res=128, samples=48, code_dim=128, encoder_res=128, plane_res=128,
                          plane_channels=32, steps=150_000, time_budget_min=0.0, batch=8, lr=1e-3, face_batch=0,
                          checkpoint_every_s=300.0, preview_every=1000),
}


def model_config(cfg: NerfConfig, n_expr: int):
    from models.latentavatar import LatentAvatarConfig

    return LatentAvatarConfig(code_dim=cfg.code_dim, encoder_res=cfg.encoder_res, n_expr=n_expr,
                              plane_res=cfg.plane_res, plane_channels=cfg.plane_channels,
                              gen_max_channels=128 if cfg.plane_res <= 64 else 256,
                              gen_min_channels=32 if cfg.plane_res <= 64 else 64,
                              low_res=cfg.low_res, out_res=cfg.size, n_samples=cfg.samples,
                              sr_channels=64 if cfg.size <= 256 else 128)


class FrameSet:
    """Training tensors held in memory (uint8 where large): crops, face regions, mattes, controls."""

    def __init__(self, tracking, rows: np.ndarray, mcfg, device: str):
        import torch
        import torch.nn.functional as F

        from models.latentavatar import face_region

        self.rows = np.asarray(rows)
        crops = tracking.crops(self.rows)                                          # (N, C, C, 3) uint8
        full = torch.from_numpy(crops).permute(0, 3, 1, 2)
        faces, images = [], []
        for i in range(0, len(full), 32):
            x = full[i:i + 32].float() / 255
            faces.append((face_region(x, mcfg) * 255).round().to(torch.uint8))
            images.append((F.interpolate(x, size=(mcfg.out_res, mcfg.out_res), mode="area") * 255)
                          .round().to(torch.uint8) if x.shape[-1] != mcfg.out_res else full[i:i + 32])
        self.face = torch.cat(faces).to(device)                                    # (N, 3, e, e) uint8
        self.image = torch.cat(images).to(device)                                  # (N, 3, s, s) uint8
        self.matte = torch.from_numpy(tracking.mattes(self.rows, size=mcfg.low_res))[:, None].to(device)
        pictures = tracking.picture_masks_u8(self.rows, mcfg.out_res)   # where each crop shows the video's picture
        self.picture = None if pictures is None else torch.from_numpy(pictures)[:, None].to(device)
        self.pose = torch.from_numpy(tracking.pose[self.rows, :2].astype(np.float32)).to(device)
        self.expr = torch.from_numpy(tracking.expr[self.rows].astype(np.float32)).to(device)

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, idx) -> dict:
        b = {"image": self.image[idx].float() / 255, "face": self.face[idx].float() / 255,
             "matte": self.matte[idx], "yaw": self.pose[idx, 0], "pitch": self.pose[idx, 1],
             "expr": self.expr[idx]}
        if self.picture is not None:
            b["picture"] = self.picture[idx].float() / 255
        return b


def background_logits(data: FrameSet, low_res: int):
    """Initial background: the mean colour of the crops outside the mattes, as sigmoid logits."""
    import torch
    import torch.nn.functional as F

    img = F.interpolate(data.image[:64].float() / 255, size=(low_res, low_res), mode="area")
    w = (1 - data.matte[:64]).clamp_min(0)
    if data.picture is not None:   # not the video's black bars
        w = w * F.interpolate(data.picture[:64].float() / 255, size=(low_res, low_res), mode="area")
    mean = (img * w).sum(dim=(0, 2, 3)) / w.sum(dim=(0, 2, 3)).clamp_min(1e-3)
    mean = mean.clamp(0.02, 0.98)
    return torch.log(mean / (1 - mean)).view(1, 3, 1, 1).expand(1, 3, low_res, low_res).clone()


def render_rows(model, data: FrameSet, idx, use_mapper: bool = True):
    """Render frames `idx` of `data` from their tracked controls (mapper) or their crops (encoder), and
    their crops (where a crop shows one of the video's black bars, the render itself: not scored)."""
    import torch

    with torch.no_grad():
        b = data.batch(idx)
        code = model.map_expression(b["expr"]) if use_mapper else model.encode(b["face"])
        out = model(code, b["yaw"], b["pitch"])["image"].clamp(0, 1)
        keep = b.get("picture")
        return out, (b["image"] if keep is None else b["image"] * keep + out * (1 - keep))


def heldout_psnr(model, held: FrameSet, use_mapper: bool = True) -> float:
    """Mean per-frame PSNR (dB) of `held` rendered from its tracked controls through the mapper (or from its
    crops through the encoder), 16 frames at a time: all at once, a 2-minute clip's 528 held-out frames took
    17 GB."""
    import torch

    chunks = [torch.arange(i, min(i + 16, len(held))) for i in range(0, len(held), 16)]
    return float(sum(mean_psnr(*render_rows(model, held, c, use_mapper)) * len(c) for c in chunks) / len(held))


def mean_psnr(a, b) -> float:
    """Mean per-image PSNR (dB) of two (B, 3, H, W) batches in [0, 1]."""
    return float(psnr_tensor(a, b, (0, 1)).mean())


def run(ctx: StageContext, cfg: NerfConfig):
    import torch

    from models.latentavatar import LatentAvatar, LossWeights, train_step
    from models.latentavatar.training import mapper_step
    from models.perceptual import PerceptualLoss

    from ..tracking.data import TrackingData

    tracking = TrackingData.from_project(ctx.project, controls=cfg.controls)
    train_rows, held_rows = tracking.split()
    if len(train_rows) < 8:
        raise InputError(f"only {len(train_rows)} tracked frames are available for training",
                         "use a longer clip with the face visible most of the time")
    if cfg.size % cfg.low_res or (cfg.size // cfg.low_res) & (cfg.size // cfg.low_res - 1):
        raise InputError(f"size {cfg.size} is not low_res {cfg.low_res} times a power of two",
                         "pick low_res so that size / low_res is 1, 2, 4, 8 ...")
    backbone = cfg.backbone.strip() or None
    if backbone is None:
        from ..model_files import lpips_path

        found = lpips_path()
        backbone = str(found) if found and found.exists() else None
    if backbone and not os.path.exists(backbone):
        raise InputError(f"the perceptual backbone file {backbone} does not exist",
                         "set backbone to a torchvision VGG16/AlexNet .pth, or leave it empty")
    loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=cfg.checkpoint_every_s,
                        max_minutes=cfg.time_budget_min, threads=cfg.threads, precision=cfg.precision)
    mcfg = model_config(cfg, len(tracking.expression_names))
    yield ctx.progress(0, cfg.steps, part="load", message=f"loading {len(train_rows)} training frames")
    data = FrameSet(tracking, train_rows, mcfg, ctx.device)
    held = FrameSet(tracking, held_rows, mcfg, ctx.device) if len(held_rows) else None
    model = LatentAvatar(mcfg).to(ctx.device)
    model.mapper.set_stats(data.expr)
    with torch.no_grad():
        model.background.copy_(background_logits(data, mcfg.low_res))
    perceptual = PerceptualLoss(backbone).to(ctx.device)
    face, face_note = face_loss(cfg.face_weight > 0 or cfg.identity_weight > 0, ctx.device,
                                "face_weight=0 and identity_weight=0")
    weights = LossWeights(perceptual=cfg.perceptual_weight, low=cfg.low_weight, mask=cfg.mask_weight,
                          face=cfg.face_weight if face is not None else 0.0,
                          identity=cfg.identity_weight if face is not None else 0.0, face_batch=cfg.face_batch)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    mopt = torch.optim.Adam(model.mapper.parameters(), lr=3e-4)
    loop.track("model", model)
    loop.track("optim", optim)
    loop.track("mapper_optim", mopt)
    loop.vars.setdefault("ema", {})

    # -------------------------------------------------------------- train
    preview_idx = np.linspace(0, len(held or data) - 1, 2).astype(int)

    def train(i: int) -> dict:
        frac = i / cfg.steps
        for g in optim.param_groups:
            g["lr"] = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        idx = torch.from_numpy(loop.shard(loop.rng.choice(len(data), size=min(cfg.batch, len(data)), replace=False)))
        batch = data.batch(idx)
        if not cfg.picture_only:
            batch.pop("picture", None)
        losses, _ = train_step(model, optim, batch, perceptual, weights, cfg.mapper_share, face=face,
                               expr_noise=cfg.mapper_noise)
        if losses.pop("skipped", 0.0):   # a NaN/inf loss or gradient: the step was not taken
            loop.vars["skipped"] = loop.vars.get("skipped", 0) + 1
            loop.vars["skipped_total"] = loop.vars.get("skipped_total", 0) + 1
            if loop.vars["skipped"] > MAX_SKIPPED:
                raise StudioError(f"the NeRF's training broke down near step {i}: {MAX_SKIPPED} steps in a row gave "
                                  f"a loss or gradient that is not a number",
                                  "run the stage again with a lower learning rate, e.g. --set lr=0.001; the "
                                  "checkpoint before it is kept")
        else:
            loop.vars["skipped"] = 0
            ema = loop.vars["ema"]
            loop.vars["ema"] = {k: v if k not in ema else 0.95 * ema[k] + 0.05 * v for k, v in losses.items()}
        return {k: round(v, 5) for k, v in loop.vars["ema"].items()}

    def preview():
        model.eval()
        img, gt = render_rows(model, held or data, preview_idx)
        return np.concatenate([np.concatenate(list(to_uint8(gt, (0, 1))), 1),
                               np.concatenate(list(to_uint8(img, (0, 1))), 1)], 0)

    yield from loop.part("train", cfg.steps, train, preview=preview, preview_every=cfg.preview_every,
                         progress_every=10)

    # -------------------------------------------------------------- mapper
    model.eval()
    before_fit = heldout_psnr(model, held) if held is not None and cfg.mapper_steps else None
    with torch.no_grad():
        codes = torch.cat([model.encode(data.batch(torch.arange(i, min(i + 32, len(data))))["face"])
                           for i in range(0, len(data), 32)])

    def fit(i: int) -> dict:
        bi = torch.from_numpy(loop.shard(loop.rng.integers(0, len(data), size=min(64, len(data)))))
        return {"code": mapper_step(model, mopt, data.expr[bi], codes[bi], cfg.mapper_noise)}

    yield from loop.part("mapper", cfg.mapper_steps, fit, progress_every=100)
    figures_loop = loop.finish()
    model.eval()
    with torch.no_grad():
        mapper_mse = float(torch.nn.functional.mse_loss(model.mapper(data.expr), codes))

    # -------------------------------------------------------------- measure + save
    yield ctx.progress(0, 1, part="save", message="measuring held-out frames and saving")
    figures = {"steps": figures_loop["steps"].get("train", 0), "of_steps": cfg.steps,
               "train_minutes": figures_loop["train_minutes"],
               "resumed_from": (figures_loop.get("resumed_from") or {}).get("train", 0),
               "mapper_mse": round(mapper_mse, 5), "perceptual": perceptual.kind,
               "face_loss": face is not None,
               "losses": dict(loop.vars["ema"]), **loop.summary_figures(figures_loop)}
    sub = torch.from_numpy(np.linspace(0, len(data) - 1, min(len(data), 48)).astype(int))
    figures["train_psnr_mapper"] = round(mean_psnr(*render_rows(model, data, sub)), 3)
    figures["train_psnr_encoder"] = round(mean_psnr(*render_rows(model, data, sub, use_mapper=False)), 3)
    if held is not None:
        figures["heldout_psnr"] = round(heldout_psnr(model, held), 3)
        if before_fit is not None:
            figures["heldout_psnr_before_mapper_fit"] = round(before_fit, 3)
        figures["heldout_psnr_encoder"] = round(heldout_psnr(model, held, use_mapper=False), 3)
    from safetensors.torch import save_file

    model_path = ctx.workdir / "model.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(model_path) as tmp:
        save_file(state, str(tmp))
    names = ["yaw", "pitch"] + tracking.expression_names
    meta = {"format": FORMAT, "model": mcfg.to_dict(), "control_names": names,
            "ranges": tracking.control_ranges(), "expression_names": tracking.expression_names,
            "training": figures}
    write_json(ctx.workdir / "avatar.json", meta)
    yield ctx.progress(1, 1, part="save", message="saved")
    proj = ctx.project
    n_skipped = int(loop.vars.get("skipped_total", 0))
    figures["skipped_steps"] = n_skipped
    skipped_note = [f"{n_skipped} training steps gave a loss or gradient that is not a number and were skipped "
                    f"(the weights were left as they were)"] if n_skipped else []
    return {"outputs": {"model": proj.rel(model_path), "config": proj.rel(ctx.workdir / "avatar.json")},
            "warnings": loop.warnings() + ([face_note] if face_note else []) + skipped_note, "summary": figures}


register(StageSpec(
    name="nerf", title="LatentAvatar (tri-plane NeRF)", config_cls=NerfConfig, presets=PRESETS, run=run,
    depends_on=("track",), models=("arcface", "lpips"), trains=True, parallel=True,
    extra_depends=lambda cfg: ("flame",) if getattr(cfg, "controls", "named") == "flame" else (),
    description="Trains a 3D head whose expression is a learned latent code: a tri-plane NeRF rendered "
                "from the tracked camera, refined by super-resolution. Yaw and pitch move a real camera; "
                "the expression sliders drive the code through a small mapper; a face image or video "
                "can drive it through the encoder."))
