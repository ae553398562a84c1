"""CPU threads for rendering in an interactive process (viewer, export, eval)."""
from __future__ import annotations

import contextlib
import time


class FreeCpuThreads:
    """Context manager: render with the CPU threads other programs leave free (re-checked every 2 s).

    On a busy 2-core machine two OpenMP threads spin against each other: one 128 px frame took
    ~900 ms with 2 threads and ~35 ms with 1 under the same load (LatentAvatar engine, measured).
    """

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
        from ..stages.nerf import pick_threads

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
