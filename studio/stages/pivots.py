"""Stage `pivots` (PVP): K-means on the standardized [yaw, pitch, jaw, expression] of the
training frames; per cluster the frame nearest its centre. Held-out frames are never pivots."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..atomic import write_json
from ..config import opt
from ..errors import InputError
from ..report import curves_plot, pose_scatter
from ..tracking.data import TrackingData
from .base import StageContext, StageSpec, register


@dataclass
class PivotsConfig:
    k: int = opt(24, "Number of pivot frames (PVP uses 200; fewer keeps CPU tuning fast).", minimum=2, maximum=1000)
    pose_weight: float = opt(2.0, "Weight of yaw and pitch against the expression values in the clustering.",
                             minimum=0.0, maximum=10.0, advanced=True)
    seed: int = opt(0, "Random seed of K-means.", advanced=True)


PRESETS = {"preview": PivotsConfig(k=24), "quality": PivotsConfig(k=200)}


def select_pivots(controls: np.ndarray, k: int, pose_weight: float = 2.0, seed: int = 0) -> np.ndarray:
    """Indices into `controls` (N, 2 + E) of the frames nearest each K-means centre (unique, sorted by cluster)."""
    from sklearn.cluster import KMeans

    n = len(controls)
    k = min(k, n)
    x = (controls - controls.mean(0)) / np.maximum(controls.std(0), 1e-6)
    x[:, :2] *= pose_weight
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    chosen: list[int] = []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        d = ((x[members] - km.cluster_centers_[c]) ** 2).sum(1)
        for m in members[np.argsort(d)]:
            if m not in chosen:
                chosen.append(int(m))
                break
    return np.array(chosen, int)


def run(ctx: StageContext, cfg: PivotsConfig):
    trk = TrackingData.from_project(ctx.project)
    train, _ = trk.split()
    if len(train) < 2:
        raise InputError("too few training frames to choose pivots", "use a longer video")
    yield ctx.progress(0, 1, message=f"clustering {len(train)} training frames")
    idx = select_pivots(trk.controls(train), cfg.k, cfg.pose_weight, cfg.seed)
    rows = np.sort(train[idx])
    note = [] if len(rows) == cfg.k else [f"only {len(rows)} pivots: the clip has {len(train)} training frames"]
    write_json(ctx.workdir / "pivots.json", {"rows": rows.tolist(), "k": int(len(rows)),
                                             "controls": trk.controls(rows).round(4).tolist()})
    pose_scatter(trk, ctx.workdir / "pose_scatter.png", pivots=rows)
    curves_plot(trk, ctx.workdir / "curves.png", pivots=rows)
    yield ctx.progress(1, 1, message=f"{len(rows)} pivots")
    yaw = trk.pose[rows, 0]
    return {"outputs": {"pivots": f"{ctx.stage}/pivots.json", "pose_scatter": f"{ctx.stage}/pose_scatter.png",
                        "curves": f"{ctx.stage}/curves.png"},
            "rows": rows.tolist(), "warnings": note,
            "summary": {"pivots": int(len(rows)), "yaw_span": [round(float(yaw.min()), 1), round(float(yaw.max()), 1)]}}


register(StageSpec(name="pivots", title="Pivot frames", config_cls=PivotsConfig, presets=PRESETS, run=run,
                   depends_on=("track",),
                   description="Chooses representative frames (K-means over pose and expression) that the "
                               "generator is tuned on."))
