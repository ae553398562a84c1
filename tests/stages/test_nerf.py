"""Stage `nerf` + engine + evaluation on a tiny synthetic project (CPU, seconds)."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from studio.errors import Cancelled
from studio.progress import Control
from studio.project import Project
from studio.tracking.data import EXPRESSION_NAMES

N_FRAMES, CROP = 24, 32
TINY = {"size": 16, "low_res": 8, "samples": 8, "code_dim": 8, "encoder_res": 16, "plane_res": 16,
        "plane_channels": 4, "steps": 24, "time_budget_min": 0.0, "batch": 2, "mapper_steps": 20,
        "preview_every": 10, "threads": 1, "checkpoint_every_s": 0.0}


def _synthetic_frame(yaw: float, jaw: float) -> tuple[np.ndarray, np.ndarray]:
    """A head-like disc whose 'eyes' slide with yaw and whose 'mouth' opens with jaw."""
    img = np.full((CROP, CROP, 3), (200, 190, 170), np.uint8)
    matte = np.zeros((CROP, CROP), np.uint8)
    c = CROP // 2
    cv2.circle(img, (c, c), 11, (190, 140, 120), -1)
    cv2.circle(matte, (c, c), 11, 255, -1)
    dx = int(round(6 * math.sin(math.radians(yaw))))
    for ex in (-4, 4):
        cv2.circle(img, (c + ex + dx, c - 3), 2, (40, 30, 30), -1)
    cv2.ellipse(img, (c + dx, c + 5), (4, 1 + int(3 * jaw)), 0, 0, 360, (120, 40, 40), -1)
    return img, matte


def make_project(root, n_frames: int = N_FRAMES) -> Project:
    n = n_frames
    proj = Project.create(root)
    track = proj.stage_dir("track")
    (track / "crops").mkdir()
    (track / "mattes").mkdir()
    rng = np.random.default_rng(0)
    yaw = 20 * np.sin(np.linspace(0, 4 * np.pi, n))
    pitch = 5 * np.cos(np.linspace(0, 3 * np.pi, n))
    expr = rng.uniform(0, 1, (n, len(EXPRESSION_NAMES))).astype(np.float32)
    for i in range(n):
        img, matte = _synthetic_frame(yaw[i], expr[i, 0])
        cv2.imwrite(str(track / "crops" / f"{i:06d}.png"), img[..., ::-1])
        cv2.imwrite(str(track / "mattes" / f"{i:06d}.png"), matte)
    pose = np.stack([yaw, pitch, np.zeros(n)], 1).astype(np.float32)
    np.savez(track / "tracking.npz", time=np.arange(n, dtype=np.float32) / 25, valid=np.ones(n, bool),
             pose=pose, expr=expr, landmarks=np.zeros((n, 478, 3), np.float32),
             transforms=np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1)))
    (track / "tracking.json").write_text(json.dumps({"fps": 25, "frame_size": [64, 64], "crop_size": CROP,
                                                     "expression_names": EXPRESSION_NAMES}))
    proj.update_record("ingest", status="done", run_id="ingest0", upstream={})
    proj.update_record("track", status="done", run_id="track0", upstream={"ingest": "ingest0"},
                       outputs={"tracking": "track/tracking.npz"})
    return proj


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from studio.pipeline import run_stage

    proj = make_project(tmp_path_factory.mktemp("nerf") / "proj")
    events = []
    result = run_stage(proj, "nerf", dict(TINY), on_progress=events.append)
    return proj, result, events


def test_stage_trains_and_saves(trained):
    proj, result, events = trained
    assert (proj.root / result["outputs"]["model"]).exists()
    meta = json.loads((proj.root / result["outputs"]["config"]).read_text())
    assert meta["format"] == "latentavatar-1" and meta["control_names"][:2] == ["yaw", "pitch"]
    train = [e for e in events if e.part == "train" and e.losses]
    assert train and any(e.preview is not None and e.preview.dtype == np.uint8 for e in events)
    assert train[-1].losses["total"] < train[0].losses["total"]
    s = result["summary"]
    assert s["steps"] == TINY["steps"] and np.isfinite(s["heldout_psnr"]) and s["heldout_psnr"] > 8
    assert np.isfinite(s["heldout_psnr_before_mapper_fit"]) and s["heldout_psnr_before_mapper_fit"] > 8
    assert not list((proj.root / "nerf").glob("*.tmp*"))


def test_engine_renders_through_avatar(trained):
    from studio.avatar import Avatar

    proj, _, _ = trained
    av = Avatar.open(proj, "nerf")
    assert av.name == "nerf" and av.size == 16
    r = av.render(yaw=10.0, expression={"jaw_open": 0.5})
    assert r.image.shape == (16, 16, 3) and r.image.dtype == np.uint8
    imgs, _ = av.render_batch(np.stack([av.controls_from(yaw=-15.0), av.controls_from(yaw=15.0)]))
    assert imgs.shape == (2, 16, 16, 3) and not np.array_equal(imgs[0], imgs[1])  # the camera moved
    crop = cv2.imread(str(proj.root / "track" / "crops" / "000003.png"))[..., ::-1]
    code = av.engine.encode_image(crop)
    assert code.shape == (8,) and np.isfinite(code).all()
    assert av.engine.render_image(crop, yaw=5.0).shape == (16, 16, 3)


def test_the_nerf_trains_in_bfloat16_when_asked(tmp_path):
    """`precision=bf16` (what "auto" picks on a CPU with AMX): the steps run in bfloat16 mixed precision, the
    NeRF still learns, its summary says so, and the saved weights are float32."""
    import torch
    from safetensors.torch import load_file

    from studio.pipeline import run_stage

    proj = make_project(tmp_path / "proj")
    events = []
    result = run_stage(proj, "nerf", dict(TINY, precision="bf16"), on_progress=events.append)
    s = result["summary"]
    assert s["precision"] == "bf16" and s["skipped_steps"] == 0
    train = [e for e in events if e.part == "train" and e.losses]
    assert train[-1].losses["total"] < train[0].losses["total"]
    assert np.isfinite(s["heldout_psnr"]) and s["heldout_psnr"] > 8
    state = load_file(str(proj.root / result["outputs"]["model"]))
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_volume_rendering_stays_float32_under_bfloat16():
    """Inside a bfloat16 autocast region the networks run in bfloat16 but the point decoder's outputs, the
    densities and colours, are formed and composited in float32: the opacity and the low-resolution image come
    out float32 and within bfloat16's rounding of the float32 render."""
    import torch

    from models.latentavatar import LatentAvatar
    from studio.stages.nerf import NerfConfig, model_config

    torch.manual_seed(0)
    cfg = NerfConfig(**{k: v for k, v in TINY.items() if k in NerfConfig.__dataclass_fields__})
    model = LatentAvatar(model_config(cfg, len(EXPRESSION_NAMES))).eval()
    code = torch.randn(2, cfg.code_dim)
    yaw, pitch = torch.tensor([-10.0, 12.0]), torch.tensor([3.0, -4.0])
    with torch.no_grad():
        ref = model(code, yaw, pitch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(code, yaw, pitch)
    assert got["mask"].dtype == torch.float32 and got["low"].dtype == torch.float32
    assert (got["mask"] - ref["mask"]).abs().max() < 0.05 and (got["mask"] - ref["mask"]).abs().mean() < 0.002
    assert (got["low"] - ref["low"]).abs().max() < 0.02
    assert (got["image"].float() - ref["image"]).abs().mean() < 0.002


def test_resume_after_cancel(tmp_path):
    from studio.pipeline import run_stage

    proj = make_project(tmp_path / "proj")
    control = Control()

    def cancel_midway(ev):
        if ev.part == "train" and ev.step >= 10:
            control.cancel()

    with pytest.raises(Cancelled):
        run_stage(proj, "nerf", dict(TINY), control=control, on_progress=cancel_midway)
    assert (proj.root / "nerf" / "train.ckpt").exists()
    assert proj.record("nerf")["status"] == "cancelled"
    events = []
    result = run_stage(proj, "nerf", dict(TINY), on_progress=events.append)
    assert result["summary"]["resumed_from"] >= 10
    assert result["summary"]["steps"] == TINY["steps"]
    assert not any(e.part == "train" and 0 < e.step < 10 for e in events)


def test_evaluate_writes_report(trained, monkeypatch):
    import studio.tracking.tracker as tracker
    from studio.evaluation import evaluate, format_table

    proj, _, _ = trained

    def fake_track(images, tracking):  # mediapipe finds no face in 16 px renders; test the bookkeeping
        return [{"pose": np.array([float(i), 0.0, 0.0], np.float32), "expr": np.full(len(EXPRESSION_NAMES), i * 0.1)}
                if i % 4 else None for i, _ in enumerate(images)]

    monkeypatch.setattr(tracker, "track_images", fake_track)
    events = []
    rep = evaluate(proj, "nerf", on_progress=events.append, sweep_points=5, latency_frames=3)
    assert (proj.root / "eval" / "nerf" / "eval.json").exists()
    assert (proj.root / "eval" / "nerf" / "heldout.png").exists()
    assert rep["heldout"]["psnr"] > 5 and 0 < rep["heldout"]["ssim"] <= 1
    assert rep["controls"]["face_found"] == pytest.approx(0.6, abs=0.21)
    assert rep["latency"]["render_ms_median"] > 0
    assert rep["multiview"]["views"] >= 9
    assert {e.part for e in events} >= {"heldout", "sweeps", "latency", "multiview"}
    table = format_table([rep, {"engine": "pvp", "size": 256}])
    assert "held-out PSNR" in table and "multi-view yaw error" in table and "—" in table


@pytest.mark.parametrize("arcface", ["fixture", "absent", "corrupt"])
def test_face_losses_use_the_arcface_file_or_say_why_not(tmp_path, monkeypatch, arcface):
    """With an ArcFace file (a fixture MobileFaceNet state_dict, the real file's format) the stage
    trains on the face feature and identity losses and says so in its summary; without one it trains
    on the rest and the warning names the file to add; an unreadable file stops it with a message."""
    from studio.errors import InputError
    from studio.pipeline import run_stage
    from tests.conftest import use_arcface

    use_arcface(monkeypatch, tmp_path, arcface)
    proj = make_project(tmp_path / "proj")
    cfg = dict(TINY, steps=6, mapper_steps=2)
    if arcface == "corrupt":
        with pytest.raises(InputError, match="ArcFace file"):
            run_stage(proj, "nerf", cfg)
        return
    events = []
    result = run_stage(proj, "nerf", cfg, on_progress=events.append)
    s = result["summary"]
    losses = [e.losses for e in events if e.part == "train" and e.losses]
    if arcface == "fixture":
        assert s["face_loss"] is True and {"face", "identity"} <= set(s["losses"])
        assert all(np.isfinite(v["face"]) and v["face"] > 0 for v in losses)
        assert not any("ArcFace" in w for w in result["warnings"])
    else:
        assert s["face_loss"] is False and "face" not in s["losses"]
        assert any("arcface" in w and "models add" in w for w in result["warnings"])
    off = run_stage(make_project(tmp_path / "off"), "nerf", dict(cfg, face_weight=0.0, identity_weight=0.0))
    assert off["summary"]["face_loss"] is False and not off["warnings"]


def test_a_long_clips_held_out_frames_are_rendered_a_few_at_a_time(tmp_path, monkeypatch):
    """The stage's held-out figures render the held-out frames in batches of 16 (all at once, a 2-minute clip's
    528 held-out frames took 17 GB, the whole stage peaking at 19 GB; chunked, 3.3 GB)."""
    from studio.pipeline import run_stage
    from studio.stages import nerf

    batches: list[int] = []
    real = nerf.render_rows
    monkeypatch.setattr(nerf, "render_rows", lambda model, data, idx, use_mapper=True:
                        batches.append(len(idx)) or real(model, data, idx, use_mapper))
    proj = make_project(tmp_path / "long", n_frames=400)          # 60 held-out frames
    res = run_stage(proj, "nerf", dict(TINY, steps=2, mapper_steps=2, preview_every=100))
    assert max(batches) <= 48, batches                             # 48: the training frames' own figure
    assert np.isfinite(res["summary"]["heldout_psnr_encoder"]) and np.isfinite(res["summary"]["heldout_psnr"])
