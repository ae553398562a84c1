"""Stage `ingest`: read the video's header, choose how it is decoded, keep the audio.

Nothing is copied: the project records the source path and the decode settings (trim,
constant frame rate, frame cap, upright size) so every later stage sees the same frames.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import opt
from ..errors import InputError
from ..video import _NoAudio, extract_audio, plan_decode, probe
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


PRESETS = {"preview": IngestConfig(), "quality": IngestConfig(max_side=2048)}


def run(ctx: StageContext, cfg: IngestConfig):
    src = ctx.project.source_video
    yield ctx.progress(0, 2, part="probe", message=f"reading {src.name}")
    info = probe(src)
    if info.duration <= 0.0 and info.codec == "":
        raise InputError(f"{src.name} has no frames", "choose another video")
    settings = plan_decode(info, start=cfg.start, end=cfg.end, fps=cfg.fps, max_frames=cfg.max_frames,
                           max_side=cfg.max_side)
    outputs = {"video": f"{ctx.stage}/video.json"}
    audio = False
    if cfg.keep_audio and info.has_audio:
        yield ctx.progress(1, 2, part="audio", message="keeping the audio track")
        try:
            audio = extract_audio(src, ctx.workdir / "audio.m4a", settings.start, settings.end)
            outputs["audio"] = f"{ctx.stage}/audio.m4a"
        except _NoAudio:
            audio = False
    write_json(ctx.workdir / "video.json", {"info": info.to_dict(), "decode": settings.to_dict(), "audio": audio})
    w, h = info.display_size
    warnings = []
    if (w, h) != (settings.width, settings.height):
        warnings.append(f"the video is large ({w}x{h}); frames are downscaled to {settings.width}x{settings.height}")
    yield ctx.progress(2, 2, part="done")
    return {"outputs": outputs, "warnings": warnings,
            "summary": {"size": f"{settings.width}x{settings.height}", "rotation": info.rotation, "fps": settings.fps,
                        "duration_s": round(info.duration, 2), "expected_frames": settings.expected_frames(info),
                        "audio": audio}}


register(StageSpec(name="ingest", title="Video", config_cls=IngestConfig, presets=PRESETS, run=run,
                   description="Reads the video, applies trim / frame rate / rotation, keeps the audio."))
