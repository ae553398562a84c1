"""The Export page's Drivers list: train an actor from the page (in the training's child process),
see it listed with its actor | avatar preview, pick it as the driver, and export a driven clip with
the learned transfer (in the export's child process); cancel and resume.

The avatar engine is a test engine that draws the synthetic avatar from the controls
(tests/driving/synth.py); its loader is a module-level function so it reaches the export's child
process by reference. The projects are synthetic: this checks the page, not a model.
"""
from __future__ import annotations

import pytest

from tests.driving.synth import TINY, ControlsEngine, make_pair


def load_controls(project):
    return ControlsEngine()


@pytest.fixture
def pair(tmp_path, monkeypatch):
    from studio.engines import ENGINES, EngineSpec

    monkeypatch.setitem(ENGINES, "fake", EngineSpec(name="fake", title="fake", short="fake", stages=(),
                                                    loader=load_controls))
    return make_pair(tmp_path / "p")


def open_export(window, project):
    assert window.open_project(project.root)
    window.show_view("export")
    return window.export_panel


def test_train_an_actor_from_the_page_and_export_with_it(window, pair, qtbot, tmp_path, screenshot):
    avatar, actor = pair
    panel = open_export(window, avatar)
    drivers = panel.drivers
    src = panel.form.editors["source"]
    src.setCurrentIndex(src.findData("turntable"))
    assert not drivers.isVisibleTo(panel) and not panel.form.editors["transfer"].isVisibleTo(panel)
    src.setCurrentIndex(src.findData("driver"))
    assert drivers.isVisibleTo(panel) and panel.form.editors["transfer"].isVisibleTo(panel)
    assert drivers.list.count() == 1 and "not trained" in drivers.list.item(0).text()

    drivers.overrides = dict(TINY, steps=40)
    trainer = drivers.train(str(actor))
    assert trainer is not None and not trainer.in_process  # the child process, like stages
    assert not drivers.train_btn.isEnabled() and drivers.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: not drivers.is_running(), timeout=240000)
    assert trainer.outcome == "done", drivers.error_dialog and drivers.error_dialog.text()
    assert "trained: 40 steps" in drivers.status.text()
    assert drivers.preview.image() is not None  # the actor | avatar preview came through
    item = drivers.list.item(0)
    assert "trained" in item.text() and not item.icon().isNull()
    drivers.list.setCurrentItem(item)
    drivers.list.itemClicked.emit(item)
    assert panel.driver.text() == str(actor)  # no source video (synthetic): the actor's folder drives
    screenshot(window, "export_drivers")

    out = tmp_path / "driven"
    fmt = panel.form.editors["format"]
    fmt.setCurrentIndex(fmt.findData("png"))
    panel.set_output(out)
    runner = panel.start()
    assert runner is not None
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=120000)
    assert runner.outcome == "done", panel.error_dialog and panel.error_dialog.text()
    assert panel.result["frames"] == 30 and any("learned transfer" in n for n in panel.result["notes"])
    assert len(list(out.glob("*.png"))) == 30


def test_cancel_then_train_again_resumes(window, pair, qtbot):
    from studio.project import Project

    avatar, actor = pair
    panel = open_export(window, avatar)
    drivers = panel.drivers
    drivers.overrides = dict(TINY, steps=4000)
    drivers.in_process = True  # a thread here: the cancel lands while it trains
    drivers.train(str(actor))
    qtbot.waitUntil(lambda: drivers.progress.maximum() == 4000 and drivers.progress.value() >= 20, timeout=120000)
    drivers.cancel_btn.click()
    qtbot.waitUntil(lambda: not drivers.is_running(), timeout=60000)
    assert drivers.trainer.outcome == "cancelled" and "resumes" in drivers.status.text()
    assert "cancelled" in drivers.list.item(0).text()
    rec = Project.open(actor).record("yshape")
    assert rec["status"] == "cancelled"
    stopped_at = rec["progress"]["yshape"]
    assert stopped_at >= 20
    drivers.list.setCurrentItem(drivers.list.item(0))
    assert drivers.again_btn.isEnabled()
    steps = []
    drivers.again_btn.click()
    drivers.trainer.progress.connect(lambda b: b.part == "yshape" and steps.append(b.step))
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=120000)
    assert min(steps) >= stopped_at, f"training restarted at step {min(steps)} instead of resuming at {stopped_at}"
    drivers.cancel()
    qtbot.waitUntil(lambda: not drivers.is_running(), timeout=60000)


def test_actors_from_videos_of_the_same_name_are_told_apart(window, pair, monkeypatch):
    """Two actor videos called the same (from different folders) each get their own drivers/ folder;
    the list names the folder so the two lines differ."""
    from pathlib import Path

    from studio.driving import actors
    from studio.driving.actors import ActorInfo

    avatar, _ = pair
    two = [ActorInfo(root=Path(avatar.root) / "drivers" / f"clip-{h}", name="clip.mp4", video=f"/nowhere/{h}/clip.mp4",
                     state="trained") for h in ("aaaa1111", "bbbb2222")]
    monkeypatch.setattr(actors, "list_actors", lambda project: two)
    panel = open_export(window, avatar)
    panel.drivers.refresh()
    texts = [panel.drivers.list.item(i).text() for i in range(panel.drivers.list.count())]
    assert len(texts) == 2 and texts[0] != texts[1]
    assert "clip-aaaa1111" in texts[0] and "clip-bbbb2222" in texts[1]
