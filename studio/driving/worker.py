"""Training an actor in a child process, like stages (see `studio.workers.stage_process`): no Qt.

The window's Drivers list starts `child_main` from the stages' forkserver, so training (torch)
never shares the GUI's interpreter. Protocol (child → parent, over a multiprocessing queue):
  ("progress", batch dict) · ("done", result) · ("failed", message, hint, details) ·
  ("cancelled",) · ("end",)
Parent → child: the `cancel` and `running` events read by `Control`.
"""
from __future__ import annotations

from ..progress import Control
from ..workers.stage_process import Batcher, _be_nice, _exit_with_parent, _plain, failure_fields


def child_main(root: str, actor: str, preset: str | None, overrides: dict, device: str | None, queue, cancel,
               running) -> None:
    """Entry point of the training process: `train_actor` on the project at `root`."""
    _exit_with_parent(cancel)
    _be_nice()
    try:
        import numpy as np

        from ..errors import Cancelled
        from ..project import Project
        from .job import train_actor

        control = Control()
        control._cancel, control._running = cancel, running

        def send(batch: dict) -> None:
            if batch["preview"] is not None:
                batch["preview"] = np.ascontiguousarray(batch["preview"], dtype=np.uint8)
            queue.put(("progress", batch))

        batcher = Batcher(send)
        try:
            result = train_actor(Project.open(root), actor, preset=preset, overrides=overrides or None,
                                 control=control, on_progress=batcher, device=device)
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
