"""`train_actor` and the learned transfer on tiny synthetic projects (CPU, seconds each):
outputs and state, nothing retrained when nothing changed, cancel and resume, too few actor
frames, the NeRF engine's θ path through export, and what happens when the NeRF is retrained."""
from __future__ import annotations

import json

import numpy as np
import pytest

from studio.avatar import Avatar
from studio.driving.actors import TrainedDriver, actor_state, list_actors
from studio.driving.job import train_actor
from studio.driving.transfer import CodeDrivenAvatar, LearnedMotion, learned_motion
from studio.errors import Cancelled, InputError
from studio.export import ExportConfig, build_motion, export
from studio.progress import Control, run_to_end
from studio.project import Project

from .synth import NERF_TINY, TINY, ControlsEngine, make_pair


def run_export(project, cfg, out, avatar=None):
    return run_to_end(export(project, cfg, out, avatar=avatar))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    avatar, actor = make_pair(tmp_path_factory.mktemp("drive"))
    events = []
    res = train_actor(avatar, actor, overrides=TINY, on_progress=events.append)
    return avatar, actor, res, events


def test_training_writes_the_actor_folder(trained):
    avatar, actor, res, events = trained
    work = actor / "yshape"
    for name in ("yshape.safetensors", "mappings.safetensors", "driver.json", "preview.png", "train.ckpt"):
        assert (work / name).exists(), name
    meta = json.loads((work / "driver.json").read_text())
    assert meta["mappings"]["nerf"] is None, "no NeRF engine is trained here: no θ mapping"
    assert meta["mappings"]["controls"]["dim"] == 12
    s = res["summary"]
    assert s["steps"] == TINY["steps"] and s["cycle"] is True
    assert 0.0 <= s["gamma_separability"] <= 1.0
    assert -1.0 <= s["actor_controls_r"] <= 1.0 and len(s["actor_controls_r_each"]) == 12
    assert set(s["pose_share"]) == {"ava", "act"}
    assert meta["model"]["pose_dim"] == 2, "the preset's decoders take the head pose"
    assert {"critic_acc", "anchor"} <= set(s["losses"]), "the critic and the anchor took part"
    parts = {e.part for e in events}
    assert {"load", "yshape", "map_controls", "save"} <= parts and "map_nerf" not in parts
    previews = [e.preview for e in events if e.preview is not None]
    assert previews and previews[0].shape == (2 * TINY["size"], 4 * TINY["size"], 3)  # actor above, avatar below
    rec = Project.open(actor).record("yshape")
    assert rec["status"] == "done" and rec["progress"]["yshape"] == TINY["steps"]
    assert actor_state(avatar, Project.open(actor)) == ("trained", "")
    (info,) = list_actors(avatar)
    assert info.state == "trained" and info.preview is not None
    assert info.engines == [], "no engine is trained in this project: nothing to drive yet"


def test_a_rerun_with_nothing_changed_trains_nothing(trained):
    avatar, actor, _, _ = trained
    before = (actor / "yshape" / "yshape.safetensors").stat().st_mtime_ns
    events = []
    train_actor(avatar, actor, overrides=TINY, on_progress=events.append)
    assert [e.message for e in events] == ["already up to date"]
    assert (actor / "yshape" / "yshape.safetensors").stat().st_mtime_ns == before


def test_learned_transfer_replaces_the_expressions(trained):
    avatar_proj, actor, _, _ = trained
    avatar = Avatar(ControlsEngine())
    base = build_motion(avatar_proj, ExportConfig(source="driver", driver=str(actor), transfer="parameters"), avatar)
    learned = build_motion(avatar_proj, ExportConfig(source="driver", driver=str(actor)), avatar)
    assert type(base) is not LearnedMotion and isinstance(learned, LearnedMotion) and learned.codes is None
    assert learned.controls.shape == base.controls.shape
    np.testing.assert_array_equal(learned.controls[:, :2], base.controls[:, :2])  # pose: the same normalised pose
    assert not np.allclose(learned.controls[:, 2:], base.controls[:, 2:])
    assert np.isfinite(learned.controls).all()
    assert any("learned transfer" in n for n in learned.notes)
    # the expression comes from the network: the same as mapping E_shared's codes of the actor's faces
    drv = TrainedDriver(Project.open(actor))
    from studio.driving.data import face_images
    from studio.tracking.data import TrackingData

    trk = TrackingData.from_project(Project.open(actor))
    import torch

    assert drv.aligns  # the default: the actor's codes are moved to the avatar's distribution first
    assert drv.rescales  # and the mapped expressions get the avatar's spread
    valid = np.flatnonzero(trk.valid)
    with torch.no_grad():
        mapped = drv.mappers["controls"](drv.actor_to_avatar(drv.codes(face_images(trk, valid, drv.size)))).numpy()
    subject = TrackingData.from_project(avatar_proj)
    ref = subject.expr[subject.split()[0]]
    first = np.maximum(np.searchsorted(valid, np.arange(3), side="right") - 1, 0)
    expect = (mapped[first] - mapped.mean(0)) / np.maximum(mapped.std(0), 1e-3) * ref.std(0) + ref.mean(0)
    np.testing.assert_allclose(learned.controls[:3, 2:], expect, rtol=1e-4, atol=1e-4)
    # over the actor's valid frames the learned expressions have the avatar's mean and spread
    rows = np.asarray(learned.rows if learned.rows is not None else np.arange(len(learned.controls)))
    on_valid = learned.controls[np.isin(rows, valid), 2:]
    np.testing.assert_allclose(on_valid.mean(0), ref.mean(0), atol=1e-3)
    # moved codes of all the actor's frames have the avatar's per-dimension mean (the statistics were taken
    # over the right frames: the actor's valid ones, the avatar's training ones)
    moved = drv.actor_to_avatar(drv.codes(face_images(trk, np.flatnonzero(trk.valid), drv.size)))
    torch.testing.assert_close(moved.mean(0), drv.align["ava_mean"], atol=1e-4, rtol=1e-4)


def test_align_codes_changes_without_training(trained):
    avatar_proj, actor, _, _ = trained
    avatar = Avatar(ControlsEngine())
    cfg = ExportConfig(source="driver", driver=str(actor), transfer="learned")
    aligned = build_motion(avatar_proj, cfg, avatar)
    before = (actor / "yshape" / "yshape.safetensors").stat().st_mtime_ns
    try:
        events = []
        train_actor(avatar_proj, actor, overrides={**TINY, "align_codes": False}, on_progress=events.append)
        assert [e.message for e in events] == ["already up to date; align_codes is now False"]
        assert (actor / "yshape" / "yshape.safetensors").stat().st_mtime_ns == before
        assert not TrainedDriver(Project.open(actor)).aligns
        raw = build_motion(avatar_proj, cfg, avatar)
        assert not np.allclose(raw.controls[:, 2:], aligned.controls[:, 2:])
    finally:
        train_actor(avatar_proj, actor, overrides=TINY)
    assert TrainedDriver(Project.open(actor)).aligns


def test_export_with_learned_transfer(trained, tmp_path):
    avatar_proj, actor, _, _ = trained
    res = run_export(avatar_proj, ExportConfig(source="driver", driver=str(actor)),
                     tmp_path / "frames", avatar=Avatar(ControlsEngine()))
    assert res["frames"] == 30 and any("learned transfer" in n for n in res["notes"])
    with pytest.raises(InputError, match="unknown transfer|must be one of"):
        from studio.config import from_dict

        from_dict(ExportConfig, {"transfer": "magic"})


def test_untrained_actor_learned_is_an_error_auto_falls_back(tmp_path):
    avatar, actor = make_pair(tmp_path)
    av = Avatar(ControlsEngine())
    with pytest.raises(InputError, match="no learned transfer for this actor.*not been trained"):
        build_motion(avatar, ExportConfig(source="driver", driver=str(actor), transfer="learned"), av)
    m = build_motion(avatar, ExportConfig(source="driver", driver=str(actor)), av)
    assert type(m) is not LearnedMotion and any("parameter transfer" in n for n in m.notes)


def test_a_project_folder_outside_drivers_is_not_an_actor(tmp_path):
    avatar, _ = make_pair(tmp_path)
    other = make_pair(tmp_path / "other")[0]
    with pytest.raises(InputError, match="is a project folder, not an actor video"):
        train_actor(avatar, other.root, overrides=TINY)
    assert "yshape" not in Project.open(other.root).manifest["stages"]


def test_too_few_actor_frames(tmp_path):
    avatar, actor = make_pair(tmp_path, n_actor=30, actor_valid=6)
    with pytest.raises(InputError, match="only 6 frames with a face.*at least 8"):
        train_actor(avatar, actor, overrides=TINY)
    rec = Project.open(actor).record("yshape")
    assert rec["status"] == "failed" and "only 6 frames" in rec["error"]
    assert Project.open(avatar.root).record("track")["status"] == "done"  # the avatar is untouched
    m = build_motion(avatar, ExportConfig(source="driver", driver=str(actor)), Avatar(ControlsEngine()))
    (note,) = [n for n in m.notes if "parameter transfer" in n]  # was "its training is failed (...)"
    assert note.startswith("expressions by parameter transfer (its training failed: the actor clip"), note


def test_cancel_then_resume(tmp_path):
    avatar, actor = make_pair(tmp_path)
    ctl = Control()
    seen = []

    def on(ev):
        seen.append(ev)
        if ev.part == "yshape" and ev.step >= 10:
            ctl.cancel()

    with pytest.raises(Cancelled):
        train_actor(avatar, actor, overrides=TINY, control=ctl, on_progress=on)
    dproj = Project.open(actor)
    assert dproj.record("yshape")["status"] == "cancelled"
    assert actor_state(avatar, dproj)[0] == "cancelled"
    events = []
    train_actor(avatar, actor, overrides=TINY, on_progress=events.append)
    assert any("resumed yshape at step 10" in e.message for e in events)
    assert Project.open(actor).record("yshape")["status"] == "done"


@pytest.fixture(scope="module")
def nerf_pair(tmp_path_factory):
    from studio.pipeline import run_stage

    avatar, actor = make_pair(tmp_path_factory.mktemp("nerfdrive"))
    run_stage(avatar, "nerf", dict(NERF_TINY))
    events = []
    train_actor(avatar, actor, overrides=TINY, on_progress=events.append)
    return avatar, actor, events


def test_nerf_engine_is_driven_through_theta(nerf_pair, tmp_path):
    avatar_proj, actor, events = nerf_pair
    assert any(e.part == "map_nerf" for e in events)
    meta = json.loads((actor / "yshape" / "driver.json").read_text())
    assert meta["mappings"]["nerf"]["run"] == avatar_proj.record("nerf")["run_id"]
    assert meta["mappings"]["nerf"]["dim"] == NERF_TINY["code_dim"]
    assert list_actors(avatar_proj)[0].engines == ["nerf"]
    avatar = Avatar.open(avatar_proj, "nerf")
    m = build_motion(avatar_proj, ExportConfig(source="driver", driver=str(actor)), avatar)
    assert isinstance(m, LearnedMotion) and m.codes.shape == (30, NERF_TINY["code_dim"])
    bound = m.bind_avatar(avatar)
    assert isinstance(bound, CodeDrivenAvatar) and bound.size == avatar.size
    imgs, _ = bound.render_batch(m.controls[:4])
    raw = avatar.engine.render_codes(m.codes[:4], m.controls[:4, 0], m.controls[:4, 1])
    assert avatar.video_detail() is not None
    # the frames that lend detail are chosen by the motion's controls (pose + learned expression controls)
    c4, _ = avatar.clamp(m.controls[:4])
    # ... and the video's background goes behind the person, as for every render of the avatar
    expected = avatar.video_detail().apply(raw, c4)
    assert avatar.scene_plate() is not None
    np.testing.assert_array_equal(imgs, avatar.scene_plate().composite(expected))
    plain = m.bind_avatar(Avatar.open(avatar_proj, "nerf", detail=False, scene=False))
    np.testing.assert_array_equal(plain.render_batch(m.controls[:4])[0], raw)
    res = run_export(avatar_proj, ExportConfig(source="driver", driver=str(actor)), tmp_path / "nerf_frames")
    assert res["frames"] == 30 and any("learned transfer" in n for n in res["notes"])
    par = run_export(avatar_proj, ExportConfig(source="driver", driver=str(actor), transfer="parameters"),
                     tmp_path / "nerf_par")
    assert not any("learned" in n for n in par["notes"])
    a = np.stack([np.asarray(__import__("cv2").imread(str(p))) for p in sorted((tmp_path / "nerf_frames").glob("*.png"))])
    b = np.stack([np.asarray(__import__("cv2").imread(str(p))) for p in sorted((tmp_path / "nerf_par").glob("*.png"))])
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_a_frame_rate_of_its_own_resamples_the_theta_codes_with_the_controls(nerf_pair):
    avatar_proj, actor, _ = nerf_pair
    avatar = Avatar.open(avatar_proj, "nerf")
    base = build_motion(avatar_proj, ExportConfig(source="driver", driver=str(actor)), avatar)
    for fps in (base.fps / 2, base.fps * 2):  # the codes kept the driver's rate: slowed, or past their end
        m = build_motion(avatar_proj, ExportConfig(source="driver", driver=str(actor), fps=fps), avatar)
        assert isinstance(m, LearnedMotion) and len(m.codes) == len(m) != len(base)
        np.testing.assert_array_equal(m.codes, base.codes[m.rows])
        bound = m.bind_avatar(Avatar.open(avatar_proj, "nerf", detail=False, scene=False))
        for _, ctrl in m.chunks(16):
            bound.render_batch(ctrl)


def test_retrained_nerf_needs_only_the_theta_mapping_again(nerf_pair):
    from studio.pipeline import run_stage

    avatar_proj, actor, _ = nerf_pair
    run_stage(avatar_proj, "nerf", dict(NERF_TINY), force=True)
    state, note = actor_state(avatar_proj, Project.open(actor))
    assert state == "trained" and "θ mapping" in note
    avatar = Avatar.open(avatar_proj, "nerf")
    with pytest.raises(InputError, match="NeRF engine was trained again"):
        build_motion(avatar_proj, ExportConfig(source="driver", driver=str(actor), transfer="learned"), avatar)
    m = build_motion(avatar_proj, ExportConfig(source="driver", driver=str(actor)), avatar)
    assert not isinstance(m, LearnedMotion)
    events = []
    train_actor(avatar_proj, actor, overrides=TINY, on_progress=events.append)
    trained_parts = {e.part for e in events if e.losses}
    assert trained_parts == {"map_controls", "map_nerf"}, trained_parts  # the Y-network was not retrained
    m = build_motion(avatar_proj, ExportConfig(source="driver", driver=str(actor), transfer="learned"), avatar)
    assert isinstance(m, LearnedMotion) and m.codes is not None
    assert learned_motion(avatar_proj, Project.open(actor), avatar, m, "parameters") is m
