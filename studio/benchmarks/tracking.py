"""Benchmark: ingest + tracking speed (frames per second) and peak memory.

    avatar-studio bench track VIDEO [--max-frames N] [--repeat K] [--landscape-1080p] [--whole-frame]

`--repeat K` concatenates the clip K times (streamed, nothing held) to show that memory does
not grow with the clip's length.

`--landscape-1080p` first makes a phone-like 1920x1080 landscape clip from VIDEO with the
bundled ffmpeg, in a temporary folder: VIDEO upscaled to 640x640 and placed right of centre
on a moving test pattern (so the face is small in the frame and the decoder has a full
picture to decode), H.264 High profile at 12 Mbit/s like a phone, audio kept. Ingest then
downscales it to 1280x720 as it does any 1080p clip. Without VIDEO it uses the shared
subject_turns_d3.mp4.

The made clip is kept in the system's temporary folder (avatar-studio-bench/) and reused
while VIDEO is unchanged: encoding 1080p takes a minute on a 2-core machine.

`--whole-frame` tracks with the face mesh on the whole frame (`follow=False`) for comparison.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED_CLIP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "videos" / "subject_turns_d3.mp4"


def _peak_mb() -> tuple[float, float]:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return self_kb / 1024.0, child_kb / 1024.0


def _cpu() -> tuple[float, float]:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime


def make_landscape_1080p(src: Path, dst: Path, face_side: int = 640, at: tuple[int, int] = (1100, 220)) -> Path:
    """Write a 1920x1080 30 fps landscape clip: `src` scaled to face_side x face_side at `at` on a
    moving test pattern; H.264 High at 12 Mbit/s; the audio of `src` copied when present."""
    from ..video import ffmpeg_exe, probe

    info = probe(src)
    graph = (f"[0:v]scale={face_side}:{face_side}:flags=bicubic,setsar=1[f];"
             f"[1:v][f]overlay=x={at[0]}:y={at[1]}:shortest=1,format=yuv420p[v]")
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(src), "-f", "lavfi",
           "-i", "testsrc2=size=1920x1080:rate=30", "-filter_complex", graph, "-map", "[v]"]
    if info.has_audio:
        cmd += ["-map", "0:a:0", "-c:a", "copy"]
    cmd += ["-c:v", "libx264", "-profile:v", "high", "-preset", "veryfast", "-b:v", "12M", "-maxrate", "16M",
            "-bufsize", "16M", "-r", "30", str(dst)]
    subprocess.run(cmd, check=True)
    return dst


def landscape_clip(src: Path) -> tuple[Path, str]:
    """The 1080p landscape clip made from `src`, from the cache when it is there. → (path, how)."""
    st = src.stat()
    key = hashlib.sha1(f"{src.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:10]
    folder = Path(tempfile.gettempdir()) / "avatar-studio-bench"
    dst = folder / f"landscape_1080p-{key}.mp4"
    if dst.exists():
        return dst, "made earlier, reused"
    folder.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.stem + f".{os.getpid()}.part.mp4")
    t = time.perf_counter()
    try:
        make_landscape_1080p(src, part)
        os.replace(part, dst)
    finally:
        part.unlink(missing_ok=True)
    return dst, f"encoded in {time.perf_counter() - t:.1f} s, not counted"


def run_once(video: Path, max_frames: int | None, track_overrides: dict | None = None) -> dict:
    from ..pipeline import run_stage
    from ..project import Project

    with tempfile.TemporaryDirectory() as tmp:
        proj = Project.create(Path(tmp) / "bench", video)
        c0 = _cpu()
        t0 = time.perf_counter()
        run_stage(proj, "ingest", {"max_frames": max_frames} if max_frames else None)
        t1 = time.perf_counter()
        res = run_stage(proj, "track", track_overrides)
        t2 = time.perf_counter()
        c1 = _cpu()
    n = res["summary"]["frames"]
    return {"frames": n, "tracked": res["summary"]["tracked"], "ingest_s": t1 - t0, "track_s": t2 - t1,
            "fps": n / (t2 - t0), "cpu_ms": 1000.0 * (c1[0] - c0[0]) / max(n, 1),
            "ffmpeg_cpu_ms": 1000.0 * (c1[1] - c0[1]) / max(n, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="avatar-studio bench track")
    ap.add_argument("video", nargs="?", help="the clip (with --landscape-1080p: the clip to upscale; default: the "
                                             "shared subject_turns_d3.mp4)")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1, help="loop the clip this many times (memory flatness check)")
    ap.add_argument("--landscape-1080p", action="store_true",
                    help="make a 1920x1080 phone-like clip from VIDEO (face small in the frame) and track that")
    ap.add_argument("--whole-frame", action="store_true", help="run the face mesh on the whole frame (follow=False)")
    args = ap.parse_args(argv)
    import torch  # noqa: F401  (imported as the app does, so memory figures include it)

    from ..errors import InputError

    if args.video is None:
        if not args.landscape_1080p:
            ap.error("give a VIDEO (or --landscape-1080p to make one from the shared clip)")
        if not SHARED_CLIP.exists():
            raise InputError(f"the shared clip {SHARED_CLIP} is not here", "give a VIDEO to upscale")
    video = Path(args.video) if args.video else SHARED_CLIP
    label = str(video)
    tmpdir = tempfile.TemporaryDirectory()
    try:
        if args.landscape_1080p:
            video, how = landscape_clip(video)
            label += f" made into 1920x1080 landscape ({os.path.getsize(video) / 1e6:.1f} MB, {how})"
        if args.repeat > 1:
            from ..video import ffmpeg_exe

            looped = Path(tmpdir.name) / f"looped{video.suffix}"
            subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop", str(args.repeat - 1), "-i",
                            str(video), "-c", "copy", str(looped)], check=True)
            video = looped
            label += f" (looped x{args.repeat})"
        r = run_once(video, args.max_frames, {"follow": False} if args.whole_frame else None)
    finally:
        tmpdir.cleanup()
    peak_self, peak_child = _peak_mb()
    print(f"video              {label}")
    print(f"mesh               {'whole frame' if args.whole_frame else 'face region, followed (default)'}")
    print(f"frames             {r['frames']} ({r['tracked']} with a usable face)")
    print(f"ingest             {r['ingest_s']:.2f} s")
    print(f"decode+track+crop  {r['track_s']:.2f} s")
    print(f"throughput         {r['fps']:.1f} frames/s (ingest + tracking)")
    print(f"cpu per frame      {r['cpu_ms']:.1f} ms (this process), {r['ffmpeg_cpu_ms']:.1f} ms (ffmpeg)")
    print(f"peak memory        {peak_self:.0f} MB (this process), {peak_child:.0f} MB (ffmpeg)")
    try:
        load = os.getloadavg()[0]
        print(f"load average       {load:.2f} (1 min) on {os.cpu_count()} cores")
    except OSError:  # pragma: no cover
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
