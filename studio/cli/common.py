"""What every command shows the user: stage progress as a bar (or log lines), plain lines, notes, paths as they
must be typed, and the two ways a run ends without a traceback on screen (the reader of our output went; a bug,
whose traceback goes to a crash log)."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path

from ..progress import Progress
from ..progress import clock_text as _fmt_s   # m:ss, shared with `speed_probe.RunPace`


# ----------------------------------------------------------------------------- progress display
class ProgressPrinter:
    """Prints stage progress as a bar with ETA on a terminal, or as sparse lines in a log."""

    def __init__(self, stream=None, min_interval: float = 0.2):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = min_interval if self.tty else 5.0
        self._last = 0.0
        self._key = None
        self._t0 = time.perf_counter()
        self._open_line = False

    def __call__(self, ev: Progress) -> None:
        key = (ev.stage, ev.part)
        now = time.perf_counter()
        if key != self._key:
            self._finish_line()
            self._key, self._t0 = key, now
            self._last = 0.0
        done = ev.total and ev.step >= ev.total
        # a new kind of message is shown at once; one that only counts on ("frame 10", "frame 20") waits its turn
        gist = re.sub(r"\d+", "#", ev.message) if ev.message else ""
        news = bool(ev.message) and not ev.losses and gist != getattr(self, "_last_msg", None)
        if now - self._last < self.min_interval and not done and not news:
            return
        if news:
            self._last_msg = gist
        self._last = now
        elapsed = ev.elapsed or (now - self._t0)
        name = f"{ev.stage}" + (f"/{ev.part}" if ev.part else "")
        if ev.total:
            frac = min(1.0, ev.step / ev.total)
            bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
            eta = ev.eta()
            eta_s = f" ETA {_fmt_s(eta)}" if eta is not None and not done else f" {_fmt_s(elapsed)}"
            rate = f" {ev.rate:.2f} it/s" if ev.rate > 0 and not done else ""
            head = f"{name:<18} [{bar}] {ev.step}/{ev.total}{eta_s}{rate}"
        else:
            head = f"{name:<18} {ev.step}"
        losses = "  " + " ".join(f"{k}={v:.4g}" for k, v in list(ev.losses.items())[:4]) if ev.losses else ""
        msg = f"  {ev.message}" if ev.message and not losses else ""
        line = (head + losses + msg)[:150]
        if self.tty:
            self.stream.write("\r" + line.ljust(110))
            self._open_line = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _finish_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

    def close(self) -> None:
        self._finish_line()


def _say(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def _print_warnings(result: dict) -> None:
    for w in result.get("warnings", []) or []:
        _say(f"note: {w}")


def _shown(path) -> str:
    """A path as it must be typed in a suggested command: quoted when it holds spaces or other special characters."""
    import shlex

    return shlex.quote(str(path))


def _output_gone() -> bool:
    """Whether the program reading our standard output or error has gone (`avatar-studio status P | head -1`): the
    write end of a pipe whose reader closed polls as an error (POSIX; False where that cannot be asked)."""
    import select

    try:
        poller = select.poll()
        for stream in (sys.stdout, sys.stderr):
            poller.register(stream.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):   # no poll (Windows), no real file behind the stream
        return False


def _quiet_exit() -> int:
    """Stop without a word when our reader has gone (as `cat` or `grep` do): further writes, the interpreter's
    own flush at exit included, go nowhere; the exit status is a SIGPIPE's, 128 + 13."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    return 141


def _unexpected(exc: BaseException) -> int:
    """A bug: one line on screen, the traceback in a log file; exit status 1."""
    import tempfile
    import traceback

    log = Path(tempfile.gettempdir()) / f"avatar-studio-crash-{os.getpid()}.log"
    log.write_text("".join(traceback.format_exception(exc)))
    print(f"error: unexpected problem ({type(exc).__name__}: {exc}). Details were saved to {log}; please "
          f"include it in a bug report.", file=sys.stderr)
    return 1
