"""A settings form generated from a stage's config dataclass.

Each field's `opt` metadata gives its help (shown under the field and as a tooltip), its
choices (a drop-down), min/max (spin box range) and `advanced` (folded into "Advanced").
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any

from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QLabel, QLineEdit,
                               QSpinBox, QVBoxLayout, QWidget, QAbstractSpinBox)


WORDS = {"flame": "FLAME", "psnr": "PSNR", "fps": "FPS", "crf": "CRF", "lr": "LR", "ema": "EMA", "wplus": "W+"}
"""Words a field name spells in lower case that people read in capitals (as the README and the viewer write them)."""
UNITS = {"min": "(min)", "s": "(s)", "px": "(px)"}
"""A unit at the end of a field name, shown as one: "Time budget (min)", not "Time budget min"."""


def humanize(name: str) -> str:
    words = [WORDS.get(w, w) for w in name.strip("_").split("_") if w]
    if len(words) > 1 and words[-1] in UNITS:
        words[-1] = UNITS[words[-1]]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


ZERO_MEANS = re.compile(r"\(0 = ([^;,)]+)[;)]")
"""What a field's help says 0 means, "(0 = no cap; ...)": shown in its spin box at 0 instead of the number."""


def zero_text(help_text: str) -> str:
    """"no cap" for a help text saying "(0 = no cap; ...)"; "" when it says nothing short (three words at most)
    about 0."""
    m = ZERO_MEANS.search(help_text or "")
    return m.group(1).strip() if m and len(m.group(1).split()) <= 3 else ""


def _decimals(value: float, unit: bool = False) -> int:
    """Decimals a float field shows: enough for its default's own digits; a time or size in units (minutes,
    seconds, pixels) of 0 or at least 1 shows one, "30.0" rather than "0.000"."""
    if unit and (value == 0 or abs(value) >= 1):
        return 1
    if value == 0 or not math.isfinite(value):
        return 3
    digits = max(0, -int(math.floor(math.log10(abs(value))))) + 2
    return int(min(8, max(2, digits)))


class ConfigForm(QWidget):
    """Edits one config dataclass instance. `values()` returns a dict for `from_dict`."""

    changed = Signal()

    def __init__(self, config_cls: type, parent: QWidget | None = None):
        super().__init__(parent)
        self.config_cls = config_cls
        self.hints = typing.get_type_hints(config_cls)
        self.fields = list(dataclasses.fields(config_cls))
        self.editors: dict[str, QWidget] = {}
        self._kinds: dict[str, str] = {}
        self._loading = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(10)
        basic = QGroupBox("Settings")
        self.basic_form = self._form(basic)
        self.advanced_box = QGroupBox("Advanced")
        self.advanced_box.setCheckable(True)
        self.advanced_box.setChecked(False)
        self.advanced_inner = QWidget()
        adv_layout = QVBoxLayout(self.advanced_box)
        adv_layout.setContentsMargins(0, 4, 0, 0)
        adv_layout.addWidget(self.advanced_inner)
        self.advanced_form = self._form(self.advanced_inner)
        self.advanced_box.toggled.connect(self.advanced_inner.setVisible)
        self.advanced_inner.setVisible(False)
        n_adv = 0
        for f in self.fields:
            md = f.metadata or {}
            editor = self._editor(f, md)
            self.editors[f.name] = editor
            label = QLabel(humanize(f.name))
            label.setToolTip(md.get("help", ""))
            cell = QWidget()
            cl = QVBoxLayout(cell)
            cl.setContentsMargins(0, 0, 0, 0)
            cl.setSpacing(2)
            cl.addWidget(editor)
            if md.get("help"):
                h = QLabel(md["help"])
                h.setObjectName("Hint")
                h.setWordWrap(True)
                cl.addWidget(h)
            editor.setToolTip(md.get("help", ""))
            if md.get("advanced"):
                self.advanced_form.addRow(label, cell)
                n_adv += 1
            else:
                self.basic_form.addRow(label, cell)
        outer.addWidget(basic)
        if self.basic_form.rowCount() == 0:
            basic.hide()
        outer.addWidget(self.advanced_box)
        self.advanced_box.setVisible(n_adv > 0)
        outer.addStretch(1)

    @staticmethod
    def _form(parent: QWidget) -> QFormLayout:
        form = QFormLayout(parent)
        form.setLabelAlignment(Qt.AlignRight | Qt.AlignTop)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(10)
        return form

    def _editor(self, f: dataclasses.Field, md: dict) -> QWidget:
        typ = self.hints.get(f.name, str)
        choices = md.get("choices")
        lo, hi = md.get("min"), md.get("max")
        if choices:
            w = QComboBox()
            for c in choices:
                w.addItem(str(c), c)
            w.currentIndexChanged.connect(self._emit)
            kind = "choice"
        elif typ is bool:
            w = QCheckBox()
            w.toggled.connect(self._emit)
            kind = "bool"
        elif typ is int:
            w = QSpinBox()
            w.setRange(int(lo) if lo is not None else -2_000_000_000, int(hi) if hi is not None else 2_000_000_000)
            w.setStepType(QAbstractSpinBox.AdaptiveDecimalStepType)
            w.valueChanged.connect(self._emit)
            kind = "int"
        elif typ is float:
            w = QDoubleSpinBox()
            default = f.default if f.default is not dataclasses.MISSING else 0.0
            w.setDecimals(_decimals(float(default), unit=f.name.rsplit("_", 1)[-1] in UNITS and "_" in f.name))
            w.setRange(float(lo) if lo is not None else -1e12, float(hi) if hi is not None else 1e12)
            w.setStepType(QAbstractSpinBox.AdaptiveDecimalStepType)
            w.valueChanged.connect(self._emit)
            kind = "float"
        else:  # str, optional numbers, lists: a text field read back by studio.config.from_dict
            w = QLineEdit()
            if typing.get_origin(typ) is typing.Union or "None" in str(typ):
                w.setPlaceholderText("none")
            w.editingFinished.connect(self._emit)
            kind = "text"
        for spin in (w,) if isinstance(w, (QSpinBox, QDoubleSpinBox)) else ():
            spin.setKeyboardTracking(False)
            spin.setMinimumWidth(120)
            if lo == 0 and zero_text(md.get("help", "")):   # the spin box's lowest value reads as words
                spin.setSpecialValueText(zero_text(md["help"]))
        self._kinds[f.name] = kind
        return w

    def _emit(self, *_: Any) -> None:
        if not self._loading:
            self.changed.emit()

    # ------------------------------------------------------------------ values
    def set_config(self, cfg: Any) -> None:
        self._loading = True
        try:
            for f in self.fields:
                v = getattr(cfg, f.name)
                w, kind = self.editors[f.name], self._kinds[f.name]
                if kind == "choice":
                    i = w.findData(v)
                    w.setCurrentIndex(max(0, i))
                elif kind == "bool":
                    w.setChecked(bool(v))
                elif kind == "int":
                    w.setValue(int(v))
                elif kind == "float":
                    w.setValue(float(v))
                else:
                    if isinstance(v, (list, tuple)):
                        w.setText(", ".join(map(str, v)))
                    else:
                        w.setText("" if v is None else str(v))
        finally:
            self._loading = False

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.fields:
            w, kind = self.editors[f.name], self._kinds[f.name]
            if kind == "choice":
                out[f.name] = w.currentData()
            elif kind == "bool":
                out[f.name] = w.isChecked()
            elif kind in ("int", "float"):
                out[f.name] = w.value()
            else:
                out[f.name] = w.text()
        return out

    def set_editable(self, on: bool) -> None:
        for w in self.editors.values():
            w.setEnabled(on)
