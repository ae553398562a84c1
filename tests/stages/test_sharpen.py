"""The StyleGAN engine's sharpening head: the network, the training renders' degradation, the stage on a
small generator, and how the engine and the registry use it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from models.sharpen_head import PatchCritic, SharpenHead
from studio.avatar import Avatar, trained_engines
from studio.errors import ProjectError
from studio.pipeline import run_stage, stage_state
from studio.project import Project
from studio.stages.sharpen import degrade, parse_channels


def _laplacian_energy(x: torch.Tensor) -> float:
    k = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=x.dtype).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(F.conv2d(x, k, groups=3).pow(2).mean())


def test_an_untrained_head_returns_the_render_and_checks_its_input():
    torch.manual_seed(0)
    head = SharpenHead((8, 16, 24))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(head(x), x)
    with pytest.raises(ValueError, match="multiples of 4"):
        head(torch.zeros(1, 3, 30, 30))
    with pytest.raises(ValueError):
        SharpenHead(())


def test_the_head_learns_to_restore_blurred_detail():
    """Trained on blurred random textures against the sharp ones, the head's output regains high-frequency
    energy the blur took (an identity map or a smoothing one would not)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sharp = F.interpolate(torch.rand(16, 3, 8, 8) * 2 - 1, size=32, mode="nearest")   # blocky: strong edges
    g = torch.exp(-torch.arange(-3, 4).float() ** 2 / 2.0)
    g = (g[:, None] * g[None]) / g.sum() ** 2
    soft = F.conv2d(F.pad(sharp, (3, 3, 3, 3), mode="replicate"), g.view(1, 1, 7, 7).repeat(3, 1, 1, 1), groups=3)
    head = SharpenHead((16, 32))
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for i in range(150):
        idx = torch.from_numpy(rng.integers(0, 16, 8))
        loss = F.l1_loss(head(soft[idx]), sharp[idx])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first
    with torch.no_grad():
        out = head(soft)
    assert _laplacian_energy(out) > 1.5 * _laplacian_energy(soft)


def test_the_patch_critic_learns_to_tell_sharp_frames_from_blurred_ones():
    """Given the same soft render, the critic learns to score the sharp image above a blurred one, per patch;
    an untrained or a broken critic would not separate them."""
    torch.manual_seed(0)
    sharp = F.interpolate(torch.rand(16, 3, 8, 8) * 2 - 1, size=32, mode="nearest")
    soft = F.avg_pool2d(F.pad(sharp, (2, 2, 2, 2), mode="replicate"), 5, 1)
    critic = PatchCritic(width=8, levels=2)
    assert critic(soft, sharp).shape == (16, 1, 8, 8)
    with pytest.raises(ValueError, match="Wrong size"):
        critic(soft, sharp[:, :, :16])
    opt = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.5, 0.99))
    for _ in range(80):
        loss = F.softplus(-critic(soft, sharp)).mean() + F.softplus(critic(soft, soft)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        real, fake = critic(soft, sharp), critic(soft, soft)
    assert (real.mean(dim=(1, 2, 3)) > fake.mean(dim=(1, 2, 3))).all()
    assert loss.item() < 2 * np.log(2) - 0.3, "the critic must do better than chance"
    alone = PatchCritic(width=8, levels=2, conditional=False).eval()   # eval: spectral norm's power step stays put
    critic.eval()
    with torch.no_grad():
        assert torch.equal(alone(soft, sharp), alone(torch.zeros_like(soft), sharp)), "the image alone is judged"
        assert not torch.equal(critic(soft, sharp), critic(torch.zeros_like(soft), sharp))


def test_degrade_is_random_but_repeatable_and_off_when_asked():
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    a = degrade(x, np.random.default_rng(5), 1.5, 0.8)
    b = degrade(x, np.random.default_rng(5), 1.5, 0.8)
    c = degrade(x, np.random.default_rng(6), 1.5, 0.8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a - x).abs().mean() > 1e-3
    assert torch.equal(degrade(x, np.random.default_rng(5), 0.0, 0.0), x)


def test_channels_setting_is_checked():
    assert parse_channels("8, 16,24") == (8, 16, 24)
    from studio.errors import InputError

    with pytest.raises(InputError, match="channels"):
        parse_channels("8,x")


@pytest.fixture(scope="module")
def mapped_project(tracked_d3, tmp_path_factory):
    """A project whose StyleGAN avatar is trained up to the mappers, on a small random generator."""
    from tests.conftest import small_pvp_project

    proj = small_pvp_project(tracked_d3, tmp_path_factory.mktemp("sharpen") / "proj")
    run_stage(proj, "mappers", {"steps": 6, "batch": 2, "estimator_steps": 2, "w_identity": 0.0, "w_face": 0.0,
                                "w_perceptual": 0.0})
    return proj


def test_an_avatar_opens_before_its_head_is_trained(mapped_project):
    assert stage_state(mapped_project, "sharpen") != "done"
    assert "pvp" in trained_engines(mapped_project)
    av = Avatar.open(mapped_project, "pvp", detail=False, scene=False)
    assert av.engine.head is None
    from studio.session import Session

    assert "sharpen" in Session(mapped_project).plan_engine("pvp")
    assert "pvp" in Session(mapped_project).trained_engines()


def test_sharpen_stage_trains_and_the_engine_applies_the_head(mapped_project, tmp_path, monkeypatch):
    from tests.conftest import use_arcface

    use_arcface(monkeypatch, tmp_path, "fixture")
    av0 = Avatar.open(mapped_project, "pvp", detail=False, scene=False)
    ctl = av0.neutral()[None]
    plain = av0.engine.render_controls(ctl)
    losses = []
    res = run_stage(mapped_project, "sharpen", {"steps": 40, "batch": 4, "channels": "8,16,24", "lr": 3e-3,
                                                "face_batch": 2},
                    on_progress=lambda ev: ev.part == "sharpen" and ev.losses and losses.append(ev.losses))
    assert len(losses) == 40 and res["summary"]["face_loss"] is True
    assert all(np.isfinite(v["face"]) and np.isfinite(v["identity"]) for v in losses)
    l1 = [v["l1"] for v in losses]
    assert np.mean(l1[-8:]) < np.mean(l1[:8]), "training must lower the L1 loss"
    s = res["summary"]
    assert s["steps"] == 40 and "heldout_psnr_before" in s and "heldout_psnr_after" in s
    assert (mapped_project.root / "sharpen" / "heldout.png").stat().st_size > 0
    meta = json.loads((mapped_project.root / "sharpen" / "head.json").read_text())
    assert meta["channels"] == [8, 16, 24] and meta["resolution"] == 64

    av = Avatar.open(mapped_project, "pvp", detail=False, scene=False)
    assert av.engine.head is not None
    sharp = av.engine.render_controls(ctl)
    assert np.abs(sharp.astype(int) - plain.astype(int)).mean() > 0.5, "the head must change the render"
    assert np.array_equal(sharp, av.engine.render_controls(ctl)), "a still pose must give a still image"
    from studio.engines.pvp import PVPEngine

    assert np.array_equal(PVPEngine(mapped_project, sharpen=False).render_controls(ctl), plain)


def test_the_adversarial_term_starts_after_its_warm_up(mapped_project, tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(mapped_project.root, root)
    proj = Project.open(root)
    losses = []
    res = run_stage(proj, "sharpen", {"steps": 12, "batch": 2, "channels": "8,16", "w_face": 0.0, "w_identity": 0.0,
                                      "w_adv": 0.1, "adv_start": 0.5},
                    force=True, on_progress=lambda ev: ev.part == "sharpen" and ev.losses and losses.append(ev.losses))
    assert len(losses) == 12 and res["summary"]["adversarial"] is True
    assert not any("adv" in v for v in losses[:6])
    assert all(np.isfinite(v["adv"]) and np.isfinite(v["critic"]) for v in losses[6:])
    assert Avatar.open(proj, "pvp").engine.head is not None


def test_the_eyes_and_mouth_can_weigh_more(mapped_project, tmp_path):
    """With `w_features` the stage adds an L1 term over each frame's eyes-with-brows and mouth: logged,
    finite, and (the regions covering part of the image) below the whole image's L1; without it, not logged."""
    root = tmp_path / "proj"
    shutil.copytree(mapped_project.root, root)
    proj = Project.open(root)
    losses = []
    run_stage(proj, "sharpen", {"steps": 4, "batch": 2, "channels": "8,16", "w_face": 0.0, "w_identity": 0.0,
                                "w_perceptual": 0.0, "w_features": 2.0},
              force=True, on_progress=lambda ev: ev.part == "sharpen" and ev.losses and losses.append(ev.losses))
    assert len(losses) == 4
    assert all(0.0 < v["l1_features"] < v["l1"] for v in losses)
    losses.clear()
    run_stage(proj, "sharpen", {"steps": 2, "batch": 2, "channels": "8,16", "w_face": 0.0, "w_identity": 0.0,
                                "w_perceptual": 0.0, "w_features": 0.0},
              force=True, on_progress=lambda ev: ev.part == "sharpen" and ev.losses and losses.append(ev.losses))
    assert losses and not any("l1_features" in v for v in losses)


def test_a_damaged_head_file_is_named_with_the_way_out(mapped_project, tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(mapped_project.root, root)
    proj = Project.open(root)
    if stage_state(proj, "sharpen") != "done":
        run_stage(proj, "sharpen", {"steps": 2, "batch": 2, "channels": "8,16", "w_face": 0.0, "w_identity": 0.0})
    (root / "sharpen" / "head.pt").write_bytes(b"truncated")
    with pytest.raises(ProjectError, match="sharpening head") as e:
        Avatar.open(proj, "pvp")
    assert "run-stage" in e.value.hint and "sharpen --force" in e.value.hint


def test_retrained_mappers_leave_a_stale_head_unused(mapped_project, tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(mapped_project.root, root)
    proj = Project.open(root)
    run_stage(proj, "sharpen", {"steps": 2, "batch": 2, "channels": "8,16", "w_face": 0.0, "w_identity": 0.0},
              force=True)
    assert Avatar.open(proj, "pvp").engine.head is not None
    run_stage(proj, "mappers", {"steps": 2, "batch": 2, "estimator_steps": 1, "w_identity": 0.0, "w_face": 0.0,
                                "w_perceptual": 0.0}, force=True)
    assert stage_state(proj, "sharpen") != "done"
    assert Avatar.open(proj, "pvp").engine.head is None


def test_heldout_figures_leave_the_videos_black_bars_out(mapped_project, tmp_path, monkeypatch):
    """The stage's held-out figures score the engine alone as `eval`'s "engine alone" row does: where the video
    has black bars (`evaluation.bar_keep`), the real crops' bars are not held against the render (on d14, whose
    video has a bar down its left side, the stage said 16.9 dB where `eval` said 21.8 for the same renders)."""
    import studio.evaluation as ev
    from studio.tracking.data import TrackingData

    root = tmp_path / "proj"
    shutil.copytree(mapped_project.root, root)
    proj = Project.open(root)
    trk = TrackingData.from_project(proj)
    held = trk.split()[1]
    assert len(held) >= 2
    from studio.engines.pvp import PVPEngine

    bare = PVPEngine(proj, sharpen=False)       # the generator's render, before the head
    size = bare.render_controls(trk.controls(held[:1])).shape[1]

    def left_bar(tracking, rows, s):   # the crops' left third is a black bar of the video
        keep = np.ones((len(rows), s, s, 1), np.float32)
        keep[:, :, : s // 3] = 0.0
        return keep

    monkeypatch.setattr(ev, "bar_keep", left_bar)
    res = run_stage(proj, "sharpen", {"steps": 2, "batch": 2, "channels": "8,16", "w_face": 0.0, "w_identity": 0.0},
                    force=True)
    before = bare.render_controls(trk.controls(held))
    truth, masks = trk.crops(held, size=size), ev.face_masks(trk, held, size)
    keep = left_bar(trk, held, size)
    truth[:, :, : size // 3] = 0     # what a bar looks like: the render is held against black there without `keep`
    fair = ev.score_images(before, ev.within_bars(truth, before, keep), masks)["psnr"]
    unfair = ev.score_images(before, truth, masks)["psnr"]
    assert abs(res["summary"]["heldout_psnr_before"] - round(fair, 3)) < 2e-3
    assert unfair < fair - 1.0
