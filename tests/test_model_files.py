"""The optional weight files registry (no Qt): format checks on add, sha256/size records, changed and
missing files, folder import, persistence, defaults."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from studio import model_files
from studio.errors import InputError, MissingModelError
from studio.model_files import KNOWN, ModelFiles, config_dir

torch.set_num_threads(1)
SHARED = Path(os.environ.get("AVATAR_STUDIO_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(autouse=True)
def app_config(tmp_path, monkeypatch):
    d = tmp_path / "config"
    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(d))
    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(tmp_path / "no-shared"))
    return d


# ------------------------------------------------------------------ small files in the real formats
def arcface_file(path):
    from models.arcface import MobileFaceNet

    torch.save(MobileFaceNet().state_dict(), path)
    return path


def alexnet_file(path):
    from models.perceptual import Backbone

    torch.save({"features." + k.split(".", 1)[1]: v for k, v in Backbone("alex").state_dict().items()}, path)
    return path


def stylegan2_file(path):
    from models.stylegan2.checkpoint import save_generator
    from models.stylegan2.networks import GeneratorConfig

    cfg = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=1, channel_base=256, channel_max=16)
    save_generator(cfg.build(), cfg, path)
    return path


FLAME_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


def flame_file(path):
    """generic_model.pkl in FLAME's layout (chumpy arrays, a scipy sparse regressor) over a small synthetic mesh."""
    from flame.fixture import synthetic_arrays, write_generic_model

    write_generic_model(path, synthetic_arrays())
    return path


def plain_flame_pickle(path, protocol=2, keys=FLAME_KEYS):
    """A pickle with FLAME's keys but not its contents (numpy arrays of the wrong shapes)."""
    with open(path, "wb") as f:
        pickle.dump({k: np.zeros((4, 3)) for k in keys}, f, protocol=protocol)
    return path


def embedding_file(path):
    from flame.fixture import synthetic_arrays, write_identity_embedding

    write_identity_embedding(path, synthetic_arrays()["faces"])
    return path


def clip_file(path, width=8, embed=4):
    state = {"token_embedding.weight": torch.zeros(50, width), "positional_embedding": torch.zeros(7, width),
             "text_projection": torch.zeros(width, embed), "ln_final.weight": torch.ones(width),
             "transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3 * width, width),
             "visual.proj": torch.zeros(width, embed), "logit_scale": torch.tensor(1.0)}
    torch.save(state, path)
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


# ------------------------------------------------------------------ tests
def test_config_dir_follows_env(app_config):
    assert config_dir() == app_config


def test_every_known_file_is_listed_and_missing_at_first():
    entries = ModelFiles().entries()
    assert [e.key for e in entries] == ["stylegan2", "clip", "arcface", "lpips", "flame", "flame-mediapipe"]
    assert all(e.source == "missing" and not e.ok and e.state == "not-configured" for e in entries)
    assert {s.key for s in KNOWN} == {e.key for e in entries}


def test_add_records_sha_size_format_and_persists(tmp_path, app_config):
    f = arcface_file(tmp_path / "arc.pt")
    e = ModelFiles().set("arcface", f)
    assert e.ok and e.source == "configured" and e.state == "present"
    assert e.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    rec = json.loads((app_config / "models.json").read_text())["files"]["arcface"]
    assert rec["sha256"] == e.sha256 and rec["size"] == f.stat().st_size
    assert "MobileFaceNet" in rec["format"]
    again = ModelFiles()  # read back from disk
    assert again.path("arcface") == f.resolve() == again.require("arcface")
    again.remove("arcface")
    assert ModelFiles().entry("arcface").source == "missing"
    with pytest.raises(MissingModelError) as ei:
        ModelFiles().require("arcface", "the identity metric")
    assert "ArcFace" in ei.value.message and "models add arcface" in ei.value.hint


@pytest.mark.parametrize("key,maker,name", [
    ("stylegan2", stylegan2_file, "g.pt"),
    ("lpips", alexnet_file, "alexnet.pth"),
    ("flame", flame_file, "generic_model.pkl"),
    ("flame-mediapipe", embedding_file, "mediapipe_landmark_embedding.npz"),
])
def test_each_kind_accepts_its_own_format(tmp_path, key, maker, name):
    e = ModelFiles().set(key, maker(tmp_path / name))
    assert e.ok and e.record["format"]


def test_clip_without_the_loader_module_checks_clip_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(model_files, "_optional_module", lambda name: None)
    assert "CLIP" in ModelFiles().set("clip", clip_file(tmp_path / "open_clip.bin")).record["format"]
    with pytest.raises(InputError, match="not a CLIP checkpoint: it has no token_embedding"):
        ModelFiles().set("clip", alexnet_file(tmp_path / "vgg.pt"))


def test_clip_uses_the_loader_module_when_present(tmp_path, monkeypatch):
    seen = []

    def check_clip_file(path):
        seen.append(path)
        raise ValueError("ViT-L-14 checkpoints are not supported")

    fake = types.SimpleNamespace(check_clip_file=check_clip_file)
    monkeypatch.setattr(model_files, "_optional_module", lambda name: fake if name == "models.clip_loader" else None)
    with pytest.raises(InputError, match="ViT-L-14 checkpoints are not supported"):
        ModelFiles().set("clip", clip_file(tmp_path / "c.pt"))
    assert seen


def test_wrong_files_are_refused_with_a_reason(tmp_path):
    mf = ModelFiles()
    alex = alexnet_file(tmp_path / "alexnet.pth")
    with pytest.raises(InputError, match="cannot be used as ArcFace .*do not fit the ArcFace MobileFaceNet"):
        mf.set("arcface", alex)
    with pytest.raises(InputError, match="StyleGAN2 generator .*expected a dict with 'g_ema'"):
        mf.set("stylegan2", alex)
    bad_vgg = tmp_path / "vgg16.pth"
    torch.save({"features.0.weight": torch.zeros(1), "features.28.weight": torch.zeros(1)}, bad_vgg)
    with pytest.raises(InputError, match="do not match torchvision's VGG16"):
        mf.set("lpips", bad_vgg)
    txt = tmp_path / "generic_model.pkl"
    txt.write_text("not a pickle")
    with pytest.raises(InputError, match="not a pickle"):
        mf.set("flame", txt)
    with pytest.raises(InputError, match="shapedirs"):
        mf.set("flame", plain_flame_pickle(tmp_path / "partial.pkl", keys=("v_template", "f")))
    with pytest.raises(InputError, match="expected a"):
        mf.set("flame", alex)
    with pytest.raises(InputError, match="lmk_face_idx"):
        np.savez(tmp_path / "other.npz", a=np.zeros(3))
        mf.set("flame-mediapipe", tmp_path / "other.npz")
    with pytest.raises(InputError, match="unknown model file"):
        mf.set("nonsense", alex)
    assert mf.data["files"] == {} and not (mf.file.exists() and json.loads(mf.file.read_text())["files"])


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, protocol, monkeypatch):
    path = tmp_path / "generic_model.pkl"
    with open(path, "wb") as f:
        pickle.dump({k: np.zeros(2) for k in FLAME_KEYS} | {"weights": _Evil()}, f, protocol=protocol)
    with pytest.raises(InputError, match=r"(posix|nt|os)\.system"):  # the FLAME reader's own refusal
        ModelFiles().set("flame", path)
    monkeypatch.setattr(model_files, "_optional_module", lambda name: None)
    with pytest.raises(InputError, match=r"refers to (posix|nt|os)\.system"):  # the fallback scan's refusal
        ModelFiles().set("flame", path)


def test_without_the_flame_reader_a_pickle_with_flame_keys_passes_the_scan(tmp_path, monkeypatch):
    monkeypatch.setattr(model_files, "_optional_module", lambda name: None)
    assert ModelFiles().set("flame", plain_flame_pickle(tmp_path / "generic_model.pkl", protocol=4)).ok
    with pytest.raises(InputError, match="not a FLAME model: it has no shapedirs"):
        ModelFiles().set("flame", plain_flame_pickle(tmp_path / "partial.pkl", keys=("v_template", "f")))


def test_a_file_that_disappears_is_reported(tmp_path):
    f = arcface_file(tmp_path / "arc.pt")
    ModelFiles().set("arcface", f)
    f.unlink()
    e = ModelFiles().entry("arcface")
    assert not e.ok and e.state == "gone" and "gone" in e.problem and "MISSING" in e.status
    with pytest.raises(MissingModelError, match="cannot be used"):
        ModelFiles().require("arcface")


def test_changed_file_is_reported_and_not_used(tmp_path):
    f = arcface_file(tmp_path / "arcface.pt")
    mf = ModelFiles()
    mf.set("arcface", f)
    first = mf.entry("arcface").sha256
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched, same bytes: still fine
    e = ModelFiles().entry("arcface")
    assert e.ok and e.state == "present" and e.sha256 == first
    arcface_file(f)  # saved again: other random weights, same size
    assert f.stat().st_size == st.st_size
    e = ModelFiles().entry("arcface")
    assert e.state == "changed" and not e.ok and e.sha256 != first and "CHANGED" in e.status
    assert ModelFiles().path("arcface") is None
    assert ModelFiles().set("arcface", f).state == "present"  # adding it again checks and accepts it


def test_add_folder_imports_every_recognised_file(tmp_path):
    d = tmp_path / "models"
    (d / "sub").mkdir(parents=True)
    arcface_file(d / "arcface_mobilefacenet.pt")
    alexnet_file(d / "sub" / "alexnet-owt.pth")
    flame_file(d / "generic_model.pkl")
    embedding_file(d / "mediapipe_landmark_embedding.npz")
    arcface_file(d / "second_face_net.pt")
    (d / "README.txt").write_text("models copied from my workstation")
    (d / "broken.pt").write_bytes(b"PK\x03\x04 garbage")
    added, skipped = ModelFiles().add_folder(d)
    assert sorted(e.key for e in added) == ["arcface", "flame", "flame-mediapipe", "lpips"]
    assert all(e.ok and e.sha256 for e in added)
    why = {p.name: reason for p, reason in skipped}
    assert set(why) == {"second_face_net.pt", "broken.pt"}
    assert "another arcface file" in why["second_face_net.pt"]
    assert "not recognised" in why["broken.pt"]
    again = ModelFiles()
    assert again.path("lpips") == (d / "sub" / "alexnet-owt.pth").resolve()
    with pytest.raises(InputError, match="no recognised model file"):
        ModelFiles().add_folder(_empty(tmp_path))
    with pytest.raises(InputError, match="not a folder"):
        ModelFiles().add_folder(tmp_path / "nope")


def _empty(tmp_path):
    e = tmp_path / "empty"
    e.mkdir()
    (e / "notes.pt").write_text("hello")
    return e


def test_damaged_settings_file_is_tolerated(app_config):
    app_config.mkdir(parents=True, exist_ok=True)
    (app_config / "models.json").write_text("{ not json")
    assert len(ModelFiles().entries()) == len(KNOWN)


def test_arcface_defaults_to_the_shared_weights(monkeypatch):
    path = SHARED / "weights" / "arcface_mobilefacenet.pt"
    if not path.exists():
        pytest.skip(f"needs {path} (../shared beside the repo, or set AVATAR_STUDIO_SHARED)")
    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(SHARED))
    e = ModelFiles().entry("arcface")
    assert e.ok and e.source == "default" and e.path == path
    assert e.sha256 == "90a00ba1d8b0b688af3deb731ed53dca582e6106805d1bc3cfdef55f570493f4"
    assert "MobileFaceNet" in model_files.validate("arcface", path)
