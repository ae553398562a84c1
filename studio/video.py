"""Video in and out through the ffmpeg binary that imageio-ffmpeg ships.

- `probe` reads size, rotation tag, sample aspect, frame rate, duration and audio presence.
- `FrameReader` streams upright RGB frames one at a time (memory does not grow with length),
  with optional trim, a constant target frame rate (variable-frame-rate phone clips are
  resampled to it) and a downscale cap for very large videos.
- `extract_audio` keeps the audio track (trimmed to the same span) for export.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError, StudioError


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - installed as a dependency
        raise StudioError("the bundled ffmpeg is missing", "reinstall Avatar Studio") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class VideoInfo:
    path: str
    """Absolute path of the video file."""
    width: int
    """Coded width in pixels (before rotation)."""
    height: int
    """Coded height in pixels (before rotation)."""
    rotation: int
    """Display rotation in degrees (0, 90, 180, 270) from the rotate tag / display matrix."""
    sar: float
    """Sample (pixel) aspect ratio; 1.0 for square pixels."""
    fps: float
    """Average frame rate reported by the container."""
    duration: float
    """Seconds; 0 when unknown."""
    has_audio: bool
    """Whether an audio stream exists."""
    codec: str = ""
    """Video codec name."""

    @property
    def display_size(self) -> tuple[int, int]:
        """(W, H) as shown to a viewer: square pixels, rotation applied."""
        w = int(round(self.width * self.sar))
        h = self.height
        if self.rotation in (90, 270):
            w, h = h, w
        return w, h

    def to_dict(self) -> dict:
        return asdict(self)


_DUR = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})")
_SAR = re.compile(r"\[SAR (\d+):(\d+) DAR")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_TBR = re.compile(r"(\d+(?:\.\d+)?k?) tbr")
_ROT_TAG = re.compile(r"rotate\s*:\s*(-?\d+)")
_ROT_MATRIX = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header. Raises InputError with a plain message for unusable files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"the video {path} does not exist", "check the file name and folder")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a video", "give the path of a video file")
    if path.stat().st_size == 0:
        raise InputError(f"the video {path.name} is empty (0 bytes)", "copy the video again from the phone")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                          errors="replace")
    text = proc.stderr
    m = _VIDEO.search(text)
    if m is None:
        if "Invalid data found" in text or "moov atom not found" in text or "Stream #" not in text:
            raise InputError(f"{path.name} is not a video file that can be read (damaged or another kind of file)",
                             "export the clip again as MP4 or MOV")
        raise InputError(f"{path.name} has no video stream", "choose a file with a video track")
    codec, w, h = m.group(1), int(m.group(2)), int(m.group(3))
    video_line = text[m.start(): text.find("\n", m.start())]
    sar = 1.0
    ms = _SAR.search(video_line)
    if ms and int(ms.group(2)) > 0 and int(ms.group(1)) > 0:
        sar = int(ms.group(1)) / int(ms.group(2))
    fps = 0.0
    mf = _FPS.search(video_line)
    if mf:
        fps = float(mf.group(1))
    else:
        mt = _TBR.search(video_line)
        if mt:
            v = mt.group(1)
            fps = float(v[:-1]) * 1000 if v.endswith("k") else float(v)
    if not (0 < fps < 1000):
        fps = 30.0
    duration = 0.0
    md = _DUR.search(text)
    if md:
        duration = int(md.group(1)) * 3600 + int(md.group(2)) * 60 + float(md.group(3))
    rotation = 0
    mr = _ROT_MATRIX.search(text) or _ROT_TAG.search(text)
    if mr:
        # display-matrix "rotation of -90" means the picture must turn 90° clockwise to show upright
        rotation = int(round(-float(mr.group(1)))) % 360 if mr.re is _ROT_MATRIX else int(mr.group(1)) % 360
        rotation = int(round(rotation / 90.0)) * 90 % 360
    has_audio = re.search(r"Stream #\d+:\d+.*?: Audio:", text) is not None
    return VideoInfo(path=str(path.resolve()), width=w, height=h, rotation=rotation, sar=sar, fps=fps,
                     duration=duration, has_audio=has_audio, codec=codec)


@dataclass
class DecodeSettings:
    """How a clip is decoded; saved by `ingest` so every later reader sees the same frames."""

    start: float = 0.0
    """Trim start in seconds."""
    end: float | None = None
    """Trim end in seconds (None = to the end)."""
    fps: float = 30.0
    """Constant output frame rate (variable-rate clips are resampled to it)."""
    max_frames: int | None = None
    """Stop after this many frames (None = no cap)."""
    width: int = 0
    """Output width (upright, square pixels, after any downscale)."""
    height: int = 0
    """Output height."""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def duration(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)

    def expected_frames(self, info: VideoInfo) -> int:
        span = self.duration if self.end is not None else max(0.0, info.duration - self.start)
        n = int(math.floor(span * self.fps + 0.5)) if span else 0
        if self.max_frames:
            n = min(n, self.max_frames) if n else self.max_frames
        return n


def plan_decode(info: VideoInfo, start: float = 0.0, end: float | None = None, fps: float | None = None,
                max_frames: int | None = None, max_side: int = 1280) -> DecodeSettings:
    """Choose output size (upright, square pixels, long side ≤ max_side, even) and rate."""
    if start < 0:
        raise InputError("the trim start cannot be negative")
    if info.duration and start >= info.duration:
        raise InputError(f"the trim start ({start:.1f} s) is past the end of the video ({info.duration:.1f} s)",
                         "choose an earlier start")
    if end is not None and end <= start:
        raise InputError("the trim end must come after the trim start")
    w, h = info.display_size
    scale = min(1.0, max_side / max(w, h))
    ow, oh = max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)
    return DecodeSettings(start=float(start), end=None if end is None else float(end),
                          fps=float(fps or round(info.fps, 3)), max_frames=max_frames, width=ow, height=oh)


class FrameReader:
    """Iterate upright RGB uint8 frames (H, W, 3) of a clip, one at a time.

    ffmpeg applies the rotation tag (autorotate), square pixels, trim, constant rate and the
    downscale; Python holds one frame at a time.
    """

    def __init__(self, path: str | os.PathLike, settings: DecodeSettings, threads: int = 1):
        self.path = str(path)
        self.settings = settings
        self.threads = threads
        self._proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        s = self.settings
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-threads", str(self.threads)]
        if s.start > 0:
            cmd += ["-ss", f"{s.start:.3f}"]
        cmd += ["-i", self.path]
        if s.end is not None:
            cmd += ["-t", f"{s.end - s.start:.3f}"]
        vf = f"fps={s.fps},scale={s.width}:{s.height}:flags=area,setsar=1"
        cmd += ["-an", "-sn", "-vf", vf, "-pix_fmt", "rgb24", "-f", "rawvideo"]
        if s.max_frames:
            cmd += ["-frames:v", str(s.max_frames)]
        cmd += ["pipe:1"]
        return cmd

    def __iter__(self) -> Iterator[np.ndarray]:
        s = self.settings
        nbytes = s.width * s.height * 3
        self._proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      bufsize=nbytes * 2)
        proc = self._proc
        try:
            while True:
                buf = proc.stdout.read(nbytes)
                if not buf or len(buf) < nbytes:
                    break
                yield np.frombuffer(buf, np.uint8).reshape(s.height, s.width, 3)
        finally:
            self.close()

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.kill()
        try:
            proc.communicate(timeout=5)
        except Exception:  # pragma: no cover
            pass


def read_frames(path: str | os.PathLike, settings: DecodeSettings) -> Iterator[np.ndarray]:
    return iter(FrameReader(path, settings))


def extract_audio(video: str | os.PathLike, dst: str | os.PathLike, start: float = 0.0,
                  end: float | None = None) -> bool:
    """Write the trimmed audio track to `dst` (AAC in .m4a). Returns False when there is none."""
    from .atomic import atomic_path

    with atomic_path(dst) as tmp:
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
        if start > 0:
            cmd += ["-ss", f"{start:.3f}"]
        cmd += ["-i", str(video)]
        if end is not None:
            cmd += ["-t", f"{end - start:.3f}"]
        cmd += ["-vn", "-sn", "-map", "0:a:0", "-c:a", "aac", "-b:a", "160k", "-f", "mp4", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        if proc.returncode != 0 or tmp.stat().st_size == 0:
            raise _NoAudio()
    return True


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
        proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-f",
                               "null", "-"], capture_output=True, text=True, errors="replace")
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
