"""Mappers stage on a small generator: trains, lowers the loss, and yields a working pvp Avatar.

The `pti` outputs here come from a small randomly initialised generator written in the project's
format (the real personal generator comes from the pivots/prior/pti stages, tested on their own);
this checks the mapper training and the Avatar plumbing, not image quality.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.avatar import Avatar
from studio.pipeline import run_stage


@pytest.fixture(scope="module")
def pvp_project(tracked_d3, tmp_path_factory):
    from tests.conftest import small_pvp_project

    return small_pvp_project(tracked_d3, tmp_path_factory.mktemp("pvp") / "proj")


def test_mappers_train_and_render(pvp_project):
    losses = []
    res = run_stage(pvp_project, "mappers", {"steps": 30, "batch": 2, "estimator_steps": 10, "w_identity": 0.0,
                                             "lr": 3e-3},
                    on_progress=lambda ev: ev.part == "mappers" and losses.append(ev.losses["l2"]))
    assert len(losses) == 30
    assert np.mean(losses[-8:]) < np.mean(losses[:8]), "mapper training must lower the L2 loss"
    assert res["summary"]["steps"] == 30
    av = Avatar.open(pvp_project, "pvp")
    assert av.size == 64 and av.control_names[:2] == ["yaw", "pitch"]
    a = av.render(yaw=0, pitch=0).image
    b = av.render(yaw=0, pitch=0).image
    assert a.shape == (64, 64, 3) and np.array_equal(a, b), "a still pose must give a still image"
    r = av.render(yaw=500)
    assert "yaw" in r.clamped
    lo, hi = av.ranges["yaw"]
    c = av.render(yaw=lo).image
    d = av.render(yaw=hi).image
    assert np.abs(c.astype(int) - d.astype(int)).mean() > 0.5, "yaw must change the picture"


@pytest.mark.parametrize("arcface", ["fixture", "absent"])
def test_mappers_face_losses_follow_the_arcface_file(pvp_project, tmp_path, monkeypatch, arcface):
    """The mappers train on the ArcFace feature distance and identity loss when the file is there (logged,
    finite), and without it say which file to add."""
    from tests.conftest import use_arcface

    use_arcface(monkeypatch, tmp_path, arcface)
    events = []
    res = run_stage(pvp_project, "mappers", {"steps": 4, "batch": 2, "estimator_steps": 2, "w_perceptual": 0.0},
                    on_progress=events.append, force=True)
    logged = [e.losses for e in events if e.part == "mappers" and e.losses]
    assert len(logged) == 4
    if arcface == "fixture":
        assert res["summary"]["face_loss"] is True and not res["warnings"]
        assert all(np.isfinite(v["face"]) and v["face"] > 0 and 0 <= v["identity"] <= 2 for v in logged)
    else:
        assert res["summary"]["face_loss"] is False and not any("face" in v for v in logged)
        assert any("arcface" in w and "models add" in w for w in res["warnings"])


def test_input_noise_scale_splits_pose_and_expression():
    from studio.stages.mappers import MappersConfig, input_noise_scale

    s = input_noise_scale(MappersConfig(input_noise=0.05, expression_noise=0.6), 5)
    assert s.tolist() == pytest.approx([0.05, 0.05, 0.6, 0.6, 0.6])


@pytest.mark.parametrize("expression_noise", [0.0, 0.8])
def test_expression_noise_reaches_the_expression_inputs_only(pvp_project, monkeypatch, expression_noise):
    """The reconstruction pass's expression inputs are jittered by `expression_noise`; with `input_noise` 0 its
    pose inputs stay the training frames' own tracked poses."""
    from models.pvp_mappers import ExpressionMapper, PoseMapper
    from studio.tracking.data import TrackingData

    seen = {"pose": [], "expr": []}
    pose_fwd, expr_fwd = PoseMapper.forward, ExpressionMapper.forward
    monkeypatch.setattr(PoseMapper, "forward", lambda self, p: (seen["pose"].append(p.detach().clone()),
                                                                pose_fwd(self, p))[1])
    monkeypatch.setattr(ExpressionMapper, "forward", lambda self, e: (seen["expr"].append(e.detach().clone()),
                                                                      expr_fwd(self, e))[1])
    run_stage(pvp_project, "mappers", {"steps": 3, "batch": 4, "estimator_steps": 1, "w_perceptual": 0.0,
                                       "w_identity": 0.0, "w_face": 0.0, "perturb": 0.0, "input_noise": 0.0,
                                       "expression_noise": expression_noise}, force=True)
    trk = TrackingData.from_project(pvp_project)
    train, _ = trk.split()
    ctrl = torch.from_numpy(trk.controls(train))

    def on_rows(x, cols):  # each row of x is one training frame's tracked controls (these columns)
        return all(bool((ctrl[:, cols] - row).abs().amax(1).min() < 1e-6) for row in x)

    recon = [e for e in seen["expr"] if len(e) == 4]
    assert len(seen["pose"]) >= 3 and len(recon) >= 3
    assert all(on_rows(p, slice(0, 2)) for p in seen["pose"])
    assert all(on_rows(e, slice(2, None)) for e in recon) == (expression_noise == 0.0)
