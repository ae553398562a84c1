"""What the training dashboard shows of a stage's runs, without Qt: its losses from the loss logs
(`read_loss_log`, `history_log`), the images its last run wrote (`result_images`), the smoothing of its
curves (`ema`), its pace (`RateMeter`), and how durations and times read."""
from __future__ import annotations

import collections
import json
import math
import os
from pathlib import Path

import numpy as np


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average, debiased at the start (as TensorBoard's smoothing)."""
    x = np.asarray(values, np.float64)
    out = np.empty_like(x)
    prev, chunk = 0.0, 256
    for s in range(0, len(x), chunk):  # closed form per chunk: a^-k stays finite for k < 256
        part = x[s:s + chunk]
        k = np.arange(1, len(part) + 1)
        ak = alpha ** k
        out[s:s + chunk] = ak * prev + (1 - alpha) * ak * np.cumsum(part / ak)
        prev = out[s + len(part) - 1]
    return out / (1.0 - alpha ** np.arange(1, len(values) + 1))


def trains(stage: str) -> bool:
    """Whether `stage` trains (and so logs losses); an unknown or empty name: True (curves shown as before)."""
    from ..stages import REGISTRY

    spec = REGISTRY.get(stage) if stage else None
    return True if spec is None else bool(spec.trains)


RIGHT_AXIS = {"psnr": "dB"}
"""Series that are not losses but a quality in other units (a name containing the key): drawn against an axis of
their own at the plot's right, so PTI's pivot PSNR (20–30 dB) does not flatten its losses (0–1) into one line."""


def right_axis_unit(name: str) -> str | None:
    low = name.lower()
    return next((u for k, u in RIGHT_AXIS.items() if k in low), None)


LOSS_WORDS = ("loss", "mse", "l1", "l2", "lpips", "psnr", "ssim", "identity")
"""Summary keys that read as a loss or a quality figure (shown as the last run's losses)."""


def loss_log_path() -> Path | None:
    """The loss log every training step appends to, when one is kept (``AVATAR_STUDIO_LOSS_LOG``)."""
    p = os.environ.get("AVATAR_STUDIO_LOSS_LOG", "")
    return Path(p) if p and Path(p).is_file() else None


def history_log(project, stage: str) -> Path | None:
    """Where a run of `stage` finds its losses so far: the stage folder's loss history, else the
    ``AVATAR_STUDIO_LOSS_LOG`` file (older projects)."""
    from ..loop import stage_loss_log

    p = stage_loss_log(project, stage) if project is not None else None
    return p if p is not None and p.is_file() else loss_log_path()


def result_images(project, stage: str) -> list[tuple[str, Path]]:
    """(caption, path) of the images the stage's last finished run wrote (its recorded outputs)."""
    rec = project.record(stage)
    outputs = (rec.get("result") or {}).get("outputs") or rec.get("outputs") or {}
    out = []
    for key, rel in outputs.items() if isinstance(outputs, dict) else ():
        if isinstance(rel, str) and rel.lower().endswith((".png", ".jpg", ".jpeg")):
            path = Path(project.root) / rel
            if path.is_file():
                out.append((f"{key}: {rel}", path))
    return out


def read_loss_log(path: Path | None, stage: str, part: str | None = None,
                  upto: int | None = None) -> dict[str, dict[int, dict[str, float]]]:
    """{part: {step: losses}} of `stage` from a loss log (JSON lines of `TrainingLoop`), the newest
    row of each step winning (a resumed run rewrites the steps after its checkpoint). `part` keeps
    one part; `upto` keeps the steps up to and including it. A missing or damaged log gives {}."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    if path is None:
        return out
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    if row.get("stage") != stage or (part is not None and row.get("part") != part):
                        continue
                    step = int(row["step"])
                    if upto is not None and step > upto:
                        continue
                    out.setdefault(str(row.get("part", "")), {})[step] = {
                        str(k): float(v) for k, v in (row.get("losses") or {}).items()}
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a half-written last line, or not ours
    except OSError:
        return {}
    return out


class RateMeter:
    """Steps per second over the last few seconds of wall time."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self.samples: collections.deque[tuple[float, int]] = collections.deque()

    def reset(self) -> None:
        self.samples.clear()

    def add(self, t: float, step: int) -> None:
        if self.samples and step < self.samples[-1][1]:
            self.samples.clear()  # a new part restarted its step count
        self.samples.append((t, step))
        while len(self.samples) > 2 and t - self.samples[0][0] > self.window:
            self.samples.popleft()

    def rate(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, s0), (t1, s1) = self.samples[0], self.samples[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None


def short_time(iso: str) -> str:
    """'2026-12-01T10:23:45+00:00' → '2026-12-01 10:23' (left as it is when it does not parse)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso)).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(iso)
