"""StyleCLIP latent optimisation on tiny trained avatars of both engines, with the tiny CLIP."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.edits.adapters import adapter_for
from studio.edits.model import ActiveEdits
from studio.edits.styleclip import StyleClipConfig, StyleClipSearch, find_text_edit

from models.clip_loader import open_clip_available

if not open_clip_available():
    from conftest import skip_module_without_open_clip

    skip_module_without_open_clip()

STEPS = {"pvp": 40, "nerf": 40}


@pytest.fixture(scope="module")
def red_edits(tiny_clip, pvp_engine, nerf_engine):
    out = {}
    for name, eng in (("pvp", pvp_engine), ("nerf", nerf_engine)):
        a = adapter_for(eng)
        out[name] = (a, find_text_edit(a, tiny_clip, "red", steps=STEPS[name], batch=3, augmentations=3))
    return out


@pytest.mark.parametrize("engine", ["pvp", "nerf"])
def test_red_edit_raises_red_share_everywhere(red_edits, engine):
    from avatars import face_region, red_share

    a, edit = red_edits[engine]
    assert edit.kind == "text" and edit.engine == engine and edit.offset.shape == a.latent_shape
    assert edit.summary["clip_loss_end"] < edit.summary["clip_loss_start"]
    sweep = a.sweep_controls(5, 3)
    assert len(sweep) == 15 and len(np.unique(sweep[:, 0])) == 5
    before = a.engine.render_controls(sweep)
    after = a.render_uint8(sweep, ActiveEdits([("red", edit.offset, 1.0)]))
    region = face_region(a.size)
    gain = red_share(after, region) - red_share(before, region)
    assert (gain > 0.01).all(), f"{engine}: red share gain per sweep point {np.round(gain, 3)}"


@pytest.mark.parametrize("engine", ["pvp", "nerf"])
def test_strength_zero_is_the_unedited_render(red_edits, engine):
    a, edit = red_edits[engine]
    sweep = a.sweep_controls()
    plain = a.engine.render_controls(sweep)
    assert np.array_equal(a.render_uint8(sweep, ActiveEdits([("red", edit.offset, 0.0)])), plain)
    assert np.array_equal(a.render_uint8(sweep, None), plain)
    # the adapter's differentiable path is the engine's own render
    from studio.metrics import to_uint8

    with torch.no_grad():
        c = torch.from_numpy(sweep)
        assert np.array_equal(to_uint8(a.render(a.latent(c), c)), plain)


def test_search_resumes_exactly(pvp_engine, tiny_clip):
    a = adapter_for(pvp_engine)
    cfg = StyleClipConfig(prompt="red", steps=4, batch=2, augmentations=2, w_background=0.5, layers=(2, 6))
    straight = StyleClipSearch(a, tiny_clip, cfg)
    for _ in range(4):
        straight.step()
    first = StyleClipSearch(a, tiny_clip, cfg)
    for _ in range(2):
        first.step()
    state = first.state_dict()
    resumed = StyleClipSearch(a, tiny_clip, cfg)
    resumed.load_state_dict(state)
    while not resumed.done:
        parts = resumed.step()
    assert "background" in parts
    assert torch.allclose(resumed.delta(), straight.delta(), atol=1e-6)
    d = resumed.delta()
    assert d[2:6].abs().sum() > 0 and d[:2].abs().sum() == 0 and d[6:].abs().sum() == 0, "layer range respected"
    edit = resumed.result()
    assert edit.layers == (2, 6) and edit.summary["steps"] == 4
    prev = resumed.preview()
    assert prev.shape == (2 * a.size, 3 * a.size, 3) and prev.dtype == np.uint8


def test_identity_term_with_arcface(pvp_engine, tiny_clip):
    from pathlib import Path

    from models.arcface import load_arcface

    p = Path(__file__).resolve().parents[3] / "shared" / "weights" / "arcface_mobilefacenet.pt"
    if not p.exists():
        pytest.skip(f"needs the ArcFace weights {p} (../shared beside the repo)")
    a = adapter_for(pvp_engine)
    search = StyleClipSearch(a, tiny_clip, StyleClipConfig(prompt="red", steps=2, batch=2, augmentations=1),
                             load_arcface(p))
    search.step()
    parts = search.step()
    assert 0 <= parts["identity"] < 1 and np.isfinite(parts["total"])


def test_bad_requests_say_so(pvp_engine, tiny_clip):
    from studio.errors import InputError

    a = adapter_for(pvp_engine)
    with pytest.raises(InputError, match="prompt"):
        StyleClipSearch(a, tiny_clip, StyleClipConfig(prompt="  "))
    with pytest.raises(InputError, match="layer range"):
        StyleClipSearch(a, tiny_clip, StyleClipConfig(prompt="red", layers=(3, 99)))


def test_saved_edit_renders_through_the_engine(red_edits, tmp_path):
    """A saved and reloaded edit, bound with a strength, goes through PVPEngine.render_controls(edits=...)
    as it is today, and matches the adapter's render; two edits stack."""
    from studio.edits.model import EditSet

    a, edit = red_edits["pvp"]
    es = EditSet(tmp_path / "edits" / "pvp", "pvp")
    es.save(edit)
    es.save(type(edit)(name="half red", kind="text", engine="pvp", offset=0.5 * edit.offset, prompt="red"))
    again = EditSet(tmp_path / "edits" / "pvp", "pvp")
    sweep = a.sweep_controls()
    bound = again.bind({"red": 0.5, "half red": 1.0})
    via_engine = a.engine.render_controls(sweep, edits=bound)
    assert np.array_equal(via_engine, a.render_uint8(sweep, bound))
    once = a.render_uint8(sweep, again.bind({"red": 1.0}))
    assert np.abs(via_engine.astype(int) - once.astype(int)).max() <= 1, "0.5·red + 1·(half red) = 1·red"
    assert not np.array_equal(once, a.engine.render_controls(sweep))


def test_direction_form_with_neutral_prompt(pvp_engine, tiny_clip):
    a = adapter_for(pvp_engine)
    search = StyleClipSearch(a, tiny_clip, StyleClipConfig(prompt="red", neutral="grey", steps=2, batch=2,
                                                           augmentations=2))
    first = search.step()
    assert 0 <= first["clip"] <= 2 and search.step()["clip"] <= 2
    assert search.result().neutral == "grey"
