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
from pathlib import Path

from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import QObject

from .process_runner import JobRunner


def _picklable(obj) -> bool:
    try:
        pickle.dumps(obj)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


class ExportRunner(JobRunner):
    """Runs one export; `progress(ProgressBatch)`, then `done(result)`, `failed(Failure)` or `cancelled()`."""

    process_name = "avatar-studio-export"
    lost = ("the export process stopped unexpectedly (exit code {code})",
            "it may have run out of memory: close other programs and export again")

    def __init__(self, project, cfg_values: dict, out: str | Path, avatar=None, in_process: bool | None = None,
                 parent: QObject | None = None):
        from ..engines import ENGINES

        cfg_values = dict(cfg_values)
        loader = None
        if avatar is None and cfg_values.get("engine") in ENGINES:
            loader = ENGINES[cfg_values["engine"]].loader
        if in_process is None:
            in_process = avatar is not None or (loader is not None and not _picklable(loader))
        super().__init__("export", in_process, parent=parent)
        self.project = project
        self.cfg_values = cfg_values
        self.out = str(out)
        self.avatar = avatar
        self.loader = loader

    def child(self):
        from ..workers.export_process import child_main

        return child_main, (str(self.project.root), self.cfg_values, self.out, self.loader)

    def work_here(self, reporter) -> None:
        from ..workers.export_process import JOB, drive

        reporter.run(JOB, lambda c, p: drive(self.project, self.cfg_values, self.out, c, p, self.avatar),
                     self.control, announce=False)

    def after(self) -> None:
        if self.outcome != "done":
            self._remove_partials()

    def _remove_partials(self) -> None:
        """A killed child cannot clean up: remove its temporary file (never the output path)."""
        out = Path(self.out)
        for p in out.parent.glob(f".{glob.escape(out.stem)}.*.partial{glob.escape(out.suffix)}"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
