"""Clips out through the ffmpeg binary that imageio-ffmpeg ships: `ClipWriter` streams RGB frames to an MP4
(H.264, BT.709 and tagged so, with the audio track), a MOV (ProRes 4444, with transparency where asked), a GIF
or a folder of PNG frames (RGBA where transparent) under a temporary name beside the target and renames the
result into place only when it is complete; `check_output` refuses, before anything is rendered, an output that
cannot be written or would replace what an export did not make.
`studio.export` renders the frames these write."""
from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError, StudioError
from .colour import encode_filter
from .header import ffmpeg_exe

CLIP_FORMATS = ("mp4", "gif", "png", "mov")
"""mp4: H.264; gif; png: a folder of frames; mov: ProRes 4444 (what video editors import with transparency)."""
ALPHA_FORMATS = ("png", "mov")
"""The formats that keep a transparent background (`ClipWriter(alpha=True)`)."""


def _remove_dead_partials(path: Path) -> None:
    """Remove what a killed export to `path` left behind (.<stem>.<pid>-<token>.partial<suffix>
    whose process is gone); partials of a live export are left alone."""
    for old in path.parent.glob(f".{glob.escape(path.stem)}.*.partial{glob.escape(path.suffix)}"):
        pid = old.name[len(path.stem) + 2:].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except OSError:
            continue
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


class ClipWriter:
    """Streams RGB frames to ffmpeg (MP4/GIF) or PNG files under a temporary name.

    `finish()` renames the result into place; `abort()` removes every trace of it.
    """

    def __init__(self, path: Path, fmt: str, width: int, height: int, fps: float, crf: int = 18,
                 audio: Path | None = None, audio_offset: float = 0.0, duration: float | None = None,
                 alpha: bool = False):
        if alpha and fmt not in ALPHA_FORMATS:
            raise InputError(f"{fmt.upper()} cannot keep a transparent background",
                             "use PNG frames or a MOV (ProRes 4444)")
        self.path, self.fmt, self.fps, self.alpha = path, fmt, fps, alpha
        self.width, self.height = width, height
        self.count = 0
        token = hashlib.sha1(f"{path}{time.time()}{os.getpid()}".encode()).hexdigest()[:8]
        self.tmp = path.with_name(f".{path.stem}.{os.getpid()}-{token}.partial{path.suffix}")
        self._proc = None
        try:  # a file in the way, a read-only or full disk: one plain sentence
            path.parent.mkdir(parents=True, exist_ok=True)
            _remove_dead_partials(path)
            if fmt == "png":
                self.tmp.mkdir()
        except OSError as exc:
            from ..atomic import _explain

            raise _explain(exc, path) from exc
        if fmt == "png":
            return
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt",
               "rgba" if alpha else "rgb24", "-s", f"{width}x{height}", "-r", f"{fps}", "-i", "pipe:0"]
        if fmt in ("mp4", "mov"):
            if audio is not None:
                cmd += ["-ss", f"{audio_offset:.3f}", "-i", str(audio)]
            cmd += ["-map", "0:v:0"]
            if audio is not None:   # a MOV for an editor: uncompressed sound, as its picture is barely compressed
                cmd += ["-map", "1:a:0"] + (["-c:a", "aac", "-b:a", "160k"] if fmt == "mp4" else ["-c:a", "pcm_s16le"])
            if duration is not None:
                cmd += ["-t", f"{duration:.3f}"]
            if fmt == "mp4":
                cmd += ["-vf", encode_filter(), "-c:v", "libx264", "-preset", "medium", "-crf", str(crf),
                        "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(self.tmp)]
            else:
                fmt_444 = "yuva444p10le" if alpha else "yuv444p10le"
                cmd += ["-vf", encode_filter(fmt_444), "-c:v", "prores_ks", "-profile:v", "4444",
                        "-pix_fmt", fmt_444, "-vendor", "apl0", "-f", "mov", str(self.tmp)]
        elif fmt == "gif":
            cmd += ["-filter_complex", "[0:v]split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer",
                    "-loop", "0", "-f", "gif", str(self.tmp)]
        else:
            raise InputError(f"unknown format '{fmt}'", f"use one of {', '.join(CLIP_FORMATS)}")
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        """An (H, W, 3) RGB frame, or (H, W, 4) RGBA where the writer keeps `alpha`."""
        assert frame.shape == (self.height, self.width, 4 if self.alpha else 3), frame.shape
        if self.fmt == "png":
            ok = cv2.imwrite(str(self.tmp / f"{self.count:06d}.png"),
                             cv2.cvtColor(frame, cv2.COLOR_RGBA2BGRA if self.alpha else cv2.COLOR_RGB2BGR))
            if not ok:
                raise StudioError(f"could not write frame {self.count} of {self.path.name}", "check the disk")
        else:
            try:
                self._proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
            except BrokenPipeError:
                err = self._proc.stderr.read().decode(errors="replace").strip().splitlines()
                if any("No space left" in line for line in err):
                    self.abort()
                    raise StudioError(f"the disk is full while writing {self.path.name}",
                                      "free some space and export again") from None
                raise StudioError(f"the encoder stopped while writing {self.path.name}: "
                                  f"{err[-1] if err else 'unknown reason'}", "check the disk space and output path")
        self.count += 1

    def finish(self, overwrite: bool = True) -> Path:
        if self._proc is not None:
            self._proc.stdin.close()
            err = self._proc.stderr.read().decode(errors="replace")
            if self._proc.wait() != 0:
                self.abort()
                last = err.strip().splitlines()[-1] if err.strip() else "unknown reason"
                if "No space left" in err:
                    raise StudioError(f"the disk is full while writing {self.path.name}",
                                      "free some space and export again")
                raise StudioError(f"the encoder failed for {self.path.name}: {last}", "try another format")
        if self.path.exists():
            if not overwrite:
                self.abort()
                raise InputError(f"{self.path} already exists", "choose another name or allow overwriting")
            if self.path.is_dir() and self.fmt == "png":
                if foreign_entries(self.path):  # never replace a folder of anything but earlier frames
                    self.abort()
                    raise folder_in_use(self.path)
                old = self.path.with_name(f".{self.path.name}.old")
                os.replace(self.path, old)
                os.replace(self.tmp, self.path)
                shutil.rmtree(old, ignore_errors=True)
                return self.path
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:  # full disk, no permission: one plain sentence, no partial file left
            from ..atomic import _explain

            self.abort()
            raise _explain(exc, self.path) from exc
        return self.path

    def abort(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            try:  # best effort: on a read-only disk there is nothing to remove, and the real error follows
                self.tmp.unlink(missing_ok=True)
            except OSError:
                pass


_FRAME_FILE = re.compile(r"\d{6}\.png")


def foreign_entries(folder: Path) -> list[str]:
    """Names in `folder` that a PNG export did not write (its frames are 000000.png, 000001.png, ...)."""
    return sorted(p.name for p in folder.iterdir() if not _FRAME_FILE.fullmatch(p.name))


def folder_in_use(folder: Path) -> InputError:
    return InputError(f"the folder {folder} already holds other files, which PNG frames would replace",
                      f"give the frames a folder of their own, e.g. {folder / 'frames'}")


def check_output(out: Path, fmt: str, overwrite: bool = True) -> None:
    """Refuse, before anything is rendered, an output that cannot be written or would replace what an
    export did not make: a folder of other files (PNG frames replace the whole folder), a folder where a
    clip should go, a file where frames should go, a parent that is a file, a folder that cannot be
    written. Nothing is created here."""
    if out.exists():
        if not overwrite:
            raise InputError(f"{out} already exists", "choose another name")
        if out.is_dir() and fmt != "png":
            raise InputError(f"{out} is a folder", f"give the clip a file name, e.g. {out / ('clip.' + fmt)}")
        if out.is_dir() and foreign_entries(out):
            raise folder_in_use(out)
        if not out.is_dir() and fmt == "png":
            raise InputError(f"{out} is a file, and PNG frames go into a folder",
                             "give a new folder name (no extension) for the frames")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {out}: {folder} is a file, not a folder", "choose another folder for the clip")
    try:  # the one sure test that this user may write there (root on a read-only disk, /proc, ...)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".avatar-studio-", suffix=".check")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        from ..atomic import _explain

        raise _explain(exc, out) from exc


def even(x: int) -> int:
    """`x` rounded up to an even number (H.264 in yuv420p wants even sides)."""
    return x + (x % 2)


def pad_even(img: np.ndarray) -> np.ndarray:
    """`img` with a replicated row and / or column added where a side is odd."""
    h, w = img.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return img
    return cv2.copyMakeBorder(img, 0, even(h) - h, 0, even(w) - w, cv2.BORDER_REPLICATE)
