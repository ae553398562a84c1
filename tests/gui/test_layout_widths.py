"""Text fits at the window widths people use (1000–1360 px): on the main pages no label, button
or check box shows less of its text than it holds (a label that elides says the whole text in its
tooltip). Screenshots of each page at 1000, 1200 and 1360 px go to test-output/screens/.

The project is synthetic with fake engines (tests/gui/gui_fakes.py): the layout, not a model.
"""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import Qt as GuiQt, QTextDocument
from PySide6.QtWidgets import QAbstractButton, QCheckBox, QLabel, QWidget

from gui_fakes import FAKE_TRAIN, mark_done, synthetic_tracked_project

WIDTHS = (1000, 1200, 1360)


def _text_width(w: QWidget, text: str, rich: bool) -> int:
    if rich:
        doc = QTextDocument()
        doc.setDefaultFont(w.font())
        doc.setDocumentMargin(0)
        doc.setHtml(text)
        return int(doc.idealWidth() + 0.999)
    fm = w.fontMetrics()
    return max((fm.horizontalAdvance(line) for line in text.replace("&&", "&").split("\n")), default=0)


def _seen_width(w: QWidget, root: QWidget) -> int:
    """How much of `w`'s width its parents show (each parent cuts at its sides; rows scrolled out
    of a scroll area at the top or bottom are not counted: they scroll into view)."""
    from PySide6.QtCore import QPoint

    x0, x1 = 0, w.width()
    p, child = w.parentWidget(), w
    while p is not None and child is not root:
        off = child.mapTo(p, QPoint(0, 0)).x()
        x0, x1 = max(x0 + off, 0), min(x1 + off, p.width())
        if x1 <= x0:
            return 0
        p, child = p.parentWidget(), p
    return x1 - x0


def _scrolls_sideways(w: QWidget) -> bool:
    """Inside a scroll area that is meant to scroll sideways (the viewer's columns in a narrow
    window): a label cut there is reached with the scroll bar, not lost. Other scroll areas only
    scroll down, and text cut by them at the side is lost."""
    from PySide6.QtWidgets import QScrollArea

    p = w.parentWidget()
    while p is not None:
        if isinstance(p, QScrollArea) and p.horizontalScrollBarPolicy() != Qt.ScrollBarAlwaysOff \
                and p.property("scrolls_sideways"):
            return True
        p = p.parentWidget()
    return False


def clipped(root: QWidget) -> list[str]:
    """Visible labels, buttons and check boxes under `root` whose text does not fit their own
    width (or, for a word-wrapped label, their height)."""
    out = []
    for w in root.findChildren(QWidget):
        if not w.isVisibleTo(root) or w.width() <= 1:
            continue
        if isinstance(w, QLabel):
            text = w.text()
            if not text or w.pixmap() is not None and not w.pixmap().isNull():
                continue
            rich = w.textFormat() == Qt.RichText or (w.textFormat() == Qt.AutoText and GuiQt.mightBeRichText(text))
            room = w.contentsRect().width() - 2 * max(0, w.margin()) - max(0, w.indent())
            if text.endswith("…") and len(w.toolTip()) <= len(text):
                out.append(f"{type(w.parent()).__name__}>QLabel {text[:50]!r}: elided without the whole text "
                           "in its tooltip")
            if w.wordWrap():
                if _seen_width(w, root) < w.width() - 1 and not _scrolls_sideways(w):
                    out.append(f"{type(w.parent()).__name__}>{w.objectName() or 'QLabel'} {text[:50]!r}: "
                               f"{w.width()} px wide, {_seen_width(w, root)} px seen")
                need_h = w.heightForWidth(w.width())
                if need_h > w.height() + 1:
                    out.append(f"{type(w.parent()).__name__}>{w.objectName() or 'QLabel'} {text[:50]!r}: "
                               f"wraps to {need_h} px, {w.height()} px tall")
                plain = QTextDocument()
                plain.setHtml(text) if rich else plain.setPlainText(text)
                word = max(plain.toPlainText().split(), key=len, default="")
                if _text_width(w, word, False) > room + 1:  # a word longer than the line cannot wrap
                    out.append(f"{type(w.parent()).__name__}>{w.objectName() or 'QLabel'} {word[:50]!r}: "
                               f"an unbreakable {_text_width(w, word, False)} px in {room} px")
                continue
            need = _text_width(w, text, rich)
            seen = _seen_width(w, root)  # less when a scroll area or a column cuts it at the side
            if need > min(room, seen) + 1 and not _scrolls_sideways(w):
                out.append(f"{type(w.parent()).__name__}>{w.objectName() or 'QLabel'} {text[:50]!r}: "
                           f"{need} px of text in {room} px")
        elif isinstance(w, QAbstractButton) and w.text() and type(w).__name__ != "QToolButton":
            hint = w.minimumSizeHint().width() if isinstance(w, QCheckBox) else w.sizeHint().width()
            if hint > w.width() + 1:
                out.append(f"{type(w).__name__} {w.text()[:50]!r}: needs {hint} px, has {w.width()} px")
    return out


@pytest.fixture
def project(tmp_path, fake_stages, fake_engines):
    from studio.stages import REGISTRY

    if "track" not in REGISTRY or "ingest" not in REGISTRY:
        pytest.skip("needs the ingest and track stages")
    proj = synthetic_tracked_project(tmp_path / "a_project_with_a_rather_long_folder_name")
    mark_done(proj, FAKE_TRAIN, {}, {"summary": {"final_mse": 0.0123, "steps": 80, "resumed_from": 0},
                                     "warnings": ["training was cut short by the 5-minute time cap: fit "
                                                  "stopped at step 60 of 80 (set time_budget_min=0 and rerun)"]})
    proj.update_record(FAKE_TRAIN, progress={"fit": 80}, seconds=75.0)
    return proj


def _pages(window, qtbot):
    """(name, show) for every main page; show() brings it up."""
    from studio.stages import REGISTRY

    def stage(name):
        return lambda: window.select_stage(name)

    def viewer():
        window.show_view("viewer")
        qtbot.waitUntil(lambda: window.viewer.last_render is not None, timeout=10000)

    def export_driver():
        window.show_view("export")
        box = window.export_panel.form.editors["source"]
        box.setCurrentIndex(box.findData("driver"))  # with the Drivers list

    pages = [(f"stage_{n}", stage(n)) for n in REGISTRY]
    pages += [("tracking", lambda: window.show_view("tracking")), ("viewer", viewer), ("export", export_driver)]
    return pages


def test_no_clipped_text_at_1000_to_1360_px(window, project, qtbot, screenshot):
    from studio.gui.models_dialog import ModelsDialog
    from studio.model_files import ModelFiles

    window.open_project(project.root)
    problems = []
    for width in WIDTHS[::-1]:
        window.resize(width, 760)
        for name, show in _pages(window, qtbot):
            show()
            qtbot.wait(30)
            page = window.pages.currentWidget()
            if name in ("stage_fake_train", "stage_track", "viewer", "export", "tracking"):
                screenshot(window, f"width_{width}_{name}")
            problems += [f"{width} px {name}: {p}" for p in clipped(window)]
            del page
        dlg = ModelsDialog(window, ModelFiles())
        dlg.resize(min(width - 80, dlg.width()), dlg.height())
        dlg.show()
        qtbot.waitExposed(dlg)
        dlg.layout().activate()     # the labels' word wrap settles after the first paint (a loaded CI machine
        qtbot.wait(30)              # once read one 80 px wide); the pages above wait as long
        screenshot(dlg, f"width_{width}_models_dialog")
        problems += [f"{width} px models dialog: {p}" for p in clipped(dlg)]
        dlg.close()
    assert not problems, "\n".join(problems)
