"""Detail from the video, variant against variant, on one avatar's held-out frames.

    python -m studio.benchmarks.detail_sweep PROJECT [--engine pvp|nerf] [--variant JSON ...]

The engine renders the held-out frames (the last 15 % of the clip) once, from their tracked controls;
then each variant of `studio.detail.DetailConfig` (a JSON object of the fields that differ from the engine's
own config, `EngineSpec.detail_config`; ``{}`` is what the viewer shows)
lays the training frames' detail over those renders, and the result is scored as `avatar-studio eval`
scores the held-out frames (PSNR, SSIM, ArcFace identity and feature distance when the ArcFace file is
configured, the face region's sharpness ratio; the video's black bars, where it has them, left out of the score, as
`eval` leaves them out of its rows without the video's background). It prints one line per variant and the milliseconds a
frame the detail took, and writes nothing into the project but what the viewer also keeps there (the training
frames' ArcFace embeddings, `studio.detail.frame_embeddings`). FLAME's geometry is left off (it is scored
by `eval`)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

MEASURES = ("psnr", "ssim", "identity", "feature_distance", "sharpness_median")


def sweep(project, engine: str | None, variants: list[dict]) -> list[dict]:
    """One row per variant: {"variant", the `MEASURES`, "ms_per_frame"}."""
    from ..avatar import Avatar
    from ..detail import DetailConfig, VideoDetail
    from ..evaluation import bar_keep, face_masks, score_images, within_bars
    from ..flame.controls import is_flame_controls
    from ..tracking.data import TrackingData

    fields = {f.name for f in dataclasses.fields(DetailConfig)}
    for v in variants:
        unknown = set(v) - fields
        if unknown:
            raise ValueError(f"not a DetailConfig field: {', '.join(sorted(unknown))} (fields: {', '.join(sorted(fields))})")
    avatar = Avatar.open(project, engine, detail=False, flame_geometry=False)
    base = avatar.detail_config()
    controls = "flame" if is_flame_controls(avatar.control_names) else "named"
    tracking = TrackingData.from_project(project, controls=controls)
    _, held = tracking.split()
    if not len(held):
        raise ValueError("the project has no held-out frames to score")
    size = avatar.size
    ctl = tracking.controls(held)
    renders = np.concatenate([avatar.engine.render_controls(ctl[i:i + 8]) for i in range(0, len(ctl), 8)])
    truth, masks = tracking.crops(held, size=size), face_masks(tracking, held, size)
    keep = bar_keep(tracking, held, size)    # as `eval`'s rows without the scene: no black bars
    rows = []
    for v in variants:
        vd = VideoDetail.from_project(project, size, controls, dataclasses.replace(base, **v))
        if vd is None:
            raise ValueError("the project has no tracked training crops to lend detail")
        t = time.perf_counter()
        out = vd.apply(renders, ctl)
        ms = (time.perf_counter() - t) / len(renders) * 1000
        score = score_images(out, within_bars(truth, out, keep), masks)
        rows.append({"variant": v, **{k: score[k] for k in MEASURES}, "ms_per_frame": round(ms, 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    from ..errors import StudioError
    from ..project import Project

    ap = argparse.ArgumentParser(prog="python -m studio.benchmarks.detail_sweep", description=__doc__.split("\n")[0])
    ap.add_argument("project")
    ap.add_argument("--engine", default=None, help="pvp or nerf (default: the project's trained engine)")
    ap.add_argument("--variant", action="append", default=None,
                    help='a DetailConfig variant as JSON, e.g. \'{"sampling": "cubic"}\' (repeatable; default: {})')
    a = ap.parse_args(argv)
    try:
        variants = [json.loads(v) for v in (a.variant or ["{}"])]
        if not all(isinstance(v, dict) for v in variants):
            raise ValueError("each --variant must be a JSON object")
        rows = sweep(Project.open(a.project), a.engine, variants)
    except (StudioError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fmt = lambda v, s: "—" if v is None else format(v, s)  # noqa: E731
    print(f"{'variant':40s} {'PSNR':>7s} {'SSIM':>6s} {'ident.':>6s} {'feat.':>6s} {'sharp':>6s} {'ms/frame':>8s}")
    for r in rows:
        print(f"{json.dumps(r['variant']):40s} {fmt(r['psnr'], '7.3f')} {fmt(r['ssim'], '6.4f')} "
              f"{fmt(r['identity'], '6.4f')} {fmt(r['feature_distance'], '6.4f')} "
              f"{fmt(r['sharpness_median'], '6.3f')} {r['ms_per_frame']:8.1f}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
