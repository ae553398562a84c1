"""Running a training stage from the window: live dashboard, pause/resume/cancel, errors, responsiveness.

The stage is a small fake (tests/gui/gui_fakes.py) that does real torch work in its worker and
yields losses and previews every step, registered into the same REGISTRY real stages use.
"""
from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMessageBox

from gui_fakes import FAKE_BUG, FAKE_FAIL, FAKE_TRAIN
from studio.project import Project


@pytest.fixture
def project(tmp_path, fake_stages):
    return Project.create(tmp_path / "proj")


def test_stage_list_comes_from_the_registry(window, project):
    from studio.stages import REGISTRY

    window.open_project(project.root)
    names = [window.stage_list.item(i).data(256) for i in range(window.stage_list.count())]
    assert names == list(REGISTRY)
    assert FAKE_TRAIN in names


def test_run_shows_live_curves_and_previews_then_finishes(window, project, qtbot, screenshot):
    window.open_project(project.root)
    window.select_stage(FAKE_TRAIN)
    form = window.stage_page.forms[FAKE_TRAIN]
    form.editors["steps"].setValue(80)
    window.stage_page.run_btn.click()
    dash = window.stage_page.dashboard
    assert window.is_running()
    # previews refresh while it runs (not only at the end)
    qtbot.waitUntil(lambda: dash.preview_count >= 2 and window.runner.isRunning(), timeout=10000)
    qtbot.waitUntil(lambda: len(dash.series.get("mse", ([], []))[1]) >= 20, timeout=10000)
    assert "it/s" in dash.eta_text() and "ETA" in dash.eta_text()
    screenshot(window, "training_running")
    qtbot.waitUntil(lambda: not window.is_running(), timeout=20000)
    assert window.runner.outcome == "done"
    xs, ys = dash.series["mse"]
    assert len(ys) == 80, "every loss value reaches the curves, none dropped by the throttling"
    assert ys[-1] < ys[0]
    assert window.stage_status(FAKE_TRAIN) == "done"
    assert Project.open(project.root).result(FAKE_TRAIN)["summary"]["steps"] == 80
    dash._draw_curves()
    screenshot(window, "training_done")


def test_pause_resume_cancel(window, project, qtbot):
    window.open_project(project.root)
    window.select_stage(FAKE_TRAIN)
    window.stage_page.forms[FAKE_TRAIN].editors["steps"].setValue(2000)
    window.run_selected()
    dash = window.stage_page.dashboard
    qtbot.waitUntil(lambda: dash.last_batch is not None and dash.last_batch.step > 3, timeout=10000)
    dash.pause_btn.click()
    assert window.runner.paused and dash.resume_btn.isEnabled() and not dash.pause_btn.isEnabled()
    qtbot.wait(300)
    step = dash.last_batch.step
    qtbot.wait(400)
    assert dash.last_batch.step <= step + 1, "a paused stage does not advance"
    dash.resume_btn.click()
    qtbot.waitUntil(lambda: dash.last_batch.step > step + 3, timeout=10000)
    dash.cancel_btn.click()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=10000)
    assert window.runner.outcome == "cancelled"
    assert window.stage_status(FAKE_TRAIN) == "cancelled"
    assert window.error_dialog is None, "a cancel is not an error"
    assert window.act_run.isEnabled() and not window.act_cancel.isEnabled()


def test_gui_thread_stays_responsive_while_training(window, project, qtbot):
    """The longest stall of the GUI thread, probed with a 5 ms QTimer, while torch trains in the worker."""
    window.open_project(project.root)
    window.select_stage(FAKE_TRAIN)
    f = window.stage_page.forms[FAKE_TRAIN]
    f.editors["steps"].setValue(150)
    f.editors["step_seconds"].setValue(0.0)      # back-to-back torch steps: the GIL is busy
    f.editors["size"].setCurrentIndex(2)         # 128 px previews
    t0 = time.perf_counter()
    gaps, last = [], [t0]

    def tick():
        now = time.perf_counter()
        gaps.append((now - last[0], now - t0))
        last[0] = now

    probe = QTimer()
    probe.setInterval(5)
    probe.timeout.connect(tick)
    probe.start()
    qtbot.wait(100)
    gaps.clear()
    t0 = last[0] = time.perf_counter()
    window.run_selected()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=60000)
    probe.stop()
    assert window.runner.outcome == "done"
    worst, when = max(gaps)
    print(f"GUI thread: {len(gaps)} ticks over {time.perf_counter() - t0:.1f} s, longest stall "
          f"{worst * 1000:.1f} ms at {when:.2f} s; previews shown {window.stage_page.dashboard.preview_count}; "
          f"top: {[(round(g * 1000), round(t, 2)) for g, t in sorted(gaps, reverse=True)[:4]]}")
    # one hiccup up to 250 ms is the machine's, not the app's: with the suite's second test process on the other
    # core of a 2-core machine, a single stall of 103–120 ms came up in two CI runs of 12-07/08 (28–31 ms when run
    # alone); a worker holding the GUI thread (the GIL through a long step, previews drawn on it) stalls it again
    # and again, which the second-longest stall catches
    second = sorted(g for g, _ in gaps)[-2]
    assert worst < 0.250 and second < 0.100, \
        f"the GUI thread stalled for {worst * 1000:.0f} ms (next longest {second * 1000:.0f} ms)"


def test_studio_error_becomes_a_readable_dialog(window, project, qtbot, screenshot):
    window.open_project(project.root)
    window.run_stage(FAKE_FAIL)
    qtbot.waitUntil(lambda: window.error_dialog is not None, timeout=10000)
    box: QMessageBox = window.error_dialog
    assert "no face" in box.text() and "choose a video" in box.informativeText().lower()
    assert not box.detailedText()
    screenshot(box, "error_dialog")
    box.close()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=5000)
    assert window.stage_status(FAKE_FAIL) == "failed"


def test_unexpected_exception_becomes_a_dialog_not_a_crash(window, project, qtbot):
    window.open_project(project.root)
    window.run_stage(FAKE_BUG)
    qtbot.waitUntil(lambda: window.error_dialog is not None, timeout=10000)
    box = window.error_dialog
    assert "KeyError" in box.text()
    assert "logs/" in box.informativeText()  # run_stage keeps the traceback in the project
    box.close()
    assert window.isVisible()


def test_settings_edits_are_saved_and_presets_apply(window, project, qtbot):
    from studio.pipeline import stage_config

    window.open_project(project.root)
    window.select_stage(FAKE_TRAIN)
    form = window.stage_page.forms[FAKE_TRAIN]
    form.editors["learning_rate"].setValue(0.01)
    window.stage_page.commit_edits()
    assert stage_config(Project.open(project.root), FAKE_TRAIN).learning_rate == pytest.approx(0.01)
    window.preset_box.setCurrentIndex(window.preset_box.findData("quality"))
    assert Project.open(project.root).preset == "quality"
    assert form.values()["steps"] == 400, "a stage not run yet follows the new preset"
    form.editors["steps"].setValue(5)
    window.stage_page.commit_edits()
    window.stage_page.reset_btn.click()
    assert form.values()["steps"] == 400
    # device chooser: GPU offered only when CUDA is found (never on this CPU machine)
    qtbot.waitUntil(lambda: "none found" in window.device_box.itemText(2) or window.gpu_available, timeout=30000)
    window.device_box.setCurrentIndex(1)
    assert Project.open(project.root).device == "cpu"


def test_cli_is_refused_while_the_window_trains(window, project, qtbot):
    """GUI + CLI on one project: the window's worker holds the project; the CLI says it is busy."""
    import subprocess
    import sys

    window.open_project(project.root)
    window.select_stage(FAKE_TRAIN)
    window.stage_page.forms[FAKE_TRAIN].editors["steps"].setValue(5000)
    window.run_selected()
    dash = window.stage_page.dashboard
    qtbot.waitUntil(lambda: dash.last_batch is not None and dash.last_batch.step > 3, timeout=20000)
    cli = subprocess.run([sys.executable, "-m", "studio.cli", "run-stage", str(project.root), "ingest"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 2 and "busy" in cli.stderr, cli.stdout + cli.stderr
    window.cancel()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=20000)


def test_killed_worker_is_interrupted_then_resumes(window, project, qtbot):
    """The training process dies (killed): the stage shows "interrupted", and Run resumes it from
    its last checkpoint instead of starting over."""
    import os
    import signal

    window.open_project(project.root)
    window.select_stage(FAKE_TRAIN)
    window.stage_page.forms[FAKE_TRAIN].editors["steps"].setValue(300)
    window.run_selected()
    dash = window.stage_page.dashboard
    qtbot.waitUntil(lambda: dash.last_batch is not None and dash.last_batch.step > 60, timeout=30000)
    os.kill(window.runner.process.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: not window.is_running(), timeout=20000)
    if window.error_dialog is not None:
        window.error_dialog.close()
    window.reload_manifest()
    assert window.stage_status(FAKE_TRAIN) == "interrupted"
    assert window.stage_page.run_btn.text() == "Resume"
    window.set_project(None)                         # reopened (as after the whole window was killed): the
    window.open_project(project.root)                # interrupted stage is shown, not the first pending one
    assert window.selected_stage() == FAKE_TRAIN and window.stage_page.stage == FAKE_TRAIN
    assert window.pages.currentWidget() is window.stage_page
    assert "interrupted at" in window.stage_page.status.text()
    assert window.stage_page.run_btn.text() == "Resume"
    done_before = sum((Project.open(project.root).record(FAKE_TRAIN).get("progress") or {}).values())
    assert done_before > 0
    window.run_selected()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=60000)
    assert window.runner.outcome == "done"
    assert window.stage_status(FAKE_TRAIN) == "done"
    summary = Project.open(project.root).result(FAKE_TRAIN)["summary"]
    assert summary["steps"] == 300 and 0 < summary["resumed_from"] <= done_before
    # the curves continue at the checkpointed step (each loss carries its step across the process), the
    # steps before it read from the stage's loss history, which ends where the checkpoint did
    dash = window.stage_page.dashboard
    xs, _ = dash.series["mse"]
    assert xs == list(range(1, 301)) and dash.history_points == summary["resumed_from"]
