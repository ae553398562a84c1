"""Benchmark: one training step of the preview preset's two longest stages on this CPU.

    python -m studio.benchmarks.train_step [--stage nerf prior] [--steps N] [--threads T]
                                           [--reference-softplus] [--profile]
    avatar-studio bench train-step

The steps are the speed probe's (`studio.speed_probe.nerf_step` / `prior_step`): `nerf`, a
LatentAvatar step of the preview preset (batch 4, 32 px volume render, 24 samples a ray, 128 px
super-resolution, the no-download perceptual loss; the ArcFace face losses too when the ArcFace file
is configured, as the stage would); `prior`, a subject-prior step (encoder + generator, batch 8 at
128 px, L1 + perceptual). The inputs are random tensors of the stage's shapes: a step's cost does not
depend on what the pixels show. The allocator is tuned as the stages tune it
(`studio.compute.tune_allocator`).

It prints the median and the best milliseconds a step over `--steps` steps after a warm-up, and
with `--profile` the operations that took the most time. `--reference-softplus` runs the NeRF's
point decoder with PyTorch's own softplus (`F.softplus`) instead of `models.latentavatar.networks.
softplus`, to show what that costs. On a shared machine the median moves with other processes'
load; say the load when quoting a figure.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager


@contextmanager
def reference_softplus(on: bool):
    """Inside, the NeRF's softplus is PyTorch's `F.softplus` (when `on`)."""
    from models.latentavatar import networks

    saved = networks.softplus
    if on:
        import torch.nn.functional as F

        networks.softplus = F.softplus
    try:
        yield
    finally:
        networks.softplus = saved


def nerf_step():
    """A closure running one preview NeRF training step on random inputs (the speed probe's), and a description."""
    from ..speed_probe import nerf_step as probe_step

    step, cfg = probe_step("preview", "cpu")
    what = (f"nerf: batch {cfg.batch}, {cfg.low_res} px volume x {cfg.samples} samples, {cfg.size} px out, "
            f"perceptual {step.perceptual_kind}, face losses "
            f"{'on' if step.face_losses else 'off (no ArcFace file configured)'}")
    return step, what


def prior_step():
    """A closure running one preview subject-prior step on random inputs (the speed probe's), and a description."""
    from ..speed_probe import prior_step as probe_step

    step, cfg = probe_step("preview", "cpu")
    return step, f"prior: batch {cfg.batch} at {cfg.resolution} px, encoder + generator, L1 + perceptual"


STAGES = {"nerf": nerf_step, "prior": prior_step}


def measure(stage: str, steps: int, warmup: int = 3, profile: bool = False) -> dict:
    """Milliseconds a step of `stage` (median, best, each) and, with `profile`, the top operations."""
    step, what = STAGES[stage]()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    out = {"stage": stage, "what": what, "median_ms": statistics.median(times), "best_ms": min(times), "times": times}
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(min(steps, 4)):
                step()
        out["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", nargs="+", choices=tuple(STAGES), default=list(STAGES))
    ap.add_argument("--steps", type=int, default=10, help="timed steps (after 3 warm-up steps)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = as the stages choose)")
    ap.add_argument("--reference-softplus", action="store_true",
                    help="nerf: PyTorch's F.softplus in the point decoder, for comparison")
    ap.add_argument("--profile", action="store_true", help="also print the operations that took the most time")
    args = ap.parse_args(argv)

    import os

    import torch

    from ..compute import tune_allocator

    tune_allocator()
    torch.set_num_threads(args.threads or max(1, min(os.cpu_count() or 1, torch.get_num_threads())))
    print(f"{torch.get_num_threads()} thread(s), {os.cpu_count()} cores, torch {torch.__version__}, load "
          f"{os.getloadavg()[0]:.2f}")
    with reference_softplus(args.reference_softplus):
        for stage in args.stage:
            r = measure(stage, args.steps, profile=args.profile)
            sp = " (PyTorch's F.softplus)" if args.reference_softplus and stage == "nerf" else ""
            print(f"{r['what']}{sp}\n  {stage}: median {r['median_ms']:.0f} ms a step, best {r['best_ms']:.0f} ms "
                  f"({args.steps} steps)")
            if "profile" in r:
                print(r["profile"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
