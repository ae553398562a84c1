"""`python -m studio.benchmarks.detail_sweep`: detail variants scored on a tiny project's held-out frames."""
from __future__ import annotations

import json

import numpy as np
import pytest

from studio import metrics
from studio.benchmarks import detail_sweep
from studio.tracking.data import TrackingData

from test_evaluation import BlurredTruthEngine, make_project


@pytest.fixture
def project(tmp_path, monkeypatch):
    from studio.avatar import Avatar

    proj = make_project(tmp_path / "proj")
    engine = BlurredTruthEngine(TrackingData.from_project(proj), size=128, sigma=2.0)
    monkeypatch.setattr(Avatar, "open", classmethod(lambda cls, project, engine_name=None, detail=True, **_kw:
                                                    cls(engine, project=project, detail=detail)))
    monkeypatch.setattr(metrics, "arcface_weights", lambda: None)
    return proj


def test_variants_are_scored_and_differ(project, capsys):
    rc = detail_sweep.main([str(project.root), "--variant", "{}", "--variant", '{"band_sigma": 0.5}'])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["variant"] for r in rows] == [{}, {"band_sigma": 0.5}]
    default, narrow = rows
    # a band of σ 0.5 px leaves almost all of the blurred render: far less sharp than the default's detail
    assert narrow["sharpness_median"] < default["sharpness_median"] - 0.2
    assert default["psnr"] > 10 and default["identity"] is None and default["ms_per_frame"] > 0


def test_unknown_field_and_bad_json_are_explained(project, capsys):
    assert detail_sweep.main([str(project.root), "--variant", '{"sharpen": 2}']) == 2
    assert "not a DetailConfig field: sharpen" in capsys.readouterr().err
    assert detail_sweep.main([str(project.root), "--variant", "{oops"]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_videos_black_bars_are_left_out_of_the_score(project, capsys, monkeypatch):
    """As `eval`'s rows without the video's background: where a crop shows one of the video's black bars
    (`TrackingData.picture_masks` 0), the render is not scored against it."""
    assert detail_sweep.main([str(project.root)]) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]

    def half_bar(self, rows, size=None):
        m = np.ones((len(rows), size, size), np.float32)
        m[:, :, : size // 2] = 0.0
        return m

    monkeypatch.setattr(TrackingData, "picture_masks", half_bar)
    assert detail_sweep.main([str(project.root)]) == 0
    barred = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]
    # half of every crop is "bar", scored as a perfect match: the error left is the other half's
    assert barred["psnr"] > plain["psnr"] + 2.0
