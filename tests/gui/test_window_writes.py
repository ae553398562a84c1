"""What the window writes into a project, and when: settings changes go in under the project's lock and on the
manifest as it is on disk (a stage process or another program writes it too), leaving a page writes nothing,
closing the window while a stage or an export runs asks first and leaves the stage "cancelled", and a trained
avatar whose settings changed is called out of date on the Viewer and Export pages, not "not trained"."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gui_fakes import FAKE_TRAIN, FakeTrackedEngine, synthetic_tracked_project
from studio.project import Project

REPO = Path(__file__).resolve().parents[2]
HOLD = textwrap.dedent("""
    import sys, time
    from studio.lock import project_lock
    with project_lock(sys.argv[1], "avatar-studio run-stage P prior"):
        print("held", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def held(tmp_path):
    """A project that another process works on (it holds the project's lock, as `avatar-studio run` does)."""
    proj = Project.create(tmp_path / "busy")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(proj.root)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, start_new_session=True)
    assert holder.stdout.readline().strip() == "held"
    yield proj
    holder.kill()
    holder.wait()


def load_fake(project):
    return FakeTrackedEngine("fake", size=64, delay=0.0)


def load_slow(project):
    return FakeTrackedEngine("fake", size=96, delay=0.12)


def use_engine(monkeypatch, loader):
    from studio.engines import ENGINES, EngineSpec

    monkeypatch.setitem(ENGINES, "fake", EngineSpec(name="fake", title="fake", short="fake", stages=(), loader=loader))


def test_a_setting_is_not_written_while_another_process_works_on_the_project(window, held, qtbot, fake_stages):
    """`avatar-studio config --set` refuses while the project is busy (its write would be undone, or undo the
    other's records); the window wrote anyway and said nothing."""
    manifest = (held.root / "project.json").read_bytes()
    assert window.open_project(held.root)
    window.select_stage(FAKE_TRAIN)
    window.stage_page.forms[FAKE_TRAIN].editors["steps"].setValue(77)
    window.stage_page.commit_edits()
    text = window.statusBar().currentMessage()
    assert text.startswith("Not saved: the project busy is busy: process") and "wait for it to finish" in text
    assert window.stage_page.forms[FAKE_TRAIN].editors["steps"].value() != 77, "the form shows what is saved"
    window.preset_box.setCurrentIndex(window.preset_box.findData("quality"))
    assert window.statusBar().currentMessage().startswith("Not saved")
    assert window.preset_box.currentData() == "preview"
    window.device_box.setCurrentIndex(window.device_box.findData("cpu"))
    assert window.device_box.currentData() == "auto"
    assert (held.root / "project.json").read_bytes() == manifest


def test_leaving_a_page_writes_nothing_and_a_change_keeps_what_others_wrote(window, tmp_path, fake_stages):
    """Every page change handed the stage's form over and rewrote project.json from the window's copy, undoing
    what a stage process had written since (closing the window right after a stage ended turned its record
    back to "running"). Now an unchanged form writes nothing, and a change is made on the manifest on disk."""
    proj = Project.create(tmp_path / "p")
    assert window.open_project(proj.root)
    window.select_stage(FAKE_TRAIN)
    other = Project.open(proj.root)   # another writer, e.g. the stage process
    other.update_record("ingest", status="failed", error="written by the stage process")
    window.show_view("viewer")
    assert Project.open(proj.root).record("ingest").get("error") == "written by the stage process"
    window.select_stage(FAKE_TRAIN)
    window.stage_page.forms[FAKE_TRAIN].editors["steps"].setValue(77)
    window.stage_page.commit_edits()
    saved = Project.open(proj.root)
    assert saved.record(FAKE_TRAIN)["config"]["steps"] == 77
    assert saved.record("ingest").get("error") == "written by the stage process"


def test_closing_while_a_stage_runs_asks_and_leaves_it_cancelled(qtbot, themed, tmp_path, fake_stages, monkeypatch,
                                                                 screenshot):
    from studio.gui.main_window import MainWindow
    from studio.pipeline import stage_state

    monkeypatch.setenv("AVATAR_STUDIO_SPEED_PROBE", "0")
    proj = Project.create(tmp_path / "p")
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.open_project(proj.root)
    win.select_stage(FAKE_TRAIN)
    win.stage_page.forms[FAKE_TRAIN].editors["steps"].setValue(3000)
    win.run_selected()
    dash = win.stage_page.dashboard
    qtbot.waitUntil(lambda: dash.last_batch is not None and dash.last_batch.step > 3, timeout=20000)
    win.close()
    box = win.close_dialog
    assert win.isVisible() and box is not None and box.isVisible(), "closed without asking"
    assert box.text() == "Fake training is still running." and "Nothing is lost" in box.informativeText()
    screenshot(box, "close_while_a_stage_runs")
    box.keep_button.click()
    qtbot.wait(300)
    assert win.isVisible() and win.is_running() and not win.runner.control.cancelled
    win.close()
    win.close_dialog.stop_button.click()
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=30000)
    assert win.runner.outcome == "cancelled"
    assert stage_state(Project.open(proj.root), FAKE_TRAIN) == "cancelled"   # was "interrupted"


def test_closing_while_an_export_runs_asks(qtbot, themed, tmp_path, monkeypatch):
    from studio.gui.main_window import MainWindow

    use_engine(monkeypatch, load_slow)
    monkeypatch.setenv("AVATAR_STUDIO_SPEED_PROBE", "0")
    proj = synthetic_tracked_project(tmp_path / "synthetic")
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.open_project(proj.root)
    win.show_view("export")
    panel = win.export_panel
    f = panel.form.editors
    f["source"].setCurrentIndex(f["source"].findData("turntable"))
    f["duration"].setValue(8.0)
    f["fps"].setText("25")
    out = tmp_path / "out" / "clip.mp4"
    panel.set_output(out)
    panel.start()
    qtbot.waitUntil(lambda: "frames" in panel.status.text(), timeout=30000)
    win.close()
    box = win.close_dialog
    assert win.isVisible() and box.text() == "The export is still running."
    box.stop_button.click()
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=30000)
    assert panel.runner.outcome == "cancelled" and not out.exists()


def test_an_avatar_whose_settings_changed_is_out_of_date_on_the_viewer_and_export_pages(window, tmp_path, qtbot,
                                                                                      monkeypatch, screenshot):
    """Changing a trained stage's setting in the window left the Viewer and Export pages offering the avatar
    (an export then rendered the out-of-date one); a project opened that way said "No trained avatar yet"."""
    use_engine(monkeypatch, load_fake)
    proj = synthetic_tracked_project(tmp_path / "synthetic")
    assert window.open_project(proj.root)
    assert window.viewer.engines() == ["fake"]
    window.select_stage("track")
    form = window.stage_page.forms["track"]
    box = form.editors["min_confidence"]
    box.setValue(box.value() + 0.1)
    window.stage_page.commit_edits()
    assert window.session.state("track") == "stale"
    window.show_view("viewer")
    said = window.viewer.render_view.text()
    assert window.viewer.engines() == [] and "avatar in project synthetic is out of date: Tracking must train again" \
        in said and "Run all" in said and "No trained avatar" not in said, said
    screenshot(window, "viewer_out_of_date")
    window.show_view("export")
    panel = window.export_panel
    assert panel.notice.isVisible() and "out of date" in panel.notice.text()
    assert panel.engines() == [] and not panel.export_btn.isEnabled()
    assert panel.start() is None and "out of date" in panel.error_dialog.text()
    panel.error_dialog.close()
    screenshot(window, "export_out_of_date")
    window.set_project(None)
    assert window.open_project(proj.root)   # opened that way: the same words
    window.show_view("viewer")
    assert "out of date" in window.viewer.render_view.text()


def test_a_settings_change_that_could_not_be_read_back_is_said(window, tmp_path, fake_stages):
    """The manifest damaged on disk while open: the change is not saved, and the status line says why."""
    proj = Project.create(tmp_path / "p")
    assert window.open_project(proj.root)
    window.select_stage(FAKE_TRAIN)
    (proj.root / "project.json").write_text('{"stages": 5}')
    window.stage_page.forms[FAKE_TRAIN].editors["steps"].setValue(77)
    window.stage_page.commit_edits()
    assert window.statusBar().currentMessage().startswith("Not saved: the project manifest")
    assert json.loads((proj.root / "project.json").read_text()) == {"stages": 5}
