"""Stage `track`: face mesh on every kept frame, head pose, named expressions, smoothing,
FFHQ-aligned crops with their transforms, mattes, and a report a person can look at."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json, write_with
from ..config import opt
from ..errors import InputError
from ..tracking.data import EXPRESSION_NAMES, HOLDOUT_FRACTION, POSE_NAMES, TrackingData
from ..tracking.tracker import TrackOptions, drop_rows, other_face_rows, solve_pose_and_expressions, track_frames
from ..video import DecodeSettings, FrameReader, prefetch_frames
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
    follow: bool = opt(True, "Find the face on a downscaled frame and run the face mesh on the face region only, "
                             "following it from frame to frame (fast on large frames); off = mesh on the whole "
                             "frame.", advanced=True)


PRESETS = {"preview": TrackConfig(), "quality": TrackConfig(crop_size=512)}


def run(ctx: StageContext, cfg: TrackConfig):
    proj = ctx.project
    video = json.loads(proj.output("ingest", "video").read_text("utf-8"))
    settings = DecodeSettings(**video["decode"])
    info = video["info"]
    from ..video import VideoInfo

    expected = video.get("expected_frames", settings.expected_frames(VideoInfo(**info))) or 0
    total = expected
    out = ctx.workdir
    for sub in ("crops", "mattes"):
        d = out / sub
        if d.exists():
            for p in d.glob("*.png"):
                p.unlink()
    opts = TrackOptions(crop_size=cfg.crop_size, landmark_sigma=cfg.landmark_sigma, box_sigma=cfg.box_sigma,
                        min_confidence=cfg.min_confidence, mattes=cfg.mattes, follow=cfg.follow)
    # frames are decoded on a thread beside the face mesh, starting while the models load
    reader = FrameReader(proj.source_video, settings, prefetch=prefetch_frames(settings))
    gen = None
    try:
        reader.start()
        gen = track_frames(reader, out, opts)
        while True:
            try:
                n = next(gen)
            except StopIteration as stop:
                res = stop.value
                break
            if n % 10 == 0:
                yield ctx.progress(n, max(total, n), part="track", message=f"frame {n}")
    finally:
        if gen is not None:
            gen.close()  # stops the crop writer and the models when the pass is abandoned
        reader.close()
    if res.n_frames == 0:
        raise InputError(f"no frames could be decoded from {proj.source_video.name}",
                         "the video may be empty or damaged; try exporting it again")
    decode_notes, decode_summary = _decode_damage(reader.report, res, settings, expected, out,
                                                  known=bool(video.get("damage", {}).get("video_lost_s")))
    others = other_face_rows(res)
    other_note = _other_face_note(others, settings.fps)
    drop_rows(res, others, OTHER_FACE, out)
    n_valid = int(res.valid.sum())
    if n_valid == 0:
        raise InputError(f"no face was found in any of the {res.n_frames} frames of {proj.source_video.name}",
                         "use a video where one face is clearly visible and well lit")
    if n_valid < cfg.min_frames and res.n_frames < cfg.min_frames:  # the clip itself is too short
        raise InputError(_too_short(proj.source_video.name, res.n_frames, settings, cfg.min_frames),
                         _too_short_hint(settings, cfg.min_frames))
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
        "crop_size": cfg.crop_size, "fps": settings.fps, **decode_summary,
    }
    warnings = list(decode_notes)
    W, H = settings.width, settings.height
    picture = None if res.picture is None or tuple(res.picture) == (0, 0, W, H) else [int(v) for v in res.picture]
    if picture is not None:
        x0, y0, x1, y1 = picture
        summary["picture"] = f"{x1 - x0}×{y1 - y0} px (x {x0}–{x1}, y {y0}–{y1})"   # between the bars
        warnings.append(f"the video has black bars baked in ({x0} px left, {W - x1} right, {y0} top, {H - y1} "
                        f"bottom); the avatar learns only the picture between them, and the bars are laid "
                        f"over it where the video's background is shown")
    multi = int((res.n_faces > 1).sum())
    if other_note:
        warnings.append(other_note)
    elif multi:
        warnings.append(f"several faces were seen in {multi} frames; one face was followed throughout, the "
                        f"largest where it was first found")
    light = face_brightness(out / "crops")
    if light is not None:
        summary["face_brightness"] = round(light, 1)
        if light < DARK:
            warnings.append(f"the face is dark in this video (brightness {light:.0f} of 255 in the middle of the face); "
                            "the avatar will look as dark: a clip with the face toward a window or a lamp gives a "
                            "better one")
        elif light > BRIGHT:
            warnings.append(f"the face is washed out in this video (brightness {light:.0f} of 255 in the middle of the "
                            "face); the avatar will lose the same detail: a clip with softer light gives a better one")
    short = _short_clip_note(n_valid, settings.fps)
    if short:
        warnings.append(short)
    no_face = {k: c for k, c in res.reasons.items() if not k.startswith("video damaged") and k != OTHER_FACE}
    if sum(no_face.values()):
        why = ", ".join(f"{k}: {c}" for k, c in no_face.items())
        warnings.append(f"{sum(no_face.values())} frames without a usable face were skipped ({why})")
    meta = {"fps": settings.fps, "frame_size": [settings.width, settings.height], "crop_size": cfg.crop_size,
            "expression_names": EXPRESSION_NAMES, "pose_names": POSE_NAMES, "holdout_fraction": HOLDOUT_FRACTION,
            "expression_scaling": solved.scaling, "summary": summary, "warnings": warnings, "picture": picture,
            "damage": {"lost": reader.report.bad_spans if reader.report else [],
                       "ingest": video.get("damage", {}).get("notes", []), "decode": decode_notes}}
    write_json(out / "tracking.json", meta)
    yield ctx.progress(res.n_frames, res.n_frames, part="report", message="drawing the report")
    from ..report import tracking_report

    data = TrackingData.load(out)
    report = tracking_report(data, out)
    outputs = {"tracking": f"{ctx.stage}/tracking.npz", "meta": f"{ctx.stage}/tracking.json",
               **{k: proj.rel(p) for k, p in report.items()}}
    # notes on what an avatar can learn from the clip: not said of a driver or actor video (`export.track_driver`)
    return {"outputs": outputs, "summary": summary, "warnings": warnings, "subject_notes": [short] if short else []}


DARK, BRIGHT = 40.0, 235.0
"""Median brightness (0–255, Rec. 601 luma) of the middle of the face below / above which `track` says the clip
is too dark / washed out. The shared clips: d3 90, d9 127, d14 197; d3 darkened by ffmpeg's eq=brightness=-0.4
(dark red-brown crops): 7."""


def face_brightness(crops, sample: int = 30) -> float | None:
    """Median over up to `sample` evenly spaced aligned crops (PNG files in the folder `crops`) of the median luma
    of the middle of the face (the aligned crop's centre: x 30–70 %, y 35–75 %); None without crops."""
    import cv2

    files = sorted(Path(crops).glob("*.png"))
    if not files:
        return None
    values = []
    for f in files[:: max(1, len(files) // sample)][:sample]:
        im = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)   # BT.601 luma
        if im is None:
            continue
        h, w = im.shape
        values.append(float(np.median(im[int(0.35 * h):int(0.75 * h), int(0.3 * w):int(0.7 * w)])))
    return float(np.median(values)) if values else None


SHORT_CLIP_S = 10.0
"""Seconds of tracked face under which `track` says the avatar will know little of the person. Measured
(2026-12-07, README "Clips unlike the shared ones"): driver_tps, 6.8 s of a talking head, 5.8 s of it to train
on, whose last second holds a closed-lip smile no earlier frame shows: both engines under 22 dB on those
held-out frames (StyleGAN 20.1, NeRF 19.6; the nearest training frame 20.4) and their ArcFace feature distance
over the nearest frame's; the shared clips of 11.8–19.6 s passed every goal but d9's one."""


def _short_clip_note(n_valid: int, fps: float) -> str | None:
    """The plain-words note for a clip with under SHORT_CLIP_S seconds of face, else None."""
    seconds = n_valid / max(fps, 1e-6)
    if seconds >= SHORT_CLIP_S:
        return None
    return (f"the clip shows the face for only {seconds:.1f} s; the avatar learns the person's expressions and "
            f"head turns from these frames alone, so slider positions the clip does not show come out as the "
            f"nearest ones it does (a closed-lip smile as a talking mouth): 15 s or more with the expressions "
            f"and turns you want to control gives a better avatar")


OTHER_FACE = "another person's face"
"""`skipped_reasons` key of the frames where the tracker followed another face than the subject's."""


def _other_face_note(rows: np.ndarray, fps: float) -> str | None:
    """The plain-words note for frames where the tracker followed another face than the subject's (the face
    tracked in most frames; `tracking.tracker.other_face_rows`), with where they are in the clip, else None."""
    if not len(rows):
        return None
    cuts = np.flatnonzero(np.diff(rows) > 1)
    spans = [(rows[a], rows[b]) for a, b in zip(np.r_[0, cuts + 1], np.r_[cuts, len(rows) - 1])]
    where = ", ".join(f"{a / fps:.1f}–{(b + 1) / fps:.1f} s" for a, b in spans[:3])
    where += " …" if len(spans) > 3 else ""
    return (f"another face came into view larger than the subject's and the tracker followed it in {len(rows)} "
            f"frames ({where}); those frames were left out, so only the person tracked in most of the clip is used. "
            f"If that is the wrong person, trim the clip to the part that shows the person "
            f"you want (Start and End of the Video stage; --start/--end on the command line)")


def _too_short(name: str, n_frames: int, settings, min_frames: int) -> str:
    """Why too few frames came from the clip at all (not: too few of them show a face)."""
    if settings.max_frames and n_frames >= settings.max_frames:
        return f"only {n_frames} frames are used (the frame limit); at least {min_frames} frames with a face are needed"
    trimmed = settings.start > 0 or settings.end is not None
    what = "the chosen part of " + name if trimmed else name
    return (f"{what} is too short: {n_frames / settings.fps:.1f} s gives {n_frames} frames at {settings.fps:g} fps, "
            f"and at least {min_frames} frames with a face are needed")


def _too_short_hint(settings, min_frames: int) -> str:
    if settings.max_frames and min_frames > settings.max_frames:
        return f"allow at least {min_frames} frames (--max-frames)"
    need = f"at least {min_frames / settings.fps:.1f} s"
    if settings.start > 0 or settings.end is not None:
        return f"choose a longer part of the video ({need})"
    return f"use a longer clip ({need})"


def _decode_damage(report, res, settings, expected: int, out, known: bool) -> tuple[list[str], dict]:
    """Frames the decoder could not produce (the constant-rate resampling repeats the last good frame
    there) or decoded with errors (until the next keyframe) are dropped; a clip that gives fewer
    frames than ingest expected is reported.
    `known`: ingest already reported the file as damaged. Returns (warnings, summary entries)."""
    notes: list[str] = []
    summary: dict = {}
    if report is None:
        return notes, summary
    fps = settings.fps
    bad = report.bad_spans
    if bad:
        # the resampled frames at times [a, b) come from the missing or damaged decoded frames
        rows = [r for r in range(res.n_frames) if any(a - 0.25 / fps <= r / fps < b - 0.25 / fps for a, b in bad)]
        drop_rows(res, rows, "video damaged (frame could not be decoded)", out)
        where = ", ".join(f"{a:.1f}–{b:.1f} s" for a, b in bad[:3]) + (" …" if len(bad) > 3 else "")
        missing = f"{report.lost_seconds:.1f} s could not be decoded, " if report.lost else ""
        notes.append(f"{report.bad_seconds:.1f} s of the video is damaged ({where}; {missing}frames there are missing "
                     f"or show decoding errors up to the next keyframe); those {len(rows)} frames were skipped and "
                     f"the rest was used")
        summary["damaged_s"] = round(report.bad_seconds, 2)
        if report.lost:
            summary["undecodable_s"] = round(report.lost_seconds, 2)
    # frames short of what ingest expected; where ingest already found the file cut off, the last
    # packets before the cut are often partial too, so a few more frames go missing there
    slack = max(2, round(0.02 * expected)) + (round(0.5 * fps) if known else 0)
    if report.complete and expected and res.n_frames < expected - slack:
        missing = (expected - res.n_frames) / fps
        notes.append(f"only {res.n_frames} of the {expected} expected frames could be decoded: the last "
                     f"{missing:.1f} s of the clip are missing; the first {res.n_frames / fps:.1f} s were used")
        summary["expected_frames"] = expected
    if report.errors:
        summary["decode_errors"] = report.errors
    return notes, summary


register(StageSpec(name="track", title="Tracking", config_cls=TrackConfig, presets=PRESETS, run=run,
                   depends_on=("ingest",),
                   description="Finds the face in every frame: head pose, expressions, aligned crops and mattes."))
