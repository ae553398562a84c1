"""The list of saved edits (one row each: on/off, strength slider, thumbnail), shared by the viewer's
Edits panel and the Export page; the rows show and set an `EditChoices`.
"""
from __future__ import annotations

from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QCheckBox, QFrame, QHBoxLayout, QLabel, QSizePolicy, QSlider, QStyle, QToolButton,
                               QVBoxLayout, QWidget)

from .edit_choices import EditChoices

SLIDER_SCALE = 100
"""Strength slider positions per unit of strength (0.01 steps; 0 is an exact position)."""
THUMB_STRENGTHS = (-2.0, 0.0, 2.0)
"""Strengths (in σ) a direction's thumbnail shows, left to right; a text edit's shows 0 and its default."""
THUMB_HEIGHT = 52
"""Height of a direction thumbnail strip in the panel, in pixels."""


# ----------------------------------------------------------------------------- one edit's row
class NameCheckBox(QCheckBox):
    """A check box whose label (an edit's name, up to 80 characters) is elided to the width it gets,
    so a long name never makes the Edits column wider than its place beside the viewer."""

    MIN_TEXT = 60
    """Pixels of the name that always stay visible."""

    def __init__(self, text: str):
        super().__init__(text)
        self.full_text = text
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)   # a check box's own policy cannot shrink

    def _chrome(self) -> int:
        st = self.style()
        return st.pixelMetric(QStyle.PM_IndicatorWidth, None, self) + \
            st.pixelMetric(QStyle.PM_CheckBoxLabelSpacing, None, self) + 4

    def minimumSizeHint(self):  # noqa: N802 (Qt name)
        hint = super().minimumSizeHint()
        full = self._chrome() + self.fontMetrics().horizontalAdvance(self.full_text)
        hint.setWidth(min(full, self._chrome() + self.MIN_TEXT))
        return hint

    def sizeHint(self):  # noqa: N802 (Qt name)
        hint = super().sizeHint()
        hint.setWidth(self._chrome() + self.fontMetrics().horizontalAdvance(self.full_text))
        return hint

    def resizeEvent(self, ev) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(ev)
        room = max(0, self.width() - self._chrome())
        text = self.fontMetrics().elidedText(self.full_text, Qt.ElideRight, room)
        if text != self.text():
            self.setText(text)


class EditRow(QFrame):
    """[on] name (elided to fit) · label [delete], then the strength slider; directions also show a thumbnail strip."""

    delete_requested = Signal(str)

    def __init__(self, choices: EditChoices, meta: dict, deletable: bool = True, thumbnail: bool = False):
        super().__init__()
        self.setObjectName("EditRow")
        self.choices, self.name = choices, meta["name"]
        lo, hi = (meta.get("strength_range") or (-2.0, 2.0))
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        self.default = float(meta.get("default_strength", 1.0))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 2)
        lay.setSpacing(2)
        top = QHBoxLayout()
        top.setSpacing(6)
        self.check = NameCheckBox(self.name)
        self.check.setToolTip(meta.get("describe") or self._tooltip(meta))
        self.check.setChecked(choices.enabled(self.name))
        self.check.toggled.connect(lambda on: choices.set_enabled(self.name, on))
        top.addWidget(self.check, 1)
        # the list's section titles (TEXT EDITS, DIRECTIONS) already say the kind: the tag adds what they do not
        tag = {"global": "global", "direction": meta.get("label") or ""}.get(meta.get("kind"), "")
        self.tag = QLabel(tag)
        self.tag.setObjectName("Dim")
        top.addWidget(self.tag)
        self.delete_btn = QToolButton()
        self.delete_btn.setText("Delete")
        self.delete_btn.setAutoRaise(True)
        self.delete_btn.setToolTip(f"Delete '{self.name}' from the project")
        self.delete_btn.clicked.connect(lambda: self.delete_requested.emit(self.name))
        self.delete_btn.setVisible(deletable)
        top.addWidget(self.delete_btn)
        lay.addLayout(top)
        if meta.get("current") is False:
            old = QLabel("made for an earlier training of this avatar: find it again")
            old.setObjectName("Warning")
            old.setWordWrap(True)
            lay.addWidget(old)
        row = QHBoxLayout()
        row.setSpacing(6)
        self.thumb = QLabel()
        self.thumb.setFixedHeight(THUMB_HEIGHT)
        self.thumb.setMinimumWidth(3 * THUMB_HEIGHT)
        self.thumb.setAlignment(Qt.AlignCenter)
        self.thumb.setObjectName("Dim")
        self.thumb.setText("…")
        self.thumb.setToolTip(f"'{self.name}' at strength {', '.join(f'{s:+g}' for s in thumb_strengths(meta))} "
                              "(neutral pose and expression)")
        self.thumb.setVisible(thumbnail)
        lay.addWidget(self.thumb)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(int(round(lo * SLIDER_SCALE)), int(round(hi * SLIDER_SCALE)))
        self.slider.setToolTip(f"Strength of '{self.name}' ({lo:g} … {hi:g}; 0 = no change). Double-click the "
                               "value to go back to the default.")
        self.value_label = QLabel("")
        self.value_label.setObjectName("Stat")
        self.value_label.setMinimumWidth(48)
        self.value_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self.value_label.mouseDoubleClickEvent = lambda _ev: self.set_value(self.default)
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        lay.addLayout(row)
        self.slider.setValue(int(round(choices.strength(self.name) * SLIDER_SCALE)))
        self._label()
        self.slider.valueChanged.connect(self._moved)

    @staticmethod
    def _tooltip(meta: dict) -> str:
        kind = meta.get("kind")
        if kind in ("text", "global"):
            what = f"text edit: “{meta.get('prompt', '')}”"
            if meta.get("neutral"):
                what += f" (from “{meta['neutral']}”)"
        else:
            what = f"direction: principal component {meta.get('component')} ({meta.get('label') or 'unlabelled'})"
        layers = meta.get("layers")
        return what + (f", latent layers {layers[0]}–{layers[1] - 1}" if layers else "")

    def value(self) -> float:
        return self.slider.value() / SLIDER_SCALE

    def set_value(self, v: float) -> None:
        self.slider.setValue(int(round(v * SLIDER_SCALE)))

    def _label(self) -> None:
        self.value_label.setText(f"{self.value():+.2f}")

    def _moved(self) -> None:
        self._label()
        self.choices.set_strength(self.name, self.value())

    def sync(self) -> None:
        """Follow the shared state (the other page moved it)."""
        for w, v in ((self.check, self.choices.enabled(self.name)),):
            if w.isChecked() != v:
                w.blockSignals(True)
                w.setChecked(v)
                w.blockSignals(False)
        pos = int(round(self.choices.strength(self.name) * SLIDER_SCALE))
        if self.slider.value() != pos:
            self.slider.blockSignals(True)
            self.slider.setValue(pos)
            self.slider.blockSignals(False)
            self._label()

    def set_thumbnail(self, img: QImage | None) -> None:
        if img is None or img.isNull():
            self.thumb.setText("no thumbnail")
            return
        self.thumb.setPixmap(QPixmap.fromImage(img).scaledToHeight(THUMB_HEIGHT, Qt.SmoothTransformation))


class EditList(QWidget):
    """The rows of an `EditChoices`: text edits, then directions (appearance first)."""

    delete_requested = Signal(str)
    thumbnails_wanted = Signal(list)   # [(name, strengths)] of rows without a thumbnail yet

    def __init__(self, deletable: bool = True, thumbnails: bool = False, empty: str = ""):
        super().__init__()
        self.deletable, self.thumbnails = deletable, thumbnails
        self.choices: EditChoices | None = None
        self.rows: dict[str, EditRow] = {}
        self._thumbs: dict[str, QImage] = {}
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        self.lay.setSpacing(4)
        self.empty = QLabel(empty)
        self.empty.setObjectName("Hint")
        self.empty.setWordWrap(True)
        self.lay.addWidget(self.empty)
        self._titles: list[QWidget] = []

    def bind(self, choices: EditChoices | None) -> None:
        if self.choices is not None:
            for sig, slot in ((self.choices.changed, self.rebuild), (self.choices.strengths_changed, self._sync)):
                try:
                    sig.disconnect(slot)
                except (RuntimeError, TypeError):
                    pass
        self.choices = choices
        self._thumbs = {}
        if choices is not None:
            choices.changed.connect(self.rebuild)
            choices.strengths_changed.connect(self._sync)
        self.rebuild()

    def rebuild(self) -> None:
        for w in [*self.rows.values(), *self._titles]:
            w.setParent(None)
            w.deleteLater()
        self.rows, self._titles = {}, []
        metas = list(self.choices.edits) if self.choices is not None else []
        self.empty.setVisible(not metas)
        text = [m for m in metas if m.get("kind") != "direction"]
        dirs = [m for m in metas if m.get("kind") == "direction"]
        dirs.sort(key=lambda m: (m.get("label", "appearance") != "appearance", m.get("component") or 0))
        for title, group in (("TEXT EDITS", text), ("DIRECTIONS", dirs)):
            if not group:
                continue
            t = QLabel(title)
            t.setObjectName("SectionTitle")
            self.lay.addWidget(t)
            self._titles.append(t)
            for m in group:
                row = EditRow(self.choices, m, self.deletable, thumbnail=self.thumbnails)
                row.delete_requested.connect(self.delete_requested)
                if row.name in self._thumbs:
                    row.set_thumbnail(self._thumbs[row.name])
                self.lay.addWidget(row)
                self.rows[row.name] = row
        if self.thumbnails:
            missing = [(m["name"], thumb_strengths(m)) for m in text + dirs if m["name"] not in self._thumbs]
            if missing:
                self.thumbnails_wanted.emit(missing)

    def _sync(self) -> None:
        for row in self.rows.values():
            row.sync()

    def set_thumbnail(self, name: str, img: QImage | None) -> None:
        if img is not None:
            self._thumbs[name] = img
        if name in self.rows:
            self.rows[name].set_thumbnail(img)

    def forget_thumbnails(self) -> None:
        self._thumbs = {}

    def set_enabled_rows(self, on: bool) -> None:
        """Delete buttons off while a job holds the project (it would answer "busy")."""
        for row in self.rows.values():
            row.delete_btn.setEnabled(on)


def thumb_strengths(meta: dict) -> tuple[float, ...]:
    if meta.get("kind") == "direction":
        return THUMB_STRENGTHS
    return (0.0, float(meta.get("default_strength", 1.0)) or 1.0)
