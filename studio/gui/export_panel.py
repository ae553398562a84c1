"""The Export page: render a clip with `studio.export.export`, the function the CLI's
`avatar-studio export` uses.

The settings form is generated from `ExportConfig`; the engine, driver video and timeline file
get their own choosers. The Edits box lists the chosen engine's saved appearance edits with the
same on/off and strengths as the viewer's Edits panel (one shared `EditChoices`); the ones switched
on go to the export as `ExportConfig.edits`. The export runs in an `ExportRunner` (a child process);
the page shows its progress, ETA and the newest frame, and Cancel leaves no file at the output path.
"""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QFrame, QGroupBox, QHBoxLayout, QLabel,
                               QProgressBar, QPushButton, QScrollArea, QVBoxLayout, QWidget)

from .config_form import ConfigForm
from .dialogs import VIDEO_EXTENSIONS, PathField, error_box
from .drivers_panel import DriversPanel
from .edit_choices import choices_for, engine_has_edits
from .edit_list import EditList
from .export_runner import ExportRunner
from .imaging import ImageView
from .theme import icon
from .viewer import _short_title, out_of_date
from .workers import Failure, ProgressBatch

NO_AVATAR = ("No trained avatar yet: train the StyleGAN or NeRF engine first (Run all asks which), "
             "then export here.")
OWN_CHOOSERS = ("engine", "driver", "timeline", "flame", "edits")
"""ExportConfig fields edited by the page's own choosers, not the generated form."""
RELEVANT = {"frames": {"self"}, "duration": {"turntable"}, "expression": {"turntable"},
            "side_by_side": {"self", "driver"}, "paste_back": {"self"}, "transfer": {"driver"},
            "audio": {"self", "driver"}}
"""Form fields shown only for some sources (the others are always shown)."""
EXTENSIONS = {"mp4": ".mp4", "gif": ".gif", "png": "", "mov": ".mov"}
FLAME_ONLY = ("flame",)
"""Sources only an avatar on FLAME controls takes (`studio.flame.drive.flame_motion` refuses the named ones)."""
NAMED_ONLY = ("driver",)
"""Sources only an avatar on the named controls takes (`studio.export.build_motion` sends a FLAME-control avatar's
driver through its FLAME fit: `--source flame`)."""
SOURCE_WORDS = {"turntable": ("a turntable", "yaw/pitch orbit"),
                "self": ("the subject's own performance", "the subject's own performance"),
                "driver": ("another person's video", "another person's video"),
                "timeline": ("a keyframed timeline", "keyframed sliders"),
                "flame": ("a FLAME parameter file", "a FLAME parameter file")}
"""Each source in the page's intro and in the Source box's hint (which lists only the sources offered)."""


def sources_for(controls: str) -> list[str]:
    """The export sources that apply to an avatar on `controls`, in `studio.export.SOURCES` order."""
    from ..export import SOURCES

    left_out = NAMED_ONLY if controls == "flame" else FLAME_ONLY
    return [s for s in SOURCES if s not in left_out]


def format_seconds(s: float) -> str:
    """1.5 → "1.5 s", 75 → "1:15", 3700 → "1:01:40"."""
    if s < 60:
        return f"{max(0.0, s):.1f} s"
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ExportPanel(QWidget):
    """Export settings, the Export/Cancel buttons, progress and the result. `busy_changed(bool)`
    tells the window when an export starts and ends."""

    busy_changed = Signal(bool)
    finished = Signal(str)  # "done", "failed" or "cancelled"

    def __init__(self, parent: QWidget | None = None):
        from ..export import ExportConfig

        super().__init__(parent)
        self.project = None
        self.runner: ExportRunner | None = None
        self.result: dict | None = None
        self.error_dialog = None
        self.avatar_override = None
        """An `Avatar` to export with instead of opening the chosen engine (tests, scripting)."""
        self._out_auto = True
        self._t0 = 0.0
        self._busy = False

        lay = QHBoxLayout(self)
        lay.setContentsMargins(16, 12, 16, 12)
        lay.setSpacing(16)

        # ---- left: what to export
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 8, 0)
        ll.setSpacing(10)
        title = QLabel("Export")
        title.setObjectName("PageTitle")
        ll.addWidget(title)
        self.intro = QLabel("")
        self.intro.setTextFormat(Qt.RichText)
        self.intro.setObjectName("Dim")
        self.intro.setWordWrap(True)
        ll.addWidget(self.intro)
        self.notice = QLabel(NO_AVATAR)
        self.notice.setObjectName("Warning")
        self.notice.setWordWrap(True)
        self.notice.hide()
        ll.addWidget(self.notice)

        box = QGroupBox("Clip")
        form = QFormLayout(box)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(10)
        self.engine_box = QComboBox()
        self.engine_box.setToolTip("Which trained avatar renders the clip")
        self.engine_box.setPlaceholderText("none trained yet")
        self.output = PathField("where the clip goes (.mp4, .mov, .gif, or a folder for PNG frames)", self._pick_output)
        self.output.edit.textEdited.connect(self._output_edited)
        self.output.edit.textChanged.connect(self.output.edit.setToolTip)
        self.driver = PathField("the driving video (another person)", self._pick_driver)
        self.timeline = PathField("a JSON file of keys {t, slider: value}", self._pick_timeline)
        self.flame_file = PathField("FLAME parameters: DECA / EMOCA, SMIRK, metrical-tracker or ours (.npz, .npy, "
                                    ".pkl, or a folder of them)", self._pick_flame)
        form.addRow("Engine", self.engine_box)
        form.addRow("Output", self.output)
        form.addRow("Driver video", self.driver)
        form.addRow("Timeline file", self.timeline)
        form.addRow("FLAME file", self.flame_file)
        self.clip_form = form
        ll.addWidget(box)
        self.drivers = DriversPanel()  # trained actors (learned transfer); picking one sets the driver video
        self.drivers.actor_chosen.connect(self.driver.setText)
        ll.addWidget(self.drivers)

        self.edits_box = QGroupBox("Edits")
        el = QVBoxLayout(self.edits_box)
        self.edits_hint = QLabel("")
        self.edits_hint.setObjectName("Hint")
        self.edits_hint.setWordWrap(True)
        el.addWidget(self.edits_hint)
        self.edit_list = EditList(deletable=False, thumbnails=False, empty="")
        el.addWidget(self.edit_list)
        self.engine_box.currentIndexChanged.connect(self._bind_edits)
        self.engine_box.currentIndexChanged.connect(self._engine_changed)
        ll.addWidget(self.edits_box)

        self.form = ConfigForm(ExportConfig)
        fmt = self.form.editors["format"]
        fmt.setItemText(max(0, fmt.findData(None)), "from the output name")
        self.form.editors["fps"].setPlaceholderText("the source's rate (25 for a turntable)")
        for name, text in (("fps", "FPS"), ("crf", "CRF")):
            for f in (self.form.basic_form, self.form.advanced_form):
                label = f.labelForField(self._form_row(name))
                if label is not None:
                    label.setText(text)
        for name in OWN_CHOOSERS:
            self._set_row_visible(name, False)
        self.controls = "named"
        """The control set of the chosen engine ("named" or "flame"): which sources and settings apply."""
        self.form.editors["source"].currentIndexChanged.connect(self._source_changed)
        fmt.currentIndexChanged.connect(self._format_changed)
        self.form.editors["transparent"].toggled.connect(self._format_changed)   # .mp4 ↔ .mov
        ll.addWidget(self.form)
        ll.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setWidget(left)
        # the settings' own minimum (~450 px, the Drivers buttons) + a scroll bar; with the preview column
        # (its buttons, ~230 px) it fits the 750 px a 1000-px window leaves beside the sidebar
        scroll.setMinimumWidth(465)
        lay.addWidget(scroll, 5)

        # ---- right: progress, preview, result
        right = QVBoxLayout()
        right.setSpacing(10)
        buttons = QHBoxLayout()
        self.export_btn = QPushButton(icon("export"), "Export")
        self.export_btn.setObjectName("Primary")
        self.export_btn.setMinimumWidth(120)
        self.export_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton(icon("cancel"), "Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        buttons.addWidget(self.export_btn)
        buttons.addWidget(self.cancel_btn)
        buttons.addStretch(1)
        right.addLayout(buttons)
        self.progress = QProgressBar()
        self._progress_idle()
        right.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setObjectName("Stat")
        right.addWidget(self.status)
        self.preview = ImageView("The newest rendered frame shows here while exporting.", min_side=200)
        right.addWidget(self.preview, 1)
        self.result_box = QFrame()
        self.result_box.setObjectName("ResultBox")
        rl = QHBoxLayout(self.result_box)
        rl.setContentsMargins(0, 0, 0, 0)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.open_btn = QPushButton(icon("folder"), "Open folder")
        self.open_btn.setToolTip("Show the exported clip in the file manager")
        self.open_btn.clicked.connect(self.open_folder)
        rl.addWidget(self.result_label, 1)
        rl.addWidget(self.open_btn)
        self.result_box.hide()
        right.addWidget(self.result_box)
        lay.addLayout(right, 4)
        self._engine_changed()

    # ------------------------------------------------------------------ project
    def set_project(self, project) -> None:
        """Show `project` (None: nothing). Settings go back to defaults for a different project."""
        from ..export import ExportConfig

        if project is not None and self.project is not None and project.root == self.project.root:
            self.project = project
            self.refresh()
            return
        self.project = project
        self.result = None
        self.result_box.hide()
        self.preview.set_image(None)
        self.status.setText("")
        self._progress_idle()
        self.form.set_config(ExportConfig())
        self.driver.setText("")
        self.timeline.setText("")
        self.flame_file.setText("")
        self._out_auto = True
        self.refresh()

    def refresh(self) -> None:
        """Re-read which engines are trained (after a stage finished)."""
        from ..avatar import trained_engines

        engines = []
        if self.project is not None:
            engines = trained_engines(self.project)
        keep = self.engine_box.currentData()
        self.engine_box.blockSignals(True)
        self.engine_box.clear()
        for e in engines:
            self.engine_box.addItem(_short_title(e), e)
        self.engine_box.setCurrentIndex(max(0, self.engine_box.findData(keep)))
        self.engine_box.blockSignals(False)
        self.engine_box.setEnabled(len(engines) > 1 and not self.is_running())
        stale = out_of_date(self.project)
        self.notice.setText(stale or NO_AVATAR)
        self.engine_box.setPlaceholderText("out of date: train again" if stale else "none trained yet")
        self.notice.setVisible(self.project is not None and not engines and self.avatar_override is None)
        self.drivers.set_project(self.project)
        self._bind_edits()
        self._engine_changed()
        self._update_buttons()

    # ------------------------------------------------------------------ edits
    def _bind_edits(self, *_) -> None:
        """List the chosen engine's saved edits (shared with the viewer's Edits panel)."""
        engine = self.engine_box.currentData()
        choices = None
        if self.project is not None and engine and engine_has_edits(engine):
            choices = choices_for(self.project, engine)
        if choices is not self.edit_list.choices:
            if self.edit_list.choices is not None:
                try:
                    self.edit_list.choices.changed.disconnect(self._edits_listed)
                except (RuntimeError, TypeError):
                    pass
            if choices is not None:
                choices.changed.connect(self._edits_listed)
            self.edit_list.bind(choices)
        if choices is not None:
            choices.reload()
        self._edits_listed()

    def _edits_listed(self) -> None:
        engine = self.engine_box.currentData()
        ch = self.edit_list.choices
        if not engine:
            text = ""
        elif ch is None:
            text = f"The {_short_title(engine)} engine has no appearance edits."
        elif not ch.edits:
            text = "No saved edits: find them in the viewer's Edits panel (or with avatar-studio edit)."
        else:
            text = "The edits switched on are applied to every frame at their strengths (the viewer shows the same)."
        self.edits_hint.setText(text)
        self.edits_box.setVisible(bool(engine))

    def active_edits(self) -> dict[str, float]:
        """{name: strength} of the edits switched on for the chosen engine."""
        ch = self.edit_list.choices
        return ch.active() if ch is not None else {}

    def engines(self) -> list[str]:
        return [self.engine_box.itemData(i) for i in range(self.engine_box.count())]

    # ------------------------------------------------------------------ engine
    def _engine_changed(self, *_) -> None:
        """Offer only what applies to the chosen engine's avatar: the flame source and the FLAME geometry box
        for one on FLAME controls, the driver source for one on the named controls; the Drivers box says what
        the learned transfer gives this engine."""
        from ..session import Session

        engine = self.engine_box.currentData()
        self.controls = Session(self.project).controls(engine) if self.project is not None else "named"
        box = self.form.editors["source"]
        wanted = sources_for(self.controls)
        have = [box.itemData(i) for i in range(box.count())]
        if have != wanted:
            keep = box.currentData()
            box.blockSignals(True)
            box.clear()
            for src in wanted:
                box.addItem(src, src)
            box.setCurrentIndex(wanted.index(keep) if keep in wanted else 0)
            box.blockSignals(False)
        words = [SOURCE_WORDS[s][0] for s in wanted]
        self.intro.setText(f"Render a clip of the avatar: {', '.join(words[:-1])}, or {words[-1]}. The command line "
                           "does the same with <span style='font-family: monospace; white-space: nowrap'>"
                           "avatar-studio export</span>.")
        hint = "Where the motion comes from: " + ", ".join(f"{s} ({SOURCE_WORDS[s][1]})" for s in wanted) + "."
        box.setToolTip(hint)
        for label in self._form_row("source").findChildren(QLabel):
            label.setText(hint)
        self.drivers.set_engine(engine)
        self._set_row_visible("flame_geometry", self.controls == "flame")
        self._source_changed()

    # ------------------------------------------------------------------ form
    def _form_row(self, name: str):
        return self.form.editors[name].parentWidget()

    def _set_row_visible(self, name: str, on: bool) -> None:
        cell = self._form_row(name)
        for f in (self.form.basic_form, self.form.advanced_form):
            if f.indexOf(cell) >= 0:
                f.setRowVisible(cell, on)

    def source(self) -> str:
        return self.form.editors["source"].currentData()

    def _source_changed(self, *_) -> None:
        src = self.source()
        for name, sources in RELEVANT.items():
            self._set_row_visible(name, src in sources)
        self.clip_form.setRowVisible(self.driver, src == "driver")
        self.clip_form.setRowVisible(self.timeline, src == "timeline")
        self.clip_form.setRowVisible(self.flame_file, src == "flame")
        self.drivers.setVisible(src == "driver")
        # the rows that stay keep the height their hints had at the form's old width: forget it, or a hint
        # is cut at the bottom until the window is resized
        for editor in self.form.editors.values():
            cell = editor.parentWidget()
            if cell is not None and cell.layout() is not None:
                cell.layout().invalidate()
                cell.updateGeometry()
        if self._out_auto:
            self.output.setText(self.default_output())

    def _format_changed(self, *_) -> None:
        if self._out_auto:
            self.output.setText(self.default_output())

    def _output_edited(self, _text: str) -> None:
        self._out_auto = False

    def default_output(self) -> str:
        """<project>/exports/<source>.mp4 (.gif, or a folder for PNG, when that format is chosen)."""
        if self.project is None:
            return ""
        fmt = self.form.editors["format"].currentData() or ("mov" if self.form.editors["transparent"].isChecked()
                                                            else "mp4")
        return str(self.project.root / "exports" / f"{self.source()}{EXTENSIONS[fmt]}")

    def set_output(self, path: str | Path) -> None:
        self.output.setText(str(path))
        self._out_auto = False

    def _pick_output(self, field: PathField) -> None:
        start = field.text() or self.default_output()
        path, _ = QFileDialog.getSaveFileName(self, "Export the clip to", start,
                                              "MP4 video (*.mp4);;MOV, ProRes 4444 (*.mov);;Animated GIF (*.gif);;"
                                              "PNG frames (a folder name, no extension) (*)")
        if path:
            self.set_output(path)

    def _pick_driver(self, field: PathField) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose the driving video", field.text(),
                                              "Videos (" + " ".join(f"*{e}" for e in VIDEO_EXTENSIONS) + ")")
        if path:
            field.setText(path)

    def _pick_timeline(self, field: PathField) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a timeline file", field.text(), "Timelines (*.json)")
        if path:
            field.setText(path)

    def _pick_flame(self, field: PathField) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a FLAME parameter file", field.text(),
                                              "FLAME parameters (*.npz *.npy *.pkl *.pickle)")
        if path:
            field.setText(path)

    def values(self) -> dict:
        """The ExportConfig values of the page (form + engine, driver, timeline and FLAME file choosers)."""
        v = self.form.values()
        v["engine"] = self.engine_box.currentData()
        v["driver"] = self.driver.text() or None
        v["timeline"] = self.timeline.text() or None
        v["flame"] = self.flame_file.text() or None
        from ..edits.model import format_edit_list

        v["edits"] = format_edit_list(self.active_edits())
        return v

    def problem(self) -> str:
        """What stops an export, in words (empty when nothing)."""
        if self.project is None:
            return "Open a project first."
        if self.avatar_override is None:
            from ..avatar import trained_engines

            if not self.engines() or self.engine_box.currentData() not in trained_engines(self.project):
                return out_of_date(self.project) or NO_AVATAR
        if not self.output.text():
            return "Choose where the clip goes."
        src = self.source()
        if src == "driver" and not self.driver.text():
            return "Choose the driver video."
        if src == "driver" and not Path(self.driver.text()).exists():
            return f"There is no driver video at {self.driver.text()}."
        if src == "timeline" and not self.timeline.text():
            return "Choose the timeline file."
        if src == "timeline" and not Path(self.timeline.text()).is_file():
            return f"There is no timeline file at {self.timeline.text()}."
        if src == "flame" and not self.flame_file.text():
            return "Choose the FLAME parameter file."
        if src == "flame" and not Path(self.flame_file.text()).exists():
            return f"There is no FLAME parameter file at {self.flame_file.text()}."
        return ""

    def target_problem(self, out: Path) -> Failure | None:
        """Why the clip must not go to `out`, or None: the rule the export itself applies
        (`studio.export.check_target`): never over the project's own files or folder, the video the avatar was
        made from, or the file this export reads (driver, timeline, FLAME file). Said here, before the export
        starts."""
        from ..errors import StudioError
        from ..export import check_target

        src = self.source()
        reads = [field.text() or None for field, used in ((self.driver, "driver"), (self.timeline, "timeline"),
                                                          (self.flame_file, "flame")) if src == used]
        try:
            check_target(self.project, out, reads)
        except StudioError as exc:
            hint = exc.hint
            if "-o " in hint:  # the command line's words: say it as a file name
                hint = f"give the clip a new name, e.g. {self.project.root / 'exports' / 'clip.mp4'}"
            return Failure(exc.message, hint)
        return None

    # ------------------------------------------------------------------ running
    def is_running(self) -> bool:
        """True from Export until the outcome has reached the page (not only until the thread ends)."""
        return self._busy

    def start(self) -> ExportRunner | None:
        if self.is_running():
            return None
        problem = self.problem()
        if problem:
            self.error_dialog = error_box(self, "Cannot export yet", Failure(problem.rstrip(".")))
            return None
        out = str(Path(self.output.text()).expanduser())
        refused = self.target_problem(Path(out))
        if refused is not None:
            self.error_dialog = error_box(self, "Cannot export there", refused)
            return None
        runner = ExportRunner(self.project, self.values(), out, avatar=self.avatar_override, parent=self)
        runner.progress.connect(self._progress)
        runner.done.connect(self._done)
        runner.failed.connect(self._failed)
        runner.cancelled.connect(self._cancelled)
        runner.finished.connect(self._finished)
        self.runner = runner
        self.result = None
        self.result_box.hide()
        self.preview.set_image(None)
        self.progress.setRange(0, 0)  # busy until the first frame
        self.status.setText("starting…")
        self._t0 = time.perf_counter()
        self._busy = True
        runner.start()
        self._update_buttons()
        self.busy_changed.emit(True)
        return runner

    def cancel(self) -> None:
        if self.is_running():
            self.runner.cancel()
            self.cancel_btn.setEnabled(False)
            self.status.setText("cancelling…")

    def _progress_idle(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")

    def _progress(self, b: ProgressBatch) -> None:
        if b.preview is not None:
            self.preview.set_image(b.preview)
        if b.part != "render" or not b.total:
            self.progress.setRange(0, 0)
            self.status.setText(b.message)
            return
        self.progress.setFormat("%v / %m frames")
        self.progress.setRange(0, b.total)
        self.progress.setValue(b.step)
        rate = b.step / b.elapsed if b.elapsed > 0 else 0.0
        eta = (b.total - b.step) / rate if rate > 0 else None
        self.status.setText(f"{b.step}/{b.total} frames · {rate:.1f} frames/s · "
                            f"ETA {format_seconds(eta) if eta is not None else '…'}")

    def _done(self, res: dict) -> None:
        self.result = res
        self.progress.setFormat("%v / %m frames")
        self.progress.setRange(0, max(1, res["frames"]))
        self.progress.setValue(res["frames"])
        took = time.perf_counter() - self._t0
        self.status.setText(f"done in {format_seconds(took)}")
        w, h = res.get("size", (0, 0))
        audio = "with audio" if res.get("audio") else "no audio"
        lines = [f"<b>Exported</b> {res['path']}",
                 f"{res['frames']} frames at {res['fps']:g} fps ({res['seconds']:.1f} s), {w}×{h}, {audio}."]
        lines += [f"Note: {n}" for n in res.get("notes", [])]
        self.result_label.setText("<br>".join(lines))
        self.result_box.show()

    def _failed(self, f: Failure) -> None:
        self._progress_idle()
        self.status.setText("failed")
        self.error_dialog = error_box(self, "The export stopped", f)

    def _cancelled(self) -> None:
        self._progress_idle()
        self.status.setText("cancelled: no file was written")

    def _finished(self) -> None:
        outcome = self.runner.outcome if self.runner is not None else ""
        self._busy = False
        self._update_buttons()
        self.refresh()
        self.busy_changed.emit(False)
        self.finished.emit(outcome)

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.export_btn.setEnabled(not running and self.project is not None and
                                   (bool(self.engines()) or self.avatar_override is not None))
        self.cancel_btn.setEnabled(running)
        for w in (self.form, self.output, self.driver, self.timeline, self.flame_file, self.edits_box):
            w.setEnabled(not running)

    def output_folder(self) -> Path | None:
        if not self.result:
            return None
        p = Path(self.result["path"])
        return p if p.is_dir() else p.parent

    def open_folder(self) -> None:
        folder = self.output_folder()
        if folder is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel a running export and wait for it (the window is closing)."""
        self.drivers.shutdown(timeout_ms)
        if self.runner is not None and self.runner.isRunning():
            self.runner.cancel()
            if not self.runner.wait(timeout_ms):
                self.runner.kill()
                self.runner.wait(3000)
