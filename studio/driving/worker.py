"""Training an actor in a child process, like stages (see `studio.workers.stage_process`): no Qt.

The window's Drivers list starts `child_main` from the stages' forkserver, so training (torch)
never shares the GUI's interpreter. Protocol: the stages' (sent by `stage_process.Reporter` in
`child_run`) with the job name "drive" where a stage's name stands, and no "started" message.
Parent → child: the `cancel` and `running` events read by `Control`.
"""
from __future__ import annotations

from ..progress import Control
from ..workers.stage_process import Reporter, child_run

JOB = "drive"


def train(project, actor: str, preset: str | None, overrides: dict | None, device: str | None,
          control: Control, on_progress) -> dict:
    """`train_actor` with the arguments the GUI passes; the child and the in-thread run both call it."""
    from .job import train_actor

    return train_actor(project, actor, preset=preset, overrides=overrides or None, control=control,
                       on_progress=on_progress, device=device)


def child_main(root: str, actor: str, preset: str | None, overrides: dict, device: str | None, queue, cancel,
               running) -> None:
    """Entry point of the training process: `train_actor` on the project at `root`."""

    def body(reporter: Reporter, control: Control) -> None:
        from ..project import Project

        project = Project.open(root)
        reporter.run(JOB, lambda c, p: train(project, actor, preset, overrides, device, c, p), control,
                     announce=False)

    child_run(queue, cancel, running, JOB, body)
