"""Reading a video's header through the ffmpeg binary that imageio-ffmpeg ships.

- `ffmpeg_exe` finds the bundled ffmpeg; every other module of `studio.video` runs it.
- `probe` reads size, rotation tag, sample aspect, frame rate, duration, audio presence and colour
  (matrix, range, primaries, transfer curve: `studio.video.colour`) (a `VideoInfo`). It picks the
  clip's own video stream where a file has several (a cover picture, a
  second camera), and every reader decodes that one.
- `NO_INDEX` names the containers without a keyframe index (.mts, .ts), whose trims are decoded from
  the beginning instead of jumping between keyframes.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, asdict
from pathlib import Path

from ..errors import InputError, StudioError
from .colour import colour_mode, parse_format


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
    stream: int = 0
    """Which video stream is the clip, counted among the file's video streams from 0 (ffmpeg's
    `0:v:N`): the first one marked default, else the first; cover pictures are never chosen."""
    container: str = ""
    """ffmpeg's name of the file format ("mov,mp4,m4a,3gp,3g2,mj2", "mpegts", ...)."""
    pix_fmt: str = ""
    """Pixel format as stored ("yuv420p", "yuv420p10le", ...)."""
    color_range: str = ""
    """"tv" (16–235), "pc" (full) or "" (not said)."""
    color_space: str = ""
    """YCbCr matrix as the file names it ("bt709", "bt2020nc", ...; "" not said)."""
    color_primaries: str = ""
    """Colour primaries ("bt709", "bt2020", ...; "" not said)."""
    color_trc: str = ""
    """Transfer curve ("bt709"; "arib-std-b67" = HLG and "smpte2084" = PQ are HDR; "" not said)."""
    field_order: str = ""
    """"progressive", or the first field of an interlaced clip ("top first", "bottom first", ...); "" not said."""

    @property
    def interlaced(self) -> bool:
        """Two half-pictures a frame, taken a field apart (a camcorder's or a TV recording's 1080i / 576i)."""
        return self.field_order.startswith(("top", "bottom"))

    @property
    def colour(self) -> str:
        """The colour conversion this clip needs (`studio.video.colour.colour_mode`)."""
        return colour_mode(self.pix_fmt, self.color_space, self.color_primaries, self.color_trc, self.width,
                           self.height)

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
_VIDEO_LINE = re.compile(r"Stream #\d+:\d+.*?: Video: ")
_SAR = re.compile(r"\[SAR (\d+):(\d+) DAR")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_TBR = re.compile(r"(\d+(?:\.\d+)?k?) tbr")
_ROT_TAG = re.compile(r"rotate\s*:\s*(-?\d+)")
_ROT_MATRIX = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
_STILL = re.compile(r"Input #0, (?:\w+_pipe|image2)\b")
_CONTAINER = re.compile(r"Input #0, ([\w,]+), from")
NO_INDEX = ("mpegts", "mpeg", "h264", "hevc", "mpegvideo", "m4v", "vc1")
"""Containers without an index of keyframes (camcorder .mts / .m2ts, .ts, .mpg / .vob, bare H.264 / HEVC
streams): a jump to a time lands between keyframes, so the frames up to the next keyframe come out
broken or not at all. A trim of these is decoded from the beginning (`DecodeSettings.seek`)."""


def _starts_like_mp4(path: Path) -> bool:
    """An MP4 / MOV file begins with one of these boxes (size, then the 4-letter type)."""
    with open(path, "rb") as f:
        head = f.read(8)
    return len(head) == 8 and head[4:8] in (b"ftyp", b"mdat", b"wide", b"free", b"skip", b"pnot", b"moov")


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
    if "moov atom not found" in text and _starts_like_mp4(path):
        raise InputError(f"the video {path.name} is incomplete: its index (the MP4 'moov' box) is missing, so no "
                         f"frame can be found (the recording or the copy was cut off)",
                         "copy the whole file again from the phone, or export the clip again")
    if _STILL.search(text):
        raise InputError(f"{path.name} is a still image, not a video", "choose a video file (MP4, MOV, ...)")
    m, stream = _main_video(text)
    if m is None:
        if "Invalid data found" in text or "Stream #" not in text:
            raise InputError(f"{path.name} is not a video file that can be read (damaged or another kind of file)",
                             "export the clip again as MP4 or MOV")
        raise InputError(f"{path.name} has no video stream", "choose a file with a video track")
    codec, w, h = m.group(1), int(m.group(2)), int(m.group(3))
    video_line = text[m.start(): text.find("\n", m.start())]
    # the stream's own lines (its side data: display matrix); the next stream's begin with "Stream #"
    nxt = text.find("Stream #", m.end())
    block = text[m.start(): nxt if nxt >= 0 else len(text)]
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
    mr = _ROT_MATRIX.search(block) or _ROT_TAG.search(block)
    if mr:
        # display-matrix "rotation of -90" means the picture must turn 90° clockwise to show upright
        rotation = int(round(-float(mr.group(1)))) % 360 if mr.re is _ROT_MATRIX else int(mr.group(1)) % 360
        rotation = int(round(rotation / 90.0)) * 90 % 360
    has_audio = re.search(r"Stream #\d+:\d+.*?: Audio:", text) is not None
    return VideoInfo(path=str(path.resolve()), width=w, height=h, rotation=rotation, sar=sar, fps=fps,
                     duration=duration, has_audio=has_audio, codec=codec, stream=stream,
                     container=mc.group(1) if (mc := _CONTAINER.search(text)) else "", **parse_format(video_line))


def _main_video(text: str) -> tuple[re.Match | None, int]:
    """The clip's video stream in ffmpeg's description of a file: (its match of `_VIDEO`, its number
    among the video streams, as ffmpeg's `0:v:N` counts them). A phone clip has one; an edit or a
    recording app may add more (a cover picture, a second camera, a thumbnail track): the first
    stream marked "(default)" is the clip, else the first; an "(attached pic)" (a cover) never is."""
    found = []
    for k, line in enumerate(ln for ln in text.splitlines() if _VIDEO_LINE.search(ln)):
        at = text.index(line)
        m = _VIDEO.search(text, at, at + len(line))
        if m is not None and "(attached pic)" not in line:
            found.append((m, k, "(default)" in line))
    if not found:
        return None, 0
    m, k, _ = next((f for f in found if f[2]), found[0])
    return m, k
