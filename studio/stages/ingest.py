"""Stage `ingest`: read the video's header, check the file, choose how it is decoded, keep the audio.

Nothing is copied: the project records the source path and the decode settings (trim,
constant frame rate, frame cap, upright size, colour conversion: an HDR phone clip is tone-mapped to
ordinary colours) so every later stage sees the same frames.
Every packet's timestamp is read (no decoding, about as fast as reading the file), so a clip
that is cut short or has stretches of video or audio missing is reported here — how many
seconds are lost and that the rest is used — in the warnings and the summary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import opt
from ..errors import InputError
from ..video import _NoAudio, extract_audio, plan_decode, probe, scan_media
from ..video.colour import describe as describe_colour
from .base import StageContext, StageSpec, register
from ..atomic import write_json


@dataclass
class IngestConfig:
    start: float = opt(0.0, "Trim: start of the clip to use, in seconds.", minimum=0.0)
    end: float | None = opt(None, "Trim: end of the clip to use, in seconds (empty = to the end).")
    fps: float | None = opt(None, "Frame rate to decode at (empty = the video's own; variable-rate "
                                  "phone clips are resampled to a constant rate).", minimum=1.0, maximum=120.0)
    max_frames: int | None = opt(None, "Use at most this many frames (empty = all).", minimum=1)
    max_side: int = opt(1280, "Frames larger than this (long side, pixels) are downscaled before tracking.",
                        minimum=256, maximum=4096, advanced=True)
    keep_audio: bool = opt(True, "Keep the audio track for export.")
    turn: str = opt("auto", "Turn the picture clockwise by this many degrees after the file's own rotation "
                            "(auto: turned only where the face lies on its side or upside down, as when a "
                            "phone's rotation tag was lost; 0 keeps the picture as the file shows it).",
                    choices=("auto", "0", "90", "180", "270"))


PRESETS = {"preview": IngestConfig(), "quality": IngestConfig(max_side=2048)}


def run(ctx: StageContext, cfg: IngestConfig):
    src = ctx.project.source_video
    yield ctx.progress(0, 3, part="probe", message=f"reading {src.name}")
    info = probe(src)
    if info.duration <= 0.0 and info.codec == "":
        raise InputError(f"{src.name} has no frames", "choose another video")
    scan = None
    if info.duration <= 0.0:  # the header says no length (a live recording, e.g. a browser's WebM): the
        scan = scan_media(src, info)  # packets do, for the trim checks and the frame count
        if scan.video is not None and scan.video.packets:
            info.duration = scan.duration = scan.video.end
    plan = dict(start=cfg.start, end=cfg.end, fps=cfg.fps, max_frames=cfg.max_frames, max_side=cfg.max_side)
    settings = plan_decode(info, **plan, turn=0 if cfg.turn == "auto" else int(cfg.turn))
    found = None
    if cfg.turn == "auto":
        yield ctx.progress(0, 3, part="upright", message="checking which way up the face is")
        found = _find_turn(src, settings, info.duration)
        if found is not None and found.turn:
            settings = plan_decode(info, **plan, turn=found.turn)
    yield ctx.progress(1, 3, part="check", message="checking the file for damage")
    scan = scan or scan_media(src, info)
    if scan.video is None or scan.video.packets == 0:
        raise InputError(f"no video frame can be read from {src.name} (the file is damaged or cut off)",
                         "copy the whole file again from the phone, or export the clip again")
    damage = scan.damage(settings.start, settings.end, fps=info.fps)
    readable = scan.readable(settings.start, settings.end)
    if readable <= 0.0:
        raise InputError(f"{src.name} has no readable video in the chosen span "
                         f"({settings.start:.1f}–{(settings.end or info.duration):.1f} s)",
                         "choose another trim, or copy the whole file again")
    warnings = list(damage["notes"])
    outputs = {"video": f"{ctx.stage}/video.json"}
    audio = False
    if cfg.keep_audio and info.has_audio:
        yield ctx.progress(2, 3, part="audio", message="keeping the audio track")
        try:
            errors = extract_audio(src, ctx.workdir / "audio.m4a", settings.start, settings.end)
            audio = True
            outputs["audio"] = f"{ctx.stage}/audio.m4a"
            if errors and not damage["audio_lost_s"]:
                warnings.append(f"the audio track has damaged parts ({len(errors)} decoder errors); they may be "
                                f"silent or crackle in exports, the rest is kept")
        except _NoAudio as exc:
            warnings.append(f"the audio track could not be read ({exc}); exports will be silent")
    # frames the clip will give, from the span that can actually be read
    expected = settings.expected_frames(info)
    if damage["video_lost_s"] and expected:
        expected = min(expected, int(math.floor(readable * settings.fps + 0.5)))
    write_json(ctx.workdir / "video.json", {"info": info.to_dict(), "decode": settings.to_dict(), "audio": audio,
                                            "scan": scan.to_dict(), "damage": damage, "expected_frames": expected})
    if found is not None and found.turn:
        warnings.append(_turn_note(found.turn))
    w, h = info.display_size
    if max(w, h) > cfg.max_side:  # not an odd size rounded to even (641x479 → 640x480): that is no downscale
        warnings.append(f"the video is large ({w}x{h}); frames are downscaled to {settings.width}x{settings.height}")
    yield ctx.progress(3, 3, part="done")
    span = settings.duration if settings.end is not None else max(0.0, info.duration - settings.start)
    summary = {}
    if damage["video_lost_s"] or damage["audio_lost_s"]:  # first, so `status` shows it
        summary["damaged"] = ", ".join(f"{k} {damage[f'{k}_lost_s']:.1f} s lost" for k in ("video", "audio")
                                       if damage[f"{k}_lost_s"])
    summary.update({"size": f"{settings.width}x{settings.height}", "rotation": info.rotation, "fps": settings.fps,
                    "duration_s": round(readable, 2), "expected_frames": expected, "audio": audio,
                    "colour": describe_colour(settings.colour)})
    if settings.turn:
        summary["turn"] = settings.turn
    if settings.deinterlace:
        summary["interlaced"] = info.field_order
    if damage["video_lost_s"]:
        summary["header_duration_s"] = round(span, 2)
    return {"outputs": outputs, "warnings": warnings, "summary": summary}


def _find_turn(src, settings, duration: float):
    """Which way up the face is in a few frames spread over the clip (`studio.tracking.upright`); None where no
    frame could be read (the damage checks that follow say why)."""
    from ..tracking.upright import find_turn
    from ..video import sample_frames

    frames = sample_frames(src, settings, duration=duration)
    return find_turn(frames) if frames else None


def _turn_note(turn: int) -> str:
    how = "upside down" if turn == 180 else "on its side"
    way = "half a turn" if turn == 180 else f"a quarter turn {'clockwise' if turn == 90 else 'anticlockwise'}"
    return (f"the face is {how} in the video (the file's rotation tag is missing or wrong), so the frames are "
            f"turned upright ({way}); exports come out upright too. To keep the picture as the file shows it, "
            f"set the Video stage's Turn to 0 (`avatar-studio new ... --turn 0`)")


register(StageSpec(name="ingest", title="Video", config_cls=IngestConfig, presets=PRESETS, run=run,
                   description="Reads the video, applies trim / frame rate / rotation, keeps the audio."))
