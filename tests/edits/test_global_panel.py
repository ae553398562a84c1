"""The Edits panel's method choice (optimise vs global directions) on a tiny trained StyleGAN project with
the tiny CLIP added: Find with "Global directions" runs in the edit child process, shows the channel
effects' progress, and the edit arrives in the saved list switched on; the cache note follows."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import needs_open_clip

SCREENS = Path(__file__).resolve().parents[2] / "test-output" / "screens"


@pytest.fixture
def fresh_forkserver():
    """Job processes fork from a server that keeps the environment it started with; stop it so this test's
    settings folder (where the CLIP file is added) reaches the child."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        stop()
    yield
    if stop is not None:
        stop()


def test_find_with_global_directions_shows_progress_and_lists_the_edit(qtbot, project_copy, clip_added,
                                                                       fresh_forkserver):
    needs_open_clip()
    from studio.edits.model import EditSet
    from studio.gui.edit_choices import forget_choices
    from studio.gui.edits_panel import EditsPanel

    forget_choices()
    proj = project_copy("pvp")
    p = EditsPanel()
    qtbot.addWidget(p)
    p.resize(420, 900)
    p.show()
    p.set_project(proj)
    p.set_engine("pvp")
    qtbot.waitUntil(lambda: p.choices is not None and p.choices.loaded and p.clip_ok is not None, timeout=30000)
    assert p.clip_ok is True
    assert [p.method.itemData(i) for i in range(p.method.count())] == ["optimise", "global"]
    assert p.method_value() == "optimise" and p.steps.isVisible() and not p.beta.isVisible()

    p.set_method("global")
    assert p.beta.isVisible() and not p.steps.isVisible() and p.beta.value() == pytest.approx(0.1)
    qtbot.waitUntil(lambda: "first global Find measures" in p.effects_note.text(), timeout=10000)
    assert p.effects_note.isVisible()
    qtbot.keyClicks(p.prompt, "red")
    p.beta.setValue(0.15)
    batches = []
    runner = p.find_text()
    assert runner is not None and p.is_running() and not p.method.isEnabled()
    assert runner.options == {"prompt": "red", "neutral": "", "method": "global", "beta": 0.15}
    assert "(global direction)" in p.job_box.title()
    runner.progress.connect(batches.append)
    qtbot.waitUntil(lambda: not p.is_running(), timeout=180000)
    assert runner.outcome == "done", p.error_dialog.text() if p.error_dialog else p.status.text()
    # the relay sends at most one batch per 0.1 s (the newest event), so the count is checked, not every step
    effects = [(b.step, b.total) for b in batches if b.part == "effects"]
    assert len(effects) >= 2 and effects[0][1] > 1, [(b.part, b.step, b.total) for b in batches]
    assert [s for s, _ in effects] == sorted(s for s, _ in effects) and effects[-1][0] > effects[0][0]
    assert batches[-1].part == "save"
    qtbot.waitUntil(lambda: "red" in p.list.rows, timeout=10000)
    assert p.choices.enabled("red"), "a new edit is switched on"
    assert p.list.rows["red"].tag.text() == "global"
    saved = EditSet.for_project(proj, "pvp").get("red")
    assert saved.kind == "global" and saved.threshold == pytest.approx(0.15)
    qtbot.waitUntil(lambda: p.effects_note.text().startswith("Channel effects cached"), timeout=10000)
    SCREENS.mkdir(parents=True, exist_ok=True)
    p.grab().save(str(SCREENS / "edits_panel_global.png"))

    p.set_method("optimise")
    assert p.steps.isVisible() and not p.beta.isVisible() and not p.effects_note.isVisible()
    p.shutdown()
    forget_choices()
