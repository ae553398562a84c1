"""Before the window opens: can Qt show a window on this machine? (No Qt widgets here.)

On Linux, PySide6's X11 platform plugin (`libqxcb.so`) loads system libraries that a desktop usually
has but a fresh or minimal install may lack (xcb-cursor since Qt 6.5, xcb-icccm, xcb-keysyms, …).
Without them Qt prints a line about "platform plugin xcb" and aborts the process: the user sees a
crash, or nothing at all when the app was started from the menu. `display_problem()` finds that out
first and says which libraries are missing and which packages bring them. It also catches a
session without any display (ssh without -X, a cron job).

Skipped where it cannot judge: not Linux, a platform chosen with QT_QPA_PLATFORM other than xcb
(offscreen, wayland, vnc), a Wayland session (Qt uses its Wayland plugin there), no `ldd`.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import StudioError

# soname → (Debian / Ubuntu package, Fedora package)
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.MULTILINE)


class DisplayError(StudioError):
    """The window cannot open on this machine (no display, or system libraries Qt needs are missing)."""


def xcb_plugin() -> Path | None:
    """Path of Qt's X11 platform plugin as this PySide6 (or the bundle) has it; None if not found."""
    try:
        from PySide6.QtCore import QLibraryInfo
    except ImportError:
        return None
    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(plugin: Path, ldd_output: str | None = None) -> list[str] | None:
    """Sonames the plugin needs and the loader cannot find (`ldd`), plus xcb-cursor, which Qt ≥ 6.5
    loads by name at start-up and `ldd` does not list. None when `ldd` is not there to ask."""
    if ldd_output is None:
        ldd = shutil.which("ldd")
        if ldd is None:
            return None
        try:
            ldd_output = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    missing = list(dict.fromkeys(_NOT_FOUND.findall(ldd_output)))
    if "libxcb-cursor.so.0" not in missing and not _loadable("libxcb-cursor.so.0"):
        missing.append("libxcb-cursor.so.0")
    return missing


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        return False


def install_hint(missing: list[str]) -> str:
    """What to install for these sonames, for Debian/Ubuntu and Fedora."""
    deb = list(dict.fromkeys(PACKAGES[s][0] for s in missing if s in PACKAGES))
    rpm = list(dict.fromkeys(PACKAGES[s][1] for s in missing if s in PACKAGES))
    unknown = [s for s in missing if s not in PACKAGES]
    parts = []
    if deb:
        parts.append(f"on Debian or Ubuntu: sudo apt install {' '.join(deb)}")
    if rpm:
        parts.append(f"on Fedora: sudo dnf install {' '.join(rpm)}")
    if unknown:
        parts.append(f"and the package that provides {', '.join(unknown)}")
    parts.append("then start the window again; the avatar-studio commands work without them")
    return "; ".join(parts)


def display_problem(env: dict | None = None, platform: str | None = None, plugin: Path | None = None,
                    ldd_output: str | None = None) -> DisplayError | None:
    """Why Qt could not open the window here, or None when it should (or when this cannot be judged).

    The arguments stand in for the environment, `sys.platform`, the plugin path and `ldd`'s output,
    for tests."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        return None
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen and not chosen.startswith("xcb"):
        return None  # offscreen, wayland, vnc, …: the user chose a platform; Qt reports its own problems
    if not chosen and env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE", "").lower() == "wayland":
        return None
    if not env.get("DISPLAY"):
        return DisplayError("there is no screen to open the window on (DISPLAY is not set)",
                            "start it from the desktop, or over ssh with `ssh -X`; the avatar-studio commands "
                            "(new, run, eval, export, …) work without a screen")
    plugin = xcb_plugin() if plugin is None else plugin
    if plugin is None:
        return None
    missing = missing_libraries(plugin, ldd_output)
    if not missing:
        return None
    return DisplayError(f"the window cannot open: Qt's X11 display plugin needs system libraries this machine "
                        f"does not have ({', '.join(missing)})", install_hint(missing))


def tell_the_desktop(err: DisplayError) -> None:
    """Started from the menu there is no terminal to read the message: show it as a desktop
    notification as well, where `notify-send` exists (best effort, never raises)."""
    if sys.stderr is not None and sys.stderr.isatty():
        return
    tool = shutil.which("notify-send")
    if tool is None:
        return
    try:
        subprocess.run([tool, "Avatar Studio could not open its window", f"{err.message}. {err.hint}."],
                       timeout=10, capture_output=True)
    except (OSError, subprocess.SubprocessError):
        pass
