"""End to end on a real video from ../shared: create the project through the window, track it,
look at the curves, start a real training stage and cancel it. Skips without ../shared."""
from __future__ import annotations

import pytest

from conftest import shared_file


def test_project_from_shared_video_track_curves_train_cancel(window, tmp_path, qtbot, screenshot):
    from studio.stages import REGISTRY

    video = shared_file("data/videos/subject_turns_d3.mp4")
    if "track" not in REGISTRY:
        pytest.skip("needs the track stage")
    dlg = window.new_project(video=str(video))
    dlg.folder.setText(str(tmp_path))
    dlg.create_btn.click()
    assert window.project is not None and window.project.name == "subject_turns_d3"

    # tracking (ingest runs first on its own): Run on the Tracking stage's page
    window.select_stage("track")
    window.stage_page.run_btn.click()
    assert window.runner.stages == ["ingest", "track"]
    qtbot.waitUntil(lambda: window.stage_page.dashboard.last_batch is not None, timeout=60000)
    screenshot(window, "shared_tracking_running")
    qtbot.waitUntil(lambda: not window.is_running(), timeout=170000)
    assert window.runner.outcome == "done", getattr(window.error_dialog, "text", lambda: "")()
    assert window.stage_status("ingest") == "done" and window.stage_status("track") == "done"
    window.select_stage("track")
    assert "frames" in window.stage_page.summary.text()
    screenshot(window, "shared_track_done")

    window.show_view("tracking")
    tv = window.tracking_view
    qtbot.waitUntil(lambda: tv.data is not None, timeout=30000)
    assert tv.data.n_frames > 300 and len(tv.pose_plot.plotItem.listDataItems()) >= 3
    assert tv.sheet_view.image() is not None  # the stage's own contact sheet
    tv.set_frame(100)
    screenshot(window, "shared_tracking_curves")

    # a real training stage: start it, see it running, cancel it
    # (not `flame`: it needs FLAME's files, which this machine does not have)
    training = [n for n, s in REGISTRY.items() if s.trains and n != "flame" and
                all(window.stage_status(d) == "done" for d in s.depends_on)]
    if not training:
        pytest.skip("no training stage whose inputs are ready is registered yet")
    name = training[0]
    window.select_stage(name)
    window.stage_page.run_btn.click()
    qtbot.waitUntil(lambda: window.runner.current == name, timeout=30000)
    qtbot.waitUntil(lambda: window.stage_page.dashboard.last_batch is not None or not window.is_running(),
                    timeout=90000)
    screenshot(window, f"shared_{name}_running")
    window.act_cancel.trigger()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=90000)
    assert window.runner.outcome in ("cancelled", "done"), getattr(window.error_dialog, "text", lambda: "")()
    assert window.stage_status(name) in ("cancelled", "done")
