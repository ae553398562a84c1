"""The studio window running stages: Run, Run all, the stage runner's callbacks (the dashboard, the status
line, the stage list), pause / resume / cancel, and closing the window while a stage or an export runs."""
from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QMessageBox

from ..errors import StudioError
from .dialogs import remove_new_project_box
from .workers import Failure, ProgressBatch, StageRunner


class RunActions:
    """A mixin of `MainWindow` (studio/gui/main_window.py). Uses the window's `project`, `settings`, `runner`,
    `session`, `engine_dialog`, `close_dialog`, `_busy`, `_closing`, `_poll` (and sets `_pace`, `_stage_t0`,
    `_note_until`); its widgets `pages`, `stage_page`, `tracking_view`, `viewer`, `export_panel`, `preset_box`,
    `device_box` and the actions `act_new`, `act_open`, `act_run`, `act_run_all`, `act_pause`, `act_resume`,
    `act_cancel`; and `show_error`, `refresh_stages`, `select_stage`, `selected_stage` (the window),
    `check_project`, `project_gone`, `show_project_gone`, `_close_if_asked` (`ProjectActions`)."""

    # ------------------------------------------------------------------ running
    def chain_for(self, name: str) -> list[str]:
        """`name` and every upstream stage that is not done, in run order."""
        return self.session.plan_stage(name)

    def run_selected(self) -> None:
        name = self.stage_page.stage if self.pages.currentWidget() is self.stage_page else None
        name = name or self.selected_stage()
        if name:
            self.run_stage(name)

    def run_all(self, engine: str | None = None):
        """Train an avatar: ask which engine (a non-blocking dialog, returned), or run `engine`'s
        stages that are not done (an engine's name or "both")."""
        from .engine_dialog import EngineDialog, stages_for

        if self.project is None or not self.check_project():
            return None
        if engine is None:
            if not self.session.plan_engine("both"):
                self.statusBar().showMessage("Both engines are trained: every stage is done.", 5000)
                return None
            from ..engines import ENGINES

            dlg = EngineDialog(self.project, self, default=self.settings.get("run_all_engine") or next(iter(ENGINES)))
            dlg.accepted.connect(lambda: dlg.choice() and self.run_all(dlg.choice()))
            dlg.setAttribute(Qt.WA_DeleteOnClose)
            self.engine_dialog = dlg
            dlg.open()
            return dlg
        self.settings.set("run_all_engine", engine)
        todo = stages_for(self.project, engine)
        if not todo:
            self.statusBar().showMessage("That engine is trained: every stage it needs is done.", 5000)
            return None
        return self.start_run(todo, force=())

    def run_stage(self, name: str) -> StageRunner | None:
        if self.project is None or not self.check_project():
            return None
        overrides = {}
        if self.stage_page.stage == name and name in self.stage_page.forms:
            overrides[name] = self.stage_page.forms[name].values()
        force = self.session.force_for(name)
        return self.start_run(self.chain_for(name), overrides, force)

    def start_run(self, stages: list[str], overrides: dict | None = None, force=()) -> StageRunner | None:
        if self.runner is not None and self.runner.isRunning():
            self.statusBar().showMessage("A stage is already running.", 5000)
            return None
        if not self.check_project():
            return None
        runner = StageRunner(self.project, stages, overrides, device=self.device_box.currentData(), force=force)
        self._pace = self._run_pace(stages)
        runner.stage_started.connect(self._run_started)
        runner.progress.connect(self._run_progress)
        runner.stage_finished.connect(self._run_stage_done)
        runner.failed.connect(self._run_failed)
        runner.cancelled.connect(self._run_cancelled)
        runner.finished.connect(self._run_finished)
        self.runner = runner
        from .run_history import history_log

        self.stage_page.dashboard.reset(stages[0], log=history_log(self.project, stages[0]))
        self.stage_page.dashboard.set_running(True)
        if self.pages.currentWidget() is not self.stage_page:
            self.select_stage(stages[-1])
        self._busy = True
        runner.start()
        self._poll.start()
        self._update_run_actions()
        self.refresh_stages()
        return runner

    def _run_pace(self, stages: list[str]):
        """The stages' prices from this process's newest speed test of the project's preset on the device the run
        uses (`speed_probe.RunPace`), or None (no test yet, another device, settings changed from the preset's)."""
        from ..compute import resolve_device
        from ..speed_probe import RunPace, latest

        est = latest(self.project.preset)
        try:
            device = resolve_device(self.device_box.currentData() or "auto")
        except StudioError:
            return None
        return RunPace(est, stages) if est is not None and est.device == device else None

    def reload_manifest(self) -> None:
        """Read back what the stage process wrote (the GUI does not write while a stage runs)."""
        from ..project import Project

        if self.project is None:
            return
        try:
            self.project.manifest = Project.open(self.project.root).manifest
        except StudioError:
            pass  # keep what we have; the next poll tries again

    def _run_started(self, name: str) -> None:
        from ..stages import REGISTRY
        from .run_history import history_log

        d = self.stage_page.dashboard
        d.reset(name, log=history_log(self.project, name))
        d.set_running(True)
        d.set_title(f"Running: {REGISTRY[name].title}")
        self._stage_t0 = time.perf_counter()
        if getattr(self, "_pace", None) is not None:
            d.set_after(self._pace.after(name))
        if time.monotonic() >= getattr(self, "_note_until", 0.0):   # else the last stage's line stays a while
            self.statusBar().showMessage(f"Running {REGISTRY[name].title}…")
        self.refresh_stages()

    def _run_progress(self, b: ProgressBatch) -> None:
        self.stage_page.dashboard.add_batch(b)
        pct = f" {100 * b.step / b.total:.0f}%" if b.total else ""
        text = f"{_title(b.stage)}{' · ' + b.part if b.part else ''}{pct}  {b.message}"
        if time.monotonic() < getattr(self, "_note_until", 0.0):
            return                       # a stage's time against its price stays readable for a while
        if text != self.statusBar().currentMessage():
            self.statusBar().showMessage(text)

    def _run_stage_done(self, name: str, result: dict) -> None:
        from ..stages import REGISTRY

        line = None
        if getattr(self, "_pace", None) is not None and getattr(self, "_stage_t0", None) is not None:
            try:
                line = self._pace.stage_done(name, result, time.perf_counter() - self._stage_t0)
            except Exception:     # a note on the time must never get in the way of the run
                line = None
        title = REGISTRY[name].title
        if line and line.startswith(title):   # the pace's line names the stage itself ("Pivotal tuning took …")
            text = line
        else:
            text = f"{title} finished" + (f": {line}" if line else ".")
        self.statusBar().showMessage(text, 20000 if line else 8000)
        self._note_until = time.monotonic() + (20.0 if line else 0.0)   # the next stage's progress waits
        self.reload_manifest()
        self.refresh_stages()
        if name == "track" or "track" in REGISTRY[name].depends_on:
            self.tracking_view.reload()
        self.viewer.set_project(self.project)
        self.export_panel.refresh()

    def _run_failed(self, name: str, f: Failure) -> None:
        if self.project_gone():  # the stage failed because its folder went away: say that
            self.show_project_gone()
            return
        self.reload_manifest()
        self._note_until = 0.0
        # the status line said the stage's last progress ("Video · probe 0% reading notes.mp4") as if it still ran
        self.statusBar().showMessage(f"{_title(name)} stopped: {f.message}")
        if name in ("ingest", "track") and not f.details and self.project.nothing_trained:
            # nothing could be made of the video (no face, too short, unreadable): offer to remove the project,
            # as `avatar-studio new` removes it itself; a bug's failure (with details) keeps the plain dialog
            box = remove_new_project_box(self, f"{_title(name)} stopped", f, self.project.root)
            box.remove_button.clicked.connect(self.remove_new_project)
            self.error_dialog = box
            return
        self.show_error(f"{_title(name)} stopped", f)

    def _run_cancelled(self, name: str) -> None:
        self.reload_manifest()
        self.statusBar().showMessage(f"Cancelled {_title(name)}. Run it again to resume.", 8000)

    def _run_finished(self) -> None:
        self._busy = False
        self._poll.stop()
        self.reload_manifest()
        d = self.stage_page.dashboard
        d.set_running(False)
        outcome = self.runner.outcome if self.runner else ""
        d.set_title({"done": "Finished", "cancelled": "Cancelled", "failed": "Failed"}.get(outcome, "Stopped") +
                    (f": {_title(self.runner.current)}" if self.runner and self.runner.current else ""))
        self._update_run_actions()
        self.refresh_stages()
        self._close_if_asked()

    def pause(self) -> None:
        if self.runner is not None and self.runner.isRunning():
            self.runner.pause()
            self.stage_page.dashboard.set_running(True, paused=True)
            self.stage_page.dashboard.set_title(f"Paused: {_title(self.runner.current)}")
            self._update_run_actions()

    def resume(self) -> None:
        if self.runner is not None and self.runner.isRunning():
            self.runner.resume()
            self.stage_page.dashboard.set_running(True, paused=False)
            self.stage_page.dashboard.set_title(f"Running: {_title(self.runner.current)}")
            self._update_run_actions()

    def cancel(self) -> None:
        if self.runner is not None and self.runner.isRunning():
            self.runner.cancel()
            self.stage_page.dashboard.set_title(f"Cancelling {_title(self.runner.current)}…")
            self.statusBar().showMessage("Cancelling after the current step…")

    def is_running(self) -> bool:
        """True from the start of a run until its outcome has reached the window (the thread ends a moment
        before its queued `finished` is handled; asking the thread would miss that gap)."""
        return self._busy

    def _update_run_actions(self) -> None:
        running = self.is_running()
        paused = running and self.runner.paused
        has = self.project is not None
        self.act_run.setEnabled(has and not running)
        self.act_run_all.setEnabled(has and not running)
        self.act_pause.setEnabled(running and not paused)
        self.act_resume.setEnabled(running and paused)
        self.act_cancel.setEnabled(running)
        exporting = self.export_panel.is_running()
        self.act_new.setEnabled(not running and not exporting)
        self.act_open.setEnabled(not running and not exporting)
        self.preset_box.setEnabled(has and not running)
        self.device_box.setEnabled(has and not running)

    # ------------------------------------------------------------------ closing
    def work_in_progress(self) -> str:
        """What closing the window would stop, in words ("" when nothing runs)."""
        if self.runner is not None and self.runner.isRunning():
            return _title(self.runner.current or (self.runner.stages or [""])[0]) or "A stage"
        if self.export_panel.runner is not None and self.export_panel.runner.isRunning():
            return "The export"
        return ""

    def ask_to_close(self, what: str) -> QMessageBox:
        """The question closing asks while a stage or an export runs (non-blocking; returned shown): Stop and
        close (`stop_button`), or Keep running (`keep_button`)."""
        box = self.close_dialog
        if box is not None:
            try:
                box.raise_()
                return box
            except RuntimeError:  # closed and deleted
                pass
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Question)
        box.setWindowTitle("Stop and close?")
        box.setText(f"{what} is still running.")
        if what == "The export":
            box.setInformativeText("Closing the window stops it, and the clip is not written (a file already there "
                                   "under that name stays as it was).")
        else:
            box.setInformativeText("Closing the window stops it after its current step. Nothing is lost: run it "
                                   "again later to go on from where it stopped.")
        box.stop_button = box.addButton("Stop and close", QMessageBox.DestructiveRole)
        box.keep_button = box.addButton("Keep running", QMessageBox.RejectRole)
        box.setDefaultButton(box.keep_button)
        box.setEscapeButton(box.keep_button)
        box.stop_button.clicked.connect(self.stop_and_close)
        box.setWindowModality(Qt.WindowModal)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.finished.connect(lambda _r: setattr(self, "close_dialog", None))
        self.close_dialog = box
        box.open()
        return box

    def stop_and_close(self) -> None:
        """Cancel what runs, then close the window once it has stopped (the stage records "cancelled", the
        export removes its unfinished file); after 30 s the window closes anyway and stops it harder."""
        self._closing = True
        self.cancel()
        self.export_panel.cancel()
        self.statusBar().showMessage("Stopping, then closing…")
        deadline = time.monotonic() + 30.0

        def check() -> None:
            if (self.work_in_progress() or self.is_running() or self.export_panel.is_running()) \
                    and time.monotonic() < deadline:
                QTimer.singleShot(100, check)
            else:
                self.close()
        QTimer.singleShot(100, check)

    def closeEvent(self, ev) -> None:  # noqa: N802
        what = self.work_in_progress()
        if what and not self._closing:
            ev.ignore()  # a training of hours is not stopped by a stray click: ask
            self.ask_to_close(what)
            return
        if self.is_running():
            self.runner.cancel()
            if not self.runner.wait(10000):
                self.runner.kill()
                self.runner.wait(3000)
        self.stage_page.commit_edits()
        self.viewer.shutdown()
        self.export_panel.shutdown()
        self.settings.set("geometry", bytes(self.saveGeometry().toBase64()).decode())
        super().closeEvent(ev)


def _title(stage: str | None) -> str:
    """A stage as the stage list names it ("Subject prior", not "prior")."""
    from ..stages import REGISTRY

    spec = REGISTRY.get(stage) if stage else None
    return spec.title if spec is not None else str(stage or "")
