"""Which training frames lend detail to a render: the nearest by standardised control distance
(`ControlIndex`), weighed by how near (`soft_nearest`) and in each region of the face by how well the frame
shows what the render asks of it there (`region_columns`, `ControlIndex.region_mismatch`), optionally
preferring frames that look like the person as a whole (`frame_atypicality` of their ArcFace
`frame_embeddings`)."""
from __future__ import annotations

import numpy as np

REGIONS = (
    ((0, 1), ("brow_raise_left", "brow_raise_right", "brow_frown", "blink_left", "blink_right",
              "gaze_horizontal", "gaze_vertical")),
    ((2,), ("jaw_open", "smile_left", "smile_right", "pucker", "mouth_stretch")),
)
"""For `DetailConfig.region_match`: each region of the face, as the parts of
`studio.tracking.geometry.FEATURE_REGIONS` it covers, and the named expression controls it shows: both eyes
with their brows (lent together: the two eyes' blinks and brows move as one on every clip here, and a pair
of eyes from two moments looks crossed), and the mouth."""


def region_columns(control_names: list[str]) -> list[np.ndarray] | None:
    """Column indices of each of `REGIONS`' controls in a control vector named `control_names` (pose first),
    or None where the controls are not the named ones (FLAME's coefficients belong to no one region)."""
    if not all(n in control_names for _, names in REGIONS for n in names):
        return None
    return [np.array([control_names.index(n) for n in names], np.int64) for _, names in REGIONS]


def soft_nearest(d: np.ndarray, k: int, temperature: float, relative: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(B, N) distances → (B, k) indices of the nearest and weights summing to 1: the nearest weighs
    most, the others exp(−(d − d_min) / temperature) of it (`relative`: exp(−(d / d_min − 1) /
    temperature), for distances without a natural scale)."""
    k = max(1, min(int(k), d.shape[1]))
    idx = np.argsort(d, axis=1)[:, :k]
    dk = np.take_along_axis(d, idx, 1)
    gap = dk / np.maximum(dk[:, :1], 1e-9) - 1 if relative else dk - dk[:, :1]
    w = np.exp(-gap / max(temperature, 1e-6))
    return idx, w / w.sum(1, keepdims=True)


class ControlIndex:
    """Nearest training frames by tracked controls: each control standardised by the training frames'
    mean and std, yaw and pitch weighted by `pose_weight`, squared Euclidean distance. The retrieval
    baseline of `studio.evaluation` and `VideoDetail` both use it."""

    def __init__(self, controls: np.ndarray, pose_weight: float = 2.0):
        c = np.asarray(controls, np.float64)
        if c.ndim != 2 or not len(c):
            raise ValueError(f"expected (N, C) training controls, got {c.shape}")
        self._mean, self._std = c.mean(0), np.maximum(c.std(0), 1e-6)
        self._w = np.ones(c.shape[1])
        self._w[:2] = pose_weight
        self._z = (c - self._mean) / self._std
        self._points = self._z * self._w

    def distances(self, query: np.ndarray, emphasis: float = 0.0, frames_too: bool = False) -> np.ndarray:
        """(n, C) controls → (n, N) squared distances to the training frames.

        `emphasis` > 0 weighs each expression control of a query by 1 + emphasis · |its standardised
        value|: the controls the query moves far from the clip's average count more than the
        ones it leaves near it (a slider pushed to its end should find frames that show it). With
        `frames_too` the weight of a control between a query and a frame is 1 + emphasis · the larger
        of the two |standardised values|: a frame that moves a control far which the query leaves at
        rest (a grin with closed eyes for an open-eyed query) is as far as one that lacks what the
        query moves."""
        q = np.asarray(query, np.float64)
        if q.ndim != 2 or q.shape[1] != self._points.shape[1]:
            raise ValueError(f"expected (n, {self._points.shape[1]}) controls, got {q.shape}")
        z = (q - self._mean) / self._std
        q = z * self._w
        a = self._points
        if emphasis <= 0:
            return (q ** 2).sum(1)[:, None] - 2 * q @ a.T + (a ** 2).sum(1)[None]
        far = np.abs(z[:, None, 2:])                                   # (n, 1, C-2), or (n, N, C-2) below
        if frames_too:
            far = np.maximum(far, np.abs(self._z[None, :, 2:]))
        g = np.ones(far.shape[:2] + (z.shape[1],))
        g[..., 2:] += emphasis * far
        return (((q[:, None, :] - a[None]) * g) ** 2).sum(-1)

    def region_mismatch(self, query: np.ndarray, frames: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
        """(B, C) controls and (B, k) frame indices → (B, k, R): for each region's `columns`, the largest
        difference of a control between the query and the frame, in training standard deviations."""
        z = (np.asarray(query, np.float64) - self._mean) / self._std                # (B, C)
        diff = np.abs(z[:, None, :] - self._z[np.asarray(frames)])                  # (B, k, C)
        return np.stack([diff[..., c].max(-1) for c in columns], -1)

    def region_rest(self, query: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
        """(B, C) controls → (B, R): how far (training standard deviations, the largest over each region's
        `columns`) the query's controls lie from the subject's rest (0, the sliders' neutral)."""
        z = (np.asarray(query, np.float64) - self._mean) / self._std
        rest = -self._mean / self._std
        return np.stack([np.abs(z[:, c] - rest[c]).max(-1) for c in columns], -1)


def frame_atypicality(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) unit face embeddings of a clip's frames → (N,) how unlike the clip's person each frame
    looks, standardised: 1 − the cosine to the frames' mean embedding, minus its median, over its
    standard deviation (0 for every frame when they are all alike)."""
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2 or not len(e):
        raise ValueError(f"expected (N, D) embeddings, got {e.shape}")
    m = e.mean(0)
    m = m / max(float(np.linalg.norm(m)), 1e-12)
    a = 1.0 - e @ m
    sd = float(a.std())
    return np.zeros(len(e)) if sd < 1e-9 else (a - np.median(a)) / sd


EMBEDDINGS_FILE = "detail/frame_identity_{size}.npz"
"""Inside a project: the ArcFace embeddings of its training crops at one size (`frame_embeddings`)."""


def frame_embeddings(project, rows: np.ndarray, crops: np.ndarray) -> np.ndarray | None:
    """(N, 128) ArcFace embeddings of a project's training `crops` (tracked rows `rows`), or None without
    the ArcFace file. Computed once (440 frames took 17 s on a busy 2-core CPU) and kept in the project
    (`EMBEDDINGS_FILE`, written atomically) under a key of the frames and the ArcFace file, so a re-track
    or another ArcFace file computes them again; a project folder that cannot be written to computes them
    each time it is opened."""
    import hashlib

    from .. import metrics
    from ..errors import StudioError
    from ..model_files import sha256_file

    weights = metrics.arcface_weights()
    if weights is None or not len(crops):
        return None
    h = hashlib.sha256(np.ascontiguousarray(rows, np.int64).tobytes())
    h.update(np.ascontiguousarray(crops).tobytes())
    try:
        key = f"frames {h.hexdigest()}; arcface {sha256_file(weights)}"
    except OSError:
        return None
    path = project.root / EMBEDDINGS_FILE.format(size=crops.shape[1])
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key and z["embeddings"].shape[0] == len(crops):
                return z["embeddings"].astype(np.float32)
    except (OSError, KeyError, ValueError, EOFError):   # absent, damaged or another layout: computed again
        pass
    try:
        emb = metrics.embeddings(crops)
    except Exception:   # noqa: BLE001 — a damaged ArcFace file: the frames are chosen by controls alone
        return None
    if emb is None:
        return None
    emb = np.asarray(emb, np.float32)

    def save(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, key=np.array(key), embeddings=emb)

    try:
        from ..atomic import write_with

        write_with(path, save)
    except (StudioError, OSError):   # a read-only or full folder: used without keeping them
        pass
    return emb


TRAIL_HOLD = 0.3
"""`LenderTrail`: the share of the previous frame's lenders carried into each frame of a clip."""

TRAIL_FLOOR = 0.03
"""`LenderTrail`: a lender whose weight (over the face and each region) falls below this is let go."""

TRAIL_MOST = 3
"""`LenderTrail`: at most this many lenders per frame (the heaviest), each costing a warp."""


class LenderTrail:
    """The frames that lend detail to consecutive frames of one clip (an export), blended over time.

    Each render picks its own nearest frames (`VideoDetail.lenders`), so where a clip's controls cross from
    one training frame's neighbourhood to another's the detail switched in one frame: the skin, the glasses'
    glints or a smile popped in (an export driven by driver_tps onto d9: 17 such jumps in 6.8 s, none in the
    real frames). Here each frame's lenders are blended with the previous frame's, `hold` of them carried
    over, so a switch is a short cross-fade. Weights are per lender over the face and over each of the
    regions (`REGIONS`), each normalised to sum to 1; lenders under `floor` are let go and at most `most`
    kept (the heaviest). More hold or more lenders blend more frames into each and cost fine detail.
    State: the last frame's lenders; one trail per clip."""

    def __init__(self, hold: float = TRAIL_HOLD, floor: float = TRAIL_FLOOR, most: int = TRAIL_MOST):
        if not 0.0 <= hold < 1.0:
            raise ValueError(f"hold must be in [0, 1), got {hold}")
        self.hold, self.floor, self.most = float(hold), float(floor), max(1, int(most))
        self._last: dict[int, np.ndarray] | None = None     # frame -> (1 + R,) weights: the face's, each region's

    def follow(self, lenders: list[dict], regions: int) -> list[dict]:
        """Each of `lenders` (consecutive frames, as `VideoDetail.lenders` gives them: {frame: (weight, its (R,)
        region weights or None)}, `regions` = R) blended with the frame before it; the same form, heaviest
        first, region weights None where they equal the face's."""
        out = []
        for cur in lenders:
            now = {int(j): np.r_[w, np.full(regions, w) if r is None else np.asarray(r, np.float64)]
                   for j, (w, r) in cur.items()}
            if self._last is not None and self.hold > 0:
                frames = sorted(set(now) | set(self._last))
                mixed = np.stack([(1.0 - self.hold) * now.get(j, np.zeros(1 + regions))
                                  + self.hold * self._last.get(j, np.zeros(1 + regions)) for j in frames])
                heavy = np.argsort(-mixed.max(1), kind="stable")[:self.most]
                heavy = heavy[mixed[heavy].max(1) >= self.floor]
                kept = mixed[heavy]
                total = kept.sum(0)
                kept = np.divide(kept, total[None], out=np.zeros_like(kept), where=total[None] > 0)
                now = {frames[i]: kept[k] for k, i in enumerate(heavy)}
            self._last = now
            order = sorted(now, key=lambda j: -now[j][0])
            out.append({j: (float(now[j][0]), None if np.allclose(now[j][1:], now[j][0]) else now[j][1:].copy())
                        for j in order})
        return out
