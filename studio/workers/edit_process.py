"""Edit jobs in a child process, like stages (see `stage_process`): no Qt here.

The window's Edits panel runs "Find" (a text edit) and "Find directions" here, so the search never
shares the GUI's interpreter. `run_job` is the one place that maps a job name to
`studio.edits.jobs`; the child and the in-thread fallback both call it.

Protocol (child → parent, over a multiprocessing queue), one tuple per message, the stage protocol
with the job's name where a stage's would be:
  ("started", job) · ("progress", batch dict) · ("done", job, result) ·
  ("failed", job, message, hint, details) · ("cancelled", job) · ("end",)
`batch` is `stage_process.Batcher`'s dict (stage "edit", part, step, total, message, losses, a
preview strip as an (H, W, 3) uint8 array or None, elapsed, rate). `result` is plain data: for "text"
(either method: ``options["method"]`` "optimise" or "global") the saved edit's metadata (`Edit.meta()`),
for "directions" {"edits": [metadata, ...], "picture": path}, for "effects" the cache's figures.
Parent → child: the `cancel` and `running` events read by `Control` (cancel stops between steps; a
cancelled text edit resumes where it stopped when started again with the same settings).

`EditProcess` starts a job and reads its messages without Qt (tests, scripts); the GUI's
`EditJobRunner` does the same in a QThread.
"""
from __future__ import annotations

import queue as _queue
from typing import Any, Callable

from ..progress import Control
from .stage_process import Batcher, _be_nice, _exit_with_parent, _plain, context, failure_fields

JOBS = ("text", "directions", "effects")
METHODS = ("optimise", "global")
"""How a "text" job finds its edit: StyleCLIP latent optimisation, or a global direction (the avatar's
channel effects, computed and cached on first use, matched against the prompt)."""


def run_job(project, engine: str | None, job: str, options: dict | None, control: Control,
            on_progress: Callable) -> dict:
    """Run one edit job to the end; progress goes to `on_progress`; returns the plain result.

    "text" takes ``method`` ("optimise", the default, or "global") beside its options: optimise passes
    prompt, neutral, name, steps, … to `find_text_edit`; global passes prompt, neutral, name, beta to
    `find_global_edit`. "effects" computes (or reuses) the channel effects; its result is
    {"path", "cached", "seconds", "method", "samples", "channels"}.
    """
    from ..edits import jobs

    options = dict(options or {})
    if job == "text":
        method = options.pop("method", "optimise") or "optimise"
        if method not in METHODS:
            raise ValueError(f"unknown text-edit method {method!r} (methods: {', '.join(METHODS)})")
        if method == "global":
            options.pop("steps", None)    # the optimiser's setting; a global direction has no steps
            edit = jobs.find_global_edit(project, engine, on_progress=on_progress, control=control, **options)
        else:
            edit = jobs.find_text_edit(project, engine, on_progress=on_progress, control=control, **options)
        return _plain(edit.meta())
    if job == "effects":
        eff = jobs.compute_channel_effects(project, engine, on_progress=on_progress, control=control, **options)
        return _plain({k: eff[k] for k in ("path", "cached", "seconds", "method", "samples")} |
                      {"channels": int(eff["effects"].shape[0])})
    if job == "directions":
        edits, picture = jobs.compute_directions(project, engine, on_progress=on_progress, control=control, **options)
        return _plain({"edits": [e.meta() for e in edits], "picture": str(picture)})
    raise ValueError(f"unknown edit job {job!r} (jobs: {', '.join(JOBS)})")


def child_main(root: str, engine: str | None, job: str, options: dict, queue, cancel, running,
               env: dict | None = None) -> None:
    """Entry point of the edit process. `env`: environment variables to set first (e.g.
    AVATAR_STUDIO_CONFIG_DIR: a fork server started earlier keeps the environment it started with)."""
    _exit_with_parent(cancel)
    _be_nice()
    try:
        import os

        os.environ.update({str(k): str(v) for k, v in (env or {}).items()})
        import numpy as np

        from ..errors import Cancelled
        from ..project import Project

        control = Control()
        control._cancel, control._running = cancel, running

        def send(batch: dict) -> None:
            if batch["preview"] is not None:
                batch["preview"] = np.ascontiguousarray(batch["preview"], dtype=np.uint8)
            queue.put(("progress", batch))

        batcher = Batcher(send)
        queue.put(("started", job))
        try:
            result = run_job(Project.open(root), engine, job, options, control, batcher)
        except Cancelled:
            batcher.flush()
            queue.put(("cancelled", job))
            return
        except BaseException as exc:  # noqa: BLE001 — every error goes to a dialog
            batcher.flush()
            queue.put(("failed", job, *failure_fields(exc)))
            return
        batcher.flush()
        queue.put(("done", job, result))
    except BaseException as exc:  # noqa: BLE001 — e.g. an import error in the child
        queue.put(("failed", job, *failure_fields(exc)))
    finally:
        queue.put(("end",))
        queue.close()
        queue.join_thread()


class EditProcess:
    """An edit job in a child process, read without Qt::

        p = EditProcess(project_root, "pvp", "text", {"prompt": "blue hair", "steps": 100}).start()
        for msg in p.messages():      # ("started", …), ("progress", batch), …, then the outcome
            ...
        p.cancel()                     # from anywhere; the job stops between two steps
    """

    def __init__(self, root, engine: str | None, job: str, options: dict | None = None, env: dict | None = None):
        if job not in JOBS:
            raise ValueError(f"unknown edit job {job!r} (jobs: {', '.join(JOBS)})")
        ctx = context()
        self.root, self.engine, self.job, self.options = str(root), engine, job, dict(options or {})
        self.cancel_event, self.running_event = ctx.Event(), ctx.Event()
        self.running_event.set()
        self.queue = ctx.Queue()
        self.process = ctx.Process(target=child_main, name="avatar-studio-edit", daemon=True,
                                   args=(self.root, engine, job, self.options, self.queue, self.cancel_event,
                                         self.running_event, dict(env or {})))
        self.outcome = ""
        """"done", "failed" or "cancelled" once the outcome message was read."""
        self.result: Any = None

    def start(self) -> "EditProcess":
        self.process.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()
        self.running_event.set()

    def pause(self) -> None:
        self.running_event.clear()

    def resume(self) -> None:
        self.running_event.set()

    def messages(self, timeout: float = 600.0):
        """Yield the child's messages until ("end",); a child that dies silently ends as "failed"."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.queue.get(timeout=0.2)
            except _queue.Empty:
                if self.process.is_alive():
                    continue
                try:
                    msg = self.queue.get(timeout=0.5)
                except _queue.Empty:
                    break
            if msg[0] == "end":
                self.process.join(10)
                return
            if msg[0] in ("done", "failed", "cancelled"):
                self.outcome = msg[0]
                self.result = msg[-1] if msg[0] == "done" else msg[2:] if msg[0] == "failed" else None
            yield msg
        self.process.join(1)
        if not self.outcome:
            self.outcome = "failed"
            yield ("failed", self.job, f"the edit process stopped unexpectedly (exit code {self.process.exitcode})",
                   "it may have run out of memory: close other programs and try again", "")
