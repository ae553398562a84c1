"""Packaging without building the bundle: --version, the hidden screenshot option of the window, the
scripts' syntax, what the spec must carry, and smoke.sh + ci_bundle.sh run end to end on a stand-in
bundle (a wrapper around this checkout's Python) placed in ci_bundle's cache, so no PyInstaller build
is needed. The real bundle is built and smoke-tested by `packaging/ci_bundle.sh`."""
from __future__ import annotations

import os
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


def _stand_in_bundle(root: Path) -> Path:
    """avatar-studio/avatar-studio running this checkout's packaging/entry.py (the bundle's entry point) with the
    test's Python, plus the ffmpeg path
    a real bundle has (_internal/imageio_ffmpeg/binaries/)."""
    import imageio_ffmpeg

    app = root / "avatar-studio"
    (app / "_internal" / "imageio_ffmpeg" / "binaries").mkdir(parents=True)
    os.symlink(imageio_ffmpeg.get_ffmpeg_exe(), app / "_internal" / "imageio_ffmpeg" / "binaries" / "ffmpeg-linux")
    exe = app / "avatar-studio"
    exe.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" "{PACKAGING / "entry.py"}" "$@"\n')
    exe.chmod(0o755)
    return app


@pytest.mark.slow
def test_ci_bundle_reuses_the_cached_bundle_and_smoke_test_passes(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git (ci_bundle.sh hashes the tracked sources)")
    env = dict(os.environ, AVATAR_STUDIO_CACHE=str(tmp_path / "cache"))
    where = subprocess.run(["bash", str(PACKAGING / "ci_bundle.sh"), "--where"], env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(tmp_path / "cache" / "bundle-"))
    _stand_in_bundle(Path(where))
    res = subprocess.run(["bash", str(PACKAGING / "ci_bundle.sh")], env=env, capture_output=True, text=True,
                         timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "is cached" in out and "building" not in out, "a cached bundle must not be rebuilt"
    assert "ok      --version" in out and "ok      models list" in out
    assert "ok      models add refuses a wrong file (exit 2)" in out
    assert "ok      gui: window shown" in out
    # open_clip in the (stand-in) bundle: the check, then a text edit found with a tiny CLIP
    assert "ok      bundle check: torch" in out and "open_clip" in out
    assert "ok      models add clip: CLIP checkpoint" in out
    assert "ok      edit --text red (20 steps through open_clip)" in out and "ok      export --edit red=1" in out
    assert "FAILED" not in out
    smoke = Path(where) / "smoke"
    assert (smoke / "window.png").stat().st_size > 10_000
    shared = Path(os.environ.get("AVATAR_STUDIO_SHARED", REPO.parent / "shared"))
    if (shared / "data" / "videos" / "subject_turns_d3.mp4").exists():
        assert "ok      new: tracked" in out and "ok      run-stage prior" in out
        assert (smoke / "project" / "pivots").is_dir()
    else:
        assert "skipped new / run-stage: needs" in out
    assert out.rstrip().splitlines()[-1].startswith("smoke test: ")


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
