"""One of the viewer's controls: a slider over a control's trained range with its value and a reset button."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QToolButton, QWidget

from .theme import icon

STEPS = 200
"""Slider resolution: positions 0..STEPS across each control's trained range."""


class ControlSlider(QWidget):
    """A slider over [lo, hi] with a value label and a reset button."""

    moved = Signal()

    def __init__(self, name: str, lo: float, hi: float, neutral: float, unit: str = ""):
        super().__init__()
        self.name, self.lo, self.hi, self.neutral, self.unit = name, lo, hi, neutral, unit
        self._exact: float | None = None
        """The value set by `set_value` (a reset: the neutral 0), which the slider's 200 steps rarely hit exactly;
        None once the user moves the slider."""
        self._setting = False
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
        if self._exact is not None:
            return self._exact
        return self.lo + (self.hi - self.lo) * self.slider.value() / STEPS

    def set_value(self, v: float) -> None:
        """Move to `v` itself (clamped to the range), not to the slider step nearest it: a reset renders and reads
        +0.00, not the +0.03° of the nearest step."""
        span = self.hi - self.lo
        pos = int(round((v - self.lo) / span * STEPS)) if span > 0 else 0
        before, pos = self.value(), int(np.clip(pos, 0, STEPS))
        self._exact = float(np.clip(v, min(self.lo, self.hi), max(self.lo, self.hi)))
        if pos == self.slider.value():          # the slider stays put: no valueChanged, but the value may move
            self._label()
            if self._exact != before and not self.slider.signalsBlocked():
                self.moved.emit()
            return
        self._setting = True
        try:
            self.slider.setValue(pos)
        finally:
            self._setting = False
        self._label()                           # also when the caller blocks the slider's signals (Reset all)

    def nudge(self, steps: int) -> None:
        self.slider.setValue(self.slider.value() + steps)

    def reset(self) -> None:
        self.set_value(self.neutral)

    def _label(self) -> None:
        shown = round(self.value(), 2) + 0.0  # + 0.0: a value that rounds to zero reads +0.00, not -0.00
        self.value_label.setText(f"{shown:+.2f}{self.unit}")

    def _changed(self) -> None:
        if not self._setting:     # the user moved it: the slider's own step from now on
            self._exact = None
        self._label()
        self.moved.emit()
