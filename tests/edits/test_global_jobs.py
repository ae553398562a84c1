"""StyleCLIP global directions wired end to end (studio/edits/jobs.py: compute_channel_effects,
find_global_edit) on the tiny trained projects with the tiny red/green/blue CLIP added through the
Models path: the effects job resumes after a cancel with the same result, its cache is reused and
invalidated by a retrained model, a "red" global edit raises the red share of the face over a pose ×
expression sweep, strength 0 is the unedited render, and the two ways of measuring a channel's
effect (StyleCLIP's finite difference, its first-order gradient form) agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.clip_loader import open_clip_available

if not open_clip_available():
    from conftest import skip_module_without_open_clip

    skip_module_without_open_clip()

from studio.avatar import Avatar  # noqa: E402
from studio.edits import jobs  # noqa: E402
from studio.edits.adapters import adapter_for  # noqa: E402
from studio.edits.global_directions import ChannelEffects, ChannelEffectsConfig  # noqa: E402
from studio.edits.model import EditSet  # noqa: E402
from studio.errors import Cancelled  # noqa: E402
from studio.progress import Control  # noqa: E402

FAST = dict(samples=3, chunk=8)       # gradient method: 3 samples x 4 row chunks of the 32-d tiny CLIP


def _sweep_red_gain(proj, engine, name, strength):
    from avatars import face_region, red_share

    avatar = Avatar.open(proj, engine)
    a = adapter_for(avatar.engine)
    sweep = a.sweep_controls(5, 3)
    before, _ = avatar.render_batch(sweep)
    after, _ = avatar.render_batch(sweep, edits={name: strength})
    region = face_region(before.shape[1])
    return red_share(after, region) - red_share(before, region), before, after


# ----------------------------------------------------------------------------- the effects job
def test_effects_job_resumes_after_cancel_with_the_same_result(project_copy, clip_added):
    straight = jobs.compute_channel_effects(project_copy("pvp"), "pvp", **FAST)
    assert not straight["cached"] and straight["effects"].shape[1] == 32

    proj = project_copy("pvp")
    control = Control()
    events = []

    def cancel_after_two(ev):
        events.append(ev)
        if ev.part == "effects" and ev.step == 2:
            control.cancel()

    with pytest.raises(Cancelled):
        jobs.compute_channel_effects(proj, "pvp", on_progress=cancel_after_two, control=control, **FAST)
    total = [e for e in events if e.part == "effects"][-1].total
    assert total == 12, total
    ckpt = EditSet.folder_for(proj, "pvp") / "jobs" / "channel_effects" / "train.ckpt"
    assert ckpt.is_file() and not jobs.effects_path(proj, "pvp").exists()
    events = []
    resumed = jobs.compute_channel_effects(proj, "pvp", on_progress=events.append, **FAST)
    assert resumed["resumed_from"] == {"effects": 2}
    assert any("resuming the channel effects at step 2 of 12" in e.message for e in events)
    steps = [e.step for e in events if e.part == "effects" and e.total == 12]
    assert steps[0] == 2 and steps[-1] == 12 and 1 not in steps
    assert torch.equal(resumed["effects"], straight["effects"]), "a resumed run ends with the same effects"
    assert torch.equal(resumed["sigma"], straight["sigma"])
    assert not ckpt.parent.exists(), "the job's checkpoint folder goes once the cache is written"


def test_cache_reused_invalidated_by_retraining_and_settings(project_copy, clip_added):
    proj = project_copy("pvp")
    first = jobs.compute_channel_effects(proj, "pvp", **FAST)
    assert not first["cached"] and jobs.effects_path(proj, "pvp").is_file()
    again = jobs.compute_channel_effects(proj, "pvp", **FAST)
    assert again["cached"] and torch.equal(again["effects"], first["effects"])
    edit = jobs.find_global_edit(proj, "pvp", "red", **FAST)
    assert edit.summary["effects_cached"] is True
    other = jobs.compute_channel_effects(proj, "pvp", samples=2, chunk=8)        # other settings: computed
    assert not other["cached"]
    # the mappers retrained (a new run id): the cache belongs to the old model
    proj.update_record("mappers", run_id="map1")
    retrained = jobs.compute_channel_effects(proj, "pvp", **FAST)
    assert not retrained["cached"]
    assert jobs.compute_channel_effects(proj, "pvp", **FAST)["cached"]
    # and the old global edit is marked as made for an earlier training
    assert "made for an earlier training" in jobs.describe_edit(proj, EditSet.for_project(proj, "pvp").get("red"))


# ----------------------------------------------------------------------------- a "red" global edit
@pytest.mark.parametrize("engine", ["pvp", "nerf"])
def test_red_global_edit_raises_red_over_the_sweep_and_strength_zero_is_unedited(project_copy, clip_added, engine):
    proj = project_copy(engine)
    events = []
    edit = jobs.find_global_edit(proj, engine, "red", neutral="grey", beta=0.1, on_progress=events.append, **FAST)
    assert edit.kind == "global" and edit.prompt == "red" and edit.neutral == "grey" and edit.threshold == 0.1
    assert 0 < edit.summary["channels_kept"] < edit.summary["channels"]
    assert edit.summary["effects_cached"] is False and edit.summary["method"] == "gradient"
    parts = [e.part for e in events]
    assert parts[0] == "load" and "effects" in parts and parts[-1] == "save"
    saved = EditSet.for_project(proj, engine).get("red")
    assert saved.kind == "global" and torch.equal(saved.offset, edit.offset)
    assert EditSet.for_project(proj, engine).preview_path("red").is_file()
    gain, before, after = _sweep_red_gain(proj, engine, "red", 1.0)
    assert (gain > 0.005).all(), np.round(gain, 3)
    gain2, _, _ = _sweep_red_gain(proj, engine, "red", 2.0)
    assert (gain2 > gain).all(), (np.round(gain, 3), np.round(gain2, 3))
    _, before0, after0 = _sweep_red_gain(proj, engine, "red", 0.0)
    assert np.array_equal(after0, before0), "strength 0 renders the unedited image"
    # the opposite strength takes red away
    neg, _, _ = _sweep_red_gain(proj, engine, "red", -1.0)
    assert (neg < 0).mean() >= 0.8, np.round(neg, 3)


def test_global_edit_does_not_replace_a_text_edit_and_a_higher_beta_keeps_fewer(project_copy, clip_added):
    from studio.edits.model import Edit

    proj = project_copy("pvp")
    L, D = adapter_for(Avatar.open(proj, "pvp").engine).latent_shape
    EditSet.for_project(proj, "pvp").save(Edit(name="red", kind="text", engine="pvp", offset=torch.zeros(L, D),
                                                prompt="red"))
    loose = jobs.find_global_edit(proj, "pvp", "red", beta=0.05, **FAST)
    assert loose.name == "red (global)" and EditSet.for_project(proj, "pvp").get("red").kind == "text"
    strict = jobs.find_global_edit(proj, "pvp", "red", name="strict red", beta=0.6, **FAST)
    assert strict.summary["channels_kept"] < loose.summary["channels_kept"]
    assert strict.summary["effects_cached"] is True
    line = jobs.describe_edit(proj, strict)
    assert 'global direction "red"' in line and "β 0.6" in line and f"of {L * D} channels" in line


# ----------------------------------------------------------------------------- gradient vs finite
def test_gradient_effects_match_finite_differences(tiny_clip, pvp_engine):
    """The first-order form measures what StyleCLIP's central difference measures: for the channels that
    matter to "red" (the top of its relevance) the two effects point the same way."""
    from studio.edits.global_directions import text_direction

    a = adapter_for(pvp_engine)
    found = {}
    for method, chunk in (("finite", 64), ("gradient", 32)):
        eff = ChannelEffects(a, tiny_clip, ChannelEffectsConfig(samples=3, method=method, chunk=chunk))
        while not eff.done:
            eff.step()
        assert eff.steps == eff.total_steps
        found[method] = eff.effects
    d = text_direction(tiny_clip, "red", "grey", templates=("{}",))
    rel_f, rel_g = found["finite"] @ d, found["gradient"] @ d
    r = np.corrcoef(rel_f.numpy(), rel_g.numpy())[0, 1]
    assert r > 0.9, r
    top = rel_f.abs().argsort(descending=True)[:32]
    cos = torch.nn.functional.cosine_similarity(found["finite"][top], found["gradient"][top], dim=-1)
    assert cos.median() > 0.9, cos


def test_bad_settings_are_one_line_errors(project_copy, clip_added):
    from studio.errors import InputError

    proj = project_copy("pvp")
    with pytest.raises(InputError, match="unknown channel-effects method 'exact'"):
        jobs.compute_channel_effects(proj, "pvp", method="exact")
    with pytest.raises(InputError, match="unknown channel-effects setting"):
        jobs.compute_channel_effects(proj, "pvp", steps=3)
    with pytest.raises(InputError, match=r"β must be in \[0, 1\)"):
        jobs.find_global_edit(proj, "pvp", "red", beta=1.5)
    with pytest.raises(InputError, match="needs a prompt"):
        jobs.find_global_edit(proj, "pvp", "  ")


def test_worker_runs_both_methods_and_the_effects_job(project_copy, clip_added):
    """studio/workers/edit_process.run_job (what the child process and the GUI's in-thread fallback call)."""
    from studio.workers.edit_process import run_job

    proj = project_copy("pvp")
    events = []
    res = run_job(proj, "pvp", "effects", dict(FAST), Control(), events.append)
    assert res["cached"] is False and res["channels"] == 256 and res["method"] == "gradient"
    assert res["path"].endswith("channel_effects.safetensors")
    res = run_job(proj, "pvp", "text", {"prompt": "red", "method": "global", "steps": 50, "beta": 0.2, **FAST},
                  Control(), events.append)
    assert res["kind"] == "global" and res["threshold"] == 0.2 and res["name"] == "red"
    assert events[-1].part == "save" and events[-1].preview is not None and events[-1].preview.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown text-edit method 'mapper'"):
        run_job(proj, "pvp", "text", {"prompt": "red", "method": "mapper"}, Control(), events.append)
