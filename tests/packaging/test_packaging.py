"""Packaging without building the bundle: --version, the hidden screenshot option of the window, the
scripts' syntax, what the spec must carry, and ci_bundle.sh's caching run against stand-ins for
build.sh and smoke.sh, so no PyInstaller build is needed. The real bundle is built and smoke-tested
by `packaging/ci_bundle.sh`, which CI (.ci/run) runs right after the suite."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"


def test_version(capsys):
    from studio import __version__
    from studio.cli import main

    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0
    assert capsys.readouterr().out.strip() == f"avatar-studio {__version__}"


def test_entry_runs_a_script_with_its_arguments(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import sys; print('args', sys.argv[1:]); sys.exit(3)\n")
    res = subprocess.run([sys.executable, str(PACKAGING / "entry.py"), "--run-script", str(script), "a", "b c"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 3 and "args ['a', 'b c']" in res.stdout
    res = subprocess.run([sys.executable, str(PACKAGING / "entry.py"), "--run-script", str(tmp_path / "no.py")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "no such file" in res.stderr


@pytest.mark.parametrize("script", ["build.sh", "smoke.sh", "ci_bundle.sh", "install-desktop-entry.sh",
                                    "macos/build-macos.sh"])
def test_scripts_parse_and_are_executable(script):
    path = PACKAGING / script
    assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_what_the_spec_carries_exists():
    spec = (PACKAGING / "avatar-studio.spec").read_text()
    for needed in ('collect_data_files("mediapipe")', "imageio_ffmpeg", "open_clip", "libqoffscreen.so",
                   "libqxcb.so", '"resources"', "BUNDLE(", 'collect_submodules("studio")'):
        assert needed in spec, needed
    ops = REPO / "models" / "stylegan2" / "ops"
    assert sorted(p.suffix for p in ops.iterdir() if p.suffix in (".cu", ".cpp", ".h")).count(".cu") >= 2
    assert (REPO / "resources" / "icons" / "app.svg").exists() and (REPO / "resources" / "theme" / "dark.qss").exists()
    desktop = dict(line.split("=", 1) for line in (PACKAGING / "avatar-studio.desktop").read_text().splitlines()
                   if "=" in line)
    assert desktop["Type"] == "Application" and desktop["Exec"].startswith("avatar-studio gui")
    iss = (PACKAGING / "windows" / "avatar-studio.iss").read_text()
    assert "avatar-studio.exe" in iss and "never been built" in iss


def test_window_screenshot_option_saves_a_png_and_quits(tmp_path, monkeypatch, capfd, qapp):
    from PySide6.QtGui import QImage

    from studio.gui.app import main

    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("AVATAR_STUDIO_SPEED_PROBE", "0")
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # main() installs its own; restored after
    png = tmp_path / "window.png"
    assert main(["--fresh", "--screenshot", str(png), "--quit-after-ms", "300"]) == 0
    img = QImage(str(png))
    assert not img.isNull() and img.width() >= 1000 and img.height() >= 600
    err = capfd.readouterr().err
    assert "window shown" in err and f"screenshot saved to {png}" in err


STAND_IN_BUILD = """#!/usr/bin/env bash
# stand-in for packaging/build.sh: a bundle in $DIST_DIR, and a line in $CALLS
echo "build $DIST_DIR" >> "$CALLS"
mkdir -p "$DIST_DIR/avatar-studio" && printf '#!/bin/sh\\n' > "$DIST_DIR/avatar-studio/avatar-studio"
chmod +x "$DIST_DIR/avatar-studio/avatar-studio"
"""
STAND_IN_SMOKE = """#!/usr/bin/env bash
# stand-in for packaging/smoke.sh: a line in $CALLS, the exit code of $SMOKE_RC
echo "smoke $1 $SMOKE_OUT" >> "$CALLS"
echo "smoke test: stand-in"
exit "${SMOKE_RC:-0}"
"""


def _checkout_with_stand_ins(root: Path) -> Path:
    """A git checkout holding this repo's packaging/ci_bundle.sh, stand-ins for build.sh and smoke.sh that log
    their calls, and one tracked source file (studio/a.py) of the kind the bundle's hash covers."""
    (root / "packaging").mkdir(parents=True)
    (root / "studio").mkdir()
    shutil.copy2(PACKAGING / "ci_bundle.sh", root / "packaging" / "ci_bundle.sh")
    for name, text in (("build.sh", STAND_IN_BUILD), ("smoke.sh", STAND_IN_SMOKE)):
        (root / "packaging" / name).write_text(text)
        (root / "packaging" / name).chmod(0o755)
    (root / "studio" / "a.py").write_text("A = 1\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    return root


def test_ci_bundle_builds_once_then_reuses_the_cached_bundle_and_runs_the_smoke_test(tmp_path):
    """ci_bundle.sh's own logic (the source hash, build only when no bundle of these sources is cached, smoke.sh
    on the bundle, its exit code, the two newest kept), run against stand-ins for build.sh and smoke.sh: the real
    build and the real smoke test run in CI right after the suite (.ci/run), on the real bundle."""
    if shutil.which("git") is None:
        pytest.skip("needs git (ci_bundle.sh hashes the tracked sources)")
    # CI runs the real bundle step after the tests, so the real smoke.sh is checked on every CI run
    ci = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines() if ln.strip() and ln[0] != "#"]
    tests_at = next(i for i, ln in enumerate(ci) if "pytest" in ln)
    assert "bash packaging/ci_bundle.sh" in ci[tests_at + 1:], ci
    # in this repo, the cache folder of these sources
    cache = tmp_path / "cache"
    env = dict(os.environ, AVATAR_STUDIO_CACHE=str(cache))
    where = subprocess.run(["bash", str(PACKAGING / "ci_bundle.sh"), "--where"], env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    assert re.fullmatch(re.escape(str(cache / "bundle-")) + "[0-9a-f]{16}", where), where

    co = _checkout_with_stand_ins(tmp_path / "checkout")
    calls = tmp_path / "calls.txt"
    env["CALLS"] = str(calls)

    def ci_bundle(*args: str, **extra: str) -> tuple[int, str, list[str]]:
        calls.write_text("")
        res = subprocess.run(["bash", str(co / "packaging" / "ci_bundle.sh"), *args], env=dict(env, **extra),
                             capture_output=True, text=True, timeout=120)
        return res.returncode, res.stdout + res.stderr, calls.read_text().splitlines()

    rc, out, _ = ci_bundle("--where")
    first = Path(out.strip())
    assert rc == 0 and first.parent == cache and first.name.startswith("bundle-"), out
    rc, out, did = ci_bundle()
    assert rc == 0, out
    assert "building the bundle" in out and "is cached" not in out, out
    assert did == [f"build {first}.tmp", f"smoke {first} {first}/smoke"], did
    assert (first / "avatar-studio" / "avatar-studio").is_file() and not Path(f"{first}.tmp").exists()
    # the same sources again: the cached bundle is smoke-tested, not rebuilt
    rc, out, did = ci_bundle()
    assert rc == 0, out
    assert "is cached" in out and "building" not in out, "a cached bundle must not be rebuilt"
    assert did == [f"smoke {first} {first}/smoke"], did
    # a failing smoke test fails the step with a message
    rc, out, did = ci_bundle(SMOKE_RC="1")
    assert rc == 1 and "the bundle's smoke test failed" in out and did == [f"smoke {first} {first}/smoke"], out
    # an untracked file leaves the hash alone; a change to a tracked source makes a new bundle
    (co / "studio" / "scratch.py").write_text("B = 2\n")
    assert Path(ci_bundle("--where")[1].strip()) == first
    (co / "studio" / "a.py").write_text("A = 2\n")
    second = Path(ci_bundle("--where")[1].strip())
    assert second != first and second.parent == cache
    rc, out, did = ci_bundle()
    assert rc == 0 and did == [f"build {second}.tmp", f"smoke {second} {second}/smoke"], (out, did)
    # a third source state: only the two newest bundles are kept
    (co / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    rc, out, did = ci_bundle()
    third = Path(did[0].split()[1][:-len(".tmp")])
    assert rc == 0 and third not in (first, second), (out, did)
    assert sorted(p.name for p in cache.glob("bundle-*") if p.is_dir()) == sorted([second.name, third.name])


def test_ci_bundle_fails_with_a_clear_message_when_the_build_fails(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git (ci_bundle.sh hashes the tracked sources)")
    # no bundle cached, and a "Python" that is not 3.11: build.sh stops at once
    env = dict(os.environ, AVATAR_STUDIO_CACHE=str(tmp_path / "cache"), PYTHON="/bin/false")
    res = subprocess.run(["bash", str(PACKAGING / "ci_bundle.sh")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1
    assert "is not Python 3.11" in res.stderr
    assert "error: the bundle build failed (packaging/build.sh" in res.stderr
    assert not list((tmp_path / "cache").glob("bundle-*/")), "a failed build must not be left as a cached bundle"
