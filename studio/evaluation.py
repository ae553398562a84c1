"""Engine-agnostic evaluation of a trained avatar (`avatar-studio eval`).

Every engine is measured the same way, through `studio.avatar.Avatar`:

1. held-out quality: the held-out frames (the last 15 % of the clip, never trained on) are
   rendered from their tracked controls and compared with the real crops (area-downscaled to
   the render's size): PSNR, SSIM, ArcFace identity similarity and the ArcFace feature distance
   (a stand-in for LPIPS; both when the ArcFace file is configured), the sharpness ratio of the
   face region (median and mean; 1.0 = as sharp as the video), LPIPS (only when a VGG/AlexNet
   backbone is configured); PSNR/SSIM also with the controls clamped to the slider ranges, as
   the `Avatar` API renders them. PSNR and SSIM reward a blurred mean face; sharpness, identity
   and the feature distance do not;
   **retrieval baseline**: for each held-out frame the training crop whose tracked controls are
   nearest (`retrieval_rows`) is scored with the same measures, and `beats_retrieval` says, per
   measure, whether the engine does better. An engine that does not beat retrieval on identity
   and feature distance is not yet an avatar: showing a real training frame would be better;
2. control accuracy: sweeps of yaw, pitch and each expression slider over its trained range
   (the other controls neutral) are rendered and re-tracked with the project's own tracker:
   yaw/pitch mean absolute error in degrees, per-expression Pearson correlation of commanded
   vs measured, and the share of renders in which a face was found;
3. render latency per frame (one frame at a time, controls changing every frame);
4. for engines with a free camera (LatentAvatar): multi-view consistency — one (neutral)
   expression over a yaw sweep: identity similarity between the views, and the re-tracked
   yaw against the commanded yaw.

The avatar is measured as the viewer and export show it: with detail from the video
(`studio.detail`) unless `detail=False` (``--no-detail``); the engine's render alone is scored too
(``heldout_engine``), so both are in the table.

Results go to ``<project>/eval/<engine>/eval.json`` with a contact sheet ``heldout.png``
(rows: real crop, retrieval, render from the tracked controls, the engine's render alone, render
with the controls clamped to the slider ranges; each retrieval and render cell captioned with its sharpness ratio),
``sweeps.png`` and, for free-camera engines, ``multiview.png``; `format_table` prints one or
more reports side by side with the retrieval column beside them.
"""
from __future__ import annotations

import time
from pathlib import Path
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


SHEET_FONT = 0.4
"""Font scale of the sheets' labels and captions (cv2 Hershey simplex)."""


def _text_width(text: str, scale: float = SHEET_FONT) -> int:
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]


def _fit_lines(text: str, width: int, scale: float = SHEET_FONT) -> list[str]:
    """`text` broken at spaces (and underscores, shown as spaces) into lines each at most `width` px wide;
    a single word too wide for a line is split between characters. Nothing is dropped."""
    words = text.replace("_", " ").split()
    lines: list[str] = []
    for w in words:
        if lines and _text_width(lines[-1] + " " + w, scale) <= width:
            lines[-1] += " " + w
            continue
        while _text_width(w, scale) > width and len(w) > 1:
            k = max(1, max(i for i in range(1, len(w) + 1) if _text_width(w[:i], scale) <= width or i == 1))
            lines.append(w[:k])
            w = w[k:]
        lines.append(w)
    return lines


def _sheet(rows: list[np.ndarray], cell: int = 128, labels: list[str] | None = None,
           captions: list[list[str] | None] | None = None, header: list[str] | None = None,
           corner: str = "") -> np.ndarray:
    """Stack rows of images (each (n, S, S, 3) uint8) into one RGB sheet with cells of `cell` px.

    `labels`: one name per row, written in a left margin (84 px, wider for a longer word; a long name
    wraps onto several lines, never cut); `captions`: per row None or one short text per cell, written
    into the cell's bottom-left corner; `header`: one text per column, in a strip above the first row
    (`corner`: the strip's text over the labels).
    """
    width = max(len(r) for r in rows)
    margin = 0
    if labels:
        widest_word = max((_text_width(w) for t in labels for w in t.replace("_", " ").split()), default=0)
        margin = max(84, min(widest_word + 10, 2 * cell))
    lines = []
    if header:
        strip = np.zeros((18, margin + width * cell, 3), np.uint8)
        if corner and margin:
            _put_text(strip, _fit_lines(corner, margin - 6)[0], (4, 13))
        for k, text in enumerate(header[:width]):
            if text:
                _put_text(strip, _fit_lines(text, cell - 6)[0], (margin + k * cell + 3, 13))
        lines.append(strip)
    for k, r in enumerate(rows):
        cells = [cv2.resize(im, (cell, cell), interpolation=cv2.INTER_AREA) for im in r]
        cap = captions[k] if captions and k < len(captions) else None
        if cap:
            for im, text in zip(cells, cap):
                if text:
                    _put_text(im, text, (3, cell - 5))
        cells += [np.zeros((cell, cell, 3), np.uint8)] * (width - len(cells))
        line = np.concatenate(cells, 1)
        if labels:
            left = np.zeros((cell, margin, 3), np.uint8)
            text = _fit_lines(labels[k] if k < len(labels) else "", margin - 6)
            y = cell // 2 + 4 - 7 * (len(text) - 1)
            for t in text:
                _put_text(left, t, (4, y))
                y += 14
            line = np.concatenate([left, line], 1)
        lines.append(line)
    return np.concatenate(lines, 0)


def _engine_title(name: str) -> str:
    """The engine's short name as the app says it ("StyleGAN", "NeRF"), else `name`."""
    from .engines import ENGINES

    spec = ENGINES.get(name)
    return spec.short if spec is not None else name


def _put_text(img: np.ndarray, text: str, org: tuple[int, int]) -> None:
    """White text with a dark outline, in place (the Hershey font has no "°": drawn as " deg")."""
    text = text.replace("°", " deg")
    for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, SHEET_FONT, colour, thick, cv2.LINE_AA)


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


RETRIEVAL_POSE_WEIGHT = 2.0
"""Weight of standardised yaw and pitch against each standardised expression in the retrieval
baseline's distance (the weighting the pivot clustering uses)."""


def retrieval_rows(train_controls: np.ndarray, query_controls: np.ndarray,
                   pose_weight: float = RETRIEVAL_POSE_WEIGHT) -> np.ndarray:
    """For each query (n, 2 + E) [yaw, pitch, expr...], the index into `train_controls` (N, 2 + E)
    of the nearest training frame: Euclidean distance after standardising every control with the
    training frames' mean and std, yaw and pitch multiplied by `pose_weight`. (n,) int."""
    from .detail import ControlIndex

    train, query = np.asarray(train_controls), np.asarray(query_controls)
    if train.ndim != 2 or query.ndim != 2 or train.shape[1] != query.shape[1] or not len(train):
        raise ValueError(f"expected (N, C) training and (n, C) query controls, got {train.shape}, {query.shape}")
    return np.argmin(ControlIndex(train, pose_weight).distances(query), axis=1)


def bar_keep(tracking, rows, size: int) -> np.ndarray | None:
    """(n, size, size, 1) float32: where each row's crop shows the video's picture (1) and where one of its
    black bars (0), the `keep` of `within_bars`; None when every crop shows the picture throughout."""
    keep = tracking.bar_masks(rows, size)
    return None if keep is None else keep[..., None]


def within_bars(truth: np.ndarray, renders: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """The real crops `truth` where `keep` ((n, H, W, 1) in [0, 1], `TrackingData.picture_masks`) says they
    show the video's picture, the `renders` on the video's black bars (left out of the score); `truth` itself
    when `keep` is None."""
    if keep is None:
        return truth
    mixed = truth.astype(np.float32) * keep + renders.astype(np.float32) * (1.0 - keep)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def face_masks(tracking, rows, size: int) -> np.ndarray:
    """(n, size, size) bool face regions of the given rows: the convex hull of the tracked mesh
    in crop pixels, scaled to `size` (the FFHQ face ellipse where the mesh is missing)."""
    out = []
    for r in rows:
        lm = tracking.crop_landmarks_at([r], size)[0]
        out.append(metrics.face_mask(size, lm))
    return np.stack(out) if out else np.zeros((0, size, size), bool)


def score_images(images: np.ndarray, truth: np.ndarray, masks: np.ndarray | None = None) -> dict:
    """The held-out measures of `images` against the real crops `truth` (both (n, S, S, 3) uint8, same S):
    PSNR, SSIM, identity, ArcFace feature distance (None without the ArcFace file), sharpness
    ratio of the face region (`masks`) — median, mean and per frame."""
    ident = metrics.identity_similarity(images, truth)
    feat = metrics.feature_distance(images, truth)
    sharp = metrics.sharpness_ratio_each(images, truth, masks)
    summary = metrics.sharpness_summary(sharp)
    rnd = lambda v, n: None if v is None else round(float(v), n)  # noqa: E731
    return {"psnr": rnd(metrics.psnr(images, truth), 3), "ssim": rnd(metrics.ssim(images, truth), 4),
            "identity": rnd(ident, 4), "feature_distance": rnd(feat, 5),
            "sharpness_median": rnd(summary["median"], 4), "sharpness_mean": rnd(summary["mean"], 4),
            "sharpness_each": [None if not np.isfinite(v) else round(float(v), 4) for v in sharp]}


BETTER = {"psnr": "higher", "ssim": "higher", "identity": "higher", "feature_distance": "lower",
          "sharpness_median": "nearer 1", "sharpness_mean": "nearer 1"}
"""How each held-out measure compares: which way is better ("nearer 1": a sharpness ratio above
1 is noise or ringing, not detail, so |log ratio| decides)."""


def beats_retrieval(heldout: dict | None, retrieval: dict | None) -> dict:
    """Per measure in `BETTER`: True/False whether the engine's held-out figure is better than
    the retrieval baseline's (None when either is missing), and "avatar": True only when it beats
    retrieval on both identity and feature distance."""
    out: dict = {}
    for key, how in BETTER.items():
        a, b = _get(heldout or {}, key), _get(retrieval or {}, key)
        if a is None or b is None:
            out[key] = None
        elif how == "higher":
            out[key] = bool(a > b)
        elif how == "lower":
            out[key] = bool(a < b)
        else:
            out[key] = bool(abs(np.log(max(a, 1e-9))) < abs(np.log(max(b, 1e-9))))
    must = (out["identity"], out["feature_distance"])
    out["avatar"] = None if None in must else bool(all(must))
    return out


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
    from .avatar import Avatar
    from .project import now_iso
    from .tracking.data import TrackingData

    t_start = time.perf_counter()
    from .flame.controls import is_flame_controls

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
    swept = list(names)
    if flame_controls:
        from .flame.evaluate import sweep_sliders

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
            r = _pearson(values[found], np.array(meas)) if found else None
            sweeps[cname] = {"pearson": None if r is None else round(r, 4), "found": round(len(found) / len(tracked), 4)}
        if j < 4:
            sheet_rows.append(imgs)
            sheet_labels.append(cname)
            sheet_caps.append([f"{v:+.0f}°" if j < 2 else f"{v:.2f}" for v in values])
        yield Progress(stage=STAGE, step=j + 1, total=len(names), part="sweeps", message=f"{name}: {cname} sweep")
    flame_fit = None
    if flame_controls:
        from .flame.evaluate import fit_sweeps

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
    from .flame.controls import load_named_map

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
    from .progress import run_to_end

    return run_to_end(iter_evaluate(project, engine, **kw), on_progress)


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


ROWS = [   # (label, path in the report, format, scale, which way is better)
    ("held-out PSNR (dB)", ("heldout", "psnr"), ".2f", 1.0, "higher"),
    ("held-out PSNR, controls clamped (dB)", ("heldout", "psnr_clamped"), ".2f", 1.0, "higher"),
    ("held-out PSNR, engine's own background (dB)", ("heldout_own_background", "psnr"), ".2f", 1.0, "higher"),
    ("held-out SSIM", ("heldout", "ssim"), ".3f", 1.0, "higher"),
    ("held-out identity (ArcFace cos)", ("heldout", "identity"), ".3f", 1.0, "higher"),
    ("held-out ArcFace feature distance", ("heldout", "feature_distance"), ".3f", 1.0, "lower"),
    ("held-out sharpness ratio (median)", ("heldout", "sharpness_median"), ".3f", 1.0, "nearer 1"),
    ("held-out sharpness ratio (mean)", ("heldout", "sharpness_mean"), ".3f", 1.0, "nearer 1"),
    ("held-out LPIPS", ("heldout", "lpips"), ".3f", 1.0, "lower"),
    ("  engine alone: identity", ("heldout_engine", "identity"), ".3f", 1.0, "higher"),
    ("  engine alone: feature distance", ("heldout_engine", "feature_distance"), ".4f", 1.0, "lower"),
    ("  engine alone: sharpness (median)", ("heldout_engine", "sharpness_median"), ".3f", 1.0, "nearer 1"),
    ("  engine alone: PSNR (dB)", ("heldout_engine", "psnr"), ".2f", 1.0, "higher"),
    ("yaw error (° MAE)", ("controls", "yaw_mae_deg"), ".2f", 1.0, "lower"),
    ("pitch error (° MAE)", ("controls", "pitch_mae_deg"), ".2f", 1.0, "lower"),
    ("expression correlation (mean r)", ("controls", "expression_pearson_mean"), ".3f", 1.0, "higher"),
    ("FLAME slider r (jaw + 10, mean)", ("controls", "flame", "mean"), ".3f", 1.0, "higher"),
    ("FLAME jaw r", ("controls", "flame", "jaw"), ".3f", 1.0, "higher"),
    ("FLAME slider r without FLAME geometry", ("controls", "flame_without_warp", "mean"), ".3f", 1.0, "higher"),
    ("FLAME jaw r without FLAME geometry", ("controls", "flame_without_warp", "jaw"), ".3f", 1.0, "higher"),
    ("named slider r through the FLAME map", ("controls", "named_via_flame", "mean"), ".3f", 1.0, "higher"),
    ("face found in sweeps (%)", ("controls", "face_found"), ".1f", 100.0, "higher"),
    ("render time (ms/frame)", ("latency", "render_ms_median"), ".1f", 1.0, "lower"),
    ("multi-view identity (cos)", ("multiview", "identity_between_views"), ".3f", 1.0, "higher"),
    ("multi-view yaw error (° MAE)", ("multiview", "yaw_mae_deg"), ".2f", 1.0, "lower"),
    ("multi-view yaw error (° max)", ("multiview", "yaw_max_deg"), ".2f", 1.0, "lower"),
    ("multi-view face found (%)", ("multiview", "face_found"), ".1f", 100.0, "higher"),
]
"""The table's rows. Rows no report has a figure for (FLAME rows for a named avatar, multi-view rows for an
engine without a free camera, LPIPS without its backbone) are left out of the table."""

GOALS = [   # (text, test of a report: True / False, None where the report lacks the figures)
    ("held-out PSNR ≥ 22 dB", lambda r: _at_least(_get(r, "heldout", "psnr"), 22.0)),
    ("held-out identity ≥ 0.75 and above retrieval",
     lambda r: _both(_at_least(_get(r, "heldout", "identity"), 0.75), _get(r, "beats_retrieval", "identity"))),
    ("held-out feature distance below retrieval's", lambda r: _get(r, "beats_retrieval", "feature_distance")),
    ("held-out sharpness ratio (median) ≥ 0.7", lambda r: _at_least(_get(r, "heldout", "sharpness_median"), 0.7)),
    ("yaw and pitch error ≤ 5°", lambda r: _both(_at_most(_get(r, "controls", "yaw_mae_deg"), 5.0),
                                                _at_most(_get(r, "controls", "pitch_mae_deg"), 5.0))),
    ("sliders: mean r ≥ 0.6, none negative", lambda r: _sliders_ok(r)),
]
"""The goals the issue "sharp, recognisable preview avatars" set for held-out frames (README, "Where it
stands"); the whole run's 45 minutes is not the eval's to measure."""


def _at_least(v, floor: float):
    return None if v is None else bool(v >= floor)


def _at_most(v, ceiling: float):
    return None if v is None else bool(v <= ceiling)


def _both(a, b):
    return None if a is None or b is None else bool(a and b)


def _sliders_ok(r: dict):
    mean, each = _get(r, "controls", "expression_pearson_mean"), _get(r, "controls", "expression_pearson") or {}
    vals = [v for v in each.values() if v is not None]
    return None if mean is None else bool(mean >= 0.6 and all(v >= 0 for v in vals))


LEGEND = [
    "better: which way a figure is better (nearer 1: a sharpness ratio above 1 is noise, not detail).",
    "retrieval: the training crop whose tracked controls are nearest each held-out frame's (no avatar).",
    "✓ / ✗: the avatar beats / does not beat retrieval on that measure (figures that would print alike",
    "  get one more decimal).",
    "PSNR: pixel closeness in decibels; SSIM: structural similarity (1 = identical); both reward a blur.",
    "identity (ArcFace cos): cosine of face-recognition embeddings of render and real frame (1 = same face).",
    "sharpness ratio: Laplacian energy of the face region, render over real crop, both at the render's",
    "  size (1.0 = as sharp as the video; a blur scores far below 1).",
    "controls clamped: every control held inside its slider's range (the training frames' 1st–99th",
    "  percentile), as the viewer's sliders render it; held-out frames often go past it.",
    "engine alone: the engine's render without detail from the video (the held-out rows above show the",
    "  avatar as the viewer and export do: detail of the nearest training frames over the render).",
    "scene: behind the person, the video's own background (a plate of the training frames' background),",
    "  each held-out render placed where that frame's head was; 'engine's own background': without it.",
    "° MAE: mean absolute error in degrees between the commanded head turn and the one the tracker",
    "  measures on the render; r: correlation of each slider with the expression the tracker measures on",
    "  the render (1 = follows it exactly, 0 = no effect, negative = the wrong way).",
    "FLAME geometry (FLAME controls, FLAME's files present): renders warped by the landmark motion FLAME",
    "  gives the controls beyond the expression the engine renders; the sliders are also scored without it.",
    "ArcFace feature distance: 1 − cos of channel-normalised MobileFaceNet feature maps, averaged over",
    "  positions and 4 layers; a stand-in for LPIPS that needs no download (0 = identical, lower is closer).",
    "  Identity and this distance use the network the avatars train against when it is configured (the",
    "  StyleGAN mappers' identity loss, the NeRF's face losses): they are measured on held-out frames, but",
    "  they are not independent of training; PSNR, SSIM and sharpness are.",
]


def _mark(rep: dict, path: tuple) -> str:
    """" ✓" / " ✗" when `path` is a held-out measure and the report has a retrieval baseline."""
    if path[0] != "heldout" or path[1] not in BETTER or not rep.get("retrieval"):
        return ""
    b = beats_retrieval(rep.get("heldout"), rep.get("retrieval")).get(path[1])
    return "" if b is None else (" ✓" if b else " ✗")


def _row_spec(reps: list[dict], path: tuple, spec: str, scale: float) -> str:
    """`spec`, with up to two more decimals where an engine's held-out figure and its retrieval figure would
    otherwise print alike (a ✓ or ✗ between two equal numbers says nothing to a reader)."""
    if path[0] != "heldout" or not spec.endswith("f"):
        return spec
    digits = int(spec[1:-1])
    for extra in range(3):
        s = f".{digits + extra}f"
        same = [r for r in reps if _get(r, *path) is not None and _get(r, "retrieval", path[1]) is not None
                and _get(r, *path) != _get(r, "retrieval", path[1])
                and _fmt(_get(r, *path), s, scale) == _fmt(_get(r, "retrieval", path[1]), s, scale)]
        if not same:
            return s
    return s


def _goal_table(reps: list[dict], label_w: int, col_w: int) -> list[str]:
    lines = [f"{'goals (the issue: sharp, recognisable avatars)':<{label_w}}"
             + "".join(f"{_head(r):>{col_w}}" for r in reps)]
    for text, test in GOALS:
        cells = []
        for r in reps:
            v = test(r)
            cells.append("—" if v is None else ("pass" if v else "FAIL"))
        lines.append(f"{'  ' + text:<{label_w}}" + "".join(f"{c:>{col_w}}" for c in cells))
    return lines


def _head(r: dict) -> str:
    variant = f", {r['variant']}" if r.get("variant") else ""
    return f"{_engine_title(str(r.get('engine', '?')))}{variant} ({r.get('size', '?')} px)"


def format_table(reports: dict | list[dict], per_expression: bool = True) -> str:
    """One column per report (engine), then one retrieval-baseline column per render size; one row
    per figure with which way it is better; "—" where a figure does not apply, and rows no report has
    a figure for left out. Each engine's held-out figure is marked ✓/✗ for whether it beats retrieval,
    a row says whether it beats retrieval on both identity and the ArcFace feature distance (the least
    an avatar must do), then each of the issue's goals is said pass / FAIL, and where the report and
    its pictures are."""
    reps = [reports] if isinstance(reports, dict) else list(reports)
    heads = [_head(r) for r in reps]
    base: list[tuple[str, dict]] = []   # (heading, retrieval dict) per distinct size
    for r in reps:
        head = f"retrieval ({r.get('size', '?')} px)"
        if r.get("retrieval") and head not in [h for h, _ in base]:
            base.append((head, r["retrieval"]))
    shown = [row for row in ROWS if any(_get(r, *row[1]) is not None for r in reps)
             or (row[1][0] == "heldout" and any(_get(b, row[1][1]) is not None for _, b in base))]
    names: list[str] = []
    named: list[str] = []
    for r in reps:
        names += [k for k in (_get(r, "controls", "expression_pearson") or {}) if k not in names]
        named += [k for k in (_get(r, "controls", "named_via_flame", "pearson") or {}) if k not in named]
    labels = ([row[0] for row in shown] + ["  r " + k for k in names] + [f"  r {k} (Named tab)" for k in named]
              + ["held-out frames", "beats retrieval (identity + feature)", "  " + max((g[0] for g in GOALS), key=len)])
    label_w = max(40, max(len(t) for t in labels) + 2)
    better_w = 10
    col_w = max(16, *(len(h) + 2 for h in heads + [h for h, _ in base]))
    pad = " " * better_w
    lines = [f"{'':<{label_w}}{'better':<{better_w}}" + "".join(f"{h:>{col_w}}" for h in heads + [h for h, _ in base])]
    for label, path, spec, scale, better in shown:
        spec = _row_spec(reps, path, spec, scale)
        cells = [_fmt(_get(r, *path), spec, scale) + _mark(r, path) for r in reps]
        cells += [_fmt(_get(b, path[1]), spec, scale) if path[0] == "heldout" else "—" for _, b in base]
        lines.append(f"{label:<{label_w}}{better:<{better_w}}" + "".join(f"{c:>{col_w}}" for c in cells))
    if per_expression:
        for k in names:
            lines.append(f"{'  r ' + k:<{label_w}}{'higher':<{better_w}}" + "".join(
                f"{_fmt(_get(r, 'controls', 'expression_pearson', k), '.3f'):>{col_w}}" for r in reps))
        for k in named:
            lines.append(f"{'  r ' + k + ' (Named tab)':<{label_w}}{'higher':<{better_w}}" + "".join(
                f"{_fmt(_get(r, 'controls', 'named_via_flame', 'pearson', k), '.3f'):>{col_w}}" for r in reps))
    lines.append(f"{'held-out frames':<{label_w}}{pad}" + "".join(f"{str(r.get('heldout_frames', '—')):>{col_w}}"
                                                                  for r in reps))
    if base:
        verdict = []
        for r in reps:
            v = beats_retrieval(r.get("heldout"), r.get("retrieval"))["avatar"] if r.get("retrieval") else None
            verdict.append("—" if v is None else ("yes" if v else "NO"))
        lines.append(f"{'beats retrieval (identity + feature)':<{label_w}}{pad}" + "".join(f"{v:>{col_w}}"
                                                                                           for v in verdict))
    if any(r.get("heldout") for r in reps):
        lines += [""] + _goal_table(reps, label_w + better_w, col_w)
    if base:
        lines += [""] + LEGEND
    for r in reps:
        files = r.get("files") or {}
        if files.get("report"):
            pics = [f"{Path(files[k]).name} ({what})" for k, what in (
                ("heldout", "held-out frames: real | retrieval | avatar"), ("sweeps", "slider sweeps"),
                ("multiview", "yaw sweep")) if files.get(k)]
            lines += ["", f"{_head(r)} report: {files['report']}"]
            if pics:
                lines.append(f"  pictures beside it: {', '.join(pics)}")
    return "\n".join(lines)


# ------------------------------------------------------------------ appearance edits (`eval --edits`)

EDIT_YAWS, EDIT_EXPRESSIONS = 5, 3
"""The sweep every edit is measured over: 5 yaw values across the trained range × 3 expressions
(neutral, jaw open, a mix of every expression), `studio.edits.adapters.EditAdapter.sweep_controls`."""


def iter_evaluate_edits(project, engine: str | None = None, names: list[str] | None = None
                        ) -> Generator[Progress, None, dict]:
    """Measure the saved edits of an engine (`studio.edits.evaluate.evaluate_edit`, each at its default
    strength) over the sweep: CLIP score gain for its prompt (mean, worst point; when a CLIP file is
    configured), ArcFace identity of edited vs unedited renders (when the ArcFace file is configured),
    the share of the image that changed outside the face/hair region. Writes
    ``eval/<engine>/edits.json`` and a sheet ``eval/<engine>/edits.png`` (the unedited renders across the
    yaw range at the neutral expression, then one row per edit at its default strength)."""
    import torch

    from .avatar import Avatar, trained_engines, why_not_trained
    from .edits.adapters import adapter_for
    from .edits.evaluate import evaluate_edit, write_report
    from .edits.jobs import clip_status, is_current, list_edits, load_arcface_model, load_clip_model, resolve_engine
    from .edits.model import ActiveEdits
    from .errors import InputError, ProjectError

    engine = resolve_engine(project, engine)
    if engine not in trained_engines(project):   # say so, not "no saved edits" for an avatar that cannot have any
        raise ProjectError(*why_not_trained(project, engine))
    edits = list_edits(project, engine)
    if names:
        known = {e.name: e for e in edits}
        missing = [n for n in names if n not in known]
        if missing:
            raise InputError(f"no edit named '{missing[0]}' for the {engine} engine",
                             "saved edits: " + (", ".join(f"'{n}'" for n in known) or "none yet"))
        edits = [known[n] for n in names]
    if not edits:
        raise InputError(f"project {project.name} has no saved edits for the {engine} engine",
                         f"make one with `avatar-studio edit {project.root} --text \"blue hair\"` (needs a CLIP file) "
                         f"or `avatar-studio edit {project.root} --directions`")
    yield Progress(stage=STAGE, step=0, total=len(edits), part="edits", message=f"loading the {engine} avatar")
    avatar = Avatar.open(project, engine)
    adapter = adapter_for(avatar.engine)
    device = str(adapter.device)
    clip_ok, clip_line = clip_status()
    clip = load_clip_model(device) if clip_ok and any(e.prompt for e in edits) else None
    arcface = load_arcface_model(device)
    rows = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, e in enumerate(edits):
            yield Progress(stage=STAGE, step=i, total=len(edits), part="edits", message=f"measuring '{e.name}'",
                           elapsed=time.perf_counter() - t0)
            row = evaluate_edit(adapter, e, clip=clip, arcface=arcface, yaws=EDIT_YAWS, expressions=EDIT_EXPRESSIONS)
            row.update(label=e.label, current=is_current(project, e), prompt=e.prompt)
            rows.append(row)
        # the sheet: unedited / edited across the yaw range at the neutral expression
        c = np.repeat(adapter.neutral()[None], EDIT_YAWS, 0)
        c[:, 0] = np.linspace(adapter.lo[0], adapter.hi[0], EDIT_YAWS)
        sheet_rows, labels = [avatar.render_batch(c)[0]], ["unedited"]
        for e in edits:
            sheet_rows.append(avatar.render_batch(c, edits=ActiveEdits([(e.name, e.offset, e.default_strength)]))[0])
            labels.append(e.name)
    yield Progress(stage=STAGE, step=len(edits), total=len(edits), part="edits", message="measured",
                   elapsed=time.perf_counter() - t0)
    out = project.root / "eval" / engine
    _write_png(out / "edits.png", _sheet(sheet_rows, cell=min(128, max(64, avatar.size)), labels=labels))
    notes = []
    if clip is None:
        notes.append("CLIP score gain not measured: " + (clip_line if not clip_ok else "no text edits"))
    if arcface is None:
        notes.append("identity not measured: no ArcFace file is configured "
                     "(`avatar-studio models add arcface FILE`)")
    if not all(r["current"] for r in rows):
        notes.append("edits marked * were made for an earlier training of this engine")
    report = {"engine": engine, "size": avatar.size, "sweep": f"{EDIT_YAWS} yaws x {EDIT_EXPRESSIONS} expressions",
              "clip": clip is not None, "arcface": arcface is not None, "notes": notes,
              "seconds": round(time.perf_counter() - t0, 2), "sheet": "edits.png", "edits": rows}
    report["path"] = str(write_report(project, engine, rows,
                                      **{k: v for k, v in report.items() if k not in ("edits", "engine")}))
    return report


def evaluate_edits(project, engine: str | None = None, on_progress: Callable[[Progress], None] | None = None,
                   **kw) -> dict:
    """Run `iter_evaluate_edits` to the end, passing its progress events to `on_progress`."""
    from .progress import run_to_end

    return run_to_end(iter_evaluate_edits(project, engine, **kw), on_progress)


def format_edit_table(report: dict) -> str:
    """The `eval --edits` table: one row per edit, then what was not measured and where the report is."""
    from .edits.evaluate import format_rows

    rows = [dict(r, name=("* " if not r.get("current", True) else "") + r["name"]) for r in report["edits"]]
    lines = [f"appearance edits, {report['engine']} engine ({report['size']} px), over {report['sweep']} "
             f"(each at its default strength)", format_rows(rows), "",
             "CLIP gain: cos(edited, prompt) − cos(unedited, prompt), mean / worst sweep point; gain>0: points "
             "where it is positive;",
             "identity: ArcFace cosine of edited vs unedited renders (mean / worst); changed outside: share of "
             "pixels outside the face/hair region that moved by more than 8/255."]
    lines += [f"note: {n}" for n in report.get("notes", [])]
    lines.append(f"report: {report.get('path', '')}")
    return "\n".join(lines)
