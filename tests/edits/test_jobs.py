"""The product API of edits (studio/edits/jobs.py, Avatar.render(edits=...), both engines) on tiny trained
project folders: text edits that hold over a pose × expression sweep, strength 0, save/load/stack, directions,
cancel and resume, the project lock, and the message when no CLIP file is configured."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from studio.avatar import Avatar
from studio.edits import jobs
from studio.edits.adapters import adapter_for
from studio.edits.model import ActiveEdits, Edit, EditSet
from studio.errors import Cancelled, InputError, ProjectError

from conftest import needs_open_clip

ENGINES = ("pvp", "nerf")
RED = dict(steps=40, batch=3, augmentations=3)   # what tests/edits/test_styleclip.py finds "red" with


def _random_edit(avatar, name="noise", scale=1.0, seed=0):
    L, D = adapter_for(avatar.engine).latent_shape
    g = torch.Generator().manual_seed(seed)
    return Edit(name=name, kind="text", engine=avatar.name, offset=scale * torch.randn(L, D, generator=g))


# ----------------------------------------------------------------------------- Avatar.render(edits=...)
@pytest.mark.parametrize("engine", ENGINES)
def test_strength_zero_empty_and_unknown_names(project_copy, engine):
    proj = project_copy(engine)
    avatar = Avatar.open(proj, engine)
    assert avatar.spec.edits and avatar.project is proj
    plain = avatar.render(yaw=3.0, expression={"jaw_open": 0.5}).image
    with pytest.raises(InputError, match="saved edits: none yet"):
        avatar.render(edits={"blue hair": 0.8})
    EditSet.for_project(proj, engine).save(_random_edit(avatar, scale=2.0))
    assert np.array_equal(avatar.render(yaw=3.0, expression={"jaw_open": 0.5}, edits={}).image, plain)
    assert np.array_equal(avatar.render(yaw=3.0, expression={"jaw_open": 0.5}, edits={"noise": 0.0}).image, plain)
    edited = avatar.render(yaw=3.0, expression={"jaw_open": 0.5}, edits={"noise": 1.0}).image
    assert np.abs(edited.astype(int) - plain).mean() > 1.0, "an edit saved after the avatar was opened applies"
    with pytest.raises(InputError, match="no edit named 'blue hair'.*saved edits: 'noise'"):
        avatar.render(edits={"blue hair": 0.8, "noise": 1.0})
    batch, _ = avatar.render_batch(np.stack([avatar.neutral()] * 2), edits={"noise": 0})
    assert np.array_equal(batch, avatar.render_batch(np.stack([avatar.neutral()] * 2))[0])


def test_avatar_without_project_has_no_saved_edits(project_copy):
    proj = project_copy("pvp")
    bare = Avatar(Avatar.open(proj, "pvp").engine)
    assert np.array_equal(bare.render(edits={}).image, bare.render().image)
    with pytest.raises(ProjectError, match="without its project"):
        bare.render(edits={"red": 1.0})


def test_nerf_engine_renders_the_adapters_edit(project_copy):
    """An offset in NerfAdapter's space, rendered by the adapter and by NerfEngine.render_controls, is the
    same image (the engine's planes come from the same per-layer styles)."""
    proj = project_copy("nerf")
    avatar = Avatar.open(proj, "nerf")
    a = adapter_for(avatar.engine)
    sweep = a.sweep_controls(5, 3)
    bound = ActiveEdits([("noise", _random_edit(avatar, scale=0.5).offset, 1.0)])
    via_engine = avatar.engine.render_controls(sweep, edits=bound)
    via_adapter = a.render_uint8(sweep, bound)
    assert np.abs(via_engine.astype(int) - via_adapter).max() <= 1
    assert np.abs(via_engine.astype(int) - avatar.engine.render_controls(sweep)).mean() > 0.5
    # the cached tri-planes follow the edit: a second edit at the same controls is not served stale planes
    other = ActiveEdits([("noise", -_random_edit(avatar, scale=0.5).offset, 1.0)])
    assert not np.array_equal(avatar.engine.render_controls(sweep, edits=other), via_engine)
    assert np.array_equal(avatar.engine.render_controls(sweep), a.engine.render_controls(sweep))


@pytest.mark.parametrize("engine", ENGINES)
def test_edits_save_load_and_stack_through_avatar_render(project_copy, engine):
    proj = project_copy(engine)
    avatar = Avatar.open(proj, engine)
    es = EditSet.for_project(proj, engine)
    e = _random_edit(avatar, "a", 0.6, seed=1)
    es.save(e)
    es.save(Edit(name="half a", kind="text", engine=engine, offset=0.5 * e.offset, prompt="x"))
    again = Avatar.open(proj, engine)           # loaded from the files
    c = again.neutral()
    stacked = again.render(yaw=float(c[0]), edits={"a": 0.5, "half a": 1.0}).image
    once = again.render(yaw=float(c[0]), edits={"a": 1.0}).image
    assert np.abs(stacked.astype(int) - once).max() <= 1, "0.5·a + 1·(half a) = 1·a"
    assert not np.array_equal(once, again.render(yaw=float(c[0])).image)


# ----------------------------------------------------------------------------- text edits through the API
@pytest.fixture(scope="module")
def red_projects(project_bases, tiny_clip_path, tmp_path_factory):
    """Both tiny projects with a "red" text edit found through jobs.find_text_edit (the CLIP added through
    the Models path), and the progress events of each search."""
    import os
    import shutil

    from studio.model_files import ModelFiles
    from studio.project import Project

    needs_open_clip()
    base = tmp_path_factory.mktemp("red")
    old = {k: os.environ.get(k) for k in ("AVATAR_STUDIO_CONFIG_DIR", "AVATAR_STUDIO_SHARED")}
    os.environ["AVATAR_STUDIO_CONFIG_DIR"] = str(base / "cfg")
    os.environ["AVATAR_STUDIO_SHARED"] = str(base / "no-shared")
    try:
        ModelFiles().set("clip", tiny_clip_path)
        out = {}
        for engine in ENGINES:
            shutil.copytree(project_bases[engine], base / engine)
            proj = Project.open(base / engine)
            events = []
            edit = jobs.find_text_edit(proj, engine, "red", on_progress=events.append, **RED)
            out[engine] = (proj, edit, events)
        yield out
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.mark.parametrize("engine", ENGINES)
def test_red_text_edit_holds_over_the_pose_expression_sweep(red_projects, engine):
    from avatars import face_region, red_share

    proj, edit, events = red_projects[engine]
    assert edit.kind == "text" and edit.engine == engine and edit.summary["steps"] == RED["steps"]
    assert edit.summary["clip_loss_end"] < edit.summary["clip_loss_start"]
    avatar = Avatar.open(proj, engine)
    sweep = adapter_for(avatar.engine).sweep_controls(5, 3)
    assert len(np.unique(sweep[:, 0])) == 5 and len(np.unique(sweep[:, 2])) == 3
    before, _ = avatar.render_batch(sweep)
    after, _ = avatar.render_batch(sweep, edits={"red": 1.0})
    region = face_region(avatar.size)
    gain = red_share(after, region) - red_share(before, region)
    assert (gain > 0.01).all(), f"{engine}: red share gain per sweep point {np.round(gain, 3)}"
    assert np.array_equal(avatar.render_batch(sweep, edits={"red": 0.0})[0], before)


@pytest.mark.parametrize("engine", ENGINES)
def test_text_edit_job_reports_progress_and_leaves_its_files(red_projects, engine):
    proj, edit, events = red_projects[engine]
    parts = [e.part for e in events]
    assert parts[0] == "load" and parts[-1] == "save" and parts.count("search") >= RED["steps"]
    assert all(e.stage == "edit" for e in events)
    search = [e for e in events if e.part == "search"]
    assert search[-1].step == search[-1].total == RED["steps"] and "clip" in search[-1].losses
    previews = [e.preview for e in search if e.preview is not None]
    s = Avatar.open(proj, engine).size
    assert previews and previews[-1].shape == (2 * s, 3 * s, 3) and previews[-1].dtype == np.uint8
    es = EditSet.for_project(proj, engine)
    assert es.names() == ["red"] and es.preview_path("red").is_file()
    assert not (es.folder / "jobs").exists() or not any((es.folder / "jobs").iterdir()), "checkpoint removed"
    assert edit.summary["model"] == jobs.model_key(proj, engine) and jobs.is_current(proj, edit)
    assert "text \"red\"" in jobs.describe_edit(proj, es.get("red"))


def test_text_edit_cancel_and_resume(project_copy, clip_added):
    """A search cancelled at step 3 keeps its checkpoint; the rerun resumes there and ends with the same
    offset as a search that never stopped."""
    from studio.progress import Control

    cfg = dict(steps=6, batch=2, augmentations=2)
    straight = jobs.find_text_edit(project_copy("pvp"), "pvp", "red", **cfg)
    proj = project_copy("pvp")
    control = Control()

    def stop_at_3(ev):
        if ev.part == "search" and ev.step >= 3:
            control.cancel()

    with pytest.raises(Cancelled):
        jobs.find_text_edit(proj, "pvp", "red", on_progress=stop_at_3, control=control, **cfg)
    assert "red" not in EditSet.for_project(proj, "pvp")
    ckpt = EditSet.folder_for(proj, "pvp") / "jobs"
    assert list(ckpt.glob("*/train.ckpt"))
    events = []
    resumed = jobs.find_text_edit(proj, "pvp", "red", on_progress=events.append, **cfg)
    assert any("resuming 'red' at step 3 of 6" in e.message for e in events)
    assert resumed.summary["resumed_from"] == {"search": 3}
    assert torch.allclose(resumed.offset, straight.offset, atol=1e-6)
    # other settings: the old checkpoint is not resumed
    with pytest.raises(Cancelled):
        _cancel_at(proj, 2, dict(cfg, steps=5))
    events = []
    jobs.find_text_edit(proj, "pvp", "red", on_progress=events.append, **dict(cfg, steps=7))
    assert not any("resuming" in e.message for e in events)


def test_text_edit_picture_shows_the_default_strength(project_copy, clip_added):
    """The saved before/after picture shows the edit at the strength `--edit NAME` applies (with ArcFace it is
    calibrated below 1; the picture was drawn at 1 whatever it was), as a global edit's picture does."""
    import cv2

    from studio.metrics import to_uint8

    proj = project_copy("pvp")
    edit = jobs.find_text_edit(proj, "pvp", "red", steps=2, batch=2, augmentations=2, default_strength=0.3)
    assert edit.default_strength == 0.3
    pic = cv2.imread(str(EditSet.for_project(proj, "pvp").preview_path("red")))[..., ::-1].astype(int)
    a = adapter_for(Avatar.open(proj, "pvp").engine)
    c = np.repeat(a.neutral()[None], 3, 0)
    c[:, 0] = [a.lo[0], (a.lo[0] + a.hi[0]) / 2, a.hi[0]]
    ct = torch.from_numpy(c).to(a.device)
    with torch.no_grad():
        base = a.latent(ct)
        edited = {s: np.concatenate(list(to_uint8(a.render(base + s * edit.offset.to(base), ct))), 1)
                  for s in (0.3, 1.0)}
    bottom = pic[pic.shape[0] // 2:]
    assert np.abs(bottom - edited[0.3]).mean() < 1.0 < np.abs(bottom - edited[1.0]).mean()


def _cancel_at(proj, step, cfg):
    from studio.progress import Control

    control = Control()

    def stop(ev):
        if ev.part == "search" and ev.step >= step:
            control.cancel()

    return jobs.find_text_edit(proj, "pvp", "red", on_progress=stop, control=control, **cfg)


def test_no_clip_file_says_which_file_and_how(project_copy, no_weights):
    proj = project_copy("nerf")
    with pytest.raises(jobs.NoClipFile) as err:
        jobs.find_text_edit(proj, "nerf", "blue hair")
    msg = str(err.value)
    assert "CLIP" in msg and "avatar-studio models add clip FILE" in msg
    assert all(f in msg for f in (".bin", ".pt", ".safetensors"))
    assert isinstance(err.value, InputError) and "\n" not in msg
    ok, line = jobs.clip_status()
    assert not ok and "models add clip" in line
    assert not (proj.root / "edits").exists(), "nothing written"


def test_bad_text_requests(project_copy, no_weights):
    proj = project_copy("pvp")
    with pytest.raises(InputError, match="needs a prompt"):
        jobs.find_text_edit(proj, "pvp", "   ")
    with pytest.raises(InputError, match="contains '='.*--name"):
        jobs.find_text_edit(proj, "pvp", "hair=blue")
    with pytest.raises(ProjectError, match="unknown engine"):
        jobs.find_text_edit(proj, "stylegan9", "red")
    with pytest.raises(InputError, match="unknown text-edit setting"):
        jobs.find_text_edit(proj, "pvp", "red", colour=3)


# ----------------------------------------------------------------------------- directions
@pytest.mark.parametrize("engine", ENGINES)
def test_directions_job(project_copy, engine, no_weights):
    import cv2

    proj = project_copy(engine)
    events = []
    edits, picture = jobs.compute_directions(proj, engine, on_progress=events.append)
    assert 1 <= len(edits) <= jobs.DIRECTION_COMPONENTS and all(e.kind == "direction" for e in edits)
    assert [e.label for e in edits] == sorted((e.label for e in edits), key=lambda x: x != "appearance")
    img = cv2.imread(str(picture))
    assert img is not None and img.shape[0] > 3 * Avatar.open(proj, engine).size
    info = jobs.directions_info(proj, engine)
    assert info["edits"] == [e.name for e in edits] and "no expression scaling" in info["labels"]
    assert {"pca", "picture", "save"} <= {e.part for e in events}
    if engine == "nerf":       # LatentAvatar: the styles of the training frames join the samples
        assert "frames" in {e.part for e in events} and info["samples"] > 512
    avatar = Avatar.open(proj, engine)
    e0 = edits[0].name
    plain = avatar.render().image
    assert np.array_equal(avatar.render(edits={e0: 0.0}).image, plain)
    a = adapter_for(avatar.engine)
    c = torch.from_numpy(a.sweep_controls(1, 1))
    with torch.no_grad():
        lat = a.latent(c)
        base = a.render(lat, c)
        moved = (a.render(lat + 2 * edits[0].offset, c) - base).abs().max()
        moved_more = (a.render(lat + 8 * edits[0].offset, c) - base).abs().max()
    # the render is deterministic, so any change is the direction's; the tiny LatentAvatar's planes
    # hardly depend on its style (trained on one thread, 2σ moved it by 6.6e-5, under the old 1e-4 bar)
    assert moved > 1e-6 and moved_more > 2 * moved, f"2σ of the first direction moved the render by {moved}, 8σ by {moved_more}"
    if engine == "pvp":   # (the tiny LatentAvatar's planes hardly depend on its style: changes stay under 1/255)
        assert not np.array_equal(avatar.render(edits={e0: 2.0}).image, plain)
    # a rerun replaces the directions (and keeps other edits)
    EditSet.for_project(proj, engine).save(_random_edit(avatar, "mine"))
    again, _ = jobs.compute_directions(proj, engine, components=2)
    names = EditSet.for_project(proj, engine).names()
    assert len(again) == 2 and "mine" in names and len(names) == 3
    removed = jobs.remove_edit(proj, None, "mine")
    assert removed.name == "mine" and "mine" not in EditSet.for_project(proj, engine)


def test_jobs_that_write_take_the_project_lock(project_copy, no_weights):
    proj = project_copy("pvp")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from studio.lock import project_lock\n"
        "with project_lock(sys.argv[1], 'stage prior'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"), str(proj.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ProjectError, match="busy.*stage prior"):
            jobs.compute_directions(proj, "pvp")
        EditSet.for_project(proj, "pvp").save(_random_edit(Avatar.open(proj, "pvp"), "x"))
        with pytest.raises(ProjectError, match="busy"):
            jobs.remove_edit(proj, "pvp", "x")
        assert "x" in EditSet.for_project(proj, "pvp")
    finally:
        holder.kill()
        holder.wait()
    jobs.remove_edit(proj, "pvp", "x")
    assert "x" not in EditSet.for_project(proj, "pvp")
    assert json.loads(EditSet.index_for(proj, "pvp").read_text())["edits"] == []
