"""One process at a time per project: a second one gets a clear "busy" message (exit code 2),
and a run whose process died shows as "interrupted", not "running"."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from studio.errors import ProjectError
from studio.lock import is_busy, project_lock
from studio.pipeline import stage_state
from studio.project import Project

HOLD = textwrap.dedent("""
    import sys, time
    from studio.lock import project_lock
    with project_lock(sys.argv[1], "a test holder"):
        print("held", flush=True)
        time.sleep(60)
""")


def _hold(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_while_the_first_works(tmp_path):
    proj = Project.create(tmp_path / "p")
    holder = _hold(proj.root)
    try:
        assert is_busy(proj.root)
        with pytest.raises(ProjectError) as err:
            with project_lock(proj.root):
                pass
        assert "busy" in str(err.value) and str(holder.pid) in str(err.value) and "a test holder" in str(err.value)
        cli = subprocess.run([sys.executable, "-m", "studio.cli", "run-stage", str(proj.root), "ingest"],
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 2, cli.stdout + cli.stderr
        assert "busy" in cli.stderr and "Traceback" not in cli.stderr
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert not is_busy(proj.root), "the lock must vanish with its process, however it ended"
    with project_lock(proj.root):
        assert is_busy(proj.root)
        with project_lock(proj.root):  # re-entrant in one process (a pipeline, then its stages)
            pass
        assert is_busy(proj.root)
    assert not is_busy(proj.root)


def test_a_dead_run_is_interrupted_not_running(tmp_path):
    proj = Project.create(tmp_path / "p")
    proj.update_record("ingest", status="running", progress={"decode": 40})
    assert stage_state(proj, "ingest") == "interrupted"  # nobody holds the lock
    holder = _hold(proj.root)
    try:
        assert stage_state(proj, "ingest") == "running"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    out = subprocess.run([sys.executable, "-m", "studio.cli", "status", str(proj.root)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0
    assert "interrupted at decode step 40 — run the same command to resume" in out.stdout


def test_two_cli_runs_at_once(tmp_path, short_clip):
    """Two real `avatar-studio` processes on one project: while the first trains, the second says
    the project is busy; after the first is killed, `status` says interrupted and a rerun works."""
    root = tmp_path / "p"
    made = subprocess.run([sys.executable, "-m", "studio.cli", "new", str(root), "--video", str(short_clip)],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-1000:]
    first = subprocess.Popen([sys.executable, "-m", "studio.cli", "run-stage", str(root), "nerf", "--set",
                              "steps=100000", "--set", "size=16", "--set", "low_res=8", "--set", "plane_res=16",
                              "--set", "encoder_res=16", "--set", "samples=4"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None and \
                not (is_busy(root) and Project.open(root).record("nerf").get("status") == "running"):
            time.sleep(0.1)
        assert first.poll() is None, "the first run ended early"
        second = subprocess.run([sys.executable, "-m", "studio.cli", "run-stage", str(root), "pivots"],
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and "busy" in second.stderr, second.stdout + second.stderr
        assert "Traceback" not in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    status = subprocess.run([sys.executable, "-m", "studio.cli", "status", str(root)], capture_output=True,
                            text=True, timeout=300)
    assert "interrupted" in status.stdout, status.stdout
    again = subprocess.run([sys.executable, "-m", "studio.cli", "run-stage", str(root), "pivots"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-1000:]


def test_a_session_changes_settings_under_the_lock_on_the_manifest_on_disk(tmp_path):
    """`Session.change` (the CLI's `config` and `run` and the window's settings all go through it): the change is
    made on project.json as it is now, keeping what another writer put there since the session read it, and
    a project that another process works on is refused with nothing written."""
    from studio.session import Session

    proj = Project.create(tmp_path / "p")
    session = Session(Project.open(proj.root))          # read before the other writer wrote
    Project.open(proj.root).update_record("ingest", status="failed", error="written by a stage process")
    assert session.change("a test: preset", lambda s: s.set_preset("quality")) == []
    saved = Project.open(proj.root)
    assert saved.preset == "quality" and saved.record("ingest").get("error") == "written by a stage process"
    assert not is_busy(proj.root), "the lock is let go after the change"
    holder = _hold(proj.root)
    try:
        before = (proj.root / "project.json").read_bytes()
        with pytest.raises(ProjectError, match="busy"):
            session.change("a test: device", lambda s: s.set_device("cpu"))
        assert (proj.root / "project.json").read_bytes() == before
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
