"""Every training stage resumes exactly: a tiny run killed with SIGKILL at a random step and run
again ends with the same weights, bit for bit, as a run that was never interrupted (same seed,
one CPU thread). Each run is a real `avatar-studio run-stage` process; the kill gives it no
chance to clean up. `status` in between says "interrupted at … step N".
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from studio.pipeline import run_stage
from studio.project import Project

TINY = {
    "prior": {"resolution": 64, "steps": 40, "batch": 2, "channel_max": 64, "w_dim": 64, "checkpoint_every_s": 0},
    "pti": {"invert_steps": 12, "tune_steps": 24, "tune_batch": 2, "target_psnr": 60, "heldout_invert_steps": 2,
            "checkpoint_every_s": 0},
    "mappers": {"steps": 24, "estimator_steps": 12, "batch": 2, "hidden": 32, "checkpoint_every_s": 0},
    "nerf": {"size": 32, "low_res": 16, "samples": 8, "code_dim": 8, "encoder_res": 16, "plane_res": 16,
             "plane_channels": 4, "steps": 30, "batch": 2, "mapper_steps": 12, "preview_every": 10,
             "checkpoint_every_s": 0},
}
OUTPUTS = {"prior": ["generator.safetensors", "encoder.pt"], "pti": ["generator.safetensors", "latents.npz"],
           "mappers": ["mappers.pt"], "nerf": ["model.safetensors"]}
ORDER = ["nerf", "prior", "pti", "mappers"]
"""Each PVP stage's project is the one before it with that stage done (nerf needs only tracking)."""


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", AVATAR_STUDIO_THREADS="1")


def _args(root: Path, stage: str) -> list[str]:
    out = [sys.executable, "-m", "studio.cli", "run-stage", str(root), stage]
    for k, v in TINY[stage].items():
        out += ["--set", f"{k}={v}"]
    return out


def _steps_done(root: Path, stage: str) -> int:
    try:
        rec = json.loads((root / "project.json").read_text())["stages"].get(stage, {})
    except (OSError, ValueError):  # caught between the atomic rename and the read: try again
        return 0
    return sum((rec.get("progress") or {}).values())


def _load(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path) as z:
            return {k: torch.from_numpy(z[k]) for k in z.files}
    obj = torch.load(path, weights_only=True)
    flat = {}

    def walk(prefix, o):
        if isinstance(o, dict):
            for k, v in o.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(o, torch.Tensor):
            flat[prefix] = o
    walk("", obj)
    return flat


@pytest.fixture(scope="module")
def base(tracked_d3, tmp_path_factory):
    """A project per training stage, with every upstream stage it needs done (tiny settings). The upstream
    prior and PTI runs are the same `run-stage` commands the tests run, uninterrupted: they are the
    reference runs of the prior and PTI tests (`REFERENCE`)."""
    os.environ["AVATAR_STUDIO_THREADS"] = "1"
    top = tmp_path_factory.mktemp("resume")
    roots = {"nerf": top / "nerf", "prior": top / "prior"}
    shutil.copytree(tracked_d3.root, roots["nerf"])
    shutil.copytree(tracked_d3.root, roots["prior"])
    run_stage(Project.open(roots["prior"]), "pivots", {"k": 4})
    for stage, before in (("pti", "prior"), ("mappers", "pti")):
        roots[stage] = top / stage
        shutil.copytree(roots[before], roots[stage])
        ref = subprocess.run(_args(roots[stage], before), capture_output=True, text=True, env=_env(), timeout=900)
        assert ref.returncode == 0, ref.stderr[-2000:]
    return roots


REFERENCE = {"prior": "pti", "pti": "mappers"}
"""Stage -> the base project whose upstream run of that stage is the stage's uninterrupted reference run."""


@pytest.mark.parametrize("stage", ["prior", "pti", "mappers", "nerf"])
def test_sigkill_at_a_random_step_then_rerun_equals_an_uninterrupted_run(base, tmp_path, stage):
    total = sum(v for k, v in TINY[stage].items() if k in ("steps", "invert_steps", "tune_steps", "estimator_steps",
                                                           "mapper_steps"))
    kill_at = random.Random(time.time_ns()).randint(2, total - 3)
    b = tmp_path / "b"
    shutil.copytree(base[stage], b)
    if stage in REFERENCE:  # the base fixture ran this very command on this very project, uninterrupted
        a = base[REFERENCE[stage]]
    else:
        a = tmp_path / "a"
        shutil.copytree(base[stage], a)
        ref = subprocess.run(_args(a, stage), capture_output=True, text=True, env=_env(), timeout=900)
        assert ref.returncode == 0, ref.stderr[-2000:]

    proc = subprocess.Popen(_args(b, stage), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and _steps_done(b, stage) < kill_at:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before step {kill_at}: make the tiny run longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _steps_done(b, stage)
    assert 0 < killed_at < total, (killed_at, total)

    status = subprocess.run([sys.executable, "-m", "studio.cli", "status", str(b)], capture_output=True, text=True,
                            env=_env(), timeout=300)
    assert status.returncode == 0, status.stderr
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith(stage))
    assert "interrupted" in line, status.stdout
    assert "interrupted at" in status.stdout and "run the same command to resume" in status.stdout

    again = subprocess.run(_args(b, stage), capture_output=True, text=True, env=_env(), timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed" in again.stdout + again.stderr, f"no resume after the kill at step {killed_at}"

    for name in OUTPUTS[stage]:
        ta, tb = _load(a / stage / name), _load(b / stage / name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), f"{stage}/{name}:{k} differs after a kill at step {killed_at}"
