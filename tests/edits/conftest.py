"""Fixtures for the edit tests: the tiny trained CLIP (tests/edits/clip_fixture.py) and the tiny
trained avatars of both engines (tests/edits/avatars.py), each made once per session."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from models.clip_loader import open_clip_available  # noqa: E402

NO_OPEN_CLIP = ("open_clip_torch is not importable here (it needs torchvision built for the installed torch); "
                "install it to run the text-edit tests")


def needs_open_clip():
    if not open_clip_available():
        pytest.skip(NO_OPEN_CLIP)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> Path:
    needs_open_clip()
    from clip_fixture import save_open_clip_checkpoint, train_tiny_clip

    torch.set_num_threads(1)
    model, _ = train_tiny_clip()
    return save_open_clip_checkpoint(model, tmp_path_factory.mktemp("clip") / "tiny_rgb_clip.pt")


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_path):
    from models.clip_loader import load_clip

    return load_clip(tiny_clip_path)


@pytest.fixture(scope="session")
def pvp_engine(tmp_path_factory):
    from avatars import load_pvp_engine, make_pvp_project

    torch.set_num_threads(1)
    return load_pvp_engine(make_pvp_project(tmp_path_factory.mktemp("edits_pvp") / "proj"))


@pytest.fixture(scope="session")
def nerf_engine():
    from avatars import make_nerf_engine

    torch.set_num_threads(1)
    return make_nerf_engine()
