"""The studio window's project actions: opening, creating and closing projects (with the New project and
Open dialogs, the recent list and drag and drop), and the project folder going away while it is open."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..errors import StudioError
from .dialogs import VIDEO_EXTENSIONS, NewProjectDialog, project_gone_box
from .theme import icon
from .workers import Failure


class ProjectActions:
    """A mixin of `MainWindow` (studio/gui/main_window.py). Uses the window's `project`, `settings`, `runner`,
    `engine_dialog`, `new_dialog`, `gone_dialog`, `error_dialog`, `_gone_told`, `_close_when_idle`, `_watcher`;
    its widgets `sidebar`, `project_label`, `source_label`, `recent_menu`, `pages`, `welcome`, `stage_page`,
    `tracking_view`, `viewer`, `export_panel`, `preset_box`, `device_box`, `act_run`, `act_run_all`,
    `act_close`; and `show_error`, `show_view`, `select_stage`, `_fill_stages` (the window),
    `_show_saved_choices` (`SettingsActions`), `is_running`, `cancel`, `_update_run_actions` (`RunActions`)."""

    # ------------------------------------------------------------------ projects
    def set_project(self, project) -> None:
        if self.runner is not None and self.runner.isRunning():
            self.show_error("A stage is running", Failure("a stage is still running in this project",
                                                          "cancel it first, then switch projects"))
            return
        if self.export_panel.is_running():
            self.show_error("An export is running", Failure("an export is still running in this project",
                                                            "cancel it first, then switch projects"))
            return
        if self.engine_dialog is not None:
            try:
                self.engine_dialog.reject()  # it was about another project
            except RuntimeError:
                pass  # already closed and deleted
            self.engine_dialog = None
        self.project = project
        self.stage_page.dashboard.reset("")  # curves of the project shown before must not stay
        self._close_when_idle = self._gone_told = False
        self._watch(project)
        if self.gone_dialog is not None:
            try:
                self.gone_dialog.close()  # it was about the project shown before
            except RuntimeError:
                pass
            self.gone_dialog = None
        has = project is not None
        self.sidebar.setVisible(has)
        for a in (self.act_run, self.act_run_all, self.act_close):
            a.setEnabled(has)
        self.preset_box.setEnabled(has)
        self.device_box.setEnabled(has)
        self._update_run_actions()
        self._fill_recent()
        if not has:
            self.setWindowTitle("Avatar Studio")
            self.welcome.set_recent(self.settings.recent)
            self.pages.setCurrentWidget(self.welcome)
            self.viewer.set_project(None)
            self.export_panel.set_project(None)
            return
        self.setWindowTitle(f"{project.name} — Avatar Studio")
        self.project_label.set_full_text(project.name, str(project.root))
        src = (project.manifest.get("source") or {}).get("path")
        self.source_label.set_full_text(Path(src).name if src else "no video", src or "")
        self._show_saved_choices()
        self._fill_stages()
        self.settings.add_recent(project.root)
        self._fill_recent()
        from ..pipeline import stage_state
        from ..stages import REGISTRY

        states = {n: stage_state(project, n) for n in REGISTRY}
        # reopened after a run stopped (the window or its training was killed, cancelled, failed): that stage,
        # with its Resume button; otherwise, when an avatar is trained, the viewer (a project trained with one
        # engine would else open on the other engine's first stage); otherwise the first stage not done
        stopped = next((n for n, st in states.items() if st in ("interrupted", "cancelled", "failed")), None)
        first = stopped or next((n for n, st in states.items() if st != "done"), next(iter(REGISTRY), None))
        self.tracking_view.set_project(project)
        self.viewer.set_project(project)
        self.export_panel.set_project(project)
        from ..avatar import trained_engines

        if stopped is None and trained_engines(project):
            self.show_view("viewer")
        elif first:
            self.select_stage(first)
        self.statusBar().showMessage(f"Opened {project.root}", 5000)

    def open_project(self, path: str | Path) -> bool:
        from ..project import Project

        try:
            proj = Project.open(path)
        except StudioError as exc:
            f = Failure.from_exception(exc)
            if "avatar-studio new" in f.hint:  # the command line's words ("create one with `avatar-studio new`")
                f.hint = ("choose the project's own folder (the one with project.json in it), or make a new project "
                          "from a video with New")
            self.show_error("Cannot open the project", f)
            return False
        self.set_project(proj)
        return self.project is proj

    def open_project_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open an avatar project", str(Path.home()))
        if path:
            self.open_project(path)

    def new_project(self, video: str = "") -> NewProjectDialog:
        """Show the New project dialog (non-blocking); returns it."""
        last = self.settings.get("project_folder") or ""
        dlg = NewProjectDialog(self, video=video, folder=last)
        dlg.accepted.connect(lambda: self.create_project(**dlg.values()))
        dlg.setAttribute(Qt.WA_DeleteOnClose)
        self.new_dialog = dlg
        dlg.open()
        return dlg

    def create_project(self, video: str, root: str, preset: str = "preview") -> bool:
        from ..project import Project

        try:
            proj = Project.create(root, source_video=video, preset=preset, device="auto")
        except StudioError as exc:
            self.show_error("Cannot create the project", Failure.from_exception(exc))
            return False
        except OSError as exc:
            self.show_error("Cannot create the project", Failure(f"cannot write {root}: {exc.strerror or exc}",
                                                                 "choose a folder you can write to"))
            return False
        self.settings.set("project_folder", str(Path(root).parent))
        self.set_project(proj)
        self.statusBar().showMessage(f"Created {proj.root}. Press Run to start with the first stage.", 8000)
        return True

    def remove_new_project(self) -> bool:
        """The failure dialog's "Remove the project" (nothing trained in it, `Project.remove_unstarted`): close
        the project, then delete its folder; the window shows the welcome page. False when refused."""
        proj = self.project
        if proj is None or self.is_running() or self.export_panel.is_running():
            self.statusBar().showMessage("Wait for what runs in the project to stop, then remove it.", 8000)
            return False
        self.set_project(None)   # first: the folder watcher must not take the removal for a folder gone astray
        try:
            proj.remove_unstarted()
        except StudioError as exc:
            self.set_project(proj)
            self.show_error("The project is not removed", Failure.from_exception(exc))
            return False
        except OSError as exc:
            self.show_error("The project is not removed entirely",
                            Failure(f"cannot delete everything in {proj.root}: {exc.strerror or exc}",
                                    "close any program that uses a file in it, then delete the folder yourself"))
            return False
        self.welcome.set_recent(self.settings.recent)
        self._fill_recent()
        self.statusBar().showMessage(f"Removed the project {proj.root}.", 8000)
        return True

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent:
            self.recent_menu.addAction(icon("folder"), p, lambda p=p: self.open_project(p))
        if self.settings.recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", lambda: (self.settings.clear_recent(), self._fill_recent()))
        self.recent_menu.setEnabled(bool(self.settings.recent))

    # ------------------------------------------------------------------ the project folder goes away
    def _watch(self, project) -> None:
        old = self._watcher.directories() + self._watcher.files()
        if old:
            self._watcher.removePaths(old)
        if project is not None:
            root = Path(project.root)
            self._watcher.addPaths([str(root), str(root.parent)])

    def project_gone(self) -> bool:
        """Whether the open project's folder (its project.json) is no longer where it was opened."""
        from ..project import MANIFEST

        return self.project is not None and not (Path(self.project.root) / MANIFEST).is_file()

    def check_project(self) -> bool:
        """Before an action on the project: True when its folder is still there; otherwise the
        project-gone dialog is shown (again) and the action should not go on."""
        if not self.project_gone():
            return True
        self.show_project_gone()
        return False

    def _project_folder_changed(self, _path: str) -> None:
        # said once when it happens; after "Keep the window", each action on the project says it again
        if not self._gone_told and self.project_gone():
            self.show_project_gone()

    def show_project_gone(self) -> QMessageBox:
        """The dialog that says the project's folder is gone and what to do; shown once at a time
        (an open one is raised). A stage still running there is cancelled."""
        box = self.gone_dialog
        if box is not None:
            try:
                box.raise_()
                self.error_dialog = box
                return box
            except RuntimeError:  # closed and deleted
                self.gone_dialog = None
        self._gone_told = True
        if self.is_running():
            self.cancel()  # it cannot write its results anywhere
        self.setWindowTitle(f"{self.project.name} (folder gone) — Avatar Studio")
        self.statusBar().showMessage(f"The project folder {self.project.root} is gone.")
        src = (self.project.manifest.get("source") or {}).get("path")
        box = project_gone_box(self, Path(self.project.root), src)
        box.close_button.clicked.connect(self.close_gone_project)
        box.finished.connect(lambda _r, b=box: self._gone_dialog_closed(b))
        self.gone_dialog = self.error_dialog = box
        return box

    def _gone_dialog_closed(self, box) -> None:
        if self.gone_dialog is box:
            self.gone_dialog = None

    def close_gone_project(self) -> None:
        """The dialog's Close project: close now, or as soon as a running stage or export has stopped."""
        if self.is_running() or self.export_panel.is_running():
            self._close_when_idle = True
            self.cancel()
            self.export_panel.cancel()
            self.statusBar().showMessage("Stopping what runs in the project, then closing it…")
            return
        self.set_project(None)

    def _close_if_asked(self, *_args) -> None:
        if not self._close_when_idle:
            return
        if self.is_running() or self.export_panel.is_running():  # the thread is still ending
            QTimer.singleShot(200, self._close_if_asked)
            return
        self._close_when_idle = False
        self.set_project(None)

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, ev) -> None:  # noqa: N802
        if self._dropped_path(ev.mimeData()) is not None and not self.is_running():
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dropEvent(self, ev) -> None:  # noqa: N802
        path = self._dropped_path(ev.mimeData())
        if path is None:
            return
        ev.acceptProposedAction()
        self.handle_dropped(path)

    def handle_dropped(self, path: Path) -> None:
        if path.is_dir():
            self.open_project(path)
        else:
            self.new_project(video=str(path))

    @staticmethod
    def _dropped_path(mime) -> Path | None:
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            p = Path(url.toLocalFile())
            if p.is_dir() and (p / "project.json").exists():
                return p
            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
                return p
        return None
