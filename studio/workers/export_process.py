"""Exports in a child process, like stages (see `stage_process`): no Qt here.

The window's `ExportRunner` starts `child_main` from the same forkserver as the stages, so
rendering (torch) never shares the GUI's interpreter. `drive` is the loop both the child
and the in-thread fallback use: it runs `studio.export.export` and feeds a `Batcher`.

Protocol (child → parent, over a multiprocessing queue), one tuple per message:
  ("progress", batch dict) · ("done", result) · ("failed", message, hint, details) ·
  ("cancelled",) · ("end",)
Parent → child: the `cancel` and `running` events read by `Control`.
"""
from __future__ import annotations

from typing import Any, Callable

from ..progress import Control
from .stage_process import Batcher, _be_nice, _exit_with_parent, _plain, failure_fields


def drive(project, cfg_values: dict, out: str, control: Control, on_progress: Callable,
          avatar=None) -> dict:
    """Run one export to the end; progress goes to `on_progress`; returns the result dict."""
    from ..config import from_dict
    from ..export import ExportConfig, export

    cfg = from_dict(ExportConfig, cfg_values)
    gen = export(project, cfg, out, control=control, avatar=avatar)
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        on_progress(ev)


def child_main(root: str, cfg_values: dict, out: str, loader: Any, queue, cancel, running) -> None:
    """Entry point of the export process. `loader(project)` gives the engine (None: the
    engine named in `cfg_values`, opened with `Avatar.open`)."""
    _exit_with_parent(cancel)
    _be_nice()
    try:
        import numpy as np

        from ..avatar import Avatar
        from ..engines import call_loader
        from ..errors import Cancelled
        from ..project import Project

        control = Control()
        control._cancel, control._running = cancel, running

        def send(batch: dict) -> None:
            if batch["preview"] is not None:
                batch["preview"] = np.ascontiguousarray(batch["preview"], dtype=np.uint8)
            queue.put(("progress", batch))

        batcher = Batcher(send)
        try:
            project = Project.open(root)
            avatar = Avatar(call_loader(loader, project)) if loader is not None else None
            result = drive(project, cfg_values, out, control, batcher, avatar)
        except Cancelled:
            batcher.flush()
            queue.put(("cancelled",))
            return
        batcher.flush()
        queue.put(("done", _plain(result)))
    except BaseException as exc:  # noqa: BLE001 — every error goes to a dialog
        queue.put(("failed", *failure_fields(exc)))
    finally:
        queue.put(("end",))
        queue.close()
        queue.join_thread()
