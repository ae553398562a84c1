"""The project folder is deleted (or moved) while the window has it open: the window notices at
once (a watcher on the folder) and shows the "project folder is gone" dialog, which says what
happened and what to do; Run, the viewer and the other actions on the project show it again
instead of failing; a stage running there is stopped; Close project in the dialog closes it, and
the window still works (open another project). No traceback anywhere."""
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


def _assert_gone_dialog(window, root) -> str:
    box = window.error_dialog
    assert box is not None and box is window.gone_dialog, "no project-gone dialog"
    assert box.isVisible() and box.windowTitle() == "The project folder is gone"
    text = _dialog_text(window)
    assert "Traceback" not in text
    assert f"The project folder {root} is gone" in text, text  # what happened, and where
    assert "open the folder from its new place" in text and "make a new project from the video" in text, text
    assert box.close_button.text() == "Close project"
    return text


def test_project_folder_deleted_while_open(window, qtbot, tmp_path):
    proj = make_project(tmp_path / "gone")
    assert window.open_project(proj.root)
    window.select_stage("pivots")
    shutil.rmtree(proj.root)
    # noticed without any action: the watcher on the folder
    qtbot.waitUntil(lambda: window.gone_dialog is not None, timeout=10000)
    print("dialog:", _assert_gone_dialog(window, proj.root))
    assert "(folder gone)" in window.windowTitle()
    window.gone_dialog.close()
    qtbot.waitUntil(lambda: window.gone_dialog is None)

    # Run: the same dialog again, and nothing is started
    window.error_dialog = None
    window.act_run.trigger()
    assert window.runner is None and not window.is_running()
    _assert_gone_dialog(window, proj.root)
    window.error_dialog.close()
    qtbot.waitUntil(lambda: window.gone_dialog is None)

    # the viewer: the dialog, not an empty page or a traceback
    window.error_dialog = None
    window.act_show_viewer.trigger()
    _assert_gone_dialog(window, proj.root)
    # while it is open, further actions raise the same dialog instead of stacking new ones
    box = window.gone_dialog
    window.act_show_export.trigger()
    window.act_run_all.trigger()
    assert window.gone_dialog is box and window.error_dialog is box

    # Close project in the dialog closes it; the window opens another project
    box.close_button.click()
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.welcome, timeout=5000)
    assert window.project is None and window.gone_dialog is None and window.windowTitle() == "Avatar Studio"
    other = make_project(tmp_path / "other")
    assert window.open_project(other.root)
    qtbot.wait(300)
    assert window.gone_dialog is None  # the new project is there: nothing to say
    window.act_show_viewer.trigger()
    assert window.pages.currentWidget() is window.viewer and window.gone_dialog is None


def test_project_folder_moved_while_the_viewer_is_shown(window, qtbot, tmp_path):
    proj = make_project(tmp_path / "before")
    assert window.open_project(proj.root)
    window.act_show_viewer.trigger()
    assert window.pages.currentWidget() is window.viewer
    proj.root.rename(tmp_path / "after")
    qtbot.waitUntil(lambda: window.gone_dialog is not None, timeout=10000)
    _assert_gone_dialog(window, proj.root)
    # Keep the window: the pages stay; the next action on the project says it again
    window.gone_dialog.keep_button.click()
    qtbot.waitUntil(lambda: window.gone_dialog is None)
    assert window.project is not None
    window.select_stage("track")
    _assert_gone_dialog(window, proj.root)
    window.gone_dialog.close()
    # opening the folder where it went works as usual
    assert window.open_project(tmp_path / "after")
    assert window.gone_dialog is None and window.project.root == (tmp_path / "after").resolve()


def test_project_folder_deleted_while_a_stage_runs(window, qtbot, tmp_path):
    proj = make_project(tmp_path / "running")
    assert window.open_project(proj.root)
    window.select_stage("pivots")
    window.act_run.trigger()
    assert window.is_running()
    shutil.rmtree(proj.root)
    qtbot.waitUntil(lambda: window.gone_dialog is not None, timeout=10000)
    qtbot.waitUntil(lambda: not window.is_running(), timeout=60000)
    qtbot.wait(200)
    # the stage stopped (cancelled, or failed for want of its folder): the dialog says why, and
    # no second "stage stopped" error replaced it
    assert window.runner.outcome in ("cancelled", "failed", "done")
    _assert_gone_dialog(window, proj.root)
    window.gone_dialog.close_button.click()
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.welcome, timeout=10000)
