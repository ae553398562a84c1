"""The optional weight files settings (no Qt): validation, sha256, persistence, defaults."""
from __future__ import annotations

import hashlib
import json

import pytest

from studio.errors import InputError, MissingModelError
from studio.gui.model_files import KNOWN, ModelFiles, config_dir


def _torch_file(path):
    import torch

    torch.save({"w": torch.zeros(3)}, path)
    return path


def test_config_dir_follows_env(app_config):
    assert config_dir() == app_config


def test_every_known_file_is_listed_and_missing_at_first(app_config, monkeypatch):
    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(app_config / "no-shared"))
    entries = ModelFiles().entries()
    assert [e.key for e in entries] == ["stylegan2", "clip", "arcface", "lpips", "flame"]
    assert all(e.source == "missing" and not e.ok for e in entries)
    assert {s.key for s in KNOWN} == {e.key for e in entries}


def test_add_hash_persist_remove(tmp_path, app_config):
    f = _torch_file(tmp_path / "vgg16.pth")
    mf = ModelFiles()
    e = mf.set("lpips", f)
    assert e.ok and e.source == "configured"
    assert e.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    data = json.loads((app_config / "models.json").read_text())
    assert data["files"]["lpips"]["sha256"] == e.sha256
    again = ModelFiles()  # read back from disk
    assert again.path("lpips") == f.resolve()
    assert again.require("lpips") == f.resolve()
    again.remove("lpips")
    assert ModelFiles().entry("lpips").source == "missing"
    with pytest.raises(MissingModelError) as ei:
        ModelFiles().require("lpips", "the LPIPS metric")
    assert "LPIPS" in ei.value.message and "Models" in ei.value.hint


def test_wrong_files_are_refused_with_a_reason(tmp_path):
    mf = ModelFiles()
    txt = tmp_path / "generic_model.pkl"
    txt.write_text("not a pickle")
    with pytest.raises(InputError, match="not a pickle"):
        mf.set("flame", txt)
    with pytest.raises(InputError, match="expected a"):
        mf.set("flame", _torch_file(tmp_path / "x.pt"))
    with pytest.raises(InputError):
        mf.set("nonsense", txt)


def test_a_file_that_disappears_is_reported(tmp_path):
    f = _torch_file(tmp_path / "arc.pt")
    mf = ModelFiles()
    mf.set("arcface", f)
    f.unlink()
    e = ModelFiles().entry("arcface")
    assert not e.ok and e.source == "configured" and "gone" in e.problem
    with pytest.raises(MissingModelError, match="cannot be used"):
        ModelFiles().require("arcface")


def test_changed_file_is_rehashed(tmp_path):
    import os

    f = _torch_file(tmp_path / "clip.pt")
    mf = ModelFiles()
    first = mf.set("clip", f).sha256
    import torch

    torch.save({"w": torch.ones(5)}, f)
    os.utime(f, (1, 1))
    assert ModelFiles().entry("clip").sha256 != first


def test_damaged_settings_file_is_tolerated(app_config):
    app_config.mkdir(parents=True, exist_ok=True)
    (app_config / "models.json").write_text("{ not json")
    assert len(ModelFiles().entries()) == len(KNOWN)


def test_arcface_defaults_to_the_shared_weights():
    from conftest import shared_file

    path = shared_file("weights/arcface_mobilefacenet.pt")
    e = ModelFiles().entry("arcface")
    assert e.ok and e.source == "default" and e.path == path
    assert e.sha256 == "90a00ba1d8b0b688af3deb731ed53dca582e6106805d1bc3cfdef55f570493f4"
