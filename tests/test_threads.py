"""The "auto" thread count: the cores other programs leave free, measured from the CPU time the
machine and this process used (not the 1-minute load average, which still counts a job that ended
a minute ago)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from studio import compute


@pytest.fixture
def fake_proc(monkeypatch):
    """Feeds `others_busy_cores` snapshots (wall s, machine busy CPU s, own CPU s) one by one."""
    snaps: list[tuple[float, float, float]] = []
    monkeypatch.setattr(compute, "_cpu_snapshot", lambda: snaps.pop(0) if snaps else None)
    monkeypatch.setattr(compute, "_last_snapshot", None)
    monkeypatch.setattr(compute.time, "sleep", lambda s: None)
    monkeypatch.delenv("AVATAR_STUDIO_THREADS", raising=False)
    monkeypatch.setattr(compute.os, "cpu_count", lambda: 2)
    return snaps


def test_others_are_the_machines_busy_time_less_this_process(fake_proc):
    # first call: a fresh sample; in 0.5 s the machine was busy 0.9 CPU-s, 0.4 of them ours
    fake_proc += [(100.0, 50.0, 10.0), (100.5, 50.9, 10.4)]
    assert compute.others_busy_cores() == pytest.approx(1.0)
    # next call 10 s later measures since the last one: 12 CPU-s busy, 10 ours → 0.2 cores
    fake_proc += [(110.5, 62.9, 20.4)]
    assert compute.others_busy_cores() == pytest.approx(0.2)
    # asked again at once: the last answer, no new sample
    fake_proc += [(110.55, 62.9, 20.4)]
    assert compute.others_busy_cores() == pytest.approx(0.2)


def test_pick_threads_uses_the_measured_cores_not_the_load_average(fake_proc, monkeypatch):
    monkeypatch.setattr(compute.os, "getloadavg", lambda: (1.6, 1.8, 1.7))  # a job that just ended
    fake_proc += [(0.0, 0.0, 0.0), (1.0, 0.1, 0.0)]                       # now: others 0.1 core
    assert compute.pick_threads() == 2
    fake_proc += [(11.0, 10.1, 0.0)]                                        # then: another program on one core
    assert compute.pick_threads() == 1
    assert compute.pick_threads(requested=2) == 2                           # asked for: given


def test_without_proc_the_load_average_decides(fake_proc, monkeypatch):
    monkeypatch.setattr(compute.os, "getloadavg", lambda: (1.2, 1.8, 1.7))
    assert compute.pick_threads() == 1
    assert compute.pick_threads(current=1) == 2  # our own thread is in the load average


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_a_busy_program_is_seen():
    """A real program spinning on one core shows up as about one busy core."""
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.5)
        compute._last_snapshot = None
        busy = compute.others_busy_cores(sample_s=1.0)
    finally:
        spin.kill()
        spin.wait()
    assert busy is not None and busy >= 0.6, busy
