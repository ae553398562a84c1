"""Stage `flame`: fit FLAME to every tracked frame (issue 16), when the user chooses FLAME controls.

Needs the user's FLAME files (`avatar-studio models add flame generic_model.pkl` and
`models add flame-mediapipe mediapipe_landmark_embedding.npz`). Per frame it fits the first
`n_expression` expression coefficients, jaw, eyes / eyelids where the model has them and the rigid
head pose, with one shape vector for the clip (`studio.flame.fit.FlameFitter`, driven by the shared
training loop: resumable, cancellable, with progress).

Outputs (``<project>/flame/``):
- ``flame.npz``: the fitted sequence in our layout (`studio.flame.sequences`, shape included),
  one row per tracked row, with the subject's rest face (the median fit over the tracking's rest
  frames, from which the FLAME controls are measured); what engines trained on "flame" controls
  read and what `export --source flame` normalises a driver's sequence to;
- ``flame_fit.png``: the fitted mesh over a few crops, the worst-fitted frame among them;
- ``fit_errors.json``: per-frame landmark error (pixels and % of the face size);
- ``named_to_flame.json``: a least-squares map from the named expressions to the FLAME controls
  (the viewer's "Named" tab drives FLAME controls through it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..atomic import write_json
from ..config import opt
from ..errors import MissingModelError
from ..loop import TrainingLoop
from .base import StageContext, StageSpec, register


@dataclass
class FlameConfig:
    steps: int = opt(300, "Fitting steps (each over all tracked frames).", minimum=1)
    n_expression: int = opt(50, "FLAME expression coefficients fitted per frame (and used as controls).",
                            minimum=1, maximum=100)
    smoothing: float = opt(0.05, "Weight of the temporal smoothness between consecutive frames (0 = none).",
                           minimum=0.0, advanced=True)
    rigid_steps: int = opt(60, "First steps that move only the head pose and scale.", minimum=0, advanced=True)
    lr: float = opt(0.03, "Learning rate (Adam, cosine decay to a tenth).", minimum=1e-5, maximum=1.0,
                    advanced=True)
    checkpoint_every_s: float = opt(30.0, "Seconds between checkpoints.", minimum=0.0, advanced=True)
    threads: int = opt(0, "CPU threads (0 = the cores other programs leave free, re-checked as it runs).", minimum=0,
                       advanced=True)
    seed: int = opt(0, "Random seed.", advanced=True)


PRESETS = {"preview": FlameConfig(), "quality": FlameConfig(steps=600)}


def missing_files_error() -> MissingModelError:
    return MissingModelError(
        "FLAME controls need FLAME's head model (generic_model.pkl) and its MediaPipe landmark embedding "
        "(mediapipe_landmark_embedding.npz), which are not both configured",
        "add them with `avatar-studio models add flame generic_model.pkl` and "
        "`avatar-studio models add flame-mediapipe mediapipe_landmark_embedding.npz` "
        "(free registration at flame.is.tue.mpg.de)")


def run(ctx: StageContext, cfg: FlameConfig):
    from ..flame.controls import NamedToFlame, controls_from_sequence, flame_control_names, rest_rows
    from ..flame.files import load_flame
    from ..flame.fit import FitConfig, fitter_for_tracking
    from ..flame.overlay import save_fit_sheet
    from ..flame.sequences import sequence_from_fit, with_rest, write_sequence
    from ..model_files import flame_paths
    from ..tracking.data import TrackingData
    from ..tracking.expressions import zero_is_rest

    paths = flame_paths()
    if paths is None:
        raise missing_files_error()
    model, emb = load_flame(*paths)
    trk = TrackingData.from_project(ctx.project)
    loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=cfg.checkpoint_every_s, threads=cfg.threads)
    fcfg = FitConfig(n_expression=cfg.n_expression, steps=cfg.steps, rigid_steps=min(cfg.rigid_steps, cfg.steps),
                     lr=cfg.lr, w_smooth=cfg.smoothing)
    yield ctx.progress(0, cfg.steps, part="fit", message=f"fitting FLAME to {int(trk.valid.sum())} tracked frames")
    fitter = fitter_for_tracking(model, emb, trk, fcfg)
    loop.track("fitter", fitter)
    yield from loop.part("fit", cfg.steps, fitter.step, progress_every=5)
    figures = loop.finish()

    fit = fitter.result()
    rest = rest_rows(trk)
    seq = with_rest(sequence_from_fit(fit, trk.fps), rest)
    write_sequence(ctx.workdir / "flame.npz", seq, shape=fit.shape)
    save_fit_sheet(fitter, trk, ctx.workdir / "flame_fit.png", count=6)
    s = fit.summary()
    errors = {"rows": [int(r) for r in np.flatnonzero(fit.fitted)],
              "error_px": [round(float(v), 4) for v in fit.error_px[fit.fitted]],
              "error_pct": [round(float(v), 4) for v in fit.error_pct[fit.fitted]],
              "face_px": [round(float(v), 2) for v in fit.face_px[fit.fitted]]}
    write_json(ctx.workdir / "fit_errors.json", {**errors, "summary": s})

    # the viewer's "Named" tab: named expressions → FLAME controls, least squares on the training frames
    train, _ = trk.split()
    n_expr = seq.expression.shape[1]
    names = flame_control_names(n_expr)
    # both measured from the same rest frames (new tracking): the map sends rest to rest
    same_rest = zero_is_rest(trk.meta.get("expression_scaling") or {})
    mapping = NamedToFlame.fit(trk.expr[train], controls_from_sequence(seq)[train], trk.expression_names, names,
                               offset=not same_rest)
    named_ranges = {k: list(v) for k, v in trk.control_ranges().items() if k not in ("yaw", "pitch")}
    write_json(ctx.workdir / "named_to_flame.json", {**mapping.to_json(), "named_ranges": named_ranges})

    pct = fit.error_pct[fit.fitted]
    summary = {"frames": s["frames"], "error_px_mean": round(s["error_px_mean"], 3),
               "error_px_p95": round(s["error_px_p95"], 3), "error_pct_mean": round(s["error_pct_mean"], 3),
               "error_pct_p95": round(float(np.percentile(pct, 95)), 3) if len(pct) else float("nan"),
               "worst_row": int(np.flatnonzero(fit.fitted)[int(np.argmax(pct))]) if len(pct) else -1,
               "n_expression": int(n_expr), "steps": figures["steps"].get("fit", 0), "of_steps": cfg.steps,
               "minutes": figures["train_minutes"],
               "named_map_r2_jaw": round(mapping.r2[0], 3) if mapping.r2 else float("nan"),
               "rest_frames": int(len(rest)), "rest_jaw": round(float(seq.rest_jaw[0]), 4)}
    return {"outputs": {"sequence": f"{ctx.stage}/flame.npz", "sheet": f"{ctx.stage}/flame_fit.png",
                        "errors": f"{ctx.stage}/fit_errors.json", "named_map": f"{ctx.stage}/named_to_flame.json"},
            "warnings": loop.warnings(), "summary": summary}


register(StageSpec(name="flame", title="FLAME fit", config_cls=FlameConfig, presets=PRESETS, run=run,
                   depends_on=("track",), models=("flame", "flame-mediapipe"), models_required=True, trains=True,
                   description="Fits the FLAME head model to every tracked frame (needs FLAME's files), for FLAME "
                               "expression controls and driving the avatar from FLAME parameter files."))
