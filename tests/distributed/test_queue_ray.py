"""The queue on a Ray cluster: a local Ray cluster on the loopback address (``ray.init`` with its
dashboard, which serves the Jobs API), two tiny avatars and one job whose video is gone, run by
``avatar-studio queue run --ray http://127.0.0.1:PORT`` as three Ray jobs. The two avatars are
made, the third job is reported failed with the reason, and each job's log is in the queue.

Needs Ray (``pip install -e ".[cluster]"``); skipped without it. The default test environment
does not install it; run this file from an environment that has it, e.g.
``python3 -m venv /tmp/rayvenv && /tmp/rayvenv/bin/pip install -e ".[test,cluster]"`` then
``/tmp/rayvenv/bin/python -m pytest tests/distributed/test_queue_ray.py``.
"""
from __future__ import annotations

import json
import os
import socket

import pytest

from tests.distributed.test_queue import TINY_NERF, cli, tiny_settings

ray = pytest.importorskip("ray", reason='Ray is not installed here (pip install -e ".[cluster]" to run this test)')


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def ray_dashboard():
    os.environ["AVATAR_STUDIO_THREADS"] = "1"  # the jobs inherit the cluster's environment
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
                   dashboard_port=_free_port(), _node_ip_address="127.0.0.1", configure_logging=False,
                   log_to_driver=False)
    try:
        yield "http://" + ctx.dashboard_url
    finally:
        ray.shutdown()


def test_two_avatars_as_ray_jobs_and_a_failed_one_reported(ray_dashboard, tmp_path, short_clip):
    import shutil

    videos = []
    for name in ("anna.mp4", "ben.mp4", "gone.mp4"):
        shutil.copy(short_clip, tmp_path / name)
        videos.append(str(tmp_path / name))
    queue, avatars = tmp_path / "queue", tmp_path / "avatars"
    add = cli("queue", "add", *videos, "--queue", str(queue), "--out", str(avatars), "--engine", "nerf",
              "--device", "cpu", "--no-eval", *tiny_settings())
    assert add.returncode == 0, add.stderr
    (tmp_path / "gone.mp4").unlink()

    run = cli("queue", "run", "--ray", ray_dashboard, "--queue", str(queue), "--cpus-per-job", "1", timeout=900)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert out.count("submitted to") == 3, out
    assert "job 1: done on the cluster" in out and "job 2: done on the cluster" in out, out
    assert "job 3: FAILED on the cluster" in out and "does not exist" in out, out

    jobs = {j["id"]: j for j in json.loads((queue / "queue.json").read_text())["jobs"]}
    assert [jobs[i]["status"] for i in "123"] == ["done", "done", "failed"]
    assert all(jobs[i]["where"] == ray_dashboard and jobs[i]["ray_job"].startswith(f"avatar-studio-{i}-")
               for i in "123")
    for name in ("anna_avatar", "ben_avatar"):
        manifest = json.loads((avatars / name / "project.json").read_text())
        assert manifest["stages"]["nerf"]["status"] == "done"
        assert manifest["stages"]["nerf"]["result"]["summary"]["steps"] == TINY_NERF["steps"]

    log1 = cli("queue", "log", "1", "--queue", str(queue))
    assert "avatar ready in" in log1.stdout and "on Ray" in log1.stdout, log1.stdout
    log3 = cli("queue", "log", "3", "--queue", str(queue))
    assert "gone.mp4 does not exist" in log3.stdout, log3.stdout
    listed = cli("queue", "list", "--queue", str(queue))
    assert listed.stdout.count(f"ray {ray_dashboard} job avatar-studio-") == 3, listed.stdout
