"""FLAME controls are measured from the subject's rest face: 0 (Reset) is the median fit over the
rest frames the tracking chose (mouth closed, eyes open), for the engines, the viewer's Named tab and
driving; fits and tracking written before keep their values."""
from __future__ import annotations

import json

import numpy as np
import pytest

from studio.errors import InputError
from studio.flame.controls import NamedToFlame, controls_from_sequence, rest_controls
from studio.flame.sequences import FlameSequence, normalise_to_subject, read_sequence, with_rest, write_sequence
from studio.pipeline import run_stage
from tests.flame.test_stage import (FIT, configure_flame, copy_project, flame_project,  # noqa: F401
                                    subject_flame_module)

RNG = np.random.default_rng(3)


def _subject(n: int = 120, e: int = 50) -> FlameSequence:
    expr = RNG.normal(0.4, 0.6, (n, e))
    jaw = np.abs(RNG.normal(0.0, 0.08, (n, 3))) + [0.02, 0, 0]
    return FlameSequence(expr, jaw, RNG.normal(0, 0.1, (n, 3)), 30.0)


def test_rest_is_the_median_over_the_rest_rows_and_controls_start_there(tmp_path):
    seq = _subject()
    rows = np.array([3, 10, 11, 40, 77])
    rested = with_rest(seq, rows)
    np.testing.assert_allclose(rested.rest_expression, np.median(seq.expression[rows], 0))
    np.testing.assert_allclose(rested.rest_jaw, np.median(seq.jaw[rows], 0))
    ctrl = controls_from_sequence(rested)
    np.testing.assert_allclose(np.median(ctrl[rows], 0), 0, atol=1e-6)
    np.testing.assert_allclose(ctrl + rest_controls(rested), controls_from_sequence(seq), atol=1e-6)
    # the rest face is written and read back; a fit written before (no rest) keeps FLAME's zero
    back = read_sequence(write_sequence(tmp_path / "s.npz", rested))
    np.testing.assert_allclose(back.rest_expression, rested.rest_expression, atol=1e-6)
    np.testing.assert_allclose(controls_from_sequence(back), ctrl, atol=1e-5)
    old = read_sequence(write_sequence(tmp_path / "old.npz", seq))
    assert old.rest_expression is None and rest_controls(old) is None
    np.testing.assert_allclose(controls_from_sequence(old)[:, 1:], seq.expression, atol=1e-6)


def test_a_damaged_rest_face_is_one_line(tmp_path):
    seq = with_rest(_subject(20), [0, 1, 2])
    bad = tmp_path / "bad.npz"
    np.savez(bad, format=np.array("avatar-studio-flame/1"), expression=seq.expression, jaw=seq.jaw,
             rest_expression=np.zeros(7), rest_jaw=np.zeros(3))
    with pytest.raises(InputError, match="rest_expression") as err:
        read_sequence(bad)
    assert "\n" not in str(err.value)
    half = tmp_path / "half.npz"
    np.savez(half, format=np.array("avatar-studio-flame/1"), expression=seq.expression, jaw=seq.jaw,
             rest_expression=np.zeros(50))
    with pytest.raises(InputError, match="'rest_jaw'"):
        read_sequence(half)


def test_a_driver_normalised_to_the_subject_rests_on_the_subjects_rest():
    subject = with_rest(_subject(), [5, 6, 7, 8, 9])
    driver = with_rest(FlameSequence(RNG.normal(-1, 2, (60, 100)), RNG.normal(0, 0.2, (60, 3))), [0, 1, 2])
    norm = normalise_to_subject(driver, subject)
    np.testing.assert_array_equal(norm.rest_expression, subject.rest_expression)
    np.testing.assert_array_equal(norm.rest_jaw, subject.rest_jaw)
    # the subject driving itself gives its own controls
    np.testing.assert_allclose(controls_from_sequence(normalise_to_subject(subject, subject)),
                               controls_from_sequence(subject), atol=1e-5)
    # coefficients the driver does not have stay at the subject's rest (control 0), not FLAME's zero
    short = normalise_to_subject(FlameSequence(driver.expression[:, :10], driver.jaw), subject)
    np.testing.assert_allclose(controls_from_sequence(short)[:, 11:], 0, atol=1e-6)


def test_named_map_without_offset_sends_rest_to_rest():
    n, named = 300, [f"n{i}" for i in range(4)]
    x = RNG.normal(0, 0.5, (n, 4))
    W = RNG.normal(0, 1, (4, 3))
    y = x @ W + RNG.normal(0, 0.01, (n, 3))
    m = NamedToFlame.fit(x, y, named, ["jaw", "flame_00", "flame_01"], offset=False)
    np.testing.assert_allclose(m(np.zeros(4)), 0, atol=1e-12)
    np.testing.assert_allclose(m.weights[:-1], W, atol=0.01)
    assert min(m.r2) > 0.99
    shifted = NamedToFlame.fit(x, y + [0.3, -1, 2], named, ["jaw", "flame_00", "flame_01"])  # with an offset
    np.testing.assert_allclose(shifted(np.zeros(4)), [0.3, -1, 2], atol=0.01)


# ------------------------------------------------------------------ the `flame` stage on d3
def test_flame_stage_measures_the_controls_from_the_tracking_rest_frames(flame_project):  # noqa: F811
    from studio.flame.controls import rest_rows
    from studio.tracking.data import TrackingData

    proj, result, _ = flame_project
    trk = TrackingData.from_project(proj)
    rows = rest_rows(trk)
    scaling = trk.meta["expression_scaling"]
    np.testing.assert_array_equal(rows, np.flatnonzero(trk.valid)[scaling["_rest"]["frames"]]), \
        "the FLAME rest is fitted on the frames the named controls rest on"
    seq = read_sequence(proj.output("flame", "sequence"))
    with np.load(proj.output("flame", "sequence")) as z:
        raw_jaw, raw_expr = z["jaw"], z["expression"]
    np.testing.assert_allclose(seq.rest_jaw, np.median(raw_jaw[rows], 0), atol=1e-6)
    np.testing.assert_allclose(seq.rest_expression, np.median(raw_expr[rows], 0), atol=1e-6)
    assert result["summary"]["rest_frames"] == len(rows)
    # what the engines train on: 0 at the rest frames, inside every slider's range (Reset is not clamped)
    ft = TrackingData.from_project(proj, controls="flame")
    np.testing.assert_allclose(np.median(ft.expr[rows], 0), 0, atol=1e-5)
    for name, (lo, hi) in ft.control_ranges().items():
        assert lo <= 0.0 <= hi, (name, lo, hi)
    # the mouth at rest is closed: the open-mouth surprise at the end of d3 has the jaw well past the
    # rest (a fit of a few steps only: the margin is loose)
    jaw = ft.expr[:, 0]
    surprise = trk.valid & (trk.time > 10.3) & (trk.time < 11.7)
    assert np.median(jaw[surprise]) > 0.03 and np.median(jaw[surprise]) > 2 * np.median(np.abs(jaw[rows])), \
        (np.median(jaw[surprise]), jaw[rows])
    # the Named tab's map sends the named rest to the FLAME rest
    m = NamedToFlame.load(proj.output("flame", "named_map"))
    np.testing.assert_allclose(m(np.zeros(len(m.named))), 0, atol=1e-12)


def test_old_tracking_gets_a_flame_rest_and_a_map_with_offset(flame_project, tmp_path, monkeypatch,  # noqa: F811
                                                              subject_flame_module):  # noqa: F811
    """Tracking written before the rest face (no "_rest"; 0 = the clip median): the FLAME fit still
    rests on frames chosen from its raw features, and the named map keeps an offset (named 0 is the
    median face there, not the rest)."""
    from studio.flame.controls import rest_rows
    from studio.tracking.data import TrackingData
    from studio.tracking.expressions import zero_is_rest

    configure_flame(monkeypatch, tmp_path, subject_flame_module)
    proj = copy_project(flame_project[0], tmp_path / "old")
    meta_path = proj.root / "track" / "tracking.json"
    meta = json.loads(meta_path.read_text())
    meta["expression_scaling"].pop("_rest")
    meta_path.write_text(json.dumps(meta))
    trk = TrackingData.from_project(proj)
    assert not zero_is_rest(trk.meta["expression_scaling"])
    rows = rest_rows(trk)
    with np.load(trk.root / "tracking.npz") as z:
        gap = z["raw_expr"][rows, 0]
    assert len(rows) >= 5 and gap.max() < 0.02, "rest frames chosen from the raw features: closed mouths"
    run_stage(proj, "flame", {**FIT, "steps": 3, "rigid_steps": 1})
    seq = read_sequence(proj.output("flame", "sequence"))
    assert seq.rest_expression is not None
    m = NamedToFlame.load(proj.output("flame", "named_map"))
    assert np.abs(m.weights[-1]).max() > 0, "named 0 is the median there: the map needs its offset"


def test_an_old_fit_without_rest_keeps_its_values(flame_project, tmp_path):  # noqa: F811
    """A flame.npz written before the rest face: the engines trained on FLAME's own zero keep it."""
    from studio.tracking.data import TrackingData

    proj = copy_project(flame_project[0], tmp_path / "oldfit")
    src = flame_project[0].output("flame", "sequence")
    (proj.root / "flame").mkdir(exist_ok=True)
    proj.update_record("flame", **flame_project[0].record("flame"))
    seq = read_sequence(src)
    import dataclasses

    old = dataclasses.replace(seq, rest_expression=None, rest_jaw=None)
    write_sequence(proj.output("flame", "sequence"), old)
    ft = TrackingData.from_project(proj, controls="flame")
    np.testing.assert_allclose(ft.expr[:, 0], seq.jaw[:, 0], atol=1e-6)
    np.testing.assert_allclose(ft.expr[:, 1:], seq.expression, atol=1e-6)
