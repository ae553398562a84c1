"""Helpers for the fault tests: real `avatar-studio` processes (killed, or with one injected fault),
a tiny trained NeRF project, and a truthful-status check."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.stages.test_nerf import TINY, make_project

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FAULTY = HERE / "_faulty_cli.py"


def env(**extra) -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", AVATAR_STUDIO_THREADS="1", **extra)


def cli(*args, fault: str = "", timeout: float = 300, **extra) -> subprocess.CompletedProcess:
    """Run `avatar-studio ARGS` (with `fault` injected, see _faulty_cli.py) and wait."""
    cmd = [sys.executable, str(FAULTY), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=env(AVATAR_FAULT=fault, **extra))


def kill_at(args, delay: float, timeout: float = 300) -> bool:
    """Start `avatar-studio ARGS`, SIGKILL it (and its children: ffmpeg) after `delay` s.
    Returns True when the kill hit a running process, False when it had already finished."""
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", *map(str, args)], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
        return True


def timed(args, timeout: float = 300) -> float:
    t0 = time.perf_counter()
    r = cli(*args, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return time.perf_counter() - t0


def random_instants(total: float, n: int, seed: int) -> list[float]:
    """`n` instants in the run (startup included), spread over it; reproducible per seed."""
    rng = random.Random(seed)
    return sorted(rng.uniform(0.15, 0.95) * total for _ in range(n))


def assert_status_truthful(root: Path) -> str:
    """`status` exits 0 and no stage claims to be running (nobody runs now)."""
    from studio.project import Project
    from studio.stages import REGISTRY

    Project.open(root)
    r = cli("status", root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in REGISTRY:
            assert parts[1] != "running", f"a dead run shows as running:\n{r.stdout}"
    return r.stdout


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and r.stderr.strip().splitlines()[-1] == lines[0], r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def nerf_project(tmp_path_factory) -> Path:
    """A tiny trained NeRF project (seconds on CPU); copy it before changing it."""
    from studio.pipeline import run_stage

    proj = make_project(tmp_path_factory.mktemp("faults") / "tiny")
    run_stage(proj, "nerf", dict(TINY))
    return proj.root


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
