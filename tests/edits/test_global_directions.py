"""StyleCLIP global directions over the adapters' latent channels, with the tiny CLIP."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.clip_loader import open_clip_available

if not open_clip_available():
    from conftest import skip_module_without_open_clip

    skip_module_without_open_clip()

from studio.edits.adapters import adapter_for  # noqa: E402
from studio.edits.global_directions import (ChannelEffects, ChannelEffectsConfig, global_edit,  # noqa: E402
                                            load_effects, save_effects, text_direction)
from studio.edits.model import ActiveEdits  # noqa: E402


@pytest.fixture(scope="module")
def pvp_effects(tiny_clip, pvp_engine):
    eff = ChannelEffects(adapter_for(pvp_engine), tiny_clip, ChannelEffectsConfig(samples=3, chunk=64))
    while not eff.done:
        eff.step()
    return eff


def test_global_red_direction_raises_red_share(pvp_effects, tiny_clip, tmp_path):
    from avatars import face_region, red_share

    a = pvp_effects.adapter
    d = text_direction(tiny_clip, "red", neutral="grey", templates=("{}",))
    edit = global_edit(pvp_effects.effects, pvp_effects.sigma, a.latent_shape, "pvp", d, "red", "grey", beta=0.1)
    assert edit.kind == "global" and 0 < edit.summary["channels_kept"] < edit.summary["channels"]
    sweep = a.sweep_controls()
    before = a.engine.render_controls(sweep)
    after = a.render_uint8(sweep, ActiveEdits([("red", edit.offset, 1.0)]))
    gain = red_share(after, face_region(a.size)) - red_share(before, face_region(a.size))
    assert (gain > 0.01).all(), np.round(gain, 3)
    # a higher threshold keeps fewer channels
    strict = global_edit(pvp_effects.effects, pvp_effects.sigma, a.latent_shape, "pvp", d, "red", "grey", beta=0.5)
    assert strict.summary["channels_kept"] < edit.summary["channels_kept"]
    # the cache round-trips and is keyed to the model
    save_effects(pvp_effects, tmp_path / "effects.safetensors", key="mappers-run-1")
    eff, sig = load_effects(tmp_path / "effects.safetensors", key="mappers-run-1")
    assert torch.equal(eff, pvp_effects.effects) and torch.equal(sig, pvp_effects.sigma)
    assert load_effects(tmp_path / "effects.safetensors", key="mappers-run-2") is None


@pytest.mark.parametrize("method,chunk,after_one", [("finite", 128, 128), ("gradient", 8, 1)])
def test_effects_resume_exactly(tiny_clip, nerf_engine, method, chunk, after_one):
    a = adapter_for(nerf_engine)
    cfg = ChannelEffectsConfig(samples=2, chunk=chunk, method=method)
    straight = ChannelEffects(a, tiny_clip, cfg)
    while not straight.done:
        straight.step()
    part = ChannelEffects(a, tiny_clip, cfg)
    part.step()
    resumed = ChannelEffects(a, tiny_clip, cfg)
    resumed.load_state_dict(part.state_dict())
    assert resumed.next == after_one and resumed.steps == 1
    while not resumed.done:
        resumed.step()
    assert torch.allclose(resumed.effects, straight.effects, atol=1e-6)
    assert straight.effects.shape == (a.latent_shape[0] * a.latent_shape[1], 32)
    assert (straight.effects.norm(dim=1) > 0).any()
