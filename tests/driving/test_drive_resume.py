"""`avatar-studio drive` killed with SIGKILL at a random step and run again ends with the same
weights, bit for bit, as a run that never stopped (same seed, one CPU thread); in between the
actor shows as "interrupted at … step N". Each run is a real process on a synthetic project."""
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

import torch

from studio.driving.actors import actor_state
from studio.project import Project

from .synth import TINY, make_pair

SETTINGS = {**TINY, "steps": 160, "map_steps": 40}
TOTAL = SETTINGS["steps"] + SETTINGS["map_steps"]  # no NeRF engine: one mapping part


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", AVATAR_STUDIO_THREADS="1")


def _args(avatar: Path, actor: Path) -> list[str]:
    out = [sys.executable, "-m", "studio.cli", "drive", str(avatar), "--actor", str(actor)]
    for k, v in SETTINGS.items():
        out += ["--set", f"{k}={v}"]
    return out


def _steps(actor: Path) -> int:
    try:
        rec = json.loads((actor / "project.json").read_text())["stages"].get("yshape", {})
    except (OSError, ValueError):  # read between the atomic rename and the write: try again
        return 0
    return sum((rec.get("progress") or {}).values())


def _weights(actor: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for name in ("yshape.safetensors", "mappings.safetensors"):
        out.update({f"{name}:{k}": v for k, v in load_file(str(actor / "yshape" / name)).items()})
    return out


def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path):
    base_avatar, base_actor = make_pair(tmp_path / "base")
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(base_avatar.root, a)
    shutil.copytree(base_avatar.root, b)
    rel = base_actor.relative_to(base_avatar.root)

    ref = subprocess.run(_args(a, a / rel), capture_output=True, text=True, env=_env(), timeout=900)
    assert ref.returncode == 0, ref.stderr[-2000:]
    assert "actor trained in" in ref.stdout

    kill_at = random.Random(time.time_ns()).randint(5, TOTAL - 10)
    proc = subprocess.Popen(_args(b, b / rel), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and _steps(b / rel) < kill_at:
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before step {kill_at}: make the tiny run longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _steps(b / rel)
    assert 0 < killed_at < TOTAL, (killed_at, TOTAL)
    state, note = actor_state(Project.open(b), Project.open(b / rel))
    assert state == "interrupted" and "interrupted at" in note, (state, note)

    again = subprocess.run(_args(b, b / rel), capture_output=True, text=True, env=_env(), timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed" in again.stdout + again.stderr, f"no resume after the kill at step {killed_at}"
    wa, wb = _weights(a / rel), _weights(b / rel)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs after a kill at step {killed_at}"
