"""Named expression values from landmarks, scaled per subject.

Raw features are measured on landmarks brought into the subject's canonical frame (pose
removed, unit outer-eye-corner distance), so head turns do not read as expressions. Each
feature is then scaled per subject: 0 is their neutral (the median over the clip, since a
performance is mostly near-neutral) and 1 a strong expression of theirs (the 98th
percentile). A floor on that span (about a fifth of a typical human range) keeps a subject
who never makes an expression from having noise blown up to 1.
"""
from __future__ import annotations

import numpy as np

from .data import EXPRESSION_NAMES

# mediapipe face-mesh indices (R = subject's right = image left)
_LIP_UP_IN, _LIP_LO_IN = 13, 14
_MOUTH_R, _MOUTH_L = 61, 291
_BROW_R = [105, 66, 107, 65, 52]
_BROW_L = [334, 296, 336, 295, 282]
_BROW_R_INNER, _BROW_L_INNER = 55, 285
_EYE_R = (33, 133, 159, 145)  # outer, inner, upper lid, lower lid
_EYE_L = (263, 362, 386, 374)
_IRIS_A, _IRIS_B = 468, 473

SIGNED = {"gaze_horizontal", "gaze_vertical"}
"""Features that go both ways (scaled to -1..1 around neutral)."""

MIN_SPAN = {
    "jaw_open": 0.10, "smile_left": 0.03, "smile_right": 0.03, "pucker": 0.04, "mouth_stretch": 0.04,
    "brow_raise_left": 0.025, "brow_raise_right": 0.025, "brow_frown": 0.02,
    "blink_left": 0.10, "blink_right": 0.10, "gaze_horizontal": 0.06, "gaze_vertical": 0.05,
}
"""Smallest neutral-to-strong span per raw feature (in canonical units / ratios)."""


def raw_features(q: np.ndarray) -> np.ndarray:
    """(..., 478, 3) canonical-frame landmarks (x = subject's left, y up) → (..., E) raw features.

    Larger raw value = more of the named expression.
    """
    q = np.asarray(q, np.float64)
    y = q[..., 1]
    x = q[..., 0]

    def dist(a, b):
        return np.linalg.norm(q[..., a, :2] - q[..., b, :2], axis=-1)

    lip_mid_y = 0.5 * (y[..., _LIP_UP_IN] + y[..., _LIP_LO_IN])
    jaw = y[..., _LIP_UP_IN] - y[..., _LIP_LO_IN]
    smile_l = y[..., _MOUTH_L] - lip_mid_y
    smile_r = y[..., _MOUTH_R] - lip_mid_y
    width = dist(_MOUTH_L, _MOUTH_R)
    eye_line_r = 0.5 * (y[..., _EYE_R[0]] + y[..., _EYE_R[1]])
    eye_line_l = 0.5 * (y[..., _EYE_L[0]] + y[..., _EYE_L[1]])
    brow_r = y[..., _BROW_R].mean(-1) - eye_line_r
    brow_l = y[..., _BROW_L].mean(-1) - eye_line_l
    frown = -dist(_BROW_L_INNER, _BROW_R_INNER) - 0.5 * (brow_l + brow_r)

    def openness(e):
        return dist(e[2], e[3]) / np.maximum(dist(e[0], e[1]), 1e-6)

    blink_r = -openness(_EYE_R)
    blink_l = -openness(_EYE_L)
    # iris: whichever iris is nearer the right eye belongs to it
    iris_a = q[..., _IRIS_A, :2]
    iris_b = q[..., _IRIS_B, :2]
    c_r = 0.5 * (q[..., _EYE_R[0], :2] + q[..., _EYE_R[1], :2])
    c_l = 0.5 * (q[..., _EYE_L[0], :2] + q[..., _EYE_L[1], :2])
    a_is_r = (np.linalg.norm(iris_a - c_r, axis=-1) < np.linalg.norm(iris_a - c_l, axis=-1))[..., None]
    ir = np.where(a_is_r, iris_a, iris_b)
    il = np.where(a_is_r, iris_b, iris_a)
    w_r = np.maximum(dist(_EYE_R[0], _EYE_R[1]), 1e-6)
    w_l = np.maximum(dist(_EYE_L[0], _EYE_L[1]), 1e-6)
    gaze_h = 0.5 * ((ir[..., 0] - c_r[..., 0]) / w_r + (il[..., 0] - c_l[..., 0]) / w_l)
    gaze_v = 0.5 * ((ir[..., 1] - c_r[..., 1]) / w_r + (il[..., 1] - c_l[..., 1]) / w_l)
    feats = {
        "jaw_open": jaw, "smile_left": smile_l, "smile_right": smile_r, "pucker": -width,
        "mouth_stretch": width, "brow_raise_left": brow_l, "brow_raise_right": brow_r, "brow_frown": frown,
        "blink_left": blink_l, "blink_right": blink_r, "gaze_horizontal": gaze_h, "gaze_vertical": gaze_v,
    }
    return np.stack([feats[n] for n in EXPRESSION_NAMES], axis=-1)


def fit_scaling(raw: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-feature neutral and span from the (N, E) raw features of a subject's clip."""
    out = {}
    for j, name in enumerate(EXPRESSION_NAMES):
        col = raw[:, j]
        neutral = float(np.median(col))
        if name in SIGNED:
            span = float(np.percentile(np.abs(col - neutral), 98))
        else:
            span = float(np.percentile(col, 98) - neutral)
        out[name] = {"neutral": neutral, "span": max(span, MIN_SPAN[name])}
    return out


def apply_scaling(raw: np.ndarray, scaling: dict[str, dict[str, float]]) -> np.ndarray:
    neutral = np.array([scaling[n]["neutral"] for n in EXPRESSION_NAMES])
    span = np.array([scaling[n]["span"] for n in EXPRESSION_NAMES])
    return ((raw - neutral) / span).astype(np.float32)
