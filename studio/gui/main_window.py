"""The studio window: projects, the stage list, stage pages with the dashboard, tracking, viewer, export."""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QByteArray, QFileSystemWatcher, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QMainWindow, QMessageBox, QPushButton, QSizePolicy, QStackedWidget, QToolBar, QVBoxLayout, QWidget)

from .. import __version__
from ..errors import StudioError
from .dialogs import VIDEO_EXTENSIONS, NewProjectDialog, error_box, project_gone_box
from .export_panel import ExportPanel
from .labels import ElidedLabel
from ..model_files import ModelFiles
from .settings import AppSettings
from .stage_page import StagePage
from .theme import icon
from .tracking_view import TrackingView
from .viewer import ViewerPanel
from .workers import Failure, ProgressBatch, StageRunner, run_job

ROLE = Qt.UserRole


class WelcomePage(QWidget):
    def __init__(self, window: "MainWindow"):
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(60, 50, 60, 40)
        lay.setSpacing(14)
        t = QLabel("Avatar Studio")
        t.setObjectName("PageTitle")
        t.setStyleSheet("font-size: 22pt;")
        sub = QLabel("Turn one video of a face into an avatar you can pose and animate. "
                     "Start a project from a video, or open one you made before.")
        sub.setObjectName("Dim")
        sub.setWordWrap(True)
        lay.addWidget(t)
        lay.addWidget(sub)
        row = QHBoxLayout()
        self.new_btn = QPushButton(icon("new"), "New avatar from a video…")
        self.new_btn.setObjectName("Primary")
        self.open_btn = QPushButton(icon("open"), "Open project…")
        for b in (self.new_btn, self.open_btn):
            b.setIconSize(QSize(20, 20))
            b.setMinimumHeight(40)
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        drop = QLabel("…or drop a video file (or a project folder) onto this window.")
        drop.setObjectName("Hint")
        lay.addWidget(drop)
        self.speed = QLabel("")
        self.speed.setObjectName("Dim")
        self.speed.setWordWrap(True)
        self.speed.setMaximumWidth(720)
        lay.addWidget(self.speed)
        self.estimate = None
        self.start_speed_probe()
        rt = QLabel("RECENT PROJECTS")
        rt.setObjectName("SectionTitle")
        lay.addSpacing(12)
        lay.addWidget(rt)
        self.recent = QListWidget()
        self.recent.setMaximumWidth(720)
        lay.addWidget(self.recent, 1)
        self.new_btn.clicked.connect(lambda: window.new_project())
        self.open_btn.clicked.connect(lambda: window.open_project_dialog())
        self.recent.itemActivated.connect(lambda it: window.open_project(it.data(ROLE)))
        self.recent.itemClicked.connect(lambda it: window.open_project(it.data(ROLE)))

    def start_speed_probe(self) -> None:
        """How long the preview training takes here and whether there is a GPU: a short probe in a worker
        (`studio.speed_probe`; once per process). AVATAR_STUDIO_SPEED_PROBE=0 turns it off."""
        import os

        from .. import speed_probe

        if os.environ.get("AVATAR_STUDIO_SPEED_PROBE", "1") == "0":
            return
        self.speed.setText("Measuring how fast this machine trains…")

        def done(est) -> None:
            try:
                self.estimate = est
                self.speed.setText(est.describe())
            except RuntimeError:  # the page was closed before the probe ended
                pass

        def failed(f) -> None:
            try:
                self.speed.setText(f"Could not measure the training speed here ({f.message}).")
            except RuntimeError:
                pass

        run_job(lambda: speed_probe.cached_probe("preview"), done, failed)

    def set_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        for p in paths:
            it = QListWidgetItem(icon("folder"), f"{Path(p).name}    —    {p}")
            it.setData(ROLE, p)
            self.recent.addItem(it)
        if not paths:
            it = QListWidgetItem("No recent projects yet.")
            it.setFlags(Qt.NoItemFlags)
            self.recent.addItem(it)


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings | None = None):
        super().__init__()
        self.settings = settings or AppSettings()
        self.project = None
        self.runner: StageRunner | None = None
        self._busy = False  # from start_run until _run_finished has handled the outcome
        self.error_dialog = None
        self.new_dialog: NewProjectDialog | None = None
        self.models_dialog = None
        self.engine_dialog = None
        self.gpu_available = False
        self.gone_dialog = None
        self._gone_told = False
        self._close_when_idle = False
        self._closing = False  # Stop and close was chosen: closing no longer asks
        self.close_dialog: QMessageBox | None = None
        # the open project's folder (and the folder holding it): deleting, moving or renaming the
        # project shows `gone_dialog` at once, not only at the next action
        self._watcher = QFileSystemWatcher(self)
        self._watcher.directoryChanged.connect(self._project_folder_changed)
        self.setWindowTitle("Avatar Studio")
        self.setWindowIcon(icon("app"))
        self.resize(1360, 860)
        self.setMinimumSize(1000, 660)
        self.setAcceptDrops(True)
        self._build_actions()
        self._build_toolbar()
        self._build_menus()
        self._build_body()
        self.statusBar().showMessage("Ready")
        self._poll = QTimer(self)
        self._poll.setInterval(1000)
        self._poll.timeout.connect(lambda: (self.reload_manifest(), self.refresh_stages()))
        geo = self.settings.get("geometry")
        if geo:
            self.restoreGeometry(QByteArray.fromBase64(geo.encode()))
        else:
            self._fit_screen()
        self.set_project(None)
        run_job(_cuda_available, self._gpu_detected, lambda _f: None)
        from ..workers.stage_process import warm_up

        run_job(warm_up)  # the first Run starts sooner and does not fork from the GUI thread

    def _fit_screen(self) -> None:
        """First start: no bigger than the screen leaves (a 1366 × 768 laptop has about 1366 × 730 for a
        window), so the bottom of the pages is not under the task bar."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        room = screen.availableGeometry()
        w = max(self.minimumWidth(), min(self.width(), room.width()))
        h = max(self.minimumHeight(), min(self.height(), room.height() - 40))   # the title bar
        self.resize(w, h)

    # ------------------------------------------------------------------ building
    def _build_actions(self) -> None:
        def act(text, ico, slot, shortcut=None, tip=""):
            a = QAction(icon(ico), text, self)
            a.triggered.connect(slot)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            a.setToolTip(tip or text)
            return a

        self.act_new = act("New", "new", lambda: self.new_project(), QKeySequence.New, "New project from a video (Ctrl+N)")
        self.act_open = act("Open", "open", lambda: self.open_project_dialog(), QKeySequence.Open,
                            "Open a project folder (Ctrl+O)")
        self.act_close = act("Close project", "folder", lambda: self.set_project(None))
        self.act_run = act("Run", "run", lambda: self.run_selected(), "Ctrl+R", "Run the selected stage (Ctrl+R)")
        self.act_run_all = act("Run all", "run", lambda: self.run_all(), "Ctrl+Shift+R",
                               "Train an avatar: every stage of the engine you pick that is not done yet "
                               "(Ctrl+Shift+R)")
        self.act_pause = act("Pause", "pause", lambda: self.pause(), None, "Pause the running stage")
        self.act_resume = act("Resume", "run", lambda: self.resume(), None, "Resume the paused stage")
        self.act_cancel = act("Cancel", "cancel", lambda: self.cancel(), "Ctrl+.", "Cancel the running stage")
        self.act_models = act("Models", "models", lambda: self.show_models(), None,
                              "Optional weight files (StyleGAN2, CLIP, ArcFace, LPIPS, FLAME)")
        self.act_quit = act("Quit", "cancel", self.close, QKeySequence.Quit)

    def _build_toolbar(self) -> None:
        tb = QToolBar("Main")
        tb.setMovable(False)
        tb.setIconSize(QSize(18, 18))
        tb.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.addToolBar(tb)
        for a in (self.act_new, self.act_open):
            tb.addAction(a)
        tb.addSeparator()
        # Pause / Resume live on the run page's dashboard (and the Stage menu): a second Resume here
        # stood beside the page's Resume of a stopped stage
        for a in (self.act_run, self.act_run_all, self.act_cancel):
            tb.addAction(a)
        tb.addSeparator()
        tb.addWidget(QLabel("Preset"))
        self.preset_box = QComboBox()
        self.preset_box.addItem("Preview (CPU)", "preview")
        self.preset_box.addItem("Quality (GPU)", "quality")
        self.preset_box.setToolTip("Default settings of every stage not run yet: quick previews, or full quality")
        self.preset_box.currentIndexChanged.connect(self._preset_changed)
        tb.addWidget(self.preset_box)
        tb.addWidget(QLabel("Device"))
        self.device_box = QComboBox()
        self.device_box.addItem("Auto", "auto")
        self.device_box.addItem("CPU", "cpu")
        self.device_box.addItem("GPU (CUDA)", "cuda")
        self.device_box.model().item(2).setEnabled(False)
        self.device_box.setToolTip("Where stages compute. GPU is offered when a CUDA GPU is found.")
        self.device_box.currentIndexChanged.connect(self._device_changed)
        tb.addWidget(self.device_box)
        spacer = QWidget()
        spacer.setObjectName("Spacer")
        spacer.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        tb.addWidget(spacer)
        tb.addAction(self.act_models)
        self.toolbar = tb

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        f.addAction(self.act_new)
        f.addAction(self.act_open)
        self.recent_menu = f.addMenu("Open recent")
        f.addAction(self.act_close)
        f.addSeparator()
        f.addAction(self.act_quit)
        s = mb.addMenu("&Stage")
        for a in (self.act_run, self.act_run_all, self.act_pause, self.act_resume, self.act_cancel):
            s.addAction(a)
        v = mb.addMenu("&View")
        self.act_show_tracking = v.addAction(icon("tracking"), "Tracking", lambda: self.show_view("tracking"))
        self.act_show_viewer = v.addAction(icon("viewer"), "Viewer", lambda: self.show_view("viewer"))
        self.act_show_export = v.addAction(icon("export"), "Export", lambda: self.show_view("export"))
        self.act_show_tracking.setShortcut("Ctrl+T")
        self.act_show_viewer.setShortcut("Ctrl+E")
        self.act_show_export.setShortcut("Ctrl+Shift+E")
        t = mb.addMenu("&Tools")
        t.addAction(self.act_models)
        h = mb.addMenu("&Help")
        h.addAction("About Avatar Studio", self.about)

    def _build_body(self) -> None:
        body = QWidget()
        lay = QHBoxLayout(body)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        side = QFrame()
        side.setObjectName("Sidebar")
        side.setFixedWidth(250)
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 8, 0, 8)
        sl.setSpacing(2)
        # names do not wrap (a folder name is one long word): elided, the whole name in the tooltip
        self.project_label = ElidedLabel("")
        self.project_label.setStyleSheet("font-weight: bold; font-size: 11pt; background: transparent;")
        self.project_label.setContentsMargins(12, 4, 12, 4)
        self.source_label = ElidedLabel("")
        self.source_label.setObjectName("Hint")
        self.source_label.setContentsMargins(12, 0, 12, 0)
        sl.addWidget(self.project_label)
        sl.addWidget(self.source_label)
        t1 = QLabel("STAGES")
        t1.setObjectName("SectionTitle")
        sl.addWidget(t1)
        self.stage_list = QListWidget()
        self.stage_list.setIconSize(QSize(18, 18))
        # in a short window the list scrolls down; its scroll bar then takes the width a long stage name
        # needs: that name is elided (its tooltip says it whole) instead of a sideways scroll bar appearing
        self.stage_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.stage_list.setTextElideMode(Qt.ElideRight)
        self.stage_list.currentItemChanged.connect(self._stage_selected)
        sl.addWidget(self.stage_list, 3)
        t2 = QLabel("RESULTS")
        t2.setObjectName("SectionTitle")
        sl.addWidget(t2)
        self.view_list = QListWidget()
        self.view_list.setIconSize(QSize(18, 18))
        for key, ico, text in (("tracking", "tracking", "Tracking curves"), ("viewer", "viewer", "Viewer"),
                               ("export", "export", "Export")):
            it = QListWidgetItem(icon(ico), text)
            it.setData(ROLE, key)
            self.view_list.addItem(it)
        self.view_list.setFixedHeight(124)
        self.view_list.currentItemChanged.connect(self._view_selected)
        sl.addWidget(self.view_list)
        sl.addStretch(1)
        self.sidebar = side
        lay.addWidget(side)

        self.pages = QStackedWidget()
        self.welcome = WelcomePage(self)
        self.stage_page = StagePage()
        self.tracking_view = TrackingView()
        self.viewer = ViewerPanel()
        self.export_panel = ExportPanel()
        for w in (self.welcome, self.stage_page, self.tracking_view, self.viewer, self.export_panel):
            self.pages.addWidget(w)
        lay.addWidget(self.pages, 1)
        self.setCentralWidget(body)
        sp = self.stage_page
        sp.run_clicked.connect(self.run_stage)
        sp.config_edited.connect(self._config_edited)
        sp.reset_clicked.connect(self._reset_config)
        sp.show_models.connect(self.show_models)
        sp.dashboard.pause_clicked.connect(self.pause)
        sp.dashboard.resume_clicked.connect(self.resume)
        sp.dashboard.cancel_clicked.connect(self.cancel)
        self.viewer.show_models.connect(self.show_models)
        self.export_panel.busy_changed.connect(lambda _b: self._update_run_actions())
        self.export_panel.busy_changed.connect(self._close_if_asked)

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

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent:
            self.recent_menu.addAction(icon("folder"), p, lambda p=p: self.open_project(p))
        if self.settings.recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", lambda: (self.settings.clear_recent(), self._fill_recent()))
        self.recent_menu.setEnabled(bool(self.settings.recent))

    # ------------------------------------------------------------------ stages list
    def _fill_stages(self) -> None:
        from ..stages import REGISTRY

        cur = self.selected_stage()
        self.stage_list.blockSignals(True)
        self.stage_list.clear()
        for name, spec in REGISTRY.items():
            it = QListWidgetItem(spec.title)
            it.setData(ROLE, name)
            self.stage_list.addItem(it)
        self.stage_list.blockSignals(False)
        self.refresh_stages()
        if cur:
            self.select_stage(cur, show=False)

    def refresh_stages(self) -> None:
        if self.project is None:
            return
        from ..stages import REGISTRY

        running = self.runner.current if self.runner is not None and self.runner.isRunning() else None
        session = self.session
        for i in range(self.stage_list.count()):
            it = self.stage_list.item(i)
            name = it.data(ROLE)
            if name not in REGISTRY:
                continue
            view = session.stage_view(name)
            st = "running" if name == running else view.state
            if running and name == running and self.runner.paused:
                st_text = "paused"
            elif st == "running":
                st_text = "running" if name == running else "running in another Avatar Studio process"
            else:
                st_text = st + (f" — {view.note}" if view.note else "")
            # an interrupted run (the process died) resumes like a cancelled one: same icon
            it.setIcon(icon(f"status-{'cancelled' if st == 'interrupted' else st}"))
            it.setText(f"{REGISTRY[name].title}")
            it.setToolTip(f"{REGISTRY[name].title}: {st_text}")
            it.setData(ROLE + 1, st)
        if self.pages.currentWidget() is self.stage_page and self.stage_page.stage:
            self.stage_page.refresh(self.project, running)

    def selected_stage(self) -> str | None:
        it = self.stage_list.currentItem()
        return it.data(ROLE) if it is not None else None

    def select_stage(self, name: str, show: bool = True) -> None:
        for i in range(self.stage_list.count()):
            if self.stage_list.item(i).data(ROLE) == name:
                self.stage_list.setCurrentRow(i)
                if show:
                    self._stage_selected(self.stage_list.item(i))
                return

    def stage_status(self, name: str) -> str:
        return self.session.state(name)

    def _stage_selected(self, item, _prev=None) -> None:
        if item is None or self.project is None or not self.check_project():
            return
        self.view_list.blockSignals(True)
        self.view_list.setCurrentRow(-1)
        self.view_list.blockSignals(False)
        running = self.runner.current if self.runner is not None and self.runner.isRunning() else None
        self.stage_page.show_stage(self.project, item.data(ROLE), running)
        self.pages.setCurrentWidget(self.stage_page)

    def _view_selected(self, item, _prev=None) -> None:
        if item is not None:
            self.show_view(item.data(ROLE))

    def show_view(self, key: str) -> None:
        if self.project is None or not self.check_project():
            return
        self.stage_page.commit_edits()
        self.stage_list.blockSignals(True)
        self.stage_list.setCurrentRow(-1)
        self.stage_list.blockSignals(False)
        for i in range(self.view_list.count()):
            if self.view_list.item(i).data(ROLE) == key:
                self.view_list.blockSignals(True)
                self.view_list.setCurrentRow(i)
                self.view_list.blockSignals(False)
        page = {"tracking": self.tracking_view, "export": self.export_panel}.get(key, self.viewer)
        self.pages.setCurrentWidget(page)
        page.setFocus()

    # ------------------------------------------------------------------ settings
    @property
    def session(self):
        """The Qt-free session over the open project (the rules live there, not in the window)."""
        from ..session import Session

        return Session(self.project) if self.project is not None else None

    def _change_settings(self, what: str, change) -> bool:
        """Write a settings change into project.json as `avatar-studio config` does (`Session.change`: under
        the project's lock, on the manifest as it is on disk now). `change(session)` makes the change. When
        another process works on the project nothing is written and the status line says so. Returns whether
        it was saved."""
        try:
            self.session.change(f"the window: {what}", change)
        except StudioError as exc:
            self.statusBar().showMessage(f"Not saved: {exc}", 15000)
            self.reload_manifest()
            return False
        return True

    def _settings_changed(self) -> None:
        """After a settings change: the stage list, and the viewer and Export pages (a trained avatar whose
        settings changed is out of date: it is no longer offered there, and they say why)."""
        self.refresh_stages()
        from ..avatar import trained_engines

        if trained_engines(self.project) != self.viewer.engines():
            self.viewer.set_project(self.project)
        self.export_panel.refresh()

    def _config_edited(self, name: str, values: dict) -> None:
        if self.project is None or not self.check_project():
            return
        from ..config import to_dict
        from ..pipeline import stage_config

        try:
            if to_dict(stage_config(self.project, name, values)) == to_dict(stage_config(self.project, name)):
                return  # nothing changed (the page hands its values over whenever it is left)
        except StudioError as exc:
            self.statusBar().showMessage(f"Not saved: {exc}", 8000)
            return
        if not self._change_settings(f"settings of {name}", lambda session: session.set_config(name, values)):
            if self.stage_page.stage == name:
                self.stage_page.show_stage(self.project, name)  # the form shows what is saved
            return
        self._settings_changed()

    def _reset_config(self, name: str) -> None:
        if self.project is None or not self.check_project():
            return
        changed = []
        self._change_settings(f"reset {name}", lambda session: changed.append(session.reset_config(name)))
        self.stage_page.show_stage(self.project, name)
        self._settings_changed()
        if any(changed):
            again = self.session.state(name) == "stale"
            self.statusBar().showMessage(f"{_title(name)}: back on the {self.project.preset} preset's settings"
                                         + ("; it and the stages after it will train again" if again else ""), 8000)

    def _preset_changed(self) -> None:
        if self.project is None or not self.check_project():
            return
        preset = self.preset_box.currentData()
        saved = self._change_settings("preset", lambda session: session.set_preset(preset))
        if not saved:
            self._show_saved_choices()
        if self.stage_page.stage:
            self.stage_page.show_stage(self.project, self.stage_page.stage)
        self._settings_changed()
        if saved:
            self.statusBar().showMessage(f"Preset {preset}: stages not run yet use its settings; finished stages "
                                         "keep theirs (Reset to preset on a stage to switch it).", 8000)

    def _device_changed(self) -> None:
        if self.project is not None and self.check_project():
            device = self.device_box.currentData()
            if not self._change_settings("device", lambda session: session.set_device(device)):
                self._show_saved_choices()

    def _show_saved_choices(self) -> None:
        """The preset and device boxes show what the project has saved (after a change was refused)."""
        for box, value in ((self.preset_box, self.project.preset), (self.device_box, self.project.device)):
            box.blockSignals(True)
            box.setCurrentIndex(max(0, box.findData(value if value != "gpu" else "cuda")))
            box.blockSignals(False)

    def _gpu_detected(self, available: bool) -> None:
        self.gpu_available = bool(available)
        self.device_box.model().item(2).setEnabled(self.gpu_available)
        if not self.gpu_available:
            self.device_box.setItemText(2, "GPU (none found)")

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
        from .dashboard import history_log

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
        from .dashboard import history_log

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

    # ------------------------------------------------------------------ dialogs
    def show_error(self, title: str, failure: Failure) -> QMessageBox:
        self.error_dialog = error_box(self, title, failure)
        return self.error_dialog

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

    def show_models(self):
        from .models_dialog import ModelsDialog

        dlg = ModelsDialog(self, ModelFiles())
        dlg.finished.connect(lambda _r: self.project is not None and self.viewer.set_project(self.project)
                             if self.pages.currentWidget() is self.viewer else None)
        dlg.setAttribute(Qt.WA_DeleteOnClose)
        self.models_dialog = dlg
        dlg.open()
        return dlg

    def about(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("About Avatar Studio")
        box.setText(f"Avatar Studio {__version__}")
        box.setInformativeText("Personal, controllable head avatars from one video.")
        box.setAttribute(Qt.WA_DeleteOnClose)
        self.about_box = box
        box.open()

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


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())
