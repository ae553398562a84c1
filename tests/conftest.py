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
# the app's settings folder of the tests: one per pytest-xdist worker (they run side by side)
os.environ.setdefault("AVATAR_STUDIO_CONFIG_DIR",
                      str(REPO / "test-output" / ("config-" + os.environ["PYTEST_XDIST_WORKER"]
                                                  if os.environ.get("PYTEST_XDIST_WORKER") else "config")))
# One torch thread in every test and every process a test starts: with "auto" the count follows the
# machine's load, and float results that differ in the last bits from run to run made tests that
# compare two trainings (or a sweep's smallest gain) flaky. tests/test_threads.py unsets it.
os.environ.setdefault("AVATAR_STUDIO_THREADS", "1")
os.environ.setdefault("AVATAR_STUDIO_PRECISION", "fp32")   # the same arithmetic on every CPU (bf16 tests ask for it)


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): one test process per CPU core, at most 8 and one per 4 GB of memory
    (a worker holding a tracked clip and a few small trainings peaks near 3 GB). `-n 0` runs in one process."""
    cores = os.cpu_count() or 1
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (AttributeError, ValueError, OSError):
        mem_gb = 8.0
    return max(1, min(cores, 8, int(mem_gb // 4)))


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


def mark_done(proj, name: str, outputs: dict | None = None) -> None:
    """Record stage `name` of `proj` as done (with these outputs), upstream run ids as the pipeline writes them."""
    import uuid

    from studio.stages import REGISTRY

    deps = REGISTRY[name].depends_on if name in REGISTRY else ()
    proj.update_record(name, status="done", run_id=uuid.uuid4().hex[:12], outputs=outputs or {},
                       upstream={d: proj.record(d).get("run_id") for d in deps}, config=None)


def small_pvp_project(src, root: Path):
    """A copy of the tracked project `src` at `root` whose StyleGAN engine is trained up to PTI, with a small
    randomly initialised 64 px generator and six pivot latents standing in for the real prior and PTI (their
    stages are tested on their own); for the tests of the stages after them."""
    import shutil

    import numpy as np
    import torch

    from models.stylegan2.checkpoint import save_generator
    from models.stylegan2.networks import GeneratorConfig
    from studio.project import Project

    shutil.copytree(src.root, root, ignore=shutil.ignore_patterns("*.lock", "*.ckpt"))
    proj = Project.open(root)
    torch.manual_seed(0)
    cfg = GeneratorConfig(z_dim=64, w_dim=64, img_resolution=64, mapping_layers=2, channel_base=1024, channel_max=64)
    G = cfg.build().eval()
    (root / "pti").mkdir()
    save_generator(G, cfg, root / "pti" / "generator.safetensors")
    with torch.no_grad():
        ws = G.mapping(torch.randn(6, cfg.z_dim))
    np.savez(root / "pti" / "latents.npz", ws=ws.numpy(), rows=np.arange(6) * 40)
    for name in ("pivots", "prior"):
        mark_done(proj, name)
    mark_done(proj, "pti", {"generator": "pti/generator.safetensors", "latents": "pti/latents.npz"})
    return proj
