"""The GUI side of a job in a child process: start it, relay its progress, pause/cancel it, report
how it ended. Stages (`StageRunner`), edit searches (`EditJobRunner`), exports (`ExportRunner`)
and actor trainings (`DriverTrainer`) are all `ProcessRunner`s; only what they run differs.

The child speaks the protocol of `studio.workers.stage_process` (sent by its `Reporter`):
("started", name) · ("progress", batch) · ("done", name, result) · ("failed", name, message,
hint, details) · ("cancelled", name) · ("end",). This QThread reads the queue and turns each
message into a hook call (`on_started`, `on_progress`, `on_done`, `on_failed`, `on_cancelled`),
which subclasses turn into their signals. A child that dies without its last words is reported
as cancelled (when a cancel was asked) or as a failure that says it stopped unexpectedly. With
`in_process=True` the job runs in this thread through the same `Reporter` (tests, debugging, or
a job whose inputs cannot cross a process).
"""
from __future__ import annotations

import queue as _queue
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import QObject, QThread, Signal

from ..errors import StudioError
from ..progress import Control
from .imaging import to_qimage


@dataclass
class Failure:
    """An error on its way to a dialog: what happened, what to do, details for a bug report."""

    message: str
    hint: str = ""
    details: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> "Failure":
        if isinstance(exc, StudioError):
            return cls(exc.message, exc.hint)
        return cls(f"Something went wrong: {type(exc).__name__}: {exc}",
                   "This is a bug in Avatar Studio. Your project is intact; the details below help fix it.",
                   "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


@dataclass
class ProgressBatch:
    """Progress events since the last batch, as the dashboard needs them."""

    stage: str
    part: str
    step: int
    total: int
    message: str
    time: float
    """time.perf_counter() of the newest event."""
    losses: list[dict[str, float]] = field(default_factory=list)
    """Loss dicts of every event in the batch, oldest first (none dropped)."""
    steps: list[int] = field(default_factory=list)
    """The part's step of each loss dict (empty when the sender did not say)."""
    preview: Any = None
    """QImage of the newest preview, or None when none arrived (or throttled)."""
    elapsed: float = 0.0

    @classmethod
    def from_message(cls, b: dict, stage: str = "") -> "ProgressBatch":
        """From a `Batcher` dict; the preview becomes a QImage (an odd one is dropped, never fatal)."""
        preview = None
        if b.get("preview") is not None:
            try:
                preview = to_qimage(b["preview"])
            except (ValueError, TypeError):
                preview = None
        return cls(stage=b.get("stage", stage), part=b.get("part", ""), step=b.get("step", 0),
                   total=b.get("total", 0), message=b.get("message", ""), time=time.perf_counter(),
                   losses=b.get("losses", []), steps=b.get("steps", []), preview=preview,
                   elapsed=b.get("elapsed", 0.0))


class ProcessRunner(QThread):
    """One job (or a run of stages) in a child process; subclasses say what runs and what to emit.

    Subclasses set `name` (the job's name in messages), `process_name`, `lost` (message and hint,
    `{code}` = the exit code, for a child that died silently), and implement `child()` (the
    entry function and its leading arguments; the queue and the two events are appended) and
    `work_here(reporter)` (the in-thread run).
    """

    process_name = "avatar-studio-job"
    lost = ("the worker process stopped unexpectedly (exit code {code})",
            "it may have run out of memory: close other programs and try again")

    def __init__(self, name: str, in_process: bool = False, expected: int = 1, parent: QObject | None = None):
        super().__init__(parent)
        from ..workers.stage_process import context

        self.name = name
        self.in_process = in_process
        self.expected = expected
        """How many "done" messages make a complete run (one per stage for a run of stages)."""
        self.current: str | None = None
        self.outcome = ""
        """"done", "failed" or "cancelled" once the thread ends."""
        self.result: Any = None
        self.control = Control()
        if not in_process:
            ctx = context()
            self.control._cancel, self.control._running = ctx.Event(), ctx.Event()
            self.control._running.set()
        self.process = None
        self._done = 0

    # -------------------------------------------------------------- for subclasses
    def child(self) -> tuple[Callable, tuple]:
        raise NotImplementedError

    def work_here(self, reporter) -> None:
        raise NotImplementedError

    def on_started(self, name: str) -> None: ...
    def on_progress(self, batch: ProgressBatch) -> None: ...
    def on_done(self, name: str, result: Any) -> None: ...
    def on_failed(self, name: str, failure: Failure) -> None: ...
    def on_cancelled(self, name: str) -> None: ...

    def after(self) -> None:
        """Called in this thread once the job has ended, whatever the outcome."""

    # -------------------------------------------------------------- relay thread
    def _handle(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "started":
            self.current = msg[1]
            self.on_started(msg[1])
        elif kind == "progress":
            self.on_progress(ProgressBatch.from_message(msg[1], self.name))
        elif kind == "done":
            self._done += 1
            self.outcome, self.result = "done", msg[2]
            self.on_done(msg[1], msg[2])
        elif kind == "failed":
            self.outcome = "failed"
            self.on_failed(msg[1], Failure(*msg[2:5]))
        elif kind == "cancelled":
            self.outcome = "cancelled"
            self.on_cancelled(msg[1])

    def run(self) -> None:  # noqa: D401 (QThread API)
        from ..workers.stage_process import Reporter

        self.outcome, self._done = "", 0
        if self.in_process:
            self.work_here(Reporter(self._handle, plain=False))
        else:
            self._run_child()
        if self.outcome == "" and self._done >= self.expected:
            self.outcome = "done"  # nothing to run
        self.after()

    def _run_child(self) -> None:
        from ..workers.stage_process import context, failure_fields

        ctx = context()
        q = ctx.Queue()
        target, args = self.child()
        self.process = ctx.Process(target=target, name=self.process_name, daemon=True,
                                   args=(*args, q, self.control._cancel, self.control._running))
        try:
            self.process.start()
        except Exception as exc:  # noqa: BLE001
            self._handle(("failed", self.name, *failure_fields(exc)))
            return
        ended = False
        while not ended:
            try:
                msg = q.get(timeout=0.2)
            except _queue.Empty:
                if not self.process.is_alive():
                    try:  # the child may have sent its last words just before exiting
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
        if self.outcome in ("failed", "cancelled") or self._done >= self.expected:
            return
        name = self.current or self.name
        if self.control.cancelled:  # killed after a cancel (the window closed): that is a cancel
            self._handle(("cancelled", name))
        else:
            self._handle(("failed", name, self.lost[0].format(code=self.process.exitcode), self.lost[1], ""))

    # -------------------------------------------------------------- GUI thread
    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def cancel(self) -> None:
        self.control.cancel()

    def kill(self) -> None:
        """Last resort (the window is closing and the job does not stop)."""
        if self.process is not None and self.process.is_alive():
            self.process.terminate()

    @property
    def paused(self) -> bool:
        return self.control.paused


class JobRunner(ProcessRunner):
    """A single job: `progress(ProgressBatch)`, then `done(result)`, `failed(Failure)` or `cancelled()`."""

    progress = Signal(object)     # ProgressBatch
    done = Signal(object)         # the job's result
    failed = Signal(object)       # Failure
    cancelled = Signal()

    def on_progress(self, batch: ProgressBatch) -> None:
        self.progress.emit(batch)

    def on_done(self, name: str, result: Any) -> None:
        self.done.emit(result)

    def on_failed(self, name: str, failure: Failure) -> None:
        self.failed.emit(failure)

    def on_cancelled(self, name: str) -> None:
        self.cancelled.emit()
