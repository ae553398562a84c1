"""Shared fixtures: where ../shared is, small clips made with the bundled ffmpeg, and one
tracked project of subject_turns_d3.mp4 reused by the tracking tests."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVATAR_STUDIO_SHARED", REPO.parent / "shared"))
VIDEOS = SHARED / "data" / "videos"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("AVATAR_STUDIO_CONFIG_DIR", str(REPO / "test-output" / "config"))
# One torch thread in every test and every process a test starts: with "auto" the count follows the
# machine's load, and float results that differ in the last bits from run to run made tests that
# compare two trainings (or a sweep's smallest gain) flaky. tests/test_threads.py unsets it.
os.environ.setdefault("AVATAR_STUDIO_THREADS", "1")


def shared_video(name: str) -> Path:
    path = VIDEOS / name
    if not path.exists():
        pytest.skip(f"needs the shared test video {path} (../shared beside the repo, or set AVATAR_STUDIO_SHARED)")
    return path


def ffmpeg(*args: str) -> None:
    from studio.video import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def d3_video() -> Path:
    return shared_video("subject_turns_d3.mp4")


@pytest.fixture(scope="session")
def tracked_d3(tmp_path_factory, d3_video):
    """A project with ingest + track done on the whole subject_turns_d3.mp4 (about 10 s)."""
    from studio.pipeline import run_stage
    from studio.project import Project

    root = tmp_path_factory.mktemp("projects") / "d3"
    proj = Project.create(root, d3_video)
    run_stage(proj, "ingest")
    run_stage(proj, "track")
    return proj


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory, d3_video) -> Path:
    """40 frames of the subject at 256x256 with audio: fast to track."""
    out = tmp_path_factory.mktemp("clips") / "short.mp4"
    ffmpeg("-i", str(d3_video), "-frames:v", "40", "-t", "1.34", "-vf", "scale=256:256", "-c:v", "libx264", "-crf", "16", "-c:a", "aac",
           str(out))
    return out


def use_arcface(monkeypatch, tmp_path: Path, kind: str) -> Path | None:
    """Point the stages at an ArcFace file of `kind`: "fixture" (a seeded, untrained MobileFaceNet saved as
    a state_dict, the real file's format), "corrupt" (bytes torch cannot read) or "absent" (none
    configured). Returns the file's path (None when absent)."""
    import torch

    import studio.model_files as model_files
    from models.arcface import MobileFaceNet

    path = tmp_path / "arcface.pt"
    if kind == "fixture":
        torch.manual_seed(0)
        torch.save(MobileFaceNet().state_dict(), path)
    elif kind == "corrupt":
        path.write_bytes(b"not a state dict")
    monkeypatch.setattr(model_files, "arcface_path", lambda: None if kind == "absent" else path)
    return None if kind == "absent" else path
