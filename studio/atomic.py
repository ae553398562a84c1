"""Atomic file writes: temp file in the same folder, fsync, rename.

A process killed at any instant leaves either the old file or the new one, never half of one.
Disk-full and permission problems surface as a `StudioError` with a plain message.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import StudioError


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _explain(exc: OSError, path: Path) -> StudioError:
    if exc.errno == errno.ENOSPC:
        return StudioError(f"the disk is full while writing {path.name}",
                           "free some space and run the command again; the project is unchanged")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StudioError(f"no permission to write {path}", "choose a folder you can write to")
    return StudioError(f"could not write {path}: {exc.strerror or exc}", "check the disk and try again")


def _umask() -> int:
    """The process's file-creation mask (read from /proc where there is one: `os.umask` can only be
    read by setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    """The permissions of a file the user creates (0666 less the umask). `tempfile.mkstemp` makes 0600
    files, so without this every file of a project would be private to its owner, unlike the folders
    beside it (and the project could not be shared with a group or read by another account)."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically.

    Use for writers that need a file name (torch.save, cv2.imwrite, ffmpeg):
        with atomic_path(dst) as tmp: torch.save(obj, tmp)
    """
    path = Path(path)
    try:  # a read-only or full folder fails here already: the same plain sentence
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise _explain(exc, path) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _explain(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call `writer(tmp_path)` and move the result into place atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
