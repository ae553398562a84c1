"""The Drivers list (on the Export page): each actor tracked for driving the avatar, with its
learned transfer's actor | avatar preview, and a button to train a new one.

Training runs `studio.driving.job.train_actor` — the function `avatar-studio drive` calls — in a
child process from the stages' forkserver (`studio.driving.worker`), like stages: progress, the
newest actor | avatar preview and Cancel (a later Train resumes it). Choosing an actor in the
list makes it the Export page's driver video.
"""
from __future__ import annotations

from pathlib import Path

from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (QFileDialog, QGroupBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QProgressBar, QPushButton, QVBoxLayout, QWidget)

from .dialogs import VIDEO_EXTENSIONS, error_box
from .imaging import ImageView
from .process_runner import Failure, JobRunner, ProgressBatch
from .theme import icon

STATE_TEXT = {"trained": "trained", "stale": "outdated", "interrupted": "interrupted", "cancelled": "cancelled",
              "failed": "failed", "running": "training…", "untrained": "tracked, not trained"}


def intro_text(engine: str | None) -> str:
    """The Drivers box's first words for the engine the export renders with (None: none trained): what the
    learned transfer gives that engine (`studio.driving.transfer.learned_motion`: the NeRF engine its own
    expression code θ, any other engine its expression sliders; the head pose is the actor's tracked pose)."""
    from ..engines import ENGINES

    spec = ENGINES.get(engine or "")
    text = ("Train a network that carries another person's expressions onto the avatar: it reads both faces into "
            "one shared expression code (a Y-shaped network" + (", as in LatentAvatar" if engine == "nerf" else "")
            + ")")
    if spec is not None:
        target = "own expression code directly" if engine == "nerf" else "expression sliders"
        text += f", and a small mapping turns that code into the {spec.short} avatar's {target}"
    text += ". The head follows the person's tracked pose. "
    return text + "Choose a trained actor to use its video as the driver."


class DriverTrainer(JobRunner):
    """Trains one actor; `progress(ProgressBatch)`, then `done(result)`, `failed(Failure)` or `cancelled()`.

    In a child process by default (see `studio.driving.worker`); `in_process=True` runs it in this
    thread instead (tests, debugging).
    """

    process_name = "avatar-studio-drive"
    lost = ("the training process stopped unexpectedly (exit code {code})",
            "it may have run out of memory: close other programs and train again (it resumes)")

    def __init__(self, project, actor: str, overrides: dict | None = None, preset: str | None = None,
                 device: str | None = None, in_process: bool = False, parent: QObject | None = None):
        super().__init__("drive", in_process, parent=parent)
        self.project, self.actor = project, str(actor)
        self.overrides, self.preset, self.device = dict(overrides or {}), preset, device

    def child(self):
        from ..driving.worker import child_main

        return child_main, (str(self.project.root), self.actor, self.preset, self.overrides, self.device)

    def work_here(self, reporter) -> None:
        from ..driving.worker import JOB, train

        reporter.run(JOB, lambda c, p: train(self.project, self.actor, self.preset, self.overrides, self.device,
                                             c, p), self.control, announce=False)


class DriversPanel(QGroupBox):
    """The trained actors of a project and a button to train a new one. `actor_chosen(video)`
    when the user picks one; `busy_changed(bool)` while a training runs."""

    actor_chosen = Signal(str)
    busy_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Drivers (learned transfer)", parent)
        self.project = None
        self.trainer: DriverTrainer | None = None
        self._busy = False  # from train() until _finished has listed the outcome
        self.overrides: dict = {}
        """Settings for the next training (`DriveConfig` fields); empty = the project's preset."""
        self.in_process = False
        """Train in this process's thread instead of a child process (tests)."""
        self.error_dialog = None
        self.actors: list = []
        lay = QVBoxLayout(self)
        self.engine: str | None = None
        """The engine the Export page renders with: the intro says what the learned transfer gives it."""
        self.intro = QLabel(intro_text(None))
        self.intro.setObjectName("Dim")
        self.intro.setWordWrap(True)
        lay.addWidget(self.intro)
        self.list = QListWidget()
        self.list.setIconSize(QSize(160, 80))
        self.list.setMinimumHeight(110)
        self.list.itemClicked.connect(self._clicked)
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        lay.addWidget(self.list)
        row = QHBoxLayout()
        self.train_btn = QPushButton(icon("run"), "Train a new actor…")
        self.train_btn.setToolTip("Choose a video of another person; it is tracked and the transfer is trained "
                                  "(minutes on a CPU with the preview preset)")
        self.train_btn.clicked.connect(self._pick_and_train)
        self.again_btn = QPushButton(icon("reset"), "Train again")
        self.again_btn.setToolTip("Resume or redo the chosen actor's training (after the avatar changed, or an "
                                  "interrupted run)")
        self.again_btn.clicked.connect(self._train_selected)
        self.cancel_btn = QPushButton(icon("cancel"), "Cancel")
        self.cancel_btn.clicked.connect(self.cancel)
        for b in (self.train_btn, self.again_btn, self.cancel_btn):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        self.progress = QProgressBar()
        self.progress.hide()
        lay.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setObjectName("Stat")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.preview = ImageView("actor above, avatar below", min_side=80)
        self.preview.setMaximumHeight(160)
        self.preview.hide()
        lay.addWidget(self.preview)
        self._update_buttons()

    # ------------------------------------------------------------------ project
    def set_project(self, project) -> None:
        self.project = project
        self.refresh()

    def set_engine(self, engine: str | None) -> None:
        """The engine the export renders with ("pvp", "nerf"; None: none trained)."""
        self.engine = engine
        self.intro.setText(intro_text(engine))

    def refresh(self) -> None:
        from ..driving.actors import list_actors

        keep = self.selected_video()
        self.list.clear()
        self.actors = list_actors(self.project) if self.project is not None else []
        names = [a.name for a in self.actors]
        for a in self.actors:
            # two actors from videos of the same name (other folders): the actor folder tells them apart
            shown = a.name if names.count(a.name) == 1 else f"{a.name} [{a.root.name}]"
            text = f"{shown} — {STATE_TEXT.get(a.state, a.state)}"
            if a.engines:
                text += f" (drives: {', '.join(a.engines)})"
            if a.note:
                text += f"\n{a.note}"
            it = QListWidgetItem(text)
            it.setData(Qt.UserRole, a.video if a.video and Path(a.video).exists() else str(a.root))
            it.setToolTip(str(a.root))
            if a.preview is not None:
                it.setIcon(QIcon(QPixmap(str(a.preview))))
            self.list.addItem(it)
            if keep and it.data(Qt.UserRole) == keep:
                self.list.setCurrentItem(it)
        if not self.actors:
            placeholder = QListWidgetItem("No actor yet: Train a new actor…\n(or export once with a driver video)")
            placeholder.setFlags(Qt.NoItemFlags)
            self.list.addItem(placeholder)
        self._update_buttons()

    def selected_video(self) -> str:
        it = self.list.currentItem()
        return (it.data(Qt.UserRole) or "") if it is not None else ""

    def _clicked(self, item: QListWidgetItem) -> None:
        video = item.data(Qt.UserRole)
        if video:
            self.actor_chosen.emit(video)
        self._update_buttons()

    # ------------------------------------------------------------------ training
    def is_running(self) -> bool:
        """True from Train until the outcome is in the list (the thread ends a moment before its queued
        `finished` reaches this page)."""
        return self._busy

    def _pick_and_train(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose the actor's video", "",
                                              "Videos (" + " ".join(f"*{e}" for e in VIDEO_EXTENSIONS) + ")")
        if path:
            self.train(path)

    def _train_selected(self) -> None:
        video = self.selected_video()
        if video:
            self.train(video)

    def train(self, video: str) -> DriverTrainer | None:
        """Start training the actor `video` (a video file, or a tracked actor folder)."""
        if self.is_running() or self.project is None:
            return None
        if not Path(video).exists():
            self.error_dialog = error_box(self, "Cannot train the actor",
                                          Failure(f"there is no video at {video}", "choose the actor's video again"))
            return None
        t = DriverTrainer(self.project, video, self.overrides, in_process=self.in_process, parent=self)
        t.progress.connect(self._progress)
        t.done.connect(self._done)
        t.failed.connect(self._failed)
        t.cancelled.connect(lambda: self.status.setText("cancelled — Train again resumes it"))
        t.finished.connect(self._finished)
        self.trainer = t
        self._busy = True
        self.progress.setRange(0, 0)
        self.progress.show()
        self.preview.show()
        self.status.setText(f"starting: {Path(video).name}")
        t.start()
        self._update_buttons()
        self.busy_changed.emit(True)
        return t

    def cancel(self) -> None:
        if self.is_running():
            self.trainer.cancel()
            self.status.setText("cancelling…")
            self.cancel_btn.setEnabled(False)

    def _progress(self, b: ProgressBatch) -> None:
        if b.preview is not None:
            self.preview.set_image(b.preview)
        if b.total and b.part in ("yshape", "map_controls", "map_nerf"):
            self.progress.setRange(0, b.total)
            self.progress.setValue(b.step)
            self.progress.setFormat(f"{b.part}: %v / %m")
        else:
            self.progress.setRange(0, 0)
        what = {"yshape": "Y-shaped network", "map_controls": "mapping γ → expression sliders",
                "map_nerf": "mapping γ → θ (NeRF)"}.get(b.part, b.message or b.part)
        self.status.setText(f"{b.stage}: {what}" + (f" — {b.message}" if b.message and b.message != what else ""))

    def _done(self, res: dict) -> None:
        s = res.get("summary") or {}
        sep = s.get("gamma_separability")
        self.status.setText(f"trained: {s.get('steps', '?')} steps in {s.get('train_minutes', '?')} min"
                            + (f"; γ separability {sep:.2f}" if isinstance(sep, float) else "")
                            + (f"; the actor's expressions come through at r {s['actor_controls_r']:.2f} (by the "
                               f"tracker, before rendering)" if isinstance(s.get("actor_controls_r"), float) else "")
                            + "".join(f"\nNote: {w}" for w in res.get("warnings") or []))

    def _failed(self, f: Failure) -> None:
        self.status.setText("failed")
        self.error_dialog = error_box(self, "The actor's training stopped", f)

    def _finished(self) -> None:
        self._busy = False
        self.progress.hide()
        self.refresh()
        self._update_buttons()
        self.busy_changed.emit(False)

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.train_btn.setEnabled(self.project is not None and not running)
        self.again_btn.setEnabled(self.project is not None and not running and bool(self.selected_video()))
        self.cancel_btn.setEnabled(running)

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel a running training and wait for it (the window is closing; a later Train resumes)."""
        if self.is_running():
            self.trainer.cancel()
            if not self.trainer.wait(timeout_ms):
                self.trainer.kill()
                self.trainer.wait(3000)
