"""Benchmark: learned vs parameter transfer of a trained actor onto the avatar (issue 15).

    avatar-studio bench driving PROJECT --actor VIDEO [--engine nerf|pvp] [--clip side_by_side.mp4]
    python -m studio.benchmarks.driving PROJECT --actor VIDEO [--no-detail] [--json out.json]

For each engine the actor's learned transfer can drive (or `--engine`), both transfers are
exported (PNG frames in a temporary folder: lossless), the output frames are re-tracked with the
avatar's own tracker, and printed:

- **identity**: ArcFace cosine similarity of each output frame to the avatar's training frames
  and to the actor's frames (each frame's mean similarity to that set); the share of frames
  closer to the avatar and both means (needs the ArcFace file);
- **expression transfer**: Pearson r between each named expression of the re-tracked output and
  the actor's own tracked value on the same frame, and the same for the mouth opening (inner-lip
  gap / face height, from landmarks 13, 14, 10, 152) and head yaw — learned and parameter
  transfer side by side, per expression and the mean over the twelve;
- **controls before rendering**: Pearson r between each expression control the transfer hands the
  renderer and the actor's tracked value (parameter transfer: 1 by construction, as it is the
  actor's value rescaled; learned: how much of the actor's expression the γ → controls mapping
  recovers; the NeRF engine renders the learned θ instead, so there it describes the controls
  mapping only), so a loss in the mapping is told apart from a loss in the rendering;
- **γ separability**: held-out accuracy of a linear classifier (logistic regression, 5-fold)
  telling the avatar's codes from the actor's (0.5 = fully shared), and **γ pose share**: the share
  of each person's code variance a linear function of head yaw and pitch explains (a shared
  expression code should be low);
- **driving speed**: output frames per second of the whole export (motion + render + PNG
  writing) and of the render alone.

Renders get detail from the video (`studio.detail`) as an export does by default; `--no-detail`
scores the engine's render alone. `--clip` also writes actor | parameter transfer | learned
transfer side by side (the first engine), with the actor's audio. The project is only read (the
actor must be trained already).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MOUTH = (13, 14)
"""Inner upper / lower lip landmarks of the face mesh."""
FACE_HEIGHT = (10, 152)
"""Forehead top / chin landmarks."""


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(N, 478, ≥2) landmarks → (N,) inner-lip gap / face height."""
    lm = np.asarray(landmarks)[..., :2]
    gap = np.linalg.norm(lm[:, MOUTH[0]] - lm[:, MOUTH[1]], axis=-1)
    height = np.linalg.norm(lm[:, FACE_HEIGHT[0]] - lm[:, FACE_HEIGHT[1]], axis=-1)
    return gap / np.maximum(height, 1e-6)


def _export_frames(project, cfg, out: Path, avatar) -> tuple[np.ndarray, dict, float]:
    import cv2

    from ..export import export
    from ..progress import run_to_end

    t0 = time.perf_counter()
    res = run_to_end(export(project, cfg, out, avatar=avatar))
    wall = time.perf_counter() - t0
    frames = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(out.glob("*.png"))])
    return frames, res, wall


def transfer_figures(frames: np.ndarray, rows: np.ndarray, ava_trk, act_trk, ref_ava, ref_act) -> dict:
    """Re-track `frames` (output frame i shows actor row rows[i]) and score them."""
    from ..driving.measure import pearson
    from ..metrics import embeddings
    from ..tracking.tracker import track_images

    tracked = track_images(list(frames), ava_trk)
    found = [i for i, t in enumerate(tracked) if t is not None]
    out: dict = {"frames": int(len(frames)), "found": round(len(found) / max(1, len(frames)), 4)}
    src = rows[found]
    ok = act_trk.valid[src]
    idx = [f for f, good in zip(found, ok) if good]
    src = src[ok]
    per = {}
    if len(idx) >= 3:
        meas = np.stack([tracked[i]["expr"] for i in idx])
        for k, name in enumerate(act_trk.expression_names):
            per[name] = pearson(meas[:, k], act_trk.expr[src, k])
        out["mouth_opening_r"] = pearson(mouth_opening(np.stack([tracked[i]["landmarks"] for i in idx])),
                                         mouth_opening(act_trk.landmarks[src]))
        out["yaw_r"] = pearson(np.array([tracked[i]["pose"][0] for i in idx]), act_trk.pose[src, 0])
    out["expression_r"] = per
    vals = [v for v in per.values() if v is not None]
    out["mean_expression_r"] = float(np.mean(vals)) if vals else None
    if ref_ava is not None and ref_act is not None:
        e = embeddings(frames)
        s_ava, s_act = e @ ref_ava, e @ ref_act
        out["identity"] = {"closer_to_avatar": round(float(np.mean(s_ava > s_act)), 4),
                           "to_avatar_mean": round(float(s_ava.mean()), 4),
                           "to_actor_mean": round(float(s_act.mean()), 4)}
    return out


def control_figures(controls: np.ndarray, rows: np.ndarray, act_trk) -> dict:
    """Pearson r of each expression control (T, 2 + E) (frame i shows actor row rows[i]) against the
    actor's tracked value, over the rows with a face; and their mean."""
    from ..driving.measure import pearson

    ok = act_trk.valid[rows]
    c, src = np.asarray(controls)[ok], rows[ok]
    per = {name: pearson(c[:, 2 + k], act_trk.expr[src, k]) for k, name in enumerate(act_trk.expression_names)}
    vals = [v for v in per.values() if v is not None]
    return {"controls_r": per, "mean_controls_r": float(np.mean(vals)) if vals else None}


def _fmt(v) -> str:
    return "   -  " if v is None else f"{v:+.3f}"


def print_table(report: dict) -> None:
    print(f"\nactor {report['actor']} → avatar {report['project']}; detail from the video "
          f"{'on' if report.get('detail', True) else 'off'}")
    sep = report.get("gamma_separability")
    print(f"γ separability (held-out accuracy of a linear classifier, 0.5 = shared): "
          f"{'-' if sep is None else f'{sep:.3f}'}  [cycle: {report.get('cycle')}]")
    share = report.get("gamma_pose_share") or {}
    if share:
        print("γ pose share (variance explained by head yaw and pitch): " + ", ".join(
            f"{who} {'-' if v is None else f'{v:.3f}'}" for who, v in share.items()))
    for eng, r in report["engines"].items():
        par, lea = r["parameters"], r["learned"]
        print(f"\n{eng} engine: {par['frames']} frames; face found in re-tracked output: parameter "
              f"{par['found']:.0%}, learned {lea['found']:.0%}")
        print(f"  {'expression r':<20} {'parameter':>10} {'learned':>10}")
        for name in par["expression_r"]:
            print(f"  {name:<20} {_fmt(par['expression_r'][name]):>10} {_fmt(lea['expression_r'].get(name)):>10}")
        print(f"  {'mean (twelve)':<20} {_fmt(par['mean_expression_r']):>10} {_fmt(lea['mean_expression_r']):>10}")
        print(f"  {'mouth opening':<20} {_fmt(par.get('mouth_opening_r')):>10} {_fmt(lea.get('mouth_opening_r')):>10}")
        print(f"  {'head yaw':<20} {_fmt(par.get('yaw_r')):>10} {_fmt(lea.get('yaw_r')):>10}")
        if "mean_controls_r" in lea:
            print(f"  {'controls r (mean)':<20} {_fmt(par.get('mean_controls_r')):>10} "
                  f"{_fmt(lea['mean_controls_r']):>10}   (the controls handed to the renderer against the actor's "
                  f"tracked values)")
            print(f"  {'controls r (jaw)':<20} {_fmt(par['controls_r'].get('jaw_open')):>10} "
                  f"{_fmt(lea['controls_r'].get('jaw_open')):>10}")
        for label, x in (("parameter", par), ("learned", lea)):
            idn = x.get("identity")
            if idn:
                print(f"  identity ({label}): closer to the avatar on {idn['closer_to_avatar']:.1%} of frames; "
                      f"mean similarity to the avatar {idn['to_avatar_mean']:.3f}, to the actor "
                      f"{idn['to_actor_mean']:.3f}")
            else:
                print(f"  identity ({label}): not measured (no ArcFace file; `avatar-studio models add arcface FILE`)")
            print(f"  speed ({label}): {x['fps_export']:.1f} frames/s for the whole export, {x['fps_render']:.1f} "
                  f"frames/s rendering alone")


def write_clip(path: Path, actor_crops: np.ndarray, par: np.ndarray, lea: np.ndarray, fps: float, audio) -> None:
    import cv2

    from ..video.encode import ClipWriter, even

    s = par.shape[1]
    w, h = even(3 * s), even(s)
    writer = ClipWriter(path, "mp4", w, h, fps, 18, audio, 0.0, len(par) / fps)
    try:
        for a, p, q in zip(actor_crops, par, lea):
            frame = np.zeros((h, w, 3), np.uint8)
            frame[:s, :3 * s] = np.concatenate([cv2.resize(a, (s, s), interpolation=cv2.INTER_AREA), p, q], 1)
            writer.write(frame)
        writer.finish()
    except BaseException:
        writer.abort()
        raise


def run(project_path: str, actor: str, engine: str | None = None, clip: str | None = None,
        detail: bool = True) -> dict:
    from ..avatar import Avatar
    from ..driving.actors import TrainedDriver, actor_state, usable_engines
    from ..driving.data import face_images
    from ..driving.measure import pose_share, separability
    from ..errors import InputError, ProjectError
    from ..export import ExportConfig, build_motion, track_driver
    from ..metrics import embeddings
    from ..project import Project
    from ..tracking.data import TrackingData

    project = Project.open(project_path)
    dproj = track_driver(project, actor)
    state, note = actor_state(project, dproj)
    engines = [engine] if engine else usable_engines(project, dproj)
    if state != "trained" or not engines:
        raise ProjectError(f"the actor {Path(actor).name} has no trained learned transfer for this avatar"
                           + (f" ({note})" if note else ""),
                           f"train it first: avatar-studio drive {project.root} --actor {actor}")
    from ..avatar import trained_engines

    missing = [e for e in engines if e not in trained_engines(project)]
    if missing:
        raise InputError(f"the {missing[0]} engine is not trained in {project.name}")
    ava_trk, act_trk = TrackingData.from_project(project), TrackingData.from_project(dproj)
    train, _ = ava_trk.split()
    act_rows = np.flatnonzero(act_trk.valid)
    drv = TrainedDriver(dproj)
    g_ava = drv.codes(face_images(ava_trk, train, drv.size, drv.matte)).numpy()
    g_act = drv.codes(face_images(act_trk, act_rows, drv.size, drv.matte)).numpy()
    sep = separability(g_ava, g_act)
    shares = {"avatar": pose_share(g_ava, ava_trk.pose[train, :2]),
              "actor": pose_share(g_act, act_trk.pose[act_rows, :2])}
    pick = lambda rows: rows[np.linspace(0, len(rows) - 1, min(100, len(rows))).astype(int)]  # noqa: E731
    ea, eb = embeddings(ava_trk.crops(pick(train))), embeddings(act_trk.crops(pick(act_rows)))
    ref_ava = None if ea is None else ea.mean(0)
    ref_act = None if eb is None else eb.mean(0)
    report = {"project": project.name, "actor": Path(actor).name, "gamma_separability": sep,
              "gamma_pose_share": {k: None if v is None else round(v, 4) for k, v in shares.items()},
              "cycle": drv.meta.get("config", {}).get("cycle"), "detail": bool(detail),
              "training": drv.meta.get("figures"), "engines": {}}
    frames_for_clip = {}
    with tempfile.TemporaryDirectory(prefix="bench-driving-") as tmp:
        for eng in engines:
            avatar = Avatar.open(project, eng, detail=detail)
            report["engines"][eng] = {}
            for transfer in ("parameters", "learned"):
                cfg = ExportConfig(source="driver", driver=str(actor), transfer=transfer, engine=eng, format="png",
                                   detail=detail)
                print(f"{eng}: exporting with {transfer} transfer…", file=sys.stderr, flush=True)
                frames, res, wall = _export_frames(project, cfg, Path(tmp) / f"{eng}-{transfer}", avatar)
                if transfer == "learned" and not any("learned transfer" in n for n in res.get("notes", [])):
                    raise ProjectError(f"the {eng} export did not use the learned transfer: {res.get('notes')}")
                print(f"{eng}: re-tracking {len(frames)} {transfer} frames…", file=sys.stderr, flush=True)
                rows = np.arange(act_trk.n_frames)[:len(frames)]
                figs = transfer_figures(frames, rows, ava_trk, act_trk, ref_ava, ref_act)
                figs["fps_export"] = len(frames) / wall
                figs["fps_render"] = len(frames) / max(1e-9, res["render_seconds"])
                motion = build_motion(project, cfg, avatar)
                mrows = motion.rows if motion.rows is not None else np.arange(len(motion))
                figs.update(control_figures(motion.controls[:len(frames)], mrows[:len(frames)], act_trk))
                report["engines"][eng][transfer] = figs
                if clip and eng == engines[0]:
                    frames_for_clip[transfer] = frames
    if clip:
        crops = np.stack([act_trk.crop(int(r)) if act_trk.valid[r] else
                          np.zeros((act_trk.crop_size, act_trk.crop_size, 3), np.uint8)
                          for r in range(len(frames_for_clip["learned"]))])
        audio_rel = (dproj.record("ingest").get("outputs") or {}).get("audio")
        audio = dproj.path(audio_rel) if audio_rel and dproj.path(audio_rel).exists() else None
        write_clip(Path(clip), crops, frames_for_clip["parameters"], frames_for_clip["learned"], act_trk.fps, audio)
        report["clip"] = str(clip)
    return report


def main(argv: list[str] | None = None) -> int:
    from ..engines import ENGINES

    ap = argparse.ArgumentParser(prog="avatar-studio bench driving", description=__doc__.split("\n\n")[0])
    ap.add_argument("project")
    ap.add_argument("--actor", required=True, help="the trained actor's video")
    ap.add_argument("--engine", choices=tuple(ENGINES), help="one engine (default: every one the actor drives)")
    ap.add_argument("--clip", help="also write actor | parameter | learned to this MP4")
    ap.add_argument("--no-detail", action="store_true", help="render without detail from the video (the engine's "
                                                             "render alone)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    report = run(args.project, args.actor, args.engine, args.clip, detail=not args.no_detail)
    print_table(report)
    if args.clip:
        print(f"\nside-by-side clip (actor | parameter transfer | learned transfer): {report['clip']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
