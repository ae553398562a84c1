"""The studio window: projects, the stage list, stage pages with the dashboard, tracking, viewer, export."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QFileSystemWatcher, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (QComboBox, QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QMainWindow, QMessageBox, QPushButton, QSizePolicy, QStackedWidget, QToolBar, QVBoxLayout, QWidget)

from .. import __version__
from .dialogs import NewProjectDialog, error_box
from .export_panel import ExportPanel
from .labels import ElidedLabel
from ..model_files import ModelFiles
from .project_actions import ProjectActions
from .run_actions import RunActions
from .settings import AppSettings
from .settings_actions import SettingsActions
from .stage_page import StagePage
from .theme import icon
from .tracking_view import TrackingView
from .viewer import ViewerPanel
from .workers import Failure, StageRunner, run_job

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


class MainWindow(ProjectActions, RunActions, SettingsActions, QMainWindow):
    """The window: its actions, tool bar, menus, side bar and pages, and moving between the pages. Opening and
    closing projects is in `ProjectActions` (project_actions.py), running stages and closing while one runs
    in `RunActions` (run_actions.py), settings changes in `SettingsActions` (settings_actions.py)."""

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

    # ------------------------------------------------------------------ dialogs
    def show_error(self, title: str, failure: Failure) -> QMessageBox:
        self.error_dialog = error_box(self, title, failure)
        return self.error_dialog

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


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())
