"""Fakes for GUI tests: a small training stage, a failing stage, a synthetic tracked project,
and an avatar engine whose image depends on its controls.

They test the window's plumbing (workers, signals, throttling, dialogs), not any model: the
fake engine draws a face-like disc with numpy; it is not a trained avatar.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import cv2
import numpy as np

from studio.config import config_hash, opt, to_dict
from studio.errors import InputError

FAKE_TRAIN = "fake_train"
FAKE_FAIL = "fake_fail"
FAKE_BUG = "fake_bug"


@dataclass
class FakeTrainConfig:
    steps: int = opt(60, "Training steps.", minimum=1, maximum=100000)
    step_seconds: float = opt(0.02, "Sleep per step (simulated I/O).", minimum=0.0)
    learning_rate: float = opt(0.002, "Adam learning rate.", minimum=1e-6, maximum=1.0)
    size: int = opt(64, "Preview side in pixels.", choices=(32, 64, 128))
    torch_work: bool = opt(True, "Do a little real torch work in every step (holds the GIL in bursts).")
    note: str = opt("", "A free text field.", advanced=True)
    clip: float | None = opt(None, "Optional gradient clip (empty = none).", advanced=True)


FAKE_PRESETS = {"preview": FakeTrainConfig(), "quality": FakeTrainConfig(steps=400, size=128)}


def fake_train_run(ctx, cfg: FakeTrainConfig):
    """Fits a tiny conv net to a gradient image with torch through the shared training loop,
    yielding losses and a preview each step."""
    import torch

    from studio.loop import TrainingLoop

    loop = TrainingLoop(ctx, seed=0, checkpoint_every_s=0.3)
    s = cfg.size
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    target = torch.stack([xx.abs(), yy.abs(), (xx * yy + 1) / 2])[None]          # (1, 3, S, S)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 3, 3, padding=1), torch.nn.Sigmoid())
    opt_ = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    inp = torch.stack([xx, yy])[None]
    loop.track("net", net)
    loop.track("opt", opt_)
    last = {}

    def step(i):
        if cfg.torch_work:
            out = net(inp)
            loss = torch.nn.functional.mse_loss(out, target)
            opt_.zero_grad()
            loss.backward()
            opt_.step()
            lv = float(loss.detach())
            img = (out[0].detach().permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        else:
            lv, img = 1.0 / (i + 1), np.full((s, s, 3), (i + 1) % 255, np.uint8)
        last["grid"] = np.concatenate([img, (target[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)], 1)
        last["mse"] = lv
        time.sleep(cfg.step_seconds)
        return {"mse": lv, "l1": lv ** 0.5}

    yield from loop.part("fit", cfg.steps, step, preview=lambda: last["grid"], preview_every=1, message="fitting")
    fig = loop.finish()
    return {"outputs": {}, "summary": {"final_mse": last.get("mse"), "steps": cfg.steps,
                                       "resumed_from": (fig.get("resumed_from") or {}).get("fit", 0)}}


@dataclass
class FakeFailConfig:
    bug: bool = opt(False, "Raise an unexpected error instead of a StudioError.")


def fake_fail_run(ctx, cfg: FakeFailConfig):
    yield ctx.progress(0, 2, message="starting")
    raise InputError("the video has no face in it", "choose a video where one face is clearly visible")


def fake_bug_run(ctx, cfg: FakeFailConfig):
    yield ctx.progress(0, 2, message="starting")
    {}["missing"]  # an unexpected bug  # noqa: B018


def register_fakes():
    from studio.stages import REGISTRY, StageSpec, register

    added = []
    for spec in (
        StageSpec(FAKE_TRAIN, "Fake training", FakeTrainConfig, FAKE_PRESETS, fake_train_run, trains=True,
                  description="A test stage: fits a tiny network, with live losses and previews."),
        StageSpec(FAKE_FAIL, "Fake failure", FakeFailConfig, {"preview": FakeFailConfig()}, fake_fail_run,
                  description="A test stage that fails with a readable error."),
        StageSpec(FAKE_BUG, "Fake bug", FakeFailConfig, {"preview": FakeFailConfig()}, fake_bug_run,
                  description="A test stage with a bug."),
    ):
        if spec.name not in REGISTRY:
            register(spec)
            added.append(spec.name)
    return added


def unregister(names):
    from studio.stages import REGISTRY

    for n in names:
        REGISTRY.pop(n, None)


# --------------------------------------------------------------------------- synthetic tracking
def mark_done(project, name: str, outputs: dict, result: dict | None = None) -> None:
    """Record `name` as finished with its current config, as `run_stage` would."""
    from studio.pipeline import spec, stage_config

    cfg = stage_config(project, name)
    upstream = {up: project.record(up).get("run_id") for up in spec(name).depends_on}
    res = dict(result or {})
    res.setdefault("outputs", outputs)
    project.update_record(name, status="done", config=to_dict(cfg), config_hash=config_hash(cfg),
                          upstream=upstream, run_id=uuid.uuid4().hex[:12], outputs=outputs, result=res, seconds=1.0)


def synthetic_tracked_project(root, n: int = 48, crop: int = 64):
    """A project whose ingest and track records are done, with synthetic tracking files."""
    from studio.project import Project
    from studio.tracking.data import EXPRESSION_NAMES, POSE_NAMES

    proj = Project.create(root)
    t = np.arange(n) / 30.0
    pose = np.stack([25 * np.sin(t * 2), 10 * np.cos(t * 3), 3 * np.sin(t)], 1).astype(np.float32)
    expr = np.clip(np.stack([0.5 + 0.5 * np.sin(t * (k + 1)) for k in range(len(EXPRESSION_NAMES))], 1), 0, 1)
    valid = np.ones(n, bool)
    valid[5] = False
    d = proj.stage_dir("track")
    (d / "crops").mkdir()
    for i in range(n):
        img = render_disc(crop, pose[i, 0] / 30, pose[i, 1] / 15, expr[i, 0])
        cv2.putText(img, str(i), (2, crop - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 0), 1)
        cv2.imwrite(str(d / "crops" / f"{i:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    np.savez(d / "tracking.npz", time=t, valid=valid, pose=pose, expr=expr.astype(np.float32),
             landmarks=np.zeros((n, 478, 3), np.float32), transforms=np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1)))
    (d / "tracking.json").write_text(json.dumps({
        "fps": 30.0, "frame_size": [128, 128], "crop_size": crop, "expression_names": EXPRESSION_NAMES,
        "pose_names": POSE_NAMES, "holdout_fraction": 0.15,
        "summary": {"yaw_range": [-25, 25], "pitch_range": [-10, 10]}}))
    mark_done(proj, "ingest", {})
    mark_done(proj, "track", {"tracking": "track/tracking.npz", "meta": "track/tracking.json"},
              {"summary": {"frames": n, "tracked": n - 1}})
    return proj


def render_disc(size: int, yaw: float, pitch: float, mouth: float, tint: float = 0.0) -> np.ndarray:
    """A face-like disc: position from yaw/pitch, mouth opening from `mouth`. (S, S, 3) uint8."""
    img = np.full((size, size, 3), 30, np.uint8)
    cx, cy = int(size / 2 + yaw * size / 4), int(size / 2 - pitch * size / 4)
    r = size // 3
    cv2.circle(img, (cx, cy), r, (int(200 - 80 * tint), 170, int(140 + 100 * tint)), -1)
    for ex in (-r // 2, r // 2):
        cv2.circle(img, (cx + ex, cy - r // 4), max(1, r // 8), (40, 40, 40), -1)
    cv2.ellipse(img, (cx, cy + r // 2), (r // 3, max(1, int(r / 3 * mouth))), 0, 0, 360, (120, 30, 40), -1)
    return img


class FakeEngine:
    """Renders `render_disc` from controls: the viewer's plumbing under test, not a trained avatar."""

    def __init__(self, name: str = "fake", size: int = 128, delay: float = 0.01):
        from studio.tracking.data import EXPRESSION_NAMES

        self.name, self.size, self.delay = name, size, delay
        self.control_names = ["yaw", "pitch", *EXPRESSION_NAMES[:4]]
        self.ranges = {"yaw": (-30.0, 30.0), "pitch": (-15.0, 15.0), **{n: (0.0, 1.0) for n in EXPRESSION_NAMES[:4]}}
        self.calls = 0

    def render_controls(self, controls: np.ndarray, edits=None) -> np.ndarray:
        self.calls += 1
        time.sleep(self.delay)
        tint = 1.0 if self.name.endswith("2") else 0.0
        return np.stack([render_disc(self.size, c[0] / 30, c[1] / 15, c[2], tint) for c in controls])


class FakeTrackedEngine(FakeEngine):
    """Same, with every expression name of the tracking data (so 'nearest frame' can match)."""

    def __init__(self, name: str = "fake", size: int = 128, delay: float = 0.01):
        super().__init__(name, size, delay)
        from studio.tracking.data import EXPRESSION_NAMES

        self.control_names = ["yaw", "pitch", *EXPRESSION_NAMES]
        self.ranges = {"yaw": (-30.0, 30.0), "pitch": (-15.0, 15.0), **{n: (0.0, 1.0) for n in EXPRESSION_NAMES}}


# --------------------------------------------------------------------------- a job for ProcessRunner
def fake_job(steps: int, fail: str, control, on_progress) -> dict:
    """`steps` steps with a loss each; then `fail`: "" returns, "error" raises an InputError,
    "exit" ends the process without a word (as an out-of-memory kill would)."""
    import os

    from studio.progress import Progress

    for i in range(steps):
        control.checkpoint()
        on_progress(Progress(stage="job", step=i + 1, total=steps, part="work", losses={"x": 1.0 / (i + 1)}))
        time.sleep(0.005)
    if fail == "error":
        raise InputError("the input is bad", "choose another input")
    if fail == "exit":
        os._exit(3)
    return {"steps": steps}


def fake_job_child(steps: int, fail: str, queue, cancel, running) -> None:
    """`fake_job` in a child process, through the helper every child uses."""
    from studio.workers.stage_process import child_run

    child_run(queue, cancel, running, "job",
              lambda reporter, control: reporter.run("job", lambda c, p: fake_job(steps, fail, c, p), control))
