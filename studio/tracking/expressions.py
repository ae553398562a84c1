"""Named expression values from landmarks, scaled per subject.

Raw features are measured on landmarks brought into the subject's canonical frame (pose
removed, unit outer-eye-corner distance), so head turns do not read as expressions and a small
face in a large frame reads like a large one. Each feature is then scaled per subject: 0 is the
subject's rest face (mouth closed, eyes open; `choose_rest_frames`) and 1 a strong expression of
theirs (the 98th percentile). A floor on that span (about a fifth of a typical human range) keeps a
subject who never makes an expression from having noise blown up to 1.

Why not the clip's median: on a talking clip the median mouth is half open, and on a clip with
many looks down or closed eyes (subject_turns_d3) the median eyes are half shut, so a median 0
makes Reset show a half-open mouth or drowsy eyes.

Tracking written before the rest face (its ``expression_scaling`` has no ``"_rest"`` entry, e.g.
tests/fixtures/project_v0) keeps its values as they are: 0 there is the clip median. Engines of
such a project were trained on those values, and shifting them on load would move every trained
control, so `zero_is_rest` tells the two apart and running the `track` step again gives the rest
face at 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
"""Features that go both ways (scaled to -1..1 around the rest)."""

MIN_SPAN = {
    "jaw_open": 0.10, "smile_left": 0.03, "smile_right": 0.03, "pucker": 0.04, "mouth_stretch": 0.04,
    "brow_raise_left": 0.025, "brow_raise_right": 0.025, "brow_frown": 0.02,
    "blink_left": 0.10, "blink_right": 0.10, "gaze_horizontal": 0.06, "gaze_vertical": 0.05,
}
"""Smallest rest-to-strong span per raw feature (in canonical units / ratios)."""

REST_METHOD = "rest-1"
"""Written into the scaling's ``"_rest"`` entry; tracking without it has 0 at the clip median."""


def raw_features(q: np.ndarray) -> np.ndarray:
    """(..., 478, 3) canonical-frame landmarks (x = subject's left, y up) → (..., E) raw features.

    Larger raw value = more of the named expression.
    """
    q = np.asarray(q, np.float64)
    y = q[..., 1]

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


# ---------------------------------------------------------------------------------------- rest face
CLOSED_GAP = 0.02
"""Lip gap (inner lips, in outer-eye-corner distances) within which of the clip's smallest gap a
mouth counts as closed: about 2 mm on an adult face; a talking mouth is 0.05–0.3 open."""

EYES_OPEN = (0.8, 1.2)
"""Eye aperture, as a share of the eye's typical open aperture (its 75th percentile over the
clip), that counts as open: below is a blink, wink or squint, above a surprise."""

FRONTAL_DEG = 15.0
"""Head turn (hypot of yaw and pitch, degrees) that counts as near-frontal; widened to the
clip's median turn when the subject is seldom that frontal (a camera above or beside them)."""


@dataclass
class RestFrames:
    """The frames `choose_rest_frames` took as the subject's rest face."""

    frames: np.ndarray
    """(K,) indices (into the arrays given) of the rest frames, best first."""
    best: int
    """The single most rest-like frame."""
    values: np.ndarray
    """(E,) raw rest value of each feature: the median over `frames`."""
    notes: list[str] = field(default_factory=list)
    """Gates that had to be relaxed (a clip where the mouth never closes, say)."""


def _q(x: np.ndarray, p: float) -> float:
    return float(np.percentile(x, p))


def choose_rest_frames(raw: np.ndarray, pose: np.ndarray | None = None, share: float = 0.05,
                       min_frames: int = 5, max_frames: int = 60) -> RestFrames:
    """The subject's rest face — mouth closed, eyes open, no other expression, near-frontal — from
    the (N, E) raw features of their clip (`raw_features`, columns in `EXPRESSION_NAMES` order) and,
    when given, the (N, ≥2) head pose in degrees (yaw, pitch, …).

    1. Gates, judged on the near-frontal frames (head turn within `FRONTAL_DEG`, or the clip's
       median turn when larger, so at least half the clip; near-profile frames, where the face mesh
       tends to read a closed mouth, do not count): a closed mouth (lip gap within `CLOSED_GAP` of
       the 2nd percentile) and both eyes open (`EYES_OPEN` of each eye's typical aperture, its 75th
       percentile: not a blink, wink, squint or surprise). When fewer than `min_frames` frames pass,
       the eye gate is widened, then turned frames are let in, and last the least open mouths are
       taken whatever the eyes do; each relaxation is noted.
    2. Among those, the frames nearest their own median on every feature (deviations over each
       feature's spread among them), plus the head turn: this drops the frowns, smiles, pressed
       lips and raised brows that also have a closed mouth and open eyes.
    3. The rest value of each feature is its median over the `share` of frames kept (at least
       `min_frames`, at most `max_frames`).

    Everything is relative to the clip (percentiles) or to the face's size (canonical units), so
    it holds for a small face in a large frame as for a close-up.
    """
    raw = np.asarray(raw, np.float64)
    n, e = raw.shape
    if n == 0:
        raise ValueError("choose_rest_frames needs at least one frame")
    col = {name: raw[:, j] for j, name in enumerate(EXPRESSION_NAMES)}
    notes: list[str] = []
    need = min(n, min_frames)
    if pose is not None:
        pose = np.asarray(pose, np.float64)
        turn = np.hypot(pose[:, 0], pose[:, 1])
        frontal = turn <= max(FRONTAL_DEG, _q(turn, 50))  # at least half the clip
    else:
        turn = np.zeros(n)
        frontal = np.ones(n, bool)
    gap = col["jaw_open"]
    open_l, open_r = -col["blink_left"], -col["blink_right"]

    def gates(pool: np.ndarray, eyes_open: tuple[float, float]) -> np.ndarray:
        """Closed mouth and open eyes, judged against the frames of `pool` (near-profile frames,
        where the face mesh tends to read a closed mouth, do not set what closed is)."""
        g = gap[pool]
        mouth = gap <= _q(g, 2) + CLOSED_GAP
        ref_l, ref_r = max(_q(open_l[pool], 75), 1e-6), max(_q(open_r[pool], 75), 1e-6)
        rel = np.stack([open_l / ref_l, open_r / ref_r], 1)
        eyes = (rel.min(1) >= eyes_open[0]) & (rel.max(1) <= eyes_open[1])
        return pool & mouth & eyes

    wide = (EYES_OPEN[0] - 0.2, EYES_OPEN[1] + 0.2)
    cand = gates(frontal, EYES_OPEN)
    if cand.sum() < need:
        cand = gates(frontal, wide)
        if cand.sum() >= need:
            notes.append("too few frames with both eyes clearly open and the mouth closed: the eye gate was widened")
    if cand.sum() < need and pose is not None:
        cand = gates(np.ones(n, bool), wide)
        if cand.sum() >= need:
            notes.append("too few near-frontal frames with a closed mouth and open eyes: turned frames used")
    if cand.sum() < need:  # the mouth only: the `need` least open mouths among the frontal frames
        pool = np.flatnonzero(frontal) if frontal.sum() >= need else np.arange(n)
        cand = np.zeros(n, bool)
        cand[pool[np.argsort(gap[pool], kind="stable")[:need]]] = True
        notes.append("no frame has a closed mouth and open eyes: the rest face is chosen by the mouth only")
    if _q(gap[frontal], 2) > CLOSED_GAP:
        notes.append("the mouth is never closed in this clip: the rest face has the least open mouth seen")
    idx = np.flatnonzero(cand)

    # each feature's spread over the clip (inter-quartile range; a floor for features that hardly move)
    spread = np.array([max(_q(raw[idx, j], 75) - _q(raw[idx, j], 25), 0.25 * MIN_SPAN[name])
                       for j, name in enumerate(EXPRESSION_NAMES)])
    centre = np.median(raw[idx], axis=0)
    dev = np.abs(raw[idx] - centre) / spread                  # (K, E)
    cost = np.sqrt((dev ** 2).mean(1)) + turn[idx] / (2 * FRONTAL_DEG)
    order = np.argsort(cost, kind="stable")
    keep = int(np.clip(round(share * n), need, max_frames))
    frames = idx[order[:min(keep, len(idx))]]
    return RestFrames(frames=frames, best=int(frames[0]), values=np.median(raw[frames], axis=0), notes=notes)


# ---------------------------------------------------------------------------------------- scaling
def fit_scaling(raw: np.ndarray, pose: np.ndarray | None = None) -> dict:
    """Per-feature rest ("neutral") and span from the (N, E) raw features of a subject's clip and,
    when given, its (N, ≥2) head pose in degrees (used to prefer near-frontal rest frames).

    Returns {name: {"neutral": rest value, "span": rest-to-strong span, "median": clip median}}
    plus ``"_rest"``: {"method", "frames": indices (into `raw`) of the rest frames, "best", "notes"}.
    """
    raw = np.asarray(raw, np.float64)
    rest = choose_rest_frames(raw, pose)
    out: dict = {}
    for j, name in enumerate(EXPRESSION_NAMES):
        col = raw[:, j]
        neutral = float(rest.values[j])
        if name in SIGNED:
            span = float(np.percentile(np.abs(col - neutral), 98))
        else:
            span = float(np.percentile(col, 98) - neutral)
        out[name] = {"neutral": neutral, "span": max(span, MIN_SPAN[name]), "median": float(np.median(col))}
    out["_rest"] = {"method": REST_METHOD, "frames": [int(i) for i in rest.frames], "best": rest.best,
                    "pose": pose is not None, "notes": rest.notes}
    return out


def zero_is_rest(scaling: dict) -> bool:
    """Whether tracking scaled with `scaling` has the rest face at 0 (else: the clip median, tracking
    written before the rest face)."""
    return isinstance(scaling, dict) and isinstance(scaling.get("_rest"), dict)


def apply_scaling(raw: np.ndarray, scaling: dict[str, dict[str, float]]) -> np.ndarray:
    neutral = np.array([scaling[n]["neutral"] for n in EXPRESSION_NAMES])
    span = np.array([scaling[n]["span"] for n in EXPRESSION_NAMES])
    return ((raw - neutral) / span).astype(np.float32)
