"""The driving benchmark's figures on known inputs: re-tracking and ArcFace are replaced by stand-ins
whose answers are set here, so each figure has a known right value."""
from __future__ import annotations

import numpy as np
import pytest

from studio.benchmarks import driving as bench
from studio.driving.measure import separability


class Track:
    """A stand-in TrackingData of the actor: 10 frames, frame 3 without a face."""

    def __init__(self, rng):
        n = 10
        self.expression_names = ["jaw_open", "smile_left"]
        self.valid = np.ones(n, bool)
        self.valid[3] = False
        self.expr = rng.normal(size=(n, 2)).astype(np.float32)
        self.pose = np.zeros((n, 3), np.float32)
        self.pose[:, 0] = np.linspace(-10, 10, n)
        self.landmarks = np.zeros((n, 478, 3), np.float32)
        self.landmarks[:, 10, 1], self.landmarks[:, 152, 1] = 0.0, 100.0          # face height 100 px
        self.landmarks[:, 14, 1] = 50 + 20 * rng.random(n)                         # lip gap 0..20 px
        self.landmarks[:, 13, 1] = 50


def test_transfer_figures(monkeypatch):
    rng = np.random.default_rng(0)
    act = Track(rng)
    frames = np.zeros((10, 8, 8, 3), np.uint8)

    def fake_track(images, tracking):  # output frame i: the actor's expression, sign of smile flipped; i=7 lost
        out = []
        for i in range(len(images)):
            if i == 7:
                out.append(None)
                continue
            lm = act.landmarks[i].copy()
            lm[14, 1] = 50 + (lm[14, 1] - 50) * 0.5                                 # half the opening: r stays 1
            out.append({"expr": np.array([act.expr[i, 0] * 2 + 1, -act.expr[i, 1]]), "landmarks": lm,
                        "pose": np.array([act.pose[i, 0] * 0.8, 0, 0])})
        return out

    monkeypatch.setattr("studio.tracking.tracker.track_images", fake_track)
    emb = np.zeros((10, 2), np.float32)
    emb[:, 0] = 1.0
    emb[:4] = [0.0, 1.0]                                                           # 4 frames look like the actor
    monkeypatch.setattr("studio.metrics.embeddings", lambda images, aligned=True: emb)
    figs = bench.transfer_figures(frames, np.arange(10), None, act, np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert figs["found"] == pytest.approx(0.9)
    assert figs["expression_r"]["jaw_open"] == pytest.approx(1.0)
    assert figs["expression_r"]["smile_left"] == pytest.approx(-1.0)
    assert figs["mean_expression_r"] == pytest.approx(0.0, abs=1e-6)
    assert figs["mouth_opening_r"] == pytest.approx(1.0)
    assert figs["yaw_r"] == pytest.approx(1.0)
    idn = figs["identity"]
    assert idn["closer_to_avatar"] == pytest.approx(0.6)
    assert idn["to_avatar_mean"] == pytest.approx(0.6) and idn["to_actor_mean"] == pytest.approx(0.4)


def test_mouth_opening():
    lm = np.zeros((2, 478, 2))
    lm[:, 152, 1] = 200
    lm[0, 14, 1], lm[1, 14, 1] = 10, 40
    np.testing.assert_allclose(bench.mouth_opening(lm), [0.05, 0.2])


def test_separability():
    rng = np.random.default_rng(1)
    same = rng.normal(size=(200, 6))
    assert separability(same[:100], same[100:]) < 0.65          # one distribution: about chance
    apart = same[100:] + np.r_[6.0, np.zeros(5)]
    assert separability(same[:100], apart) > 0.95              # shifted along one axis: a hyperplane splits them
    assert separability(same[:3], same[3:6]) is None


def test_control_figures():
    """The controls handed to the renderer against the actor's tracked values: a rescaled copy scores
    1, a sign flip −1, and the actor's frames without a face are left out (there a wrong value)."""
    act = Track(np.random.default_rng(2))
    ctrl = np.zeros((10, 4), np.float32)
    ctrl[:, 2] = act.expr[:, 0] * 3 - 1                                           # jaw: rescaled
    ctrl[:, 3] = -act.expr[:, 1]                                                   # smile: flipped
    ctrl[3, 2] = 100.0                                                             # no face on row 3
    figs = bench.control_figures(ctrl, np.arange(10), act)
    assert figs["controls_r"]["jaw_open"] == pytest.approx(1.0)
    assert figs["controls_r"]["smile_left"] == pytest.approx(-1.0)
    assert figs["mean_controls_r"] == pytest.approx(0.0, abs=1e-6)
    rows = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])                                # frame i shows row rows[i]
    figs = bench.control_figures(ctrl[rows], rows, act)
    assert figs["controls_r"]["jaw_open"] == pytest.approx(1.0)


def test_pose_share():
    from studio.driving.measure import pose_share

    rng = np.random.default_rng(3)
    pose = rng.normal(size=(300, 2)) * [10.0, 5.0]
    expr = rng.normal(size=(300, 8))
    mix = rng.normal(size=(2, 8))
    assert pose_share(pose @ mix, pose) == pytest.approx(1.0)                      # codes = pose, linearly
    assert pose_share(expr, pose) < 0.05                                           # codes ignore pose
    half = np.c_[pose @ mix / np.std(pose @ mix, 0), expr / expr.std(0)]           # 8 of 16 dims are pose
    assert pose_share(half, pose) == pytest.approx(0.5, abs=0.05)
    assert pose_share(expr[:3], pose[:3]) is None
