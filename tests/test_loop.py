"""The shared training loop: pauses never count against a wall-clock cap, a cap that cuts
training short is reported, and resume continues at the exact step with the exact random state."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.loop import TrainingLoop
from studio.progress import Control
from studio.stages.base import StageContext


class _Project:
    """The two things the loop asks of a project: where to note progress."""

    def __init__(self):
        self.records: dict[str, dict] = {}

    def update_record(self, stage, **fields):
        self.records.setdefault(stage, {}).update(fields)


def _ctx(tmp_path: Path, control: Control | None = None) -> StageContext:
    return StageContext(project=_Project(), stage="toy", workdir=tmp_path, control=control or Control())


def _train(ctx, steps: int, crash_at: int | None = None, max_minutes: float = 0.0, sleep: float = 0.0):
    """A tiny regression trained through the loop; `crash_at` raises inside that step (a crash)."""
    torch.set_num_threads(1)
    loop = TrainingLoop(ctx, seed=3, checkpoint_every_s=0.0, max_minutes=max_minutes, threads=1)
    net = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    loop.track("net", net)
    loop.track("opt", opt)
    w_true = torch.tensor([[1.0, -2.0, 0.5, 3.0]])

    def step(i):
        if crash_at is not None and i == crash_at:
            raise RuntimeError("crash")
        for g in opt.param_groups:  # a schedule computed with numpy must not spoil the checkpoint
            g["lr"] = np.float64(0.05) * np.cos(0.01 * i)
        loop.vars["last_lr"] = np.float32(g["lr"])
        x = torch.randn(8, 4) + float(loop.rng.normal())  # both random sources feed the step
        loss = (net(x) - x @ w_true.T).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sleep:
            time.sleep(sleep)
        return {"loss": loss.item()}

    events = list(loop.part("fit", steps, step))
    return net, loop, events


def test_resume_after_a_crash_is_exact(tmp_path):
    ref, _, _ = _train(_ctx(tmp_path / "a"), 30)
    with pytest.raises(RuntimeError):
        _train(_ctx(tmp_path / "b"), 30, crash_at=17)
    net, loop, events = _train(_ctx(tmp_path / "b"), 30)
    assert loop.resumed_from == {"fit": 17}
    assert events[0].message.startswith("resumed fit at step 17")
    for a, b in zip(ref.parameters(), net.parameters()):
        assert torch.equal(a, b)


def test_a_part_finished_before_a_restart_says_so_and_is_not_rerun(tmp_path):
    """Killed after the part's last checkpoint: the rerun trains nothing and tells the user why."""
    ref, _, _ = _train(_ctx(tmp_path), 20)
    net, loop, events = _train(_ctx(tmp_path), 20)
    assert [e.message for e in events] == ["resumed: fit was finished before (20 of 20 steps)"]
    for a, b in zip(ref.parameters(), net.parameters()):
        assert torch.equal(a, b)


def test_loss_decreases_and_progress_reports_rate(tmp_path):
    _, loop, events = _train(_ctx(tmp_path), 60)
    losses = [e.losses["loss"] for e in events if e.losses]
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10])
    assert events[-1].step == 60 and events[-1].rate > 0 and events[-1].eta() == 0
    assert loop.finish()["steps"] == {"fit": 60}


def test_cap_cuts_short_and_says_so(tmp_path):
    _, loop, events = _train(_ctx(tmp_path), 10_000, max_minutes=0.5 / 60, sleep=0.01)
    assert 0 < events[-1].step < 10_000
    fig = loop.finish()
    assert fig["cut_short"]["part"] == "fit" and fig["cut_short"]["step"] == events[-1].step
    assert "cut short" in loop.warnings()[0] and f"step {events[-1].step} of 10000" in loop.warnings()[0]
    summary = loop.summary_figures(fig)   # what each stage's summary carries about how it trained
    assert summary["cut_short"] == fig["cut_short"] and summary["precision"] == loop.precision
    assert "cut_short" not in loop.summary_figures({k: v for k, v in fig.items() if k != "cut_short"})


def test_a_pause_does_not_count_against_the_cap(tmp_path):
    control = Control()
    ctx = _ctx(tmp_path, control)
    out = {}

    def run():
        t0 = time.perf_counter()
        out["net"], out["loop"], out["events"] = _train(ctx, 10_000, max_minutes=1.0 / 60, sleep=0.01)
        out["wall"] = time.perf_counter() - t0

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.3)
    control.pause()
    time.sleep(2.5)  # paused longer than the whole 1-second cap
    control.resume()
    th.join(30)
    assert not th.is_alive()
    loop = out["loop"]
    assert out["wall"] > 3.2, "the run must have waited out the pause"
    assert 0.9 < loop.active_s < 1.8, f"training time {loop.active_s:.2f} s must exclude the 2.5 s pause"
    assert loop.cut_short is not None


def _history(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (path / "train.losses.jsonl").read_text().splitlines()]


def test_the_loss_history_follows_the_checkpoint_and_a_fresh_run_starts_anew(tmp_path):
    """The stage folder keeps each run's losses (the window draws a finished run's curves from them): a
    resumed run's history is the same as one that never stopped; a fresh run does not mix in the old one."""
    _train(_ctx(tmp_path / "ref"), 30)
    with pytest.raises(RuntimeError):
        _train(_ctx(tmp_path / "b"), 30, crash_at=17)
    assert [r["step"] for r in _history(tmp_path / "b")] == list(range(1, 18))
    _train(_ctx(tmp_path / "b"), 30)
    ref, got = _history(tmp_path / "ref"), _history(tmp_path / "b")
    assert [r["step"] for r in got] == list(range(1, 31))
    assert all(r["stage"] == "toy" and r["part"] == "fit" for r in got)
    assert [r["losses"]["loss"] for r in got] == [r["losses"]["loss"] for r in ref]
    assert got[-1]["losses"]["loss"] < got[0]["losses"]["loss"]
    (tmp_path / "b" / "train.ckpt").unlink()          # what a changed setting or --force does
    _train(_ctx(tmp_path / "b"), 5)
    assert [r["step"] for r in _history(tmp_path / "b")] == [1, 2, 3, 4, 5]


def test_a_long_part_logs_evenly_thinned_and_a_failed_write_never_stops_training(tmp_path, monkeypatch):
    import studio.loop

    monkeypatch.setattr(studio.loop, "LOSS_LOG_ROWS", 10)
    _train(_ctx(tmp_path / "a"), 30)
    assert [r["step"] for r in _history(tmp_path / "a")] == list(range(3, 31, 3))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "train.losses.jsonl").mkdir()   # cannot be written (as on a full disk)
    net, loop, events = _train(_ctx(tmp_path / "b"), 12)
    assert loop.steps == {"fit": 12} and (tmp_path / "b" / "train.ckpt").is_file()
