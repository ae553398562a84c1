"""Stage `flame` on the tracked d3 project with the subject FLAME fixture (a few fit steps), and
FLAME controls in the engines' stages: mappers and nerf train on them, a refit makes them stale."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from studio.errors import Cancelled, MissingModelError, ProjectError
from studio.pipeline import run_stage, stage_state
from studio.progress import Control, run_to_end
from studio.project import Project

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
@pytest.fixture(scope="module")
def pvp_flame_project(flame_project, tmp_path_factory):
    """The FLAME-fitted project with a small random generator standing in for PTI's."""
    from tests.conftest import small_pvp_project

    return small_pvp_project(flame_project[0], tmp_path_factory.mktemp("pvp_flame") / "proj")


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
    # the expression mapper standardises its inputs with the training controls' statistics
    # (a jaw in radians beside coefficients of std ~1; tests/flame/test_mapper_inputs.py)
    from studio.tracking.data import TrackingData

    trk = TrackingData.from_project(proj, controls="flame")
    train_expr = torch.from_numpy(trk.controls(trk.split()[0])[:, 2:])
    expr_map = av.engine.expr_map
    assert torch.allclose(expr_map.expr_std, train_expr.std(0).clamp_min(1e-3), rtol=1e-4)
    assert torch.allclose(expr_map.expr_mean, train_expr.mean(0), atol=1e-5)
    assert stage_state(proj, "mappers") == "done"
    run_stage(proj, "flame", {**FIT, "steps": 2, "rigid_steps": 1})  # a refit with other settings
    assert stage_state(proj, "mappers") == "stale"


def test_flame_sliders_train_with_their_own_readback_weights(pvp_flame_project, tmp_path):
    """With FLAME controls the read-back losses take w_expression_flame / w_pose_flame: the named
    sliders' weights change nothing, the FLAME ones change the trained mappers."""
    def trained(tag, **overrides):
        root = tmp_path / tag
        shutil.copytree(pvp_flame_project.root, root, ignore=shutil.ignore_patterns("*.lock", "*.ckpt", "mappers"))
        proj = Project.open(root)
        proj.manifest["stages"].pop("mappers", None)
        proj.save()
        run_stage(proj, "mappers", {**MAPPERS, **overrides})
        return torch.load(root / "mappers" / "mappers.pt", weights_only=True)["expr"]

    # The FLAME weights at 5 against 0, as strong as the named ones are set: were the named weights
    # used with FLAME controls, they would move the mappers about as far as the FLAME ones do.
    flame = dict(w_expression_flame=5.0, w_pose_flame=5.0)
    base = trained("base", w_expression=0.0, w_pose=0.0, **flame)
    named_changed = trained("named", w_expression=5.0, w_pose=5.0, **flame)
    flame_off = trained("flame_off", w_expression=0.0, w_pose=0.0, w_expression_flame=0.0, w_pose_flame=0.0)
    # Not bit-exact: inside a long test process CPU float results can differ in the last bits from
    # run to run (probably buffers aligned differently picking other kernels), and Adam turns such noise on a near-zero
    # gradient into a full step for that one weight: CI once saw a mean change of 4e-6 from the
    # named weights where one process alone gives 0. So compare the mean change over all weights,
    # with the FLAME weights' own change (1.4e-4 here) far above that noise.
    def mean_change(other):
        return sum(float((base[k] - other[k]).abs().sum()) for k in base) / sum(base[k].numel() for k in base)

    named_diff, flame_diff = mean_change(named_changed), mean_change(flame_off)
    print(f"mean change: named weights {named_diff:.2e}, FLAME weights {flame_diff:.2e}")
    assert flame_diff > 5e-5 and named_diff < 0.2 * flame_diff, (named_diff, flame_diff)


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


@pytest.fixture(scope="module")
def nerf_flame_project(flame_project, tmp_path_factory):
    root = tmp_path_factory.mktemp("nerf_flame") / "proj"
    shutil.copytree(flame_project[0].root, root, ignore=shutil.ignore_patterns("*.lock", "*.ckpt"))
    proj = Project.open(root)
    run_stage(proj, "nerf", dict(TINY_NERF))
    return proj


def test_nerf_trains_on_flame_controls(nerf_flame_project):
    from studio.avatar import Avatar

    proj = nerf_flame_project
    assert "flame" in proj.record("nerf")["upstream"]
    av = Avatar.open(proj, "nerf")
    assert av.control_names[:3] == ["yaw", "pitch", "jaw"] and av.control_names[-1] == "flame_49"
    assert set(av.ranges) == set(av.control_names)
    assert av.render(expression={"jaw": av.ranges["jaw"][1]}).image.shape == (16, 16, 3)


def test_a_flame_avatar_at_a_larger_size_warps_at_that_size(nerf_flame_project, subject_flame_module, monkeypatch,
                                                             tmp_path):
    """`Avatar(out_size=…)` (`export --size`, the viewer's Size box) on an avatar on FLAME controls: the
    FLAME geometry is built at the larger size (its own cache), and a jaw opened there moves the image."""
    from studio.avatar import Avatar

    configure_flame(monkeypatch, tmp_path, subject_flame_module)
    small = Avatar.open(nerf_flame_project, "nerf")
    sizes = small.sizes()
    assert len(sizes) == 2 and sizes[1] > sizes[0], sizes
    big = Avatar.open(nerf_flame_project, "nerf", out_size=sizes[1])
    assert small.flame_warp().size == sizes[0] and big.flame_warp().size == sizes[1]
    rest = big.neutral()
    jaw = rest.copy()
    jaw[2] = big.ranges["jaw"][1]
    (a, b), _ = big.render_batch(np.stack([rest, jaw]))
    assert a.shape == b.shape == (sizes[1], sizes[1], 3)
    _, shift = big.flame_warp().displacements(jaw[None])
    _, shift_small = small.flame_warp().displacements(jaw[None])
    assert np.abs(shift).max() > 0.5 and np.allclose(shift, shift_small * sizes[1] / sizes[0], rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------ driving from FLAME files
def test_head_rotation_gives_the_tracking_yaw_pitch(flame_project):
    from studio.flame.drive import yaw_pitch_degrees
    from studio.flame.sequences import read_sequence
    from studio.tracking.data import TrackingData

    yp = yaw_pitch_degrees(np.array([[0, np.radians(20), 0], [np.radians(-10), 0, 0]]))
    assert np.allclose(yp, [[20, 0], [0, 10]], atol=1e-6), "y rotation = yaw to the right; -x rotation = face up"
    proj = flame_project[0]
    trk = TrackingData.from_project(proj)
    seq = read_sequence(proj.output("flame", "sequence"))
    fitted = yaw_pitch_degrees(seq.pose)[trk.valid]
    assert np.corrcoef(fitted[:, 0], trk.pose[trk.valid, 0])[0, 1] > 0.9, "the fitted head yaw follows the tracked one"


def test_export_from_a_flame_sequence(nerf_flame_project, tmp_path, capsys):
    from studio.cli import main
    from studio.flame.sequences import read_sequence, write_sequence

    proj = nerf_flame_project
    full = read_sequence(proj.output("flame", "sequence"))
    cut = dataclasses.replace(full, expression=full.expression[40:52], jaw=full.jaw[40:52], pose=full.pose[40:52],
                              eyes=None, eyelids=None)
    seq = write_sequence(tmp_path / "seq.npz", cut)
    out = tmp_path / "frames"
    rc = main(["export", str(proj.root), "--engine", "nerf", "--source", "flame", "--flame", str(seq),
               "--out", str(out), "--format", "png"])
    assert rc == 0, capsys.readouterr().err
    assert len(list(out.glob("*.png"))) == 12


def test_bad_flame_sequence_is_one_line_and_exit_2(nerf_flame_project, tmp_path, capsys):
    from studio.cli import main

    bad = tmp_path / "bad.npz"
    np.savez(bad, format=np.array("avatar-studio-flame/1"), expression=np.zeros((5, 50)))
    rc = main(["export", str(nerf_flame_project.root), "--engine", "nerf", "--source", "flame", "--flame", str(bad),
               "--out", str(tmp_path / "x.gif")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "'jaw'" in err and "FLAME sequences understood" in err and "SMIRK" in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "'jaw'" in errors[0] and "Traceback" not in err
    assert not (tmp_path / "x.gif").exists()


# ------------------------------------------------------------------ planning
def test_plan_includes_flame_when_the_controls_are_flame(tracked_d3, tmp_path):
    from studio.session import Session

    session = Session(copy_project(tracked_d3, tmp_path / "proj"))
    assert session.plan_engine("nerf") == ["nerf"]
    assert session.set_controls("nerf", "flame") == ["nerf"]
    assert session.config("nerf").controls == "flame"
    assert session.controls("nerf") == "flame" and session.controls("pvp") == "named"   # what the Export page offers
    assert session.controls("no-such-engine") == "named"
    assert session.plan_engine("nerf") == ["flame", "nerf"]
    assert session.plan_stage("nerf") == ["flame", "nerf"]
    assert "flame" not in session.plan_engine("pvp"), "the pvp engine still trains on named controls"


def test_run_with_flame_controls_without_files_stops_first(d3_video, tmp_path, monkeypatch, capsys):
    from studio.cli import main

    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(tmp_path / "empty-config"))
    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(tmp_path / "no-shared"))
    rc = main(["run", str(d3_video), "--controls", "flame", "--project", str(tmp_path / "p"), "--no-eval"])
    err = capsys.readouterr().err
    assert rc == 2 and "models add flame-mediapipe" in err and err.strip().startswith("error:")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists(), "nothing is tracked before the missing files are said"


# ------------------------------------------------------------------ evaluation of FLAME sliders
def _synth_tracked(model, emb, shape, jaw, expr, k: int) -> dict:
    """MediaPipe-like result for a face made by the FLAME model: coefficient k (or the jaw when k < 0)."""
    n_expr = model.n_expr
    e = torch.zeros(1, n_expr)
    j = torch.zeros(1, 3)
    if k < 0:
        j[0, 0] = jaw
    else:
        e[0, k] = expr
    with torch.no_grad():
        pts = model.landmarks(torch.as_tensor(emb.face_idx), torch.as_tensor(emb.bary, dtype=torch.float32),
                              shape=torch.as_tensor(shape, dtype=torch.float32)[None], expression=e, jaw_pose=j,
                              batch_size=1)[0].numpy()
    s = 1500.0
    lm = np.stack([s * pts[:, 0] + 200, -s * pts[:, 1] + 220, -s * pts[:, 2]], 1)
    return {"landmarks": lm, "pose": np.zeros(3), "expr": np.zeros(12)}


def test_fit_sweeps_recovers_commanded_coefficients(flame_project, subject_flame_module, monkeypatch, tmp_path):
    from studio.flame.evaluate import fit_sweeps
    from studio.flame.files import load_flame

    configure_flame(monkeypatch, tmp_path, subject_flame_module)
    proj = flame_project[0]
    model, emb = load_flame(subject_flame_module.model_path, subject_flame_module.embedding_path)
    with np.load(proj.output("flame", "sequence")) as z:
        shape = z["shape"]
    full = np.zeros(model.n_shape)
    full[:len(shape)] = shape
    sweeps = {}
    for name, k, vals in (("jaw", -1, np.linspace(0.0, 0.25, 5)), ("flame_00", 0, np.linspace(-2, 2, 5)),
                          ("flame_03", 3, np.linspace(-2, 2, 5))):
        tracked = [_synth_tracked(model, emb, full, v, v, k) for v in vals]
        tracked[1] = None  # a render where no face was found
        sweeps[name] = (vals, tracked)
    res = fit_sweeps(proj, sweeps)  # the evaluation's own number of fitting steps
    assert set(res["pearson"]) == {"jaw", "flame_00", "flame_03"}
    assert res["jaw"] > 0.9 and res["pearson"]["flame_00"] > 0.9 and res["pearson"]["flame_03"] > 0.9, res
    assert res["mean"] > 0.9
    # the gain (fitted change per commanded unit) says how much of the commanded change the face shows
    assert all(0.7 < g < 1.3 for g in res["gain"].values()), res["gain"]


def test_evaluation_reports_flame_slider_r(nerf_flame_project, subject_flame_module, monkeypatch, tmp_path):
    import studio.tracking.tracker as tracker
    from studio.evaluation import evaluate, format_table
    from studio.tracking.data import TrackingData

    configure_flame(monkeypatch, tmp_path, subject_flame_module)
    proj = nerf_flame_project
    trk = TrackingData.from_project(proj)
    rows = np.flatnonzero(trk.valid)

    def fake_track(images, tracking):  # mediapipe finds no face in 16 px renders: real tracked faces instead
        return [{"pose": np.array([float(i), 0.0, 0.0], np.float32), "expr": np.zeros(12),
                 "landmarks": trk.landmarks[rows[(7 * i) % len(rows)]]} for i, _ in enumerate(images)]

    monkeypatch.setattr(tracker, "track_images", fake_track)
    rep = evaluate(proj, "nerf", sweep_points=4, latency_frames=2)
    fl = rep["controls"]["flame"]
    assert list(fl["pearson"]) == ["jaw"] + [f"flame_{k:02d}" for k in range(10)]
    assert set(rep["controls"]["expression_pearson"]) == set(fl["pearson"])
    assert fl["fit_error_px"] is not None and fl["fit_error_px"] < 20
    saved = json.loads((proj.root / "eval" / "nerf" / "eval.json").read_text())
    assert saved["controls"]["flame"]["pearson"] == fl["pearson"]
    # FLAME's geometry is on, as in the viewer, and the sliders are scored without it too
    assert rep["flame_geometry"] is True
    assert list(rep["controls"]["flame_without_warp"]["pearson"]) == list(fl["pearson"])
    table = format_table(rep)
    assert "FLAME slider r" in table and "r flame_09" in table and "without FLAME geometry" in table
    # the viewer's Named tab is scored beside them, one r per named slider of the stage's map
    from studio.flame.controls import load_named_map

    nv = rep["controls"]["named_via_flame"]
    assert list(nv["pearson"]) == load_named_map(proj)[0].named and len(nv["pearson"]) == 12
    assert "r jaw_open (Named tab)" in table
    # the mean's row is shown when there is a mean (rows without any figure are left out of the table)
    assert ("named slider r through the FLAME map" in table) == (nv["mean"] is not None)


def test_named_tab_is_scored_against_the_trackers_named_measure(monkeypatch):
    """`_named_via_flame` renders each named slider through the map as the viewer does and
    correlates it with the tracker's measure of that same named expression: with a "tracker" that
    reads the named values back from the FLAME controls rendered, every named slider scores r = 1,
    and one that reads an expression back with the wrong sign scores r = -1."""
    import studio.evaluation.run as ev   # the module whose sweeps call `_retrack`
    import studio.flame.controls as fc
    from studio.flame.controls import NamedToFlame

    rng = np.random.default_rng(0)
    named = [f"n{k}" for k in range(4)]
    flame = ["jaw"] + [f"flame_{k:02d}" for k in range(6)]
    W = np.concatenate([rng.normal(size=(4, 7)), np.zeros((1, 7))])
    nmap = NamedToFlame(named, flame, W, [1.0] * 7)
    ranges = {n: (-1.0 - k, 2.0 + k) for k, n in enumerate(named)}
    monkeypatch.setattr(fc, "load_named_map", lambda project: (nmap, ranges))
    names = ["yaw", "pitch"] + flame
    shown: list[np.ndarray] = []

    class Avatar:   # renders "images" that stand for the controls they were given
        name, control_names, size = "fake", names, 2

        def render_batch(self, c):
            shown.extend(np.asarray(c))
            first = len(shown) - len(c)
            return np.arange(first, len(shown)).reshape(-1, 1, 1, 1) * np.ones((1, 2, 2, 3)), None

    flip = {"on": False}

    def track(images, tracking):   # reads the named values back: least squares through the map
        out = []
        for img in images:
            c = shown[int(img[0, 0, 0])]
            est = np.linalg.lstsq(W[:-1].T, c[2:], rcond=None)[0]
            if flip["on"]:
                est[2] = -est[2]
            out.append({"pose": np.zeros(3), "expr": est, "landmarks": None})
        return out

    monkeypatch.setattr(ev, "_retrack", track)
    neutral = np.zeros(len(names), np.float32)

    res = run_to_end(ev._named_via_flame(None, Avatar(), None, neutral, 5))
    assert list(res["pearson"]) == named
    assert all(abs(r - 1.0) < 1e-6 for r in res["pearson"].values()), res
    # the sweep spans each named slider's own range, the others at 0
    assert np.allclose(np.linalg.lstsq(W[:-1].T, shown[4][2:], rcond=None)[0], [ranges["n0"][1], 0, 0, 0], atol=1e-5)
    flip["on"] = True
    res = run_to_end(ev._named_via_flame(None, Avatar(), None, neutral, 5))
    assert res["pearson"]["n2"] < -0.999 and res["pearson"]["n1"] > 0.999


# ------------------------------------------------------------------ viewer
def test_viewer_shows_flame_sliders_and_a_named_tab(nerf_flame_project, subject_flame_module, monkeypatch, tmp_path,
                                                     qtbot):
    from studio.gui.viewer import ViewerPanel

    configure_flame(monkeypatch, tmp_path, subject_flame_module)
    v = ViewerPanel()
    qtbot.addWidget(v)
    try:
        v.set_project(nerf_flame_project)
        qtbot.waitUntil(lambda: v.last_render is not None, timeout=20000)
        assert not v.flame_note.isVisibleTo(v), "with FLAME's files the note is not needed"
        assert v.flame_box.isVisibleTo(v) and v.flame_box.isEnabled() and v.flame_box.isChecked()
        assert v.last_render["flame_geometry"] is True
        v.flame_box.setChecked(False)
        qtbot.waitUntil(lambda: v.last_render["flame_geometry"] is False, timeout=20000)
        v.flame_box.setChecked(True)
        assert [v.tabs.tabText(i) for i in range(v.tabs.count())] == ["FLAME", "Named"]
        names = [s.name for s in v.sliders]
        assert names[:3] == ["yaw", "pitch", "jaw"] and names[3:13] == [f"flame_{k:02d}" for k in range(10)]
        assert names[13:] == v._named_map.named and len(names[13:]) == 12
        base = v.controls()
        assert base.shape == (53,)
        flame01 = v.sliders[names.index("flame_01")]
        flame01.slider.setValue(200)
        c = v.controls()
        assert c[4] == pytest.approx(flame01.hi) and np.allclose(np.delete(c, 4), np.delete(base, 4))
        v.tabs.setCurrentIndex(1)
        jaw_open = v.sliders[names.index("jaw_open")]
        a = v.controls()
        jaw_open.slider.setValue(200)
        b = v.controls()
        w = v._named_map.weights[v._named_map.named.index("jaw_open")]
        assert np.allclose(b[2:] - a[2:], w * (jaw_open.value() - jaw_open.neutral), atol=1e-4)
        v.set_flame_count(4)
        assert [s.name for s in v.sliders][2:7] == ["jaw", "flame_00", "flame_01", "flame_02", "flame_03"]
    finally:
        v.shutdown()


def _warp_landmarks(img: np.ndarray, src: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """`img` warped so that the points `src` (P, 2) move by `disp` (P, 2) pixels, smoothly in between
    (thin-plate spline; the image border stays put)."""
    import cv2
    from scipy.interpolate import RBFInterpolator

    S = img.shape[0]
    edge = np.linspace(0, S - 1, 9)
    border = np.array([[x, y] for x in edge for y in (0, S - 1)] + [[x, y] for y in edge for x in (0, S - 1)])
    rbf = RBFInterpolator(np.concatenate([src, border]), np.concatenate([disp, np.zeros_like(border)]),
                          kernel="thin_plate_spline", smoothing=1e-3, degree=1)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    d = rbf(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(S, S, 2)
    return cv2.remap(img, (xx - d[..., 0]).astype(np.float32), (yy - d[..., 1]).astype(np.float32), cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REFLECT)


def test_fit_sweeps_reads_small_warps_of_a_real_face_at_the_render_size(flame_project, subject_flame_module,
                                                                         monkeypatch, tmp_path):
    """A known answer through the whole measurement the evaluation uses (MediaPipe on images, then
    `fit_sweeps`), without an avatar: a real rest-face crop of d3 at the engines' 128 px is warped so its
    landmarks move as FLAME says for the jaw, flame_00 and flame_08 (under a pixel at the sweep's end
    for flame_08), and the fit must read the commanded values back. So a slider that evaluates weak on an
    avatar is the avatar's doing, not the measure's."""
    import cv2

    from studio.flame.controls import rest_rows
    from studio.flame.evaluate import fit_sweeps
    from studio.flame.files import load_flame
    from studio.tracking.data import TrackingData
    from studio.tracking.tracker import ImageTracker

    configure_flame(monkeypatch, tmp_path, subject_flame_module)
    proj = flame_project[0]
    model, emb = load_flame(subject_flame_module.model_path, subject_flame_module.embedding_path)
    trk = TrackingData.from_project(proj, controls="flame")
    rows = rest_rows(trk)
    base = int(rows[np.argmin(np.abs(trk.pose[rows, :2]).sum(1))])
    img = cv2.resize(trk.crop(base), (128, 128), interpolation=cv2.INTER_AREA)
    with np.load(proj.output("flame", "sequence")) as z:
        shape = z["shape"]
    full = np.zeros(model.n_shape)
    full[:len(shape)] = shape
    rest3 = _synth_tracked(model, emb, full, 0.0, 0.0, 0)["landmarks"]      # the model's face, in pixels
    tracker = ImageTracker.from_tracking(trk)
    try:
        seen = np.asarray(tracker(img)["landmarks"], np.float64)[:, :2]
        # 2-D similarity from the model's face onto the tracked crop (the base frame is near frontal)
        a, b = rest3[:, :2] - rest3[:, :2].mean(0), seen - seen.mean(0)
        u, sv, vt = np.linalg.svd(b.T @ a)
        rot = u @ np.diag([1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
        scale = sv.sum() / (a ** 2).sum()
        src = (scale * (rot @ a.T)).T + seen.mean(0)
        sweeps, moved = {}, {}
        for name, k, vals in (("jaw", -1, np.linspace(0.0, 0.1, 5)), ("flame_00", 0, np.linspace(-2, 2, 5)),
                              ("flame_08", 8, np.linspace(-2, 2, 5))):
            tracked = []
            for v in vals:
                d = _synth_tracked(model, emb, full, v, v, k)["landmarks"][:, :2] - rest3[:, :2]
                disp = scale * (rot @ d.T).T
                moved[name] = max(moved.get(name, 0.0), float(np.sqrt((disp ** 2).sum(1).mean())))
                tracked.append(tracker(_warp_landmarks(img, src, disp)))
            sweeps[name] = (vals, tracked)
    finally:
        tracker.close()
    assert moved["flame_08"] < 1.0, moved  # sub-pixel: the size of change a weak slider is judged on
    res = fit_sweeps(proj, sweeps)
    assert all(r is not None and r > 0.9 for r in res["pearson"].values()), res
    assert all(g > 0.15 for g in res["gain"].values()), res["gain"]


def test_flame_geometry_gives_a_still_render_the_sliders_motion(flame_project, subject_flame_module, monkeypatch,
                                                                 tmp_path):
    """`studio.flame.warp` through the evaluation's own measure: an "engine" whose expression latent
    ignores every slider renders the same real rest face (d3, 128 px) whatever is commanded; with
    FLAME's geometry on, re-tracking and `fit_sweeps` must read the jaw, flame_00 and flame_08 sweeps
    back (without it the image would not change at all)."""
    import cv2

    from studio.flame.controls import rest_rows
    from studio.flame.evaluate import fit_sweeps
    from studio.flame.warp import FlameGeometry
    from studio.tracking.data import TrackingData
    from studio.tracking.tracker import ImageTracker

    class StillEngine:   # the expression latent of an engine that ignores the sliders
        @staticmethod
        def expression_latents(c):
            return np.zeros((len(c), 4))

    configure_flame(monkeypatch, tmp_path, subject_flame_module)
    proj = flame_project[0]
    trk = TrackingData.from_project(proj, controls="flame")
    rows = rest_rows(trk)
    base = int(rows[np.argmin(np.abs(trk.pose[rows, :2]).sum(1))])
    img = cv2.resize(trk.crop(base), (128, 128), interpolation=cv2.INTER_AREA)
    geo = FlameGeometry.from_project(proj, 128, engine=StillEngine())
    assert geo is not None
    names = ["yaw", "pitch"] + trk.expression_names
    ranges = trk.control_ranges()
    neutral = np.clip(np.zeros(len(names), np.float32), [ranges[n][0] for n in names], [ranges[n][1] for n in names])
    neutral[:2] = trk.pose[base, :2]
    tracker = ImageTracker.from_tracking(trk)
    sweeps, moved = {}, {}
    try:
        for name, vals in (("jaw", np.linspace(0.0, 0.1, 5)), ("flame_00", np.linspace(-2, 2, 5)),
                           ("flame_08", np.linspace(-2, 2, 5))):   # the known-answer test's sweeps
            vals = vals.astype(np.float32)
            c = np.repeat(neutral[None], len(vals), 0)
            c[:, names.index(name)] = vals
            _, shift = geo.displacements(c)
            moved[name] = float(np.sqrt((shift ** 2).sum(-1).mean(-1)).max())
            warped = geo.apply(np.repeat(img[None], len(vals), 0), c)
            sweeps[name] = (vals, [tracker(w) for w in warped])
    finally:
        tracker.close()
    assert all(m > 0.1 for m in moved.values()), moved
    res = fit_sweeps(proj, sweeps)
    assert all(r is not None and r > 0.9 for r in res["pearson"].values()), res
    assert all(g > 0.15 for g in res["gain"].values()), res["gain"]
