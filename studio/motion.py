"""Sources of motion for rendering: the subject's own performance, another person's tracked
video (normalised to the subject), a keyframed slider timeline, and a turntable orbit.

Each source is a `Motion`: a length, a frame rate, and per frame a control vector
[yaw, pitch, *expressions] plus, where there is one, the row of a real frame it came from
(for side-by-side and pasting back). Nothing here renders or holds images.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError
from .tracking.data import TrackingData


@dataclass
class Motion:
    name: str
    """"self", "driver", "timeline" or "turntable"."""
    fps: float
    """Frames per second of the clip."""
    controls: np.ndarray
    """(T, 2 + E) float32 control vectors, one per output frame."""
    control_names: list[str]
    """Column names of `controls`."""
    rows: np.ndarray | None = None
    """(T,) row of the source clip each frame came from (self / driver), else None."""
    source: TrackingData | None = None
    """The tracked clip the rows index into (subject or driver)."""
    audio: Path | None = None
    """Audio file to lay under the clip, if any."""
    audio_offset: float = 0.0
    """Seconds into `audio` where the clip starts."""
    notes: list[str] = field(default_factory=list)
    """Things the user should know (clamping, skipped frames)."""

    def __len__(self) -> int:
        return len(self.controls)

    @property
    def duration(self) -> float:
        return len(self) / self.fps

    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        for i in range(0, len(self), size):
            yield i, self.controls[i: i + size]


def _fill_invalid(ctrl: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Hold the last valid control over frames without a face (the first valid one before it)."""
    out = ctrl.copy()
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        raise InputError("the clip has no frame with a face to take motion from")
    last = idx[0]
    for i in range(len(out)):
        if valid[i]:
            last = i
        else:
            out[i] = out[last]
    return out


def subject_motion(project, tracking: TrackingData, which: str = "heldout") -> Motion:
    """The subject's own tracked performance (self-reenactment)."""
    train, held = tracking.split()
    n = tracking.n_frames
    if which == "heldout":
        lo = int(round(n * (1 - tracking.meta.get("holdout_fraction", 0.15))))
        rows = np.arange(lo, n)
    elif which == "train":
        rows = np.arange(0, int(round(n * (1 - tracking.meta.get("holdout_fraction", 0.15)))))
    elif which == "all":
        rows = np.arange(n)
    else:
        raise InputError(f"unknown frame range '{which}'", "use heldout, train or all")
    ctrl = _fill_invalid(tracking.controls(), tracking.valid)[rows]
    audio = _project_audio(project)
    return Motion(name="self", fps=tracking.fps, controls=ctrl, control_names=_names(tracking), rows=rows,
                  source=tracking, audio=audio, audio_offset=float(rows[0] / tracking.fps))


def normalise_to_subject(driver: np.ndarray, driver_ref: np.ndarray, subject_ref: np.ndarray,
                         min_std: np.ndarray | None = None) -> np.ndarray:
    """PVP appendix B: map driver controls to the subject's distribution by mean and std.

    driver: (T, C) controls to map; driver_ref / subject_ref: (N, C) reference controls of each
    person (their training frames). Each column becomes (x − μ_d) / σ_d · σ_s + μ_s.
    """
    mu_d, sd_d = driver_ref.mean(0), driver_ref.std(0)
    mu_s, sd_s = subject_ref.mean(0), subject_ref.std(0)
    floor = min_std if min_std is not None else np.full(driver.shape[1], 1e-3)
    sd_d = np.maximum(sd_d, floor)
    return ((driver - mu_d) / sd_d * sd_s + mu_s).astype(np.float32)


def driver_motion(project, subject: TrackingData, driver: TrackingData, driver_audio: Path | None) -> Motion:
    """Another person's tracked video, normalised to the subject's pose/expression distribution."""
    dctrl = _fill_invalid(driver.controls(), driver.valid)
    s_train, _ = subject.split()
    sref = subject.controls(s_train)
    dref = driver.controls(np.flatnonzero(driver.valid))
    # floors keep a driver who barely moves a control from having it blown up
    floor = np.array([2.0, 2.0] + [0.05] * (sref.shape[1] - 2), np.float32)
    ctrl = normalise_to_subject(dctrl, dref, sref, floor)
    return Motion(name="driver", fps=driver.fps, controls=ctrl, control_names=_names(subject),
                  rows=np.arange(driver.n_frames), source=driver, audio=driver_audio, audio_offset=0.0)


def timeline_motion(path: str | Path, control_names: list[str], fps: float | None = None) -> Motion:
    """A keyframed slider animation from JSON::

        {"fps": 25, "keys": [{"t": 0, "yaw": 0}, {"t": 1.5, "yaw": 20, "jaw_open": 0.8}, {"t": 3}],
         "interpolation": "smooth"}

    Values are interpolated per control between the keys that set it ("linear" or "smooth"
    ease-in-out); a control never set stays at 0 (the subject's neutral). The clip lasts
    until the last key.
    """
    path = Path(path)
    try:
        spec = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InputError(f"the timeline file {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"the timeline {path} is a folder", "give the JSON file itself") from None
    except OSError as exc:
        raise InputError(f"the timeline {path} cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"the timeline {path.name} is not valid JSON ({exc})") from None
    keys = spec.get("keys") if isinstance(spec, dict) else None
    if not keys or not isinstance(keys, list):
        raise InputError(f"the timeline {path.name} has no keys", 'write {"keys": [{"t": 0, "yaw": 0}, ...]}')
    try:
        fps = float(fps or spec.get("fps", 25))
    except (TypeError, ValueError):
        fps = float("nan")
    if not 1 <= fps <= 120:  # as the export's own fps setting
        raise InputError(f"the timeline {path.name} has a frame rate of {spec.get('fps')!r}",
                         "give \"fps\" a number from 1 to 120, e.g. 25")
    interpolation = spec.get("interpolation", "smooth")
    if interpolation not in ("smooth", "linear"):
        raise InputError(f"unknown interpolation {interpolation!r} in {path.name}", "use \"smooth\" or \"linear\"")
    try:
        keys = sorted(keys, key=lambda k: float(k["t"]))
        if not all(math.isfinite(float(k["t"])) for k in keys):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise InputError(f"every key in {path.name} needs a time 't' in seconds") from None
    unknown = {k for key in keys for k in key if k != "t" and k not in control_names}
    if unknown:
        raise InputError(f"the timeline names unknown sliders: {', '.join(sorted(unknown))}",
                         f"known sliders: {', '.join(control_names)}")
    for key in keys:
        for k, v in key.items():
            if k != "t" and not _finite(v):
                raise InputError(f"the timeline {path.name} sets {k} to {v!r} at t={key['t']}, not a number",
                                 f'write numbers, e.g. {{"t": {key["t"]}, "{k}": 0.5}}')
    end = float(keys[-1]["t"])
    if end <= 0:
        raise InputError("the timeline must last longer than 0 seconds")
    if end > 3600:  # as a turntable's longest
        raise InputError(f"the timeline {path.name} lasts {end:g} s, longer than an hour",
                         "check the keys' times 't': they are in seconds")
    t = np.arange(int(math.floor(end * fps)) + 1) / fps
    smooth = interpolation == "smooth"
    ctrl = np.zeros((len(t), len(control_names)), np.float32)
    for j, name in enumerate(control_names):
        pts = [(float(k["t"]), float(k[name])) for k in keys if name in k]
        if not pts:
            continue
        kt = np.array([p[0] for p in pts])
        kv = np.array([p[1] for p in pts])
        if len(pts) == 1:
            ctrl[:, j] = kv[0]
            continue
        seg = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
        u = np.clip((t - kt[seg]) / np.maximum(kt[seg + 1] - kt[seg], 1e-9), 0, 1)
        if smooth:
            u = u * u * (3 - 2 * u)
        ctrl[:, j] = kv[seg] + (kv[seg + 1] - kv[seg]) * u
    return Motion(name="timeline", fps=fps, controls=ctrl, control_names=list(control_names))


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v)) and not isinstance(v, bool)
    except (TypeError, ValueError):
        return False


def turntable_motion(control_names: list[str], ranges: dict[str, tuple[float, float]], duration: float = 10.0,
                     fps: float = 25.0, expression: dict[str, float] | None = None, reach: float = 0.9,
                     turns: float = 1.0) -> Motion:
    """A yaw/pitch orbit at a fixed expression that starts and ends facing forward.

    Forward is yaw = pitch = 0 (the subject's frontal pose), or the nearest trained pose when
    0 is outside a range. Yaw sweeps as a sine to `reach` of the trained range on each side of
    forward (the sides need not be equal: a subject who turned further one way is shown further
    that way); pitch follows a cosine to half of `reach` towards the side of its range with more
    room, so the head traces a loop through forward.
    """
    if duration <= 0:
        raise InputError("the turntable must last longer than 0 seconds")
    t = np.arange(int(round(duration * fps))) / fps
    ctrl = np.zeros((len(t), len(control_names)), np.float32)
    (y0, y1), (p0, p1) = ranges.get("yaw", (-20, 20)), ranges.get("pitch", (-10, 10))
    yc, pc = float(np.clip(0.0, y0, y1)), float(np.clip(0.0, p0, p1))
    phase = 2 * np.pi * turns * t / duration
    s = np.sin(phase)
    ctrl[:, 0] = yc + reach * np.where(s >= 0, (y1 - yc) * s, (yc - y0) * s)
    up, down = p1 - pc, pc - p0
    pa = 0.5 * reach * (up if up >= down else -down)  # half the room: a gentle nod, not the extreme
    ctrl[:, 1] = pc + pa * 0.5 * (1 - np.cos(phase))
    for k, v in (expression or {}).items():
        if k not in control_names:
            raise InputError(f"unknown expression '{k}'", f"known: {', '.join(control_names[2:])}")
        ctrl[:, control_names.index(k)] = v
    return Motion(name="turntable", fps=fps, controls=ctrl, control_names=list(control_names))


def _names(tracking: TrackingData) -> list[str]:
    return ["yaw", "pitch"] + tracking.expression_names


def _project_audio(project) -> Path | None:
    rec = project.record("ingest")
    rel = (rec.get("outputs") or {}).get("audio")
    return project.path(rel) if rel and project.path(rel).exists() else None
