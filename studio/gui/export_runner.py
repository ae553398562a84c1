"""`ExportRunner`: one `studio.export.export` run off the GUI thread, relayed as Qt signals.

By default the export runs in a child process from the stages' forkserver (see
`export_process`), so rendering never holds the GUI's GIL. The engine's loader travels to the
child by reference; an engine whose loader cannot be pickled (registered from a closure), or
an `Avatar` handed in directly, runs in this QThread instead.
"""
from __future__ import annotations

import glob
import pickle
import shutil
import time
from pathlib import Path

from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import QObject, QThread, Signal

from ..errors import Cancelled
from ..progress import Control
from .imaging import to_qimage
from .workers import Failure, ProgressBatch


def _picklable(obj) -> bool:
    try:
        pickle.dumps(obj)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


class ExportRunner(QThread):
    """Runs one export; `progress(ProgressBatch)`, then `done(result)`, `failed(Failure)` or `cancelled()`."""

    progress = Signal(object)   # ProgressBatch (stage "export")
    done = Signal(object)       # result dict of studio.export.export
    failed = Signal(object)     # Failure
    cancelled = Signal()

    def __init__(self, project, cfg_values: dict, out: str | Path, avatar=None, in_process: bool | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        from ..engines import ENGINES
        from ..workers.stage_process import context

        self.project = project
        self.cfg_values = dict(cfg_values)
        self.out = str(out)
        self.avatar = avatar
        self.loader = None
        if avatar is None and self.cfg_values.get("engine") in ENGINES:
            self.loader = ENGINES[self.cfg_values["engine"]].loader
        if in_process is None:
            in_process = avatar is not None or (self.loader is not None and not _picklable(self.loader))
        self.in_process = in_process
        self.outcome = ""
        """"done", "failed" or "cancelled" once the thread ends."""
        self.result: dict | None = None
        self.control = Control()
        if not in_process:
            ctx = context()
            self.control._cancel, self.control._running = ctx.Event(), ctx.Event()
            self.control._running.set()
        self.process = None

    # -------------------------------------------------------------- relay thread
    def _handle(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "progress":
            b = msg[1]
            preview = None
            if b["preview"] is not None:
                try:
                    preview = to_qimage(b["preview"])
                except (ValueError, TypeError):
                    preview = None
            self.progress.emit(ProgressBatch(stage=b["stage"], part=b["part"], step=b["step"], total=b["total"],
                                             message=b["message"], time=time.perf_counter(), losses=b["losses"],
                                             preview=preview, elapsed=b["elapsed"]))
        elif kind == "done":
            self.outcome, self.result = "done", msg[1]
            self.done.emit(msg[1])
        elif kind == "failed":
            self.outcome = "failed"
            self.failed.emit(Failure(msg[1], msg[2], msg[3]))
        elif kind == "cancelled":
            self.outcome = "cancelled"
            self.cancelled.emit()

    def run(self) -> None:  # noqa: D401 (QThread API)
        if self.in_process:
            self._run_here()
        else:
            self._run_child()
        if self.outcome != "done":
            self._remove_partials()

    def _run_here(self) -> None:
        from ..workers.export_process import drive
        from ..workers.stage_process import Batcher

        batcher = Batcher(lambda b: self._handle(("progress", b)))
        try:
            result = drive(self.project, self.cfg_values, self.out, self.control, batcher, self.avatar)
        except Cancelled:
            batcher.flush()
            self._handle(("cancelled",))
            return
        except BaseException as exc:  # noqa: BLE001 — every error becomes a dialog
            batcher.flush()
            f = Failure.from_exception(exc)
            self._handle(("failed", f.message, f.hint, f.details))
            return
        batcher.flush()
        self._handle(("done", result))

    def _run_child(self) -> None:
        import queue as _queue

        from ..workers.export_process import child_main
        from ..workers.stage_process import context

        ctx = context()
        q = ctx.Queue()
        self.process = ctx.Process(target=child_main, name="avatar-studio-export", daemon=True,
                                   args=(str(self.project.root), self.cfg_values, self.out, self.loader, q,
                                         self.control._cancel, self.control._running))
        try:
            self.process.start()
        except Exception as exc:  # noqa: BLE001
            f = Failure.from_exception(exc)
            self._handle(("failed", f.message, f.hint, f.details))
            return
        ended = False
        while not ended:
            try:
                msg = q.get(timeout=0.2)
            except _queue.Empty:
                if not self.process.is_alive():
                    try:  # last words sent just before exiting
                        msg = q.get(timeout=0.5)
                    except _queue.Empty:
                        break
                else:
                    continue
            if msg[0] == "end":
                ended = True
            else:
                self._handle(msg)
        self.process.join(5)
        if not ended and not self.outcome:
            code = self.process.exitcode
            if self.control.cancelled:
                self._handle(("cancelled",))
            else:
                self._handle(("failed", f"the export process stopped unexpectedly (exit code {code})",
                              "it may have run out of memory: close other programs and export again", ""))

    def _remove_partials(self) -> None:
        """A killed child cannot clean up: remove its temporary file (never the output path)."""
        out = Path(self.out)
        for p in out.parent.glob(f".{glob.escape(out.stem)}.*.partial{glob.escape(out.suffix)}"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # -------------------------------------------------------------- GUI thread
    def cancel(self) -> None:
        self.control.cancel()

    def kill(self) -> None:
        """Last resort (the window is closing and the export does not stop)."""
        if self.process is not None and self.process.is_alive():
            self.process.terminate()
