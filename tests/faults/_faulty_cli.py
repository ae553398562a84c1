"""`python tests/faults/_faulty_cli.py ARGS…` = `avatar-studio ARGS…` with one fault injected, chosen by
the environment variable AVATAR_FAULT. The faults are real kernel errors where possible: a file
redirected to /dev/full fails with ENOSPC exactly like a full disk (torch, ffmpeg and Python all see
the same errno).

  ckpt-full:N   the N-th and later training checkpoint writes (train.ckpt) go to /dev/full
  export-full   ffmpeg's output file of an export goes to /dev/full
  readonly      every write under the project folder fails with EROFS (for runs as root, where
                chmod a-w does not stop writes)
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _install(fault: str) -> None:
    import stat

    import studio.atomic as atomic

    if fault.endswith("full") or "full:" in fault:
        if not stat.S_ISCHR(os.stat("/dev/full").st_mode):
            raise SystemExit("/dev/full is not the kernel's full device here: cannot inject ENOSPC")

    if fault.startswith("ckpt-full:"):
        first = int(fault.split(":")[1])
        real = tempfile.mkstemp
        count = {"n": 0}

        def mkstemp(*a, **kw):
            fd, name = real(*a, **kw)
            if kw.get("prefix", "").startswith(".train."):
                count["n"] += 1
                if count["n"] >= first:
                    os.close(fd)
                    os.unlink(name)
                    os.symlink("/dev/full", name)
                    fd = os.open(name, os.O_WRONLY)
            return fd, name

        atomic.tempfile = type("T", (), {"mkstemp": staticmethod(mkstemp)})
    elif fault == "export-full":
        real_popen = subprocess.Popen

        class Popen(real_popen):
            def __init__(self, cmd, *a, **kw):
                if isinstance(cmd, list) and ".partial." in str(cmd[-1]):
                    os.symlink("/dev/full", cmd[-1])
                super().__init__(cmd, *a, **kw)

        subprocess.Popen = Popen
    elif fault == "readonly":
        root = Path(os.environ["AVATAR_FAULT_ROOT"]).resolve()
        real_open, real_mkstemp = os.open, tempfile.mkstemp

        def inside(p) -> bool:
            try:
                return Path(p).resolve().is_relative_to(root)
            except (TypeError, ValueError):
                return False

        def os_open(p, flags, *a, **kw):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(p):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(p))
            return real_open(p, flags, *a, **kw)

        def mkstemp(*a, dir=None, **kw):
            if dir is not None and inside(dir):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
            return real_mkstemp(*a, dir=dir, **kw)

        os.open = os_open
        atomic.tempfile = type("T", (), {"mkstemp": staticmethod(mkstemp)})
    elif fault:
        raise SystemExit(f"unknown fault {fault}")


if __name__ == "__main__":
    _install(os.environ.get("AVATAR_FAULT", ""))
    from studio.cli import main

    sys.exit(main(sys.argv[1:]))
