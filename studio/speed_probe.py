"""How long training will take on this machine: a short speed probe and an extrapolation.

The probe times real training steps on random inputs of the preset's shapes, the lower quartile of
six after two warm-ups (`_time_steps`): the subject prior's step (the StyleGAN engine's first network: its small StyleGAN2
synthesis network, its image encoder, the L1 + perceptual loss, the backward pass and an Adam step)
at the preset's batch, and for the preview preset the NeRF stage's own step (`models.latentavatar.
train_step` with the stage's losses, its ArcFace face losses when that file is configured).

Until 2026-12-04 the probe timed the prior at batches 1 and 4 and drew a straight line to the
preset's 8, and priced the NeRF from the prior's step by a ratio measured on one machine. That ratio
did not carry from one CPU to the next: on the slower machine seen here it said 81 min for a d14
NeRF run whose training took 60 and 67 min for a d9 one that took 48 (README, "Measured"), because
the NeRF's step (ray sampling, a point decoder, small convolutions) and the generator's step
(modulated convolutions) do not speed up alike from one CPU to the next. The NeRF's step is now
timed itself. The prior is timed at the preset's batch as training runs it; the line through
batches 1 and 4 is kept for batches over `DIRECT_BATCH` (on a 2-core Xeon, 2026-12-04, it gave
0.427 s at batch 8 against 0.422 s timed).

PTI and the mappers are priced in probe steps: `STEP_COST` says what one step of each cost
relative to the probe's prior step in a measured full run (see there); both run the same generator
as the prior. The step counts come from the stage presets (`REGISTRY[stage].preset(name)`), so a preset
with more steps gives a longer estimate.

No Qt here: the GUI's welcome page runs `probe()` in a worker, the CLI can print `describe()`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .errors import Cancelled

# seconds of one step of the stage / seconds of one prior step (2026-11-21 run: prior 1600 steps in 13.0 min)
_PRIOR_STEP_S = 13.0 * 60 / 1600
_PTI_FACE = ((1.06 + 3.95) / (1.06 + 3.22) + (1.13 + 4.62) / (1.13 + 2.91)) / 2  # see FACE_LOSS_COST
STEP_COST: dict[str, float] = {
    "prior": 1.0,
    # PTI (per tuning step, inversions included) and the mappers: against the probe's own prior step,
    # since 2026-12-04, from a d14 StyleGAN run on a quiet 2-core Xeon: the probe gave 0.434 s, PTI took
    # 57 s + 4:19 (face losses on: the base cost is that over `FACE_LOSS_COST["pti"]`) and the mappers
    # 2400 steps 14:03. The 2026-11-21 ratios (`_PRIOR_STEP_S`) priced the mappers at 9.1 min there: they
    # have trained with the face losses and a heavier step since. Against the run's own prior step the
    # mappers' step cost 0.88 there and 0.77 in a d9 run on another machine (2026-12-03, README). Both
    # with the ArcFace file configured; without it the mappers skip their identity loss and run faster.
    "pti": (57 + 259) / 500 / 0.434 / _PTI_FACE,
    # × 0.89 since 2026-12-06: on a 2-core AMD EPYC the mappers took 0.82 and 0.74 of this price against the
    # prior's 1.13 and 0.93 (whole d9 and d14 runs, 12-06, README "Measured"); the factor is the mean of that
    # machine's 0.78 and the Xeon's 1.0, so neither machine's estimate is off by more than about 12 %
    "mappers": (14 * 60 + 3) / 2400 / 0.434 * 0.89,
    # the StyleGAN engine's sharpening head (2026-12-04, d3 on a quiet 2-core Xeon): 600 steps in 6:56 wall,
    # the training frames' renders and the held-out sheet included; `python -m studio.speed_probe` right after
    # gave 0.561 s per prior step
    # × 0.82 since 2026-12-06: on the AMD EPYC the head took 0.65 and 0.62 of this price (the same two runs)
    "sharpen": (6 * 60 + 56) / 600 / 0.561 * 0.82,
    # NeRF, where the probe does not time its step (presets outside `NERF_PROBED`): measured against
    # the old probe itself: on a quiet 2-core machine (2026-12-02) the probe
    # gave 0.579 s per prior step (mean of three) and `nerf` ran 7000 steps in 44:58 (d14). The
    # 2026-11-21 ratio (30.8 min against 0.49 s) left every NeRF estimate since short: 35 min
    # said for 40:24 (d3, 12-01), 36 min for 44:58 (d14, 12-02). × 0.80 since 2026-12-04: the point
    # decoder's softplus (`models.latentavatar.networks.softplus`) made a step 0.80 of what it was
    # (`avatar-studio bench train-step`, medians 255 -> 204 ms with the face losses, quiet machine).
    "nerf": 2698.0 / 7000 / 0.579 * 0.80,
}
FACE_LOSS_COST: dict[str, float] = {
    "nerf": 3.70 / 3.11,
    "pti": _PTI_FACE,
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
    nerf_step_seconds: float | None = None
    """Median seconds of one NeRF training step at the preset, where the probe timed it."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    engine_seconds: dict[str, float] = field(default_factory=dict)
    probe_seconds: float = 0.0
    """How long the probe itself took."""
    precision: str = "fp32"
    """The arithmetic the training steps were timed in ("bf16" on a CPU with bfloat16 instructions,
    `compute.resolve_precision`)."""
    nerf_precision: str = ""
    """The NeRF step's arithmetic where it differs from the prior's (`compute.AUTO_BF16_ONLY_WITH`), else ""."""
    bf16_instructions: str = ""
    """The CPU's bfloat16 instructions behind "bf16" ("AMX", "AVX512-BF16"; "" where bf16 was asked for
    without them), `compute.cpu_bf16_instructions`."""

    def minutes_for(self, stages) -> int:
        """Whole minutes (at least 1) the given stages would take on this machine."""
        return max(1, round(sum(self.stage_seconds.get(s, 0.0) for s in stages) / 60))

    def where(self, this_machine: bool = False) -> str:
        """Where training runs, for a sentence: "on the GPU" or "on the CPU (2 threads[, bfloat16 …])"."""
        if self.device == "cuda":
            return "on the GPU"
        bf16 = ""
        if self.precision == "bf16":
            bf16 = (", bfloat16 arithmetic" + (" (the NeRF's in float32)" if self.nerf_precision == "fp32" else "")
                    + (f": this CPU has {self.bf16_instructions}" if self.bf16_instructions else ""))
        owner = "this machine's" if this_machine else "the"
        return f"on {owner} CPU ({self.threads} thread{'s' if self.threads != 1 else ''}{bf16})"

    def describe(self) -> str:
        """One or two sentences for a person."""
        from .engines import ENGINES

        parts = [f"about {_minutes(s)} for the {ENGINES[e].title if e in ENGINES else e}"
                 for e, s in self.engine_seconds.items()]
        where = f"on the GPU ({self.gpu_name})" if self.device == "cuda" else self.where()
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


def estimate(step_seconds: float, preset: str = "preview", nerf_step_seconds: float | None = None
             ) -> tuple[dict[str, float], dict[str, float]]:
    """(seconds per stage, seconds per engine) for one prior step of `step_seconds`; the NeRF stage
    from its own measured step (`nerf_step_seconds`, face losses included as measured) where given."""
    from .stages import REGISTRY

    stages: dict[str, float] = {}
    for name, spec in REGISTRY.items():
        if name in FIXED_COST:
            stages[name] = FIXED_COST[name] * step_seconds
        elif name in STEP_COST:
            steps = getattr(spec.preset(preset), STEP_FIELD.get(name, "steps"))
            if name == "nerf" and nerf_step_seconds is not None:
                stages[name] = steps * nerf_step_seconds
                continue
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

    from .compute import channels_last
    from .stages import REGISTRY
    from .stages.prior import _generator_config

    cfg = REGISTRY["prior"].preset(preset)
    if resolution is not None:
        cfg.resolution = resolution
    gcfg = _generator_config(cfg)
    G = gcfg.build().train().to(device)
    E = LatentEncoder(cfg.resolution, gcfg.w_dim, channel_max=max(128, cfg.channel_max)).to(device)
    channels_last(G, E, device=device)   # laid out as the stage lays them out
    return cfg, G, E


def prior_steps(preset: str = "preview", device="cpu", batches=(None,), resolution: int | None = None):
    """({batch: step}, cfg): closures each running one subject-prior training step of `preset`
    (encoder + generator, L1 + perceptual, backward, Adam) on random images of that batch (None: the
    preset's); the networks, the loss and the optimiser are built once and shared between them."""
    import torch
    import torch.nn.functional as F

    from .compute import autocast, resolve_precision
    from .pvp.common import perceptual_loss

    device = torch.device(device)
    cfg, G, E = _prior_networks(preset, resolution, device)
    precision = resolve_precision(cfg.precision, device, "prior")   # the arithmetic the stage's steps run in
    perc = perceptual_loss(device)
    params = list(G.synthesis.parameters()) + list(E.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)

    def make(b: int):
        gen = torch.Generator().manual_seed(b)
        x = (torch.rand(b, 3, cfg.resolution, cfg.resolution, generator=gen) * 2 - 1).to(device)

        def step():
            with autocast(precision, device):
                w = E(x)
                out = G.synthesis(w[:, None, :].expand(-1, G.num_ws, -1), noise_mode="const")
                loss = F.l1_loss(out, x) + perc(out, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

        step.precision = precision
        return step

    return {b: make(b) for b in (batch or cfg.batch for batch in batches)}, cfg


def prior_step(preset: str = "preview", device="cpu", batch: int | None = None, resolution: int | None = None):
    """(step, cfg): one closure of `prior_steps`, at `batch` (default: the preset's)."""
    steps, cfg = prior_steps(preset, device, (batch,), resolution)
    return next(iter(steps.values())), cfg


def nerf_step(preset: str = "preview", device="cpu"):
    """(step, cfg): a closure running one training step of the `nerf` stage of `preset`
    (`models.latentavatar.train_step` with the stage's losses, the ArcFace face losses when the file
    is configured, as the stage trains) on random inputs of the stage's shapes."""
    import torch

    from models.latentavatar import LatentAvatar, LossWeights, train_step
    from models.perceptual import PerceptualLoss

    from .compute import autocast, resolve_precision
    from .stages import REGISTRY
    from .stages.face import face_loss
    from .stages.nerf import model_config

    device = torch.device(device)
    cfg = REGISTRY["nerf"].preset(preset)
    precision = resolve_precision(cfg.precision, device, "nerf")   # the arithmetic the stage's steps run in
    n_expr = 12
    model = LatentAvatar(model_config(cfg, n_expr)).to(device)
    perceptual = PerceptualLoss(None).to(device)
    face, _ = face_loss(cfg.face_weight > 0 or cfg.identity_weight > 0, device, "face_weight=0")
    weights = LossWeights(perceptual=cfg.perceptual_weight, low=cfg.low_weight, mask=cfg.mask_weight,
                          face=cfg.face_weight if face is not None else 0.0,
                          identity=cfg.identity_weight if face is not None else 0.0, face_batch=cfg.face_batch)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    b, gen = cfg.batch, torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.rand(*shape, generator=gen).to(device)  # noqa: E731
    batch = {"image": rand(b, 3, cfg.size, cfg.size), "face": rand(b, 3, cfg.encoder_res, cfg.encoder_res),
             "matte": rand(b, 1, cfg.low_res, cfg.low_res), "yaw": (rand(b) - 0.5) * 30,
             "pitch": (rand(b) - 0.5) * 20, "expr": rand(b, n_expr) - 0.5}

    def step():
        with autocast(precision, device):
            train_step(model, optim, batch, perceptual, weights, cfg.mapper_share, face=face,
                       expr_noise=cfg.mapper_noise)

    step.precision = precision
    step.face_losses = face is not None
    step.perceptual_kind = perceptual.kind
    return step, cfg


def _time_steps(step, steps: int, device, warmup: int = 2) -> float:
    """Seconds of `step()`: the lower quartile of `steps` calls (the median of three before 2026-12-06),
    after `warmup` calls (the first steps pay for allocation and kernel selection).

    A step now and then runs slow on a shared machine (a neighbour's burst, the page cache): on a quiet
    2-core AMD EPYC, six probes in a row with the median of three said 45.7 to 54.7 min for the StyleGAN
    avatar and 36 to 53 min for the NeRF one (one slow NeRF step of three), and `run` once said 88 min for a
    StyleGAN run whose prior then trained at 0.61 s a step, as the quiet probes measured it. The lower
    quartile of six keeps the steps the machine runs when nothing gets in the way (README, "Measured")."""
    import torch

    times = []
    for i in range(warmup + steps):
        if _STOP.is_set():
            raise Cancelled("speed probe stopped", "the app is closing")
        t0 = time.perf_counter()
        step()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[(len(times) - 1) // 4]


DIRECT_BATCH = 8
"""The prior's step is timed at the preset's own batch up to this (the preview's 8); a larger batch
(the quality preset's 16 on a GPU) is priced by a straight line through batches 1 and 4."""
NERF_PROBED = ("preview",)
"""Presets whose NeRF step the probe times itself; others price it from the prior's step (`STEP_COST`)."""


def probe(preset: str = "preview", device: str = "auto", steps: int = 6, resolution: int | None = None,
          nerf: bool | None = None) -> SpeedEstimate:
    """Time the prior's training step at the preset's batch and, for the preview preset, the NeRF's
    own step; price every stage from them (see the module text). `nerf=False` skips the NeRF's step
    (priced by `STEP_COST` instead); `resolution` shrinks the prior's images (for tests)."""
    import torch

    t_start = time.perf_counter()
    _STOP.clear()  # `cancel()` stops the probe that is running, not the next one
    gpu = torch.cuda.is_available()
    gpu_name = torch.cuda.get_device_name(0) if gpu else ""
    dev = torch.device("cuda" if (device == "cuda" or (device == "auto" and gpu)) else "cpu")
    from .compute import apply_threads, cpu_bf16_instructions, tune_allocator

    before = torch.get_num_threads()
    apply_threads(dev.type)  # time the steps with the threads training will use (busy cores spin)
    tune_allocator()         # ... and the allocator setting training uses
    try:
        from .stages import REGISTRY

        batch = REGISTRY["prior"].preset(preset).batch
        if _STOP.is_set():
            raise Cancelled("speed probe stopped", "the app is closing")
        if batch <= DIRECT_BATCH:
            step, cfg = prior_step(preset, dev, batch, resolution)
            measured = {batch: _time_steps(step, steps, dev)}
            step_s = measured[batch]
            precision = step.precision
        else:
            closures, cfg = prior_steps(preset, dev, (1, 4), resolution)
            measured = {b: _time_steps(step, steps, dev) for b, step in closures.items()}
            per_image = max(0.0, (measured[4] - measured[1]) / 3)
            step_s = max(0.0, measured[1] - per_image) + per_image * batch
            precision = closures[1].precision
        nerf_s, nerf_precision = None, ""
        if nerf if nerf is not None else preset in NERF_PROBED:
            nstep, _ = nerf_step(preset, dev)
            nerf_s = _time_steps(nstep, steps, dev)
            nerf_precision = nstep.precision if nstep.precision != precision else ""
        stages, engines = estimate(step_s, preset, nerf_step_seconds=nerf_s)
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    return SpeedEstimate(device=dev.type, gpu_found=gpu, gpu_name=gpu_name, threads=threads,
                         preset=preset, batch=batch, resolution=cfg.resolution, step_seconds=step_s,
                         measured=measured, nerf_step_seconds=nerf_s, stage_seconds=stages,
                         engine_seconds=engines, probe_seconds=time.perf_counter() - t_start, precision=precision,
                         nerf_precision=nerf_precision,
                         bf16_instructions=cpu_bf16_instructions() if precision == "bf16" and dev.type == "cpu" else "")


_CACHE: dict[tuple, SpeedEstimate] = {}
_STOP = threading.Event()


def cancel() -> None:
    """Stop a running probe at its next step (the window is closing); later probes run again."""
    _STOP.set()


class RunPace:
    """A run of several stages against the speed test's prices: after each stage, how long it took against its
    price, and how long the stages left will take re-priced at this run's own pace. One quick test cannot foresee
    a shared machine that slows down or speeds up for minutes at a time (2026-12-06, a quiet 2-core AMD EPYC:
    tests a minute apart priced the same StyleGAN avatar at 49 and 91 min); the stages that ran say how fast it
    really goes. `run` prints `stage_done`'s line; the studio window shows `after` under the running stage."""

    SMALL = 60.0
    """Stages priced under this many seconds (the pivots) neither set the pace nor get a line."""

    def __init__(self, est: SpeedEstimate, stages):
        self.est = est
        self.left = list(stages)
        self.actual = self.priced = 0.0

    def price(self, name: str) -> float:
        return float(self.est.stage_seconds.get(name, 0.0))

    def ratio(self) -> float:
        """This run's seconds per priced second so far (1 before any stage has trained in it)."""
        return self.actual / self.priced if self.priced > 0 else 1.0

    def _pace(self) -> str:
        r = self.ratio()
        if abs(r - 1.0) < 0.1:
            return ""
        return f" (this run goes {r if r > 1 else 1 / r:.1f} times {'slower' if r > 1 else 'faster'} than the speed test said)"

    def stage_done(self, name: str, result: dict | None, seconds: float) -> str | None:
        """Count a stage that ended after `seconds`; the line to show, or None (a stage under `SMALL`, one that
        was already up to date, or the last)."""
        if name in self.left:
            self.left.remove(name)
        priced = self.price(name)
        if priced < self.SMALL:
            return None
        resumed = bool(((result or {}).get("summary") or {}).get("resumed_from"))
        trained = seconds >= max(2.0, 0.05 * priced)     # else it was already up to date
        if trained and not resumed:                       # a resumed stage's time says nothing of the pace
            self.actual += seconds
            self.priced += priced
        left = [s for s in self.left if self.price(s) > 0]
        if not trained or not left:
            return None
        rest = self.ratio() * sum(self.price(s) for s in left)
        from .progress import clock_text

        return (f"{_title(name)} took {clock_text(seconds)} (the speed test said {clock_text(priced)}); about "
                f"{max(1, round(rest / 60))} min left for {_titles(left)}{self._pace()}")

    def after(self, name: str) -> str:
        """For the stage `name` now running: how long the stages after it will take at this run's pace so far
        ("" when none is priced)."""
        later = self.left[self.left.index(name) + 1:] if name in self.left else []
        later = [s for s in later if self.price(s) > 0]
        if not later:
            return ""
        rest = self.ratio() * sum(self.price(s) for s in later)
        return f"then about {max(1, round(rest / 60))} min for {_titles(later)}"


def latest(preset: str) -> SpeedEstimate | None:
    """The newest estimate of `preset` this process made (`cached_probe` or `remember`), or None."""
    found = [e for (p, _), e in _CACHE.items() if p == preset]
    return found[-1] if found else None


def remember(est: SpeedEstimate, device: str = "auto") -> None:
    """Keep a probe made elsewhere (the engine dialog's) as the newest for its preset."""
    _CACHE.pop((est.preset, device), None)
    _CACHE[(est.preset, device)] = est


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
          f"(measured {', '.join(f'batch {b}: {s:.3f} s' for b, s in est.measured.items())})"
          + (f"; NeRF step: {est.nerf_step_seconds:.3f} s" if est.nerf_step_seconds is not None else ""))
    for name, s in est.stage_seconds.items():
        print(f"  {name:<8} {s / 60:6.1f} min")


def _title(stage: str) -> str:
    """A stage as the window's stage list names it ("Pivotal tuning", not "pti")."""
    from .stages import REGISTRY

    return REGISTRY[stage].title if stage in REGISTRY else stage


def _titles(stages: list[str]) -> str:
    return ", ".join(_title(s) for s in stages)
