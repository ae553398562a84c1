"""Stage `mappers` (PVP): a pose mapper that blends the pivot latents and an expression mapper
that offsets the early latents, trained on every training frame with the tuned generator frozen.

Losses (weights in the preset): L2 + perceptual + the ArcFace feature distance and identity loss
(`studio.stages.face`, when the ArcFace file is configured) on the training frames; on renders whose expression inputs are randomly perturbed,
an expression-matching and a pose-consistency loss read back through a small differentiable
estimator trained on this video's own crops (PVP used DECA, which is not available offline),
an RGB consistency loss outside the eyes and mouth, and a small latent regulariser.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from ..atomic import atomic_path, write_json
from ..compute import channels_last, precision_option
from ..config import opt, to_dict
from ..loop import TrainingLoop
from ..metrics import from_uint8, to_uint8
from ..pvp.common import load_personal_generator, load_pictures, within_picture
from ..tracking.data import TrackingData
from ..tracking.geometry import FEATURE_REGIONS
from .base import StageContext, StageSpec, register
from .face import face_loss, face_terms


@dataclass
class MappersConfig:
    steps: int = opt(2400, "Mapper training steps.", minimum=1)
    batch: int = opt(4, "Frames per step.", minimum=1, maximum=64)
    time_budget_min: float = opt(0.0, "Optional wall-clock cap in minutes (0 = no cap; pauses do not count). The "
                                      "stage says when it cut training short.", minimum=0.0)
    lr: float = opt(2e-3, "Learning rate (Adam).", minimum=1e-6, maximum=1.0, advanced=True)
    lr_final: float = opt(0.1, "Learning rate at the end, as a fraction of `lr` (cosine decay over the steps).",
                          minimum=0.0, maximum=1.0, advanced=True)
    ema: float = opt(0.995, "Decay of the moving average of the mapper weights that is saved (0 = save the raw "
                            "weights).", minimum=0.0, maximum=0.9999, advanced=True)
    mix_expressions: float = opt(0.5, "Share of the perturbed renders whose expression is taken from another random "
                                      "training frame (new pose/expression combinations), instead of jittered.",
                                 minimum=0.0, maximum=1.0, advanced=True)
    input_noise: float = opt(0.05, "Std of the noise added to the pose inputs (yaw, pitch) of the reconstruction "
                                   "pass (x their spread in the video), for smoother sliders.", minimum=0.0,
                             maximum=1.0, advanced=True)
    expression_noise: float = opt(0.05, "Std of the noise added to the expression inputs of the reconstruction pass "
                                        "(x each control's spread in the video). Larger values let frames whose "
                                        "controls nearly agree share one latent offset instead of each memorising "
                                        "its own hair and light (measured in the README: 0.6 helped d14 and cost d3).",
                                  minimum=0.0, maximum=2.0, advanced=True)
    hidden: int = opt(128, "Width of the mapper MLPs.", minimum=16, maximum=1024, advanced=True)
    beta: float = opt(0.05, "Hull dilation β of the pose mapper: how far outside the pivots' convex hull it may go.",
                      minimum=0.0, maximum=1.0, advanced=True)
    estimator_steps: int = opt(400, "Training steps of the pose/expression read-back network.", minimum=0)
    perturb: float = opt(0.6, "Std of the random expression perturbation (slider units).", minimum=0.0, maximum=3.0,
                         advanced=True)
    w_l2: float = opt(1.0, "Weight of the L2 reconstruction loss.", advanced=True)
    w_perceptual: float = opt(0.5, "Weight of the perceptual loss.", advanced=True)
    w_identity: float = opt(0.1, "Weight of the identity loss (1 − ArcFace embedding cosine) on the training "
                                 "frames. Needs the ArcFace file (`avatar-studio models add arcface FILE`).",
                            minimum=0.0, advanced=True)
    w_face: float = opt(0.2, "Weight of the face feature loss on the training frames (distances of the ArcFace "
                             "network's intermediate feature maps: the eval's feature distance).", minimum=0.0,
                        advanced=True)
    w_expression: float = opt(0.05, "Weight of the expression-matching loss on perturbed renders (named sliders; "
                                    "see w_expression_flame).", advanced=True)
    w_pose: float = opt(0.05, "Weight of the pose-consistency loss on perturbed renders.", advanced=True)
    w_expression_flame: float = opt(0.5, "w_expression when the sliders are FLAME coefficients (controls = flame): "
                                         "they are subtler and more entangled than the named expressions, and a "
                                         "stronger read-back keeps each slider doing what it says.", minimum=0.0,
                                    advanced=True)
    w_pose_flame: float = opt(0.3, "w_pose when controls = flame (a stronger expression read-back otherwise lets "
                                   "the sliders tilt the head).", minimum=0.0, advanced=True)
    w_pivot_pose: float = opt(1.0, "Weight of the pivot-pose loss: at yaw/pitch drawn evenly over the trained range, "
                                    "the pose mapper's blend of pivots must carry that pose (the blend's mean of the "
                                    "pivots' tracked poses). Without it the blend spread its weight over many pivots "
                                    "and d9's head hardly turned (yaw sweep −13.7…11.5° re-tracked −6…−3.5°).",
                              minimum=0.0, advanced=True)
    w_rgb: float = opt(0.5, "Weight of the RGB consistency outside eyes and mouth on perturbed renders.",
                       advanced=True)
    w_reg: float = opt(1e-3, "Weight of the latent offset regulariser.", advanced=True)
    checkpoint_every_s: float = opt(45.0, "Seconds between checkpoints.", minimum=0.0, advanced=True)
    threads: int = opt(0, "CPU threads (0 = the cores other programs leave free, re-checked as it runs).", minimum=0,
                       advanced=True)
    precision: str = precision_option()
    seed: int = opt(0, "Random seed.", advanced=True)
    controls: str = opt("named", "What the expression sliders are: 'named' = the twelve named expressions, 'flame' "
                                 "= jaw + FLAME expression coefficients (needs the FLAME fit, stage 'flame').",
                        choices=("named", "flame"))


PRESETS = {"preview": MappersConfig(),
           "quality": MappersConfig(steps=20000, batch=16, estimator_steps=4000, checkpoint_every_s=120,
                                    time_budget_min=0.0)}


def readback_weights(cfg: MappersConfig) -> tuple[float, float]:
    """(expression, pose) weights of the read-back losses for the project's kind of sliders."""
    if cfg.controls == "flame":
        return cfg.w_expression_flame, cfg.w_pose_flame
    return cfg.w_expression, cfg.w_pose


def input_noise_scale(cfg: MappersConfig, n_controls: int) -> torch.Tensor:
    """(n_controls,) std of the reconstruction pass's input noise per control, in units of that control's
    spread in the video: `input_noise` for yaw and pitch, `expression_noise` for the rest."""
    scale = torch.full((n_controls,), float(cfg.expression_noise))
    scale[:2] = float(cfg.input_noise)
    return scale


# ----------------------------------------------------------------------------- inputs
def region_mask(tracking: TrackingData, rows, size: int) -> np.ndarray:
    """(S, S) float32: 0 over the eyes, brows and mouth of the mean aligned face, 1 elsewhere."""
    lm = np.mean([tracking.crop_landmarks(int(r)) for r in rows[:: max(1, len(rows) // 50)]], axis=0)
    lm = lm * (size / tracking.crop_size)
    m = np.zeros((size, size), np.uint8)
    for idx in FEATURE_REGIONS:
        hull = cv2.convexHull(lm[list(idx)].astype(np.float32)).astype(np.int32)
        cv2.fillConvexPoly(m, hull, 1)
    k = max(3, size // 24) | 1
    m = cv2.dilate(m, np.ones((k, k), np.uint8))
    m = cv2.GaussianBlur(m.astype(np.float32), (k, k), 0)
    return (1.0 - np.clip(m, 0, 1)).astype(np.float32)


def pivot_pose_loss(pose_map, poses: torch.Tensor, pivot_pose: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """How far the pose mapper's blend is from the pose asked for: the blend's weighted mean of the
    pivots' tracked (yaw, pitch) against `poses` (B, 2), in units of `std` (2,), smooth L1. The
    blend can only show a pose its heavy pivots show, so this keeps the weights on the pivots near
    the commanded pose instead of spreading them toward the clip's average pose."""
    got = pose_map.weights(poses) @ pivot_pose
    return F.smooth_l1_loss(got / std, poses / std)


# ----------------------------------------------------------------------------- stage
def run(ctx: StageContext, cfg: MappersConfig):
    from models.perceptual import PerceptualLoss
    from models.pvp_mappers import ControlEstimator, ExpressionMapper, PoseMapper

    dev = torch.device(ctx.device)
    loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=cfg.checkpoint_every_s,
                        max_minutes=cfg.time_budget_min, threads=cfg.threads,
                        precision=cfg.precision)
    proj = ctx.project
    trk = TrackingData.from_project(proj, controls=cfg.controls)
    train, held = trk.split()
    G, pivots, pivot_rows = load_personal_generator(proj, dev)
    res = G.img_resolution
    yield ctx.progress(0, 1, part="data", message=f"loading {len(train)} training crops at {res}px")
    imgs = from_uint8(trk.crops(train, size=res))
    pictures = load_pictures(trk, train, res)   # None unless the crops show bars or the frame's edge
    ctrl_all = torch.from_numpy(trk.controls(train))
    lo = ctrl_all.min(dim=0).values  # the range seen in training: sliders are clamped to it
    hi = ctrl_all.max(dim=0).values
    c_mean, c_std = ctrl_all.mean(0), ctrl_all.std(0).clamp_min(1e-3)
    keep = torch.from_numpy(region_mask(trk, train, res))[None, None].to(dev)
    n_expr = ctrl_all.shape[1] - 2

    est = ControlEstimator(ctrl_all.shape[1], resolution=min(res, 128)).to(dev)
    est.out_mean.copy_(c_mean)
    est.out_std.copy_(c_std)
    pose_map = PoseMapper(pivots, hidden=cfg.hidden, beta=cfg.beta, pose_mean=c_mean[:2].to(dev),
                          pose_std=c_std[:2].to(dev)).to(dev)
    expr_map = ExpressionMapper(n_expr, pivots.shape[2], G.num_ws, hidden=cfg.hidden,  # inputs standardised
                                expr_mean=c_mean[2:], expr_std=c_std[2:]).to(dev)
    opt_est = torch.optim.Adam(est.parameters(), lr=1e-3)
    opt_map = torch.optim.Adam(list(pose_map.parameters()) + list(expr_map.parameters()), lr=cfg.lr)
    ema_pose, ema_expr = copy.deepcopy(pose_map).requires_grad_(False), copy.deepcopy(expr_map).requires_grad_(False)
    for name, obj in (("est", est), ("pose", pose_map), ("expr", expr_map), ("opt_est", opt_est),
                      ("opt_map", opt_map), ("ema_pose", ema_pose), ("ema_expr", ema_expr)):
        loop.track(name, obj)
    perceptual = None
    if cfg.w_perceptual > 0:
        from ..model_files import lpips_path

        lp = lpips_path()
        perceptual = PerceptualLoss(str(lp) if lp is not None else None).to(dev)
    face, face_note = face_loss(cfg.w_identity > 0 or cfg.w_face > 0, dev, "w_identity=0 and w_face=0")
    channels_last(G, est, face, device=dev)   # faster convolutions on a CPU

    # ---- part 1: the read-back estimator on real crops
    est.train()

    def estimator_step(i: int) -> dict:
        rng = loop.rng
        idx = torch.from_numpy(loop.shard(rng.integers(0, len(train), size=min(16, len(train)))))
        x = imgs[idx].to(dev)
        # light augmentation: brightness/contrast jitter and a 1-3 px shift
        x = (x * (1 + 0.1 * torch.randn(len(idx), 1, 1, 1, device=dev)) + 0.05 * torch.randn(len(idx), 1, 1, 1,
                                                                                            device=dev)).clamp(-1, 1)
        sh = [int(v) for v in rng.integers(-3, 4, size=2)]
        x = torch.roll(x, shifts=sh, dims=(2, 3))
        y = ctrl_all[idx].to(dev)
        loss = F.smooth_l1_loss((est(x) - est.out_mean) / est.out_std, (y - est.out_mean) / est.out_std)
        opt_est.zero_grad(set_to_none=True)
        loss.backward()
        opt_est.step()
        return {"readback": loss.item()}

    yield from loop.part("estimator", cfg.estimator_steps, estimator_step, progress_every=10)
    est.eval().requires_grad_(False)
    est_quality = {}
    if len(held):
        with torch.no_grad():
            xh = from_uint8(trk.crops(held, size=res)).to(dev)
            pred = est(xh).cpu().numpy()
        truth = trk.controls(held)
        est_quality = {"estimator_yaw_mae": float(np.abs(pred[:, 0] - truth[:, 0]).mean()),
                       "estimator_jaw_corr": float(np.corrcoef(pred[:, 2], truth[:, 2])[0, 1])}
        if len(held) > 2 and truth.shape[1] > 3:  # mean r over the ten expression controls after the first
            rs = [np.corrcoef(pred[:, j], truth[:, j])[0, 1] for j in range(3, min(truth.shape[1], 13))]
            est_quality["estimator_expr_corr"] = float(np.nanmean(rs))

    # ---- part 2: the mappers
    w_exp, w_pose_rb = readback_weights(cfg)
    lo_d, hi_d = lo.to(dev), hi.to(dev)
    pivot_pose = torch.from_numpy(trk.pose[np.asarray(pivot_rows), :2].astype(np.float32)).to(dev)
    c_std_d = c_std.to(dev)
    noise_std = input_noise_scale(cfg, ctrl_all.shape[1]).to(dev) * c_std_d  # per control, in its own units
    noisy = bool((noise_std > 0).any())
    last: dict = {}

    def mapper_step(i: int) -> dict:
        rng = loop.rng
        frac = i / cfg.steps  # cosine learning-rate decay over the steps
        for g in opt_map.param_groups:
            g["lr"] = cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        idx = torch.from_numpy(loop.shard(rng.integers(0, len(train), size=min(cfg.batch, len(train)))))
        target = imgs[idx].to(dev)
        c = ctrl_all[idx].to(dev)
        pose, expr = c[:, :2], c[:, 2:]
        c_in = c + noise_std * torch.randn_like(c) if noisy else c
        w_pose = pose_map(c_in[:, :2])
        off = expr_map(c_in[:, 2:])
        out = G.synthesis(w_pose + off, noise_mode="const")
        target = within_picture(target, out, None if pictures is None else pictures[idx])
        l2 = F.mse_loss(out, target)
        loss = cfg.w_l2 * l2
        logs = {"l2": l2.item()}
        if perceptual is not None:
            lp = perceptual(out, target)
            loss = loss + cfg.w_perceptual * lp
            logs["perceptual"] = lp.item()
        if face is not None:
            dist, lid = face_terms(face, out, target)
            loss = loss + cfg.w_face * dist + cfg.w_identity * lid
            logs.update(face=dist.item(), identity=lid.item())
        reg = off[:, : expr_map.n_layers].pow(2).mean()
        loss = loss + cfg.w_reg * reg
        if cfg.w_pivot_pose > 0:   # poses drawn evenly over the trained range, not as often as the clip shows them
            u = torch.from_numpy(rng.random((max(8, len(idx)), 2)).astype(np.float32)).to(dev)
            even = lo_d[:2] + u * (hi_d[:2] - lo_d[:2])
            lpp = pivot_pose_loss(pose_map, even, pivot_pose, c_std_d[:2])
            loss = loss + cfg.w_pivot_pose * lpp
            logs["pivot_pose"] = lpp.item()
        if cfg.perturb > 0 and (w_exp > 0 or w_pose_rb > 0 or cfg.w_rgb > 0):
            h = max(1, len(idx) // 2)
            e2 = expr[:h] + cfg.perturb * torch.randn_like(expr[:h]) * c_std[2:].to(dev)
            if cfg.mix_expressions > 0:  # another frame's whole expression on this frame's pose
                other = ctrl_all[torch.from_numpy(loop.local_rng.integers(0, len(train), size=h)), 2:].to(dev)
                other = other + 0.1 * torch.randn_like(other) * c_std[2:].to(dev)
                pick = torch.from_numpy(loop.local_rng.random(h) < cfg.mix_expressions).to(dev)[:, None]
                e2 = torch.where(pick, other, e2)
            e2 = torch.max(torch.min(e2, hi_d[2:]), lo_d[2:])
            out2 = G.synthesis(w_pose[:h] + expr_map(e2), noise_mode="const")
            read = est(out2)
            std = est.out_std
            lexp = F.smooth_l1_loss(read[:, 2:] / std[2:], e2 / std[2:])
            lpose = F.smooth_l1_loss(read[:, :2] / std[:2], pose[:h] / std[:2])
            keep_r = F.interpolate(keep, size=out2.shape[-2:], mode="bilinear", align_corners=False)
            lrgb = (keep_r * (out2 - out[:h].detach()).abs()).mean()
            loss = loss + w_exp * lexp + w_pose_rb * lpose + cfg.w_rgb * lrgb
            logs.update(expression=lexp.item(), pose=lpose.item(), rgb=lrgb.item())
        opt_map.zero_grad(set_to_none=True)
        loss.backward()
        opt_map.step()
        with torch.no_grad():
            d = cfg.ema if i > 0 else 0.0
            for src, dst in ((pose_map, ema_pose), (expr_map, ema_expr)):
                for a, b in zip(src.parameters(), dst.parameters()):
                    b.lerp_(a, 1.0 - d)
        last.update(target=target, out=out, logs=logs)
        return logs

    def preview():
        k = min(4, len(last["target"]))
        return np.concatenate([np.concatenate(list(to_uint8(last["target"][:k])), 1),
                               np.concatenate(list(to_uint8(last["out"][:k])), 1)], 0)

    yield from loop.part("mappers", cfg.steps, mapper_step, preview=preview, preview_every=50)
    figures = loop.finish()
    # ---- final files
    final = ctx.workdir / "mappers.pt"
    with atomic_path(final) as tmp:
        saved = (ema_pose, ema_expr) if cfg.ema > 0 else (pose_map, expr_map)
        torch.save({"pose": saved[0].state_dict(), "expr": saved[1].state_dict(), "est": est.state_dict()}, tmp)
    names = ["yaw", "pitch"] + trk.expression_names
    meta = {"format": "avatar-studio/pvp-mappers", "version": 1, "k": int(pivots.shape[0]),
            "num_ws": int(G.num_ws), "w_dim": int(pivots.shape[2]), "n_expr": n_expr, "hidden": cfg.hidden,
            "beta": cfg.beta, "n_expr_layers": expr_map.n_layers, "control_names": names,
            "ranges": {n: [float(a), float(b)] for n, a, b in zip(names, lo.tolist(), hi.tolist())},
            "resolution": int(res), "config": to_dict(cfg)}
    write_json(ctx.workdir / "mappers.json", meta)
    final_l2 = (last.get("logs") or {}).get("l2")
    return {"outputs": {"mappers": f"{ctx.stage}/mappers.pt", "meta": f"{ctx.stage}/mappers.json"},
            "warnings": loop.warnings() + ([face_note] if face_note else []),
            "summary": {"steps": figures["steps"].get("mappers", 0), "of_steps": cfg.steps, "face_loss": face is not None,
                        **({"final_l2": round(final_l2, 5)} if final_l2 is not None else {}),
                        "minutes": figures["train_minutes"],
                        **{k: round(v, 3) for k, v in est_quality.items()}, **loop.summary_figures(figures)}}


register(StageSpec(name="mappers", title="Pose & expression control", config_cls=MappersConfig, presets=PRESETS,
                   run=run, depends_on=("track", "pti"), models=("arcface", "lpips"), trains=True, parallel=True,
                   extra_depends=lambda cfg: ("flame",) if getattr(cfg, "controls", "named") == "flame" else (),
                   description="Trains the pose mapper (blends pivot latents) and the expression mapper "
                               "(offsets early latents), so sliders move the avatar."))
