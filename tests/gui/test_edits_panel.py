"""The Edits panel beside the viewer's sliders, and the Export page's edit list, on a tiny trained
StyleGAN avatar (tests/edits/avatars.py: a small generator and mappers fitted to synthetic head
frames, loaded by the real engine). Directions are the real GANSpace job; text edits use the tiny
CLIP trained in tests/edits/clip_fixture.py (skipped where open_clip_torch cannot be imported).

Renders shown by the viewer are compared with `Avatar.render_batch` at the same controls and
edits, so "the edit stays on while the sliders move" and "strength 0 is the unedited image" are
checked pixel for pixel.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "edits"))

from studio.gui.imaging import qimage_to_array  # noqa: E402

SCREENS = Path(__file__).resolve().parents[2] / "test-output" / "screens"
NO_OPEN_CLIP = ("open_clip_torch is not importable here (it needs a torchvision built for the installed torch); "
                "install Avatar Studio as the README says to run the text-edit GUI test")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A tiny trained StyleGAN avatar project (built once; each test works on a copy)."""
    from avatars import make_trained_pvp_project

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("edits_gui") / "proj"
        make_trained_pvp_project(root)
    finally:
        torch.set_num_threads(n)
    return root


@pytest.fixture
def project(built, tmp_path):
    from studio.gui.edit_choices import forget_choices
    from studio.project import Project

    forget_choices()
    shutil.copytree(built, tmp_path / "proj")
    yield Project.open(tmp_path / "proj")
    forget_choices()


@pytest.fixture
def with_directions(project):
    """The project with its GANSpace directions saved ("component 0" …), found by the real job."""
    from studio.edits.jobs import compute_directions

    edits, _ = compute_directions(project, "pvp")
    assert len(edits) >= 2
    return project


@pytest.fixture
def viewer(qtbot, themed):
    from studio.gui.viewer import ViewerPanel

    v = ViewerPanel()
    qtbot.addWidget(v)
    v.resize(1300, 820)
    v.show()
    qtbot.waitExposed(v)
    yield v
    v.shutdown()


def open_viewer(v, project, qtbot):
    v.set_project(project)
    qtbot.waitUntil(lambda: v.last_render is not None and v.edits.choices is not None and v.edits.choices.loaded
                    and v.edits.clip_ok is not None, timeout=30000)
    return v


def settle(v, qtbot) -> dict:
    """Wait for the render of the newest request; return it."""
    seq = v.worker._seq
    qtbot.waitUntil(lambda: v.last_render is not None and v.last_render["seq"] >= seq, timeout=15000)
    return v.last_render


def reference(project, controls, edits=None) -> np.ndarray:
    from studio.avatar import Avatar

    imgs, _ = Avatar.open(project, "pvp").render_batch(np.asarray(controls)[None], edits=edits or None)
    return imgs[0]


def image(r: dict) -> np.ndarray:
    return qimage_to_array(r["image"])


# ----------------------------------------------------------------------------- saved edits in the viewer
def test_lists_saved_edits_strength_on_off_and_sliders(viewer, with_directions, qtbot):
    v = open_viewer(viewer, with_directions, qtbot)
    from studio.edits.model import EditSet

    saved = EditSet.for_project(with_directions, "pvp").names()
    assert sorted(v.edits.choices.names()) == sorted(saved)
    assert sorted(v.edits.list.rows) == sorted(saved)
    assert v.edits.choices.active() == {}, "saved edits start switched off"
    qtbot.waitUntil(lambda: all(r.thumb.pixmap() is not None and not r.thumb.pixmap().isNull()
                                for r in v.edits.list.rows.values()), timeout=20000)

    base = settle(v, qtbot)
    assert base["edits"] == {}
    unedited = image(base)
    assert np.array_equal(unedited, reference(with_directions, base["controls"]))

    name = "component 0"
    row = v.edits.list.rows[name]
    assert v.edits.summary.text() == "no edit on"
    row.check.setChecked(True)                                   # on, at its default strength (1 σ)
    r = settle(v, qtbot)
    assert r["edits"] == {name: pytest.approx(1.0)}
    assert v.edits.summary.text() == "on: component 0 +1.00", "the line beside Before follows the rows"
    one = image(r)
    assert np.array_equal(one, reference(with_directions, r["controls"], {name: 1.0}))
    assert np.abs(one.astype(int) - unedited).mean() > 0.5

    row.set_value(2.0)                                           # stronger edit, bigger change
    two = image(settle(v, qtbot))
    assert v.edits.summary.text() == "on: component 0 +2.00"
    assert np.abs(two.astype(int) - unedited).mean() > np.abs(one.astype(int) - unedited).mean()

    row.set_value(0.0)                                           # strength 0 is the unedited render
    r = settle(v, qtbot)
    assert r["edits"] == {} and np.array_equal(image(r), unedited)

    row.set_value(1.5)
    row.check.setChecked(False)                                  # off: unedited again
    r = settle(v, qtbot)
    assert r["edits"] == {} and np.array_equal(image(r), unedited)
    assert v.edits.summary.text() == "no edit on"
    row.check.setChecked(True)
    assert settle(v, qtbot)["edits"] == {name: pytest.approx(1.5)}

    v.sliders[0].slider.setValue(180)                            # turn the head: the edit stays on
    v.sliders[2].slider.setValue(150)                            # and an expression
    r = settle(v, qtbot)
    assert r["edits"] == {name: pytest.approx(1.5)}
    turned = image(r)
    assert np.array_equal(turned, reference(with_directions, r["controls"], {name: 1.5}))
    assert not np.array_equal(turned, reference(with_directions, r["controls"]))

    second = v.edits.list.rows["component 1"]                    # edits stack
    second.check.setChecked(True)
    second.set_value(-1.0)
    r = settle(v, qtbot)
    both = {name: 1.5, "component 1": -1.0}
    assert r["edits"] == pytest.approx(both)
    assert np.array_equal(image(r), reference(with_directions, r["controls"], both))


def test_hold_b_or_before_button_shows_the_unedited_render(viewer, with_directions, qtbot):
    v = open_viewer(viewer, with_directions, qtbot)
    unedited = image(settle(v, qtbot))
    v.edits.list.rows["component 0"].set_value(2.0)
    v.edits.list.rows["component 0"].check.setChecked(True)
    edited = image(settle(v, qtbot))
    assert not np.array_equal(edited, unedited)

    v.setFocus()
    qtbot.keyPress(v, Qt.Key_B)                                  # hold B: before
    r = settle(v, qtbot)
    assert v.edits.before and r["edits"] == {} and np.array_equal(image(r), unedited)
    qtbot.keyRelease(v, Qt.Key_B)                                # let go: after
    r = settle(v, qtbot)
    assert not v.edits.before and np.array_equal(image(r), edited)

    qtbot.mousePress(v.edits.before_btn, Qt.LeftButton)          # the button does the same
    assert np.array_equal(image(settle(v, qtbot)), unedited)
    qtbot.mouseRelease(v.edits.before_btn, Qt.LeftButton)
    assert np.array_equal(image(settle(v, qtbot)), edited)


def test_delete_asks_then_removes_the_edit_from_the_project(viewer, with_directions, qtbot):
    from studio.edits.model import EditSet

    v = open_viewer(viewer, with_directions, qtbot)
    name = "component 1"
    v.edits.list.rows[name].check.setChecked(True)
    v.edits.list.rows[name].delete_btn.click()
    box = v.edits.confirm_box
    assert box is not None and name in box.text()
    box.button(QMessageBox.Cancel).click()                       # "no": nothing happens
    qtbot.wait(200)
    assert name in EditSet.for_project(with_directions, "pvp") and name in v.edits.list.rows

    v.edits.list.rows[name].delete_btn.click()
    v.edits.confirm_box.button(QMessageBox.Yes).click()
    qtbot.waitUntil(lambda: name not in v.edits.list.rows, timeout=10000)
    assert name not in EditSet.for_project(with_directions, "pvp")
    assert name not in v.edits.choices.active()
    r = settle(v, qtbot)
    assert name not in r["edits"]
    assert "component 0" in v.edits.list.rows                    # the others stay


def test_edits_column_fits_beside_the_viewer_with_a_long_edit_name(viewer, with_directions, qtbot):
    """At the window's default size the Edits column has no horizontal scroll bar and nothing is cut
    off at its right edge: a long name is elided (its tooltip and the list keep the full name)."""
    import dataclasses

    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QScrollArea

    from studio.edits.model import MAX_NAME, EditSet

    edits = EditSet.for_project(with_directions, "pvp")
    long_name = ("a very long edit name that goes on and on " * 3)[:MAX_NAME].strip()
    edits.save(dataclasses.replace(edits.get("component 0"), name=long_name))
    v = viewer
    v.resize(1110, 800)                           # the page's width in a 1360-px window beside the stage list
    v = open_viewer(v, with_directions, qtbot)
    qtbot.waitUntil(lambda: long_name in v.edits.list.rows, timeout=10000)
    qtbot.wait(100)
    scroll = v.edits.findChild(QScrollArea)
    assert not scroll.horizontalScrollBar().isVisible()
    assert scroll.widget().width() <= scroll.viewport().width()
    row = v.edits.list.rows[long_name]
    right = scroll.viewport().mapToGlobal(QPoint(scroll.viewport().width(), 0)).x()
    for w in (row.delete_btn, row.tag, row.value_label, v.edits.find_btn):
        assert w.mapToGlobal(QPoint(w.width(), 0)).x() <= right, w
    assert row.check.text() != long_name and row.check.text().endswith("…")
    assert row.check.full_text == long_name
    short = v.edits.list.rows["component 1"].check
    assert short.text() == "component 1", "a name that fits is not elided"


def test_narrow_page_puts_controls_and_edits_in_tabs(viewer, with_directions, qtbot):
    """A 1280-px window leaves the viewer page about 1030 px and the 1000-px minimum 750, too narrow
    for the render, the controls and the Edits side by side (about 1090): there the controls and the
    Edits become two tabs beside the render and nothing scrolls sideways; with room, three columns."""
    from PySide6.QtCore import QPoint

    v = open_viewer(viewer, with_directions, qtbot)

    def left(w):
        return w.mapTo(v, QPoint(0, 0)).x()

    controls = v.controls_box.parentWidget().parentWidget()      # the controls' scroll area
    need = v.columns_width()
    assert 900 < need < 1110, need
    for width, tabbed in ((750, True), (1030, True), (1110, False), (750, True), (1300, False)):
        v.resize(width, 580)
        qtbot.wait(100)
        assert v.width() == width, "the page's minimum width is wider than the window leaves it"
        assert v.tabbed == tabbed, width
        assert not v.page_scroll.horizontalScrollBar().isVisible(), width
        assert left(v.render_view) + v.render_view.width() <= left(controls), width
        assert v.edits_title.isVisibleTo(v) != tabbed and v.side_tabs.isVisibleTo(v) == tabbed
        assert v.controls_box.title() == ("" if tabbed else "Controls")
        if tabbed:
            assert v.side_tabs.count() == 2 and v.side_tabs.widget(0) is v.controls_col
            v.show_edits()
            qtbot.wait(50)
            assert v.edits.isVisible() and not controls.isVisible()
            assert left(v.edits) >= left(v.render_view) + v.render_view.width()
            assert left(v.edits) + v.edits.width() <= v.width(), "the Edits tab is cut at the right"
            v.side_tabs.setCurrentIndex(0)
            qtbot.wait(50)
            assert controls.isVisible() and not v.edits.isVisible()
        else:
            assert v.side_tabs.count() == 0
            assert left(controls) + controls.width() <= left(v.edits), width
            assert left(v.edits) + v.edits.width() <= v.width(), width
            assert v.edits.isVisible() and controls.isVisible()
        assert v.edits.width() >= v.edits.minimumWidth() and controls.width() >= controls.minimumWidth()
    # the Edits tab counts the edits the render applies
    v.resize(1030, 580)
    qtbot.wait(100)
    assert v.side_tabs.tabText(1) == "Edits"
    v.edits.list.rows["component 0"].check.setChecked(True)
    qtbot.waitUntil(lambda: v.side_tabs.tabText(1) == "Edits (1 on)", timeout=5000)
    v.edits.list.rows["component 0"].check.setChecked(False)
    qtbot.waitUntil(lambda: v.side_tabs.tabText(1) == "Edits", timeout=5000)


# ----------------------------------------------------------------------------- CLIP file or not
def test_without_clip_the_text_box_is_off_and_says_which_file(viewer, project, qtbot):
    v = open_viewer(viewer, project, qtbot)
    p = v.edits
    assert p.clip_ok is False
    assert p.clip_note.isVisible()
    note = p.clip_label.text()
    for words in ("CLIP checkpoint", "open_clip", ".bin", ".pt", ".safetensors", "Models",
                  "avatar-studio models add clip FILE", "Directions below work without it"):
        assert words in note, words
    assert not p.prompt.isEnabled() and not p.find_btn.isEnabled()
    assert p.directions_btn.isEnabled(), "directions need no CLIP file"
    assert not p.notice.isVisible()
    assert p.list.empty.isVisible(), "a project without edits says how to get one"
    SCREENS.mkdir(parents=True, exist_ok=True)
    assert p.grab().save(str(SCREENS / "edits_no_clip.png"))


def test_engine_without_edits_says_so(viewer, project, qtbot, monkeypatch):
    import dataclasses

    from studio.engines import ENGINES

    monkeypatch.setitem(ENGINES, "pvp", dataclasses.replace(ENGINES["pvp"], edits=False))
    v = viewer
    v.set_project(project)
    qtbot.waitUntil(lambda: v.last_render is not None, timeout=30000)
    p = v.edits
    assert p.notice.isVisible() and "no appearance edits" in p.notice.text()
    assert not p.directions_btn.isEnabled() and not p.prompt.isEnabled()
    assert p.active() == {}


# ----------------------------------------------------------------------------- jobs through the worker
def test_find_directions_runs_in_the_child_process(viewer, project, qtbot):
    v = open_viewer(viewer, project, qtbot)
    p = v.edits
    assert p.choices.names() == []
    runner = p.find_directions()
    assert runner is not None and not runner.in_process and p.is_running()
    assert p.job_box.isVisible() and not p.strip.isVisible(), "finding directions draws no preview strip"
    assert not p.directions_btn.isEnabled() and p.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: not p.is_running(), timeout=120000)
    assert runner.outcome == "done", p.error_dialog.text() if p.error_dialog else p.status.text()
    qtbot.waitUntil(lambda: len(p.list.rows) >= 2, timeout=10000)
    assert all(n.startswith("component ") for n in p.list.rows)
    labels = {p.choices.meta(n)["label"] for n in p.list.rows}
    assert labels <= {"appearance", "pose", "expression"}
    assert p.picture_btn.isEnabled() and Path(p.picture_path).is_file()
    assert "directions found" in p.status.text()


def test_cancel_stops_the_job_and_saves_nothing(viewer, project, qtbot):
    from studio.edits.model import EditSet

    v = open_viewer(viewer, project, qtbot)
    p = v.edits
    runner = p.find_directions()
    p.cancel()                                   # before its first step: it stops at its first check
    assert p.status.text() == "cancelling…"
    qtbot.waitUntil(lambda: not p.is_running(), timeout=120000)
    assert runner.outcome == "cancelled"
    assert "cancelled" in p.status.text()
    assert len(EditSet.for_project(project, "pvp")) == 0
    assert p.directions_btn.isEnabled()


# ----------------------------------------------------------------------------- text edits (tiny CLIP)
@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory) -> Path:
    from models.clip_loader import open_clip_available

    if not open_clip_available():
        pytest.skip(NO_OPEN_CLIP)
    from clip_fixture import save_open_clip_checkpoint, train_tiny_clip

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, _ = train_tiny_clip()
    finally:
        torch.set_num_threads(n)
    return save_open_clip_checkpoint(model, tmp_path_factory.mktemp("clip") / "tiny_rgb_clip.pt")


@pytest.fixture
def fresh_forkserver():
    """Stop the stages' fork server so the next job starts one with this test's environment.

    Job processes are forked from a server that keeps the environment it started with; an earlier
    test started it with its own AVATAR_STUDIO_CONFIG_DIR, where no CLIP file is configured. (The
    app's settings folder does not change while it runs, so this is about tests only.)
    """
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        stop()
    yield


def test_find_text_edit_then_cancel_another(viewer, project, tiny_clip_file, fresh_forkserver, qtbot):
    from studio.model_files import ModelFiles

    ModelFiles().set("clip", tiny_clip_file)
    v = open_viewer(viewer, project, qtbot)
    p = v.edits
    assert p.clip_ok is True and not p.clip_note.isVisible()
    assert p.prompt.isEnabled() and not p.find_btn.isEnabled()   # nothing typed yet
    qtbot.keyClicks(p.prompt, "red")
    p.steps.setValue(30)
    assert p.find_btn.isEnabled()
    runner = p.find_text()
    assert runner is not None and p.is_running() and not p.prompt.isEnabled() and p.strip.isVisible()
    qtbot.waitUntil(lambda: not p.is_running(), timeout=180000)
    assert runner.outcome == "done", p.error_dialog.text() if p.error_dialog else p.status.text()
    qtbot.waitUntil(lambda: "red" in p.list.rows, timeout=10000)
    assert p.choices.enabled("red"), "a new edit is switched on"
    assert p.strip.image() is not None, "the preview strip showed the search"
    r = settle(v, qtbot)
    assert r["edits"] == {"red": pytest.approx(1.0)}
    assert np.array_equal(image(r), reference(project, r["controls"], {"red": 1.0}))

    qtbot.keyClicks(p.prompt, "blue")
    p.steps.setValue(100000)
    runner = p.find_text()
    qtbot.waitUntil(lambda: p.progress.maximum() == 100000 and p.progress.value() > 0, timeout=120000)
    p.cancel()
    qtbot.waitUntil(lambda: not p.is_running(), timeout=60000)
    assert runner.outcome == "cancelled"
    from studio.edits.model import EditSet

    assert "blue" not in EditSet.for_project(project, "pvp")
    assert sorted(p.list.rows) == ["red"]


# ----------------------------------------------------------------------------- the Export page
def test_export_page_lists_the_same_edits_and_passes_them(qtbot, themed, viewer, with_directions):
    from studio.export import ExportConfig
    from studio.gui.export_panel import ExportPanel

    v = open_viewer(viewer, with_directions, qtbot)
    v.edits.list.rows["component 0"].check.setChecked(True)
    v.edits.list.rows["component 0"].set_value(1.5)

    page = ExportPanel()
    qtbot.addWidget(page)
    page.set_project(with_directions)
    assert page.engine_box.currentData() == "pvp"
    qtbot.waitUntil(lambda: sorted(page.edit_list.rows) == sorted(v.edits.list.rows), timeout=10000)
    row = page.edit_list.rows["component 0"]
    assert row.check.isChecked() and row.value() == pytest.approx(1.5)
    assert not row.delete_btn.isVisible()
    assert page.active_edits() == {"component 0": pytest.approx(1.5)}
    page.edit_list.rows["component 1"].check.setChecked(True)       # the viewer follows
    assert v.edits.list.rows["component 1"].check.isChecked()
    from studio.edits.model import parse_edit_list

    assert "edits" in ExportConfig.__dataclass_fields__
    assert parse_edit_list(page.values()["edits"]) == pytest.approx({"component 0": 1.5, "component 1": 1.0})

    def export(out) -> list[np.ndarray]:                     # a short turntable as PNG frames
        import cv2

        f = page.form.editors
        f["source"].setCurrentIndex(f["source"].findData("turntable"))
        f["format"].setCurrentIndex(f["format"].findData("png"))
        f["duration"].setValue(0.2)
        f["fps"].setText("25")
        page.set_output(out)
        runner = page.start()
        assert runner is not None and not runner.in_process
        qtbot.waitUntil(lambda: not page.is_running(), timeout=120000)
        assert runner.outcome == "done", page.error_dialog and page.error_dialog.text()
        return [cv2.imread(str(p))[..., ::-1] for p in sorted(Path(out).glob("*.png"))]

    edited = export(with_directions.root / "exports" / "edited")
    assert any("with edits: component 0=1.5, component 1=1" in n for n in page.result["notes"]), page.result
    page.edit_list.rows["component 0"].check.setChecked(False)
    page.edit_list.rows["component 1"].check.setChecked(False)
    assert page.values()["edits"] == ""
    plain = export(with_directions.root / "exports" / "plain")
    assert not any("with edits" in n for n in page.result["notes"])
    assert len(edited) == len(plain) == 5
    assert all(np.abs(a.astype(int) - b).mean() > 0.5 for a, b in zip(edited, plain))


def test_the_text_boxes_examples_are_whole_in_the_narrowest_edits_column(qtbot, themed):
    """The prompt's and the neutral description's example texts were cut ("describe the look: blue hai…",
    "optional neutral …"): at the narrowest the viewer makes the Edits column (340 px: beside the sliders in a
    1360-px window) each example fits its box."""
    from PySide6.QtWidgets import QStyle, QStyleOptionFrame

    from studio.gui.edits_panel import EditsPanel

    panel = EditsPanel()
    qtbot.addWidget(panel)
    panel.resize(340, 900)                  # the viewer's smallest Edits column (ViewerPanel: setMinimumWidth(340))
    panel.show()
    qtbot.waitExposed(panel)
    for box in (panel.prompt, panel.neutral):
        opt = QStyleOptionFrame()
        box.initStyleOption(opt)
        room = box.style().subElementRect(QStyle.SE_LineEditContents, opt, box).width() - 4  # the text's margin
        text = box.placeholderText()
        assert text and box.fontMetrics().horizontalAdvance(text) <= room, (text, room)
