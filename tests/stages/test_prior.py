"""Stage `prior` with a pretrained StyleGAN2: a tiny generator written by the test in our own
format is imported instead of training a subject prior; unusable files fail with a plain error.
(The trained subject prior and its kill/resume test are in tests/pvp/test_pvp_stages.py.)"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from studio.errors import StudioError
from studio.pipeline import run_stage
from studio.project import Project
from studio.tracking.data import TrackingData


def tiny_generator(path, resolution=32, seed=0):
    from models.stylegan2 import GeneratorConfig
    from models.stylegan2.checkpoint import save_generator

    torch.manual_seed(seed)
    cfg = GeneratorConfig.small(resolution)
    cfg.z_dim = cfg.w_dim = 32
    cfg.channel_base, cfg.channel_max = 512, 32
    G = cfg.build()
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, cfg.z_dim))[:, 0].mean(0))
    save_generator(G, cfg, path)
    return G, cfg


@pytest.fixture()
def proj(tracked_d3, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(tracked_d3.root, root)
    p = Project.open(root)
    run_stage(p, "pivots", {"k": 6})
    return p


def test_pretrained_generator_is_imported_and_tuned(proj, tmp_path):
    G0, _ = tiny_generator(tmp_path / "tiny.safetensors")
    res = run_stage(proj, "prior", {"pretrained": str(tmp_path / "tiny.safetensors")})
    assert res["summary"]["source"] == "pretrained" and res["summary"]["resolution"] == 32
    assert "encoder" not in res["outputs"]  # nothing was trained
    from models.stylegan2.checkpoint import load_generator

    G1, cfg1 = load_generator(proj.output("prior", "generator"))
    for k, v in G0.state_dict().items():
        assert torch.equal(v, G1.state_dict()[k]), k
    # PTI starts from w_avg and samples its locality latents through the mapping network
    res = run_stage(proj, "pti", {"invert_steps": 8, "tune_steps": 30, "tune_batch": 3, "target_psnr": 60,
                                  "locality_every": 1, "w_perceptual": 0.5})
    s = res["summary"]
    assert s["pivot_psnr"] > s["inversion_psnr"] + 0.5, s
    assert "heldout_psnr" in s and "heldout_psnr_direct" not in s  # held-out placed by inversion from w_avg
    with np.load(proj.output("pti", "latents")) as z:
        assert z["ws"].shape == (6, G1.num_ws, 32)


def test_unusable_pretrained_file_is_a_plain_error(proj, tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(StudioError, match="pretrained StyleGAN2 file cannot be used"):
        run_stage(proj, "prior", {"pretrained": str(bad)})
    with pytest.raises(StudioError, match="does not exist"):
        run_stage(proj, "prior", {"pretrained": str(tmp_path / "missing.pkl")})


def test_glo_subject_prior_learns_and_pti_starts_from_its_latents(proj):
    losses = []
    res = run_stage(proj, "prior", {"method": "glo", "resolution": 64, "steps": 60, "batch": 4, "channel_max": 64,
                                    "w_dim": 64, "time_budget_min": 0},
                    on_progress=lambda e: e.part == "prior" and e.losses and losses.append(e.losses["l1"]))
    assert np.mean(losses[-10:]) < 0.95 * np.mean(losses[:10]), "the GLO prior must learn"
    assert "encoder" not in res["outputs"]
    with np.load(proj.output("prior", "latents")) as z:
        ws, rows = z["ws"], z["rows"]
    train, _ = TrackingData.from_project(proj).split()
    assert ws.shape == (len(train), 64) and np.array_equal(rows, train)
    res = run_stage(proj, "pti", {"invert_steps": 0, "tune_steps": 0, "heldout_invert_steps": 3})
    with np.load(proj.output("pti", "latents")) as z:  # no inversion: the pivots keep their prior latents
        piv = z["ws"][:, 0]
    pivot_rows = proj.result("pivots")["rows"]
    assert np.allclose(piv, ws[np.searchsorted(rows, pivot_rows)], atol=1e-6)
    assert {"heldout_psnr", "heldout_ssim", "interp_max_over_mean"} <= set(res["summary"])


def test_the_prior_and_pti_train_in_bfloat16_when_asked(proj):
    """`precision=bf16` (what "auto" picks on a CPU with AMX): the steps run in bfloat16 mixed precision, the
    networks still learn, and what is saved is float32."""
    losses = []
    res = run_stage(proj, "prior", {"resolution": 64, "steps": 60, "batch": 4, "channel_max": 64, "w_dim": 64,
                                    "time_budget_min": 0, "precision": "bf16"},
                    on_progress=lambda e: e.part == "prior" and e.losses and losses.append(e.losses["l1"]))
    assert res["summary"]["precision"] == "bf16"
    assert np.mean(losses[-10:]) < 0.95 * np.mean(losses[:10]), "the prior must learn in bfloat16 too"
    res = run_stage(proj, "pti", {"invert_steps": 8, "tune_steps": 30, "tune_batch": 3, "target_psnr": 60,
                                  "precision": "bf16"})
    s = res["summary"]
    assert s["precision"] == "bf16" and s["pivot_psnr"] > s["inversion_psnr"] + 0.5, s
    from models.stylegan2.checkpoint import load_generator

    G, _ = load_generator(proj.output("pti", "generator"))
    assert all(v.dtype == torch.float32 for v in G.state_dict().values() if v.is_floating_point())
