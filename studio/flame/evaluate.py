"""Evaluating FLAME sliders: does commanding a coefficient give a face whose FLAME fit has it?

For an avatar trained on FLAME controls, `studio.evaluation` sweeps jaw and the first
`SWEEP_COEFFICIENTS` coefficients (the viewer's default sliders) and re-tracks the renders with
MediaPipe; `fit_sweeps` fits FLAME to those re-tracked landmarks with the subject's shape held fixed
(the `shape` saved in ``<project>/flame/flame.npz``; one short `FlameFitter` run over every sweep
frame together) and reports, per slider, the Pearson r between the commanded and the fitted value.
Commanded values are measured from the subject's rest face and fitted ones are FLAME's own; r does
not depend on that offset.
"""
from __future__ import annotations

import numpy as np

from .controls import JAW

SWEEP_COEFFICIENTS = 10
"""FLAME coefficients swept in the evaluation (and shown as sliders by default)."""

FIT_STEPS = 400
"""Fitting steps for the sweeps' FLAME fit. On landmarks made by the model itself, 150 steps recover
only 52-72 % of a commanded coefficient (flame_00 / 03 / 08 on the d3 fixture; the fit had not
converged, a weaker regulariser does not help), 400 steps 77-95 %."""


def sweep_sliders(control_names: list[str], n: int = SWEEP_COEFFICIENTS) -> list[str]:
    """["jaw", "flame_00", …, "flame_{n-1}"] as far as the avatar has them."""
    want = [JAW] + [f"flame_{k:02d}" for k in range(n)]
    return [c for c in want if c in control_names]


def _pearson(a, b) -> float | None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _slope(commanded, fitted) -> float:
    """Least-squares slope of the fitted on the commanded value: 1 when the render shows the commanded
    change in full, near 0 when a slider barely moves the face (r alone does not say)."""
    a, b = np.asarray(commanded, np.float64), np.asarray(fitted, np.float64)
    a = a - a.mean()
    return float((a * (b - b.mean())).sum() / max((a * a).sum(), 1e-12))


def fit_sweeps(project, sweeps: dict[str, tuple[np.ndarray, list]], steps: int = FIT_STEPS) -> dict:
    """sweeps: slider name → (commanded values (P,), re-tracked results (P,) of `track_images`,
    None where no face was found). Returns {"pearson": {slider: r or None}, "mean": …, "jaw": …,
    "gain": {slider: slope of the fitted on the commanded value}, "fit_error_px": …} or
    {"skipped": reason} when FLAME's files are not configured."""
    import torch

    from ..model_files import flame_paths
    from .files import load_flame
    from .fit import FitConfig, FlameFitter

    paths = flame_paths()
    if paths is None:
        return {"skipped": "FLAME files not configured (avatar-studio models add flame / flame-mediapipe)"}
    with np.load(project.output("flame", "sequence")) as z:
        shape = z["shape"] if "shape" in z.files else None
        n_expr = int(z["expression"].shape[1])
    model, emb = load_flame(*paths)
    lms, owner = [], []
    for name, (values, tracked) in sweeps.items():
        for v, t in zip(values, tracked):
            if t is not None:
                lms.append(np.asarray(t["landmarks"], np.float64))
                owner.append((name, float(v)))
    if not lms:
        return {"pearson": {n: None for n in sweeps}, "mean": None, "jaw": None, "fit_error_px": None}
    cfg = FitConfig(n_expression=n_expr, steps=steps, rigid_steps=min(40, steps // 3), w_smooth=0.0)
    before = torch.get_num_threads()
    fitter = FlameFitter(model, emb, np.stack(lms), config=cfg)
    if shape is not None:  # the subject's identity, held fixed
        p = fitter.params["shape"]
        k = min(p.shape[1], len(shape))
        with torch.no_grad():
            p.zero_()
            p[0, :k] = torch.as_tensor(shape[:k], dtype=p.dtype)
        p.requires_grad_(False)
    while fitter.steps_done < steps:
        fitter.step()
    torch.set_num_threads(before)
    fit = fitter.result()
    fitted = {JAW: fit.jaw[:, 0], **{f"flame_{k:02d}": fit.expression[:, k] for k in range(fit.expression.shape[1])}}
    out: dict = {}
    gain: dict = {}
    for name in sweeps:
        idx = [i for i, (n, _) in enumerate(owner) if n == name]
        cmd = [owner[i][1] for i in idx]
        r = _pearson(cmd, fitted[name][idx]) if idx else None
        out[name] = None if r is None else round(r, 4)
        gain[name] = None if r is None else round(_slope(cmd, fitted[name][idx]), 4)
    vals = [v for v in out.values() if v is not None]
    return {"pearson": out, "mean": round(float(np.mean(vals)), 4) if vals else None, "jaw": out.get(JAW),
            "gain": gain, "fit_error_px": round(float(np.nanmean(fit.error_px)), 3), "fit_steps": steps}
