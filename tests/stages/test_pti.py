"""Stage `pti`: cancelled mid-tuning, the rerun resumes from its checkpoint and finishes."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from studio.errors import Cancelled
from studio.pipeline import run_stage
from studio.progress import Control
from studio.project import Project



def tiny_generator(path, resolution=32):
    """A random 32x32 generator in our own checkpoint format (PTI only needs a generator)."""
    import torch

    from models.stylegan2 import GeneratorConfig
    from models.stylegan2.checkpoint import save_generator

    torch.manual_seed(0)
    cfg = GeneratorConfig.small(resolution)
    cfg.z_dim = cfg.w_dim = 32
    cfg.channel_base, cfg.channel_max = 512, 32
    save_generator(cfg.build(), cfg, path)

CFG = {"invert_steps": 6, "tune_steps": 40, "tune_batch": 3, "target_psnr": 60, "checkpoint_every_s": 1}


def project_with_prior(tracked_d3, tmp_path, pivots: int) -> Project:
    """A copy of the tracked d3 project with `pivots` pivots and the tiny generator as its prior."""
    root = tmp_path / "p"
    shutil.copytree(tracked_d3.root, root)
    proj = Project.open(root)
    run_stage(proj, "pivots", {"k": pivots})
    tiny_generator(tmp_path / "g.safetensors")
    run_stage(proj, "prior", {"pretrained": str(tmp_path / "g.safetensors")})
    return proj


def test_cancelled_pti_resumes_in_tuning(tracked_d3, tmp_path):
    proj = project_with_prior(tracked_d3, tmp_path, 5)
    root = proj.root

    control = Control()

    def slow_then_cancel(ev):
        if ev.part == "tune":
            time.sleep(0.12)  # so that the 1-second checkpoint falls inside the tuning
            if ev.step >= 20:
                control.cancel()

    with pytest.raises(Cancelled):
        run_stage(proj, "pti", CFG, control=control, on_progress=slow_then_cancel)
    assert proj.record("pti")["status"] == "cancelled"
    assert (root / "pti" / "train.ckpt").exists()

    messages = []
    res = run_stage(Project.open(root), "pti", CFG, on_progress=lambda e: messages.append(e.message))
    resumed = [m for m in messages if m.startswith("resumed tune at step")]
    assert resumed and int(resumed[0].split(" step ")[1].split()[0]) > 0, messages[:5]
    assert res["summary"]["tune_steps"] == 40
    assert np.isfinite(res["summary"]["inversion_psnr"])  # kept across the resume


@pytest.mark.parametrize("arcface", ["fixture", "absent", "corrupt"])
def test_tuning_uses_the_face_losses_when_the_arcface_file_is_there(tracked_d3, tmp_path, monkeypatch, arcface):
    """With an ArcFace file (a fixture in the real file's format) the tuning adds the face feature and
    identity losses, logs them and tunes the generator differently from a run without them; without a
    file it tunes on the rest and the warning names the file; an unreadable file stops it with a message."""
    import torch
    from safetensors.torch import load_file

    from studio.errors import InputError
    from tests.conftest import use_arcface

    proj = project_with_prior(tracked_d3, tmp_path, 4)
    root = proj.root
    use_arcface(monkeypatch, tmp_path, arcface)
    cfg = {"invert_steps": 2, "tune_steps": 6, "tune_batch": 3, "face_batch": 2, "target_psnr": 60,
           "heldout_invert_steps": 0, "checkpoint_every_s": 0}
    if arcface == "corrupt":
        with pytest.raises(InputError, match="ArcFace file"):
            run_stage(proj, "pti", cfg)
        return
    events = []
    res = run_stage(proj, "pti", cfg, on_progress=events.append)
    tuned = [e.losses for e in events if e.part == "tune" and e.losses]
    if arcface == "absent":
        assert res["summary"]["face_loss"] is False and not any("face" in v for v in tuned)
        assert any("arcface" in w and "models add" in w for w in res["warnings"])
        return
    assert res["summary"]["face_loss"] is True and not any("ArcFace" in w for w in res["warnings"])
    assert tuned and all(np.isfinite(v["face"]) and v["face"] > 0 and 0 <= v["identity"] <= 2 for v in tuned)
    with_face = load_file(str(root / "pti" / "generator.safetensors"))
    off = run_stage(proj, "pti", dict(cfg, face_weight=0.0, identity_weight=0.0), force=True)
    assert off["summary"]["face_loss"] is False and not off["warnings"]
    without = load_file(str(root / "pti" / "generator.safetensors"))
    assert any(not torch.equal(with_face[k], without[k]) for k in with_face), "the face losses changed nothing"
