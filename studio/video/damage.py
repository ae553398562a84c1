"""Finding the stretches of a clip that are missing or damaged, from timestamps and ffmpeg's log.

- `find_gaps` / `gap_limit`: jumps in a list of frame or packet times (frames the decoder could not
  produce, packets missing from the file).
- `damaged_spans`: from a decoder error to the next keyframe decoded cleanly.
- `merge_spans`: the union of such stretches.
- `_is_damage`: whether an ffmpeg log line signals damaged data.

Used by the frame reader (`studio.video.decode`) and the packet scan (`studio.video.scan`).
"""
from __future__ import annotations

import re

import numpy as np


GAP_MIN_S = 0.25
"""A jump between consecutive timestamps longer than this (and than 4 frame intervals) is a gap."""


def find_gaps(times, interval: float, durations=None) -> list[tuple[float, float]]:
    """(last time before, first time after) for each jump in `times` longer than a gap.

    `durations` (seconds, one per time; 0 = unknown): a frame that lasts until the next one is not
    followed by a gap: a variable-rate clip holds a frame that long where the picture stood still
    (a phone's stall, a screen recording), while frames before a hole keep their usual length."""
    pairs = sorted(zip(times, durations if durations is not None else [0.0] * len(times)))
    limit = gap_limit(interval)
    return [(a, b) for (a, da), (b, _) in zip(pairs, pairs[1:])
            if b - a > limit and a + max(da, 0.0) < b - 0.5 * interval]


def gap_limit(interval: float) -> float:
    """The jump between consecutive timestamps (frames `interval` s apart) that counts as a gap."""
    return max(GAP_MIN_S, 4.0 * interval)


def merge_spans(spans) -> list:
    """Sorted, non-overlapping [start, end] spans covering the given ones."""
    out: list = []
    for a, b in sorted((float(a), float(b)) for a, b in spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


SNAP_BACK_S = 2.0
"""How far before the first error a damaged stretch may start: back to the keyframe before it."""


def damaged_spans(events, end: float, settle: int = 2, snap_back: float = SNAP_BACK_S) -> list:
    """Stretches from a decoder error to the next keyframe decoded cleanly.

    `events`: the decoder's log in order, ("frame", time, is_keyframe) or ("error",). Errors come
    from the parser too, which runs a few packets ahead of the decoder, so a keyframe closes a
    stretch only when at least `settle` frames were decoded since the last error (otherwise the
    errors may belong to packets after it).

    Where an error line lands among the frame lines varies from run to run (the parser, the
    decoder and the frame log are different threads: up to eight frames apart at 30 fps on a busy
    machine). So a stretch starts at the keyframe before the first error (no earlier than
    `snap_back` seconds before it), which is the same in every run; and in a clip with errors, a
    jump in the frame times (frames the decoder could not produce) starts a stretch too, since the
    frames after it predict from the missing ones until the next keyframe."""
    frames = sorted(ev[1] for ev in events if ev[0] == "frame")
    steps = np.diff(frames) if len(frames) > 2 else np.array([1.0 / 30])
    gap = gap_limit(max(float(np.median(steps)), 1e-3))
    any_error = any(ev[0] == "error" for ev in events)
    spans, start, last_t, last_key, since_error = [], None, None, 0.0, 0

    def opened(t: float) -> float:
        return round(max(last_key, t - snap_back), 3)

    for ev in events:
        if ev[0] == "error":
            if start is None:
                start = opened(last_t if last_t is not None else 0.0)
            since_error = 0
            continue
        _, t, key = ev
        if any_error and last_t is not None and t - last_t > gap and start is None:
            start = opened(last_t)  # a keyframe right after the hole, decoded cleanly, ends it
        since_error += 1
        if start is not None and key and since_error > settle:
            spans.append([start, round(t, 3)])
            start = None
        if key:
            last_key = t
        last_t = t
    if start is not None:
        spans.append([start, round(max(end, start), 3)])
    return spans


_LEVEL = re.compile(r"\[(error|fatal|panic|warning)\] ")
_DAMAGE_WORDS = re.compile(r"corrupt|partial file|invalid|missing|truncat|conceal|error", re.IGNORECASE)


def _is_damage(line: str) -> bool:
    """An ffmpeg log line (written with -loglevel level+...) that signals damaged data: any error,
    or a warning about corrupt / missing data (not e.g. "UDTA parsing failed" on intact clips)."""
    m = _LEVEL.search(line)
    if m is None:
        return False
    return m.group(1) != "warning" or _DAMAGE_WORDS.search(line[m.end():]) is not None
