"""Look and feel: the dark palette, the stylesheet in resources/theme, icons in resources/icons."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QApplication, QCheckBox, QLayout

RESOURCES = Path(__file__).resolve().parents[2] / "resources"

COLORS = {
    "base": "#20242c", "panel": "#272c36", "raised": "#313744", "border": "#3b4252",
    "text": "#d8dee9", "dim": "#8a93a6", "accent": "#88c0d0", "good": "#a3be8c",
    "warn": "#ebcb8b", "bad": "#bf616a", "orange": "#d08770", "purple": "#b48ead",
}
CURVE_COLORS = ["#88c0d0", "#a3be8c", "#ebcb8b", "#b48ead", "#d08770", "#bf616a", "#5e81ac", "#8fbcbb"]


def curve_style(i: int) -> tuple[str, Qt.PenStyle]:
    """Colour and line style of curve `i` of a plot: the palette's colours, solid, then the same colours dashed,
    then dotted (twelve named expressions, or a stage's nine losses, against eight colours: no two alike)."""
    return CURVE_COLORS[i % len(CURVE_COLORS)], (Qt.SolidLine, Qt.DashLine, Qt.DotLine)[(i // len(CURVE_COLORS)) % 3]


def swatch(color: str, style: Qt.PenStyle = Qt.SolidLine) -> QIcon:
    """A short line in `color` and `style`: the icon of a curve's on/off box."""
    pm = QPixmap(22, 10)
    pm.fill(Qt.transparent)
    painter = QPainter(pm)
    pen = QPen(QColor(color), 2)
    pen.setStyle(style)
    painter.setPen(pen)
    painter.drawLine(1, 5, 21, 5)
    painter.end()
    return QIcon(pm)


def curve_box(name: str, color: str, style: Qt.PenStyle, shown: bool, what: str, on_toggle) -> QCheckBox:
    """The on/off box of curve `name` under a plot: its swatch, "Show the <name> <what>", `on_toggle(on)`."""
    box = QCheckBox(name.replace("_", " "))
    box.setIcon(swatch(color, style))
    box.setChecked(shown)
    box.setToolTip(f"Show the {name} {what}")
    box.toggled.connect(on_toggle)
    return box


def clear_layout(layout: QLayout) -> None:
    """Take every item out of `layout`, deleting its widgets; they are hidden at once (deleteLater waits for
    the event loop, and until then the old boxes showed under the new ones)."""
    while layout.count():
        item = layout.takeAt(0)
        if item.widget() is not None:
            item.widget().hide()
            item.widget().deleteLater()


@lru_cache(maxsize=None)
def icon(name: str) -> QIcon:
    """An icon from resources/icons/<name>.svg (an empty icon when the file is missing)."""
    path = RESOURCES / "icons" / f"{name}.svg"
    return QIcon(str(path)) if path.exists() else QIcon()


def stylesheet() -> str:
    path = RESOURCES / "theme" / "dark.qss"
    if not path.exists():
        return ""
    return path.read_text("utf-8").replace("url(resources/", f"url({RESOURCES.as_posix()}/")


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    c = {k: QColor(v) for k, v in COLORS.items()}
    pal.setColor(QPalette.Window, c["base"])
    pal.setColor(QPalette.WindowText, c["text"])
    pal.setColor(QPalette.Base, QColor("#15181e"))
    pal.setColor(QPalette.AlternateBase, c["panel"])
    pal.setColor(QPalette.Text, c["text"])
    pal.setColor(QPalette.Button, c["raised"])
    pal.setColor(QPalette.ButtonText, c["text"])
    pal.setColor(QPalette.Highlight, QColor("#3f5f6e"))
    pal.setColor(QPalette.HighlightedText, QColor("#eceff4"))
    pal.setColor(QPalette.ToolTipBase, c["raised"])
    pal.setColor(QPalette.ToolTipText, c["text"])
    pal.setColor(QPalette.PlaceholderText, c["dim"])
    pal.setColor(QPalette.Disabled, QPalette.Text, QColor("#5d6577"))
    pal.setColor(QPalette.Disabled, QPalette.ButtonText, QColor("#5d6577"))
    app.setPalette(pal)
    app.setStyleSheet(stylesheet())
    app.setWindowIcon(icon("app"))
    try:
        import pyqtgraph as pg

        pg.setConfigOptions(background=COLORS["base"], foreground=COLORS["dim"], antialias=True)
    except ImportError:  # pragma: no cover
        pass
