"""The speed probe: real training steps (the prior's at the preset's batch, the NeRF's own) timed and
extrapolated to the preset's step counts."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from studio import speed_probe
from studio.stages import REGISTRY

torch.set_num_threads(1)


def test_probe_times_real_steps_and_prices_every_training_stage(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    est = speed_probe.probe(resolution=32, steps=1)
    assert est.device == "cpu" and not est.gpu_found and est.threads == 1
    preview = REGISTRY["prior"].preset("preview")
    assert set(est.measured) == {preview.batch}, "the preview batch is timed as it is, not extrapolated"
    assert all(0 < s < 60 for s in est.measured.values())
    assert math.isfinite(est.step_seconds) and est.step_seconds == est.measured[preview.batch]
    assert est.batch == preview.batch and est.resolution == 32
    assert {"prior", "pti", "mappers", "nerf", "pivots"} <= set(est.stage_seconds)
    assert est.stage_seconds["prior"] == pytest.approx(preview.steps * est.step_seconds)
    assert est.nerf_step_seconds is not None and 0 < est.nerf_step_seconds < 60, "the NeRF's own step is timed"
    assert est.stage_seconds["nerf"] == pytest.approx(REGISTRY["nerf"].preset("preview").steps * est.nerf_step_seconds)
    stages = speed_probe.engine_stages()
    assert est.engine_seconds["pvp"] == pytest.approx(sum(est.stage_seconds[s] for s in stages["pvp"]))
    assert est.engine_seconds["nerf"] == pytest.approx(est.stage_seconds["nerf"])
    text = est.describe()
    assert "StyleGAN avatar" in text and "NeRF avatar" in text and "No GPU found" in text


def test_a_batch_over_the_direct_limit_is_extrapolated_from_batches_1_and_4(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = REGISTRY["prior"]
    original = spec.preset
    monkeypatch.setattr(spec, "preset", lambda name: dataclasses.replace(original(name), batch=16))
    est = speed_probe.probe(resolution=32, steps=1, nerf=False)
    assert set(est.measured) == {1, 4} and est.batch == 16
    per_image = max(0.0, (est.measured[4] - est.measured[1]) / 3)
    assert est.step_seconds == pytest.approx(max(0.0, est.measured[1] - per_image) + 16 * per_image)
    assert est.nerf_step_seconds is None
    assert est.stage_seconds["nerf"] > 0, "without its own step the NeRF is priced from the prior's"


def test_a_measured_nerf_step_prices_the_nerf_stage_alone(monkeypatch):
    import studio.model_files as model_files

    for arcface in (None, "x.pt"):   # the measured step already holds the face losses or not
        monkeypatch.setattr(model_files, "arcface_path", lambda: arcface)
        stages, engines = speed_probe.estimate(1.0, nerf_step_seconds=0.25)
        steps = REGISTRY["nerf"].preset("preview").steps
        assert stages["nerf"] == pytest.approx(0.25 * steps) and engines["nerf"] == pytest.approx(stages["nerf"])
        ratio, _ = speed_probe.estimate(1.0)
        assert stages["prior"] == ratio["prior"] and stages["mappers"] == ratio["mappers"]


def test_estimate_follows_the_step_time_and_the_preset_step_counts(monkeypatch):
    one, engines_one = speed_probe.estimate(1.0)
    two, engines_two = speed_probe.estimate(2.0)
    assert all(two[k] == pytest.approx(2 * one[k]) for k in one)
    assert engines_two["pvp"] == pytest.approx(2 * engines_one["pvp"])
    spec = REGISTRY["mappers"]
    original = spec.preset

    def doubled(name):
        cfg = original(name)
        return dataclasses.replace(cfg, steps=cfg.steps * 2)

    monkeypatch.setattr(spec, "preset", doubled)
    more, _ = speed_probe.estimate(1.0)
    assert more["mappers"] == pytest.approx(2 * one["mappers"])
    assert more["prior"] == pytest.approx(one["prior"])
    quality, _ = speed_probe.estimate(1.0, "quality")
    assert quality["prior"] > one["prior"], "the quality preset trains more steps"


def test_cancel_stops_a_running_probe():
    import threading

    from studio.errors import Cancelled

    steps_run = []
    original = speed_probe._time_steps

    def counting(*args, **kwargs):
        steps_run.append(1)
        return original(*args, **kwargs)

    outcome = {}

    def run():
        try:
            speed_probe.probe(resolution=32, steps=10_000)
        except Cancelled as exc:
            outcome["cancelled"] = exc

    speed_probe._time_steps, saved = counting, speed_probe._time_steps
    try:
        t = threading.Thread(target=run)
        t.start()
        import time

        while not steps_run:  # the probe is inside its timing loop
            time.sleep(0.05)
        speed_probe.cancel()
        t.join(timeout=120)
    finally:
        speed_probe._time_steps = saved
    assert not t.is_alive() and "cancelled" in outcome, "a cancelled probe must stop, not run 10000 steps"
    assert speed_probe.probe(resolution=32, steps=1).step_seconds > 0, "the next probe runs again"


@pytest.mark.parametrize("stage", ["nerf", "pti"])
def test_estimate_prices_the_face_losses_when_arcface_is_configured(monkeypatch, tmp_path, stage):
    import studio.model_files as model_files

    monkeypatch.setattr(model_files, "arcface_path", lambda: None)
    without, _ = speed_probe.estimate(1.0)
    monkeypatch.setattr(model_files, "arcface_path", lambda: tmp_path / "arcface.pt")
    with_face, engines = speed_probe.estimate(1.0)
    cost = speed_probe.FACE_LOSS_COST[stage]
    assert with_face[stage] == pytest.approx(cost * without[stage]) and cost > 1.05
    engine = "nerf" if stage == "nerf" else "pvp"
    assert engines[engine] == pytest.approx(sum(with_face[s] for s in speed_probe.engine_stages()[engine]
                                                if s in with_face))
    assert with_face["prior"] == pytest.approx(without["prior"])
    assert with_face["mappers"] == pytest.approx(without["mappers"])
    spec = REGISTRY[stage]
    original = spec.preset
    monkeypatch.setattr(spec, "preset", lambda name: dataclasses.replace(original(name), face_weight=0.0,
                                                                          identity_weight=0.0))
    off, _ = speed_probe.estimate(1.0)
    assert off[stage] == pytest.approx(without[stage])


def test_every_stage_of_an_engine_is_priced():
    """A stage added to an engine without a measured cost would make `run`'s estimate silently short."""
    from studio.engines import ENGINES

    stages, engines = speed_probe.estimate(1.0)
    for name, spec in ENGINES.items():
        for stage in spec.stages:
            assert stages.get(stage, 0.0) > 0, f"stage '{stage}' of engine '{name}' has no cost in speed_probe"


def test_a_step_is_priced_by_the_lower_quartile_after_two_warm_ups(monkeypatch):
    """A shared machine runs a step slow now and then: one slow step of three moved the median-of-three probe's
    NeRF estimate from 36 to 53 min. Six steps after two warm-ups, the lower quartile: the slow ones drop out."""
    clock = [0.0]
    durations = iter([9.0, 9.0, 1.0, 5.0, 1.2, 1.1, 0.9, 7.0])   # two warm-ups, then six timed steps

    def step():
        clock[0] += next(durations)

    monkeypatch.setattr(speed_probe.time, "perf_counter", lambda: clock[0])
    assert speed_probe._time_steps(step, 6, "cpu") == pytest.approx(1.0)   # sorted 0.9, 1.0, 1.1, ...: the 2nd


def test_run_reprices_the_stages_left_at_the_run_s_own_pace():
    """`run` says after each trained stage how long it took against the speed test's price and how long the rest
    will take at the pace seen so far; stages already done, resumed ones and unpriced ones do not set the pace."""
    from studio.speed_probe import RunPace

    est = speed_probe.SpeedEstimate(device="cpu", gpu_found=False, gpu_name="", threads=2, preset="preview",
                                    batch=8, resolution=128, step_seconds=0.5,
                                    stage_seconds={"pivots": 3.0, "prior": 600.0, "pti": 300.0, "mappers": 600.0})
    clock = RunPace(est, ["track", "pivots", "prior", "pti", "mappers"])
    assert clock.after("prior") == "then about 15 min for Pivotal tuning, Pose & expression control"
    assert clock.stage_done("track", {}, 5.0) is None and clock.stage_done("pivots", {}, 9.0) is None
    assert clock.ratio() == 1.0, "tracking is not priced, the pivots' seconds say nothing"
    line = clock.stage_done("prior", {"summary": {"resumed_from": 0}}, 720.0)
    assert clock.ratio() == pytest.approx(1.2)
    assert line == ("Subject prior took 12:00 (the speed test said 10:00); about 18 min left for Pivotal tuning, "
                    "Pose & expression control "
                    "(this run goes 1.2 times slower than the speed test said)")
    assert clock.after("pti") == "then about 12 min for Pose & expression control", "re-priced at the run's pace"
    assert clock.stage_done("pti", {}, 0.4) is None                  # already up to date
    assert clock.ratio() == pytest.approx(1.2) and clock.after("mappers") == ""
    fast = RunPace(est, ["prior", "pti", "mappers"])
    line = fast.stage_done("prior", {"summary": {"resumed_from": 800}}, 100.0)   # resumed: its time says nothing
    assert fast.ratio() == 1.0 and line.endswith("about 15 min left for Pivotal tuning, Pose & expression control")
    line = fast.stage_done("pti", {}, 150.0)
    assert line.endswith("about 5 min left for Pose & expression control (this run goes 2.0 times faster than the speed test said)")
    assert fast.stage_done("mappers", {}, 300.0) is None, "nothing is left after the last stage"


def test_the_steps_are_timed_in_the_precision_their_stages_train_in(monkeypatch):
    """On a CPU with bfloat16 instructions the training stages train in bfloat16; the probe times the prior's
    and the NeRF's steps so, and `run` says so in its time estimate, naming the instructions."""
    import types

    from studio import compute
    from studio.cli import project_commands

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("AVATAR_STUDIO_PRECISION", "bf16")
    monkeypatch.setattr(compute, "cpu_bf16_instructions", lambda: "AMX")
    seen = []
    real = compute.autocast
    monkeypatch.setattr(compute, "autocast", lambda precision, device: seen.append(precision) or real(precision, device))
    probe = speed_probe.probe
    est = probe(resolution=32, steps=1, nerf=False)
    assert est.precision == "bf16" and seen and set(seen) == {"bf16"}
    seen.clear()
    nstep, _ = speed_probe.nerf_step("preview", "cpu")
    nstep()
    assert nstep.precision == "bf16" and seen == ["bf16"]
    monkeypatch.setattr(speed_probe, "probe", lambda preset, device: est)
    project = types.SimpleNamespace(preset="preview", device="cpu")
    text, _ = project_commands._time_estimate(project, ["pvp"], ["prior", "pti", "mappers"], None)
    assert "bfloat16 arithmetic: this CPU has AMX" in text
    monkeypatch.delenv("AVATAR_STUDIO_PRECISION")                         # "auto" on an AVX512-BF16 CPU:
    monkeypatch.setattr(compute, "cpu_bf16_instructions", lambda: "AVX512-BF16")
    est_amd = probe(resolution=32, steps=1, nerf=True)                    # the NeRF's steps stay float32
    assert (est_amd.precision, est_amd.nerf_precision) == ("bf16", "fp32")
    assert "bfloat16 arithmetic (the NeRF's in float32): this CPU has AVX512-BF16" in est_amd.where()
    monkeypatch.setenv("AVATAR_STUDIO_PRECISION", "bf16")
    monkeypatch.setattr(compute, "cpu_bf16_instructions", lambda: "")     # asked for on a CPU without them
    est_sw = probe(resolution=32, steps=1, nerf=False)
    assert est_sw.precision == "bf16" and est_sw.bf16_instructions == ""
    assert est_sw.where().endswith("(1 thread, bfloat16 arithmetic)"), est_sw.where()
    monkeypatch.setenv("AVATAR_STUDIO_PRECISION", "fp32")
    est = probe(resolution=32, steps=1, nerf=False)
    assert est.precision == "fp32"
    text, _ = project_commands._time_estimate(project, ["pvp"], ["prior", "pti", "mappers"], None)
    assert "bfloat16" not in text and "CPU (1 thread)" in text
