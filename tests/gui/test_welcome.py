"""First run: with no project the welcome page offers a new avatar or an existing project, and says how long
the preview training takes on this machine (speed probe in a worker) and whether a GPU was found."""
from __future__ import annotations

import torch

from studio import speed_probe

torch.set_num_threads(1)


def test_welcome_page_offers_new_and_open_and_shows_the_speed_estimate(qtbot, themed, monkeypatch, screenshot):
    from studio.gui.main_window import MainWindow

    calls = []

    def tiny_probe(preset="preview", device="auto"):
        calls.append(preset)
        return speed_probe.probe(preset, device, steps=1, resolution=32)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(speed_probe, "cached_probe", tiny_probe)
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    page = win.welcome
    assert win.pages.currentWidget() is page
    assert page.new_btn.text() == "New avatar from a video…" and page.open_btn.text() == "Open project…"
    assert "Measuring how fast" in page.speed.text()
    qtbot.waitUntil(lambda: page.estimate is not None, timeout=60000)
    assert calls == ["preview"]
    text = page.speed.text()
    assert text.startswith("Preview training on this machine: about ") and "No GPU found" in text
    assert "StyleGAN avatar" in text and "NeRF avatar" in text
    screenshot(win, "welcome_with_speed_estimate")
    page.new_btn.click()
    assert win.new_dialog is not None and win.new_dialog.isVisible()
    win.new_dialog.reject()


def test_speed_probe_can_be_turned_off(qtbot, themed, monkeypatch):
    from studio.gui.main_window import MainWindow

    monkeypatch.setenv("AVATAR_STUDIO_SPEED_PROBE", "0")
    monkeypatch.setattr(speed_probe, "cached_probe", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    win = MainWindow()
    qtbot.addWidget(win)
    assert win.welcome.speed.text() == "" and win.welcome.estimate is None
