"""studio/edits/model.py: edits save, load, stack; strength 0 is exactly no edit; bad input is plain."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from studio.edits.model import ActiveEdits, Edit, EditSet, apply_edits, parse_strengths
from studio.errors import InputError, ProjectError


def _edit(name, seed, engine="pvp", kind="text", **kw):
    g = torch.Generator().manual_seed(seed)
    return Edit(name=name, kind=kind, engine=engine, offset=torch.randn(4, 8, generator=g), **kw)


def test_save_load_stack_remove(tmp_path):
    es = EditSet(tmp_path / "edits" / "pvp", "pvp")
    a = es.save(_edit("blue hair", 0, prompt="blue hair", neutral="a face", layers=(1, 3), default_strength=0.8))
    b = es.save(_edit("component 3", 1, kind="direction", component=3, label="appearance"))
    again = EditSet(tmp_path / "edits" / "pvp", "pvp")
    assert again.names() == ["blue hair", "component 3"]
    got = again.get("blue hair")
    assert torch.equal(got.offset, a.offset) and got.layers == (1, 3) and got.neutral == "a face"
    assert got.default_strength == 0.8 and again.get("component 3").component == 3
    latent = torch.randn(2, 4, 8)
    stacked = apply_edits(latent, again, {"blue hair": 0.5, "component 3": -1.5})
    assert torch.allclose(stacked, latent + 0.5 * a.offset - 1.5 * b.offset)
    one = again.apply(latent, {"blue hair": 0.5})
    assert torch.allclose(again.apply(one, {"component 3": -1.5}), stacked, atol=1e-6), "edits stack"
    # strength 0 (or nothing) is the very same latent
    assert again.apply(latent, {"blue hair": 0.0, "component 3": 0.0}) is latent
    assert not again.bind({"blue hair": 0.0}) and again.bind({"blue hair": 0.1})
    # the list on disk names its files; the files hold the offsets
    index = json.loads((tmp_path / "edits" / "pvp" / "edits.json").read_text())
    files = {e["name"]: e["file"] for e in index["edits"]}
    assert all((tmp_path / "edits" / "pvp" / f).is_file() for f in files.values())
    again.remove("blue hair")
    assert not (tmp_path / "edits" / "pvp" / files["blue hair"]).exists()
    assert EditSet(tmp_path / "edits" / "pvp", "pvp").names() == ["component 3"]
    assert not list((tmp_path / "edits" / "pvp").glob("*.tmp*"))


def test_replace_keeps_one_file(tmp_path):
    es = EditSet(tmp_path, "nerf")
    es.save(_edit("red", 0, engine="nerf"))
    es.save(_edit("red", 1, engine="nerf"))
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    assert torch.equal(EditSet(tmp_path, "nerf").get("red").offset, _edit("red", 1).offset)
    with pytest.raises(InputError, match="exists already"):
        es.save(_edit("red", 2, engine="nerf"), overwrite=False)
    with pytest.raises(ProjectError, match="belongs to the pvp engine"):
        es.save(_edit("other", 2, engine="pvp"))


def test_bad_input_is_one_line(tmp_path):
    es = EditSet(tmp_path, "pvp")
    es.save(_edit("red", 0))
    for bad in ("", "   ", "x" * 81, "a=b"):
        with pytest.raises(InputError):
            _edit(bad, 0)
    with pytest.raises(InputError, match="no edit named 'blue'"):
        es.apply(torch.zeros(1, 4, 8), {"blue": 1.0})
    with pytest.raises(ProjectError, match="another model"):
        es.apply(torch.zeros(1, 5, 8), {"red": 1.0})
    with pytest.raises(InputError):
        Edit(name="x", kind="magic", engine="pvp")
    assert parse_strengths(["red=0.8", "red=-1.5"], es) == {"red": -1.5}
    assert parse_strengths(["red"], es) == {"red": 1.0}
    with pytest.raises(InputError, match="not a strength"):
        parse_strengths(["red=lots"], es)
    for value in ("nan", "inf", "-inf"):  # a NaN strength rendered a black face, inf a blank one
        with pytest.raises(InputError, match="not a strength"):
            parse_strengths([f"red={value}"], es)
    with pytest.raises(InputError, match="no edit named"):
        parse_strengths(["blue=1"], es)


def test_damaged_files_are_reported(tmp_path):
    es = EditSet(tmp_path, "pvp")
    saved = es.save(_edit("red", 0))
    (tmp_path / saved.file).write_bytes(b"garbage")
    with pytest.raises(ProjectError, match="damaged"):
        EditSet(tmp_path, "pvp")
    (tmp_path / saved.file).unlink()
    with pytest.raises(ProjectError, match="missing"):
        EditSet(tmp_path, "pvp")
    (tmp_path / "edits.json").write_text("{not json")
    with pytest.raises(ProjectError, match="damaged"):
        EditSet(tmp_path, "pvp")


def test_active_edits_on_engine_latents():
    off = torch.ones(3, 2)
    act = ActiveEdits([("a", off, 2.0), ("b", off, 0.0)])
    assert act.describe() == "a=2" and np.allclose(act.apply(torch.zeros(1, 3, 2)).numpy(), 2.0)
