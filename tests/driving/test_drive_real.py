"""End to end on real faces, each command a real process: `avatar-studio drive` on a tiny NeRF avatar
of subject_turns_d3 with 60 frames of driver_tps as the actor, export with the learned (default) and
the parameter transfer, the benchmark, and the bad inputs (no face, a damaged file, the avatar's own
subject). Tiny settings: this checks the plumbing, not the quality (the benchmark measures that)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio.video import media_duration
from tests.conftest import ffmpeg, shared_video

from .synth import NERF_TINY

DRIVE = {"size": 32, "code_dim": 16, "channels": 8, "max_channels": 32, "steps": 12, "batch": 4, "map_steps": 20,
         "map_hidden": 32, "threads": 1}


def cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", AVATAR_STUDIO_THREADS="1")
    return subprocess.run([sys.executable, "-m", "studio.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def drive_args(project: Path, actor: Path, *extra: str) -> list[str]:
    out = ["drive", str(project), "--actor", str(actor)]
    for k, v in DRIVE.items():
        out += ["--set", f"{k}={v}"]
    return out + list(extra)


@pytest.fixture(scope="module")
def avatar(tracked_d3, tmp_path_factory):
    from studio.pipeline import run_stage
    from studio.project import Project

    root = tmp_path_factory.mktemp("drive_real") / "d3"
    shutil.copytree(tracked_d3.root, root, ignore=shutil.ignore_patterns("drivers", ".lock"))
    proj = Project.open(root)
    run_stage(proj, "nerf", {**NERF_TINY, "size": 32, "low_res": 16})
    return proj


@pytest.fixture(scope="module")
def actor_clip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("actor") / "tps60.mp4"
    ffmpeg("-i", str(shared_video("driver_tps.mp4")), "-frames:v", "60", "-c:v", "libx264", "-crf", "16", "-c:a",
           "aac", "-t", "2.4", str(out))
    return out


@pytest.mark.slow
def test_drive_then_export_learned_and_parameters(avatar, actor_clip, tmp_path):
    r = cli(*drive_args(avatar.root, actor_clip))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "actor trained in" in r.stdout and "map_nerf_heldout_cosine" in r.stdout
    assert "own subject" not in r.stdout, "another person was taken for the avatar's subject"
    actors = list((avatar.root / "drivers").iterdir())
    assert len(actors) == 1 and (actors[0] / "yshape" / "preview.png").exists()

    learned = tmp_path / "learned.mp4"
    r = cli("export", str(avatar.root), "-o", str(learned), "--source", "driver", "--driver", str(actor_clip),
            "--side-by-side")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "learned transfer" in r.stdout
    d = media_duration(learned)
    assert d["frames"] == 60 and d["audio_seconds"] == pytest.approx(d["video_seconds"], abs=0.15)

    par = tmp_path / "par.mp4"
    r = cli("export", str(avatar.root), "-o", str(par), "--source", "driver", "--driver", str(actor_clip),
            "--transfer", "parameters")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "learned transfer" not in r.stdout and media_duration(par)["frames"] == 60

    r = cli("bench", "driving", str(avatar.root), "--actor", str(actor_clip), "--clip", str(tmp_path / "sbs.mp4"))
    assert r.returncode == 0, r.stderr[-3000:]
    for text in ("γ separability", "mean (twelve)", "mouth opening", "frames/s"):
        assert text in r.stdout, (text, r.stdout)
    assert media_duration(tmp_path / "sbs.mp4")["frames"] == 60


@pytest.mark.slow
def test_bad_actor_inputs(avatar, tmp_path, short_clip):
    # a damaged file
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video at all")
    r = cli(*drive_args(avatar.root, bad))
    assert r.returncode == 2 and "error: " in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "actor video" in r.stderr
    # a clip with no face
    grey = tmp_path / "grey.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=128x128:d=1.5:r=25", "-c:v", "libx264", str(grey))
    r = cli(*drive_args(avatar.root, grey))
    assert r.returncode == 2 and "no face" in r.stderr and "Traceback" not in r.stderr, r.stderr
    # a missing file
    r = cli(*drive_args(avatar.root, tmp_path / "nope.mp4"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    # too few frames with a face (the default needs 30; the short clip has 40: ask for more)
    r = cli(*drive_args(avatar.root, short_clip, "--set", "min_frames=100"))
    assert r.returncode == 2 and "frames with a face" in r.stderr and "at least 100" in r.stderr, r.stderr
    # the avatar's own subject: said, and the training still runs
    r = cli(*drive_args(avatar.root, short_clip))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "own subject" in r.stdout, r.stdout
    # the project is intact: its stages are still done
    from studio.pipeline import stage_state
    from studio.project import Project

    assert stage_state(Project.open(avatar.root), "nerf") == "done"
