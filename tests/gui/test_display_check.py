"""The window's pre-flight: no display, or Qt's X11 plugin missing system libraries, is one plain
line and exit 2, not Qt's abort."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.gui import display_check as dc

LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /x/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f1)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f2)
\tlibxcb-icccm.so.4 => not found
\tlibweird-thing.so.7 => not found
"""
LDD_CLEAN = "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f2)\n"
X11 = {"DISPLAY": ":0"}
PLUGIN = Path("/x/platforms/libqxcb.so")


def test_missing_libraries_are_named_with_the_packages_to_install(monkeypatch):
    monkeypatch.setattr(dc, "_loadable", lambda soname: True)
    err = dc.display_problem(env=X11, platform="linux", plugin=PLUGIN, ldd_output=LDD_MISSING)
    assert isinstance(err, dc.DisplayError) and err.exit_code == 2
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1, libweird-thing.so.7" in err.message  # each once, in order
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1" in err.hint
    assert "sudo dnf install xcb-util-wm xcb-util-keysyms" in err.hint
    assert "libweird-thing.so.7" in err.hint  # not in the table: still named


def test_xcb_cursor_is_checked_beside_ldd(monkeypatch):
    """Qt >= 6.5 loads libxcb-cursor by name at start-up; ldd does not list it."""
    monkeypatch.setattr(dc, "_loadable", lambda soname: soname != "libxcb-cursor.so.0")
    err = dc.display_problem(env=X11, platform="linux", plugin=PLUGIN, ldd_output=LDD_CLEAN)
    assert err is not None and "libxcb-cursor.so.0" in err.message and "libxcb-cursor0" in err.hint
    monkeypatch.setattr(dc, "_loadable", lambda soname: True)
    assert dc.display_problem(env=X11, platform="linux", plugin=PLUGIN, ldd_output=LDD_CLEAN) is None


def test_no_display_is_said_plainly():
    err = dc.display_problem(env={}, platform="linux", plugin=PLUGIN, ldd_output=LDD_CLEAN)
    assert err is not None and "DISPLAY is not set" in err.message and "ssh -X" in err.hint


@pytest.mark.parametrize("env,platform", [
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux"),                    # headless checks, the tests
    ({"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"}, "linux"),
    ({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, "linux"),
    ({}, "darwin"),
    ({}, "win32"),
])
def test_other_platforms_are_left_to_qt(env, platform):
    assert dc.display_problem(env=env, platform=platform, plugin=PLUGIN, ldd_output=LDD_MISSING) is None


def test_xcb_chosen_explicitly_is_still_checked(monkeypatch):
    monkeypatch.setattr(dc, "_loadable", lambda soname: True)
    env = {"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":1"}
    assert dc.display_problem(env=env, platform="linux", plugin=PLUGIN, ldd_output=LDD_MISSING) is not None


def test_the_real_plugin_can_be_asked():
    plugin = dc.xcb_plugin()
    if plugin is None:
        pytest.skip("this PySide6 has no X11 plugin (not Linux)")
    missing = dc.missing_libraries(plugin)
    assert missing is None or all(".so" in s for s in missing)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the X11 check is Linux only")
@pytest.mark.parametrize("how", [["-m", "studio.cli", "gui", "--fresh"], ["-m", "studio.gui", "--fresh"]])
def test_gui_without_a_display_exits_2_with_one_line(tmp_path, how):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env["AVATAR_STUDIO_CONFIG_DIR"] = str(tmp_path)
    res = subprocess.run([sys.executable, *how], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: there is no screen to open the window on (DISPLAY is not set)")
    assert "Traceback" not in res.stderr and "platform plugin" not in res.stderr
