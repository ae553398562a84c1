"""Stage runs in a child process: no Qt here, so the child never loads the GUI.

Why a process: a stage that trains with torch in a thread of the GUI process holds the GIL in
bursts, and pyqtgraph paints through many small Python calls, each waiting for the GIL: the
window stutters (measured 150–250 ms stalls on a 2-core machine). In a child process the GUI
keeps its interpreter to itself.

Protocol (child → parent, over a multiprocessing queue), one tuple per message:
  ("started", stage) · ("progress", batch dict) · ("done", stage, result) ·
  ("failed", stage, message, hint, details) · ("cancelled", stage) · ("end",)
Parent → child: two events, `cancel` and `running` (cleared = paused), read by `Control`.
"""
from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from typing import Any

from ..progress import Control, Progress

_CTX = None


def context():
    """A forkserver context (fast starts: studio and torch are imported once), else spawn."""
    global _CTX
    if _CTX is None:
        try:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["studio.pipeline", "studio.stages", "torch"])
        except ValueError:  # no forkserver on this platform
            ctx = mp.get_context("spawn")
        _CTX = ctx
    return _CTX


def warm_up() -> None:
    """Start the fork server (which imports studio and torch) ahead of the first run. Blocking:
    call it from a background thread."""
    ctx = context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver, resource_tracker

        resource_tracker.ensure_running()
        forkserver.ensure_running()


class Batcher:
    """Groups progress events: every loss kept (with its step, so a resumed run's curves continue at
    its checkpoint's step), previews throttled, at most one batch per interval."""

    def __init__(self, send, emit_interval: float = 0.1, preview_interval: float = 0.25):
        self.send = send
        self.emit_interval = emit_interval
        self.preview_interval = preview_interval
        self.reset()

    def reset(self) -> None:
        self.losses: list[dict[str, float]] = []
        self.steps: list[int] = []
        self.last: Progress | None = None
        self.preview = None
        self.last_emit = 0.0
        self.last_preview = 0.0

    def __call__(self, ev: Progress) -> None:
        now = time.perf_counter()
        if ev.losses:
            self.losses.append({k: float(v) for k, v in ev.losses.items()})
            self.steps.append(int(ev.step))
        self.last = ev
        if ev.preview is not None and now - self.last_preview >= self.preview_interval:
            self.preview = ev.preview
            self.last_preview = now
        if now - self.last_emit >= self.emit_interval:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        ev = self.last
        if ev is None:
            return
        now = now or time.perf_counter()
        self.send({"stage": ev.stage, "part": ev.part, "step": ev.step, "total": ev.total, "message": ev.message,
                   "time": now, "losses": self.losses, "steps": self.steps, "preview": self.preview, "elapsed": ev.elapsed,
                   "rate": ev.rate})
        self.losses, self.steps, self.preview, self.last_emit = [], [], None, now


def failure_fields(exc: BaseException) -> tuple[str, str, str]:
    from ..errors import StudioError

    if isinstance(exc, StudioError):
        return exc.message, exc.hint, ""
    return (f"Something went wrong: {type(exc).__name__}: {exc}",
            "This is a bug in Avatar Studio. Your project is intact; the details below help fix it.",
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


class Reporter:
    """The sending side of the protocol above, for every job: a stage, an export, an actor's training.

    `run(name, work, control)` calls `work(control, on_progress)` and reports it: ("started", name)
    (with `announce`), ("progress", batch) through a `Batcher`, then ("done", name, result),
    ("cancelled", name) or ("failed", name, message, hint, details). `put` is a child's
    `queue.put`, or the GUI thread's handler when a job runs in-process (then `plain=False` keeps the
    result as it is; across a process it is reduced to plain JSON-like values)."""

    def __init__(self, put, plain: bool = True):
        self.put = put
        self.plain = plain
        self.batcher = Batcher(self._send)

    def _send(self, batch: dict) -> None:
        if batch["preview"] is not None:
            import numpy as np

            batch["preview"] = np.ascontiguousarray(batch["preview"], dtype=np.uint8)
        self.put(("progress", batch))

    def run(self, name: str, work, control: Control, announce: bool = True) -> bool:
        """Run and report one job; True when it finished (False: cancelled or failed, already said)."""
        from ..errors import Cancelled

        self.batcher.reset()
        if announce:
            self.put(("started", name))
        try:
            result = work(control, self.batcher)
        except Cancelled:
            self.batcher.flush()
            self.put(("cancelled", name))
            return False
        except BaseException as exc:  # noqa: BLE001 — every error goes to a dialog
            self.batcher.flush()
            self.fail(name, exc)
            return False
        self.batcher.flush()
        self.put(("done", name, _plain(result) if self.plain else result))
        return True

    def fail(self, name: str, exc: BaseException) -> None:
        self.put(("failed", name, *failure_fields(exc)))


def child_control(cancel, running) -> Control:
    """The parent's two events as a `Control` (cancel; running cleared = paused)."""
    control = Control()
    control._cancel, control._running = cancel, running
    return control


def child_run(queue, cancel, running, name: str, body) -> None:
    """The frame of every child process: leave when the parent dies, lower the priority, run
    `body(reporter, control)`; an error anywhere (an import, opening the project) is reported as
    ("failed", name, …), and ("end",) is always the last message."""
    _exit_with_parent(cancel)
    _be_nice()
    reporter = Reporter(queue.put)
    try:
        body(reporter, child_control(cancel, running))
    except BaseException as exc:  # noqa: BLE001 — e.g. an import error in the child
        reporter.fail(name, exc)
    finally:
        queue.put(("end",))
        queue.close()
        queue.join_thread()


def run_stages(reporter: Reporter, control: Control, project, stages: list[str], overrides: dict,
               device: str | None, force) -> None:
    """`run_stage` for each of `stages` in turn, reported by `reporter`; stops at the first that
    does not finish. The child and the GUI's in-thread runs both use it."""
    from ..pipeline import run_stage

    for name in stages:
        def work(control, on_progress, name=name):
            return run_stage(project, name, overrides.get(name), control=control, on_progress=on_progress,
                             device=device, force=name in force)

        if not reporter.run(name, work, control):
            return


def child_main(root: str, stages: list[str], overrides: dict, device: str | None, force: list[str],
               specs: dict, queue, cancel, running) -> None:
    """Entry point of the worker process."""
    first = stages[0] if stages else ""

    def body(reporter: Reporter, control: Control) -> None:
        from ..lock import project_lock
        from ..project import Project
        from ..stages import REGISTRY, register

        for name, spec in specs.items():  # stages registered at run time (plug-ins, tests)
            if name not in REGISTRY:
                register(spec)
        project = Project.open(root)
        lock = project_lock(root, "stages " + ", ".join(stages))
        try:
            lock.__enter__()  # held until the process ends
        except BaseException as exc:  # another process works on the project
            reporter.fail(first, exc)
            return
        run_stages(reporter, control, project, stages, overrides, device, set(force))

    child_run(queue, cancel, running, first, body)


def _be_nice(increment: int = 10) -> None:
    """Lower the stage's CPU priority: the window must win the CPU over background compute, or it
    stutters on a busy machine. An idle window leaves the stage the whole CPU anyway."""
    import os

    try:
        os.nice(increment)
    except (AttributeError, OSError):  # Windows, or not permitted
        pass


def _exit_with_parent(cancel) -> None:
    """If the window's process dies (killed, crashed), cancel the stage and leave soon after."""
    import os
    import threading
    from multiprocessing.connection import wait

    parent = mp.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        cancel.set()          # the stage stops at its next step and records "cancelled"
        time.sleep(20)
        os._exit(1)           # it did not stop: go anyway

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _plain(obj: Any) -> Any:
    """Results cross the process boundary; keep them to plain JSON-like values."""
    import json

    from ..atomic import _json_default

    try:
        return json.loads(json.dumps(obj, default=_json_default))
    except (TypeError, ValueError):
        return {"summary": {}, "outputs": obj.get("outputs", {}) if isinstance(obj, dict) else {}}
