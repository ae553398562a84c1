"""Engine-agnostic evaluation of a trained avatar (`avatar-studio eval`).

Every engine is measured the same way, through `studio.avatar.Avatar`:

1. held-out quality: the held-out frames (the last 15 % of the clip, never trained on) are
   rendered from their tracked controls and compared with the real crops: PSNR, SSIM, ArcFace
   identity similarity (when the weights are configured), LPIPS (only when a VGG/AlexNet
   backbone is configured); PSNR/SSIM also with the controls clamped to the slider ranges, as
   the `Avatar` API renders them;
2. control accuracy: sweeps of yaw, pitch and each expression slider over its trained range
   (the other controls neutral) are rendered and re-tracked with the project's own tracker:
   yaw/pitch mean absolute error in degrees, per-expression Pearson correlation of commanded
   vs measured, and the share of renders in which a face was found;
3. render latency per frame (one frame at a time, controls changing every frame);
4. for engines with a free camera (LatentAvatar): multi-view consistency — one (neutral)
   expression over a yaw sweep: identity similarity between the views, and the re-tracked
   yaw against the commanded yaw.

Results go to ``<project>/eval/<engine>/eval.json`` with a contact sheet ``heldout.png``
(rows: ground truth, render from the tracked controls, render with the controls clamped to the
slider ranges), ``sweeps.png`` and, for free-camera engines, ``multiview.png``; `format_table` prints one or more
reports side by side.
"""
from __future__ import annotations

import time
from typing import Callable, Generator

import cv2
import numpy as np

from . import metrics
from .atomic import write_bytes, write_json
from .progress import Progress

STAGE = "eval"


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _render_all(avatar, controls: np.ndarray, batch: int = 8) -> np.ndarray:
    out = [avatar.render_batch(controls[i:i + batch])[0] for i in range(0, len(controls), batch)]
    return np.concatenate(out) if out else np.zeros((0, avatar.size, avatar.size, 3), np.uint8)


def _sheet(rows: list[np.ndarray], cell: int = 128) -> np.ndarray:
    """Stack rows of images (each (n, S, S, 3) uint8) into one RGB sheet with cells of `cell` px."""
    width = max(len(r) for r in rows)
    lines = []
    for r in rows:
        cells = [cv2.resize(im, (cell, cell), interpolation=cv2.INTER_AREA) for im in r]
        cells += [np.zeros((cell, cell, 3), np.uint8)] * (width - len(cells))
        lines.append(np.concatenate(cells, 1))
    return np.concatenate(lines, 0)


def _write_png(path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if ok:
        write_bytes(path, buf.tobytes())


def _retrack(images: np.ndarray, tracking) -> list[dict | None]:
    from .tracking.tracker import track_images

    return track_images(list(images), tracking)


def _pose_errors(commanded: np.ndarray, tracked: list[dict | None], axis: int) -> dict:
    found = [i for i, t in enumerate(tracked) if t is not None]
    if not found:
        return {"mae_deg": None, "max_deg": None, "bias_deg": None, "found": 0.0}
    meas = np.array([tracked[i]["pose"][axis] for i in found], np.float64)
    err = meas - commanded[found]
    return {"mae_deg": round(float(np.mean(np.abs(err))), 3), "max_deg": round(float(np.max(np.abs(err))), 3),
            "bias_deg": round(float(np.mean(err)), 3), "found": round(len(found) / len(tracked), 4),
            "commanded": [round(float(v), 2) for v in commanded],
            "measured": [None if t is None else round(float(t["pose"][axis]), 2) for t in tracked]}


def iter_evaluate(project, engine: str | None = None, *, sweep_points: int = 9, latency_frames: int = 20,
                  sheet_frames: int = 8) -> Generator[Progress, None, dict]:
    """Evaluate a trained engine; yields `Progress`, returns the report dict (also written to disk)."""
    from .avatar import Avatar
    from .project import now_iso
    from .tracking.data import TrackingData

    t_start = time.perf_counter()
    avatar = Avatar.open(project, engine)
    name = avatar.name
    tracking = TrackingData.from_project(project)
    _, held = tracking.split()
    out_dir = project.root / "eval" / name
    report: dict = {"engine": name, "project": project.name, "created": now_iso(), "size": avatar.size,
                    "heldout_frames": int(len(held))}

    # 1 -------------------------------------------------------------- held-out frames
    # Rendered from the tracked controls as they are (the engine's own render_controls), and a
    # second time through `Avatar.render_batch`, which clamps every control into its slider range
    # (1st..99th percentile of training): held-out frames often go past it (here: a wider open
    # mouth than in any training frame), so both figures are reported.
    yield Progress(stage=STAGE, step=0, total=max(1, len(held)), part="heldout", message=f"{name}: held-out frames")
    controls = tracking.controls(held)
    renders, clamped_renders = [], []
    for i in range(0, len(held), 8):
        renders.append(avatar.engine.render_controls(controls[i:i + 8]))
        clamped_renders.append(avatar.render_batch(controls[i:i + 8])[0])
        yield Progress(stage=STAGE, step=min(i + 8, len(held)), total=len(held), part="heldout")
    empty = np.zeros((0, avatar.size, avatar.size, 3), np.uint8)
    renders = np.concatenate(renders) if renders else empty
    clamped_renders = np.concatenate(clamped_renders) if clamped_renders else empty
    truth = tracking.crops(held, size=avatar.size)
    heldout: dict = {"psnr": None, "ssim": None, "identity": None, "lpips": None}
    if len(held):
        heldout["psnr"] = round(metrics.psnr(renders, truth), 3)
        heldout["ssim"] = round(metrics.ssim(renders, truth), 4)
        ident = metrics.identity_similarity(renders, truth)
        heldout["identity"] = None if ident is None else round(ident, 4)
        lp = metrics.lpips(renders, truth)
        heldout["lpips"] = None if lp is None else round(lp, 4)
        heldout["psnr_clamped"] = round(metrics.psnr(clamped_renders, truth), 3)
        heldout["ssim_clamped"] = round(metrics.ssim(clamped_renders, truth), 4)
        outside = {}
        for j, cname in enumerate(avatar.control_names):
            lo, hi = avatar.ranges.get(cname, (-np.inf, np.inf))
            share = float(np.mean((controls[:, j] < lo - 1e-6) | (controls[:, j] > hi + 1e-6)))
            if share > 0:
                outside[cname] = round(share, 3)
        heldout["outside_slider_range"] = outside
        pick = np.linspace(0, len(held) - 1, min(sheet_frames, len(held))).astype(int)
        _write_png(out_dir / "heldout.png", _sheet([truth[pick], renders[pick], clamped_renders[pick]]))
    report["heldout"] = heldout

    # 2 -------------------------------------------------------------- control sweeps
    names, ranges = avatar.control_names, avatar.ranges
    neutral = avatar.neutral()
    sweeps: dict = {}
    found_total, n_total = 0, 0
    sheet_rows = []
    for j, cname in enumerate(names):
        lo, hi = ranges.get(cname, (-1.0, 1.0))
        values = np.linspace(lo, hi, sweep_points).astype(np.float32)
        c = np.repeat(neutral[None], sweep_points, 0)
        c[:, j] = values
        imgs = _render_all(avatar, c)
        tracked = _retrack(imgs, tracking)
        found = [i for i, t in enumerate(tracked) if t is not None]
        found_total += len(found)
        n_total += len(tracked)
        if j < 2:
            sweeps[cname] = _pose_errors(values, tracked, j)
        else:
            meas = [float(tracked[i]["expr"][j - 2]) for i in found]
            r = _pearson(values[found], np.array(meas)) if found else None
            sweeps[cname] = {"pearson": None if r is None else round(r, 4), "found": round(len(found) / len(tracked), 4)}
        if j < 4:
            sheet_rows.append(imgs)
        yield Progress(stage=STAGE, step=j + 1, total=len(names), part="sweeps", message=f"{name}: {cname} sweep")
    exprs = [v["pearson"] for k, v in sweeps.items() if k not in ("yaw", "pitch") and v["pearson"] is not None]
    report["controls"] = {
        "yaw_mae_deg": sweeps["yaw"]["mae_deg"], "pitch_mae_deg": sweeps["pitch"]["mae_deg"],
        "expression_pearson_mean": round(float(np.mean(exprs)), 4) if exprs else None,
        "expression_pearson": {k: v["pearson"] for k, v in sweeps.items() if k not in ("yaw", "pitch")},
        "face_found": round(found_total / max(1, n_total), 4), "sweep_points": sweep_points, "sweeps": sweeps}
    _write_png(out_dir / "sweeps.png", _sheet(sheet_rows))

    # 3 -------------------------------------------------------------- latency
    yield Progress(stage=STAGE, step=0, total=latency_frames, part="latency", message=f"{name}: render speed")
    rng = np.random.default_rng(0)
    lo = np.array([ranges[n][0] for n in names], np.float32)
    hi = np.array([ranges[n][1] for n in names], np.float32)
    for _ in range(2):  # warm-up
        avatar.render_batch((lo + (hi - lo) * rng.random(len(names)))[None].astype(np.float32))
    times = []
    for _ in range(latency_frames):
        c = (lo + (hi - lo) * rng.random(len(names)))[None].astype(np.float32)
        t0 = time.perf_counter()
        avatar.render_batch(c)
        times.append((time.perf_counter() - t0) * 1000)
    report["latency"] = {"render_ms_median": round(float(np.median(times)), 2),
                         "render_ms_mean": round(float(np.mean(times)), 2), "frames": latency_frames,
                         "size": avatar.size}

    # 4 -------------------------------------------------------------- multi-view consistency
    if getattr(avatar.engine, "free_camera", False):
        yield Progress(stage=STAGE, step=0, total=1, part="multiview", message=f"{name}: yaw sweep")
        lo_y, hi_y = ranges["yaw"]
        yaws = np.linspace(lo_y, hi_y, max(sweep_points, 9)).astype(np.float32)
        c = np.repeat(neutral[None], len(yaws), 0)
        c[:, 0] = yaws
        imgs = _render_all(avatar, c)
        tracked = _retrack(imgs, tracking)
        pose = _pose_errors(yaws, tracked, 0)
        ident = metrics.pairwise_identity(imgs)
        front = int(np.argmin(np.abs(yaws)))
        to_front = metrics.identity_similarity_each(imgs, np.repeat(imgs[front:front + 1], len(imgs), 0))
        report["multiview"] = {"yaw_range": [round(float(lo_y), 2), round(float(hi_y), 2)], "views": len(yaws),
                               "identity_between_views": None if ident is None else round(ident, 4),
                               "identity_to_frontal_min": None if to_front is None else round(float(to_front.min()), 4),
                               "yaw_mae_deg": pose["mae_deg"], "yaw_max_deg": pose["max_deg"],
                               "yaw_bias_deg": pose["bias_deg"], "face_found": pose["found"],
                               "commanded": pose.get("commanded"), "measured": pose.get("measured")}
        _write_png(out_dir / "multiview.png", _sheet([imgs]))
        yield Progress(stage=STAGE, step=1, total=1, part="multiview")
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(out_dir / "eval.json", report)
    return report


def evaluate(project, engine: str | None = None, on_progress: Callable[[Progress], None] | None = None,
             **kw) -> dict:
    """Run `iter_evaluate` to the end, passing its progress events to `on_progress`."""
    gen = iter_evaluate(project, engine, **kw)
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress:
            on_progress(ev)


# ------------------------------------------------------------------ the table

def _fmt(v, spec: str = ".2f", scale: float = 1.0, suffix: str = "") -> str:
    if v is None:
        return "—"
    return f"{v * scale:{spec}}{suffix}"


def _get(rep: dict, *path):
    for p in path:
        if not isinstance(rep, dict) or p not in rep:
            return None
        rep = rep[p]
    return rep


ROWS = [
    ("held-out PSNR (dB)", ("heldout", "psnr"), ".2f", 1.0),
    ("held-out PSNR, controls clamped (dB)", ("heldout", "psnr_clamped"), ".2f", 1.0),
    ("held-out SSIM", ("heldout", "ssim"), ".3f", 1.0),
    ("held-out identity (ArcFace cos)", ("heldout", "identity"), ".3f", 1.0),
    ("held-out LPIPS", ("heldout", "lpips"), ".3f", 1.0),
    ("yaw error (° MAE)", ("controls", "yaw_mae_deg"), ".2f", 1.0),
    ("pitch error (° MAE)", ("controls", "pitch_mae_deg"), ".2f", 1.0),
    ("expression correlation (mean r)", ("controls", "expression_pearson_mean"), ".3f", 1.0),
    ("face found in sweeps (%)", ("controls", "face_found"), ".1f", 100.0),
    ("render time (ms/frame)", ("latency", "render_ms_median"), ".1f", 1.0),
    ("multi-view identity (cos)", ("multiview", "identity_between_views"), ".3f", 1.0),
    ("multi-view yaw error (° MAE)", ("multiview", "yaw_mae_deg"), ".2f", 1.0),
    ("multi-view yaw error (° max)", ("multiview", "yaw_max_deg"), ".2f", 1.0),
    ("multi-view face found (%)", ("multiview", "face_found"), ".1f", 100.0),
]


def format_table(reports: dict | list[dict], per_expression: bool = True) -> str:
    """One column per report (engine), one row per figure; "—" where a figure does not apply."""
    reps = [reports] if isinstance(reports, dict) else list(reports)
    heads = [f"{r.get('engine', '?')} ({r.get('size', '?')} px)" for r in reps]
    label_w = 38
    col_w = max(14, *(len(h) + 2 for h in heads))
    lines = [f"{'':<{label_w}}" + "".join(f"{h:>{col_w}}" for h in heads)]
    for label, path, spec, scale in ROWS:
        lines.append(f"{label:<{label_w}}" + "".join(f"{_fmt(_get(r, *path), spec, scale):>{col_w}}" for r in reps))
    if per_expression:
        names: list[str] = []
        for r in reps:
            for k in (_get(r, "controls", "expression_pearson") or {}):
                if k not in names:
                    names.append(k)
        for k in names:
            lines.append(f"{'  r ' + k:<{label_w}}" + "".join(
                f"{_fmt(_get(r, 'controls', 'expression_pearson', k), '.3f'):>{col_w}}" for r in reps))
    lines.append(f"{'held-out frames':<{label_w}}" + "".join(f"{str(r.get('heldout_frames', '—')):>{col_w}}"
                                                             for r in reps))
    return "\n".join(lines)
