"""The Export page: a turntable exported from the page (in the export child process), cancel
half-way (no file left), errors as dialogs, the no-avatar notice, and Run all's engine choice.

The avatar engine is a fake that draws a disc from the controls (tests/gui/gui_fakes.py): these
tests check the page's plumbing, not a model. Its loaders are module-level functions so they
reach the export's child process by reference, as the real engines' loaders do.
"""
from __future__ import annotations

import pytest

from gui_fakes import FakeTrackedEngine, mark_done, synthetic_tracked_project

FAST_DELAY = 0.002
SLOW_DELAY = 0.12
"""Seconds per batch of 4 frames: 100 frames take about 3 s, time to cancel half-way."""


def load_fast(project):
    return FakeTrackedEngine("fake", size=96, delay=FAST_DELAY)


def load_slow(project):
    return FakeTrackedEngine("fake", size=96, delay=SLOW_DELAY)


@pytest.fixture
def tracked(tmp_path):
    from studio.stages import REGISTRY

    if "track" not in REGISTRY or "ingest" not in REGISTRY:
        pytest.skip("needs the ingest and track stages")
    return synthetic_tracked_project(tmp_path / "synthetic")


def use_engine(monkeypatch, loader):
    """Register `loader` as the engine "fake", trained once `track` is done."""
    from studio.engines import ENGINES, EngineSpec

    monkeypatch.setitem(ENGINES, "fake", EngineSpec(name="fake", title="fake", short="fake", stages=(), loader=loader))


def open_export(window, project):
    assert window.open_project(project.root)
    window.show_view("export")
    assert window.pages.currentWidget() is window.export_panel
    return window.export_panel


def set_turntable(panel, out, seconds: float) -> None:
    f = panel.form.editors
    f["source"].setCurrentIndex(f["source"].findData("turntable"))
    f["duration"].setValue(seconds)
    f["fps"].setText("25")
    panel.set_output(out)


def partials(folder):
    return [p.name for p in folder.iterdir() if ".partial" in p.name] if folder.exists() else []


def test_turntable_from_the_panel(window, tracked, monkeypatch, qtbot, tmp_path, screenshot):
    from PySide6.QtGui import QDesktopServices

    from studio.video import media_duration

    use_engine(monkeypatch, load_fast)
    panel = open_export(window, tracked)
    assert panel.engines() == ["fake"] and not panel.notice.isVisible()
    # defaults: <project>/exports/<source>.mp4, following the source until the user picks a path
    assert panel.output.text() == str(tracked.root / "exports" / "turntable.mp4")
    src = panel.form.editors["source"]
    src.setCurrentIndex(src.findData("self"))
    assert panel.output.text().endswith("self.mp4")
    assert not panel.driver.isVisibleTo(panel) and not panel.form.editors["duration"].isVisibleTo(panel)
    src.setCurrentIndex(src.findData("driver"))
    assert panel.driver.isVisibleTo(panel)

    out = tmp_path / "out" / "turn.mp4"
    set_turntable(panel, out, 2.0)
    assert panel.form.editors["duration"].isVisibleTo(panel) and not panel.driver.isVisibleTo(panel)
    runner = panel.start()
    assert runner is not None and not runner.in_process  # the engine's loader went to the child process
    assert window.is_running() is False and not window.act_open.isEnabled()  # no project switch mid-export
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60000)
    assert runner.outcome == "done", panel.error_dialog and panel.error_dialog.text()
    assert out.is_file() and media_duration(out)["frames"] == 50
    assert partials(out.parent) == []
    res = panel.result
    assert res["frames"] == 50 and res["fps"] == 25 and res["audio"] is False
    text = panel.result_label.text()
    assert str(out) in text and "50 frames at 25 fps" in text and "no audio" in text
    assert panel.result_box.isVisible() and panel.progress.value() == 50
    assert panel.preview.image() is not None  # the newest frame was shown
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    panel.open_btn.click()
    assert opened == [str(out.parent)]
    assert window.act_open.isEnabled()
    screenshot(window, "export_panel")


def test_cancel_half_way_leaves_no_file(window, tracked, monkeypatch, qtbot, tmp_path, screenshot):
    use_engine(monkeypatch, load_slow)
    panel = open_export(window, tracked)
    out = tmp_path / "out" / "cancelled.mp4"
    set_turntable(panel, out, 4.0)  # 100 frames
    runner = panel.start()
    qtbot.waitUntil(lambda: panel.progress.maximum() == 100 and panel.progress.value() >= 40, timeout=60000)
    assert panel.cancel_btn.isEnabled() and "ETA" in panel.status.text()
    screenshot(window, "export_panel_running")
    panel.cancel_btn.click()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=30000)
    assert runner.outcome == "cancelled"
    assert not out.exists() and partials(out.parent) == []
    assert "no file was written" in panel.status.text()
    assert panel.error_dialog is None and not panel.result_box.isVisible()


def test_injected_avatar_runs_in_a_thread(window, tracked, qtbot, tmp_path):
    from studio.avatar import Avatar

    panel = open_export(window, tracked)
    assert panel.notice.isVisible() and not panel.export_btn.isEnabled()
    panel.avatar_override = Avatar(FakeTrackedEngine("fake", size=64, delay=0.0))
    panel.refresh()
    assert not panel.notice.isVisible() and panel.export_btn.isEnabled()
    fmt = panel.form.editors["format"]
    fmt.setCurrentIndex(fmt.findData("gif"))
    assert panel.output.text().endswith("turntable.gif")
    panel.form.editors["duration"].setValue(0.4)
    runner = panel.start()
    assert runner.in_process
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=30000)
    assert runner.outcome == "done" and panel.result["frames"] == 10
    assert (tracked.root / "exports" / "turntable.gif").is_file()


def test_errors_become_readable_dialogs(window, tracked, monkeypatch, qtbot, tmp_path):
    use_engine(monkeypatch, load_fast)
    panel = open_export(window, tracked)
    src = panel.form.editors["source"]
    src.setCurrentIndex(src.findData("driver"))
    assert panel.start() is None  # no driver chosen: said before anything runs
    assert "driver video" in panel.error_dialog.text()
    panel.error_dialog.close()
    src.setCurrentIndex(src.findData("turntable"))
    panel.set_output(tmp_path / "clip.xyz")  # a StudioError raised by export() in the child
    runner = panel.start()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60000)
    assert runner.outcome == "failed"
    box = panel.error_dialog
    assert "Cannot tell the format" in box.text() and ".mp4" in box.informativeText()
    assert not box.detailedText()  # a StudioError is no bug report
    box.close()


def test_no_avatar_notice(window, tmp_path, screenshot):
    from studio.project import Project

    panel = open_export(window, Project.create(tmp_path / "untrained"))
    assert panel.notice.isVisible()
    assert "train the StyleGAN or NeRF engine first" in panel.notice.text()
    assert not panel.export_btn.isEnabled() and panel.engines() == []
    screenshot(window, "export_panel_no_avatar")


def test_run_all_asks_which_engine(window, tmp_path, qtbot, monkeypatch, screenshot):
    from studio.gui.engine_dialog import stages_for
    from studio.project import Project
    from studio.engines import chain

    proj = Project.create(tmp_path / "fresh")
    window.open_project(proj.root)
    dlg = window.run_all()
    assert dlg is not None and dlg.isVisible() and not window.is_running()
    for key in ("pvp", "nerf"):
        assert dlg.plans[key] == stages_for(proj, key) == list(chain(key))
    assert set(dlg.plans["both"]) == set(chain("pvp")) | set(chain("nerf"))
    screenshot(dlg, "run_all_engine")
    from studio.speed_probe import SpeedEstimate

    est = SpeedEstimate(device="cpu", gpu_found=False, gpu_name="", threads=2, preset="preview", batch=8,
                        resolution=128, step_seconds=0.3, stage_seconds={s: 60.0 for s in chain("pvp")},
                        probe_seconds=7.0, precision="bf16", bf16_instructions="AVX512-BF16")
    dlg.show_estimate(est)      # the estimate says where and in what arithmetic training runs, and why
    assert "on the CPU (2 threads, bfloat16 arithmetic: this CPU has AVX512-BF16)" in dlg.estimate.text()
    assert "StyleGAN" in dlg.estimate.text() and "min" in dlg.estimate.text()
    started = []
    monkeypatch.setattr(window, "start_run", lambda stages, overrides=None, force=(): started.append(stages))
    dlg.set_choice("nerf")
    dlg.run_btn.click()
    assert started == [list(chain("nerf"))]
    assert window.settings.get("run_all_engine") == "nerf"
    dlg2 = window.run_all()
    assert dlg2.choice() == "nerf"  # remembered
    dlg2.reject()


def test_every_hint_of_the_settings_is_whole_after_a_source_change(window, tracked, monkeypatch, qtbot):
    """Switching the source shows and hides rows of the settings; the hints of the rows that stayed kept the height
    of their old line breaks and were cut off at the bottom (at 1360 px, source "self": the Source, background and
    Size hints; "driver": the Transfer hint), until the window was resized."""
    from PySide6.QtWidgets import QLabel

    use_engine(monkeypatch, load_fast)
    panel = open_export(window, tracked)
    box = panel.form.editors["source"]
    for source in ("self", "driver", "timeline", "turntable", "self"):
        box.setCurrentIndex(box.findData(source))
        qtbot.wait(50)
        cut = [(w.text()[:40], w.height(), w.heightForWidth(w.width())) for w in panel.form.findChildren(QLabel)
               if w.isVisibleTo(panel) and w.wordWrap() and w.heightForWidth(w.width()) > w.height() + 1]
        assert not cut, f"source {source}: hints cut at the bottom (text, height, height needed): {cut}"


def test_run_all_says_plainly_that_a_trained_engine_has_nothing_to_run(window, tmp_path, monkeypatch):
    """A trained engine's choice read "Runs: already trained: nothing to run"."""
    from studio.gui import engine_dialog
    from studio.project import Project

    real = engine_dialog.stages_for
    monkeypatch.setattr(engine_dialog, "stages_for", lambda p, key: [] if key == "pvp" else real(p, key))
    monkeypatch.setattr(engine_dialog.EngineDialog, "_probe", lambda self, project: None)   # no speed test
    window.open_project(Project.create(tmp_path / "half").root)
    dlg = window.run_all()
    note = dlg.notes["pvp"].text()
    assert "Already trained: nothing to run." in note and "Runs:" not in note
    assert not dlg.buttons["pvp"].isEnabled() and "Runs: " in dlg.notes["nerf"].text()
    dlg.reject()


def test_self_export_of_a_real_clip_with_audio(window, short_clip, monkeypatch, qtbot, tmp_path):
    """source=self on a real tracked clip (needs ../shared): the subject's audio comes along."""
    from studio.pipeline import run_stage
    from studio.project import Project
    from studio.video import media_duration

    proj = Project.create(tmp_path / "real", short_clip)
    run_stage(proj, "ingest")
    run_stage(proj, "track", {"min_frames": 5})
    use_engine(monkeypatch, load_fast)
    panel = open_export(window, proj)
    f = panel.form.editors
    f["source"].setCurrentIndex(f["source"].findData("self"))
    f["frames"].setCurrentIndex(f["frames"].findData("all"))
    f["side_by_side"].setChecked(True)
    out = tmp_path / "self.mp4"
    panel.set_output(out)
    runner = panel.start()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=120000)
    assert runner.outcome == "done", panel.error_dialog and panel.error_dialog.text()
    d = media_duration(out)
    assert d["frames"] == panel.result["frames"] and panel.result["audio"] is True
    assert d["audio_seconds"] == pytest.approx(d["video_seconds"], abs=0.15)
    assert "with audio" in panel.result_label.text()


def test_flame_source_has_its_own_file_chooser(window, tracked, monkeypatch, tmp_path):
    """source=flame asks for its FLAME parameter file in the Clip box with a Browse button (the generated form gave
    a bare text row, shown for every source); the audio box shows only where there is audio (self, driver)."""
    from studio.session import Session

    use_engine(monkeypatch, load_fast)
    monkeypatch.setattr(Session, "controls", lambda self, engine: "flame")  # an avatar on FLAME's
    panel = open_export(window, tracked)
    f = panel.form.editors
    assert not panel.flame_file.isVisibleTo(panel) and not panel._form_row("flame").isVisibleTo(panel)
    assert not f["audio"].isVisibleTo(panel), "a turntable has no audio"
    f["source"].setCurrentIndex(f["source"].findData("self"))
    assert f["audio"].isVisibleTo(panel)
    f["source"].setCurrentIndex(f["source"].findData("flame"))
    assert panel.flame_file.isVisibleTo(panel) and not panel._form_row("flame").isVisibleTo(panel)
    assert not f["audio"].isVisibleTo(panel) and not f["duration"].isVisibleTo(panel)
    assert panel.problem() == "Choose the FLAME parameter file."
    missing = tmp_path / "nope.npz"
    panel.flame_file.setText(str(missing))
    assert panel.problem() == f"There is no FLAME parameter file at {missing}."
    seq = tmp_path / "seq.npz"
    seq.write_bytes(b"")
    panel.flame_file.setText(str(seq))
    assert panel.problem() == "" and panel.values()["flame"] == str(seq)
    f["source"].setCurrentIndex(f["source"].findData("turntable"))
    assert not panel.flame_file.isVisibleTo(panel)


def _train_on(project, stages, controls: str) -> None:
    """Record `stages` as finished, trained on the control set `controls` where a stage has that setting."""
    import dataclasses

    from studio.config import to_dict
    from studio.pipeline import stage_config

    for stage in stages:
        cfg = stage_config(project, stage)
        if hasattr(cfg, "controls"):
            project.update_record(stage, config=to_dict(dataclasses.replace(cfg, controls=controls)))
        mark_done(project, stage, {})


def _sources(panel) -> list:
    box = panel.form.editors["source"]
    return [box.itemData(i) for i in range(box.count())]


def test_only_the_sources_and_settings_that_apply_to_the_avatar(window, tracked, screenshot):
    """An avatar on the named sliders was offered the flame source and the FLAME geometry box, which only failed
    when exporting (a FLAME sequence cannot drive it); one on FLAME controls was offered a driver video, which
    export refuses (it goes through the driver's FLAME fit). Each engine's page offers what its avatar takes, read
    from the engine's saved settings without loading it."""
    from studio.engines import ENGINES

    _train_on(tracked, ENGINES["nerf"].stages, "named")
    panel = open_export(window, tracked)
    assert panel.engines() == ["nerf"] and panel.controls == "named"
    assert _sources(panel) == ["turntable", "self", "driver", "timeline"]
    assert not panel._form_row("flame_geometry").isVisibleTo(panel)
    assert "FLAME" not in panel.intro.text() and "another person's video" in panel.intro.text()
    box = panel.form.editors["source"]
    box.setCurrentIndex(box.findData("driver"))
    _train_on(tracked, ENGINES["nerf"].stages, "flame")     # trained again on FLAME controls (by the CLI)
    panel = open_export(window, tracked)                     # the window reads the project again
    assert panel.controls == "flame"
    assert _sources(panel) == ["turntable", "self", "timeline", "flame"]
    assert panel.source() == "turntable", "the driver source it had is gone: back to the first"
    assert not panel.driver.isVisibleTo(panel) and not panel.drivers.isVisibleTo(panel)
    assert panel._form_row("flame_geometry").isVisibleTo(panel)
    hint = panel.form.editors["source"].toolTip()
    assert "flame (a FLAME parameter file)" in hint and "driver" not in hint
    box.setCurrentIndex(box.findData("flame"))
    assert panel.flame_file.isVisibleTo(panel)
    screenshot(window, "export_flame_controls")


def test_the_drivers_box_says_what_the_learned_transfer_gives_the_chosen_engine(window, tracked):
    """The Drivers box said "LatentAvatar's shared expression space" with the StyleGAN engine chosen too: for
    StyleGAN the actor's code becomes its expression sliders, for the NeRF its own expression code."""
    from studio.engines import ENGINES

    _train_on(tracked, ENGINES["pvp"].core_stages + ENGINES["nerf"].stages, "named")
    panel = open_export(window, tracked)
    assert panel.engines() == ["pvp", "nerf"]
    box = panel.form.editors["source"]
    box.setCurrentIndex(box.findData("driver"))
    panel.engine_box.setCurrentIndex(panel.engine_box.findData("pvp"))
    words = panel.drivers.intro.text()
    assert "StyleGAN avatar's expression sliders" in words and "LatentAvatar" not in words, words
    panel.engine_box.setCurrentIndex(panel.engine_box.findData("nerf"))
    words = panel.drivers.intro.text()
    assert "NeRF avatar's own expression code" in words and "sliders" not in words, words


def test_the_page_never_exports_over_the_project_or_its_video(window, tracked, monkeypatch, qtbot, tmp_path,
                                                              screenshot):
    """The rule `avatar-studio export` applies: not over project.json (with the MP4 format chosen, the window
    wrote the clip over it and the project was gone), a stage's folder, or the video the avatar came from.
    Refused before anything runs; nothing changes on disk."""
    import shutil

    use_engine(monkeypatch, load_fast)
    video = tmp_path / "subject.mp4"
    video.write_bytes(b"the subject's own video")
    tracked.set_source(video)
    tracked.save()
    panel = open_export(window, tracked)
    manifest = (tracked.root / "project.json").read_bytes()
    fmt = panel.form.editors["format"]
    for out, fmt_name, words in ((tracked.root / "project.json", "mp4", "one of the project's own files"),
                                 (tracked.root / "track", "png", "one of the project's own files"),
                                 (video, None, "the video the avatar was made from")):
        fmt.setCurrentIndex(fmt.findData(fmt_name))
        set_turntable(panel, out, 0.4)
        assert panel.start() is None and not panel.is_running()
        box = panel.error_dialog
        assert box.windowTitle() == "Cannot export there" and words in box.text(), box.text()
        assert "-o " not in box.informativeText()
        if out.name == "project.json":
            assert str(tracked.root / "exports" / "clip.mp4") in box.informativeText()
            screenshot(box, "export_over_project_json")
        box.close()
    assert (tracked.root / "project.json").read_bytes() == manifest
    assert video.read_bytes() == b"the subject's own video"
    assert sorted(p.name for p in (tracked.root / "track").iterdir()) == ["crops", "tracking.json", "tracking.npz"]
    # the project's exports/ folder and a new file elsewhere are fine
    fmt.setCurrentIndex(fmt.findData(None))
    set_turntable(panel, tmp_path / "elsewhere.mp4", 0.4)
    assert panel.start() is not None
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60000)
    assert panel.runner.outcome == "done"
    shutil.rmtree(tracked.root / "exports", ignore_errors=True)


def test_a_transparent_export_from_the_panel_is_a_mov_with_alpha(window, tracked, qtbot):
    """Ticking Transparent turns the suggested .mp4 into a .mov (an MP4 cannot keep transparency); the export
    is ProRes 4444 with an alpha channel."""
    import subprocess

    from studio.avatar import Avatar
    from studio.video import ffmpeg_exe

    panel = open_export(window, tracked)
    panel.avatar_override = Avatar(FakeTrackedEngine("fake", size=64, delay=0.0))
    panel.refresh()
    assert panel.output.text().endswith("turntable.mp4")
    panel.form.editors["transparent"].setChecked(True)
    assert panel.output.text().endswith("turntable.mov")
    panel.form.editors["duration"].setValue(0.2)
    runner = panel.start()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=30000)
    assert runner.outcome == "done" and panel.result["transparent"] and panel.result["format"] == "mov"
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(tracked.root / "exports" / "turntable.mov")],
                          capture_output=True, text=True).stderr
    assert "prores (4444)" in text and "yuva444p" in text
    panel.form.editors["transparent"].setChecked(False)
    assert panel.output.text().endswith("turntable.mp4")
