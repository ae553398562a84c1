"""Exports in a child process, like stages (see `stage_process`): no Qt here.

The window's `ExportRunner` starts `child_main` from the same forkserver as the stages, so
rendering (torch) never shares the GUI's interpreter. `drive` is the loop both the child
and the in-thread fallback use: it runs `studio.export.export` and feeds a `Batcher`.

Protocol: the stages' (`stage_process`, sent by its `Reporter` in `child_run`) with the job
name "export" where a stage's name stands, and no "started" message.
"""
from __future__ import annotations

from typing import Any, Callable

from ..progress import Control
from .stage_process import Reporter, child_run

JOB = "export"
"""The name export messages carry where a stage's carry the stage."""


def drive(project, cfg_values: dict, out: str, control: Control, on_progress: Callable,
          avatar=None) -> dict:
    """Run one export to the end; progress goes to `on_progress`; returns the result dict."""
    from ..config import from_dict
    from ..export import ExportConfig, export
    from ..progress import run_to_end

    cfg = from_dict(ExportConfig, cfg_values)
    return run_to_end(export(project, cfg, out, control=control, avatar=avatar), on_progress)


def open_avatar(project, cfg_values: dict, loader: Any):
    """The avatar the export child renders: None without a loader (the export opens the named
    engine itself), else the loader's engine opened as `Avatar.open` opens one, with the project,
    so detail from the video follows `ExportConfig.detail` as in the CLI (wrapped bare, the window's
    exports were the engine's soft render alone)."""
    if loader is None:
        return None
    from ..avatar import Avatar
    from ..engines import ENGINES, call_loader

    return Avatar(call_loader(loader, project), ENGINES.get(cfg_values.get("engine")), project,
                  detail=bool(cfg_values.get("detail", True)),
                  flame_geometry=bool(cfg_values.get("flame_geometry", True)),
                  scene=bool(cfg_values.get("scene", True)))


def child_main(root: str, cfg_values: dict, out: str, loader: Any, queue, cancel, running) -> None:
    """Entry point of the export process. `loader(project)` gives the engine (None: the
    engine named in `cfg_values`, opened with `Avatar.open`)."""

    def body(reporter: Reporter, control: Control) -> None:
        from ..project import Project

        def work(control: Control, on_progress: Callable) -> dict:
            project = Project.open(root)
            return drive(project, cfg_values, out, control, on_progress, open_avatar(project, cfg_values, loader))

        reporter.run(JOB, work, control, announce=False)

    child_run(queue, cancel, running, JOB, body)
