"""A tiny stage-like training run through `studio.loop.TrainingLoop`, started by the tests either
in this process (one process) or by `studio.distributed.launch` (several, gloo on the CPU).

    python -m tests.distributed.toy_train WORKDIR [--steps 40] [--batch 8] [--noise 0]
        [--kill-rank R --kill-at STEP] [--device cpu|cuda]

Rank 0 writes WORKDIR/result.json: the loss of every step as the loop reports it (averaged over
the processes), the final weights, the steps it resumed from and the loop's parallel summary.
A small MLP regresses a fixed synthetic data set; each step samples a global batch from
``loop.rng``, keeps its share (``loop.shard``), optionally adds per-sample noise from torch's
generator, and clips the gradient norm before the Adam step (so gradients must be averaged
before the clip for the curve to match one process's).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch

from studio.distributed import WorkerFinished, launched_by_torchrun, leave, process_group
from studio.errors import StudioError
from studio.loop import TrainingLoop
from studio.stages.base import StageContext


class _Project:
    def __init__(self):
        self.records: dict[str, dict] = {}

    def update_record(self, stage, **fields):
        self.records.setdefault(stage, {}).update(fields)


def data(n: int = 64, d: int = 6):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, 1, generator=g)
    y = torch.tanh(x @ w) + 0.3 * (x[:, :1] ** 2)
    return x, y


def train(workdir: Path, steps: int, batch: int, noise: float, kill_rank: int, kill_at: int,
          device: str = "cpu") -> dict | None:
    ctx = StageContext(project=_Project(), stage="toy", workdir=workdir, device=device)
    loop = TrainingLoop(ctx, seed=7, checkpoint_every_s=0.0, threads=1)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    loop.track("net", net)
    loop.track("opt", opt)
    X, Y = (t.to(device) for t in data())
    curve: list[float] = []

    def step(i: int) -> dict:
        if loop.rank == kill_rank and i == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        idx = torch.from_numpy(loop.shard(loop.rng.integers(0, len(X), size=batch))).to(device)
        x = X[idx]
        if noise:
            x = x + noise * torch.randn_like(x)
        loss = (net(x) - Y[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.05)  # active at every step: the order matters
        opt.step()
        return {"loss": loss.item()}

    for ev in loop.part("fit", steps, step):
        if ev.losses:
            curve.append(ev.losses["loss"])
    try:
        figures = loop.finish()
    except WorkerFinished:
        return None
    return {"curve": curve, "steps": figures["steps"], "resumed_from": figures.get("resumed_from", {}),
            "weights": [p.detach().cpu().flatten().tolist() for p in net.parameters()],
            "parallel": loop.parallel_summary(), "world": loop.world}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--kill-rank", type=int, default=-1)
    ap.add_argument("--kill-at", type=int, default=-1)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    code = 0
    try:
        with process_group(a.device):
            out = train(work, a.steps, a.batch, a.noise, a.kill_rank, a.kill_at, a.device)
        if out is not None:
            (work / "result.json").write_text(json.dumps(out))
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    if launched_by_torchrun():
        leave(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
