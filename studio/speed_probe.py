"""How long training will take on this machine: a short speed probe and an extrapolation.

The probe times a few real training steps of the subject prior (the StyleGAN engine's first
network: its small StyleGAN2 synthesis network, its image encoder, the L1 + perceptual loss, the
backward pass and an Adam step) on random images at the preset's resolution, at batch 1 and
batch 4 (the preset's batch where that is smaller), the median of three steps each. A straight
line through the two (fixed cost + cost per image) gives the time of one step at the preset's
batch. (Batches 1 and 2, one step each, as first built, multiplied their difference's noise by
eight at the preview batch: on one quiet machine the probe said 54, 16, 30, 40 and 44 minutes for
the NeRF avatar, which took 45-46 minutes there; three probes as now said 35-38.) Every other stage is priced in prior steps: `STEP_COST` says what one step
of that stage cost relative to one prior step in a measured full run (README, "Measured":
`avatar-studio run clip2.mp4`, 2-core CPU, 2026-11-21: prior 1600 steps in 13.0 min, PTI 500
tuning steps in 6.0 min including the pivot inversions, mappers 2400 steps in 10.2 min; the
NeRF's step against this probe's own step on a quiet machine, 2026-12-02, see `STEP_COST`). The step counts come from the stage presets
(`REGISTRY[stage].preset(name)`), so a preset with more steps gives a longer estimate.

No Qt here: the GUI's welcome page runs `probe()` in a worker, the CLI can print `describe()`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .errors import Cancelled

# seconds of one step of the stage / seconds of one prior step, in the measured run above
_PRIOR_STEP_S = 13.0 * 60 / 1600
STEP_COST: dict[str, float] = {
    "prior": 1.0,
    "pti": 6.0 * 60 / 500 / _PRIOR_STEP_S,        # per tuning step, inversions included
    "mappers": 10.2 * 60 / 2400 / _PRIOR_STEP_S,
    # NeRF: measured against this probe itself: on a quiet 2-core machine (2026-12-02) the probe
    # gave 0.579 s per prior step (mean of three) and `nerf` ran 7000 steps in 44:58 (d14). The
    # 2026-11-21 ratio (30.8 min against 0.49 s) left every NeRF estimate since short: 35 min
    # said for 40:24 (d3, 12-01), 36 min for 44:58 (d14, 12-02). × 0.80 since 2026-12-04: the point
    # decoder's softplus (`models.latentavatar.networks.softplus`) made a step 0.80 of what it was
    # (`avatar-studio bench train-step`, medians 255 -> 204 ms with the face losses, quiet machine).
    "nerf": 2698.0 / 7000 / 0.579 * 0.80,
}
FACE_LOSS_COST: dict[str, float] = {
    "nerf": 3.70 / 3.11,
    "pti": ((1.06 + 3.95) / (1.06 + 3.22) + (1.13 + 4.62) / (1.13 + 2.91)) / 2,
}
"""How much longer a stage takes with its ArcFace face losses (on when the stage's face weights are above 0
and the ArcFace file is configured). NeRF: on d3, one machine, 2026-12-03, alone, 3.70 steps/s without them
and 3.03–3.19 with them (two images a step through the ArcFace network). PTI: on one machine, the same prior
per clip, 2026-12-03, alone: the 500 tuning steps with them (four pivots a step) against without, 3.95 against
3.22 min on d3 and 4.62 against 2.91 on d9; the inversion (1.06 and 1.13 min, no face losses) is unchanged;
the mean of the two clips' ratios over the whole stage. The mappers ran ArcFace for their identity loss before
the face losses, at the same cost, so they have no entry."""
STEP_FIELD = {"pti": "tune_steps"}
"""The config field that counts a stage's steps, where it is not `steps`."""
FIXED_COST: dict[str, float] = {"pivots": 2.0 / _PRIOR_STEP_S}
"""Stages without steps: their measured cost in prior steps."""


@dataclass
class SpeedEstimate:
    device: str
    """Where the probe ran: "cpu" or "cuda"."""
    gpu_found: bool
    gpu_name: str
    threads: int
    """CPU threads torch used."""
    preset: str
    batch: int
    """The prior's batch in the preset (the step that was extrapolated to)."""
    resolution: int
    step_seconds: float
    """Seconds of one prior training step at the preset's batch and resolution (extrapolated)."""
    measured: dict[int, float] = field(default_factory=dict)
    """Median seconds of one step at each probed batch size."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    engine_seconds: dict[str, float] = field(default_factory=dict)
    probe_seconds: float = 0.0
    """How long the probe itself took."""

    def minutes_for(self, stages) -> int:
        """Whole minutes (at least 1) the given stages would take on this machine."""
        return max(1, round(sum(self.stage_seconds.get(s, 0.0) for s in stages) / 60))

    def describe(self) -> str:
        """One or two sentences for a person."""
        from .engines import ENGINES

        parts = [f"about {_minutes(s)} for the {ENGINES[e].title if e in ENGINES else e}"
                 for e, s in self.engine_seconds.items()]
        where = (f"on the GPU ({self.gpu_name})" if self.device == "cuda"
                 else f"on the CPU with {self.threads} thread{'s' if self.threads != 1 else ''}")
        gpu = f"GPU found: {self.gpu_name}." if self.gpu_found else \
            "No GPU found: training runs on the CPU (the preview preset is sized for that)."
        return (f"{self.preset.capitalize()} training on this machine: {', '.join(parts)} "
                f"(from a {self.probe_seconds:.1f} s speed test {where}; tracking the video comes on top). {gpu}")


def _minutes(seconds: float) -> str:
    m = seconds / 60
    if m < 1:
        return "1 min"
    if m < 90:
        return f"{m:.0f} min"
    return f"{m / 60:.1f} h"


def engine_stages() -> dict[str, tuple[str, ...]]:
    """Engine name -> its stages, from the engine registry."""
    from .engines import ENGINES

    return {name: tuple(spec.stages) for name, spec in ENGINES.items()}


def estimate(step_seconds: float, preset: str = "preview") -> tuple[dict[str, float], dict[str, float]]:
    """(seconds per stage, seconds per engine) for one prior step of `step_seconds`."""
    from .stages import REGISTRY

    stages: dict[str, float] = {}
    for name, spec in REGISTRY.items():
        if name in FIXED_COST:
            stages[name] = FIXED_COST[name] * step_seconds
        elif name in STEP_COST:
            steps = getattr(spec.preset(preset), STEP_FIELD.get(name, "steps"))
            stages[name] = STEP_COST[name] * steps * step_seconds
            if name in FACE_LOSS_COST and _face_losses_on(spec.preset(preset)):
                stages[name] *= FACE_LOSS_COST[name]
    engines = {e: sum(stages.get(s, 0.0) for s in names) for e, names in engine_stages().items()
               if any(s in stages for s in names)}
    return stages, engines


def _face_losses_on(cfg) -> bool:
    """Whether a stage under `cfg` trains with its face losses (weights above 0, ArcFace configured)."""
    if getattr(cfg, "face_weight", 0.0) <= 0 and getattr(cfg, "identity_weight", 0.0) <= 0:
        return False
    from .model_files import arcface_path

    return arcface_path() is not None


def _prior_networks(preset: str, resolution: int | None, device):
    """The prior stage's generator and encoder as that preset builds them (untrained)."""
    from models.encoders import LatentEncoder

    from .stages import REGISTRY
    from .stages.prior import _generator_config

    cfg = REGISTRY["prior"].preset(preset)
    if resolution is not None:
        cfg.resolution = resolution
    gcfg = _generator_config(cfg)
    G = gcfg.build().train().to(device)
    E = LatentEncoder(cfg.resolution, gcfg.w_dim, channel_max=max(128, cfg.channel_max)).to(device)
    return cfg, G, E


def _time_steps(G, E, perc, batch: int, resolution: int, steps: int, device) -> float:
    """Median seconds of one prior training step (after one warm-up step)."""
    import torch
    import torch.nn.functional as F

    params = list(G.synthesis.parameters()) + list(E.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    gen = torch.Generator().manual_seed(batch)
    x = (torch.rand(batch, 3, resolution, resolution, generator=gen) * 2 - 1).to(device)
    times = []
    for i in range(steps + 1):
        if _STOP.is_set():
            raise Cancelled("speed probe stopped", "the app is closing")
        t0 = time.perf_counter()
        w = E(x)
        out = G.synthesis(w[:, None, :].expand(-1, G.num_ws, -1), noise_mode="const")
        loss = F.l1_loss(out, x) + perc(out, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step pays for allocation and kernel selection
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def probe(preset: str = "preview", device: str = "auto", steps: int = 3, resolution: int | None = None,
          batches: tuple[int, int] | None = None) -> SpeedEstimate:
    """Time the prior's training step at two small batch sizes and extrapolate (see the module text)."""
    import torch

    from .pvp.common import perceptual_loss

    t_start = time.perf_counter()
    _STOP.clear()  # `cancel()` stops the probe that is running, not the next one
    gpu = torch.cuda.is_available()
    gpu_name = torch.cuda.get_device_name(0) if gpu else ""
    dev = torch.device("cuda" if (device == "cuda" or (device == "auto" and gpu)) else "cpu")
    from .compute import apply_threads, tune_allocator

    before = torch.get_num_threads()
    apply_threads(dev.type)  # time the steps with the threads training will use (busy cores spin)
    tune_allocator()         # ... and the allocator setting training uses
    cfg, G, E = _prior_networks(preset, resolution, dev)
    perc = perceptual_loss(dev)
    if _STOP.is_set():
        raise Cancelled("speed probe stopped", "the app is closing")
    b1, b2 = batches or (1, max(2, min(4, cfg.batch)))
    measured = {b: _time_steps(G, E, perc, b, cfg.resolution, steps, dev) for b in (b1, b2)}
    per_image = max(0.0, (measured[b2] - measured[b1]) / (b2 - b1))
    fixed = max(0.0, measured[b1] - per_image * b1)
    step_s = fixed + per_image * cfg.batch
    stages, engines = estimate(step_s, preset)
    threads = torch.get_num_threads()
    torch.set_num_threads(before)
    return SpeedEstimate(device=dev.type, gpu_found=gpu, gpu_name=gpu_name, threads=threads,
                         preset=preset, batch=cfg.batch, resolution=cfg.resolution, step_seconds=step_s,
                         measured=measured, stage_seconds=stages, engine_seconds=engines,
                         probe_seconds=time.perf_counter() - t_start)


_CACHE: dict[tuple, SpeedEstimate] = {}
_STOP = threading.Event()


def cancel() -> None:
    """Stop a running probe at its next step (the window is closing); later probes run again."""
    _STOP.set()


def cached_probe(preset: str = "preview", device: str = "auto") -> SpeedEstimate:
    """`probe()` once per process (the welcome page of every new window reuses it)."""
    key = (preset, device)
    if key not in _CACHE:
        _CACHE[key] = probe(preset, device)
    return _CACHE[key]


if __name__ == "__main__":  # python -m studio.speed_probe
    est = probe()
    print(est.describe())
    print(f"prior step: {est.step_seconds:.3f} s at batch {est.batch}, {est.resolution} px "
          f"(measured {', '.join(f'batch {b}: {s:.3f} s' for b, s in est.measured.items())})")
    for name, s in est.stage_seconds.items():
        print(f"  {name:<8} {s / 60:6.1f} min")
