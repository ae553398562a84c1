"""The viewer: the avatar rendered live from sliders (yaw, pitch, one per named expression).

Renders run in a `RenderWorker` that only renders the newest slider state. An optional
panel shows the nearest real training frame beside the render.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QScrollArea, QSlider, QToolButton, QVBoxLayout, QWidget)

from .dialogs import error_box
from .imaging import ImageView
from .theme import icon
from .workers import Failure, RenderWorker

STEPS = 200
"""Slider resolution: positions 0..STEPS across each control's trained range."""


class ControlSlider(QWidget):
    """A slider over [lo, hi] with a value label and a reset button."""

    moved = Signal()

    def __init__(self, name: str, lo: float, hi: float, neutral: float, unit: str = ""):
        super().__init__()
        self.name, self.lo, self.hi, self.neutral, self.unit = name, lo, hi, neutral, unit
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(8)
        self.label = QLabel(name.replace("_", " "))
        self.label.setMinimumWidth(120)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, STEPS)
        self.slider.setToolTip(f"{name}: trained range {lo:.2f} … {hi:.2f}{unit}")
        self.value_label = QLabel("")
        self.value_label.setObjectName("Stat")
        self.value_label.setMinimumWidth(64)
        self.value_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self.reset_btn = QToolButton()
        self.reset_btn.setIcon(icon("reset"))
        self.reset_btn.setToolTip(f"Reset {name}")
        self.reset_btn.setAutoRaise(True)
        lay.addWidget(self.label)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.value_label)
        lay.addWidget(self.reset_btn)
        self.slider.valueChanged.connect(self._changed)
        self.reset_btn.clicked.connect(self.reset)
        self.set_value(neutral)

    def value(self) -> float:
        return self.lo + (self.hi - self.lo) * self.slider.value() / STEPS

    def set_value(self, v: float) -> None:
        span = self.hi - self.lo
        pos = int(round((v - self.lo) / span * STEPS)) if span > 0 else 0
        self.slider.setValue(int(np.clip(pos, 0, STEPS)))
        self._label()

    def nudge(self, steps: int) -> None:
        self.slider.setValue(self.slider.value() + steps)

    def reset(self) -> None:
        self.set_value(self.neutral)

    def _label(self) -> None:
        self.value_label.setText(f"{self.value():+.2f}{self.unit}")

    def _changed(self) -> None:
        self._label()
        self.moved.emit()


class ViewerPanel(QWidget):
    """Sliders → render requests → the newest image. `show_models` asks the window for the Models dialog."""

    show_models = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.sliders: list[ControlSlider] = []
        self._titles: list[QLabel] = []
        self.last_render: dict | None = None
        self.worker = RenderWorker(self)
        self.worker.loaded.connect(self._loaded)
        self.worker.rendered.connect(self._rendered)
        self.worker.failed.connect(self._failed)
        self.worker.start()

        lay = QHBoxLayout(self)
        lay.setContentsMargins(16, 12, 16, 12)
        lay.setSpacing(14)
        left = QVBoxLayout()
        head = QHBoxLayout()
        title = QLabel("Viewer")
        title.setObjectName("PageTitle")
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(QLabel("Engine"))
        self.engine_box = QComboBox()
        self.engine_box.setMinimumWidth(140)
        self.engine_box.currentIndexChanged.connect(self._engine_chosen)
        head.addWidget(self.engine_box)
        left.addLayout(head)
        self.notice = QLabel("")
        self.notice.setObjectName("Warning")
        self.notice.setWordWrap(True)
        self.notice.hide()
        left.addWidget(self.notice)
        images = QHBoxLayout()
        self.render_view = ImageView("No trained avatar yet", min_side=256)
        self.nearest_view = ImageView("nearest training frame", min_side=200)
        self.nearest_view.hide()
        images.addWidget(self.render_view, 3)
        images.addWidget(self.nearest_view, 2)
        left.addLayout(images, 1)
        self.info = QLabel("")
        self.info.setObjectName("Dim")
        left.addWidget(self.info)
        lay.addLayout(left, 3)

        right = QVBoxLayout()
        right.setSpacing(10)
        self.controls_box = QGroupBox("Controls")
        self.grid = QVBoxLayout(self.controls_box)
        self.grid.setSpacing(6)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.controls_box)
        scroll.setMinimumWidth(400)
        right.addWidget(scroll, 1)
        row = QHBoxLayout()
        self.reset_btn = QPushButton(icon("reset"), "Reset all")
        self.reset_btn.setToolTip("Reset every slider (R)")
        self.reset_btn.clicked.connect(self.reset_all)
        self.nearest_box = QCheckBox("Show nearest training frame")
        self.nearest_box.setToolTip("Show the real frame whose pose and expression are closest (N)")
        self.nearest_box.toggled.connect(self._nearest_toggled)
        row.addWidget(self.reset_btn)
        row.addWidget(self.nearest_box)
        row.addStretch(1)
        right.addLayout(row)
        self.flame_note = QWidget()
        fl = QHBoxLayout(self.flame_note)
        fl.setContentsMargins(0, 0, 0, 0)
        self.flame_label = QLabel("")
        self.flame_label.setObjectName("Hint")
        self.flame_label.setWordWrap(True)
        models_btn = QPushButton("Models…")
        models_btn.setObjectName("Link")
        models_btn.clicked.connect(self.show_models)
        fl.addWidget(self.flame_label, 1)
        fl.addWidget(models_btn)
        right.addWidget(self.flame_note)
        keys = QLabel("Keys: A/D yaw · W/S pitch · R reset · N nearest frame")
        keys.setObjectName("Hint")
        right.addWidget(keys)
        lay.addLayout(right, 2)

        for seq, fn in (("A", lambda: self._nudge(0, -5)), ("D", lambda: self._nudge(0, 5)),
                        ("W", lambda: self._nudge(1, 5)), ("S", lambda: self._nudge(1, -5)),
                        ("R", self.reset_all), ("N", lambda: self.nearest_box.toggle())):
            sc = QShortcut(QKeySequence(seq), self)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(fn)
        self._set_enabled(False)

    # ------------------------------------------------------------------ project / engine
    def set_project(self, project) -> None:
        from ..avatar import trained_engines
        from ..model_files import ModelFiles

        self.project = project
        self.engine_box.blockSignals(True)
        self.engine_box.clear()
        engines = []
        if project is not None:
            engines = trained_engines(project)
        for e in engines:
            self.engine_box.addItem(_short_title(e), e)
        self.engine_box.setEnabled(len(engines) > 1)
        self.engine_box.setToolTip("" if len(engines) > 1 else "Train both engines to switch between them")
        self.engine_box.blockSignals(False)
        flame = ModelFiles().entry("flame")
        self.flame_label.setText("" if flame.ok else
                                 "FLAME sliders need the FLAME head model (generic_model.pkl), which is not "
                                 "configured; the named expression sliders are used.")
        self.flame_note.setVisible(not flame.ok)
        self._clear_sliders()
        self.render_view.set_image(None)
        self.nearest_view.set_image(None)
        if project is None:
            self.render_view.set_placeholder("Open a project")
        elif not engines:
            self.render_view.set_placeholder("No trained avatar yet.\nRun the training stages, then come back here.")
            self.info.setText("")
        else:
            self.render_view.set_placeholder("Loading the avatar…")
            self.worker.load(project, engines[0])

    def _engine_chosen(self) -> None:
        e = self.engine_box.currentData()
        if e and self.project is not None:
            self.render_view.set_placeholder(f"Loading the {_short_title(e)} avatar…")
            self.worker.load(self.project, e)

    def _clear_sliders(self) -> None:
        for w in [*self.sliders, *self._titles]:
            w.setParent(None)
            w.deleteLater()
        self.sliders, self._titles = [], []
        self._set_enabled(False)

    def _set_enabled(self, on: bool) -> None:
        self.reset_btn.setEnabled(on)
        self.nearest_box.setEnabled(on and getattr(self, "_has_tracking", False))

    def _loaded(self, info: dict) -> None:
        self._clear_sliders()
        self._has_tracking = info["has_tracking"]
        for i, name in enumerate(info["control_names"]):
            if i in (0, 2):
                t = QLabel("HEAD POSE" if i == 0 else "EXPRESSION")
                t.setObjectName("SectionTitle")
                self.grid.addWidget(t)
                self._titles.append(t)
            lo, hi = info["ranges"].get(name, (-1.0, 1.0))
            neutral = float(np.clip(0.0, lo, hi))
            s = ControlSlider(name, lo, hi, neutral, "°" if i < 2 else "")
            s.moved.connect(self.request_render)
            self.grid.addWidget(s)
            self.sliders.append(s)
        self._set_enabled(True)
        self.nearest_box.setToolTip("" if self._has_tracking else "needs the Tracking stage's results")
        self.info.setText(f"{_short_title(info['engine'])} avatar, {info['size']} px")
        self.request_render()

    # ------------------------------------------------------------------ rendering
    def controls(self) -> np.ndarray:
        return np.array([s.value() for s in self.sliders], np.float32)

    def request_render(self) -> int:
        if not self.sliders:
            return -1
        return self.worker.request(self.controls(), nearest=self.nearest_box.isChecked())

    def _rendered(self, r: dict) -> None:
        self.last_render = r
        self.render_view.set_image(r["image"])
        if self.nearest_box.isChecked():
            self.nearest_view.set_image(r["nearest"])
        clamp = f" · clamped to the trained range: {', '.join(r['clamped'])}" if r["clamped"] else ""
        near = f" · nearest frame {r['row']}" if r.get("row") is not None and self.nearest_box.isChecked() else ""
        base = self.info.text().split(" · ")[0]
        self.info.setText(f"{base} · {r['ms']:.0f} ms{near}{clamp}")

    def _failed(self, f: Failure) -> None:
        self.render_view.set_placeholder("The avatar cannot be shown.")
        self.render_view.set_image(None)
        self.error_dialog = error_box(self, "Viewer", f)

    def _nearest_toggled(self, on: bool) -> None:
        self.nearest_view.setVisible(on)
        self.request_render()

    def reset_all(self) -> None:
        for s in self.sliders:
            s.slider.blockSignals(True)
            s.reset()
            s.slider.blockSignals(False)
        self.request_render()

    def _nudge(self, index: int, steps: int) -> None:
        if index < len(self.sliders):
            self.sliders[index].nudge(steps)

    def shutdown(self) -> None:
        self.worker.stop()


def _short_title(name: str) -> str:
    from ..engines import ENGINES

    spec = ENGINES.get(name)
    return spec.short if spec is not None else name
