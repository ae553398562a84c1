"""`ElidedLabel`: one line of text that shortens itself to the width it gets ("long_name…"),
with the whole text in its tooltip: for names (projects, files) that cannot wrap."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """A label that elides its text to its width; `full_text()` is the text it was given and the
    tooltip says it whole (or `tip`, when given) whenever it is shortened."""

    def __init__(self, text: str = "", parent: QWidget | None = None, mode: Qt.TextElideMode = Qt.ElideRight):
        super().__init__(parent)
        self._full = ""
        self._tip = ""
        self._mode = mode
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # never wider than its place
        self.setMinimumWidth(40)
        self.set_full_text(text)

    def set_full_text(self, text: str, tip: str = "") -> None:
        self._full, self._tip = str(text), str(tip)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, ev) -> None:  # noqa: N802
        super().resizeEvent(ev)
        self._elide()

    def _elide(self) -> None:
        room = self.contentsRect().width() - 2 * max(0, self.margin()) - max(0, self.indent())
        shown = self.fontMetrics().elidedText(self._full, self._mode, max(0, room)) if room > 0 else self._full
        super().setText(shown)
        self.setToolTip(self._tip or (self._full if shown != self._full else ""))
