"""The subject prior recovers from a runaway instead of failing the new user's run.

A fresh-clone `avatar-studio run` on subject_turns_d3 stopped at step ~290 of 1600 with "the subject
prior diverged" (2026-12-01): more than 20 batches in a row had a loss over 4× its running mean, so
the weights had taken a bad step and every later batch was skipped. Now the stage goes back to a
state kept in memory, halves the learning rate and trains on; only a loss that stays runaway through
`MAX_ROLLBACKS` rollbacks is reported as diverged. The runaway is injected by scaling the loss."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import studio.stages.prior as prior_stage
from studio.errors import StudioError
from studio.pipeline import run_stage
from studio.project import Project

TINY = {"resolution": 64, "steps": 200, "batch": 2, "channel_max": 64, "w_dim": 64, "time_budget_min": 0,
        "checkpoint_every_s": 600, "w_perceptual": 0.0}


@pytest.fixture(scope="module")
def pivoted(tracked_d3, tmp_path_factory):
    """The tracked subject with its pivots chosen: what the prior starts from (copied by each test)."""
    root = tmp_path_factory.mktemp("rollback") / "p"
    shutil.copytree(tracked_d3.root, root)
    run_stage(Project.open(root), "pivots", {"k": 4})
    return root


@pytest.fixture()
def proj(pivoted, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(pivoted, root)
    return Project.open(root)


def _inject(monkeypatch, bad):
    """Scale the loss ×100 on the calls for which `bad(call)` is true (one call per step)."""
    orig = prior_stage.reconstruction_loss
    calls = [0]

    def loss(out, x, *a, **k):
        value, logs = orig(out, x, *a, **k)
        calls[0] += 1
        return (value * 100.0 if bad(calls[0]) else value), logs

    monkeypatch.setattr(prior_stage, "reconstruction_loss", loss)
    return calls


def test_a_runaway_rolls_back_and_training_finishes(proj, monkeypatch):
    calls = _inject(monkeypatch, lambda c: 120 <= c < 150)  # 30 runaway batches in a row
    res = run_stage(proj, "prior", TINY)
    assert calls[0] == 200 and res["summary"]["steps"] == 200
    notes = [w for w in res["warnings"] if "ran away" in w]
    assert len(notes) == 1 and "half the learning rate" in notes[0], res["warnings"]
    ck = torch.load(proj.root / "prior" / "train.ckpt", weights_only=True)
    assert ck["vars"]["rollbacks"] == 1
    lrs = [g["lr"] for g in ck["objects"]["opt"]["param_groups"]]
    assert np.allclose(lrs, [0.5 * prior_stage.PriorConfig().lr] * len(lrs))
    from models.stylegan2.checkpoint import load_generator

    G, _ = load_generator(proj.output("prior", "generator"))
    assert all(torch.isfinite(v).all() for v in G.state_dict().values() if v.is_floating_point())


def test_a_loss_that_stays_runaway_is_reported_as_diverged(proj, monkeypatch):
    calls = _inject(monkeypatch, lambda c: c >= 110)
    with pytest.raises(StudioError, match="diverged"):
        run_stage(proj, "prior", TINY)
    # 21 skipped batches before each rollback, and 21 more after the last one
    assert calls[0] == 109 + 21 * (prior_stage.MAX_ROLLBACKS + 1)
