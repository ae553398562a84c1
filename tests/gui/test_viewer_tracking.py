"""Viewer and tracking view on a small synthetic project.

The project's tracking files are synthetic and its avatar engines are fakes that draw a disc
from the controls (tests/gui/gui_fakes.py): these tests check the viewer's plumbing (sliders,
newest-request rendering, engine switch, nearest frame) and the tracking view, not a model.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import Qt

from gui_fakes import synthetic_tracked_project
from studio.gui.imaging import qimage_to_array


@pytest.fixture
def tracked(tmp_path):
    from studio.stages import REGISTRY

    if "track" not in REGISTRY or "ingest" not in REGISTRY:
        pytest.skip("needs the ingest and track stages")
    return synthetic_tracked_project(tmp_path / "synthetic")


def _open_viewer(window, tracked, qtbot):
    window.open_project(tracked.root)
    window.show_view("viewer")
    qtbot.waitUntil(lambda: window.viewer.last_render is not None, timeout=10000)
    return window.viewer


def test_slider_changes_the_image_within_200ms(window, tracked, fake_engines, qtbot, screenshot):
    v = _open_viewer(window, tracked, qtbot)
    names = [s.name for s in v.sliders]
    assert names[:2] == ["yaw", "pitch"] and "jaw_open" in names
    before = qimage_to_array(v.last_render["image"])
    first_seq = v.last_render["seq"]
    t0 = time.perf_counter()
    v.sliders[0].slider.setValue(190)  # turn the head
    qtbot.waitUntil(lambda: v.last_render["seq"] > first_seq, timeout=2000)
    elapsed = time.perf_counter() - t0
    after = qimage_to_array(v.last_render["image"])
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 1.0
    assert elapsed < 0.200, f"the new image took {elapsed * 1000:.0f} ms"
    screenshot(window, "viewer")


def test_only_the_newest_slider_state_is_rendered(window, tracked, fake_engines, qtbot):
    v = _open_viewer(window, tracked, qtbot)
    fake_engines["fake"].delay = 0.05
    start = v.worker.rendered_count
    for pos in range(0, 200, 4):  # a fast drag: 50 states while each render takes 50 ms
        v.sliders[2].slider.setValue(pos)
    qtbot.waitUntil(lambda: abs(v.last_render["controls"][2] - v.sliders[2].value()) < 1e-6, timeout=5000)
    rendered = v.worker.rendered_count - start
    assert rendered < 10, f"{rendered} renders for 50 requests: stale requests were not dropped"
    assert v.worker.dropped_count > 30


def test_reset_shortcuts_engine_switch_nearest_frame(window, tracked, fake_engines, qtbot, screenshot):
    v = _open_viewer(window, tracked, qtbot)
    assert v.engine_box.count() == 2 and v.engine_box.isEnabled()
    v.sliders[0].slider.setValue(200)
    v.sliders[0].reset_btn.click()
    assert v.sliders[0].value() == pytest.approx(0.0, abs=0.5)
    v.setFocus()
    qtbot.keyClick(v, Qt.Key_D)
    assert v.sliders[0].value() > 0
    qtbot.keyClick(v, Qt.Key_R)
    assert v.sliders[0].value() == pytest.approx(0.0, abs=0.5)
    v.nearest_box.setChecked(True)
    qtbot.waitUntil(lambda: v.last_render.get("nearest") is not None, timeout=5000)
    assert v.nearest_view.isVisible() and v.last_render["row"] is not None
    seq = v.last_render["seq"]
    v.engine_box.setCurrentIndex(1)
    qtbot.waitUntil(lambda: "fake2" in fake_engines and v.last_render["seq"] != seq, timeout=5000)
    assert fake_engines["fake2"].calls > 0
    assert "FLAME" in v.flame_label.text() and v.flame_note.isVisibleTo(v)
    screenshot(window, "viewer_nearest")


def test_flame_note_is_short_and_leaves_room_for_the_sliders(window, tracked, fake_engines, qtbot, screenshot):
    """Without FLAME's files the controls column says so, in a line or two (its files in the tooltip): the
    paragraph it was took ten lines under the sliders and, in a 1024 × 700 window, most of their room."""
    window.resize(1024, 700)
    v = _open_viewer(window, tracked, qtbot)
    qtbot.wait(100)
    assert v.flame_note.isVisibleTo(v) and "Models" in v.flame_label.text()
    assert v.flame_label.height() <= 2 * v.flame_label.fontMetrics().lineSpacing() + 4, v.flame_label.text()
    for words in ("generic_model.pkl", "mediapipe_landmark_embedding.npz", "train with FLAME controls"):
        assert words in v.flame_label.toolTip()
    screenshot(window, "viewer_1024x700")


def test_viewer_without_a_trained_avatar_says_so(window, tracked, qtbot, screenshot):
    window.open_project(tracked.root)
    window.show_view("viewer")
    assert "No trained avatar" in window.viewer.render_view.text()
    screenshot(window, "viewer_untrained")


def test_tracking_view_curves_pivots_and_scrubbing(window, tracked, qtbot, screenshot):
    tracked.update_record("pivots", status="done", result={"rows": [3, 20, 33]})
    window.open_project(tracked.root)
    window.show_view("tracking")
    tv = window.tracking_view
    qtbot.waitUntil(lambda: tv.data is not None, timeout=10000)
    assert tv.pivots == [3, 20, 33]
    assert len(tv.pose_plot.plotItem.listDataItems()) >= 3 + 1  # yaw/pitch/roll + pivot markers
    assert len(tv.expr_plot.plotItem.listDataItems()) >= 12
    # the pose curves and the pivots get on/off boxes under the plot, no legend over the yaw curve's top
    assert tv.pose_plot.plotItem.legend is None and list(tv.pose_boxes) == ["yaw", "pitch", "roll", "pivots"]
    pivot_items = tv.pose_curves["pivots"]
    assert len(pivot_items) == 2 * 3 + 2  # a dashed line per pivot and the markers, in both plots
    assert {i.getViewBox() for i in pivot_items} == {tv.pose_plot.getViewBox(), tv.expr_plot.getViewBox()}
    tv.pose_boxes["pivots"].setChecked(False)
    assert not any(i.isVisible() for i in pivot_items) and tv.pose_curves["yaw"][0].isVisible()
    tv.pose_boxes["roll"].setChecked(False)
    tv._plot(tv.data)  # a reload keeps the choice
    assert not tv.pose_boxes["roll"].isChecked() and not tv.pose_curves["roll"][0].isVisible()
    assert not any(i.isVisible() for i in tv.pose_curves["pivots"]) and tv.pose_curves["pitch"][0].isVisible()
    tv.pose_boxes["pivots"].setChecked(True)
    tv.pose_boxes["roll"].setChecked(True)
    assert all(i.isVisible() for i in tv.pose_curves["pivots"] + tv.pose_curves["roll"])
    assert tv.sheet_view.image() is not None
    tv.set_frame(10)
    tv.setFocus()
    qtbot.keyClick(tv, Qt.Key_Right)
    assert tv.frame == 11 and "frame 11/" in tv.frame_info.text()
    tv.next_btn.click()
    tv.prev_btn.click()
    tv.prev_btn.click()
    assert tv.frame == 10
    tv.lines[0].setValue(20)
    assert tv.frame == 20 and "pivot" in tv.frame_info.text()
    tv.set_frame(5)
    assert "no usable face" in tv.frame_view.text()
    tv.set_frame(20)
    screenshot(window, "tracking_curves")
    tv.tabs.setCurrentIndex(1)
    screenshot(window, "tracking_contact_sheet")


def test_tracking_frame_line_wraps_between_figures_and_names_them_as_the_curves(window, tracked, qtbot):
    """Under the frame, the expressions read as the curves' boxes name them ("blink right", not "blink_right"), and
    a narrow column wraps between figures, never between a name and its value. Without pivot frames the summary
    says which stage picks them, by its name in the stage list."""
    window.resize(1024, 700)
    window.open_project(tracked.root)
    window.show_view("tracking")
    tv = window.tracking_view
    qtbot.waitUntil(lambda: tv.data is not None, timeout=10000)
    tv.set_frame(10)
    lines = tv.frame_info.text().split("\n")
    assert "_" not in lines[2] and lines[2].count("  ") == 2, lines
    for figure in lines[1].split("  ") + lines[2].split("  "):
        assert " " not in figure.strip(), f"{figure!r} can be wrapped inside"
    assert "no pivot frames yet (the StyleGAN engine's Pivot frames stage picks them)" in tv.summary.text()


def test_expression_curves_switch_on_and_off_and_stay_so(window, tracked, qtbot):
    window.open_project(tracked.root)
    window.show_view("tracking")
    tv = window.tracking_view
    qtbot.waitUntil(lambda: tv.data is not None, timeout=10000)
    names = list(tv.data.expression_names)
    assert list(tv.expr_boxes) == names and tv.expr_plot.plotItem.legend is None
    assert all(tv.expr_curves[n].isVisible() for n in names)
    tv.expr_boxes["jaw_open"].setChecked(False)
    assert not tv.expr_curves["jaw_open"].isVisible() and tv.expr_curves[names[1]].isVisible()
    tv.expr_none.click()
    assert not any(c.isVisible() for c in tv.expr_curves.values())
    tv.expr_boxes[names[2]].setChecked(True)
    tv._plot(tv.data)  # a reload (the tracking stage run again) keeps the choice
    assert [n for n in names if tv.expr_curves[n].isVisible()] == [names[2]]
    assert not tv.expr_boxes["jaw_open"].isChecked()
    tv.expr_all.click()
    assert all(c.isVisible() for c in tv.expr_curves.values())
    # twelve curves, eight colours: no two curves share colour and line style
    from studio.gui.tracking_view import curve_style
    assert len({curve_style(i) for i in range(len(names))}) == len(names)


def test_detail_from_the_video_toggles_with_the_box_and_v(window, tracked, fake_engines, qtbot, screenshot):
    v = _open_viewer(window, tracked, qtbot)
    shown, alone = _toggle_box_and_key(v, v.detail_box, "detail", Qt.Key_V, qtbot)   # the project has its crops
    assert np.abs(shown - alone).mean() > 1.0          # the frames' detail was on the render
    screenshot(window, "viewer_detail")


def _toggle_box_and_key(v, box, flag: str, key, qtbot):
    """`box` starts enabled and checked with `flag` on in the render; unchecking re-renders with it off,
    and `key` turns it back on. → (image with it on, image with it off), as int arrays."""
    assert box.isEnabled() and box.isChecked()
    assert v.last_render[flag] is True
    shown = qimage_to_array(v.last_render["image"]).astype(int)
    seq = v.last_render["seq"]
    box.setChecked(False)
    qtbot.waitUntil(lambda: v.last_render["seq"] > seq, timeout=5000)
    assert v.last_render[flag] is False
    off = qimage_to_array(v.last_render["image"]).astype(int)
    seq = v.last_render["seq"]
    v.setFocus()
    qtbot.keyClick(v, key)
    qtbot.waitUntil(lambda: v.last_render["seq"] > seq, timeout=5000)
    assert box.isChecked() and v.last_render[flag] is True
    return shown, off


def test_a_project_opens_on_its_avatar_when_one_is_trained(window, tracked, fake_engines, qtbot):
    """Trained with one engine, a project opened on the other engine's first stage ("Pivot frames, not run
    yet", seen in a real window); it now opens on the viewer."""
    window.open_project(tracked.root)
    assert window.pages.currentWidget() is window.viewer
    qtbot.waitUntil(lambda: window.viewer.last_render is not None, timeout=10000)


def test_a_project_without_an_avatar_opens_on_its_next_stage(window, tracked, qtbot):
    from studio.pipeline import stage_state
    from studio.stages import REGISTRY

    window.open_project(tracked.root)
    nxt = next(n for n in REGISTRY if stage_state(window.project, n) != "done")
    assert window.pages.currentWidget() is window.stage_page and window.stage_page.stage == nxt


def _write_disc_mattes(project, crop: int = 64) -> None:
    """Mattes for the synthetic crops: the disc `render_disc` drew from each row's pose."""
    import cv2

    from studio.tracking.data import TrackingData

    trk = TrackingData.from_project(project)
    (trk.root / "mattes").mkdir(exist_ok=True)
    for i in range(trk.n_frames):
        m = np.zeros((crop, crop), np.uint8)
        cx, cy = int(crop / 2 + trk.pose[i, 0] / 30 * crop / 4), int(crop / 2 - trk.pose[i, 1] / 15 * crop / 4)
        cv2.circle(m, (cx, cy), crop // 3, 255, -1)
        cv2.imwrite(str(trk.matte_path(i)), m)


def test_videos_background_toggles_with_the_box_and_k(window, tracked, fake_engines, qtbot, monkeypatch):
    from studio.scene import ScenePlate

    _write_disc_mattes(tracked)
    # the fake engine's disc is no person to mediapipe; say so outright, so the plate shows wherever it saw
    monkeypatch.setattr(ScenePlate, "person_matte", lambda self, image: np.zeros(image.shape[:2], np.float32))
    v = _open_viewer(window, tracked, qtbot)
    shown, own = _toggle_box_and_key(v, v.scene_box, "scene", Qt.Key_K, qtbot)   # the project has crops and mattes
    assert np.abs(shown - own).mean() > 1.0            # the crops' background was behind the disc
    assert np.array_equal(qimage_to_array(v.last_render["image"]).astype(int), shown)


def test_videos_background_box_is_off_without_mattes(window, tracked, fake_engines, qtbot):
    v = _open_viewer(window, tracked, qtbot)                          # the synthetic project has no mattes
    assert not v.scene_box.isEnabled() and v.last_render["scene"] is False
    assert "mattes" in v.scene_box.toolTip()


def test_a_slider_near_zero_reads_plus_zero_not_minus_zero(qtbot):
    from studio.gui.control_slider import STEPS, ControlSlider

    # a range whose steps fall on both sides of 0: the step nearest 0 lands at a small negative value
    s = ControlSlider("smile_left", -1.0, 0.997, 0.0)
    qtbot.addWidget(s)
    s.slider.setValue(99)
    s.slider.setValue(100)                 # dragged onto the step nearest 0 (a reset is 0 itself)
    assert -0.005 < s.value() < 0 and s.slider.maximum() == STEPS
    assert s.value_label.text() == "+0.00"
    s.set_value(-0.5)
    assert s.value_label.text() == "-0.50"


def test_size_box_shows_the_avatar_at_the_tracked_crops_size(window, tmp_path, fake_engines, qtbot, screenshot):
    """Crops tracked at 256 px, an engine rendering 128: the Size box offers both; at 256 the image is 256 px
    (the render upsampled, the frames' detail at full size) and the label says so; back at 128, 128 again."""
    project = synthetic_tracked_project(tmp_path / "big", crop=256)
    v = _open_viewer(window, project, qtbot)
    assert [v.size_box.itemData(i) for i in range(v.size_box.count())] == [128, 256] and v.size_box.isEnabled()
    assert v.last_render["image"].width() == 128
    v.size_box.setCurrentIndex(1)
    qtbot.waitUntil(lambda: v.last_render["image"].width() == 256, timeout=10000)
    qtbot.waitUntil(lambda: "256 px" in v.info.text(), timeout=5000)
    screenshot(window, "viewer_256")
    v.size_box.setCurrentIndex(0)
    qtbot.waitUntil(lambda: v.last_render["image"].width() == 128 and "128 px" in v.info.text(), timeout=10000)


def test_the_wait_for_a_new_size_stays_said_until_its_image_comes(window, tmp_path, fake_engines, qtbot,
                                                                   monkeypatch):
    """The first switch to 256 px prepares the frames (about 17 s on a real clip): a 128-px render asked for before
    the switch, arriving meanwhile, overwrote "preparing the video's frames at 256 px…" with "128 px · 84 ms" while
    the box said 256 px."""
    project = synthetic_tracked_project(tmp_path / "big", crop=256)
    v = _open_viewer(window, project, qtbot)
    earlier = dict(v.last_render)                                   # a 128-px render still on its way
    monkeypatch.setattr(v.worker, "request", lambda *a, **k: 0)     # the 256-px render is being prepared
    v.size_box.setCurrentIndex(1)
    assert "preparing the video's frames at 256 px" in v.info.text()
    v._rendered(earlier)
    assert "preparing the video's frames at 256 px" in v.info.text(), v.info.text()
    assert "128 px" in v.info.text()                                # what is shown now is still said truly


def test_the_first_render_at_a_size_says_its_time_apart_from_preparing_the_frames(window, tmp_path, fake_engines,
                                                                                   qtbot, monkeypatch):
    """The first 256-px render's "ms" counted preparing the frames too ("17551 ms" for a 190-ms render): the status
    line gives the render's own time and says how long the preparation took; later renders say only their time."""
    from studio.avatar import Avatar

    project = synthetic_tracked_project(tmp_path / "big", crop=256)
    v = _open_viewer(window, project, qtbot)
    real = Avatar.video_detail

    def slow_to_prepare(self):
        if self.detail and self.size not in self._video_details:
            time.sleep(0.8)                                          # the frames at a new size take a while
        return real(self)

    monkeypatch.setattr(Avatar, "video_detail", slow_to_prepare)
    v.size_box.setCurrentIndex(1)
    qtbot.waitUntil(lambda: v.last_render["image"].width() == 256, timeout=10000)
    r = v.last_render
    assert r["prep_ms"] >= 800 and r["ms"] < 700, (r["ms"], r["prep_ms"])
    said = f"256 px · {r['ms']:.0f} ms (after {r['prep_ms'] / 1000:.1f} s preparing the frames)"
    assert said in v.info.text(), v.info.text()
    seq = r["seq"]
    v.sliders[0].slider.setValue(v.sliders[0].slider.value() + 20)
    qtbot.waitUntil(lambda: v.last_render["seq"] != seq, timeout=5000)
    assert v.last_render["prep_ms"] < 300 and "preparing" not in v.info.text(), v.info.text()


def test_size_box_is_off_when_the_crops_are_no_larger_than_the_render(window, tracked, fake_engines, qtbot):
    v = _open_viewer(window, tracked, qtbot)          # crops of 64 px under a 128 px engine
    assert v.size_box.count() == 1 and not v.size_box.isEnabled()


def test_nearest_frame_keeps_the_page_within_the_window(window, tracked, fake_engines, qtbot, screenshot):
    """The nearest training frame beside the render widens the render's column: in a 1360-px window the Edits
    column then no longer fits beside it, and the controls and the Edits become tabs instead of the page
    scrolling sideways with the Edits cut at the window's edge (and back to three columns when it goes)."""
    v = _open_viewer(window, tracked, qtbot)
    qtbot.wait(100)
    assert not v.tabbed and not v.page_scroll.horizontalScrollBar().isVisible()
    v.nearest_box.setChecked(True)
    qtbot.waitUntil(lambda: v.last_render.get("nearest") is not None, timeout=5000)
    qtbot.wait(100)
    assert v.tabbed, "the render, the nearest frame, the controls and the Edits do not fit side by side"
    assert not v.page_scroll.horizontalScrollBar().isVisible()
    screenshot(window, "viewer_nearest_frame")
    v.nearest_box.setChecked(False)
    qtbot.wait(100)
    assert not v.tabbed and not v.page_scroll.horizontalScrollBar().isVisible()


def test_reset_puts_a_slider_on_its_neutral_value_exactly(qtbot):
    """A slider's 200 steps over an asymmetric trained range rarely land on 0: a reset read "+0.03°" and rendered
    that, not the neutral pose. Reset (and the first value) is the value itself; a move is the slider's step."""
    from studio.gui.control_slider import ControlSlider

    s = ControlSlider("yaw", -13.7, 11.5, 0.0, "°")
    qtbot.addWidget(s)
    moved = []
    s.moved.connect(lambda: moved.append(s.value()))
    assert s.value() == 0.0 and s.value_label.text() == "+0.00°"
    s.slider.setValue(190)
    assert s.value() == pytest.approx(-13.7 + 25.2 * 190 / 200) and moved[-1] == s.value()
    s.reset()
    assert s.value() == 0.0 and s.value_label.text() == "+0.00°" and moved[-1] == 0.0
    s.nudge(5)
    assert s.value() != 0.0 and s.value_label.text() != "+0.00°"
    s.slider.blockSignals(True)            # as Reset all does: the label still follows
    s.reset()
    s.slider.blockSignals(False)
    assert s.value() == 0.0 and s.value_label.text() == "+0.00°"
