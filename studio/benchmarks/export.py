"""Benchmark: export time and peak memory of a short and a long turntable of a trained project.

    avatar-studio bench export PROJECT [--durations 10 60] [--fps 25] [--engine nerf]
    python -m studio.benchmarks.export PROJECT

Each length runs in its own subprocess, so each peak (ru_maxrss) is that export's alone. The
clips are written to a temporary folder and deleted; the project is only read. Export streams
frames in small batches, so the long clip should need no more than 10 % more memory than the
short one (issue #8); the ratio is printed and the exit code is 1 when it is above 1.10.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..engines import ENGINES

LIMIT = 1.10


def _child(project: str, duration: float, fps: float, engine: str | None, out: str) -> int:
    import torch  # noqa: F401  (imported as the app does, so memory figures include it)

    from ..export import ExportConfig, export
    from ..progress import run_to_end
    from ..project import Project

    proj = Project.open(project)
    cfg = ExportConfig(source="turntable", duration=duration, fps=fps, engine=engine)
    t0 = time.perf_counter()
    res = run_to_end(export(proj, cfg, out))
    wall = time.perf_counter() - t0
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"duration": duration, "frames": res["frames"], "seconds": wall,
                      "render_seconds": res["render_seconds"], "size": res["size"],
                      "peak_mb": self_kb / 1024.0, "ffmpeg_peak_mb": child_kb / 1024.0,
                      "bytes": Path(res["path"]).stat().st_size}))
    return 0


def run_length(project: str, duration: float, fps: float, engine: str | None, tmp: Path) -> dict:
    cmd = [sys.executable, "-m", "studio.benchmarks.export", project, "--child", "--durations", f"{duration:g}",
           "--fps", f"{fps:g}", "--out", str(tmp / f"turntable_{duration:g}s.mp4")]
    if engine:
        cmd += ["--engine", engine]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"the {duration:g} s export failed: {tail[-1] if tail else proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="avatar-studio bench export")
    ap.add_argument("project", help="a project with a trained avatar")
    ap.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0], help="turntable lengths in seconds")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--engine", choices=tuple(ENGINES), default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.project, args.durations[0], args.fps, args.engine, args.out)

    from ..project import Project

    Project.open(args.project)  # a plain error for a wrong path before any subprocess
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        for d in args.durations:
            rows.append(run_length(args.project, d, args.fps, args.engine, Path(tmp)))
    print(f"project            {args.project}")
    print("peak MB: ru_maxrss of the exporting process; child MB: of its largest subprocess (the ffmpeg encoder)")
    print(f"{'turntable':>10} {'frames':>7} {'size':>8} {'wall s':>8} {'render s':>9} {'frames/s':>9} "
          f"{'peak MB':>8} {'child MB':>10} {'file kB':>8}")
    for r in rows:
        print(f"{r['duration']:>9g}s {r['frames']:>7d} {r['size'][0]:>4d}x{r['size'][1]:<3d} {r['seconds']:>8.1f} "
              f"{r['render_seconds']:>9.1f} {r['frames'] / r['render_seconds']:>9.1f} {r['peak_mb']:>8.0f} "
              f"{r['ffmpeg_peak_mb']:>10.0f} {r['bytes'] / 1024:>8.0f}")
    ok = True
    if len(rows) >= 2:
        short, long = rows[0], rows[-1]
        ratio = long["peak_mb"] / short["peak_mb"]
        ok = ratio <= LIMIT
        print(f"memory ratio       {ratio:.3f} ({long['duration']:g} s vs {short['duration']:g} s; limit {LIMIT:.2f}) "
              f"{'ok' if ok else 'TOO HIGH'}")
        print(f"time ratio         {long['seconds'] / short['seconds']:.2f} "
              f"(frames ratio {long['frames'] / short['frames']:.2f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
