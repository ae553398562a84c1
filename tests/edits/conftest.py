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


def _missing_in_ci() -> None:
    """In CI (CI=true, as .ci/run runs) a missing open_clip fails instead of skipping: the README's install
    pins torch, torchvision and open_clip_torch that import together, so a skip there would hide a broken
    install."""
    import os

    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        try:
            import open_clip  # noqa: F401
        except Exception as exc:  # noqa: BLE001 — torchvision built for another torch raises RuntimeError
            why = f"{type(exc).__name__}: {exc}"
        else:
            why = "unknown"
        pytest.fail(f"open_clip_torch does not import in CI ({why[:200]}); the install must bring it", pytrace=False)


def needs_open_clip():
    if not open_clip_available():
        _missing_in_ci()
        pytest.skip(NO_OPEN_CLIP)


def skip_module_without_open_clip():
    """For test modules that need open_clip throughout (call at import)."""
    if not open_clip_available():
        _missing_in_ci()
        pytest.skip(NO_OPEN_CLIP, allow_module_level=True)


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


# ----------------------------------------------------------------------------- projects for the product API
@pytest.fixture(scope="session")
def project_bases(tmp_path_factory):
    """Tiny trained project folders of both engines (made once; tests work on copies)."""
    from avatars import make_nerf_project, make_trained_pvp_project

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("edit_projects")
    return {"pvp": make_trained_pvp_project(base / "pvp").root, "nerf": make_nerf_project(base / "nerf").root}


@pytest.fixture
def project_copy(project_bases, tmp_path):
    """project_copy(engine) → an open `Project`: a fresh copy of that engine's tiny trained project."""
    import shutil

    from studio.project import Project

    made = []

    def make(engine: str):
        made.append(engine)
        dst = tmp_path / f"{engine}_project{len(made)}"
        shutil.copytree(project_bases[engine], dst)
        return Project.open(dst)

    return make


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty model-files settings folder and no shared/ folder: no CLIP, no ArcFace."""
    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(tmp_path / "no-shared"))
    return tmp_path / "cfg"


@pytest.fixture
def clip_added(no_weights, tiny_clip_path):
    """The tiny CLIP added through the Models path (`ModelFiles.set`, as `models add clip` does)."""
    from studio.model_files import ModelFiles

    ModelFiles().set("clip", tiny_clip_path)
    return no_weights
