"""The C allocator during training (`studio.compute.tune_allocator`): once a training loop starts,
large blocks come from the heap and are reused instead of being mapped and unmapped every step,
``AVATAR_STUDIO_ALLOCATOR=system`` leaves glibc's defaults, and `release_memory` hands the free
part back. Each case runs in a fresh process, since the setting lasts for the process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio import compute

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(compute._glibc() is None or not hasattr(compute._glibc(), "mallinfo2"),
                                reason="the allocator setting is for glibc (Linux) only; this C library is not "
                                       "glibc >= 2.33")

_PROBE = r"""
import ctypes, json, sys
import numpy as np
from studio import compute
from studio.loop import TrainingLoop
from studio.progress import Control
from studio.stages.base import StageContext

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def grow():
    # one 64 MB block: the bytes newly mapped for it, and the heap's growth
    a = libc.mallinfo2()
    x = np.ones(64 << 20, np.uint8)
    b = libc.mallinfo2()
    return x, b.hblkhd - a.hblkhd, b.arena - a.arena

class Project:
    def update_record(self, stage, **fields):
        pass

x, mapped_before, _ = grow()
del x
ctx = StageContext(project=Project(), stage="toy", workdir=sys.argv[1], control=Control())
loop = TrainingLoop(ctx, seed=0, checkpoint_every_s=0.0, threads=1)     # a training starts
y, mapped_after, heap_after = grow()
del y
heap_free = libc.mallinfo2().arena
loop.finish()                                                          # ... and ends
print(json.dumps({"mapped_before": mapped_before, "mapped_after": mapped_after, "heap_after": heap_after,
                  "trimmed": heap_free - libc.mallinfo2().arena, "tuned": compute._allocator_tuned}))
"""


def _probe(tmp_path: Path, **env) -> dict:
    full = {k: v for k, v in os.environ.items() if k != "AVATAR_STUDIO_ALLOCATOR"}
    full.update(PYTHONPATH=str(REPO), **env)
    out = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path)], env=full, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_training_loop_takes_large_blocks_from_the_heap_and_gives_them_back(tmp_path):
    r = _probe(tmp_path)
    assert r["tuned"] is True
    assert r["mapped_before"] >= 64 << 20          # glibc's default: a 64 MB block is its own mapping
    assert r["mapped_after"] == 0                  # during training: no new mapping ...
    assert r["heap_after"] >= 64 << 20             # ... the heap grew instead
    assert r["trimmed"] >= 32 << 20                # finish() gave the free heap back


def test_system_setting_leaves_the_allocator_alone(tmp_path):
    r = _probe(tmp_path, AVATAR_STUDIO_ALLOCATOR="system")
    assert r["tuned"] is False
    assert r["mapped_before"] >= 64 << 20
    assert r["mapped_after"] >= 64 << 20
