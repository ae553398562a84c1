"""Where the work runs: the device ("cpu" / "cuda") and how many CPU threads torch may use.

One thread picker for the whole app (training loop, engines, benchmarks). On a 2-core machine
two torch threads that share their cores with another program spin against each other and run
many times slower than one (measured here: 0.85 s vs 9 s per prior step; 35 ms vs 900 ms per
LatentAvatar frame), so "auto" uses the cores other programs leave free (measured from /proc's CPU
times; the load average where there is no /proc).

``AVATAR_STUDIO_THREADS=N`` fixes the count (tests use it: a fixed count keeps CPU results
bit-identical from run to run, which exact resume depends on).
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import time

from .errors import StudioError


def resolve_device(requested: str) -> str:
    """"auto" → "cuda" when a CUDA GPU is usable, else "cpu"; "gpu"/"cuda" without one is an error."""
    import torch

    if requested in ("auto", "gpu", "cuda"):
        if torch.cuda.is_available():
            return "cuda"
        if requested != "auto":
            raise StudioError("no CUDA GPU is available on this machine", "use --device cpu (or auto)")
    return "cpu"


def fixed_threads() -> int:
    """The thread count set by ``AVATAR_STUDIO_THREADS`` (0 when unset or invalid)."""
    try:
        return max(0, int(os.environ.get("AVATAR_STUDIO_THREADS", "0")))
    except ValueError:
        return 0


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall seconds, busy CPU seconds of the whole machine, CPU seconds of this process) from
    /proc (Linux), or None where there is no /proc."""
    try:
        with open("/proc/stat", "rb") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat", "rb") as f:
            own = f.read().rsplit(b")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)          # idle + iowait
    busy = sum(vals[:8]) - idle                                  # user … steal (guest time is in user)
    return time.monotonic(), busy / hz, (int(own[11]) + int(own[12])) / hz   # utime + stime


_last_snapshot: tuple[float, float, float] | None = None
_last_busy = 0.0


def others_busy_cores(sample_s: float = 0.25, max_age_s: float = 120.0) -> float | None:
    """How many cores other programs are keeping busy, measured from the CPU time the machine and
    this process used since the last call (a few seconds to two minutes ago: the training loop asks
    every 50 steps), or over a fresh `sample_s` when there is no recent snapshot. None without /proc.

    The 1-minute load average, used before, still counts a job that ended a minute ago: started
    right after another training, "auto" and the time estimate settled on one thread of two and
    the estimate came out twice too long (69 min said; the training took 31 min)."""
    global _last_snapshot, _last_busy
    now = _cpu_snapshot()
    if now is None:
        return None
    prev = _last_snapshot
    if prev is not None and 0 <= now[0] - prev[0] < 0.2:  # asked again at once: the last answer stands
        return _last_busy
    if prev is None or now[0] - prev[0] > max_age_s:
        prev = now
        time.sleep(sample_s)
        now = _cpu_snapshot()
        if now is None:
            return None
    _last_snapshot = now
    wall = now[0] - prev[0]
    _last_busy = max(0.0, ((now[1] - prev[1]) - (now[2] - prev[2])) / wall) if wall > 0 else 0.0
    return _last_busy


def pick_threads(requested: int = 0, current: int = 0) -> int:
    """Threads to use: `requested` when > 0 (capped at the cores), else the env override, else the
    cores that other programs leave free (at least 1): measured from /proc's CPU times where there
    is /proc (`others_busy_cores`), else from the 1-minute load average, from which `current` (the
    threads this process is running now) is taken off."""
    cores = os.cpu_count() or 1
    requested = requested or fixed_threads()
    if requested > 0:
        return max(1, min(requested, cores))
    others = others_busy_cores()
    if others is None:
        try:
            others = os.getloadavg()[0] - current
        except OSError:
            return cores
    return max(1, min(cores, int(math.floor(cores - others + 0.5))))


def apply_threads(device: str, requested: int = 0, current: int = 0) -> int:
    """Set torch's CPU thread count from `pick_threads` (no-op on a GPU); returns the count in use."""
    import torch

    if str(device) != "cpu":
        return torch.get_num_threads()
    n = pick_threads(requested, current)
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


class FreeCpuThreads:
    """Context manager for interactive rendering (viewer, export, eval): render with the CPU
    threads other programs leave free, re-checked every `recheck_s` seconds."""

    def __init__(self, device: str = "cpu", recheck_s: float = 2.0):
        self.device = str(device)
        self.recheck_s = recheck_s
        self._threads, self._checked = 1, -1e9

    @contextlib.contextmanager
    def __call__(self):
        import torch

        if self.device != "cpu":
            yield
            return
        now = time.monotonic()
        if now - self._checked > self.recheck_s:
            self._threads, self._checked = pick_threads(0, 0), now
        before = torch.get_num_threads()
        n = max(1, min(before, self._threads))
        if n != before:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if n != before:
                torch.set_num_threads(before)


# ------------------------------------------------------------------ the C allocator during training

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4      # glibc's mallopt parameter numbers
_libc = None
_allocator_tuned = False


def _glibc():
    """The process's C library when it is glibc (has mallopt and malloc_trim), else None."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(None)
                lib.mallopt, lib.malloc_trim              # musl and others lack these
                lib.mallopt.argtypes, lib.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                _libc = lib
            except (OSError, AttributeError):
                pass
    return _libc or None


def tune_allocator() -> bool:
    """Keep freed memory for reuse instead of handing it back to the system after every step.

    glibc serves each allocation over its threshold (at most 32 MB) with a fresh mmap and unmaps it
    on free, so a training step's large activations are paged in, zeroed by the kernel and unmapped
    again every step. Measured on the NeRF stage (d9, 200 steps, 2-core CPU, README "Measured"):
    7.8-9.5 million page faults and 18-25 s of kernel time per 200 steps, 72 s of training on
    average; with large blocks taken from the heap and the heap never trimmed: 0.8 million faults,
    5-7 s of kernel time, 61 s, for about 1.1 GB more peak memory. Called when a training loop
    starts (once per process); `release_memory` gives the free part back when it ends.
    ``AVATAR_STUDIO_ALLOCATOR=system`` leaves the allocator as it is. True when it was changed."""
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if os.environ.get("AVATAR_STUDIO_ALLOCATOR", "").strip().lower() == "system":
        return False
    lib = _glibc()
    if lib is None:
        return False
    ok = bool(lib.mallopt(_M_MMAP_MAX, 0))                     # no per-block mmap: large blocks from the heap
    ok = bool(lib.mallopt(_M_TRIM_THRESHOLD, 1 << 30)) and ok  # do not shrink the heap after each step
    ok = bool(lib.mallopt(_M_TOP_PAD, 256 << 20)) and ok        # grow it in 256 MB strides
    _allocator_tuned = ok
    return ok


def channels_last(*modules, device) -> None:
    """On a CPU, store the convolution weights of `modules` channels-last (NHWC), so that oneDNN's
    convolutions take and give that layout without reordering every activation (their inputs follow
    the first convolution's weights; the StyleGAN synthesis blocks keep theirs so on a CPU by
    themselves). Measured on a quiet 2-core Xeon (2026-12-06, README "Measured"), forward + backward:
    the subject prior's encoder 124 -> 108 ms, the sharpening head 188 -> 155 ms, ArcFace's face losses
    on four crops 110 -> 85 ms; a whole subject-prior step 0.49 -> 0.42 s. The same functions to float
    rounding. Left as they are on a GPU (its fp32 path is NVIDIA's) and with
    ``AVATAR_STUDIO_CPU_LAYOUT=nchw``, which also turns the synthesis blocks' own layout off."""
    import torch

    if torch.device(device).type != "cpu" or not cpu_channels_last():
        return
    for m in modules:
        if m is not None:
            m.to(memory_format=torch.channels_last)


def cpu_channels_last() -> bool:
    """Whether CPU training keeps convolution activations channels-last (the default; see `channels_last`).
    Also sets the StyleGAN synthesis blocks' switch (`models.stylegan2.networks.CPU_CHANNELS_LAST`)."""
    on = os.environ.get("AVATAR_STUDIO_CPU_LAYOUT", "").strip().lower() not in ("nchw", "contiguous")
    from models.stylegan2 import networks

    networks.CPU_CHANNELS_LAST = on
    return on


PRECISIONS = ("auto", "fp32", "bf16")


PRECISION_HELP = ("Arithmetic of the training steps: 'auto' = bfloat16 mixed precision on a CPU with bfloat16 "
                  "instructions (Intel AMX, AVX512-BF16 on AMD Zen 4 and later; faster there), float32 elsewhere; "
                  "'fp32' = float32 always; 'bf16' = bfloat16 mixed always (slow on a CPU without them).")


def precision_option():
    """The `precision` setting of a training stage's config (default "auto"; see `resolve_precision`)."""
    from .config import opt

    return opt("auto", PRECISION_HELP, choices=PRECISIONS, advanced=True)


def cpu_bf16_instructions() -> str:
    """The bfloat16 matrix instructions this CPU has, as a person reads them: "AMX" (Intel's matrix tiles,
    Sapphire Rapids and later), "AVX512-BF16" (bfloat16 dot products: AMD Zen 4 and later, Intel Cooper
    Lake), or "" (neither: bfloat16 would be computed in software, slower than float32). oneDNN uses
    either for convolutions and matrix products."""
    import torch

    for name, probe in (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported")):
        try:
            if bool(getattr(torch.cpu, probe)()):
                return name
        except (AttributeError, RuntimeError):
            continue
    return ""


AUTO_BF16_ONLY_WITH = {"nerf": ("AMX",)}
"""Stages whose "auto" takes bfloat16 only with some of the instructions (every other stage: with any of
them). The NeRF stage on a CPU with AVX512-BF16 but no AMX (2-core AMD EPYC, 2026-12-07, d9, README
"Measured"): bfloat16 19:19 against float32 24:35 for the whole run, but held-out identity 0.9076 against
0.9084 — level with retrieval's 0.9076 instead of over it (float32 there reproduces the status table's
avatar to the last digit; on the Xeon with AMX bfloat16 kept 0.9081). A goal of the preview avatars is
worth five minutes, so the NeRF stays float32 there."""


def resolve_precision(requested: str, device, stage: str = "") -> str:
    """A training stage's `precision` setting → "bf16" or "fp32" (`stage`: the stage's name, for
    `AUTO_BF16_ONLY_WITH`).

    "auto" is bfloat16 mixed precision (`torch.autocast`: convolutions and matrix products in bfloat16,
    the weights, the optimiser and the losses' delicate parts in float32) on a CPU with bfloat16
    instructions (`cpu_bf16_instructions`), and float32 everywhere else (a CPU without them computes
    bfloat16 in software; GPUs keep their float32 path). On a
    quiet 2-core Xeon with AMX (2026-12-06, README "Measured"): the subject prior's step 459 → 290 ms, and a
    whole d9 StyleGAN run's prior 13:26 → 8:07, PTI 6:12 → 4:56, with the avatar's held-out figures as
    before; the NeRF stage (2026-12-07) 400 steps 2.35–2.38 → 1.92–1.93 min, a whole d9 NeRF run 30:06 with the
    held-out figures of the float32 avatar (its point decoder's outputs and the volume rendering stay float32).
    On a 2-core AMD EPYC with AVX512-BF16 (2026-12-07): the prior's step 0.26–0.27 → 0.18 s, the NeRF's
    0.18–0.19 → 0.14–0.15 s (`python -m studio.speed_probe`), a whole d9 StyleGAN run 23:35 (float32, light
    work beside it) → 15:56 with the same held-out figures (identity 0.903 / 0.904, retrieval's 0.908).
    ``AVATAR_STUDIO_PRECISION`` (auto / fp32 / bf16) overrides "auto"; the tests set fp32, so that
    their figures do not depend on the machine's CPU."""
    req = (requested or "auto").strip().lower()
    if req not in PRECISIONS:
        raise StudioError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}",
                          "use --set precision=auto (or fp32, bf16)")
    if req == "auto":
        env = os.environ.get("AVATAR_STUDIO_PRECISION", "").strip().lower()
        req = env if env in ("fp32", "bf16") else "auto"
    if req == "auto":
        import torch

        if torch.device(device).type != "cpu":
            return "fp32"
        have = cpu_bf16_instructions()
        return "bf16" if have and have in AUTO_BF16_ONLY_WITH.get(stage, (have,)) else "fp32"
    return req


def autocast(precision: str, device):
    """The context a training step runs in: bfloat16 autocast for "bf16", nothing for "fp32"."""
    import torch

    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def release_memory() -> None:
    """Give the allocator's free memory back to the system (after a training has ended)."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)
