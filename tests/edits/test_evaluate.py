"""studio/edits/evaluate.py: CLIP gain, identity and change outside the face over the sweep."""
from __future__ import annotations

import json

import pytest
import torch

from studio.edits.adapters import adapter_for
from studio.edits.evaluate import evaluate_edit, evaluate_edits, format_rows, write_report
from studio.edits.model import Edit


def _arcface():
    from pathlib import Path

    from models.arcface import load_arcface

    p = Path(__file__).resolve().parents[3] / "shared" / "weights" / "arcface_mobilefacenet.pt"
    return load_arcface(p) if p.exists() else None


def test_zero_edit_changes_nothing(pvp_engine):
    a = adapter_for(pvp_engine)
    L, D = a.latent_shape
    row = evaluate_edit(a, Edit(name="nothing", kind="direction", engine="pvp", offset=torch.zeros(L, D)),
                        arcface=_arcface())
    assert row["points"] == 15 and row["changed_outside_mean"] == 0 and row["abs_change_outside"] == 0
    assert row["clip_gain_mean"] is None
    if row["identity_mean"] is not None:
        assert row["identity_min"] == pytest.approx(1.0, abs=1e-5)


def test_background_change_is_measured(pvp_engine):
    """An offset that changes the whole image counts as change outside; identity drops below 1."""
    a = adapter_for(pvp_engine)
    L, D = a.latent_shape
    g = torch.Generator().manual_seed(0)
    big = Edit(name="noise", kind="direction", engine="pvp", offset=3 * torch.randn(L, D, generator=g))
    row = evaluate_edit(a, big, arcface=_arcface())
    assert row["changed_outside_mean"] > 0.05 and row["abs_change_outside"] > 1
    if row["identity_mean"] is not None:
        assert row["identity_min"] < 0.999


def test_red_edit_scores_and_report(tmp_path, tiny_clip, pvp_engine):
    from studio.edits.styleclip import find_text_edit

    a = adapter_for(pvp_engine)
    edit = find_text_edit(a, tiny_clip, "red", steps=30, batch=3, augmentations=3)
    rows = evaluate_edits(a, [edit], clip=tiny_clip, arcface=_arcface())
    r = rows[0]
    assert len(r["clip_gain"]) == 15
    assert r["clip_gain_min"] > 0, f"CLIP gain must be positive at every sweep point: {r['clip_gain']}"
    assert r["clip_gain_positive"] == 1.0
    table = format_rows(rows)
    assert "red" in table and "CLIP gain" in table
    path = write_report(tmp_path, "pvp", rows)
    assert json.loads(path.read_text())["edits"][0]["name"] == "red"
