"""models/clip_loader.py: open_clip checkpoints read safely, architecture named or inferred."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from models.clip_loader import ClipFileError, check_clip_file, infer_config, load_clip, read_state_dict


class _Payload:
    """Pickles to a call of os.mkdir(marker): if the loader ever unpickled it, the folder would appear."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_tiny_clip_really_learned(tiny_clip):
    from clip_fixture import retrieval_accuracy

    assert retrieval_accuracy(tiny_clip) >= 0.95, "the test CLIP must tell red, green and blue images apart"


def test_formats_and_inferred_architecture(tiny_clip, tiny_clip_path, tmp_path):
    from clip_fixture import CAPTIONS, TINY_CLIP, save_open_clip_checkpoint, tinted_images

    import numpy as np

    info = check_clip_file(tiny_clip_path)
    assert info.source == "inferred"
    assert info.config["vision_cfg"]["width"] == 64 and info.config["vision_cfg"]["patch_size"] == 8
    assert info.config["vision_cfg"]["image_size"] == 32 and info.config["vision_cfg"]["layers"] == 2
    assert info.config["text_cfg"]["context_length"] == 16 and info.config["text_cfg"]["layers"] == 2
    assert info.config["embed_dim"] == 32
    x = tinted_images(6, np.random.default_rng(5))[0]
    ref_img, ref_txt = tiny_clip.encode_images(x), tiny_clip.encode_text(CAPTIONS)
    for fmt, name in (("bin", "open_clip_pytorch_model.bin"), ("safetensors", "open_clip_model.safetensors")):
        path = save_open_clip_checkpoint(tiny_clip.model, tmp_path / name, fmt)
        for arch in (None, TINY_CLIP):
            c = load_clip(path, arch=arch)
            assert torch.equal(c.encode_images(x), ref_img), (fmt, arch)
            assert torch.equal(c.encode_text(CAPTIONS), ref_txt), (fmt, arch)


def test_image_encoding_is_differentiable(tiny_clip):
    x = torch.zeros(2, 3, 20, 20, requires_grad=True)
    e = tiny_clip.encode_images(x)
    (e @ tiny_clip.encode_text("red").t()).sum().backward()
    assert e.shape == (2, 32) and x.grad is not None and x.grad.abs().sum() > 0


def test_tokenizer_works_offline(tiny_clip):
    import open_clip.tokenizer as tk

    assert os.path.isfile(tk.default_bpe()), "the BPE vocabulary must ship inside the open_clip package"
    t = tiny_clip.tokenize(["red", "blue hair"])
    assert t.shape == (2, 16) and t[0, 0] == t[1, 0] and not torch.equal(t[0], t[1])
    assert tk.SimpleTokenizer().decode(t[1, 1:3].tolist()).strip() == "blue hair"


@pytest.mark.parametrize("suffix", [".pt", ".bin"])
def test_pickle_payload_is_refused_and_never_runs(tiny_clip, tmp_path, suffix):
    marker = tmp_path / f"payload_ran{suffix}"
    sd = {k: v for k, v in tiny_clip.model.state_dict().items()}
    path = tmp_path / f"evil{suffix}"
    torch.save({"state_dict": sd, "extra": _Payload(marker)}, path)
    legacy = tmp_path / f"evil_legacy{suffix}"
    with open(legacy, "wb") as f:
        pickle.dump({"state_dict": sd, "extra": _Payload(marker)}, f)
    for p in (path, legacy):
        with pytest.raises(ClipFileError) as err:
            check_clip_file(p)
        assert "\n" not in str(err.value)
        with pytest.raises(ClipFileError):
            load_clip(p)
    assert not marker.exists(), "the payload ran"


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "ViT-B-32.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(ClipFileError, match="TorchScript"):
        read_state_dict(path)


def test_wrong_files_get_one_line_errors(tiny_clip, tmp_path):
    cases = {}
    cases["missing"] = tmp_path / "nope.pt"
    (tmp_path / "notes.txt").write_text("hello")
    cases["suffix"] = tmp_path / "notes.txt"
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    cases["garbage"] = tmp_path / "garbage.pt"
    torch.save({"conv1.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "arcface.pt")
    cases["other network"] = tmp_path / "arcface.pt"
    torch.save({"text_model.embeddings.token_embedding.weight": torch.zeros(4, 4),
                "vision_model.embeddings.patch_embedding.weight": torch.zeros(4, 3, 2, 2)}, tmp_path / "hf.bin")
    cases["hf"] = tmp_path / "hf.bin"
    torch.save([1, 2, 3], tmp_path / "list.pt")
    cases["not a dict"] = tmp_path / "list.pt"
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    cases["bad safetensors"] = tmp_path / "bad.safetensors"
    for what, path in cases.items():
        with pytest.raises(ClipFileError) as err:
            check_clip_file(path)
        assert "\n" not in str(err.value) and len(str(err.value)) < 300, what
    with pytest.raises(ClipFileError, match="Hugging Face"):
        check_clip_file(cases["hf"])
    # the right tensors under the wrong architecture name: a strict load says what does not match
    torch.save(tiny_clip.model.state_dict(), tmp_path / "tiny.bin")
    with pytest.raises(ClipFileError, match="does not match"):
        load_clip(tmp_path / "tiny.bin", arch="ViT-B-32")
    with pytest.raises(ClipFileError, match="unknown CLIP architecture"):
        load_clip(tmp_path / "tiny.bin", arch="ViT-Q-99")


def test_structure_check_without_building(tiny_clip_path):
    sd = read_state_dict(tiny_clip_path)
    assert not any(k.startswith("module.") for k in sd)
    info = check_clip_file(tiny_clip_path, build=False)
    assert info.config == infer_config(sd) and info.parameters == sum(v.numel() for v in sd.values())
    broken = dict(sd)
    broken.pop("text_projection")
    with pytest.raises(ClipFileError, match="not an open_clip ViT CLIP"):
        infer_config(broken)


def test_sidecar_and_named_configs(tiny_clip, tmp_path):
    import json

    from clip_fixture import TINY_CLIP, save_open_clip_checkpoint

    from models.clip_loader import named_config

    path = save_open_clip_checkpoint(tiny_clip.model, tmp_path / "open_clip_pytorch_model.bin", "bin")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    assert check_clip_file(path).source == "sidecar"
    # the configs open_clip ships are read offline; "-quickgelu" switches the activation
    cfg = named_config("ViT-B-32")
    assert cfg["vision_cfg"]["width"] == 768 and cfg["text_cfg"]["context_length"] == 77
    assert named_config("ViT-B-32-quickgelu")["quick_gelu"] is True
    # a named architecture is preferred over the sidecar: the tiny weights do not fit ViT-B-32
    with pytest.raises(ClipFileError, match="does not match"):
        check_clip_file(path, arch="ViT-B-32")
