"""The project folder is deleted while the window has it open: Run and the viewer give an error
dialog (no crash, no traceback), and the window still works (close, open another project)."""
from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")

import studio.gui._qtfix  # noqa: E402,F401  — before any Qt call

from tests.stages.test_nerf import make_project  # noqa: E402


@pytest.fixture
def window(qtbot, qapp, tmp_path, monkeypatch):
    from studio.gui.main_window import MainWindow
    from studio.gui.theme import apply_theme

    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    apply_theme(qapp)
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.is_running():
        win.cancel()
        win.runner.wait(10000)
    win.viewer.shutdown()


def _dialog_text(win) -> str:
    box = getattr(win, "error_dialog", None)
    return (box.text() + " " + box.informativeText()) if box is not None else ""


def test_project_folder_deleted_while_open(window, qtbot, tmp_path):
    proj = make_project(tmp_path / "gone")
    assert window.open_project(proj.root)
    shutil.rmtree(proj.root)

    window.error_dialog = None
    window.select_stage("pivots")
    window.act_run.trigger()
    qtbot.waitUntil(lambda: not window.is_running() and window.error_dialog is not None, timeout=60000)
    text = _dialog_text(window)
    print("run dialog:", text)
    assert "Traceback" not in text and ("no project" in text.lower() or "gone" in text.lower()
                                        or str(proj.root) in text), text
    window.error_dialog.close()

    window.error_dialog = None
    window.act_show_viewer.trigger()
    qtbot.wait(200)
    # the viewer either says so in a dialog or shows its empty state; it must not raise
    assert "Traceback" not in _dialog_text(window)
    print("viewer dialog:", _dialog_text(window))
    if window.error_dialog is not None:
        window.error_dialog.close()

    window.act_close.trigger()
    assert window.pages.currentWidget() is window.welcome
    other = make_project(tmp_path / "other")
    assert window.open_project(other.root)
