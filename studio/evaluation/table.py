"""The table `avatar-studio eval` prints: `format_table`, its rows (`ROWS`), the goals (`GOALS`) and the legend.

One column per report, one retrieval-baseline column per render size, each held-out figure marked
✓/✗ for whether it beats retrieval, then the issue's goals said pass / FAIL (`LEGEND` explains the
figures), and where each report and its pictures are.
"""
from __future__ import annotations

from pathlib import Path

from .scoring import BETTER, _get, beats_retrieval
from .sheets import _engine_title

def _fmt(v, spec: str = ".2f", scale: float = 1.0, suffix: str = "") -> str:
    if v is None:
        return "—"
    return f"{v * scale:{spec}}{suffix}"


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
    ("mouth sliders: eyes moved (σ, mean)", ("controls", "crosstalk", "mouth_moves_eyes"), ".2f", 1.0, "lower"),
    ("eye sliders: mouth moved (σ, mean)", ("controls", "crosstalk", "eyes_move_mouth"), ".2f", 1.0, "lower"),
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
    "eyes / mouth moved (σ): how far a mouth slider's sweep moves the eyes' controls (brows, blinks, gaze) and",
    "  an eye slider's the mouth's, as the tracker measures the renders, in the training frames' standard",
    "  deviations beyond the clip's own coupling (the largest such control, mean over the sliders; 0 = none).",
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
