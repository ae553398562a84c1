"""Benchmark: ingest + tracking speed (frames per second) and peak memory.

    avatar-studio bench track VIDEO [--max-frames N] [--repeat K]

`--repeat K` concatenates the clip K times (streamed, nothing held) to show that memory does
not grow with the clip's length.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_mb() -> tuple[float, float]:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return self_kb / 1024.0, child_kb / 1024.0


def run_once(video: Path, max_frames: int | None) -> dict:
    from ..pipeline import run_stage
    from ..project import Project

    with tempfile.TemporaryDirectory() as tmp:
        proj = Project.create(Path(tmp) / "bench", video)
        t0 = time.perf_counter()
        run_stage(proj, "ingest", {"max_frames": max_frames} if max_frames else None)
        t1 = time.perf_counter()
        res = run_stage(proj, "track")
        t2 = time.perf_counter()
    n = res["summary"]["frames"]
    return {"frames": n, "ingest_s": t1 - t0, "track_s": t2 - t1, "fps": n / (t2 - t0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="avatar-studio bench track")
    ap.add_argument("video")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1, help="loop the clip this many times (memory flatness check)")
    args = ap.parse_args(argv)
    import torch  # noqa: F401  (imported as the app does, so memory figures include it)

    video = Path(args.video)
    tmpdir = None
    if args.repeat > 1:
        from ..video import ffmpeg_exe

        tmpdir = tempfile.TemporaryDirectory()
        looped = Path(tmpdir.name) / f"looped{video.suffix}"
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop", str(args.repeat - 1), "-i",
                        str(video), "-c", "copy", str(looped)], check=True)
        video = looped
    r = run_once(video, args.max_frames)
    peak_self, peak_child = _peak_mb()
    print(f"video              {args.video}" + (f" (looped x{args.repeat})" if args.repeat > 1 else ""))
    print(f"frames             {r['frames']}")
    print(f"ingest             {r['ingest_s']:.2f} s")
    print(f"decode+track+crop  {r['track_s']:.2f} s")
    print(f"throughput         {r['fps']:.1f} frames/s (ingest + tracking)")
    print(f"peak memory        {peak_self:.0f} MB (this process), {peak_child:.0f} MB (ffmpeg)")
    if tmpdir:
        tmpdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
