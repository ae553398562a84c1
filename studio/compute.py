"""Where the work runs: the device ("cpu" / "cuda") and how many CPU threads torch may use.

One thread picker for the whole app (training loop, engines, benchmarks). On a 2-core machine
two torch threads that share their cores with another program spin against each other and run
many times slower than one (measured here: 0.85 s vs 9 s per prior step; 35 ms vs 900 ms per
LatentAvatar frame), so "auto" uses the cores the load average says are free.

``AVATAR_STUDIO_THREADS=N`` fixes the count (tests use it: a fixed count keeps CPU results
bit-identical from run to run, which exact resume depends on).
"""
from __future__ import annotations

import contextlib
import math
import os
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


def pick_threads(requested: int = 0, current: int = 0) -> int:
    """Threads to use: `requested` when > 0 (capped at the cores), else the env override, else the
    cores that other programs leave free by the 1-minute load average (at least 1). `current` is
    the number of threads this process is running now (they count in the load average)."""
    cores = os.cpu_count() or 1
    requested = requested or fixed_threads()
    if requested > 0:
        return max(1, min(requested, cores))
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
