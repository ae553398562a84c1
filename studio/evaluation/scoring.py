"""How a set of renders is scored: against the real held-out crops, and against the retrieval baseline.

`score_images` gives the held-out measures of a set of images against the real crops (PSNR, SSIM,
identity, ArcFace feature distance, the face region's sharpness ratio); `face_masks` are the face
regions it measures sharpness in; `bar_keep` and `within_bars` leave the video's black bars out of
the score. The retrieval baseline: `retrieval_rows` picks, for each held-out frame, the training
frame with the nearest tracked controls, and `beats_retrieval` says per measure (`BETTER`) whether
the engine does better than it. `slider_crosstalk`: how much a slider of the eyes moves the mouth and one of
the mouth the eyes, in the tracker's measure of the sweeps.
"""
from __future__ import annotations

import numpy as np

from .. import metrics

RETRIEVAL_POSE_WEIGHT = 2.0
"""Weight of standardised yaw and pitch against each standardised expression in the retrieval
baseline's distance (the weighting the pivot clustering uses)."""


def retrieval_rows(train_controls: np.ndarray, query_controls: np.ndarray,
                   pose_weight: float = RETRIEVAL_POSE_WEIGHT) -> np.ndarray:
    """For each query (n, 2 + E) [yaw, pitch, expr...], the index into `train_controls` (N, 2 + E)
    of the nearest training frame: Euclidean distance after standardising every control with the
    training frames' mean and std, yaw and pitch multiplied by `pose_weight`. (n,) int."""
    from ..detail import ControlIndex

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


def slider_crosstalk(sweeps: dict[str, tuple[np.ndarray, np.ndarray]], train_expr: np.ndarray,
                     names: list[str]) -> dict | None:
    """How much each named expression slider moves the other part of the face: for a slider of the eyes
    (brows, blinks, gaze: `studio.detail.choice.REGIONS`) the mouth's controls, for a mouth slider the eyes'.
    `sweeps`: per slider, its commanded values (n,) and the expressions the tracker measures on its renders
    (n, E), columns as `names` (the E expression names); `train_expr` (N, E): the training frames'.
    Each other control is measured in training standard deviations, less what the training frames' own
    coupling with the swept control explains (its correlation times the swept control's measured move),
    and the figure is its range over the sweep, the largest of the other part's (0: the slider moves only
    its own part). Returns {"mouth_moves_eyes", "eyes_move_mouth": the mean over those sliders,
    "sliders": {name: {"sd": ..., "most": the other control moved most}}}, or None where the controls
    are not the named ones (FLAME's belong to no part)."""
    from ..detail.choice import REGIONS

    eyes = {n for parts, controls in REGIONS if 0 in parts for n in controls}   # the eyes' region
    if not eyes <= set(names):
        return None
    z = np.asarray(train_expr, np.float64)
    sd = np.maximum(z.std(0), 1e-6)
    corr = np.nan_to_num(np.corrcoef((z - z.mean(0)) / sd, rowvar=False))
    out: dict = {"sliders": {}}
    for name, (_, measured) in sweeps.items():
        m = np.asarray(measured, np.float64)
        if name not in names or m.ndim != 2 or len(m) < 2:
            continue
        s = names.index(name)
        others = [k for k, n in enumerate(names) if (n in eyes) != (name in eyes)]
        zm = m / sd
        resid = zm[:, others] - zm[:, [s]] * corr[others, s][None]
        moved = resid.max(0) - resid.min(0)
        k = int(np.argmax(moved))
        out["sliders"][name] = {"sd": round(float(moved[k]), 3), "most": names[others[k]]}
    for key, of_eyes in (("mouth_moves_eyes", False), ("eyes_move_mouth", True)):
        v = [r["sd"] for n, r in out["sliders"].items() if (n in eyes) == of_eyes]
        out[key] = round(float(np.mean(v)), 3) if v else None
    return out


def _get(rep: dict, *path):
    for p in path:
        if not isinstance(rep, dict) or p not in rep:
            return None
        rep = rep[p]
    return rep
