"""Decoding a clip into frames.

- `DecodeSettings` / `plan_decode`: trim, constant frame rate, output size, stream and colour
  conversion; saved by `ingest` so every later reader sees the same frames.
- `FrameReader` streams upright RGB frames one at a time (memory does not grow with length), in the
  colours a player shows (the clip's own matrix and range, HDR tone-mapped: `studio.video.colour`),
  with optional trim, a constant target frame rate (variable-frame-rate phone clips are resampled to
  it), a downscale cap for very large videos, deinterlacing (camcorder footage) and a turn for a face
  lying on its side.
  It also watches the decoder: frames that could not be decoded (gaps in the decoded
  timestamps, which the constant-rate filter would otherwise fill with copies of the last good
  frame) and decoder errors end up in `FrameReader.report` (a `DecodeReport`).
  With `prefetch` (`prefetch_frames` sizes it), a thread reads frames ahead into a bounded queue,
  so ffmpeg keeps decoding while the caller works on earlier frames; `start()` begins decoding
  before the first frame is asked for (e.g. while the tracking models load).
- `sample_frames` jumps to a few frames spread over a clip (which way up the face is, at ingest).
- A trim of a file without a keyframe index (.mts, .ts) is decoded from the beginning instead of
  jumping between keyframes.
"""
from __future__ import annotations

import math
import os
import queue
import re
import subprocess
import threading
from dataclasses import dataclass, asdict, field, replace
from typing import Iterator

import numpy as np

from ..errors import InputError
from .colour import full_range, to_rgb_filter
from .damage import _is_damage, damaged_spans, find_gaps, gap_limit, merge_spans
from .header import NO_INDEX, VideoInfo, ffmpeg_exe


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
    colour: str = ""
    """How the clip's colours become RGB (`studio.video.colour.colour_mode`: "bt709", "bt601", "hlg", "pq",
    ...); "" for projects made before it was chosen per clip (ffmpeg's default conversion, which they were
    trained on)."""
    full_range: bool = False
    """The clip's YCbCr uses the full 0–255 range (else TV 16–235)."""
    deinterlace: bool = False
    """The clip is interlaced (a camcorder's or a TV recording's 1080i / 576i): each frame's two fields are
    combined by ffmpeg's `bwdif` into one picture at the frame's time, so moving edges do not show combs."""
    turn: int = 0
    """Degrees the picture is turned clockwise after the file's own rotation tag (0, 90, 180, 270): a clip whose
    face lies on its side or upside down (its tag missing or wrong) is turned upright (`studio.tracking.upright`).
    `width` and `height` are the turned frames'."""

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
                max_frames: int | None = None, max_side: int = 1280, turn: int = 0) -> DecodeSettings:
    """Choose output size (upright, square pixels, long side ≤ max_side, even), rate and colour conversion;
    `turn`: degrees clockwise the picture is turned beyond the file's rotation tag."""
    if turn not in TURNS:
        raise InputError(f"the picture can be turned by 0, 90, 180 or 270 degrees, not {turn}")
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
    if turn in (90, 270):
        ow, oh = oh, ow
    return DecodeSettings(start=float(start), end=None if end is None else float(end),
                          fps=float(fps or round(info.fps, 3)), max_frames=max_frames, width=ow, height=oh,
                          stream=info.stream, seek=not set(info.container.split(",")) & set(NO_INDEX),
                          colour=info.colour, full_range=full_range(info.pix_fmt, info.color_range), turn=turn,
                          deinterlace=info.interlaced)


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


TURNS = (0, 90, 180, 270)
_TURN = {0: "", 90: ",transpose=clock", 180: ",hflip,vflip", 270: ",transpose=cclock"}


def sample_frames(path: str | os.PathLike, settings: DecodeSettings, n: int = 8,
                  duration: float | None = None) -> list[np.ndarray]:
    """Up to `n` frames spread over the trimmed clip, each decoded by a jump to its time (a few frames' work,
    however long the clip); a file without a keyframe index is read from its start, one frame a second, for
    at most `n` seconds. `duration`: the clip's length where the caller knows it better than its header."""
    span = settings.duration
    if span is None:
        if duration is None:
            from .header import probe

            duration = probe(path).duration
        span = max(0.0, duration - settings.start)
    if settings.max_frames:
        span = min(span, settings.max_frames / settings.fps)
    if not settings.seek:
        return list(FrameReader(path, replace(settings, fps=1.0, max_frames=n)))
    frames = []
    for k in range(n):
        one = replace(settings, start=settings.start + span * (k + 0.5) / n, end=None, max_frames=1)
        frames += list(FrameReader(path, one))[:1]
    return frames


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
        # the downscale before a turn: the size before it is the turned size's sides swapped
        w, h = (s.height, s.width) if s.turn in (90, 270) else (s.width, s.height)
        fields = "bwdif=mode=send_frame:parity=auto:deint=all," if s.deinterlace else ""
        picture = to_rgb_filter(s.colour, w, h, s.full_range) + _TURN[s.turn]
        vf = f"{head}showinfo=checksum=0,{fields}fps={s.fps},{picture}"
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
