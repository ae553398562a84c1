"""The named controls' 0 is the subject's rest face (mouth closed, eyes open), not the clip median.

A synthetic talking clip (raw features and head pose made here: the mouth open in most frames,
blinks, a wink, surprise, smiles, pressed lips and near-profile turns) and the three shared
clips (skipped without ../shared).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from studio.tracking.data import EXPRESSION_NAMES, TrackingData
from studio.tracking.expressions import (CLOSED_GAP, EYES_OPEN, apply_scaling, choose_rest_frames, fit_scaling,
                                         zero_is_rest)
from tests.conftest import shared_video

J = {n: i for i, n in enumerate(EXPRESSION_NAMES)}
OPEN = 0.36            # a typical open eye's aperture (lid gap / eye width)


def talking_clip(n: int = 900, seed: int = 0, closed_share: float = 0.25):
    """(raw (n, E), pose (n, 3), labels {name: bool (n,)}) of a talking head.

    Raw features are in `raw_features`' units: the lip gap in outer-eye-corner distances (closed ≈ 0,
    talking 0.04–0.25), eye aperture as -blink."""
    rng = np.random.default_rng(seed)
    raw = np.zeros((n, len(EXPRESSION_NAMES)))
    rest = {"jaw_open": 0.0, "smile_left": -0.03, "smile_right": -0.025, "pucker": -0.55, "mouth_stretch": 0.55,
            "brow_raise_left": 0.25, "brow_raise_right": 0.245, "brow_frown": -0.51, "blink_left": -OPEN,
            "blink_right": -OPEN * 1.03, "gaze_horizontal": 0.0, "gaze_vertical": 0.05}
    noise = {"jaw_open": 0.002, "smile_left": 0.003, "smile_right": 0.003, "pucker": 0.006, "mouth_stretch": 0.006,
             "brow_raise_left": 0.004, "brow_raise_right": 0.004, "brow_frown": 0.004, "blink_left": 0.015,
             "blink_right": 0.015, "gaze_horizontal": 0.015, "gaze_vertical": 0.012}
    for k, v in rest.items():
        raw[:, J[k]] = v + noise[k] * rng.standard_normal(n)
    raw[:, J["mouth_stretch"]] = -raw[:, J["pucker"]]
    pose = np.stack([8 * rng.standard_normal(n), 5 * rng.standard_normal(n), 2 * rng.standard_normal(n)], 1)

    u = rng.random(n)
    talking = u >= closed_share                               # the mouth moves while talking
    gap = rng.uniform(0.04, 0.25, n)
    raw[talking, J["jaw_open"]] = gap[talking]
    raw[talking, J["mouth_stretch"]] += 0.1 * gap[talking] * rng.standard_normal(talking.sum())
    raw[talking, J["brow_raise_left"]] += 0.01 * rng.random(talking.sum())
    pick = lambda share: (~talking) & (rng.random(n) < share)  # noqa: E731 — events among closed-mouth frames
    labels = {"talking": talking}
    labels["pressed"] = pick(0.2)                             # lips pressed (m/b/p): negative gap, narrow mouth
    raw[labels["pressed"], J["jaw_open"]] = -0.007
    raw[labels["pressed"], J["pucker"]] += 0.05
    raw[labels["pressed"], J["mouth_stretch"]] -= 0.05
    labels["smile"] = pick(0.2)
    raw[labels["smile"], J["smile_left"]] += 0.05
    raw[labels["smile"], J["smile_right"]] += 0.05
    raw[labels["smile"], J["mouth_stretch"]] += 0.08
    raw[labels["smile"], J["pucker"]] -= 0.08
    labels["blink"] = rng.random(n) < 0.08
    raw[labels["blink"], J["blink_left"]] = -rng.uniform(0.03, 0.15, labels["blink"].sum())
    raw[labels["blink"], J["blink_right"]] = -rng.uniform(0.03, 0.15, labels["blink"].sum())
    labels["wink"] = (~labels["blink"]) & (rng.random(n) < 0.04)
    raw[labels["wink"], J["blink_left"]] = -0.05
    labels["surprise"] = (~labels["blink"]) & (~labels["wink"]) & pick(0.15)
    raw[labels["surprise"], J["blink_left"]] = -OPEN * 1.45
    raw[labels["surprise"], J["blink_right"]] = -OPEN * 1.5
    raw[labels["surprise"], J["brow_raise_left"]] += 0.05
    raw[labels["surprise"], J["brow_raise_right"]] += 0.05
    # near-profile turns: the face mesh reads a closed mouth and open eyes there, and gaze and the
    # mouth corners off (the far side is hidden)
    labels["profile"] = rng.random(n) < 0.12
    m = labels["profile"]
    pose[m, 0] = rng.choice([-1, 1], m.sum()) * rng.uniform(55, 75, m.sum())
    raw[m, J["jaw_open"]] = 0.001 * rng.standard_normal(m.sum())
    raw[m, J["blink_left"]] = -OPEN
    raw[m, J["blink_right"]] = -OPEN
    raw[m, J["gaze_horizontal"]] = 0.12
    raw[m, J["smile_left"]] += 0.02
    return raw, pose, labels


def test_talking_clip_rests_on_a_closed_mouth_and_open_eyes():
    raw, pose, lab = talking_clip()
    gap = raw[:, J["jaw_open"]]
    assert np.median(gap) > 0.06, "the synthetic clip's median mouth must be open for this test to mean anything"
    r = choose_rest_frames(raw, pose)
    assert r.notes == []
    assert len(r.frames) >= 5 and r.best == r.frames[0]
    assert r.values[J["jaw_open"]] < 0.005 and gap[r.frames].max() < CLOSED_GAP
    assert gap[r.best] <= np.percentile(gap, 25) + 0.005
    for name in ("talking", "pressed", "smile", "blink", "wink", "surprise", "profile"):
        assert not lab[name][r.frames].any(), f"a {name} frame was taken as rest"
    assert np.all(np.abs(pose[r.frames, 0]) < 20)
    for eye in ("blink_left", "blink_right"):
        assert -r.values[J[eye]] == pytest.approx(-np.median(raw[~np.any([lab[k] for k in lab], 0), J[eye]]),
                                                  rel=0.05)


def test_scaling_puts_the_rest_face_at_zero_not_the_median():
    raw, pose, lab = talking_clip(seed=1)
    s = fit_scaling(raw, pose)
    assert zero_is_rest(s) and s["_rest"]["pose"] is True and len(s["_rest"]["frames"]) >= 5
    expr = apply_scaling(raw, s)
    rest_rows = np.asarray(s["_rest"]["frames"])
    assert np.allclose(np.median(expr[rest_rows], 0), 0, atol=1e-6), "the rest frames are Reset (0)"
    jaw = expr[:, J["jaw_open"]]
    median_row = int(np.argsort(raw[:, J["jaw_open"]])[len(raw) // 2])
    assert jaw[median_row] > 0.2, "the clip's median mouth reads as open, not as 0"
    assert np.percentile(jaw, 98) == pytest.approx(1.0, abs=1e-3)  # 1 is still a strong expression of theirs
    blink = expr[:, J["blink_left"]]
    assert np.median(blink[lab["blink"]]) > 0.6 and abs(np.median(blink[~lab["blink"] & ~lab["wink"]])) < 0.25
    # the old median scaling is still recorded (for comparison), and not used
    assert s["jaw_open"]["median"] > 0.06 and s["jaw_open"]["neutral"] < 0.005


def test_mouth_never_closed_takes_the_least_open_and_says_so():
    raw, pose, lab = talking_clip(seed=2, closed_share=0.0)
    gap = raw[:, J["jaw_open"]]
    r = choose_rest_frames(raw, pose)
    assert any("never closed" in n for n in r.notes)
    # the least open frontal mouths, not the profile frames where the mesh reads a closed mouth
    assert not lab["profile"][r.frames].any()
    assert r.values[J["jaw_open"]] <= np.percentile(gap[~lab["profile"]], 10)


def test_without_pose_or_with_few_frames_it_still_chooses():
    raw, pose, lab = talking_clip(n=60, seed=3)
    r = choose_rest_frames(raw)  # no head pose: the other gates only
    assert len(r.frames) >= 5 and raw[r.best, J["jaw_open"]] < CLOSED_GAP and not lab["blink"][r.best]
    s = fit_scaling(raw[:3])  # a 3-frame clip: every frame may be rest, nothing breaks
    assert len(s["_rest"]["frames"]) == 3 and s["_rest"]["pose"] is False
    with pytest.raises(ValueError):
        choose_rest_frames(raw[:0])


def test_median_scaling_of_old_tracking_is_recognised():
    old = json.loads((__import__("pathlib").Path(__file__).parents[1] / "fixtures" / "project_v0" / "track" /
                      "tracking.json").read_text())
    assert not zero_is_rest(old["expression_scaling"]), "tracking written before the rest face keeps 0 = median"
    raw, pose, _ = talking_clip(n=50, seed=4)
    # its scaling still applies (ImageTracker re-tracks renders of old projects with it)
    assert apply_scaling(raw, old["expression_scaling"]).shape == raw.shape


# ---------------------------------------------------------------------------------------- real clips
CLIPS = {"d3": "subject_turns_d3.mp4", "d9": "subject_glasses_d9.mp4", "d14": "subject_gaze_d14.mp4"}


@pytest.fixture(scope="module")
def tracked_clips(tmp_path_factory, tracked_d3):
    """TrackingData of the three shared clips (d3 from the session's tracked project)."""
    from studio.pipeline import run_stage
    from studio.project import Project

    out = {"d3": TrackingData.from_project(tracked_d3)}
    for key in ("d9", "d14"):
        proj = Project.create(tmp_path_factory.mktemp("rest") / key, shared_video(CLIPS[key]))
        run_stage(proj, "ingest")
        run_stage(proj, "track")
        out[key] = TrackingData.from_project(proj)
    return out


def _raw(trk: TrackingData) -> np.ndarray:
    with np.load(trk.root / "tracking.npz") as z:
        return z["raw_expr"]


@pytest.mark.parametrize("clip", ["d3", "d9", "d14"])
def test_shared_clip_rest_frame_has_a_closed_mouth_and_open_eyes(tracked_clips, clip):
    trk = tracked_clips[clip]
    scaling = trk.meta["expression_scaling"]
    assert zero_is_rest(scaling)
    valid = np.flatnonzero(trk.valid)
    raw = _raw(trk)[valid]
    rest = np.asarray(scaling["_rest"]["frames"])
    best = scaling["_rest"]["best"]
    gap = raw[:, J["jaw_open"]]
    # closed: a lip gap in the clip's lowest quarter. On these clips most frames have a closed mouth and
    # their 25th percentile (-0.0016, -0.0012, -0.0015 eye distances) is within the face mesh's noise of a
    # closed mouth; 0.005 (half a percent of the eye distance, ~0.5 mm) is allowed above it
    q25 = np.percentile(gap, 25)
    assert gap[best] <= q25 + 0.005 and np.median(gap[rest]) <= q25 + 0.005, (gap[best], q25)
    assert gap[best] < 0.01 and gap[rest].max() < CLOSED_GAP
    # eyes open: both eyes near the clip's open aperture (its 90th percentile), far from a blink
    for eye in ("blink_left", "blink_right"):
        aperture = -raw[:, J[eye]]
        q90 = np.percentile(aperture, 90)
        assert aperture[best] > 0.7 * q90 and np.median(aperture[rest]) > 0.7 * q90, (eye, aperture[best], q90)
        assert aperture[best] < 1.25 * q90, "wide open (surprise) is not rest"
    # Reset (0) is inside every slider's range, so it is not clamped away from the rest face
    for name, (lo, hi) in trk.control_ranges().items():
        if name not in ("yaw", "pitch"):
            assert lo <= 0.0 <= hi, (name, lo, hi)
    assert np.allclose(np.median(trk.expr[valid][rest], 0), 0, atol=1e-6)


def test_d3_reset_is_the_rest_face_not_the_median_face(tracked_clips):
    """On d3 the median face has half-shut eyes (she looks down and frowns for much of the clip): the
    training frame nearest Reset (what the viewer's "nearest frame" shows, and what the engines learned
    for these controls) has a closed mouth and open eyes."""
    from studio.evaluation import retrieval_rows

    trk = tracked_clips["d3"]
    train, _ = trk.split()
    raw = _raw(trk)
    ctrl = trk.controls(train)
    reset = np.zeros((1, ctrl.shape[1]), np.float32)  # Avatar.neutral(): every slider at 0
    row = int(train[retrieval_rows(ctrl, reset)[0]])
    aperture = -raw[:, [J["blink_left"], J["blink_right"]]]
    assert raw[row, J["jaw_open"]] < 0.01, "the mouth of the rest face is closed"
    assert np.all(aperture[row] > 0.7 * np.percentile(aperture[trk.valid], 90, axis=0))
    median = np.median(raw[trk.valid], 0)
    scaling = trk.meta["expression_scaling"]
    rest_aperture = -np.array([scaling["blink_left"]["neutral"], scaling["blink_right"]["neutral"]])
    assert np.all(np.median(aperture[trk.valid], 0) < 0.8 * rest_aperture), "the median eyes are half shut"
    old_zero = apply_scaling(median[None], scaling)[0]
    assert old_zero[J["blink_left"]] > 0.3 and old_zero[J["blink_right"]] > 0.3, \
        "the old 0 (the clip median) would read as half-closed eyes in the new scaling"


def test_old_tracking_keeps_its_values(tracked_d3, tmp_path):
    """Tracking written before the rest face (no "_rest"): loaded as it is, 0 stays its median."""
    dst = tmp_path / "old"
    shutil.copytree(tracked_d3.root / "track", dst, ignore=shutil.ignore_patterns("crops", "mattes"))
    meta = json.loads((dst / "tracking.json").read_text())
    median_scaling = {n: {"neutral": v["median"], "span": v["span"]} for n, v in meta["expression_scaling"].items()
                      if not n.startswith("_")}
    meta["expression_scaling"] = median_scaling
    (dst / "tracking.json").write_text(json.dumps(meta))
    with np.load(dst / "tracking.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["expr"] = np.where(arrays["valid"][:, None], apply_scaling(arrays["raw_expr"], median_scaling), 0)
    np.savez(dst / "tracking.npz", **arrays)
    old = TrackingData.load(dst)
    assert not zero_is_rest(old.meta["expression_scaling"])
    assert np.allclose(old.expr, arrays["expr"]), "old tracking is not rescaled on load"
