"""Whole-file passes over a clip that hand out no frames.

- `scan_media` reads every packet's timestamp without decoding (fast): a clip cut short, or
  with stretches of video or audio missing, is found at ingest (a `MediaScan`).
- `extract_audio` keeps the audio track (trimmed to the same span) for export.
- `media_duration` counts frames and stream durations by decoding (for tests and checks).
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, asdict, field

from .damage import _is_damage, find_gaps
from .header import _VIDEO, VideoInfo, ffmpeg_exe, probe


def _fmt_s(x: float) -> str:
    return f"{x:.1f} s"


@dataclass
class StreamScan:
    """Packet timestamps of one stream, read without decoding (seconds)."""

    packets: int
    start: float
    """Time of the first packet."""
    end: float
    """End of the last packet (its time plus its duration)."""
    gaps: list
    """[last time before, first time after] for each stretch with no packets."""


@dataclass
class MediaScan:
    """What a packet-level read of the whole file found (`scan_media`)."""

    duration: float
    """Duration the file's header promises (seconds; 0 when unknown)."""
    video: StreamScan | None
    audio: StreamScan | None
    messages: list = field(default_factory=list)
    """The demuxer's error / warning lines (the first few)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def readable(self, start: float = 0.0, end: float | None = None) -> float:
        """Seconds of the span [start, end] (end None = the header's end) that have video."""
        stop = end if end is not None else (self.duration or (self.video.end if self.video else 0.0))
        if self.video is None or self.video.packets == 0:
            return 0.0
        have = max(0.0, min(stop, self.video.end) - max(start, self.video.start))
        for a, b in self.video.gaps:
            have -= max(0.0, min(b, stop) - max(a, start))
        return max(0.0, have)

    def damage(self, start: float = 0.0, end: float | None = None, fps: float = 30.0) -> dict:
        """Problems within the span [start, end]: {"video_lost_s", "audio_lost_s", "notes": [...]}.

        Each note is one plain sentence for the user saying what is missing and that the rest is
        used."""
        stop = end if end is not None else self.duration
        notes: list[str] = []
        out = {"video_lost_s": 0.0, "audio_lost_s": 0.0, "notes": notes}
        tol = max(0.3, 3.0 / (fps or 30.0))
        for kind, st in (("video", self.video), ("audio", self.audio)):
            if st is None or not stop:
                continue
            lost, parts = 0.0, []
            tail = stop - max(st.end, start)
            if st.packets == 0 or st.end <= start:
                lost = stop - start
                parts.append("none of it can be read")
            elif tail > tol:
                lost += tail
                parts.append(f"it stops at {_fmt_s(st.end - start)} of {_fmt_s(stop - start)} "
                             f"({_fmt_s(tail)} missing at the end" + ("; the file looks cut off)" if kind == "video"
                                                                     else ")"))
            inner = [(a, b) for a, b in st.gaps if b > start and a < stop]
            if inner:
                gl = sum(min(b, stop) - max(a, start) for a, b in inner)
                lost += gl
                where = ", ".join(f"{max(a, start) - start:.1f}–{min(b, stop) - start:.1f} s" for a, b in inner[:3])
                parts.append(f"{len(inner)} stretch{'es' if len(inner) > 1 else ''} ({_fmt_s(gl)}) missing at {where}"
                             + (" …" if len(inner) > 3 else ""))
            if not parts:
                continue
            out[f"{kind}_lost_s"] = round(lost, 2)
            if kind == "video":
                notes.append(f"the video is damaged: {'; '.join(parts)}; {_fmt_s(lost)} of video lost, "
                             f"the remaining {_fmt_s(max(0.0, stop - start - lost))} are used")
            else:
                notes.append(f"the audio track is incomplete: {'; '.join(parts)}; exports will be silent for "
                             f"those {_fmt_s(lost)}, the rest of the sound is kept")
        return out


_CRC_TB = re.compile(r"^#tb (\d+): (\d+)/(\d+)")


def scan_media(path: str | os.PathLike, info: VideoInfo | None = None, max_messages: int = 8) -> MediaScan:
    """Read the timestamp of every video and audio packet without decoding (about as fast as
    reading the file): a file cut short or with stretches missing shows up here."""
    info = info or probe(path)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "level+warning", "-i", str(path),
           "-map", f"0:v:{info.stream}"] + (["-map", "0:a:0"] if info.has_audio else []) + [
           "-c", "copy", "-f", "framecrc", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    tb: dict[int, float] = {}
    times: dict[int, list[float]] = {0: [], 1: []}
    durations: dict[int, list[float]] = {}
    ends: dict[int, float] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("#"):
            m = _CRC_TB.match(line)
            if m:
                tb[int(m.group(1))] = int(m.group(2)) / int(m.group(3))
            continue
        parts = line.split(",")
        if len(parts) < 5:
            continue
        try:
            idx, pts, dur = int(parts[0]), int(parts[2]), int(parts[3])
        except ValueError:
            continue
        if idx not in tb or abs(pts) > 2 ** 60:
            continue
        t = pts * tb[idx]
        times.setdefault(idx, []).append(t)
        durations.setdefault(idx, []).append(max(dur, 0) * tb[idx])
        ends[idx] = max(ends.get(idx, t), t + max(dur, 0) * tb[idx])
    messages = [ln.strip() for ln in proc.stderr.splitlines() if _is_damage(ln)][:max_messages]

    def stream(idx: int, interval: float) -> StreamScan:
        t = times.get(idx, [])
        if not t:
            return StreamScan(0, 0.0, 0.0, [])
        return StreamScan(len(t), round(min(t), 3), round(ends[idx], 3),
                          [[round(a, 3), round(b, 3)] for a, b in find_gaps(t, interval, durations.get(idx))])

    video = stream(0, 1.0 / (info.fps or 30.0))
    audio = stream(1, 0.05) if info.has_audio else None
    return MediaScan(duration=info.duration, video=video, audio=audio, messages=messages)


def extract_audio(video: str | os.PathLike, dst: str | os.PathLike, start: float = 0.0,
                  end: float | None = None) -> list[str]:
    """Write the trimmed audio track to `dst` (AAC in .m4a).

    Returns the decoder's error lines (empty for a clean track; the rest of a damaged track is
    still written). Raises `_NoAudio` (with the reason) when nothing could be written."""
    from ..atomic import atomic_path

    with atomic_path(dst) as tmp:
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "level+warning", "-nostdin", "-y"]
        if start > 0:
            cmd += ["-ss", f"{start:.3f}"]
        cmd += ["-i", str(video)]
        if end is not None:
            cmd += ["-t", f"{end - start:.3f}"]
        cmd += ["-vn", "-sn", "-map", "0:a:0", "-c:a", "aac", "-b:a", "160k", "-f", "mp4", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        errors = [ln.strip() for ln in proc.stderr.splitlines() if _is_damage(ln)]
        if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
            raise _NoAudio(errors[-1] if errors else f"ffmpeg exit code {proc.returncode}")
    return errors


class _NoAudio(Exception):
    pass


def media_duration(path: str | os.PathLike) -> dict:
    """Count frames and read stream durations of a file by decoding it (for tests and checks).

    Returns {"frames": int, "fps": float, "video_seconds": float, "audio_seconds": float|None}.
    """
    head = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                          errors="replace").stderr
    has_video = _VIDEO.search(head) is not None
    has_audio = re.search(r"Stream #\d+:\d+.*?: Audio:", head) is not None
    fps, n = 0.0, 0
    if has_video:
        info = probe(path)
        fps = info.fps
        proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", f"0:v:{info.stream}",
                               "-f", "null", "-"], capture_output=True, text=True, errors="replace")
        frames = [int(m) for m in re.findall(r"frame=\s*(\d+)", proc.stderr)]
        n = frames[-1] if frames else 0
    audio = None
    if has_audio:
        p2 = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0", "-f", "null", "-"],
                            capture_output=True, text=True, errors="replace")
        times = re.findall(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)", p2.stderr)
        if times:
            h, m, sec = times[-1]
            audio = int(h) * 3600 + int(m) * 60 + float(sec)
    return {"frames": n, "fps": fps, "video_seconds": n / fps if fps else 0.0, "audio_seconds": audio}
