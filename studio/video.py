"""Video in and out through the ffmpeg binary that imageio-ffmpeg ships.

- `probe` reads size, rotation tag, sample aspect, frame rate, duration and audio presence.
- `FrameReader` streams upright RGB frames one at a time (memory does not grow with length),
  with optional trim, a constant target frame rate (variable-frame-rate phone clips are
  resampled to it) and a downscale cap for very large videos.
  It also watches the decoder: frames that could not be decoded (gaps in the decoded
  timestamps, which the constant-rate filter would otherwise fill with copies of the last good
  frame) and decoder errors end up in `FrameReader.report` (a `DecodeReport`).
  With `prefetch`, a thread reads frames ahead into a bounded queue, so ffmpeg keeps decoding
  while the caller works on earlier frames; `start()` begins decoding before the first frame is
  asked for (e.g. while the tracking models load).
- `probe` picks the clip's own video stream where a file has several (a cover picture, a second
  camera), and every reader decodes that one; a trim of a file without a keyframe index (.mts,
  .ts) is decoded from the beginning instead of jumping between keyframes.
- `scan_media` reads every packet's timestamp without decoding (fast): a clip cut short, or
  with stretches of video or audio missing, is found at ingest (a `MediaScan`).
- `extract_audio` keeps the audio track (trimmed to the same span) for export.
"""
from __future__ import annotations

import math
import os
import queue
import re
import subprocess
import threading
from dataclasses import dataclass, asdict, field
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
    stream: int = 0
    """Which video stream is the clip, counted among the file's video streams from 0 (ffmpeg's
    `0:v:N`): the first one marked default, else the first; cover pictures are never chosen."""
    container: str = ""
    """ffmpeg's name of the file format ("mov,mp4,m4a,3gp,3g2,mj2", "mpegts", ...)."""

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
                     container=mc.group(1) if (mc := _CONTAINER.search(text)) else "")


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
    stream: int = 0
    """Which of the file's video streams is decoded (`VideoInfo.stream`)."""
    seek: bool = True
    """Whether the decoder may jump straight to the trim start; False for files without a keyframe
    index (`NO_INDEX`): they are decoded from the beginning and the frames before the start dropped."""

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
                          fps=float(fps or round(info.fps, 3)), max_frames=max_frames, width=ow, height=oh,
                          stream=info.stream, seek=not set(info.container.split(",")) & set(NO_INDEX))


GAP_MIN_S = 0.25
"""A jump between consecutive timestamps longer than this (and than 4 frame intervals) is a gap."""


def find_gaps(times, interval: float, durations=None) -> list[tuple[float, float]]:
    """(last time before, first time after) for each jump in `times` longer than a gap.

    `durations` (seconds, one per time; 0 = unknown): a frame that lasts until the next one is not
    followed by a gap: a variable-rate clip holds a frame that long where the picture stood still
    (a phone's stall, a screen recording), while frames before a hole keep their usual length."""
    pairs = sorted(zip(times, durations if durations is not None else [0.0] * len(times)))
    limit = gap_limit(interval)
    return [(a, b) for (a, da), (b, _) in zip(pairs, pairs[1:])
            if b - a > limit and a + max(da, 0.0) < b - 0.5 * interval]


def gap_limit(interval: float) -> float:
    """The jump between consecutive timestamps (frames `interval` s apart) that counts as a gap."""
    return max(GAP_MIN_S, 4.0 * interval)


def merge_spans(spans) -> list:
    """Sorted, non-overlapping [start, end] spans covering the given ones."""
    out: list = []
    for a, b in sorted((float(a), float(b)) for a, b in spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


SNAP_BACK_S = 2.0
"""How far before the first error a damaged stretch may start: back to the keyframe before it."""


def damaged_spans(events, end: float, settle: int = 2, snap_back: float = SNAP_BACK_S) -> list:
    """Stretches from a decoder error to the next keyframe decoded cleanly.

    `events`: the decoder's log in order, ("frame", time, is_keyframe) or ("error",). Errors come
    from the parser too, which runs a few packets ahead of the decoder, so a keyframe closes a
    stretch only when at least `settle` frames were decoded since the last error (otherwise the
    errors may belong to packets after it).

    Where an error line lands among the frame lines varies from run to run (the parser, the
    decoder and the frame log are different threads: up to eight frames apart at 30 fps on a busy
    machine). So a stretch starts at the keyframe before the first error (no earlier than
    `snap_back` seconds before it), which is the same in every run; and in a clip with errors, a
    jump in the frame times (frames the decoder could not produce) starts a stretch too, since the
    frames after it predict from the missing ones until the next keyframe."""
    frames = sorted(ev[1] for ev in events if ev[0] == "frame")
    steps = np.diff(frames) if len(frames) > 2 else np.array([1.0 / 30])
    gap = gap_limit(max(float(np.median(steps)), 1e-3))
    any_error = any(ev[0] == "error" for ev in events)
    spans, start, last_t, last_key, since_error = [], None, None, 0.0, 0

    def opened(t: float) -> float:
        return round(max(last_key, t - snap_back), 3)

    for ev in events:
        if ev[0] == "error":
            if start is None:
                start = opened(last_t if last_t is not None else 0.0)
            since_error = 0
            continue
        _, t, key = ev
        if any_error and last_t is not None and t - last_t > gap and start is None:
            start = opened(last_t)  # a keyframe right after the hole, decoded cleanly, ends it
        since_error += 1
        if start is not None and key and since_error > settle:
            spans.append([start, round(t, 3)])
            start = None
        if key:
            last_key = t
        last_t = t
    if start is not None:
        spans.append([start, round(max(end, start), 3)])
    return spans


def _fmt_s(x: float) -> str:
    return f"{x:.1f} s"


@dataclass
class DecodeReport:
    """What the decoder saw while a `FrameReader` ran (times in seconds from the trim start)."""

    frames: int = 0
    """Frames handed out (after the constant-rate resampling)."""
    decoded: int = 0
    """Frames the decoder produced (before resampling)."""
    first: float | None = None
    """Time of the first decoded frame."""
    last: float | None = None
    """Time of the last decoded frame."""
    lost: list = field(default_factory=list)
    """[start, end] of each stretch the decoder produced no frame for (the frames handed out
    there repeat the last good one)."""
    damaged: list = field(default_factory=list)
    """[start, end] of each stretch from a decoder error to the next keyframe decoded cleanly:
    frames there are missing or may show blocks of wrong picture (errors spread through the
    frames that predict from a damaged one until the next keyframe)."""
    errors: int = 0
    """Error / warning lines from ffmpeg."""
    messages: list = field(default_factory=list)
    """The first few of them, as ffmpeg wrote them."""
    complete: bool = False
    """The whole clip was read (not stopped early by the caller)."""
    returncode: int | None = None

    @property
    def lost_seconds(self) -> float:
        return float(sum(b - a for a, b in self.lost))

    @property
    def bad_spans(self) -> list:
        """`lost` and `damaged` merged: the frames that should not be used."""
        return merge_spans(self.lost + self.damaged)

    @property
    def bad_seconds(self) -> float:
        return float(sum(b - a for a, b in self.bad_spans))

    def to_dict(self) -> dict:
        return asdict(self)


_PTS_TIME = re.compile(r"\] \[info\] n:\s*\d+ pts:\s*-?\d+ pts_time:(-?[\d.]+)"
                       r"(?:\s+duration:\s*-?\d+\s+duration_time:(-?[\d.]+))?.*? iskey:(\d)")
_LEVEL = re.compile(r"\[(error|fatal|panic|warning)\] ")
_DAMAGE_WORDS = re.compile(r"corrupt|partial file|invalid|missing|truncat|conceal|error", re.IGNORECASE)


def _is_damage(line: str) -> bool:
    """An ffmpeg log line (written with -loglevel level+...) that signals damaged data: any error,
    or a warning about corrupt / missing data (not e.g. "UDTA parsing failed" on intact clips)."""
    m = _LEVEL.search(line)
    if m is None:
        return False
    return m.group(1) != "warning" or _DAMAGE_WORDS.search(line[m.end():]) is not None


PREFETCH_BYTES = 64 << 20
"""Memory a prefetching `FrameReader` may fill with frames decoded ahead (`prefetch_frames`)."""

_F_SETPIPE_SZ = 1031  # fcntl command (Linux): resize a pipe's buffer


def prefetch_frames(settings: DecodeSettings, budget: int = PREFETCH_BYTES) -> int:
    """How many frames of this size fit in `budget` bytes (2 to 64): 23 at 1280x720, 64 at 512x512."""
    return int(max(2, min(64, budget // max(1, settings.width * settings.height * 3))))


class FrameReader:
    """Iterate upright RGB uint8 frames (H, W, 3) of a clip, one at a time.

    ffmpeg applies the rotation tag (autorotate), square pixels, trim, constant rate and the
    downscale; Python holds one frame at a time (plus up to `prefetch` frames decoded ahead).
    ffmpeg's log is read on a thread as it comes (so a clip full of decode errors cannot stall
    the pipe) and summed up in `report` once the iteration ends.

    `prefetch` > 0: a reader thread takes frames off ffmpeg's pipe into a queue of that many, so
    decoding runs beside the caller's work instead of waiting for it (the pipe alone holds less
    than a frame). `start()` starts ffmpeg (and that thread) before the first frame is asked for.
    """

    def __init__(self, path: str | os.PathLike, settings: DecodeSettings, threads: int = 1, max_messages: int = 8,
                 prefetch: int = 0):
        self.path = str(path)
        self.settings = settings
        self.threads = threads
        self.max_messages = max_messages
        self.prefetch = max(0, int(prefetch))
        self.report: DecodeReport | None = None
        self._proc: subprocess.Popen | None = None
        self._log_thread: threading.Thread | None = None
        self._read_thread: threading.Thread | None = None
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        self._times: list[float] = []
        self._durations: list[float] = []
        self._events: list[tuple] = []
        self._errors = 0
        self._messages: list[str] = []
        self._frames = 0

    def command(self) -> list[str]:
        s = self.settings
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "level+info", "-nostdin", "-threads",
               str(self.threads)]
        head = ""
        if s.start > 0 and s.seek:
            cmd += ["-ss", f"{s.start:.3f}"]
        elif s.start > 0:
            # a file without an index is read from its beginning (up to the end of the trim): the frames
            # before the start are dropped, and the rest keep their times from the start, as after a jump
            head = f"trim=start={s.start:.3f},setpts=PTS-{s.start:.3f}/TB,"
            if s.end is not None:
                cmd += ["-t", f"{s.end:.3f}"]
        cmd += ["-i", self.path]
        if s.end is not None and not head:
            cmd += ["-t", f"{s.end - s.start:.3f}"]
        # showinfo (before the constant-rate filter) logs each decoded frame's time: gaps there are
        # frames the decoder could not produce
        vf = f"{head}showinfo=checksum=0,fps={s.fps},scale={s.width}:{s.height}:flags=area,setsar=1"
        # the clip's own stream: left to itself ffmpeg decodes the largest one (a second camera, a cover)
        cmd += ["-map", f"0:v:{s.stream}", "-an", "-sn", "-vf", vf, "-pix_fmt", "rgb24", "-f", "rawvideo"]
        if s.max_frames:
            cmd += ["-frames:v", str(s.max_frames)]
        cmd += ["pipe:1"]
        return cmd

    def _read_log(self, stream) -> None:
        fd, rest = stream.fileno(), b""
        while True:  # whatever is there at each wake-up, not a line at a time (fewer GIL hand-offs)
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for raw in lines:
                self._log_line(raw.decode("utf-8", "replace"))
        if rest:
            self._log_line(rest.decode("utf-8", "replace"))

    def _log_line(self, line: str) -> None:
        if "] [info] " in line:
            if "pts_time:" in line:
                m = _PTS_TIME.search(line)
                if m:
                    t = float(m.group(1))
                    self._times.append(t)
                    self._durations.append(float(m.group(2) or 0.0))
                    self._events.append(("frame", t, m.group(3) == "1"))
            return
        if _is_damage(line):
            self._errors += 1
            # the demuxer reads ahead while it probes the file: what it reports before the first
            # frame is decoded has no place in time yet (the decoder reports the damage again)
            if self._times or not line.startswith("[in#"):
                self._events.append(("error",))
            if len(self._messages) < self.max_messages:
                self._messages.append(line.strip())

    def start(self) -> "FrameReader":
        """Start ffmpeg now (and the prefetch thread): frames are decoded ahead while the caller
        gets ready. Iterating afterwards hands out these frames; without `start` iterating starts."""
        if self._proc is not None:
            return self
        s = self.settings
        nbytes = s.width * s.height * 3
        self._times, self._durations, self._events, self._errors, self._messages, self._frames = [], [], [], 0, [], 0
        self.report = None
        self._stop.clear()
        self._proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        proc = self._proc
        try:  # a 1 MiB pipe: ffmpeg hands over a frame in a few writes instead of one per 64 KiB
            import fcntl

            fcntl.fcntl(proc.stdout.fileno(), _F_SETPIPE_SZ, 1 << 20)
        except (ImportError, OSError):  # other systems, or a lower pipe-max-size: the default pipe works
            pass
        self._log_thread = threading.Thread(target=self._read_log, args=(proc.stderr,), name="ffmpeg-log",
                                            daemon=True)
        self._log_thread.start()
        if self.prefetch:
            self._queue = queue.Queue(maxsize=self.prefetch)
            self._read_thread = threading.Thread(target=self._read_ahead, args=(proc, self._queue),
                                                 name="ffmpeg-frames", daemon=True)
            self._read_thread.start()
        return self

    def _read_frame(self, stream) -> np.ndarray | None:
        """The next whole frame from ffmpeg's pipe, read straight into a new array; None at the end."""
        s = self.settings
        frame = np.empty((s.height, s.width, 3), np.uint8)
        view = memoryview(frame).cast("B")
        got, n = 0, len(view)
        while got < n:
            k = stream.readinto(view[got:])
            if not k:
                return None
            got += k
        return frame

    def _read_ahead(self, proc: subprocess.Popen, q: queue.Queue) -> None:
        """Reader thread: frames into `q`, then ("end", complete) (or ("error", exc))."""
        last: tuple = ("end", False)
        try:
            while not self._stop.is_set():
                frame = self._read_frame(proc.stdout)
                if frame is None:
                    last = ("end", not self._stop.is_set())
                    break
                if not self._put(q, frame):
                    return
        except BaseException as exc:  # handed to the consumer
            last = ("error", exc)
        self._put(q, last)

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[np.ndarray]:
        self.start()
        proc, q = self._proc, self._queue
        complete = False
        try:
            while True:
                if q is None:
                    frame = self._read_frame(proc.stdout)
                    if frame is None:
                        complete = True
                        break
                else:
                    frame = q.get()
                    if isinstance(frame, tuple):
                        if frame[0] == "error":
                            raise frame[1]
                        complete = frame[1]
                        break
                self._frames += 1
                yield frame
        finally:
            self._finish(complete)

    def _finish(self, complete: bool) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        self._stop.set()
        if not complete and proc.poll() is None:
            proc.kill()
        if self._read_thread is not None:
            self._read_thread.join(timeout=30)
            self._read_thread, self._queue = None, None
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        if self._log_thread is not None:
            self._log_thread.join(timeout=10)
        for f in (proc.stdout, proc.stderr):
            try:
                f.close()
            except Exception:  # pragma: no cover
                pass
        times = sorted(self._times)
        interval = 1.0 / self.settings.fps if self.settings.fps else 1.0 / 30
        if len(times) > 2:
            interval = max(float(np.median(np.diff(times))), 1e-3)
        n = min(len(self._times), len(self._durations))
        lost = [[round(a + interval, 3), round(b, 3)]
                for a, b in find_gaps(self._times[:n], interval, self._durations[:n])]
        if complete and times and times[0] > gap_limit(interval):
            lost.insert(0, [0.0, round(times[0], 3)])
        end = (times[-1] + interval) if times else 0.0
        self.report = DecodeReport(frames=self._frames, decoded=len(times), first=times[0] if times else None,
                                   last=times[-1] if times else None, lost=lost,
                                   damaged=damaged_spans(self._events, end), errors=self._errors,
                                   messages=list(self._messages), complete=complete, returncode=proc.returncode)

    def close(self) -> None:
        self._finish(False)


def read_frames(path: str | os.PathLike, settings: DecodeSettings) -> Iterator[np.ndarray]:
    return iter(FrameReader(path, settings))


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
    from .atomic import atomic_path

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
