"""GUI test fixtures: offscreen Qt, a temporary app config dir, the dark theme, screenshots, fakes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import studio.gui._qtfix  # noqa: E402,F401  — before any Qt call (PySide6 refcount bug on Python 3.11)

REPO = Path(__file__).resolve().parents[2]
SCREENS = REPO / "test-output" / "screens"


def shared_root() -> Path | None:
    env = os.environ.get("AVATAR_STUDIO_SHARED")
    p = Path(env) if env else REPO.parent / "shared"
    return p if p.is_dir() else None


def shared_file(rel: str) -> Path:
    root = shared_root()
    if root is None or not (root / rel).exists():
        pytest.skip(f"needs ../shared/{rel} (the shared folder beside the repo, or set AVATAR_STUDIO_SHARED)")
    return root / rel


@pytest.fixture(autouse=True)
def app_config(tmp_path, monkeypatch):
    """Every test gets its own app settings folder (recent projects, models.json)."""
    d = tmp_path / "config"
    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(d))
    return d


@pytest.fixture
def themed(qapp):
    from studio.gui.theme import apply_theme

    apply_theme(qapp)
    return qapp


@pytest.fixture
def screenshot(qtbot):
    """screenshot(widget, "name") writes test-output/screens/name.png and returns the path."""
    SCREENS.mkdir(parents=True, exist_ok=True)

    def grab(widget, name: str) -> Path:
        qtbot.wait(50)
        path = SCREENS / f"{name}.png"
        assert widget.grab().save(str(path)), f"could not save {path}"
        return path

    return grab


@pytest.fixture
def fake_stages():
    from gui_fakes import register_fakes, unregister

    added = register_fakes()
    yield
    unregister(added)


@pytest.fixture
def window(qtbot, themed, monkeypatch):
    from studio.gui.main_window import MainWindow

    monkeypatch.setenv("AVATAR_STUDIO_SPEED_PROBE", "0")  # no background speed test in every window

    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1360, 860)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.is_running():
        win.cancel()
        win.runner.wait(10000)
    win.viewer.shutdown()


@pytest.fixture
def fake_engines(monkeypatch):
    """Register fake avatar engines "fake" and "fake2", trained when `track` is done."""
    from gui_fakes import FakeTrackedEngine

    from studio.engines import ENGINES, EngineSpec

    made = {}

    def loader(name):
        def load(project):
            made[name] = FakeTrackedEngine(name)
            return made[name]
        return load

    for name in ("fake", "fake2"):  # no stages of their own: trained once ingest and track are done
        monkeypatch.setitem(ENGINES, name, EngineSpec(name=name, title=name, short=name, stages=(),
                                                      loader=loader(name)))
    return made
