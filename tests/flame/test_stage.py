"""Stage `flame` on the tracked d3 project with the subject FLAME fixture (a few fit steps), and
FLAME controls in the engines' stages: mappers and nerf train on them, a refit makes them stale."""
from __future__ import annotations

import json
import shutil
import uuid

import numpy as np
import pytest
import torch

from studio.errors import Cancelled, MissingModelError, ProjectError
from studio.pipeline import run_stage, stage_state
from studio.progress import Control
from studio.project import Project
from studio.stages import REGISTRY

FIT = {"steps": 8, "rigid_steps": 3, "checkpoint_every_s": 0.0, "threads": 1}


def configure_flame(monkeypatch, tmp_path, fixture) -> None:
    """An app settings folder of the test's own with the fixture's FLAME files added."""
    from studio.model_files import ModelFiles

    cfg = tmp_path / "app-config"
    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(cfg))
    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(tmp_path / "no-shared"))
    files = ModelFiles()
    files.set("flame", fixture.model_path)
    files.set("flame-mediapipe", fixture.embedding_path)


def copy_project(src: Project, dst) -> Project:
    shutil.copytree(src.root, dst, ignore=shutil.ignore_patterns("*.lock", "flame", "mappers", "nerf", "pti"))
    proj = Project.open(dst)
    for name in ("flame", "pivots", "prior", "pti", "mappers", "nerf"):
        proj.manifest["stages"].pop(name, None)
    proj.save()
    return proj


@pytest.fixture(scope="module")
def subject_flame_module(d3_video):
    from tests.flame.fixture import subject_fixture

    torch.set_num_threads(1)
    return subject_fixture(d3_video)


@pytest.fixture(scope="module")
def flame_project(tracked_d3, tmp_path_factory, subject_flame_module):
    subject_flame = subject_flame_module
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("flame_stage")
    configure_flame(mp, tmp, subject_flame)
    proj = copy_project(tracked_d3, tmp / "proj")
    events = []
    result = run_stage(proj, "flame", dict(FIT), on_progress=events.append)
    yield proj, result, events
    mp.undo()


def test_flame_stage_writes_its_files(flame_project):
    from studio.flame.controls import NamedToFlame
    from studio.flame.sequences import read_sequence
    from studio.tracking.data import TrackingData

    proj, result, events = flame_project
    fits = [e for e in events if e.part == "fit" and e.losses]
    assert fits and fits[-1].step == FIT["steps"]
    assert fits[-1].losses["landmarks"] < fits[0].losses["landmarks"], "fitting must lower the landmark error"
    trk = TrackingData.from_project(proj)
    seq = read_sequence(proj.output("flame", "sequence"))
    assert seq.n_frames == trk.n_frames and seq.expression.shape[1] == 50 and seq.fps == pytest.approx(trk.fps)
    with np.load(proj.output("flame", "sequence")) as z:
        assert z["shape"].ndim == 1 and len(z["shape"]) > 0
    errors = json.loads(proj.output("flame", "errors").read_text())
    assert len(errors["error_px"]) == int(trk.valid.sum())
    s = result["summary"]
    assert np.isclose(s["error_px_mean"], np.mean(errors["error_px"]), atol=1e-2)
    assert 0 < s["error_pct_mean"] < 20 and s["error_px_p95"] >= s["error_px_mean"]
    assert s["steps"] == FIT["steps"] and s["minutes"] >= 0
    assert proj.output("flame", "sheet").stat().st_size > 10_000
    m = NamedToFlame.load(proj.output("flame", "named_map"))
    assert m.named == trk.expression_names and m.flame[:2] == ["jaw", "flame_00"] and len(m.flame) == 51
    assert m.weights.shape == (13, 51)
    # the flame controls the engines read
    ft = TrackingData.from_project(proj, controls="flame")
    assert ft.expression_names == m.flame and ft.expr.shape == (trk.n_frames, 51)
    ranges = ft.control_ranges()
    assert list(ranges)[:4] == ["yaw", "pitch", "jaw", "flame_00"]
    assert ranges["flame_00"][1] > ranges["flame_00"][0], "the fitted coefficients must vary over the clip"
    assert np.allclose(ft.controls([0])[0, :2], trk.controls([0])[0, :2]), "head pose stays the tracked one"


def test_flame_stage_resumes_after_cancel(tracked_d3, tmp_path, monkeypatch, subject_flame):
    configure_flame(monkeypatch, tmp_path, subject_flame)
    proj = copy_project(tracked_d3, tmp_path / "proj")
    control = Control()

    def cancel(ev):
        if ev.part == "fit" and ev.step >= 5:
            control.cancel()

    with pytest.raises(Cancelled):
        run_stage(proj, "flame", {**FIT, "steps": 10}, control=control, on_progress=cancel)
    assert proj.record("flame")["status"] == "cancelled" and (proj.root / "flame" / "train.ckpt").exists()
    events = []
    res = run_stage(proj, "flame", {**FIT, "steps": 10}, on_progress=events.append)
    steps = [e.step for e in events if e.part == "fit" and e.losses]
    assert min(steps) > 5 and res["summary"]["steps"] == 10
    assert stage_state(proj, "flame") == "done"


def test_missing_flame_files_say_what_to_add(tracked_d3, tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(tmp_path / "empty-config"))
    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(tmp_path / "no-shared"))
    proj = copy_project(tracked_d3, tmp_path / "proj")
    with pytest.raises(MissingModelError) as err:
        run_stage(proj, "flame", dict(FIT))
    text = str(err.value)
    assert "generic_model.pkl" in text and "mediapipe_landmark_embedding.npz" in text
    assert "models add flame " in text and "models add flame-mediapipe " in text
    assert "\n" not in text


# ------------------------------------------------------------------ engines on FLAME controls
def _mark_done(proj, name, outputs=None):
    deps = REGISTRY[name].depends_on if name in REGISTRY else ()
    proj.update_record(name, status="done", run_id=uuid.uuid4().hex[:12], outputs=outputs or {},
                       upstream={d: proj.record(d).get("run_id") for d in deps}, config=None)


@pytest.fixture(scope="module")
def pvp_flame_project(flame_project, tmp_path_factory):
    """The FLAME-fitted project with a small random generator standing in for PTI's."""
    from models.stylegan2.checkpoint import save_generator
    from models.stylegan2.networks import GeneratorConfig

    src = flame_project[0]
    root = tmp_path_factory.mktemp("pvp_flame") / "proj"
    shutil.copytree(src.root, root, ignore=shutil.ignore_patterns("*.lock", "*.ckpt"))
    proj = Project.open(root)
    torch.manual_seed(0)
    cfg = GeneratorConfig(z_dim=64, w_dim=64, img_resolution=64, mapping_layers=2, channel_base=1024, channel_max=64)
    G = cfg.build().eval()
    (root / "pti").mkdir()
    save_generator(G, cfg, root / "pti" / "generator.safetensors")
    with torch.no_grad():
        ws = G.mapping(torch.randn(6, cfg.z_dim))
    np.savez(root / "pti" / "latents.npz", ws=ws.numpy(), rows=np.arange(6) * 40)
    for name in ("pivots", "prior"):
        _mark_done(proj, name)
    _mark_done(proj, "pti", {"generator": "pti/generator.safetensors", "latents": "pti/latents.npz"})
    return proj


MAPPERS = {"steps": 6, "batch": 2, "estimator_steps": 3, "w_identity": 0.0, "w_perceptual": 0.0, "threads": 1,
           "controls": "flame"}


def test_mappers_train_on_flame_controls_and_go_stale_on_refit(pvp_flame_project):
    from studio.avatar import Avatar

    proj = pvp_flame_project
    run_stage(proj, "mappers", dict(MAPPERS))
    assert set(proj.record("mappers")["upstream"]) == {"track", "pti", "flame"}
    av = Avatar.open(proj, "pvp")
    assert av.control_names[:4] == ["yaw", "pitch", "jaw", "flame_00"] and len(av.control_names) == 53
    assert av.render(expression={"flame_00": av.ranges["flame_00"][1]}).image.shape == (64, 64, 3)
    assert stage_state(proj, "mappers") == "done"
    run_stage(proj, "flame", {**FIT, "steps": 2, "rigid_steps": 1})  # a refit with other settings
    assert stage_state(proj, "mappers") == "stale"


def test_flame_controls_need_the_flame_stage(pvp_flame_project, tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(pvp_flame_project.root, root, ignore=shutil.ignore_patterns("*.lock", "*.ckpt"))
    proj = Project.open(root)
    proj.manifest["stages"].pop("flame")
    proj.save()
    with pytest.raises(ProjectError, match="needs 'flame' first"):
        run_stage(proj, "mappers", dict(MAPPERS))


TINY_NERF = {"size": 16, "low_res": 8, "samples": 8, "code_dim": 8, "encoder_res": 16, "plane_res": 16,
             "plane_channels": 4, "steps": 4, "time_budget_min": 0.0, "batch": 2, "mapper_steps": 4,
             "preview_every": 10, "threads": 1, "checkpoint_every_s": 0.0, "controls": "flame"}


def test_nerf_trains_on_flame_controls(flame_project, tmp_path):
    from studio.avatar import Avatar

    root = tmp_path / "proj"
    shutil.copytree(flame_project[0].root, root, ignore=shutil.ignore_patterns("*.lock", "*.ckpt"))
    proj = Project.open(root)
    run_stage(proj, "nerf", dict(TINY_NERF))
    assert "flame" in proj.record("nerf")["upstream"]
    av = Avatar.open(proj, "nerf")
    assert av.control_names[:3] == ["yaw", "pitch", "jaw"] and av.control_names[-1] == "flame_49"
    assert set(av.ranges) == set(av.control_names)
    assert av.render(expression={"jaw": av.ranges["jaw"][1]}).image.shape == (16, 16, 3)
