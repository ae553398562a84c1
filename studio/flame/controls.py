"""FLAME controls: what an engine trained on "flame" controls takes, and the named → FLAME map.

A project's engines train on one control set (`CONTROL_SETS`):

- ``named``: [yaw, pitch] + the twelve named expressions of the tracking (`EXPRESSION_NAMES`);
- ``flame``: [yaw, pitch, jaw, flame_00 … flame_{E-1}]: head pose stays the tracked yaw/pitch
  (degrees); ``jaw`` is the jaw's opening rotation (FLAME's jaw axis-angle x component, radians)
  and ``flame_k`` FLAME's expression coefficient k, both as the `flame` stage fitted them, measured
  from the subject's rest face: 0 (what Reset gives) is the median fit over the rest frames the
  tracking chose (mouth closed, eyes open, near-frontal: `studio.tracking.expressions`), not FLAME's
  zero expression, which is nobody's face in particular. The units stay FLAME's (radians,
  coefficients), so the scale is the subject's own.

A fit written before the rest face (``flame.npz`` without ``rest_expression`` / ``rest_jaw``) keeps
its values as they are (0 = FLAME's zero): engines trained on them keep working, and running the
`flame` step again measures the controls from the rest face (the engines then go stale).

Files of the `flame` stage (``<project>/flame/``): ``flame.npz`` (the fitted sequence, our layout,
`studio.flame.sequences`), ``named_to_flame.json`` (`NamedToFlame`), ``fit_errors.json``,
``flame_fit.png``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONTROL_SETS = ("named", "flame")
JAW = "jaw"


def flame_control_names(n_expression: int) -> list[str]:
    """["jaw", "flame_00", …] for `n_expression` coefficients."""
    return [JAW] + [f"flame_{k:02d}" for k in range(n_expression)]


def is_flame_controls(names) -> bool:
    """Whether control (or expression) names are FLAME controls."""
    names = list(names)
    return JAW in names and any(str(n).startswith("flame_") for n in names)


def controls_from_sequence(seq, n_expression: int | None = None) -> np.ndarray:
    """(N, 1 + E) [jaw opening, expression coefficients] of a `FlameSequence` (E = `n_expression`,
    default all of the sequence's; missing coefficients are zero), measured from the sequence's
    rest face when it has one (`FlameSequence.rest_expression` / `rest_jaw`; a driver's sequence
    normalised to the subject carries the subject's)."""
    E = seq.expression.shape[1] if n_expression is None else int(n_expression)
    out = np.zeros((seq.n_frames, 1 + E), np.float32)
    out[:, 0] = seq.jaw[:, 0]
    k = min(E, seq.expression.shape[1])
    out[:, 1:1 + k] = seq.expression[:, :k]
    rest = rest_controls(seq, E)
    return out if rest is None else out - rest


def rest_controls(seq, n_expression: int | None = None) -> np.ndarray | None:
    """(1 + E,) [jaw opening, coefficients] of the sequence's rest face, or None without one."""
    if getattr(seq, "rest_expression", None) is None or getattr(seq, "rest_jaw", None) is None:
        return None
    E = len(seq.rest_expression) if n_expression is None else int(n_expression)
    rest = np.zeros(1 + E, np.float32)
    rest[0] = seq.rest_jaw[0]
    k = min(E, len(seq.rest_expression))
    rest[1:1 + k] = seq.rest_expression[:k]
    return rest


def rest_rows(tracking) -> np.ndarray:
    """Rows of the tracking's rest frames (`studio.tracking.expressions.choose_rest_frames`): the
    ones the `track` step chose for the named controls when it recorded them, so both control sets
    rest on the same frames; for tracking written before (no record), chosen now from its raw
    features and head pose."""
    from ..tracking.expressions import choose_rest_frames, zero_is_rest

    valid_rows = np.flatnonzero(tracking.valid)
    scaling = tracking.meta.get("expression_scaling") or {}
    if zero_is_rest(scaling):
        pos = np.asarray(scaling["_rest"]["frames"], int)
        if len(pos) and pos.max() < len(valid_rows):
            return valid_rows[pos]
    with np.load(tracking.root / "tracking.npz") as z:
        raw = z["raw_expr"] if "raw_expr" in z.files else None
    # tracking without raw features: the scaled ones (the same order within each feature)
    raw = tracking.expr if raw is None else raw
    return valid_rows[choose_rest_frames(raw[valid_rows], tracking.pose[valid_rows]).frames]


@dataclass
class NamedToFlame:
    """A linear map from named expression values to FLAME controls, fitted by least squares on the
    subject's frames: flame = [named, 1] @ weights."""

    named: list[str]
    flame: list[str]
    weights: np.ndarray  # (len(named) + 1, len(flame))
    r2: list[float]      # share of each FLAME control's variance the map explains on the fit frames

    @classmethod
    def fit(cls, named_values: np.ndarray, flame_values: np.ndarray, named: list[str], flame: list[str],
            ridge: float = 1e-3, offset: bool = True) -> "NamedToFlame":
        """`offset=False` when both control sets are measured from the same rest face: the map then
        sends the named rest (all 0) to the FLAME rest (all 0), so Reset on the Named tab is the rest
        face too (the weights' last row stays 0)."""
        X = np.concatenate([named_values, np.ones((len(named_values), 1))], 1).astype(np.float64)
        Y = np.asarray(flame_values, np.float64)
        reg = ridge * np.eye(X.shape[1])
        reg[-1, -1] = 0.0  # the offset is not shrunk
        if offset:
            W = np.linalg.solve(X.T @ X + reg, X.T @ Y)
        else:
            W = np.zeros((X.shape[1], Y.shape[1]))
            W[:-1] = np.linalg.solve(X[:, :-1].T @ X[:, :-1] + reg[:-1, :-1], X[:, :-1].T @ Y)
        res = Y - X @ W
        var = Y.var(0)
        r2 = np.where(var > 1e-12, 1 - (res ** 2).mean(0) / np.maximum(var, 1e-12), 0.0)
        return cls(list(named), list(flame), W, [float(v) for v in r2])

    def __call__(self, named_values: np.ndarray) -> np.ndarray:
        """(..., len(named)) → (..., len(flame))."""
        x = np.asarray(named_values, np.float64)
        return x @ self.weights[:-1] + self.weights[-1]

    def to_json(self) -> dict:
        return {"format": "avatar-studio/named-to-flame", "version": 1, "named": self.named, "flame": self.flame,
                "weights": self.weights.tolist(), "r2": self.r2}

    @classmethod
    def from_json(cls, d: dict) -> "NamedToFlame":
        return cls(list(d["named"]), list(d["flame"]), np.asarray(d["weights"], np.float64),
                   [float(v) for v in d.get("r2", [])])

    @classmethod
    def load(cls, path: str | Path) -> "NamedToFlame":
        return cls.from_json(json.loads(Path(path).read_text("utf-8")))

    def apply(self, controls: np.ndarray, control_names: list[str], named_values: np.ndarray) -> np.ndarray:
        """`controls` (..., C) of an avatar on FLAME controls with the FLAME controls the map gives
        `named_values` (..., len(named)) written in (the others, head pose included, kept): what the
        viewer's "Named" tab sends to the avatar."""
        out = np.array(controls, np.float32, copy=True)
        flame = self(named_values)
        for k, n in enumerate(self.flame):
            if n in control_names:
                out[..., control_names.index(n)] = flame[..., k]
        return out


def load_named_map(project) -> tuple[NamedToFlame, dict[str, tuple[float, float]]] | None:
    """The `flame` stage's named → FLAME map of `project` and the named sliders' ranges (the
    subject's tracked 1st..99th percentiles), or None where the project has none (no FLAME fit, or
    one written before the map)."""
    try:
        path = project.output("flame", "named_map")
    except Exception:  # noqa: BLE001 — no FLAME stage record, or one without the map
        return None
    if path is None or not Path(path).exists():
        return None
    data = json.loads(Path(path).read_text("utf-8"))
    ranges = {k: (float(v[0]), float(v[1])) for k, v in (data.get("named_ranges") or {}).items()}
    return NamedToFlame.from_json(data), ranges
