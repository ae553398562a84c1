"""The run page's dashboard outside a live run: a reopened project shows each stage's last run
(outcome, steps, time, losses) read from the project, and a resumed run's curves continue at the
checkpointed step with the earlier steps read from the loss log when one is kept."""
from __future__ import annotations

import json

import pytest

from gui_fakes import FAKE_TRAIN, mark_done
from studio.project import Project


@pytest.fixture
def trained(tmp_path, fake_stages):
    """A project whose fake training stage finished earlier (80 steps in 75 s, final mse 0.0123)."""
    proj = Project.create(tmp_path / "proj")
    mark_done(proj, FAKE_TRAIN, {}, {"summary": {"final_mse": 0.0123, "steps": 80, "resumed_from": 0}})
    proj.update_record(FAKE_TRAIN, progress={"fit": 80}, seconds=75.0, finished="2026-12-01T10:23:45+00:00")
    return proj


def _write_log(path, stage, part, steps, base=1.0):
    with open(path, "a", encoding="utf-8") as f:
        for s in steps:
            f.write(json.dumps({"stage": stage, "part": part, "step": s, "processes": 1,
                                "losses": {"mse": base / s, "l1": (base / s) ** 0.5}}) + "\n")


def test_reopened_project_shows_the_last_run(window, trained, screenshot):
    window.open_project(trained.root)
    window.select_stage(FAKE_TRAIN)
    d = window.stage_page.dashboard
    assert d.title.full_text().startswith("Last run: finished"), d.title.full_text()
    assert "2026-12-01" in d.title.full_text()
    assert "fit 80" in d.stats.text() and "1:15" in d.stats.text(), d.stats.text()
    assert "final mse 0.0123" in d.message.full_text()
    assert d.bar.value() == 1000 and d.bar.text() == "done"
    screenshot(window, "stage_last_run")
    # a stage never run says so (its bar too: it said "done", the stage shown before), and going back shows the
    # recorded run again
    window.select_stage("ingest")
    assert d.title.full_text() == "No run of this stage yet"
    assert d.bar.value() == 0 and d.bar.text() == "not run yet", d.bar.text()
    window.select_stage(FAKE_TRAIN)
    assert "fit 80" in d.stats.text() and d.bar.text() == "done"


def test_last_run_curves_come_from_the_loss_log(window, trained, tmp_path, monkeypatch):
    log = tmp_path / "losses.jsonl"
    _write_log(log, "other", "fit", range(1, 30))          # another stage's rows are not shown
    _write_log(log, FAKE_TRAIN, "fit", range(1, 81))
    monkeypatch.setenv("AVATAR_STUDIO_LOSS_LOG", str(log))
    window.open_project(trained.root)
    window.select_stage(FAKE_TRAIN)
    xs, ys = window.stage_page.dashboard.series["mse"]
    assert xs == list(range(1, 81)) and ys[-1] == pytest.approx(1 / 80)
    assert "mse 0.0125" in window.stage_page.dashboard.message.full_text()


def test_last_run_curves_and_images_come_from_the_project(window, trained, monkeypatch, screenshot):
    """Without the AVATAR_STUDIO_LOSS_LOG file: the stage folder's own loss history and the images the
    run wrote (its recorded outputs) are shown."""
    import cv2
    import numpy as np

    from studio.loop import stage_loss_log

    monkeypatch.delenv("AVATAR_STUDIO_LOSS_LOG", raising=False)
    folder = trained.stage_dir(FAKE_TRAIN)
    _write_log(stage_loss_log(trained, FAKE_TRAIN), FAKE_TRAIN, "fit", range(1, 81), base=3.0)
    sheet = np.zeros((40, 60, 3), np.uint8)
    sheet[:, :30] = (0, 0, 255)                      # BGR: the left half red
    cv2.imwrite(str(folder / "sheet.png"), sheet)
    cv2.imwrite(str(folder / "recon.png"), np.full((20, 20, 3), 200, np.uint8))
    trained.update_record(FAKE_TRAIN, outputs={"weights": f"{FAKE_TRAIN}/net.pt", "sheet": f"{FAKE_TRAIN}/sheet.png",
                                               "recon": f"{FAKE_TRAIN}/recon.png", "gone": f"{FAKE_TRAIN}/gone.png"},
                          result={"summary": {"final_mse": 0.0123, "steps": 80}})
    window.open_project(trained.root)
    window.select_stage(FAKE_TRAIN)
    d = window.stage_page.dashboard
    xs, ys = d.series["mse"]
    assert xs == list(range(1, 81)) and ys[-1] == pytest.approx(3.0 / 80)
    from studio.gui.imaging import qimage_to_array

    big = qimage_to_array(d.preview.image())
    assert big.shape[:2] == (40, 60) and big[5, 5].tolist() == [255, 0, 0] and big[5, 50].tolist() == [0, 0, 0]
    assert "sheet.png" in d.preview.toolTip()
    assert d.thumbs[0].image() is not None and "recon.png" in d.thumbs[0].toolTip()
    assert d.thumbs[1].image() is None, "a recorded image that is gone is skipped, weights are not images"
    assert d.thumbs[0].isVisibleTo(d) and not any(t.isVisibleTo(d) for t in d.thumbs[1:]), "no empty boxes"
    screenshot(window, "stage_last_run_images")
    window.select_stage("ingest")                    # a stage never run: no image of another stage stays
    assert d.preview.image() is None and d.thumbs[0].image() is None


def test_resumed_run_continues_at_the_checkpointed_step(qtbot, themed, tmp_path, monkeypatch):
    from studio.gui.dashboard import Dashboard
    from studio.gui.workers import ProgressBatch

    log = tmp_path / "losses.jsonl"
    _write_log(log, "s", "fit", range(1, 71), base=2.0)      # the killed run logged up to 70, saved at 60
    monkeypatch.setenv("AVATAR_STUDIO_LOSS_LOG", str(log))
    d = Dashboard()
    qtbot.addWidget(d)
    d.reset("s")
    d.add_batch(ProgressBatch(stage="s", part="fit", step=60, total=100, time=0.0,
                              message="resumed fit at step 60 of 100"))
    d.add_batch(ProgressBatch(stage="s", part="fit", step=63, total=100, time=0.5, message="",
                              losses=[{"mse": 0.5}] * 3, steps=[61, 62, 63]))
    xs, ys = d.series["mse"]
    assert xs == list(range(1, 64)), "history 1..60 from the log, then the resumed steps 61.."
    assert ys[:60] == pytest.approx([2.0 / s for s in range(1, 61)]) and ys[60:] == [0.5] * 3
    assert d.history_points == 60
    # a second part starts after the first; without a log the resumed part still starts at its step
    monkeypatch.delenv("AVATAR_STUDIO_LOSS_LOG")
    d.reset("s")
    d.add_batch(ProgressBatch(stage="s", part="tune", step=40, total=50, time=0.0, message="",
                              losses=[{"mse": 0.1}, {"mse": 0.09}], steps=[39, 40]))
    assert d.series["mse"][0] == [39, 40] and d.history_points == 0
    d.add_batch(ProgressBatch(stage="s", part="polish", step=2, total=5, time=1.0, message="",
                              losses=[{"mse": 0.2}, {"mse": 0.1}], steps=[1, 2]))
    assert d.series["mse"][0] == [39, 40, 41, 42]


def _resume_buttons(window) -> list[str]:
    from PySide6.QtWidgets import QAbstractButton

    return [b.text() for b in window.findChildren(QAbstractButton)
            if b.isVisibleTo(window) and "resume" in b.text().replace("&", "").lower()]


def test_one_resume_button(window, tmp_path, fake_stages, qtbot):
    """A stopped stage shows one Resume (the page's Run button); a paused run shows one Resume too."""
    proj = Project.create(tmp_path / "proj")
    proj.update_record(FAKE_TRAIN, status="cancelled", progress={"fit": 40})
    window.open_project(proj.root)
    assert window.stage_page.stage == FAKE_TRAIN
    assert window.stage_page.run_btn.text() == "Resume"
    assert _resume_buttons(window) == ["Resume"]
    window.stage_page.forms[FAKE_TRAIN].editors["steps"].setValue(3000)
    window.stage_page.run_btn.click()
    dash = window.stage_page.dashboard
    qtbot.waitUntil(lambda: dash.last_batch is not None, timeout=20000)
    assert _resume_buttons(window) == [] and dash.pause_btn.isVisible()
    window.pause()
    assert _resume_buttons(window) == ["Resume"] and dash.resume_btn.isVisible()
    window.cancel()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=20000)
    assert _resume_buttons(window) == ["Resume"] and window.stage_page.run_btn.text() == "Resume"


def test_each_loss_gets_an_on_off_box_under_the_plot_not_a_legend_over_it(qtbot, themed):
    """A stage with more losses than the palette has colours (the mappers log nine): one box each under the plot,
    each curve's look unlike the others, no legend inside the plot; a box hides that loss's raw and smoothed
    curves, and the choice holds for the next run."""
    from studio.gui.dashboard import Dashboard
    from studio.gui.workers import ProgressBatch

    names = ["readback", "l2", "perceptual", "face", "identity", "pivot_pose", "expression", "pose", "rgb"]
    d = Dashboard()
    qtbot.addWidget(d)
    d.show()
    d.reset("mappers")
    d.add_batch(ProgressBatch(stage="mappers", part="mappers", step=3, total=10, time=0.0, message="",
                              losses=[{n: 0.1 * (i + 1) / s for i, n in enumerate(names)} for s in (1, 2, 3)],
                              steps=[1, 2, 3]))
    d._draw_curves()
    assert d.plot.plotItem.legend is None
    assert list(d.loss_boxes) == names and all(b.isChecked() for b in d.loss_boxes.values())
    looks = {(c[1].opts["pen"].color().name(), c[1].opts["pen"].style()) for c in d.curves.values()}
    assert len(looks) == len(names), "the ninth loss must not look like the first"
    d.loss_boxes["rgb"].setChecked(False)
    raw, smooth = d.curves["rgb"]
    assert not raw.isVisible() and not smooth.isVisible()
    assert d.curves["l2"][1].isVisible()
    old = list(d.loss_boxes.values())
    d.reset("mappers")
    assert not any(b.isVisible() for b in old), "the last run's boxes must not show under the next one's"
    d.add_batch(ProgressBatch(stage="mappers", part="mappers", step=1, total=10, time=0.0, message="",
                              losses=[{"l2": 0.3, "rgb": 0.2}], steps=[1]))
    d._draw_curves()
    assert list(d.loss_boxes) == ["l2", "rgb"] and not d.loss_boxes["rgb"].isChecked()
    assert not d.curves["rgb"][1].isVisible() and d.curves["l2"][1].isVisible()
    d.loss_boxes["rgb"].setChecked(True)
    assert d.curves["rgb"][1].isVisible()


def test_a_psnr_series_gets_its_own_axis_at_the_right(qtbot, themed):
    """PTI logs its pivot PSNR (20–30 dB) beside losses under 1: drawn on the losses' axis it flattened them
    into one line at 0. It is drawn against a dB axis at the right; the losses keep the left one."""
    from studio.gui.dashboard import Dashboard
    from studio.gui.workers import ProgressBatch

    d = Dashboard()
    qtbot.addWidget(d)
    d.resize(800, 600)
    d.show()
    d.reset("pti")
    item = d.plot.getPlotItem()
    assert not item.getAxis("right").isVisible()
    d.add_batch(ProgressBatch(stage="pti", part="tune", step=3, total=10, time=0.0, message="",
                              losses=[{"l2": 0.1 / s, "pivot_psnr": 20.0 + s} for s in (1, 2, 3)], steps=[1, 2, 3]))
    d._draw_curves()
    assert item.getAxis("right").isVisible() and item.getAxis("right").labelText == "dB"
    psnr, l2 = d.curves["pivot_psnr"][1], d.curves["l2"][1]
    assert psnr.getViewBox() is d.right_view and l2.getViewBox() is item.vb
    assert d.loss_boxes["pivot_psnr"].text() == "pivot psnr (dB)"
    qtbot.wait(50)
    left_top = item.vb.viewRange()[1][1]
    right_lo, right_hi = d.right_view.viewRange()[1]
    assert left_top < 1.0, "the losses' axis must not stretch to the PSNR's 20 dB"
    assert right_lo <= 21.0 and right_hi >= 23.0
    assert d.right_view.viewRange()[0] == pytest.approx(item.vb.viewRange()[0]), "one step axis for both"
    d.loss_boxes["pivot_psnr"].setChecked(False)
    assert not psnr.isVisible()
    d.reset("mappers")
    assert not item.getAxis("right").isVisible() and not d.right_view.addedItems


def test_curves_boxes_and_preview_do_not_overlap_in_a_short_page(qtbot, themed):
    """A 1280 × 800 window leaves a stage page's dashboard about 614 × 530 px: the previews go under the curves
    and everything keeps its own place (at 200 px the preview and its row of earlier ones were drawn over the
    boxes under the plot, and those over its step axis)."""
    from PySide6.QtCore import QPoint, Qt

    from studio.gui.dashboard import Dashboard
    from studio.gui.workers import ProgressBatch

    names = ["readback", "l2", "perceptual", "face", "identity", "pivot_pose", "expression", "pose", "rgb"]
    from PySide6.QtWidgets import QSplitter, QWidget

    split = QSplitter(Qt.Horizontal)                  # as on the stage page: the settings form beside it
    form = QWidget()
    form.setMinimumWidth(340)
    d = Dashboard()
    split.addWidget(form)
    split.addWidget(d)
    qtbot.addWidget(split)
    split.resize(960, 530)
    split.setSizes([340, 614])
    split.show()
    qtbot.wait(50)
    assert d.width() < 640
    d.reset("mappers")
    d.add_batch(ProgressBatch(stage="mappers", part="mappers", step=2, total=10, time=0.0, message="",
                              losses=[{n: 0.1 for n in names}] * 2, steps=[1, 2]))
    d._draw_curves()
    qtbot.wait(100)

    def span(w):
        top = w.mapTo(d, QPoint(0, 0)).y()
        return top, top + w.height()

    assert d.split.orientation() == Qt.Vertical
    assert d.height() <= 530, "the dashboard needs more height than the page has (Qt then overlaps its parts)"
    assert not any(t.isVisible() for t in d.thumbs), "no row of earlier previews under the curves"
    plot, preview = span(d.plot), span(d.preview)
    boxes = [span(b) for b in d.loss_boxes.values()]
    assert all(plot[1] <= top for top, _ in boxes), "a loss box over the plot"
    assert all(bottom <= span(d.raw_box)[0] for _, bottom in boxes)
    assert span(d.raw_box)[1] <= preview[0] and preview[1] <= d.height()
    assert preview[1] - preview[0] >= 100
    split.resize(1400, 530)                           # wide: the preview beside the curves, its row back
    split.setSizes([340, 1054])
    qtbot.wait(100)
    assert d.split.orientation() == Qt.Horizontal and all(t.isVisible() for t in d.thumbs)


def test_stages_that_do_not_train_show_no_empty_plot(window, trained, qtbot):
    """Tracking, pivots and the like log no losses: their page shows the images the run wrote, not an empty loss
    plot saying "no loss history kept"; a training stage keeps its curves; a run that logs losses shows them."""
    from studio.gui.workers import ProgressBatch

    window.open_project(trained.root)
    d = window.stage_page.dashboard
    window.select_stage("track")
    assert not d.plot_box.isVisibleTo(d)
    window.select_stage(FAKE_TRAIN)
    assert d.plot_box.isVisibleTo(d)
    d.reset("track")
    assert not d.plot_box.isVisibleTo(d)
    d.add_batch(ProgressBatch(stage="track", part="", step=1, total=2, time=0.0, message="",
                              losses=[{"mse": 0.1}], steps=[1]))
    assert d.plot_box.isVisibleTo(d)


def _plain(rich: str) -> str:
    """The summary line as it reads on screen: tags off, no-break spaces and hyphens as plain ones."""
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", rich)).replace("\xa0", " ").replace("\u2011", "-")


def test_a_stage_summary_reads_as_words_and_short_figures():
    """The NeRF's summary holds its final losses as a dict of 17-digit floats and the perceptual loss's kind as a
    code: each figure to four significant digits, yes / no for flags, codes in words, names without underscores."""
    from studio.gui.stage_page import format_summary

    rich = format_summary({"face_loss": True, "perceptual": "nodownload", "yaw_range": [-16.3, 23.5],
                           "losses": {"l1": 0.01382006071546401, "code_reg": 1.000000002296193}, "steps": 7000,
                           "note": "a<b"})
    text = _plain(rich)
    assert "face loss: yes" in text
    assert "perceptual loss: built in (no download)" in text
    assert "head turn (yaw): -16.3 … 23.5°" in text
    assert "losses: L1 0.01382, code reg 1" in text
    assert "steps: 7000" in text and "a&lt;b" in rich and "<b>yes</b>" in rich.replace("&nbsp;", " ")
    assert "held-out PSNR: 22.63 dB" in _plain(format_summary({"heldout_psnr": 22.63})), "a PSNR says its unit"


def test_a_stage_summary_reads_as_words_for_an_artist(qtbot, themed):
    """The Pose & expression page read "steps: 2400 · of steps: 2400 · final l2: 0.0153 · minutes: 13.18 ·
    estimator yaw mae: 1.166" and PTI's "interp max over mean: 1.9": steps read "2400 of 2400", minutes m:ss as
    the dashboard's time, abbreviations capitalised, the cryptic figures named in words with what they mean in the
    tooltip; every figure is kept, and a measure before and after a stage reads as one."""
    from studio.gui.stage_page import _summary_items, format_summary, summary_tooltip

    mappers = {"steps": 2400, "of_steps": 2400, "face_loss": True, "final_l2": 0.0153, "minutes": 13.18,
               "estimator_yaw_mae": 1.166, "estimator_jaw_corr": 0.149, "estimator_expr_corr": 0.762}
    text = _plain(format_summary(mappers))
    assert "steps: 2400 of 2400" in text and "of steps" not in text
    assert "training time: 13:11" in text and "13.18" not in text
    assert "final L2 loss: 0.0153" in text
    assert "(MAE): 1.166°" in text and "read-back jaw correlation: 0.149" in text and "0.762" in text
    assert "_" not in text and "estimator yaw mae" not in text
    tip = _plain(summary_tooltip(mappers))
    assert "reads pose and expression back from a picture" in tip

    pti = {"pivot_psnr": 23.84, "pivot_psnr_min": 22.88, "pivot_ssim": 0.7852, "invert_min": 0.6, "tune_min": 3.98,
           "heldout_ssim": 0.7424, "interp_max_over_mean": 1.9, "wplus": False}
    text = _plain(format_summary(pti))
    assert "pivot PSNR (worst): 22.88 dB" in text, "a lowest PSNR is not a time"
    assert "pivot SSIM: 0.7852" in text and "held-out SSIM: 0.7424" in text
    assert "inversion time: 0:36" in text and "tuning time: 3:59" in text
    assert "morph unevenness: 1.9" in text and "interp" not in text and "W+: no" in text
    assert "largest picture change of one step over the average step" in summary_tooltip(pti)

    sharpen = {"heldout_psnr_before": 20.879, "heldout_identity_before": 0.749, "heldout_psnr_after": 21.016,
               "heldout_identity_after": 0.796}
    text = _plain(format_summary(sharpen))
    assert "held-out PSNR before → after: 20.88 → 21.02 dB" in text
    assert "held-out identity before → after: 0.749 → 0.796" in text

    # every figure of every summary is kept (none dropped, none made up): the d9 project's summaries
    for summ in (mappers, pti, sharpen, {"frames": 587, "tracked": 587, "skipped_reasons": {}, "crop_size": 256,
                                         "cut_short": {"part": "tune", "step": 40, "total": 500, "minutes": 5.0}}):
        shown = " ".join(v for _k, _l, v in _summary_items(summ))
        for k, v in summ.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("minutes", "invert_min",
                                                                                      "tune_min"):
                assert f"{v:.4g}" in shown, (k, v, shown)
    assert "tune at step 40 of 500 (5-minute cap)" in _plain(format_summary(
        {"cut_short": {"part": "tune", "step": 40, "total": 500, "minutes": 5.0}}))


def test_the_stage_page_summary_has_a_tooltip_of_its_cryptic_figures(qtbot, themed, tmp_path):
    """The page's summary line names its figures in words and explains the cryptic ones in its tooltip."""
    from gui_fakes import synthetic_tracked_project

    from studio.gui.stage_page import StagePage

    proj = synthetic_tracked_project(tmp_path / "p")
    proj.update_record("track", result={**proj.record("track").get("result", {}),
                                        "summary": {"frames": 40, "yaw_range": [-13.7, 11.5], "crop_size": 256}})
    page = StagePage()
    qtbot.addWidget(page)
    page.show_stage(proj, "track")
    assert "head turn (yaw): -13.7 … 11.5°" in _plain(page.summary.text())
    assert "left–right turn of the head" in page.summary.toolTip()


def test_a_finished_stage_says_its_time_as_the_dashboard_does(qtbot, themed, tmp_path):
    """A 29-minute stage read "done in 1758.0 s" beside the dashboard's "time 29:18" (and the summary's minutes)."""
    from gui_fakes import synthetic_tracked_project

    from studio.gui.stage_page import StagePage, took

    assert took(1758.0) == "29:18" and took(3725.0) == "1:02:05"
    assert took(8.04) == "8.0 s"
    proj = synthetic_tracked_project(tmp_path / "p")
    proj.update_record("track", seconds=1758.0)
    page = StagePage()
    qtbot.addWidget(page)
    page.show_stage(proj, "track")
    assert "done in 29:18" in page.status.text() and "time 29:18" in page.dashboard.stats.text()


def test_a_run_shows_the_time_of_the_stages_after_the_running_one(window, trained, monkeypatch):
    """With a speed test of the project's preset in this process (the welcome page's or the engine dialog's), a run
    says under the running stage how long the stages after it will take, and when a stage ends, its time against
    its price and the rest re-priced at the run's pace (`speed_probe.RunPace`, as `avatar-studio run` prints)."""
    import time

    import torch

    from studio import speed_probe

    monkeypatch.setattr(speed_probe, "_CACHE", {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    window.open_project(trained.root)
    assert window._run_pace(["pti", "mappers"]) is None, "no speed test yet: nothing is said"
    speed_probe.remember(speed_probe.SpeedEstimate(
        device="cpu", gpu_found=False, gpu_name="", threads=2, preset=trained.preset, batch=8, resolution=128,
        step_seconds=0.5, stage_seconds={"pti": 600.0, "mappers": 600.0, "sharpen": 300.0}))
    window._pace = window._run_pace(["pti", "mappers", "sharpen"])
    assert window._pace is not None
    window._run_started("pti")
    d = window.stage_page.dashboard
    assert d.after == "then about 15 min for Pose & expression control, Sharpening head"
    window._stage_t0 = time.perf_counter() - 720.0                  # pti ran 12 min against 10 priced
    window._run_stage_done("pti", {"summary": {}})
    assert window.statusBar().currentMessage() == (
        "Pivotal tuning took 12:00 (the speed test said 10:00); about 18 min left for Pose & expression control, "
        "Sharpening head (this run goes 1.2 times slower than the speed test said)")
    window._run_started("mappers")
    assert d.after == "then about 6 min for Sharpening head"
    from studio.gui.workers import ProgressBatch

    window._run_progress(ProgressBatch(stage="mappers", part="mappers", step=1, total=10, time=0.0, message="",
                                       losses=[{"l2": 0.1}], steps=[1]))
    assert window.statusBar().currentMessage().startswith("Pivotal tuning took 12:00"), \
        "the next stage's progress must not wipe the line at once"
    window._note_until = 0.0
    window._run_progress(ProgressBatch(stage="mappers", part="mappers", step=2, total=10, time=0.1, message="",
                                       losses=[{"l2": 0.1}], steps=[2]))
    assert window.statusBar().currentMessage().startswith("Pose & expression control · mappers 20%")
    speed_probe._CACHE.clear()
    speed_probe.remember(speed_probe.SpeedEstimate(
        device="cuda", gpu_found=True, gpu_name="a GPU", threads=2, preset=trained.preset, batch=8, resolution=128,
        step_seconds=0.05, stage_seconds={"pti": 60.0}))
    assert window._run_pace(["pti"]) is None, "a test on another device prices nothing here"


def test_a_finished_run_without_images_says_so_and_shows_no_empty_boxes(window, trained, screenshot):
    """A finished stage whose run saved no images showed "Previews appear here while a stage runs" over six empty
    thumbnail boxes: it says that the run saved none, and the empty boxes are gone. A stage not run yet still says
    previews come while it runs, and a live run gets its row of earlier previews back."""
    from studio.gui.workers import ProgressBatch

    window.open_project(trained.root)
    window.select_stage(FAKE_TRAIN)
    d = window.stage_page.dashboard
    assert d.preview.image() is None
    assert "saved no images" in d.preview.text() and "while a stage runs" not in d.preview.text(), d.preview.text()
    assert not d.thumb_row.isVisibleTo(d) and not any(t.isVisibleTo(d) for t in d.thumbs)
    screenshot(window, "stage_last_run_no_images")
    window.select_stage("ingest")                   # never run: its previews would come while it runs
    assert d.preview.text() == "Previews appear here while the stage runs"
    assert not d.thumb_row.isVisibleTo(d)
    d.reset(FAKE_TRAIN)                             # a run starts: the row of earlier previews is back
    d.add_batch(ProgressBatch(stage=FAKE_TRAIN, part="fit", step=1, total=10, time=0.0, message="",
                              losses=[{"mse": 0.5}], steps=[1]))
    assert d.thumb_row.isVisibleTo(d) and all(t.isVisibleTo(d) for t in d.thumbs)
    assert d.preview.text() == "Previews appear here while the stage runs"
