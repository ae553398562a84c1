"""FLAME fixtures: a FLAME-format model built from the subject of subject_turns_d3.mp4 (when
../shared is there), and a synthetic one that always exists. Built once per test process."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import VIDEOS
from tests.flame.fixture import subject_fixture, synthetic_fixture

D3 = VIDEOS / "subject_turns_d3.mp4"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def synthetic_flame():
    return synthetic_fixture()


@pytest.fixture
def subject_flame():
    """The meaningful fixture; skips when the shared clip is absent."""
    if not D3.exists():
        pytest.skip(f"needs the shared test video {D3} (../shared beside the repo, or set AVATAR_STUDIO_SHARED) "
                    "to build the subject FLAME fixture")
    torch.set_num_threads(1)
    return subject_fixture(D3)


@pytest.fixture
def flame_fixture(request):
    """The subject fixture when ../shared is there, else the synthetic one."""
    return request.getfixturevalue("subject_flame" if D3.exists() else "synthetic_flame")
