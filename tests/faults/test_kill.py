"""`kill -9` at random instants of every non-training command (training stages: see
tests/stages/test_resume_exact.py). After each kill the project opens, `status` exits 0 and says
no stage is running, and the same command run again finishes; an export killed mid-way leaves no
output file and no partial file, and an earlier export is untouched."""
from __future__ import annotations

import hashlib
import random
import shutil
import time
from pathlib import Path

from studio.pipeline import stage_state
from studio.project import Project, is_project
from tests.faults.conftest import assert_status_truthful, cli, copy_project, kill_at, random_instants, timed
from tests.stages.test_nerf import make_project


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_new(tmp_path, short_clip):
    full = timed(["new", tmp_path / "ref", "--video", short_clip])
    hits = 0
    for i, t in enumerate(random_instants(full, 2, seed=1)):
        root = tmp_path / f"p{i}"
        hits += kill_at(["new", root, "--video", short_clip], t)
        finished = False
        if is_project(root):  # killed after the manifest was written
            assert_status_truthful(root)
            finished = stage_state(Project.open(root), "track") == "done"
        r = cli("new", root, "--video", short_clip)
        if finished:  # killed while printing the summary: the project is complete and kept as it is
            assert r.returncode == 2 and "already exists" in r.stderr, r.stderr
        else:  # an unfinished `new` of the same video is resumed
            assert r.returncode == 0, r.stdout + r.stderr
        proj = Project.open(root)
        assert stage_state(proj, "track") == "done"
        assert len(list((root / "track" / "crops").glob("*.png"))) >= 20
    assert hits >= 1, "no kill hit a running process: the instants are wrong"


def test_kill_pivots(tmp_path):
    make_project(tmp_path / "ref")
    full = timed(["run-stage", tmp_path / "ref", "pivots", "--set", "k=6"])
    for i, t in enumerate(random_instants(full, 2, seed=2)):
        root = make_project(tmp_path / f"p{i}").root
        kill_at(["run-stage", root, "pivots", "--set", "k=6"], t)
        assert_status_truthful(root)
        r = cli("run-stage", root, "pivots", "--set", "k=6")
        assert r.returncode == 0, r.stdout + r.stderr
        assert stage_state(Project.open(root), "pivots") == "done"


def _frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_kill_export(tmp_path, nerf_project):
    """Kill an export that overwrites an earlier one of the same name: the earlier clip stays whole
    (or the new one is there whole, when the kill came after the final rename), nothing partial."""
    root = copy_project(nerf_project, tmp_path / "p")
    out = tmp_path / "clip.mp4"
    full = timed(["export", root, "-o", out, "--source", "turntable", "--duration", "2"])
    before = _sha(out)
    assert _frames(out) == 50
    again = ["export", root, "-o", out, "--source", "turntable", "--duration", "3"]
    hits = 0
    for t in random_instants(full, 2, seed=3):
        hits += kill_at(again, t)
        assert _sha(out) == before or _frames(out) == 75, "a killed export damaged the earlier clip"
        assert_status_truthful(root)
        r = cli(*again)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _frames(out) == 75
        assert not list(tmp_path.glob(".clip.*")), "the rerun must sweep what the killed export left"
        # back to the 2 s clip for the next round
        assert cli("export", root, "-o", out, "--source", "turntable", "--duration", "2").returncode == 0
        before = _sha(out)
    assert hits >= 1


def test_kill_driver_tracking(tmp_path, nerf_project, short_clip):
    """Kill `export --source driver` while it tracks the driver into drivers/: the rerun finishes."""
    import os
    import signal
    import subprocess
    import sys

    from tests.faults.conftest import REPO, env

    root = copy_project(nerf_project, tmp_path / "p")
    out = tmp_path / "driven.mp4"
    args = ["export", root, "-o", out, "--source", "driver", "--driver", short_clip]
    rng = random.Random(4)
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", *map(str, args)], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not list((root / "drivers").glob("*/project.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.2, 3.0))
    hit = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL) if hit else None
    proc.wait()
    assert hit, "the driver export finished before the kill"
    assert not out.exists()
    assert_status_truthful(root)
    (driver,) = (root / "drivers").iterdir()
    assert_status_truthful(driver)
    assert stage_state(Project.open(driver), "track") != "running"
    r = cli(*args)
    assert r.returncode == 0 and out.stat().st_size > 0, r.stdout + r.stderr
    assert stage_state(Project.open(driver), "track") == "done"
