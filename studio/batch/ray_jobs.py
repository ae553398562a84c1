"""The queue's jobs as Ray jobs on an existing Ray cluster (Ray Jobs API, ``JobSubmissionClient``).

Each avatar is one Ray job whose entrypoint is the same ``python -m studio.cli run …`` command a
local ``queue run`` starts, so a job on the cluster does exactly what it does here. Ray schedules
the jobs by the resources they ask for (``--cpus-per-job``, ``--gpus-per-job``) and runs as many at
once as the cluster has room for. The cluster's machines must see the videos and project folders
at the same paths (a shared file system) and have Avatar Studio installed (``--python`` names
the interpreter there; default: this one's path).

`run_ray` submits the pending jobs and follows them until every one has ended, recording each
job's status in the queue and its logs in ``logs/<id>.log``; a failed job is recorded and the
others go on. Stopped with Ctrl-C, the jobs keep running on the cluster; the next
``queue run --ray`` follows them again instead of submitting them twice.

Ray is an optional extra: ``pip install -e ".[cluster]"``.
"""
from __future__ import annotations

import shlex
import sys
import time
import uuid
from typing import Callable

from ..errors import StudioError
from ..project import now_iso
from . import Job, Queue, last_error

DASHBOARD_PORT = 8265
ACTIVE = ("PENDING", "RUNNING")


def _ray_missing() -> StudioError:
    return StudioError("Ray is not installed in this Python environment",
                       'install the cluster extra: pip install -e ".[cluster]"')


def dashboard_url(address: str) -> str:
    """``HOST[:PORT]`` or ``http(s)://HOST:PORT`` → the URL of the cluster's dashboard (Jobs API)."""
    address = address.strip().rstrip("/")
    if "://" in address:
        return address
    host, _, port = address.partition(":")
    return f"http://{host}:{port or DASHBOARD_PORT}"


def connect(address: str):
    """A `JobSubmissionClient` for the cluster at `address`, or a one-line error saying what to check."""
    try:
        import logging

        from ray.job_submission import JobSubmissionClient
        logging.getLogger("ray").setLevel(logging.ERROR)
    except ImportError:
        raise _ray_missing() from None
    url = dashboard_url(address)
    try:
        return JobSubmissionClient(url)
    except Exception as exc:  # ConnectionError, a refused connection, not a Ray dashboard
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StudioError(f"cannot reach the Ray cluster at {url} ({type(exc).__name__}: {first[:120]})",
                          f"check that the cluster runs (`ray start --head --dashboard-host 0.0.0.0` on its head "
                          f"machine), that {url} is its dashboard address (port {DASHBOARD_PORT} by default) and "
                          f"that this machine can reach that port") from None


def submit(client, job: Job, *, python: str, cpus: float, gpus: float, env: dict[str, str] | None = None) -> str:
    sid = f"avatar-studio-{job.id}-{uuid.uuid4().hex[:8]}"
    client.submit_job(entrypoint=shlex.join(job.command(python)), submission_id=sid,
                      entrypoint_num_cpus=cpus, entrypoint_num_gpus=gpus or None,
                      runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1", **(env or {})}},
                      metadata={"avatar_studio_job": job.id, "video": job.video})
    return sid


def _finish(queue: Queue, client, job: Job, status: str, say: Callable[[str], None]) -> str:
    """Record a job that ended on the cluster: its logs into the queue's log file, its status."""
    try:
        logs = client.get_job_logs(job.ray_job)
    except Exception as exc:
        logs = f"(the logs could not be fetched: {type(exc).__name__}: {exc})\n"
    path = queue.log_path(job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"=== attempt {job.attempts} on Ray {job.where}, job {job.ray_job}, ended {status}, {now_iso()}\n")
        f.write(logs if logs.endswith("\n") else logs + "\n")
    if status == "SUCCEEDED":
        queue.update(job.id, status="done", finished=now_iso(), returncode=0)
        say(f"job {job.id}: done on the cluster ({job.project})")
        return "done"
    info = None
    try:
        info = client.get_job_info(job.ray_job)
    except Exception:
        pass
    rc = getattr(info, "driver_exit_code", None)
    err = last_error(logs) if logs.strip() else ""
    if not err or not err.startswith("error:"):
        msg = (getattr(info, "message", "") or "").strip().splitlines()
        err = err or (msg[0][:300] if msg else f"the Ray job ended {status}")
    if status == "STOPPED":
        err = f"stopped on the cluster (Ray job {job.ray_job})"
    queue.update(job.id, status="failed", finished=now_iso(), returncode=rc, error=err)
    say(f"job {job.id}: FAILED on the cluster: {err} — full output: avatar-studio queue log {job.id}")
    return "failed"


def _status(client, sid: str) -> str | None:
    """The Ray job's status name, or None when the cluster does not know it (restarted)."""
    try:
        return str(client.get_job_status(sid).value)
    except RuntimeError:  # "Job ... does not exist"
        return None


def run_ray(queue: Queue, address: str, *, cpus: float = 1, gpus: float = 0, python: str = sys.executable,
            retry_failed: bool = False, poll_s: float = 2.0, env: dict[str, str] | None = None,
            say: Callable[[str], None] = print) -> dict[str, int]:
    """Submit the pending jobs to the Ray cluster at `address` and follow every job there until it
    ends. Returns {"done": n, "failed": m} over the jobs that ended while it followed them."""
    client = connect(address)
    url = dashboard_url(address)
    counts = {"done": 0, "failed": 0}
    with queue.runner():
        # jobs a previous `queue run --ray` submitted here and left running: follow them, don't resubmit
        following: list[str] = []
        for job in queue.jobs():
            if job.status == "running" and job.where == url and job.ray_job:
                st = _status(client, job.ray_job)
                if st is None:
                    queue.update(job.id, status="interrupted", error="the cluster no longer knows this job")
                elif st in ACTIVE:
                    following.append(job.id)
                else:
                    counts[_finish(queue, client, job, st, say)] += 1
        for job in queue.jobs():
            stale = job.status == "running" and job.where in ("local", "")
            if not (job.status in ("queued", "interrupted") or stale or (retry_failed and job.status == "failed")):
                continue
            if job.id in following:
                continue
            try:
                sid = submit(client, job, python=python, cpus=cpus, gpus=gpus, env=env)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                queue.update(job.id, status="failed", error=f"the cluster refused the job: {first}", where=url)
                counts["failed"] += 1
                say(f"job {job.id}: FAILED: the cluster refused it ({first})")
                continue
            queue.update(job.id, status="running", where=url, ray_job=sid, started=now_iso(), finished="", error="",
                         attempts=job.attempts + 1, returncode=None)
            following.append(job.id)
            say(f"job {job.id}: submitted to {url} as {sid} ({job.video})")
        while following:
            time.sleep(poll_s)
            for job_id in list(following):
                job = queue.get(job_id)
                try:
                    st = _status(client, job.ray_job)
                except Exception as exc:
                    raise StudioError(f"lost the Ray cluster at {url} ({type(exc).__name__})",
                                      "the jobs keep running there; run `avatar-studio queue run --ray "
                                      f"{address}` again to follow them") from None
                if st is None:
                    queue.update(job_id, status="interrupted", error="the cluster no longer knows this job")
                    following.remove(job_id)
                elif st not in ACTIVE:
                    counts[_finish(queue, client, job, st, say)] += 1
                    following.remove(job_id)
    return counts


def live_log(job: Job) -> str | None:
    """The logs of a job that is running on a cluster now, or None when they cannot be fetched."""
    if not job.ray_job or not job.where or job.where == "local":
        return None
    try:
        return connect(job.where).get_job_logs(job.ray_job)
    except Exception:  # Ray missing here, the cluster gone, the job forgotten: show the saved log instead
        return None


def refresh(queue: Queue, say: Callable[[str], None] = lambda s: None) -> None:
    """Bring the queue's "running" Ray jobs up to date when nobody follows them (for `queue list`)."""
    if queue.runner_busy():
        return  # a `queue run` follows them and records their ends itself
    for job in queue.jobs():
        if job.status != "running" or not job.ray_job or job.where in ("", "local"):
            continue
        try:
            client = connect(job.where)
            st = _status(client, job.ray_job)
        except StudioError:
            continue
        if st is None:
            queue.update(job.id, status="interrupted", error="the cluster no longer knows this job")
        elif st not in ACTIVE:
            _finish(queue, client, job, st, say)
