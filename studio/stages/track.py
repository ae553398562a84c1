"""Stage `track`: face mesh on every kept frame, head pose, named expressions, smoothing,
FFHQ-aligned crops with their transforms, mattes, and a report a person can look at."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..atomic import write_json, write_with
from ..config import opt
from ..errors import InputError
from ..tracking.data import EXPRESSION_NAMES, HOLDOUT_FRACTION, POSE_NAMES, TrackingData
from ..tracking.tracker import TrackOptions, solve_pose_and_expressions, track_frames
from ..video import DecodeSettings, FrameReader
from .base import StageContext, StageSpec, register


@dataclass
class TrackConfig:
    crop_size: int = opt(256, "Side of the aligned face crops in pixels (256 preview; 512/1024 quality).",
                         choices=(128, 256, 512, 1024))
    landmark_sigma: float = opt(1.0, "Temporal smoothing of landmarks (Gaussian sigma, frames); against flicker.",
                                minimum=0.0, maximum=10.0)
    box_sigma: float = opt(2.0, "Temporal smoothing of the crop boxes (Gaussian sigma, frames).",
                           minimum=0.0, maximum=10.0)
    min_frames: int = opt(20, "Fewest frames with a usable face; fewer is an error.", minimum=2)
    min_confidence: float = opt(0.5, "Face detection/tracking confidence threshold.", minimum=0.05, maximum=0.99,
                                advanced=True)
    mattes: bool = opt(True, "Compute a foreground matte for each crop (selfie segmentation).")


PRESETS = {"preview": TrackConfig(), "quality": TrackConfig(crop_size=512)}


def run(ctx: StageContext, cfg: TrackConfig):
    proj = ctx.project
    video = json.loads(proj.output("ingest", "video").read_text("utf-8"))
    settings = DecodeSettings(**video["decode"])
    info = video["info"]
    from ..video import VideoInfo

    total = settings.expected_frames(VideoInfo(**info)) or 0
    out = ctx.workdir
    for sub in ("crops", "mattes"):
        d = out / sub
        if d.exists():
            for p in d.glob("*.png"):
                p.unlink()
    opts = TrackOptions(crop_size=cfg.crop_size, landmark_sigma=cfg.landmark_sigma, box_sigma=cfg.box_sigma,
                        min_confidence=cfg.min_confidence, mattes=cfg.mattes)
    reader = FrameReader(proj.source_video, settings)
    gen = track_frames(reader, out, opts)
    try:
        while True:
            try:
                n = next(gen)
            except StopIteration as stop:
                res = stop.value
                break
            if n % 10 == 0:
                yield ctx.progress(n, max(total, n), part="track", message=f"frame {n}")
    finally:
        reader.close()
    if res.n_frames == 0:
        raise InputError(f"no frames could be decoded from {proj.source_video.name}",
                         "the video may be empty or damaged; try exporting it again")
    n_valid = int(res.valid.sum())
    if n_valid == 0:
        raise InputError(f"no face was found in any of the {res.n_frames} frames of {proj.source_video.name}",
                         "use a video where one face is clearly visible and well lit")
    if n_valid < cfg.min_frames:
        raise InputError(f"only {n_valid} of {res.n_frames} frames show a usable face; at least {cfg.min_frames} "
                         f"are needed", "use a longer clip with the face visible most of the time")
    yield ctx.progress(res.n_frames, res.n_frames, part="solve", message="fitting head pose and expressions")
    solved = solve_pose_and_expressions(res.landmarks, res.valid)
    times = np.arange(res.n_frames, dtype=np.float32) / np.float32(settings.fps)

    def save_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, time=times, valid=res.valid, pose=solved.pose, expr=solved.expr, raw_expr=solved.raw_expr,
                     landmarks=res.landmarks, raw_landmarks=res.raw_landmarks, transforms=res.transforms,
                     n_faces=res.n_faces, canonical=solved.canonical, rigid_idx=solved.rigid_idx)

    write_with(out / "tracking.npz", save_npz)
    v = res.valid
    pose_v = solved.pose[v]
    summary = {
        "frames": res.n_frames, "tracked": n_valid, "skipped": res.n_frames - n_valid, "skipped_reasons": res.reasons,
        "yaw_range": [round(float(pose_v[:, 0].min()), 1), round(float(pose_v[:, 0].max()), 1)],
        "pitch_range": [round(float(pose_v[:, 1].min()), 1), round(float(pose_v[:, 1].max()), 1)],
        "roll_range": [round(float(pose_v[:, 2].min()), 1), round(float(pose_v[:, 2].max()), 1)],
        "crop_size": cfg.crop_size, "fps": settings.fps,
    }
    warnings = []
    multi = int((res.n_faces > 1).sum())
    if multi:
        warnings.append(f"several faces were seen in {multi} frames; the largest face was tracked")
    if res.n_frames - n_valid:
        why = ", ".join(f"{k}: {c}" for k, c in res.reasons.items())
        warnings.append(f"{res.n_frames - n_valid} frames without a usable face were skipped ({why})")
    meta = {"fps": settings.fps, "frame_size": [settings.width, settings.height], "crop_size": cfg.crop_size,
            "expression_names": EXPRESSION_NAMES, "pose_names": POSE_NAMES, "holdout_fraction": HOLDOUT_FRACTION,
            "expression_scaling": solved.scaling, "summary": summary, "warnings": warnings}
    write_json(out / "tracking.json", meta)
    yield ctx.progress(res.n_frames, res.n_frames, part="report", message="drawing the report")
    from ..report import tracking_report

    data = TrackingData.load(out)
    report = tracking_report(data, out)
    outputs = {"tracking": f"{ctx.stage}/tracking.npz", "meta": f"{ctx.stage}/tracking.json",
               **{k: proj.rel(p) for k, p in report.items()}}
    return {"outputs": outputs, "summary": summary, "warnings": warnings}


register(StageSpec(name="track", title="Tracking", config_cls=TrackConfig, presets=PRESETS, run=run,
                   depends_on=("ingest",),
                   description="Finds the face in every frame: head pose, expressions, aligned crops and mattes."))
