"""A queue of avatars: many videos, each made into an avatar by the same `avatar-studio run` command.

``avatar-studio queue add VIDEO…`` puts jobs in a queue folder, ``queue run`` runs them one after
another on this machine (`run_local`) or as Ray jobs on a cluster (``--ray ADDRESS``,
`studio.batch.ray_jobs`), ``queue list`` / ``queue log ID`` show each job's status and output.

The queue folder (``--queue DIR``; default ``$AVATAR_STUDIO_QUEUE``, else ``queue/`` in the settings
folder) holds:

- ``queue.json``: the jobs, rewritten atomically under a file lock (`Queue.edit`), so a ``queue add``
  while a ``queue run`` works, and a crash at any instant leaves the old or the new list;
- ``logs/<id>.log``: everything a job printed (locally: the ``run`` process's output; on Ray: the
  job's logs, fetched when it ends, live with ``queue log``);
- ``runner.lock``: held by the ``queue run`` that works on the queue (an OS lock: it vanishes with
  its process). A job that says "running" while nobody holds it was interrupted; the next
  ``queue run`` runs it again, and ``run`` resumes its project from the last checkpoint.

A job that fails is recorded with its last error line and the runner goes on with the next one.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..atomic import write_json
from ..errors import InputError, ProjectError, StudioError
from ..project import now_iso

try:
    import fcntl
except ImportError:  # Windows: the queue still works, without protection against two runners
    fcntl = None

STATES = ("queued", "running", "done", "failed", "interrupted")
FORMAT = "avatar-studio/queue"


@dataclass
class Job:
    id: str
    """Short id for `queue log ID` (1, 2, 3 …)."""
    video: str
    """Absolute path of the video."""
    project: str
    """Absolute path of the project folder the job creates (or continues)."""
    preset: str = "preview"
    engine: str = "pvp"
    device: str = "auto"
    settings: list[str] = field(default_factory=list)
    """``STAGE.NAME=VALUE`` items passed to ``run --set``."""
    evaluate: bool = True
    """Run the evaluation at the end (``run`` without ``--no-eval``)."""
    status: str = "queued"
    added: str = ""
    started: str = ""
    finished: str = ""
    attempts: int = 0
    returncode: int | None = None
    error: str = ""
    """The last error line of a failed job."""
    where: str = ""
    """"local", or the Ray address the job was submitted to."""
    ray_job: str = ""
    """The Ray submission id, when it ran on Ray."""

    def run_args(self) -> list[str]:
        """The ``avatar-studio`` arguments that make this avatar."""
        out = ["run", self.video, "--project", self.project, "--preset", self.preset, "--engine", self.engine,
               "--device", self.device]
        for s in self.settings:
            out += ["--set", s]
        if not self.evaluate:
            out.append("--no-eval")
        return out

    def command(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", "studio.cli", *self.run_args()]


def default_dir() -> Path:
    env = os.environ.get("AVATAR_STUDIO_QUEUE")
    if env:
        return Path(env).expanduser()
    from ..model_files import config_dir

    return config_dir() / "queue"


class Queue:
    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder).expanduser().resolve() if folder else default_dir().resolve()
        self.file = self.folder / "queue.json"
        self.logs = self.folder / "logs"

    # ------------------------------------------------------------------ storage
    def _read(self) -> list[Job]:
        if not self.file.exists():
            return []
        try:
            data = json.loads(self.file.read_text("utf-8"))
            return [Job(**j) for j in data["jobs"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ProjectError(f"the queue file {self.file} cannot be read ({type(exc).__name__})",
                               "restore it or remove it to start an empty queue") from None

    def jobs(self) -> list[Job]:
        return self._read()

    @contextlib.contextmanager
    def edit(self) -> Iterator[list[Job]]:
        """Read-modify-write the job list under the queue's file lock; saved atomically on success."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudioError(f"cannot create the queue folder {self.folder} ({exc.strerror})",
                              "choose another folder with --queue DIR") from None
        with _flock(self.folder / "queue.lock"):
            jobs = self._read()
            yield jobs
            write_json(self.file, {"format": FORMAT, "version": 1, "jobs": [asdict(j) for j in jobs]})

    def update(self, job_id: str, **fields) -> Job:
        with self.edit() as jobs:
            job = _find(jobs, job_id)
            for k, v in fields.items():
                setattr(job, k, v)
            return job

    def get(self, job_id: str) -> Job:
        return _find(self.jobs(), job_id)

    def log_path(self, job_id: str) -> Path:
        return self.logs / f"{job_id}.log"

    # ------------------------------------------------------------------ adding
    def add(self, videos: list[str], *, preset: str = "preview", engine: str = "pvp", device: str = "auto",
            out: str | None = None, settings: list[str] | None = None, evaluate: bool = True) -> list[Job]:
        """Queue one job per video (each checked now, so a bad file is refused at once)."""
        from ..video import probe

        settings = list(settings or [])
        parse_settings(settings)  # a malformed --set is refused now, not after hours in the queue
        paths = []
        for v in videos:
            p = Path(v).expanduser()
            probe(p)  # missing, empty, not a video: the usual one-line message
            paths.append(p.resolve())
        base = Path(out).expanduser().resolve() if out else Path.cwd().resolve()
        added = []
        with self.edit() as jobs:
            taken = {j.project for j in jobs if j.status != "done"}
            next_id = max([int(j.id) for j in jobs if j.id.isdigit()] + [0]) + 1
            for p in paths:
                project = base / f"{p.stem}_avatar"
                n = 2
                while str(project) in taken:
                    project = base / f"{p.stem}_avatar_{n}"
                    n += 1
                taken.add(str(project))
                job = Job(id=str(next_id), video=str(p), project=str(project), preset=preset, engine=engine,
                          device=device, settings=settings, evaluate=evaluate, added=now_iso())
                next_id += 1
                jobs.append(job)
                added.append(job)
        return added

    # ------------------------------------------------------------------ state
    def runner_busy(self) -> bool:
        """True when some `queue run` holds the runner lock."""
        from ..lock import flock_held

        path = self.folder / "runner.lock"
        if fcntl is None or not path.exists():
            return False
        return flock_held(path)

    def shown_status(self, job: Job) -> str:
        """A "running" local job without a runner is "interrupted" (the runner died)."""
        if job.status == "running" and job.where == "local" and not self.runner_busy():
            return "interrupted"
        return job.status

    @contextlib.contextmanager
    def runner(self) -> Iterator[None]:
        """Hold the runner lock: one `queue run` at a time."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "runner.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    who = path.read_text("utf-8", errors="replace").strip() or "another process"
                    raise ProjectError(f"the queue {self.folder} is already being run by {who}",
                                       "wait for it to finish, or stop it and run `queue run` again") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()}".encode())
            yield
        finally:
            os.close(fd)


def _find(jobs: list[Job], job_id: str) -> Job:
    for j in jobs:
        if j.id == str(job_id):
            return j
    raise InputError(f"no job {job_id} in the queue", "see the ids with `avatar-studio queue list`")


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def parse_settings(items: list[str], check: bool = True) -> dict[str, dict[str, str]]:
    """``STAGE.NAME=VALUE`` items → {stage: {name: value}}; with `check`, the stage names, setting
    names and values are checked against the stages' configs (imports the stages: only when there
    are settings)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        stage, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise InputError(f"cannot read setting {item!r}",
                             "write it as STAGE.NAME=VALUE, e.g. --set prior.steps=800")
        out.setdefault(stage, {})[name.strip().replace("-", "_")] = value.strip()
    if check and out:
        from ..config import from_dict
        from ..stages import REGISTRY

        for stage, values in out.items():
            if stage not in REGISTRY:
                raise InputError(f"unknown stage '{stage}' in --set", f"stages: {', '.join(REGISTRY)}")
            from_dict(REGISTRY[stage].config_cls, values, base=REGISTRY[stage].preset("preview"))
    return out


def last_error(text: str) -> str:
    """The last line a failed ``avatar-studio`` command printed as an error (or its last line)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln[:300]
    return (lines[-1] if lines else "")[:300]


# ----------------------------------------------------------------------------- running here
def _die_with_parent() -> None:
    """In the child: get SIGTERM when the runner dies (Linux), so a killed `queue run` does not leave
    an orphan training the project that the next `queue run` would find busy."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_local(queue: Queue, *, retry_failed: bool = False, say: Callable[[str], None] = print,
              python: str = sys.executable) -> dict[str, int]:
    """Run the jobs one after another on this machine: queued ones, interrupted ones (resumed: their
    project continues from its last checkpoint) and, with `retry_failed`, failed ones; jobs added
    while it runs are run too. Returns {"done": n, "failed": m}."""
    counts = {"done": 0, "failed": 0}
    tried: set[str] = set()
    with queue.runner():
        while True:
            # holding the runner lock, a local job still marked "running" belongs to a runner that died
            todo = [j for j in queue.jobs() if j.id not in tried and
                    (j.status in ("queued", "interrupted") or (j.status == "running" and j.where == "local")
                     or (retry_failed and j.status == "failed"))]
            if not todo:
                break
            job = todo[0]
            tried.add(job.id)
            again = job.status != "queued"
            job = queue.update(job.id, status="running", where="local", started=now_iso(), finished="", error="",
                               attempts=job.attempts + 1, returncode=None, ray_job="")
            say(f"job {job.id}: {'resuming' if again else 'starting'} {Path(job.video).name} → {job.project}")
            rc, text = _run_logged(queue, job, python)
            if rc == 0:
                queue.update(job.id, status="done", finished=now_iso(), returncode=0)
                counts["done"] += 1
                say(f"job {job.id}: done ({job.project})")
            else:
                err = last_error(text)
                queue.update(job.id, status="failed", finished=now_iso(), returncode=rc, error=err)
                counts["failed"] += 1
                say(f"job {job.id}: FAILED (exit {rc}): {err} — full output: avatar-studio queue log {job.id}")
    return counts


def _run_logged(queue: Queue, job: Job, python: str) -> tuple[int, str]:
    """Run the job's command with its output appended to its log; (exit code, this attempt's output)."""
    log = queue.log_path(job.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f:
        start = f.tell()
        f.write(f"=== attempt {job.attempts}, {now_iso()}: avatar-studio {shlex.join(job.run_args())}\n")
        f.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(job.command(python), stdout=f, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the child too: it records "cancelled" and stops
            with contextlib.suppress(Exception):
                proc.wait(30)
            queue.update(job.id, status="interrupted")
            raise
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        return rc, f.read()


def format_table(queue: Queue, jobs: list[Job]) -> list[str]:
    """`queue list`: one line per job, and the error of failed ones."""
    if not jobs:
        return [f"the queue {queue.folder} is empty — add videos with `avatar-studio queue add VIDEO…`"]
    out = [f"queue {queue.folder}", f"{'id':>3}  {'status':<11} {'engine':<6} {'preset':<8} {'video':<28} project"]
    for j in jobs:
        st = queue.shown_status(j)
        out.append(f"{j.id:>3}  {st:<11} {j.engine:<6} {j.preset:<8} {Path(j.video).name[:28]:<28} {j.project}")
        extra = []
        if j.where and j.where != "local":
            extra.append(f"ray {j.where} job {j.ray_job}")
        if st == "failed" and j.error:
            extra.append(j.error)
        if st == "interrupted":
            extra.append("interrupted — `queue run` resumes it")
        if extra:
            out.append(f"{'':>3}  {'':<11} " + "; ".join(extra)[:200])
    return out
