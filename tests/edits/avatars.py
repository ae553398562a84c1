"""Tiny trained avatars of both engines, made in seconds from synthetic head frames.

StyleGAN engine: a small StyleGAN2 synthesis network and one W latent per frame are fitted to the
frames (GLO), a few frames' latents become the pivots, and the pose and expression mappers are
trained to give each frame's latent from its controls; the files are written in the layout the
`pti` and `mappers` stages write and loaded with the real `PVPEngine`.

LatentAvatar: the model classes with the stage's own `train_step` and `fit_mapper`, wrapped in
the real `NerfEngine`.
"""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import torch

from studio.tracking.data import EXPRESSION_NAMES

N_FRAMES = 24
CONTROL_NAMES = ["yaw", "pitch", *EXPRESSION_NAMES]


def synthetic_frames(n: int = N_FRAMES, size: int = 32, seed: int = 0):
    """(n, size, size, 3) uint8 frames, (n, size, size) float mattes, (n, 2+E) controls.

    A skin-coloured head disc on a grey-blue background; its eyes slide with yaw, its mouth opens
    with the first expression (jaw_open).
    """
    rng = np.random.default_rng(seed)
    yaw = 20 * np.sin(np.linspace(0, 4 * np.pi, n))
    pitch = 5 * np.cos(np.linspace(0, 3 * np.pi, n))
    expr = rng.uniform(0, 1, (n, len(EXPRESSION_NAMES)))
    frames, mattes = [], []
    s = size / 32
    for i in range(n):
        img = np.full((size, size, 3), (150, 160, 175), np.uint8)
        matte = np.zeros((size, size), np.uint8)
        c = size // 2
        cv2.circle(img, (c, c), int(11 * s), (200, 160, 135), -1)
        cv2.circle(matte, (c, c), int(11 * s), 255, -1)
        dx = int(round(6 * s * math.sin(math.radians(yaw[i]))))
        for ex in (-4, 4):
            cv2.circle(img, (c + int(ex * s) + dx, c - int(3 * s)), max(1, int(2 * s)), (50, 40, 40), -1)
        cv2.ellipse(img, (c + dx, c + int(5 * s)), (int(4 * s), max(1, int((1 + 3 * expr[i, 0]) * s))), 0, 0, 360,
                    (130, 60, 60), -1)
        frames.append(img)
        mattes.append(matte / 255.0)
    controls = np.concatenate([yaw[:, None], pitch[:, None], expr], 1).astype(np.float32)
    return np.stack(frames), np.stack(mattes).astype(np.float32), controls


def face_region(size: int) -> np.ndarray:
    """(size, size) bool: the head disc of `synthetic_frames` (radius 11/32 of the side, centred)."""
    yy, xx = np.mgrid[0:size, 0:size]
    c = size // 2
    return (xx - c) ** 2 + (yy - c) ** 2 <= (10 * size / 32) ** 2


def red_share(images: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(B, S, S, 3) uint8 → (B,) mean of R / (R + G + B) over `region`."""
    x = images.astype(np.float64)[:, region]                          # (B, P, 3)
    return (x[..., 0] / (x.sum(-1) + 1e-6)).mean(1)


def _ranges(controls: np.ndarray) -> dict:
    return {n: [float(controls[:, i].min()), float(controls[:, i].max())] for i, n in enumerate(CONTROL_NAMES)}


# ----------------------------------------------------------------------------- StyleGAN engine
def make_pvp_project(root, glo_steps: int = 200, mapper_steps: int = 300, seed: int = 0):
    """A project folder whose `pti` and `mappers` outputs hold a tiny trained StyleGAN avatar."""
    from models.pvp_mappers import ExpressionMapper, PoseMapper
    from models.stylegan2.checkpoint import save_generator
    from models.stylegan2.networks import GeneratorConfig
    from studio.project import Project

    torch.manual_seed(seed)
    frames, _, controls = synthetic_frames(size=32, seed=seed)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    cfg = GeneratorConfig(z_dim=32, w_dim=32, img_resolution=32, mapping_layers=2, channel_base=512, channel_max=32)
    G = cfg.build()
    L = G.num_ws
    w = torch.nn.Parameter(0.5 * torch.randn(N_FRAMES, cfg.w_dim))
    opt = torch.optim.Adam([*G.synthesis.parameters(), w], lr=5e-3)
    for _ in range(glo_steps):
        idx = torch.randint(0, N_FRAMES, (4,))
        rec = G.synthesis(w[idx][:, None].expand(-1, L, -1), noise_mode="const")
        loss = (rec - x[idx]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    G.eval().requires_grad_(False)
    targets = w.detach()[:, None].expand(-1, L, -1)                   # (N, L, D)
    rows = np.linspace(0, N_FRAMES - 1, 6).astype(int)
    c = torch.from_numpy(controls)
    pose_map = PoseMapper(targets[rows], hidden=32, beta=0.05, pose_mean=c[:, :2].mean(0), pose_std=c[:, :2].std(0))
    expr_map = ExpressionMapper(len(EXPRESSION_NAMES), cfg.w_dim, L, n_layers=L // 2, hidden=32)
    mopt = torch.optim.Adam([*pose_map.parameters(), *expr_map.parameters()], lr=3e-3)
    for _ in range(mapper_steps):
        pred = pose_map(c[:, :2]) + expr_map(c[:, 2:])
        loss = (pred - targets).square().mean()
        mopt.zero_grad(set_to_none=True)
        loss.backward()
        mopt.step()

    proj = Project.create(root)
    (proj.root / "pti").mkdir(exist_ok=True)
    (proj.root / "mappers").mkdir(exist_ok=True)
    save_generator(G, cfg, proj.root / "pti" / "generator.safetensors")
    np.savez(proj.root / "pti" / "latents.npz", ws=targets[rows].numpy(), rows=rows)
    torch.save({"pose": pose_map.state_dict(), "expr": expr_map.state_dict(), "est": {}},
               proj.root / "mappers" / "mappers.pt")
    meta = {"format": "avatar-studio/pvp-mappers", "version": 1, "k": len(rows), "num_ws": L, "w_dim": cfg.w_dim,
            "n_expr": len(EXPRESSION_NAMES), "hidden": 32, "beta": 0.05, "n_expr_layers": expr_map.n_layers,
            "control_names": CONTROL_NAMES, "ranges": _ranges(controls), "resolution": 32}
    (proj.root / "mappers" / "mappers.json").write_text(json.dumps(meta))
    proj.update_record("pti", status="done", run_id="pti0",
                       outputs={"generator": "pti/generator.safetensors", "latents": "pti/latents.npz"})
    proj.update_record("mappers", status="done", run_id="map0",
                       outputs={"mappers": "mappers/mappers.pt", "meta": "mappers/mappers.json"})
    return proj


def load_pvp_engine(proj):
    from studio.engines.pvp import PVPEngine

    return PVPEngine(proj, "cpu")


# ----------------------------------------------------------------------------- LatentAvatar
def make_nerf_engine(steps: int = 120, seed: int = 0):
    """A tiny LatentAvatar trained on the synthetic frames, in the real `NerfEngine`."""
    import torch.nn.functional as F

    from models.latentavatar import LatentAvatar, LatentAvatarConfig
    from models.latentavatar.model import face_region as encoder_region
    from models.latentavatar.training import LossWeights, fit_mapper, train_step
    from studio.engines.nerf import NerfEngine

    torch.manual_seed(seed)
    frames, mattes, controls = synthetic_frames(size=16, seed=seed)
    cfg = LatentAvatarConfig(code_dim=8, encoder_res=16, plane_res=16, plane_channels=4, low_res=8, out_res=16,
                             n_samples=8, gen_max_channels=32, gen_min_channels=16, feature_dim=8,
                             decoder_hidden=32, sr_channels=16)
    model = LatentAvatar(cfg)
    img = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    matte = F.interpolate(torch.from_numpy(mattes)[:, None], size=(cfg.low_res, cfg.low_res), mode="area")
    c = torch.from_numpy(controls)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    weights = LossWeights(perceptual=0.0)
    for _ in range(steps):
        idx = torch.randint(0, N_FRAMES, (4,))
        batch = {"image": img[idx], "face": encoder_region(img[idx], cfg), "matte": matte[idx],
                 "yaw": c[idx, 0], "pitch": c[idx, 1], "expr": c[idx, 2:]}
        train_step(model, opt, batch, None, weights)
    model.eval()
    with torch.no_grad():
        codes = model.encode_crops(img)
    fit_mapper(model, c[:, 2:], codes, steps=100, batch=24)
    meta = {"format": "latentavatar-1", "model": cfg.to_dict(), "control_names": CONTROL_NAMES,
            "ranges": _ranges(controls)}
    return NerfEngine(model.eval().requires_grad_(False), meta, "cpu")


# ----------------------------------------------------------------------------- projects for the product API
def write_tracking(proj, frames: np.ndarray, controls: np.ndarray, fps: float = 10.0) -> None:
    """A `track` stage output for the synthetic frames (tracking.npz / tracking.json / crops), enough for
    `TrackingData.from_project`, the turntable export and the training-frame latents; it has no canonical
    face, so renders are not re-tracked (the directions job says so and keeps the latent labels)."""
    out = proj.root / "track"
    (out / "crops").mkdir(parents=True, exist_ok=True)
    n, s = len(frames), frames.shape[1]
    for i, f in enumerate(frames):
        cv2.imwrite(str(out / "crops" / f"{i:06d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    np.savez(out / "tracking.npz", time=np.arange(n) / fps, valid=np.ones(n, bool),
             pose=np.concatenate([controls[:, :2], np.zeros((n, 1))], 1).astype(np.float32),
             expr=controls[:, 2:].astype(np.float32), landmarks=np.zeros((n, 478, 3), np.float32),
             transforms=np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1)))
    (out / "tracking.json").write_text(json.dumps({"fps": fps, "frame_size": [s, s], "crop_size": s,
                                                   "expression_names": list(EXPRESSION_NAMES)}))
    proj.update_record("track", status="done", run_id="trk0",
                       outputs={"tracking": "track/tracking.npz", "meta": "track/tracking.json"})


def mark_trained(proj, engine: str) -> None:
    """Records of every stage `engine` needs marked done (with upstream run ids), so `Avatar.open` and the
    pipeline's state see a trained avatar. Outputs already recorded are kept."""
    from studio.engines import chain
    from studio.stages import REGISTRY

    for name in chain(engine):
        rec = proj.record(name)
        run_id = rec.get("run_id") or f"{name}0"
        upstream = {up: proj.record(up).get("run_id") or f"{up}0" for up in REGISTRY[name].depends_on}
        proj.update_record(name, status="done", run_id=run_id, upstream=upstream, outputs=rec.get("outputs") or {})


def make_trained_pvp_project(root, seed: int = 0):
    """`make_pvp_project` plus synthetic tracking and every StyleGAN stage recorded as done."""
    proj = make_pvp_project(root, seed=seed)
    frames, _, controls = synthetic_frames(size=32, seed=seed)
    write_tracking(proj, frames, controls)
    mark_trained(proj, "pvp")
    return proj


def make_nerf_project(root, steps: int = 120, seed: int = 0):
    """A project folder whose `nerf` outputs hold `make_nerf_engine`'s tiny LatentAvatar, with synthetic
    tracking and every stage recorded as done."""
    from safetensors.torch import save_file

    from studio.project import Project

    engine = make_nerf_engine(steps=steps, seed=seed)
    proj = Project.create(root)
    (proj.root / "nerf").mkdir(exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in engine.model.state_dict().items()},
              str(proj.root / "nerf" / "model.safetensors"))
    (proj.root / "nerf" / "avatar.json").write_text(json.dumps(engine.meta))
    proj.update_record("nerf", status="done", run_id="nerf0",
                       outputs={"model": "nerf/model.safetensors", "config": "nerf/avatar.json"})
    frames, _, controls = synthetic_frames(size=16, seed=seed)
    write_tracking(proj, frames, controls)
    mark_trained(proj, "nerf")
    return proj
