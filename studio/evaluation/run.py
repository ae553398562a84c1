"""The run of `avatar-studio eval` for one engine: `iter_evaluate` and `evaluate`.

Held-out frames and the retrieval baseline (scored by `studio.evaluation.scoring`), the control
sweeps re-tracked with the project's own tracker (yaw/pitch error, per-slider correlation, FLAME
sliders with and without FLAME's geometry, the Named tab through the FLAME map: `_named_via_flame`),
render latency, multi-view consistency for free-camera engines; the report is written to
``eval/<engine>/eval.json`` beside its contact sheets (`studio.evaluation.sheets`).
"""
from __future__ import annotations

import time
from typing import Callable, Generator

import numpy as np

from .. import metrics
from ..atomic import write_json
from ..progress import Progress
from .scoring import (RETRIEVAL_POSE_WEIGHT, bar_keep, beats_retrieval, face_masks, retrieval_rows, score_images,
                      slider_crosstalk, within_bars)
from .sheets import _engine_title, _sheet, _write_png

STAGE = "eval"


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _render_all(avatar, controls: np.ndarray, batch: int = 8) -> np.ndarray:
    out = [avatar.render_batch(controls[i:i + batch])[0] for i in range(0, len(controls), batch)]
    return np.concatenate(out) if out else np.zeros((0, avatar.size, avatar.size, 3), np.uint8)


def _retrack(images: np.ndarray, tracking) -> list[dict | None]:
    from ..tracking.tracker import track_images

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
                  sheet_frames: int = 8, detail: bool = True,
                  flame_geometry: bool = True, scene: bool = True,
                  out_size: int | None = None) -> Generator[Progress, None, dict]:
    """Evaluate a trained engine; yields `Progress`, returns the report dict (also written to disk).

    `detail`: measure the avatar as the viewer and export show it, with detail from the video
    (`studio.detail`; the engine's render alone is scored beside it as ``heldout_engine``), or,
    with False, the engine's render alone everywhere. `flame_geometry`: for an avatar on FLAME
    controls, warp renders by FLAME's geometry as the viewer does (`studio.flame.warp`); the FLAME
    sliders are then also scored without it (``controls.flame_without_warp``). `scene`: the video's
    own background behind the person (`studio.scene`), each held-out render placed where that frame's
    head was (its tracked frame -> crop transform); the avatar with the engine's own background is
    scored beside it as ``heldout_own_background``. `out_size`: measure the avatar shown larger than
    the engine renders (`Avatar.open`'s `out_size`; the real frames at that size too); the report goes
    to ``eval/<engine>_<size>px/`` beside the default one. Measured without detail, scene or FLAME's warp,
    the report goes beside the default one too (``eval/<engine>_no_detail/`` ...), its `variant` naming how."""
    from ..avatar import Avatar
    from ..project import now_iso
    from ..tracking.data import TrackingData

    t_start = time.perf_counter()
    from ..flame.controls import is_flame_controls

    avatar = Avatar.open(project, engine, detail=detail, flame_geometry=flame_geometry, scene=scene,
                         out_size=out_size)
    name = avatar.name
    flame_controls = is_flame_controls(avatar.control_names)
    tracking = TrackingData.from_project(project, controls="flame" if flame_controls else "named")
    _, held = tracking.split()
    # a report measured another way than the default goes beside the default one, never over it
    variant = [w for w, on in (("no detail", not detail), ("no scene", not scene),
                               ("no FLAME warp", not flame_geometry)) if on]
    out_dir = project.root / "eval" / "_".join(
        [name] + ([f"{avatar.size}px"] if avatar.size != avatar.engine.size else [])
        + [w.replace(" ", "_").lower() for w in variant])
    report: dict = {"engine": name, "project": project.name, "created": now_iso(), "size": avatar.size,
                    **({"variant": ", ".join(variant)} if variant else {}),
                    "heldout_frames": int(len(held)), "video_detail": avatar.video_detail() is not None,
                    "flame_geometry": avatar.flame_warp() is not None, "scene": avatar.scene_plate() is not None}

    # 1 -------------------------------------------------------------- held-out frames
    # Rendered from the tracked controls as they are (the engine's own render_controls), and a
    # second time through `Avatar.render_batch`, which clamps every control into its slider range
    # (1st..99th percentile of training): held-out frames often go past it (here: a wider open
    # mouth than in any training frame), so both figures are reported.
    yield Progress(stage=STAGE, step=0, total=max(1, len(held)), part="heldout", message=f"{name}: held-out frames")
    controls = tracking.controls(held)
    placements = np.asarray(tracking.transforms, np.float64)[held]   # where each held-out head was in its frame
    renders, clamped_renders = [], []
    for i in range(0, len(held), 8):
        renders.append(avatar.engine_renders(controls[i:i + 8]))
        clamped_renders.append(avatar.render_batch(controls[i:i + 8], placements=placements[i:i + 8])[0])
        yield Progress(stage=STAGE, step=min(i + 8, len(held)), total=len(held), part="heldout")
    empty = np.zeros((0, avatar.size, avatar.size, 3), np.uint8)
    renders = np.concatenate(renders) if renders else empty
    clamped_renders = np.concatenate(clamped_renders) if clamped_renders else empty
    engine_renders, own_background = renders, None
    finishing = avatar.video_detail() is not None or avatar.flame_warp() is not None
    if (finishing or avatar.scene_plate() is not None) and len(renders):
        finished = [avatar.finish(renders[i:i + 8], controls[i:i + 8], scene=False)   # as the viewer shows it
                    for i in range(0, len(renders), 8)]
        if avatar.scene_plate() is not None:   # behind the person: the video's background at the frame's placement
            own_background = np.concatenate(finished) if finishing else None
            finished = [avatar.scene_plate().composite(f, placements[i * 8:i * 8 + 8]) for i, f in enumerate(finished)]
        renders = np.concatenate(finished)
    truth = tracking.crops(held, size=avatar.size)   # real crops, area-downscaled to the render size
    masks = face_masks(tracking, held, avatar.size)
    heldout: dict = {"psnr": None, "ssim": None, "identity": None, "feature_distance": None,
                     "sharpness_median": None, "sharpness_mean": None, "lpips": None}
    train, retrieval = tracking.split()[0], None
    if len(held):
        heldout.update(score_images(renders, truth, masks))
        # The rows below draw no black bars where the video has them (only the scene lays them over the
        # avatar); the engines are not trained on the bars, so there the rows are scored on the picture alone.
        keep = bar_keep(tracking, held, avatar.size)
        bars = "; the video's black bars left out of the score" if keep is not None else ""
        if renders is not engine_renders:
            report["heldout_engine"] = {"note": "the engine's render alone, without detail from the video"
                                                + (" or FLAME's geometry" if avatar.flame_warp() is not None else "")
                                                + (" or the video's background" if avatar.scene_plate() is not None else "")
                                                + bars,
                                        **score_images(engine_renders, within_bars(truth, engine_renders, keep), masks)}
        if own_background is not None:
            report["heldout_own_background"] = {"note": "the avatar with the engine's own background instead of "
                                                        "the video's (`--no-scene`)" + bars,
                                                **score_images(own_background, within_bars(truth, own_background, keep),
                                                               masks)}
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
        yield Progress(stage=STAGE, step=0, total=1, part="retrieval",
                       message=f"{name}: retrieval baseline (nearest training frame)")
        if len(train):
            pick_rows = train[retrieval_rows(tracking.controls(train), controls)]
            retrieved = tracking.crops(pick_rows, size=avatar.size)
            retrieval = {"method": "nearest training frame by standardised tracked controls",
                         "pose_weight": RETRIEVAL_POSE_WEIGHT, "rows": [int(r) for r in pick_rows],
                         **score_images(retrieved, truth, masks)}
        yield Progress(stage=STAGE, step=1, total=1, part="retrieval")
        pick = np.linspace(0, len(held) - 1, min(sheet_frames, len(held))).astype(int)
        sharp_caption = lambda vals: [  # noqa: E731
            "" if vals[i] is None else f"sharpness {vals[i]:.2f}" for i in pick]
        rows = [truth[pick]] + ([retrieved[pick]] if retrieval else []) + [renders[pick], clamped_renders[pick]]
        labels = ["real frame"] + (["retrieval (nearest training frame)"] if retrieval else []) + \
            ["avatar", "controls clamped to the sliders"]
        caps = [None] + ([sharp_caption(retrieval["sharpness_each"])] if retrieval else []) + \
            [sharp_caption(heldout["sharpness_each"]), None]
        if "heldout_engine" in report:   # the engine's own render, without detail from the video
            rows.insert(-1, engine_renders[pick])
            labels.insert(-1, "engine alone (no video detail)")
            caps.insert(-1, sharp_caption(report["heldout_engine"]["sharpness_each"]))
        _write_png(out_dir / "heldout.png", _sheet(rows, cell=max(128, min(256, avatar.size)), labels=labels,
                                                   captions=caps, header=[f"frame {held[i]}" for i in pick],
                                                   corner=_engine_title(name)))
    report["heldout"] = heldout
    report["retrieval"] = retrieval
    report["beats_retrieval"] = beats_retrieval(heldout, retrieval)

    # 2 -------------------------------------------------------------- control sweeps
    names, ranges = avatar.control_names, avatar.ranges
    neutral = avatar.neutral()
    sweeps: dict = {}
    found_total, n_total = 0, 0
    sheet_rows, sheet_labels, sheet_caps = [], [], []   # sweeps.png: the first four sliders, each value captioned
    flame_sweeps: dict = {}  # FLAME sliders: commanded values and re-tracked renders, fitted after the loop
    measured: dict = {}      # named sliders: commanded values and every expression measured, for the crosstalk
    swept = list(names)
    if flame_controls:
        from ..flame.evaluate import sweep_sliders

        swept = names[:2] + sweep_sliders(names)
    for j, cname in enumerate(names):
        if cname not in swept:
            continue
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
        elif flame_controls:
            flame_sweeps[cname] = (values, tracked)
            sweeps[cname] = {"pearson": None, "found": round(len(found) / len(tracked), 4)}
        else:
            meas = [float(tracked[i]["expr"][j - 2]) for i in found]
            if found:
                measured[cname] = (values[found], np.array([tracked[i]["expr"] for i in found], np.float64))
            r = _pearson(values[found], np.array(meas)) if found else None
            sweeps[cname] = {"pearson": None if r is None else round(r, 4), "found": round(len(found) / len(tracked), 4)}
        if j < 4:
            sheet_rows.append(imgs)
            sheet_labels.append(cname)
            sheet_caps.append([f"{v:+.0f}°" if j < 2 else f"{v:.2f}" for v in values])
        yield Progress(stage=STAGE, step=j + 1, total=len(names), part="sweeps", message=f"{name}: {cname} sweep")
    flame_fit = None
    if flame_controls:
        from ..flame.evaluate import fit_sweeps

        yield Progress(stage=STAGE, step=0, total=1, part="flame", message=f"{name}: FLAME fit of the sweeps")
        flame_fit = fit_sweeps(project, flame_sweeps)
        for k, r in (flame_fit.get("pearson") or {}).items():
            sweeps[k]["pearson"] = r
        if avatar.flame_warp() is not None:   # the same sliders without FLAME's geometry, said openly
            yield Progress(stage=STAGE, step=0, total=1, part="flame",
                           message=f"{name}: FLAME sliders without FLAME's geometry")
            plain: dict = {}
            avatar.flame_geometry = False
            try:
                for cname, (values, _) in flame_sweeps.items():
                    c = np.repeat(neutral[None], len(values), 0)
                    c[:, names.index(cname)] = values
                    plain[cname] = (values, _retrack(_render_all(avatar, c), tracking))
            finally:
                avatar.flame_geometry = True
            flame_plain = fit_sweeps(project, plain)
    named_via_flame = None
    if flame_controls:
        named_via_flame = yield from _named_via_flame(project, avatar, tracking, neutral, sweep_points)
    exprs = [v["pearson"] for k, v in sweeps.items() if k not in ("yaw", "pitch") and v["pearson"] is not None]
    report["controls"] = {
        "yaw_mae_deg": sweeps["yaw"]["mae_deg"], "pitch_mae_deg": sweeps["pitch"]["mae_deg"],
        "expression_pearson_mean": round(float(np.mean(exprs)), 4) if exprs else None,
        "expression_pearson": {k: v["pearson"] for k, v in sweeps.items() if k not in ("yaw", "pitch")},
        "face_found": round(found_total / max(1, n_total), 4), "sweep_points": sweep_points, "sweeps": sweeps}
    if not flame_controls:
        train, _ = tracking.split()
        report["controls"]["crosstalk"] = slider_crosstalk(measured, tracking.controls(train)[:, 2:], names[2:])
    if flame_fit is not None:
        report["controls"]["flame"] = flame_fit
        if avatar.flame_warp() is not None:
            report["controls"]["flame_without_warp"] = flame_plain
        if named_via_flame is not None:
            report["controls"]["named_via_flame"] = named_via_flame
    _write_png(out_dir / "sweeps.png", _sheet(sheet_rows, labels=sheet_labels, captions=sheet_caps))

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
        _write_png(out_dir / "multiview.png", _sheet([imgs], labels=["yaw, neutral expression"],
                                                     captions=[[f"{v:+.0f}°" for v in yaws]]))
        yield Progress(stage=STAGE, step=1, total=1, part="multiview")
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    report["files"] = {k: str(out_dir / f) for k, f in (("report", "eval.json"), ("heldout", "heldout.png"),
                                                         ("sweeps", "sweeps.png"), ("multiview", "multiview.png"))
                       if k == "report" or (out_dir / f).is_file()}
    write_json(out_dir / "eval.json", report)
    return report


def _named_via_flame(project, avatar, tracking, neutral: np.ndarray, sweep_points: int
                     ) -> Generator[Progress, None, dict | None]:
    """The viewer's "Named" tab of an avatar on FLAME controls, scored as a named avatar's sliders
    are: each named slider swept over the subject's range (the others at 0, head pose at rest),
    turned into FLAME controls by the `flame` stage's map (`NamedToFlame.apply`, as the viewer
    does), rendered as shown, re-tracked, and the commanded value correlated with the tracker's own
    named measure of that expression. None without the map."""
    from ..flame.controls import load_named_map

    loaded = load_named_map(project)
    if loaded is None:
        return None
    nmap, nranges = loaded
    names = avatar.control_names
    pearson, found_share = {}, {}
    for k, nname in enumerate(nmap.named):
        yield Progress(stage=STAGE, step=k, total=len(nmap.named), part="named",
                       message=f"{avatar.name}: named slider {nname} through the FLAME map")
        lo, hi = nranges.get(nname, (0.0, 1.0))
        values = np.linspace(lo, hi, sweep_points).astype(np.float32)
        named_values = np.zeros((sweep_points, len(nmap.named)), np.float32)
        named_values[:, k] = values
        c = nmap.apply(np.repeat(neutral[None], sweep_points, 0), names, named_values)
        tracked = _retrack(_render_all(avatar, c), tracking)
        found = [i for i, t in enumerate(tracked) if t is not None]
        meas = np.array([float(tracked[i]["expr"][k]) for i in found])   # the tracker's named order
        r = _pearson(values[found], meas) if found else None
        pearson[nname] = None if r is None else round(r, 4)
        found_share[nname] = round(len(found) / len(tracked), 4)
    vals = [v for v in pearson.values() if v is not None]
    return {"note": "named sliders through the FLAME map (the viewer's Named tab), scored against the "
                    "tracker's named measures as a named avatar's are",
            "mean": round(float(np.mean(vals)), 4) if vals else None, "pearson": pearson,
            "found": found_share, "map_r2": dict(zip(nmap.flame[:11], [round(v, 3) for v in nmap.r2[:11]]))}


def evaluate(project, engine: str | None = None, on_progress: Callable[[Progress], None] | None = None,
             **kw) -> dict:
    """Run `iter_evaluate` to the end, passing its progress events to `on_progress`."""
    from ..progress import run_to_end

    return run_to_end(iter_evaluate(project, engine, **kw), on_progress)
