"""One process at a time works on a project: an exclusive lock on ``<project>/.lock``.

The lock is an OS file lock (``flock``), so it vanishes with its process however that process
ends (``kill -9``, a crash, a power cut): a manifest record that still says "running" while
nobody holds the lock belongs to a run that died, and `studio.pipeline.stage_state` reports it as
"interrupted" instead of "running". The lock file holds the owner's pid and what it runs, so the
second process can say who is busy. Re-entrant within one process (a pipeline holds it across
its stages; each stage takes it again).
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Iterator

from .errors import ProjectError

try:
    import fcntl
except ImportError:  # Windows: no flock; fall back to an advisory pid file
    fcntl = None

_HELD: dict[str, list] = {}  # resolved lock path -> [fd, depth]
_GUARD = threading.Lock()


def lock_path(root: str | os.PathLike) -> Path:
    return Path(root) / ".lock"


def _owner(path: Path) -> dict:
    try:
        return json.loads(path.read_text("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def held_here(root: str | os.PathLike) -> bool:
    """True when this process holds the project's lock."""
    return str(lock_path(root).resolve()) in _HELD


def is_busy(root: str | os.PathLike) -> bool:
    """True when some process (this one included) holds the project's lock."""
    path = lock_path(root)
    if held_here(root):
        return True
    if not path.exists():
        return False
    if fcntl is None:
        pid = int(_owner(path).get("pid") or 0)
        return bool(pid) and _pid_alive(pid)
    return flock_held(path)


def flock_held(path: str | os.PathLike) -> bool:
    """True when another open file description holds an exclusive flock on `path` (POSIX only)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def project_lock(root: str | os.PathLike, what: str = "") -> Iterator[None]:
    """Hold the project's lock for the block; raise `ProjectError` if another process holds it."""
    path = lock_path(root)
    key = str(path.resolve())
    with _GUARD:
        if key in _HELD:
            _HELD[key][1] += 1
            fresh = False
        else:
            fresh = True
    if fresh:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ProjectError(f"cannot open the project's lock file {path} ({exc.strerror})",
                               "check that the project folder exists and that you may write to it") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                who = _owner(path)
                busy = f"process {who.get('pid')} ({who.get('what') or 'a stage'})" if who else "another process"
                raise ProjectError(f"the project {Path(root).name} is busy: {busy} is working on it",
                                   "wait for it to finish or stop it, then try again") from None
        else:
            who = _owner(path)
            if who.get("pid") and who.get("pid") != os.getpid() and _pid_alive(int(who["pid"])):
                os.close(fd)
                raise ProjectError(f"the project {Path(root).name} is busy: process {who['pid']} is working on it",
                                   "wait for it to finish or stop it, then try again")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "what": what}).encode())
        except OSError:
            pass  # the lock holds even if the note cannot be written (full disk)
        with _GUARD:
            _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        with _GUARD:
            entry = _HELD[key]
            entry[1] -= 1
            release = entry[1] == 0
            if release:
                del _HELD[key]
        if release:
            try:
                os.ftruncate(entry[0], 0)
            except OSError:
                pass
            if fcntl is not None:
                fcntl.flock(entry[0], fcntl.LOCK_UN)
            os.close(entry[0])
