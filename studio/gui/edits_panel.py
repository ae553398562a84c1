"""The Edits panel beside the viewer's sliders.

What the artist does here: type a look ("blue hair") and press Find; find the avatar's own
directions (GANSpace) and browse them as thumbnails with their labels; switch saved edits on and
off, set their strengths, delete them; hold Before (or the B key) to see the unedited render.

The finding runs in an `EditJobRunner` (a child process, like training), so the window never
calls torch: this module only holds widgets. The shared state (`EditChoices`, `choices_for`) is in
`edit_choices`, the list of saved edits (`EditList`) in `edit_list`.
"""
from __future__ import annotations

from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFrame, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QMessageBox, QProgressBar, QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from .dialogs import error_box
from .edit_choices import EditChoices, choices_for, engine_has_edits
from .edit_list import EditList
from .imaging import ImageView
from .theme import icon
from .workers import EditJobRunner, Failure, ProgressBatch, run_job

CLIP_NOTE = ("Text edits need a CLIP checkpoint: an open_clip model file (.bin, .pt or .safetensors, for "
             "example open_clip_pytorch_model.bin of ViT-B-32). Add it under Models… or on the command line "
             "with <span style='font-family: monospace'>avatar-studio models add clip FILE</span>. "
             "Nothing is downloaded. Directions below work without it.")
METHODS = (("optimise", "Optimise (StyleCLIP)",
            "Optimise one offset for this prompt over the avatar's poses and expressions: about a minute per prompt "
            "on a CPU; a cancelled search continues where it stopped"),
           ("global", "Global directions",
            "StyleCLIP global directions: the CLIP effect of every latent channel is measured once for this avatar "
            "(with progress; cached in the project until the avatar is retrained), then each prompt is one matrix "
            "product. β leaves out channels whose relevance is under β of the largest."))
"""The Find methods of the Text edit box: (value sent as the job's "method", label, tooltip)."""


# ----------------------------------------------------------------------------- Qt-free calls (run in jobs)
def clip_state() -> tuple[bool, str, bool]:
    """(text edits can run, one line saying so or what to do, a CLIP file is configured at all).
    Checks the configured file: runs in a job."""
    from ..edits.job_helpers import clip_status
    from ..model_files import ModelFiles

    ok, line = clip_status()
    return ok, line, ModelFiles().entry("clip").source != "missing"


def effects_state(project, engine: str) -> str:
    """One line about the global-direction channel effects of (project, engine): cached for this training,
    or what the first global Find will do. Reads the cache's metadata only: runs in a job."""
    from ..edits.global_directions import effects_meta
    from ..edits.global_jobs import effects_path
    from ..edits.job_helpers import model_key

    meta = effects_meta(effects_path(project, engine))
    if meta and meta.get("key", "").startswith(f"model {model_key(project, engine)};"):
        return (f"Channel effects cached ({meta.get('method', '?')}, {float(meta.get('seconds') or 0):.0f} s of "
                "work): a global Find takes seconds.")
    return "The first global Find measures every latent channel's CLIP effect first (minutes, with progress)."


# ----------------------------------------------------------------------------- the panel
class EditsPanel(QWidget):
    """Find text edits and directions, switch edits on and off, set strengths, compare before/after.

    Signals: `render_changed` (what the viewer applies changed: strengths, on/off, before/after,
    or the list), `list_changed` (edits were added or removed: renderers reload their edit sets),
    `thumbnails_wanted([(name, strengths)])`, `show_models` (open the Models dialog).
    """

    render_changed = Signal()
    list_changed = Signal()
    thumbnails_wanted = Signal(list)
    show_models = Signal()
    busy_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.engine: str | None = None
        self.choices: EditChoices | None = None
        self.runner: EditJobRunner | None = None
        self.before = False
        """True while the Before button (or B) is held: the viewer renders without edits."""
        self.clip_ok: bool | None = None
        """Whether a usable CLIP file is configured (None until checked)."""
        self.picture_path: str | None = None
        self.error_dialog = None
        self.confirm_box: QMessageBox | None = None
        self.last_result = None
        self._busy = False
        self._job = ""

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(0, 0, 4, 0)
        lay.setSpacing(10)
        scroll.setWidget(body)
        outer.addWidget(scroll)

        self.notice = QLabel("")
        self.notice.setObjectName("Warning")
        self.notice.setWordWrap(True)
        self.notice.hide()
        lay.addWidget(self.notice)

        # ---- text edits
        self.text_box = QGroupBox("Text edit")
        tl = QVBoxLayout(self.text_box)
        tl.setSpacing(6)
        self.prompt = QLineEdit()
        # the examples are short: the boxes are 190 and 120 px wide in the viewer's narrowest Edits column
        self.prompt.setPlaceholderText("the look, e.g. blue hair")
        self.prompt.setToolTip("What the edited avatar should look like, e.g. \"blue hair\" or \"wearing glasses\" "
                               "(StyleCLIP, optimised over the poses and expressions the avatar was trained on)")
        self.prompt.returnPressed.connect(self.find_text)
        self.prompt.textChanged.connect(lambda _t: self._update())
        self.neutral = QLineEdit()
        self.neutral.setPlaceholderText("neutral (optional)")
        self.neutral.setToolTip("An optional neutral description, e.g. \"a face\": with it the edit follows the "
                                "change from it to the prompt")
        row = QHBoxLayout()
        row.addWidget(self.prompt, 1)
        self.find_btn = QPushButton(icon("run"), "Find")
        self.find_btn.setObjectName("Primary")
        self.find_btn.setToolTip("Find an edit for the prompt (runs in the background; the avatar stays usable)")
        self.find_btn.clicked.connect(self.find_text)
        row.addWidget(self.find_btn)
        tl.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.neutral, 1)
        self.steps_label = QLabel("Steps")
        row.addWidget(self.steps_label)
        self.steps = QSpinBox()
        self.steps.setRange(0, 100000)
        self.steps.setSingleStep(50)
        self.steps.setSpecialValueText("preset")
        self.steps.setToolTip("Optimisation steps (preset: 100 for the preview preset, 300 for quality). More steps "
                              "give a stronger, cleaner edit and take longer; a cancelled search continues where "
                              "it stopped when started again with the same settings.")
        row.addWidget(self.steps)
        self.beta = QDoubleSpinBox()
        self.beta.setRange(0.0, 0.95)
        self.beta.setSingleStep(0.05)
        self.beta.setDecimals(2)
        self.beta.setValue(0.1)
        self.beta.setPrefix("β ")
        self.beta.setToolTip("Threshold of a global direction: channels whose relevance to the prompt is under β of "
                             "the largest are left out (larger: fewer channels, a narrower edit)")
        self.beta.hide()
        row.addWidget(self.beta)
        tl.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Method"))
        self.method = QComboBox()
        for value, label, tip in METHODS:
            self.method.addItem(label, value)
            self.method.setItemData(self.method.count() - 1, tip, Qt.ToolTipRole)
        self.method.setToolTip(METHODS[0][2])
        self.method.currentIndexChanged.connect(self._method_changed)
        row.addWidget(self.method, 1)
        tl.addLayout(row)
        self.effects_note = QLabel("")
        self.effects_note.setObjectName("Hint")
        self.effects_note.setWordWrap(True)
        self.effects_note.hide()
        tl.addWidget(self.effects_note)
        self.clip_note = QWidget()
        cl = QHBoxLayout(self.clip_note)
        cl.setContentsMargins(0, 0, 0, 0)
        self.clip_label = QLabel(CLIP_NOTE)
        self.clip_label.setTextFormat(Qt.RichText)
        self.clip_label.setObjectName("Hint")
        self.clip_label.setWordWrap(True)
        models_btn = QPushButton("Models…")
        models_btn.setObjectName("Link")
        models_btn.setToolTip("Add the CLIP file in the Models dialog")
        models_btn.clicked.connect(self.show_models)
        cl.addWidget(self.clip_label, 1)
        cl.addWidget(models_btn, 0, Qt.AlignTop)
        self.clip_note.hide()
        tl.addWidget(self.clip_note)
        lay.addWidget(self.text_box)

        # ---- directions
        self.dir_box = QGroupBox("Directions")
        dl = QVBoxLayout(self.dir_box)
        hint = QLabel("Principal directions of your own avatar's latents (GANSpace): no file needed. Those that "
                      "mostly turn the head or change the expression are labelled so and listed last.")
        hint.setObjectName("Hint")
        hint.setWordWrap(True)
        dl.addWidget(hint)
        row = QHBoxLayout()
        self.directions_btn = QPushButton("Find directions")
        self.directions_btn.setToolTip("Compute the avatar's principal directions and their thumbnails")
        self.directions_btn.clicked.connect(self.find_directions)
        self.picture_btn = QPushButton("Picture…")
        self.picture_btn.setToolTip("The directions picture: top components × strengths × three poses")
        self.picture_btn.clicked.connect(self.show_picture)
        self.picture_btn.setEnabled(False)
        row.addWidget(self.directions_btn)
        row.addWidget(self.picture_btn)
        row.addStretch(1)
        dl.addLayout(row)
        lay.addWidget(self.dir_box)

        # ---- the running job
        self.job_box = QGroupBox("Finding")
        jl = QVBoxLayout(self.job_box)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        jl.addWidget(self.progress)
        jrow = QHBoxLayout()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.cancel_btn = QPushButton(icon("cancel"), "Cancel")
        self.cancel_btn.clicked.connect(self.cancel)
        jrow.addWidget(self.status, 1)
        jrow.addWidget(self.cancel_btn)
        jl.addLayout(jrow)
        self.strip = ImageView("The preview strip (unedited above, edited below) shows here.", min_side=90)
        self.strip.setMinimumHeight(110)
        jl.addWidget(self.strip)
        self.job_box.hide()
        lay.addWidget(self.job_box)

        # ---- saved edits
        self.saved_box = QGroupBox("Saved edits")
        sl = QVBoxLayout(self.saved_box)
        self.list = EditList(deletable=True, thumbnails=True,
                             empty="No edits yet: find one with a prompt or with Find directions.")
        self.list.delete_requested.connect(self.confirm_delete)
        self.list.thumbnails_wanted.connect(self.thumbnails_wanted)
        sl.addWidget(self.list)
        lay.addWidget(self.saved_box)
        lay.addStretch(1)

        brow = QHBoxLayout()
        self.before_btn = QPushButton("Hold for before")
        self.before_btn.setToolTip("Hold to see the avatar without any edit (or hold the B key)")
        self.before_btn.pressed.connect(lambda: self.set_before(True))
        self.before_btn.released.connect(lambda: self.set_before(False))
        self.summary = QLabel("")
        self.summary.setObjectName("Dim")
        brow.addWidget(self.before_btn)
        brow.addWidget(self.summary, 1)
        outer.addLayout(brow)
        self._update()

    # ------------------------------------------------------------------ project / engine
    def set_project(self, project) -> None:
        if not self._busy and (project is None or self.project is None or project.root != self.project.root):
            self.job_box.hide()          # the last job's strip belongs to the other project
            self.strip.set_image(None)
        self.project = project
        self.set_engine(None)
        self.check_clip()

    def set_engine(self, engine: str | None) -> None:
        """Show the edits of `engine` (the viewer's loaded avatar); None: nothing loaded."""
        self.engine = engine
        choices = None
        if self.project is not None and engine is not None and engine_has_edits(engine):
            choices = choices_for(self.project, engine)
        if choices is not self.choices:
            if self.choices is not None:
                for sig, slot in ((self.choices.changed, self._list_reloaded),
                                  (self.choices.strengths_changed, self.render_changed),
                                  (self.choices.strengths_changed, self._summary),
                                  (self.choices.failed, self._failed_quietly)):
                    try:
                        sig.disconnect(slot)
                    except (RuntimeError, TypeError):
                        pass
            self.choices = choices
            if choices is not None:
                choices.changed.connect(self._list_reloaded)
                choices.strengths_changed.connect(self.render_changed)
                choices.strengths_changed.connect(self._summary)     # "on: …" beside Before follows the rows
                choices.failed.connect(self._failed_quietly)
            self.list.bind(choices)
        if choices is not None:
            choices.reload()
            if self.method_value() == "global":
                self.check_effects()
        self._update()
        self.render_changed.emit()

    def check_clip(self) -> None:
        """Check the configured CLIP file in the background (it reads the file)."""
        run_job(clip_state, self._clip_checked, lambda f: self._clip_checked((False, f.message, True)))

    def _clip_checked(self, state) -> None:
        import html

        ok, line, configured = state
        self.clip_ok = bool(ok)
        if configured and not ok:   # a file is there but cannot be used: say why, then what works
            note = html.escape(line) + " Directions below work without it."
        else:
            note = CLIP_NOTE
        self.clip_label.setText(note)
        self.clip_label.setToolTip(line)
        self._update()

    # ------------------------------------------------------------------ state
    def active(self) -> dict[str, float]:
        """{name: strength} the viewer renders with ({} while Before is held)."""
        if self.before or self.choices is None:
            return {}
        return self.choices.active()

    def set_before(self, on: bool) -> None:
        if self.before != bool(on):
            self.before = bool(on)
            self.before_btn.setDown(self.before)
            self._summary()
            self.render_changed.emit()

    def is_running(self) -> bool:
        return self._busy

    def _supported(self) -> bool:
        return self.choices is not None

    def _update(self) -> None:
        supported = self._supported()
        running = self._busy
        if self.project is None or self.engine is None:
            self.notice.setText("")
            self.notice.hide()
        elif not supported:
            from .viewer import _short_title

            self.notice.setText(f"The {_short_title(self.engine)} engine has no appearance edits: its renders "
                                "cannot take a text edit or a direction. Switch the engine above if another "
                                "one is trained.")
            self.notice.show()
        else:
            self.notice.hide()
        clip = bool(self.clip_ok)
        self.clip_note.setVisible(self.clip_ok is False)
        for w in (self.prompt, self.neutral, self.steps, self.beta, self.method):
            w.setEnabled(supported and clip and not running)
        self.prompt.setToolTip("" if clip else "Add a CLIP file to use text edits (see the note below)")
        self.find_btn.setEnabled(supported and clip and not running and bool(self.prompt.text().strip()))
        self.directions_btn.setEnabled(supported and not running)
        self.picture_path = self.choices.picture if self.choices is not None else None
        self.picture_btn.setEnabled(bool(self.picture_path))
        for w in (self.saved_box, self.before_btn):
            w.setEnabled(supported)
        self.list.set_enabled_rows(not running)
        self.text_box.setEnabled(supported)
        self.dir_box.setEnabled(supported)
        self.cancel_btn.setEnabled(running)
        self._summary()

    def _summary(self) -> None:
        if self.choices is None:
            self.summary.setText("")
            return
        act = self.choices.active()
        if self.before:
            self.summary.setText("before: no edits")
        elif act:
            self.summary.setText("on: " + ", ".join(f"{n} {s:+.2f}" for n, s in act.items()))
        else:
            self.summary.setText("no edit on")

    def _list_reloaded(self) -> None:
        self._update()
        self.list_changed.emit()
        self.render_changed.emit()

    def _failed_quietly(self, f: Failure) -> None:
        self.error_dialog = error_box(self, "Edits", f)

    # ------------------------------------------------------------------ method
    def method_value(self) -> str:
        """"optimise" or "global": how Find makes the text edit."""
        return self.method.currentData() or "optimise"

    def set_method(self, value: str) -> None:
        i = self.method.findData(value)
        if i < 0:
            raise ValueError(f"unknown method {value!r}")
        self.method.setCurrentIndex(i)

    def _method_changed(self) -> None:
        glob = self.method_value() == "global"
        self.method.setToolTip(dict((v, t) for v, _l, t in METHODS)[self.method_value()])
        self.steps.setVisible(not glob)
        self.steps_label.setVisible(not glob)
        self.beta.setVisible(glob)
        self.effects_note.setVisible(glob and bool(self.effects_note.text()))
        if glob:
            self.check_effects()

    def check_effects(self) -> None:
        """Say whether the channel effects are cached (a background job reads the cache's metadata)."""
        if self.project is None or self.choices is None:
            return
        project, engine = self.project, self.engine
        run_job(lambda: effects_state(project, engine), self._effects_checked, lambda f: None)

    def _effects_checked(self, line: str) -> None:
        self.effects_note.setText(line)
        self.effects_note.setVisible(self.method_value() == "global")

    # ------------------------------------------------------------------ finding
    def find_text(self) -> EditJobRunner | None:
        prompt = " ".join(self.prompt.text().split())
        if not prompt or not self.find_btn.isEnabled():
            return None
        options = {"prompt": prompt, "neutral": " ".join(self.neutral.text().split())}
        if self.method_value() == "global":
            options.update(method="global", beta=round(float(self.beta.value()), 4))
        elif self.steps.value() > 0:
            options["steps"] = self.steps.value()
        return self._start("text", options)

    def find_directions(self) -> EditJobRunner | None:
        if not self.directions_btn.isEnabled():
            return None
        return self._start("directions", {})

    def _start(self, job: str, options: dict, in_process: bool = False) -> EditJobRunner | None:
        if self._busy or self.choices is None:
            return None
        runner = EditJobRunner(self.project, self.engine, job, options, in_process=in_process, parent=self)
        runner.progress.connect(self._progress)
        runner.done.connect(self._done)
        runner.failed.connect(self._failed)
        runner.cancelled.connect(self._cancelled)
        runner.finished.connect(self._finished)
        self.runner, self._job, self._busy, self.last_result = runner, job, True, None
        how = " (global direction)" if options.get("method") == "global" else ""
        self.job_box.setTitle(f"Finding “{options['prompt']}”{how}" if job == "text" else "Finding directions")
        self.job_box.show()
        self.strip.set_image(None)
        self.strip.setVisible(job == "text")   # a text search draws its strip; finding directions draws none
        self.progress.setRange(0, 0)
        self.status.setText("starting…")
        self._update()
        runner.start()
        self.busy_changed.emit(True)
        return runner

    def cancel(self) -> None:
        if self._busy and self.runner is not None:
            self.runner.cancel()
            self.cancel_btn.setEnabled(False)
            self.status.setText("cancelling…")

    def _progress(self, b: ProgressBatch) -> None:
        if b.preview is not None:
            self.strip.set_image(b.preview)
        if b.total:
            self.progress.setRange(0, b.total)
            self.progress.setValue(b.step)
            self.progress.setFormat("%v / %m")
        else:
            self.progress.setRange(0, 0)
        loss = b.losses[-1] if b.losses else {}
        extra = f" · CLIP loss {loss['clip']:.3f}" if "clip" in loss else ""
        self.status.setText((b.message or b.part or "working") + extra)

    def _done(self, result) -> None:
        self.last_result = result
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat("done")
        names: tuple[str, ...] = ()
        if self._job == "text":
            name = result.get("name", "") if isinstance(result, dict) else ""
            names = (name,) if name else ()
            self.status.setText(f"found “{name}”: it is switched on below" if name else "found")
            if self.method_value() == "global":
                self.check_effects()
            self.prompt.clear()
            self.neutral.clear()
        else:
            n = len(result.get("edits", [])) if isinstance(result, dict) else 0
            self.status.setText(f"{n} directions found: switch one on below, or open the picture")
            self.list.forget_thumbnails()
        runner = self.runner
        if runner is not None and self.project is not None and runner.project.root == self.project.root:
            choices_for(self.project, runner.engine).reload(turn_on=names)   # the engine it was found for

    def _failed(self, f: Failure) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status.setText("failed")
        self.error_dialog = error_box(self, "The edit could not be found", f)

    def _cancelled(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status.setText("cancelled: nothing was saved")

    def _finished(self) -> None:
        self._busy = False
        self._update()
        self.busy_changed.emit(False)

    # ------------------------------------------------------------------ the list
    def confirm_delete(self, name: str) -> QMessageBox:
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Question)
        box.setWindowTitle("Delete the edit")
        box.setText(f"Delete the edit “{name}”?")
        box.setInformativeText("Its file is removed from the project; finding it again takes as long as the first "
                               "time.")
        box.setStandardButtons(QMessageBox.Yes | QMessageBox.Cancel)
        box.setDefaultButton(QMessageBox.Cancel)
        box.setWindowModality(Qt.WindowModal)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.finished.connect(lambda r: self._delete_answered(name, r))
        box.open()
        self.confirm_box = box
        return box

    def _delete_answered(self, name: str, answer: int) -> None:
        self.confirm_box = None
        if answer == QMessageBox.Yes and self.choices is not None:
            self.choices.set_enabled(name, False)   # no render asks for it while its file goes
            self.choices.remove(name)

    def set_thumbnail(self, name: str, img: QImage | None) -> None:
        self.list.set_thumbnail(name, img)

    def show_picture(self) -> None:
        if not self.picture_path:
            return
        from PySide6.QtWidgets import QDialog

        dlg = QDialog(self)
        dlg.setWindowTitle("Directions: components × strengths × poses")
        dl = QVBoxLayout(dlg)
        view = ImageView("", min_side=300)
        view.set_image(QImage(self.picture_path))
        dl.addWidget(view)
        path = QLabel(self.picture_path)
        path.setObjectName("Dim")
        path.setTextInteractionFlags(Qt.TextSelectableByMouse)
        dl.addWidget(path)
        dlg.resize(900, 700)
        dlg.setAttribute(Qt.WA_DeleteOnClose)
        dlg.open()
        self.picture_dialog = dlg

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel a running job and wait for it and for the listing / CLIP-check jobs (the window is closing)."""
        from .workers import wait_for_jobs

        if self.runner is not None and self.runner.isRunning():
            self.runner.cancel()
            if not self.runner.wait(timeout_ms):
                self.runner.kill()
                self.runner.wait(3000)
        wait_for_jobs(timeout_ms)
