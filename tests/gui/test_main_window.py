"""The main window as a new user meets it: welcome, new/open, recent and last project, drop, Models."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from studio.project import Project


def _video(tmp_path) -> Path:
    """Any small file with a video name: drop and "open with" only look at the path."""
    p = tmp_path / "clip.mp4"
    p.write_bytes(b"\x00" * 16)
    return p


def _real_video(tmp_path, name: str = "clip.mp4") -> Path:
    """A real 0.4-second clip (a test pattern, no face): the New project dialog reads the video's header."""
    import subprocess

    from studio.video import ffmpeg_exe

    p = tmp_path / name
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x120:rate=25:duration=0.4", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(p)],
                   check=True)
    return p


def test_welcome_screen(window, screenshot):
    assert window.pages.currentWidget() is window.welcome
    assert not window.sidebar.isVisible()
    assert not window.act_run.isEnabled() and not window.act_cancel.isEnabled()
    screenshot(window, "welcome")


def test_new_project_dialog_creates_and_opens(window, tmp_path, qtbot, screenshot):
    video = _real_video(tmp_path)
    window.welcome.new_btn.click()
    dlg = window.new_dialog
    assert dlg is not None and dlg.isVisible()
    dlg.video.setText(str(video))
    assert dlg.name.text() == "clip"
    dlg.folder.setText(str(tmp_path / "projects"))
    screenshot(dlg, "new_project_dialog")
    dlg.create_btn.click()
    assert window.project is not None and window.project.root == (tmp_path / "projects" / "clip").resolve()
    assert window.sidebar.isVisible() and window.pages.currentWidget() is window.stage_page
    screenshot(window, "project_opened")


def test_new_project_dialog_explains_problems(window, tmp_path):
    dlg = window.new_project()
    dlg.create_btn.click()
    assert dlg.isVisible() and "video" in dlg.problem.text().lower()
    dlg.video.setText(str(tmp_path / "nope.mp4"))
    dlg.create_btn.click()
    assert "no video" in dlg.problem.text().lower()
    dlg.reject()


def test_open_errors_are_dialogs(window, tmp_path):
    assert not window.open_project(tmp_path / "missing")
    assert "no project" in window.error_dialog.text().lower()
    window.error_dialog.close()


def test_new_project_dialog_refuses_what_is_not_a_video_and_makes_nothing(window, tmp_path, screenshot):
    """A text file named .mp4 or a clip cut off in the copy is refused in the dialog, as `avatar-studio new`
    refuses it, before any project folder is made (the window made a project for it, and its Video stage
    failed later). The file's name keeps its case in the message."""
    notes = tmp_path / "notes.mp4"
    notes.write_text("a shopping list, not a video\n" * 20)
    whole = _real_video(tmp_path, "whole.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])   # its index (moov) is at the end
    projects = tmp_path / "projects"
    dlg = window.new_project()
    dlg.folder.setText(str(projects))
    for video, words in ((notes, "notes.mp4 is not a video file that can be read"), (cut, "is incomplete")):
        dlg.video.setText(str(video))
        dlg.create_btn.click()
        assert dlg.isVisible() and words in dlg.problem.text(), dlg.problem.text()
        assert dlg.problem.height() > 0 and dlg.height() >= dlg.layout().totalHeightForWidth(dlg.width())
        assert window.project is None and not projects.exists()
    screenshot(dlg, "new_project_not_a_video")
    (tmp_path / "afile").write_text("x")
    dlg.video.setText(str(whole))
    dlg.folder.setText(str(tmp_path))
    dlg.name.setText("afile")   # a file where the project folder would go: said, no "Unexpected error"
    dlg.create_btn.click()
    assert dlg.isVisible() and "is a file, not a folder" in dlg.problem.text()
    dlg.folder.setText(str(tmp_path / "afile"))
    dlg.name.setText("p")
    dlg.create_btn.click()
    assert dlg.isVisible() and "is a file, not a folder" in dlg.problem.text()
    dlg.reject()


def test_error_dialogs_keep_a_file_name_as_it_is(window):
    from studio.gui.dialogs import error_box, sentence
    from studio.gui.workers import Failure

    box = error_box(window, "t", Failure("notes.mp4 is not a video file", "export the clip again"))
    assert box.text() == "notes.mp4 is not a video file." and box.informativeText() == "Export the clip again."
    box.close()
    assert sentence("stage 'pti' needs 'pivots' first") == "Stage 'pti' needs 'pivots' first."
    assert sentence("/tmp/x is not a project") == "/tmp/x is not a project."


def test_opening_a_folder_that_is_not_a_project_says_what_to_do_in_the_window(window, tmp_path):
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "a.jpg").write_bytes(b"x")
    assert not window.open_project(tmp_path / "holiday")
    box = window.error_dialog
    assert "is not an avatar project" in box.text()
    assert "avatar-studio" not in box.informativeText() and "New" in box.informativeText()
    box.close()


def test_a_failed_stage_is_said_on_the_status_line(window, tmp_path, qtbot, fake_stages):
    """The status line said the stage's last progress ("… 0% starting") after it had failed."""
    from gui_fakes import FAKE_FAIL

    proj = Project.create(tmp_path / "fails")
    window.open_project(proj.root)
    window.select_stage(FAKE_FAIL)
    window.run_selected()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=30000)
    assert window.statusBar().currentMessage() == "Fake failure stopped: the video has no face in it"
    window.error_dialog.close()


def test_recent_projects_and_last_project_reopened(qtbot, themed, tmp_path):
    from studio.gui.app import open_initial
    from studio.gui.main_window import MainWindow

    a = Project.create(tmp_path / "a")
    b = Project.create(tmp_path / "b")
    w1 = MainWindow()
    qtbot.addWidget(w1)
    w1.open_project(a.root)
    w1.open_project(b.root)
    w1.close()
    w2 = MainWindow()
    qtbot.addWidget(w2)
    assert w2.settings.recent[:2] == [str(b.root), str(a.root)]
    open_initial(w2, project=None, new=None, fresh=False)
    assert w2.project is not None and w2.project.root == b.root, "the last project is reopened on start"
    assert [a_.text() for a_ in w2.recent_menu.actions()][:2] == [str(b.root), str(a.root)]
    w2.set_project(None)
    assert w2.welcome.recent.count() == 2
    w2.welcome.recent.item(1).setSelected(True)
    w2.welcome.recent.itemClicked.emit(w2.welcome.recent.item(1))
    assert w2.project.root == a.root
    w2.viewer.shutdown()
    w1.viewer.shutdown()


def _drop(window, path: Path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.dragEnterEvent(enter)
    drop = QDropEvent(QPoint(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.dropEvent(drop)
    return enter.isAccepted()


def test_drop_a_video_or_a_project(window, tmp_path):
    video = _video(tmp_path)
    assert _drop(window, video)
    assert window.new_dialog.isVisible() and window.new_dialog.video.text() == str(video)
    window.new_dialog.reject()
    proj = Project.create(tmp_path / "dropped")
    assert _drop(window, proj.root)
    assert window.project is not None and window.project.root == proj.root
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    assert not _drop(window, txt)
    camcorder = tmp_path / "00001.MTS"   # a camcorder's AVCHD clip, as its card names it
    camcorder.write_bytes(b"\x00" * 16)
    assert _drop(window, camcorder)
    assert window.new_dialog.isVisible() and window.new_dialog.video.text() == str(camcorder)
    window.new_dialog.reject()


def test_every_toolbar_and_page_button_once(window, tmp_path, qtbot, fake_stages, screenshot):
    """Press each button of the main screens once with a project open; nothing may raise."""
    from gui_fakes import FAKE_TRAIN

    proj = Project.create(tmp_path / "buttons")
    window.open_project(proj.root)
    window.select_stage(FAKE_TRAIN)
    window.stage_page.forms[FAKE_TRAIN].editors["steps"].setValue(400)
    window.act_run.trigger()
    qtbot.waitUntil(lambda: window.act_pause.isEnabled(), timeout=5000)
    window.act_pause.trigger()
    window.act_resume.trigger()
    window.act_cancel.trigger()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=20000)
    window.stage_page.reset_btn.click()
    d = window.stage_page.dashboard
    for box in (d.raw_box, d.smooth_box, d.log_box):
        box.click()
    window.stage_page.form(FAKE_TRAIN).advanced_box.setChecked(True)
    screenshot(window, "stage_settings_advanced")
    window.act_show_tracking.trigger()
    assert window.pages.currentWidget() is window.tracking_view
    window.act_show_viewer.trigger()
    assert window.pages.currentWidget() is window.viewer
    window.viewer.reset_btn.click()
    window.about()
    window.about_box.close()
    window.act_models.trigger()
    window.models_dialog.close()
    window.act_run_all.trigger()  # runs every stage not done; cancel it straight away
    window.act_cancel.trigger()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=30000)
    window.act_close.trigger()
    assert window.pages.currentWidget() is window.welcome


def test_a_video_given_as_the_project_starts_a_new_project(window, tmp_path):
    """The desktop entry opens videos (`avatar-studio gui %f`, MimeType video/mp4): a video passed where a
    project goes gets the New project dialog with that video, not "Cannot open the project"."""
    from studio.gui.app import open_initial

    video = _video(tmp_path)
    open_initial(window, project=str(video), new=None, fresh=True)
    dlg = window.new_dialog
    assert dlg is not None and dlg.isVisible() and dlg.video.text() == str(video.resolve())
    assert dlg.name.text() == "clip" and window.project is None
    dlg.close()


def test_first_start_fits_the_screen_and_a_saved_size_comes_back(qtbot, themed, monkeypatch):
    """No saved window size: the window is no bigger than the screen leaves (the offscreen screen is
    800 × 800, smaller than the 1360 × 860 the window asks for), but never under its minimum; once
    closed, the next window comes back at the size the user left it."""
    from studio.gui.main_window import MainWindow

    monkeypatch.setenv("AVATAR_STUDIO_SPEED_PROBE", "0")
    win = MainWindow()
    qtbot.addWidget(win)
    room = win.screen().availableGeometry()
    assert room.height() < 860, "this test needs a screen lower than the window's default"
    assert win.height() <= room.height() - 40 or win.height() == win.minimumHeight()
    assert win.width() == max(win.minimumWidth(), min(1360, room.width()))
    first = win.height()
    win.resize(1000, 700)                     # within the screen: Qt fits a restored window to the screen
    assert first != 700
    win.close()
    again = MainWindow()
    qtbot.addWidget(again)
    assert (again.width(), again.height()) == (1000, 700)
    again.close()


def test_a_stage_that_cannot_run_without_its_files_says_it_needs_them(window, tmp_path):
    """The FLAME fit cannot run at all without FLAME's files: its page says so, not that it "works better" with
    them; a stage whose files are optional (PTI: the LPIPS backbone) keeps the milder words."""
    proj = Project.create(tmp_path / "files")
    window.open_project(proj.root)
    window.select_stage("flame")
    w = window.stage_page.warning
    assert not w.isHidden()
    assert w.text().startswith("This stage cannot run without files that are missing: ") and "FLAME" in w.text()
    window.select_stage("pti")
    assert not w.isHidden() and w.text().startswith("This stage works better with optional files"), w.text()
    assert "LPIPS" in w.text()


def test_reset_to_preset_on_a_trained_stage_says_it_trains_again(window, tmp_path, fake_stages):
    """A stage trained with settings of its own, then "Reset to preset": the form shows the preset's settings, the
    stage list shows it stale (it trains again on the next run) and the status bar says so."""
    from gui_fakes import FAKE_TRAIN

    from studio.pipeline import run_stage, set_stage_config, stage_state

    proj = Project.create(tmp_path / "reset")
    set_stage_config(proj, FAKE_TRAIN, {"steps": "3"})
    run_stage(proj, FAKE_TRAIN)
    window.open_project(proj.root)
    window.select_stage(FAKE_TRAIN)
    assert window.stage_page.forms[FAKE_TRAIN].editors["steps"].value() == 3
    window.stage_page.reset_btn.click()
    assert window.stage_page.forms[FAKE_TRAIN].editors["steps"].value() == 60
    assert stage_state(Project.open(proj.root), FAKE_TRAIN) == "stale"
    msg = window.statusBar().currentMessage()
    assert "back on the preview preset's settings" in msg and "train again" in msg, msg
    assert msg.startswith("Fake training: "), "the stage as the stage list names it, not its code name"


def test_a_run_names_its_stage_as_the_stage_list_does(window, tmp_path, qtbot, fake_stages):
    """The run's title said "Running: Subject prior", then "Paused: prior" and "Cancelled: prior": every line about
    a run names the stage by its title, as the stage list does."""
    from gui_fakes import FAKE_TRAIN

    proj = Project.create(tmp_path / "titles")
    window.open_project(proj.root)
    window.select_stage(FAKE_TRAIN)
    window.stage_page.forms[FAKE_TRAIN].editors["steps"].setValue(400)
    window.act_run.trigger()
    d = window.stage_page.dashboard
    qtbot.waitUntil(lambda: window.act_pause.isEnabled(), timeout=5000)
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith("Fake training · "), timeout=10000)
    window.act_pause.trigger()
    assert d.title.full_text() == "Paused: Fake training"
    window.act_resume.trigger()
    assert d.title.full_text() == "Running: Fake training"
    window.act_cancel.trigger()
    assert d.title.full_text() == "Cancelling Fake training…"
    qtbot.waitUntil(lambda: not window.is_running(), timeout=20000)
    assert d.title.full_text() == "Cancelled: Fake training"
    assert window.statusBar().currentMessage() == "Cancelled Fake training. Run it again to resume."


def test_a_video_without_a_face_offers_to_remove_the_project(window, tmp_path, qtbot, screenshot):
    """Tracking a video that shows no face stops with the reason and offers to remove the project, in which
    nothing can be trained (`avatar-studio new` removes it itself); Keep is the default and keeps it."""
    video = _real_video(tmp_path)
    for keep in (True, False):
        proj = Project.create(tmp_path / f"noface_{keep}", source_video=video)
        assert window.open_project(proj.root)
        window.run_stage("track")                  # ingest, then the tracking
        qtbot.waitUntil(lambda: not window.is_running(), timeout=120000)
        box = window.error_dialog
        assert "No face was found" in box.text() and str(proj.root) in box.informativeText()
        assert box.defaultButton() is box.keep_button and not box.detailedText()
        if keep:
            screenshot(box, "no_face_dialog")
            box.keep_button.click()
            assert window.project is not None and (proj.root / "project.json").is_file()
            continue
        box.remove_button.click()
        assert not proj.root.exists() and window.project is None
        assert window.pages.currentWidget() is window.welcome and str(proj.root) not in window.settings.recent
        assert "Removed the project" in window.statusBar().currentMessage()
