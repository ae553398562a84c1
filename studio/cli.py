"""`avatar-studio` command line. Every command drives the same stage functions as the GUI.

Errors reach the user as one line (what is wrong and what to do) with a non-zero exit code;
unexpected bugs leave their traceback in the project's logs/ folder, not on the screen.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import time
from pathlib import Path

from . import __version__
from .errors import Cancelled, InputError, StudioError
from .progress import Progress
from .progress import clock_text as _fmt_s   # m:ss, shared with `speed_probe.RunPace`


# ----------------------------------------------------------------------------- progress display
class ProgressPrinter:
    """Prints stage progress as a bar with ETA on a terminal, or as sparse lines in a log."""

    def __init__(self, stream=None, min_interval: float = 0.2):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = min_interval if self.tty else 5.0
        self._last = 0.0
        self._key = None
        self._t0 = time.perf_counter()
        self._open_line = False

    def __call__(self, ev: Progress) -> None:
        key = (ev.stage, ev.part)
        now = time.perf_counter()
        if key != self._key:
            self._finish_line()
            self._key, self._t0 = key, now
            self._last = 0.0
        done = ev.total and ev.step >= ev.total
        # a new kind of message is shown at once; one that only counts on ("frame 10", "frame 20") waits its turn
        gist = re.sub(r"\d+", "#", ev.message) if ev.message else ""
        news = bool(ev.message) and not ev.losses and gist != getattr(self, "_last_msg", None)
        if now - self._last < self.min_interval and not done and not news:
            return
        if news:
            self._last_msg = gist
        self._last = now
        elapsed = ev.elapsed or (now - self._t0)
        name = f"{ev.stage}" + (f"/{ev.part}" if ev.part else "")
        if ev.total:
            frac = min(1.0, ev.step / ev.total)
            bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
            eta = ev.eta()
            eta_s = f" ETA {_fmt_s(eta)}" if eta is not None and not done else f" {_fmt_s(elapsed)}"
            rate = f" {ev.rate:.2f} it/s" if ev.rate > 0 and not done else ""
            head = f"{name:<18} [{bar}] {ev.step}/{ev.total}{eta_s}{rate}"
        else:
            head = f"{name:<18} {ev.step}"
        losses = "  " + " ".join(f"{k}={v:.4g}" for k, v in list(ev.losses.items())[:4]) if ev.losses else ""
        msg = f"  {ev.message}" if ev.message and not losses else ""
        line = (head + losses + msg)[:150]
        if self.tty:
            self.stream.write("\r" + line.ljust(110))
            self._open_line = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _finish_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

    def close(self) -> None:
        self._finish_line()


def _say(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


# ----------------------------------------------------------------------------- commands
def _ingest_overrides(args) -> dict:
    """--start/--end/--fps/--max-frames as the ingest stage's settings, checked here so that a bad value is
    named by its flag (not as the setting `max_frames`) before anything is made."""
    import math

    o = {}
    for k in ("start", "end", "fps", "max_frames"):
        v = getattr(args, k, None)
        if v is None:
            continue
        flag = "--" + k.replace("_", "-")
        if not math.isfinite(v):
            raise InputError(f"{flag} must be a number, not {v}", f"e.g. {flag} 2")
        if (k == "start" and v < 0) or (k in ("end", "fps") and v <= 0) or (k == "max_frames" and v < 1):
            raise InputError(f"{flag} must be " + ("0 or more" if k == "start" else "more than 0") + f", not {v:g}",
                             "seconds from the video's start" if k in ("start", "end") else f"e.g. {flag} 30")
        o[k] = v
    if "end" in o and o["end"] <= o.get("start", 0.0):
        raise InputError(f"--end ({o['end']:g} s) must come after --start ({o.get('start', 0.0):g} s)",
                         "give the trim's end in seconds from the video's start")
    return o


def _print_warnings(result: dict) -> None:
    for w in result.get("warnings", []) or []:
        _say(f"note: {w}")


def _shown(path) -> str:
    """A path as it must be typed in a suggested command: quoted when it holds spaces or other special characters."""
    import shlex

    return shlex.quote(str(path))


def _check_new_folder(root: Path) -> None:
    """Refuse, before anything is made, a project folder that is a file or lies under one."""
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is a file, not a folder", "give a new folder name for the project")
    for up in root.parents:
        if up.exists():
            if not up.is_dir():
                raise InputError(f"cannot make the project folder {root}: {up} is a file, not a folder",
                                 "give a new folder name for the project")
            break


def _undo_new(root: Path, existed: bool) -> None:
    """Remove what a `new` (or `run` of a video) that failed made: the project folder, or only its contents when
    the folder was there, empty, before (it was checked to be empty, so nothing of the user's is inside)."""
    if not existed:
        shutil.rmtree(root, ignore_errors=True)
        return
    for child in list(root.iterdir()) if root.is_dir() else []:
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() and not child.is_symlink() else child.unlink()


def _unfinished_new(root: Path, video: Path):
    """The project at `root` when an earlier `new` of the same video stopped before tracking was done."""
    from .project import Project, is_project

    if not is_project(root):
        return None
    try:
        project = Project.open(root)
    except StudioError:
        return None
    src = project.manifest.get("source") or {}
    if src.get("path") != str(video.resolve()) or project.record("track").get("status") == "done":
        return None
    return project


def cmd_new(args) -> int:
    from .lock import project_lock
    from .pipeline import run_stage
    from .project import Project
    from .video import probe

    video = Path(args.video)
    ingest = _ingest_overrides(args)  # bad flags and bad files fail here, before any folder is made
    probe(video)
    root = Path(args.project)
    _check_new_folder(root)
    existed = root.exists()
    project = _unfinished_new(root, video)  # an earlier `new` of this video was killed: finish it
    created = project is None  # made here (a new folder, or an empty one): a failure removes what was made
    if project is None:
        project = Project.create(root, video, preset=args.preset, device=args.device)
    else:
        _say(f"resuming the unfinished project {root}")
    printer = ProgressPrinter()
    try:
        with project_lock(project.root, "new project: ingest and track"):
            r1 = run_stage(project, "ingest", ingest, on_progress=printer)
            track_over = {"crop_size": args.crop_size} if args.crop_size else None
            r2 = run_stage(project, "track", track_over, on_progress=printer)
    except BaseException:
        printer.close()
        if created:
            _undo_new(root, existed)
        raise
    printer.close()
    _print_warnings(r1)
    _print_warnings(r2)
    s = r2["summary"]
    _say(f"created project {root}",
         f"tracked {s['tracked']}/{s['frames']} frames; yaw {s['yaw_range'][0]}..{s['yaw_range'][1]}°, "
         f"pitch {s['pitch_range'][0]}..{s['pitch_range'][1]}°",
         f"report: {root / r2['outputs']['contact_sheet']} and {root / r2['outputs']['curves']}",
         f"next: avatar-studio status {_shown(root)}")
    return 0


def cmd_status(args) -> int:
    from .session import Session
    from .stages import REGISTRY

    session = Session.open(args.project)
    project = session.project
    src = project.manifest.get("source") or {}
    _say(f"project   {project.root}", f"video     {src.get('path', '-')}",
         f"preset    {project.preset}    device {project.device}", "")
    _say(f"{'stage':<10} {'status':<12} {'time':>8}  summary")
    for name in REGISTRY:
        v = session.stage_view(name)
        short = ", ".join(f"{k}={val}" for k, val in list(v.summary.items())[:4])
        _say(f"{name:<10} {v.state:<12} {(_fmt_s(v.seconds) if v.seconds else ''):>8}  {short}"[:160])
        if v.note:
            _say(f"{'':<10} {'':<12} {'':>8}  {v.note}"[:240])
    _say("")
    _say(*session.engine_lines())
    return 0


def cmd_run_stage(args) -> int:
    from .compute import resolve_device
    from .config import parse_overrides
    from .distributed import (MirroredError, PeerLost, launch, launched_by_torchrun, leave,
                              process_group, stage_cli_args)
    from .pipeline import run_stage, spec
    from .project import Project

    project = Project.open(args.project)
    overrides = parse_overrides(args.set)
    opts = _launch_options(args)
    if opts.several:  # torchrun's launcher starts the processes; each runs this command without --nproc
        if spec(args.stage).parallel:
            return launch(stage_cli_args(project.root, args.stage, overrides, args.device, args.force), opts)
        _say(f"note: stage '{args.stage}' does not split its work across processes; it runs in this one")
    if launched_by_torchrun():  # one of several processes: rank 0 reports, the others only train
        code = 0
        with process_group(resolve_device(args.device or project.device)) as world:
            if not world.main:
                try:
                    run_stage(project, args.stage, overrides, force=args.force, device=args.device)
                except (MirroredError, PeerLost):
                    pass  # rank 0's failure (it reports it), or a process that died (the launcher names it)
                except StudioError as exc:
                    code = exc.exit_code
            else:
                code = _run_stage_here(project, args, overrides)
        leave(code)
    return _run_stage_here(project, args, overrides)


def _launch_options(args):
    """--nproc/--nnodes/... as `LaunchOptions`, checked (--nproc 0 would otherwise quietly mean 1)."""
    from .distributed import options_from_args

    if args.nproc < 1:
        raise InputError(f"--nproc must be at least 1, not {args.nproc}", "e.g. --nproc 2, or leave it out")
    opts = options_from_args(args)
    opts.check()
    return opts


def _run_stage_here(project, args, overrides: dict) -> int:
    from .pipeline import run_stage

    printer = ProgressPrinter()
    try:
        res = run_stage(project, args.stage, overrides, on_progress=printer, force=args.force, device=args.device)
    finally:
        printer.close()
    _print_warnings(res)
    summ = res.get("summary") or {}
    _say(f"{args.stage}: done" + ("; " + ", ".join(f"{k}={v}" for k, v in summ.items()) if summ else ""))
    return 0


def cmd_queue(args) -> int:
    from .batch import Queue, format_table, run_local

    # an option of another action would be silently ignored (`queue add clip.mp4 --ray ADDRESS` runs nothing on Ray)
    goes_with = {"engine": ("pvp", "add"), "preset": ("preview", "add"), "device": ("auto", "add"),
                 "out": (None, "add"), "set": (None, "add"), "no_eval": (False, "add"), "ray": (None, "run"),
                 "python": (None, "run"), "retry_failed": (False, "run"), "cpus_per_job": (1.0, "run --ray"),
                 "gpus_per_job": (0.0, "run --ray"), "tail": (0, "log")}
    for name, (default, action) in goes_with.items():
        if getattr(args, name) != default and (args.action != action.split()[0]
                                               or (action == "run --ray" and not args.ray)):
            raise InputError(f"--{name.replace('_', '-')} goes with queue {action}, not with queue {args.action}"
                             + ("" if args.action != "run" or action != "run --ray" else " alone"),
                             f"use it with `avatar-studio queue {action}`")
    if args.videos and args.action in ("list", "run"):
        raise InputError(f"queue {args.action} takes no videos or job ids",
                         "add videos with `avatar-studio queue add VIDEO…` first" if args.action == "run" else
                         "read one job's output with `avatar-studio queue log ID`")
    queue = Queue(args.queue)
    if args.action == "add":
        if not args.videos:
            raise InputError("queue add needs one or more videos", "e.g. avatar-studio queue add clips/*.mp4")
        for job in queue.add(args.videos, preset=args.preset, engine=args.engine, device=args.device, out=args.out,
                             settings=args.set or [], evaluate=not args.no_eval):
            _say(f"added job {job.id}: {Path(job.video).name} → {job.project} ({job.preset}, {job.engine})")
        _say("run them with: avatar-studio queue run" + (f" --queue {queue.folder}" if args.queue else ""))
        return 0
    if args.action == "list":
        if any(j.ray_job and j.status == "running" for j in queue.jobs()):
            from .batch.ray_jobs import refresh

            try:
                refresh(queue)
            except StudioError:  # Ray not installed here: show what the queue recorded
                pass
        _say(*format_table(queue, queue.jobs()))
        return 0
    if args.action == "log":
        if len(args.videos) != 1:
            raise InputError("queue log needs one job id", "e.g. avatar-studio queue log 3 (ids: queue list)")
        if args.tail < 0:
            raise InputError(f"--tail must be a number of lines, not {args.tail}", "e.g. --tail 20")
        job = queue.get(args.videos[0])
        text = None
        if job.status == "running" and job.ray_job:
            from .batch.ray_jobs import live_log

            text = live_log(job)
        path = queue.log_path(job.id)
        if text is None:
            if not path.exists():
                _say(f"job {job.id} has no output yet (it is {queue.shown_status(job)})")
                return 0
            text = path.read_text("utf-8", errors="replace")
        lines = text.splitlines()
        _say(*(lines[-args.tail:] if args.tail else lines))
        return 0
    # run
    if args.ray:
        from .batch.ray_jobs import run_ray

        counts = run_ray(queue, args.ray, cpus=args.cpus_per_job, gpus=args.gpus_per_job,
                         python=args.python or sys.executable, retry_failed=args.retry_failed, say=_say)
    else:
        counts = run_local(queue, retry_failed=args.retry_failed, say=_say, python=args.python or sys.executable)
    _say(f"queue: {counts['done']} done, {counts['failed']} failed" +
         (" — see `avatar-studio queue list` and `queue log ID`" if counts["failed"] else ""))
    return 1 if counts["failed"] else 0


def cmd_config(args) -> int:
    import dataclasses

    from .config import to_dict
    from .pipeline import spec, stage_config
    from .project import Project

    project = Project.open(args.project)
    s = spec(args.stage)
    if args.reset and args.set:
        raise InputError("--reset and --set together", "reset the stage first, then change what you want with --set")
    if args.reset or args.set:  # a change: not while another process works on the project (it would undo it)
        from .session import Session

        cfg = Session(project).change(f"config {args.stage}", lambda session: _change_config(session.project, args))
    else:
        cfg = stage_config(project, args.stage)
    for f in dataclasses.fields(s.config_cls):
        _say(f"{f.name:<22} = {to_dict(cfg)[f.name]!s:<10}  {f.metadata.get('help', '')}")
    return 0


def _change_config(project, args):
    """`config --reset` or `config --set` (under the project's lock); returns the stage's config."""
    from .config import parse_overrides, to_dict
    from .pipeline import set_stage_config, stage_config, stage_state

    if args.reset:
        from .session import Session

        if Session(project).reset_config(args.stage):
            _say(f"stage '{args.stage}' is back on the {project.preset} preset's settings"
                 + ("; it and the stages after it will rerun" if stage_state(project, args.stage) == "stale" else ""))
        else:
            _say(f"stage '{args.stage}' already follows the {project.preset} preset's settings")
        return stage_config(project, args.stage)
    overrides = parse_overrides(args.set)
    before = stage_config(project, args.stage)
    if to_dict(stage_config(project, args.stage, overrides)) == to_dict(before):
        _say(f"nothing changed: stage '{args.stage}' already has these settings")
        return before
    cfg = set_stage_config(project, args.stage, overrides)
    _say(f"saved; stage '{args.stage}' and the stages after it will rerun")
    return cfg


def cmd_run(args) -> int:
    from .engines import ENGINES
    from .project import Project, is_project
    from .session import Session
    from .speed_probe import RunPace
    from .video import probe

    if args.controls == "flame":  # say it before any tracking runs
        from .model_files import flame_paths
        from .stages.flame import missing_files_error

        if flame_paths() is None:
            raise missing_files_error()
    from .batch import parse_settings
    from .distributed import run_stages

    # every option is checked before a project is made or changed: a refused command leaves nothing behind
    overrides = parse_settings(args.set or [])
    opts = _launch_options(args)
    target = Path(args.target)
    created = existed = False
    if is_project(target):
        if args.project and Path(args.project).resolve() != target.resolve():
            raise InputError(f"{target} is already a project, so --project {args.project} has nothing to name",
                             f"leave --project out to finish {target}, or give a video to make a new project")
        project = Project.open(target)
    else:
        probe(target)
        root = Path(args.project or target.with_suffix("").name + "_avatar")
        if root.exists() and is_project(root):
            project = Project.open(root)
            _check_same_video(project, target)
        else:
            _check_new_folder(root)
            existed = root.exists()
            project = Project.create(root, target, preset=args.preset or "preview", device=args.device or "auto")
            created = True
    session = Session(project)
    engines = list(ENGINES) if args.engine == "both" else [args.engine]

    def settings(session):
        if args.preset and args.preset != session.project.preset:
            _say(_switch_preset(session, args.preset, args.engine))
        if args.controls:
            session.set_controls(args.engine, args.controls)

    session.change("run: settings", settings)  # not while another process works on the project
    stages = session.plan_engine(args.engine, overrides)
    from .engines import chain

    unused = [st for st in overrides if not any(st in chain(e) for e in engines)]
    if unused:
        _say(f"note: the settings for {', '.join(unused)} are not used: "
             f"{'that stage is' if len(unused) == 1 else 'those stages are'} not part of "
             f"{' or '.join(ENGINES[e].title for e in engines)}")
    # the estimate prices the preset's steps in one process: with --set or --nproc it would mislead
    estimate, est = ("", None) if overrides or opts.several else _time_estimate(project, engines, stages, args.device)
    if estimate:
        _say(estimate)
    printer = ProgressPrinter()
    pace = RunPace(est, stages) if est is not None else None

    def stage_done(name, result, seconds):
        try:
            line = pace.stage_done(name, result, seconds)
        except Exception:                  # a note on the time must never stop the training
            line = None
        if line:
            printer.close()
            _say(line)

    try:
        if opts.several:
            results = run_stages(session, stages, opts, overrides=overrides, device=args.device, on_progress=printer,
                                 say=_say)
        else:
            results = session.run(stages, overrides=overrides, on_progress=printer, device=args.device,
                                  on_stage_done=stage_done if pace is not None else None)
    except BaseException:
        printer.close()
        if created and project.record("track").get("status") != "done":
            _undo_new(project.root, existed)
        raise
    printer.close()
    for r in results.values():
        _print_warnings(r)
    _say(f"avatar ready in {project.root}")
    if not args.no_eval:
        from .evaluation import evaluate, format_table

        for e in engines:
            rep = evaluate(project, e, on_progress=printer)
            printer.close()
            _say(format_table(rep))
    return 0


def _check_same_video(project, video: Path) -> None:
    """`run VIDEO` finds a project at the folder it would make (`--project`, or <video name>_avatar): go on only
    when that project was made from this video (the same file, or one of the same name and size moved since)."""
    src = project.manifest.get("source") or {}
    made_from = Path(src.get("path") or "")
    if src.get("path") == str(video.resolve()) or (made_from.name == video.name and src.get("size") is not None
                                                   and src.get("size") == video.stat().st_size):
        return
    raise InputError(f"the project {project.root} was made from another video ({made_from.name or 'none'}), "
                     f"not {video.name}",
                     f"give the new avatar its own folder with --project, or finish that project with "
                     f"`avatar-studio run {_shown(project.root)}`")


def _switch_preset(session, preset: str, choice: str) -> str:
    """Move an existing project to `preset` (as the window's Preset box does) and say what that means for the
    stages of engine `choice` that have trained."""
    from .engines import ENGINES, chain

    before = session.project.preset
    mine = {s for e in (ENGINES if choice == "both" else [choice]) for s in chain(e)}
    kept = [n for n in session.set_preset(preset) if n in mine]
    line = f"preset {preset} (was {before}): the stages not trained yet use its settings"
    if kept:
        line += (f"; {', '.join(kept)} keep the settings they trained with (`avatar-studio config "
                 f"{_shown(session.project.root)} STAGE --reset` puts one on the {preset} preset, and it trains again)")
    return line


def _time_estimate(project, engines: list[str], stages: list[str], device: str | None):
    """("about N min on this machine" for the stages about to run, from a short speed probe of this
    machine (`studio.speed_probe`), the probe's `SpeedEstimate`); ("", None) when nothing trains."""
    from .engines import ENGINES
    from .speed_probe import probe

    if not any(s in stages for e in engines for s in ENGINES[e].stages):
        return "", None
    est = probe(project.preset, device or project.device)
    parts = [f"{ENGINES[e].title}: about {est.minutes_for([s for s in ENGINES[e].stages if s in stages])} min"
             for e in engines if any(s in stages for s in ENGINES[e].stages)]
    return (f"expected training time {est.where(this_machine=True)}, measured by a {est.probe_seconds:.0f}-second speed test: "
            + "; ".join(parts) + " (tracking comes on top)"), est


def cmd_eval(args) -> int:
    from .evaluation import evaluate, format_table
    from .project import Project

    project = Project.open(args.project)
    if args.size is not None and args.size < 1:  # 0 would silently mean "the engine's size"
        raise InputError(f"--size must be a number of pixels, not {args.size}", "e.g. --size 256, or leave it out")
    printer = ProgressPrinter()
    if args.edits:
        from .evaluation import evaluate_edits, format_edit_table

        try:
            rep = evaluate_edits(project, args.engine, on_progress=printer)
        finally:
            printer.close()
        _say(format_edit_table(rep))
        return 0
    try:
        rep = evaluate(project, args.engine, on_progress=printer, detail=args.detail,
                       flame_geometry=args.flame_geometry, scene=args.scene, out_size=args.size)
    finally:
        printer.close()
    _say(format_table(rep))
    return 0


def cmd_export(args) -> int:
    import dataclasses

    from .config import from_dict
    from .export import ExportConfig, export
    from .progress import run_to_end
    from .project import Project

    project = Project.open(args.project)
    over = {f.name: getattr(args, f.name) for f in dataclasses.fields(ExportConfig)
            if getattr(args, f.name, None) is not None}
    if getattr(args, "edit", None):
        over["edits"] = _edit_list(args.edit)
    cfg = from_dict(ExportConfig, over)
    printer = ProgressPrinter()
    try:
        res = run_to_end(export(project, cfg, args.out), printer)
    finally:
        printer.close()
    for n in res.get("notes", []):
        _say(f"note: {n}")
    _say(f"wrote {res['path']}: {res['frames']} frames at {res['fps']:g} fps ({res['seconds']:.1f} s), "
         f"{res['size'][0]}x{res['size'][1]}" + (", with audio" if res["audio"] else ""))
    return 0


def cmd_drive(args) -> int:
    from .config import parse_overrides
    from .driving.job import train_actor
    from .project import Project

    overrides = parse_overrides(args.set)
    if args.no_cycle:
        said = overrides.get("cycle")
        if said is not None and said.lower() not in ("0", "false", "no", "off"):  # one would silently win
            raise InputError(f"--no-cycle and --set cycle={said} together",
                             "keep one: --no-cycle trains without the cycle-consistency term, cycle=true with it")
        overrides["cycle"] = "false"
    project = Project.open(args.project)
    printer = ProgressPrinter()
    try:
        res = train_actor(project, args.actor, preset=args.preset, overrides=overrides, on_progress=printer,
                          device=args.device)
    finally:
        printer.close()
    _print_warnings(res)
    s = res.get("summary") or {}
    outs = res.get("outputs") or {}
    shown = ("steps", "cycle", "train_minutes", "gamma_separability", "map_controls_heldout_r",
             "map_nerf_heldout_cosine", "actor_controls_r")
    _say(f"actor trained in {res.get('actor')}: " + ", ".join(f"{k}={s[k]}" for k in shown if k in s))
    if "preview" in outs:
        _say(f"preview (actor above, the avatar's decoder fed with the actor's codes below): "
             f"{Path(res['actor']) / outs['preview']}")
    _say(f"next: avatar-studio export {project.root} -o driven.mp4 --source driver --driver {args.actor} "
         f"--side-by-side")
    return 0


def _edit_list(items: list[str]) -> str:
    """Repeated `--edit "NAME=STRENGTH"` items → `ExportConfig.edits` ("a=0.8; b=-1"); the syntax is checked
    here, the names when the export opens the project's saved edits."""
    from .edits.model import format_edit_list, parse_strengths

    out = []
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip():
            raise InputError(f"cannot read --edit {item!r}", "write it as NAME=STRENGTH, e.g. --edit \"blue hair=0.8\"")
        out.append(format_edit_list(parse_strengths([item])))
    return "; ".join(out)


def cmd_edit(args) -> int:
    from .edits import jobs
    from .project import Project

    project = Project.open(args.project)
    actions = [a for a in ("text", "global_prompt", "channel_effects", "directions", "list", "remove")
               if getattr(args, a) not in (None, False)]
    if len(actions) != 1:
        raise InputError("edit needs exactly one of --text, --global, --channel-effects, --directions, --list, "
                         "--remove", f"e.g. avatar-studio edit {args.project} --text \"blue hair\"")
    goes_with = {"neutral": ("text", "global_prompt"), "name": ("text", "global_prompt"), "steps": ("text",),
                 "keep_background": ("text",), "beta": ("global_prompt",)}
    for opt_name, allowed in goes_with.items():
        if getattr(args, opt_name) not in (None, False) and actions[0] not in allowed:
            flag = f"--{opt_name.replace('_', '-')}"
            with_ = " or ".join("--global" if a == "global_prompt" else f"--{a}" for a in allowed)
            example = "--global \"blue hair\"" if allowed == ("global_prompt",) else "--text \"blue hair\""
            value = {"neutral": " \"a face\"", "name": " \"my edit\"", "steps": " 100",
                     "beta": " 0.2"}.get(opt_name, "")
            raise InputError(f"{flag} goes with {with_}",
                             f"e.g. avatar-studio edit {_shown(args.project)} {example} {flag}{value}")
    if args.list:
        ok, line = jobs.clip_status()
        engines = [jobs.resolve_engine(project, args.engine)] if args.engine else jobs.edit_engines()
        from .engines import ENGINES

        any_edit = False
        for e in engines:
            edits = jobs.list_edits(project, e)
            if not edits:
                continue
            any_edit = True
            _say(f"{ENGINES[e].title}:")
            for ed in edits:
                _say(f"  {ed.name:<24} {jobs.describe_edit(project, ed)}"[:220])
            info = jobs.directions_info(project, e)
            if info:
                _say(f"  directions picture: {project.root / 'edits' / e / info.get('picture', 'directions.png')}")
        if not any_edit:
            _say("no saved edits yet", f"make one: avatar-studio edit {project.root} --text \"blue hair\"  or  "
                 f"avatar-studio edit {project.root} --directions")
        _say("", ("text edits: ready — " + line) if ok else line[:1].upper() + line[1:])
        return 0
    if args.remove is not None:
        edit = jobs.remove_edit(project, args.engine, args.remove)
        _say(f"removed edit '{edit.name}' ({edit.engine})")
        return 0
    printer = ProgressPrinter()
    if args.channel_effects:
        try:
            eff = jobs.compute_channel_effects(project, args.engine, on_progress=printer)
        finally:
            printer.close()
        L_D, E = eff["effects"].shape
        how = ("reused the cached" if eff["cached"] else
               f"computed in {_fmt_s(eff['seconds'])} of work ({eff['method']}, {eff['samples']} samples):")
        _say(f"channel effects of the {jobs.resolve_engine(project, args.engine)} avatar: {how} {L_D} channels x "
             f"{E} CLIP dimensions in {eff['path']}",
             f"make an edit (one matrix product now): avatar-studio edit {project.root} --global \"blue hair\"")
        return 0
    if args.global_prompt is not None:
        try:
            edit = jobs.find_global_edit(project, args.engine, args.global_prompt, args.neutral or "", args.name,
                                         args.beta, on_progress=printer)
        finally:
            printer.close()
        s = edit.summary
        eff = "cached channel effects" if s.get("effects_cached") else \
            f"channel effects computed in {_fmt_s(s.get('effects_seconds'))}"
        _say(f"saved edit '{edit.name}' ({edit.engine}, global direction): {s.get('channels_kept')} of "
             f"{s.get('channels')} channels at β {edit.threshold:g}; {eff}; {_fmt_s(s.get('wall_seconds'))} in all; "
             f"default strength {edit.default_strength:g}",
             f"picture (unedited above, edited below): {jobs.edit_picture(project, edit)}",
             f"use it: avatar-studio export {project.root} -o clip.mp4 "
             f"--edit \"{edit.name}={edit.default_strength:g}\"")
        return 0
    if args.directions:
        try:
            edits, picture = jobs.compute_directions(project, args.engine, on_progress=printer)
        finally:
            printer.close()
        info = jobs.directions_info(project, edits[0].engine) if edits else {}
        _say(f"saved {len(edits)} directions for the {edits[0].engine} engine in "
             f"{(info or {}).get('seconds', {}).get('total', 0):.1f} s ({(info or {}).get('labels', '')})")
        for ed in edits:
            _say(f"  {ed.name:<14} {ed.label:<11} σ {ed.summary.get('sigma', 0):.3g}  "
                 f"{100 * ed.summary.get('explained', 0):.1f}% of the variance")
        _say(f"picture: {picture}",
             f"use one: avatar-studio export {project.root} -o clip.mp4 --edit \"{edits[0].name}=1.5\"")
        return 0
    options = {"keep_background": True} if args.keep_background else {}
    try:
        edit = jobs.find_text_edit(project, args.engine, args.text, args.neutral or "", args.name, args.steps,
                                   on_progress=printer, **options)
    finally:
        printer.close()
    s = edit.summary
    _say(f"saved edit '{edit.name}' ({edit.engine}): {s.get('steps')} steps in {_fmt_s(s.get('wall_seconds'))}; "
         f"CLIP loss {s.get('clip_loss_start')} → {s.get('clip_loss_end')}",
         f"picture (unedited above, edited below): {jobs.edit_picture(project, edit)}",
         f"use it: avatar-studio export {project.root} -o clip.mp4 --edit \"{edit.name}={edit.default_strength:g}\"")
    return 0


def cmd_models(args) -> int:
    from .model_files import SPECS, ModelFiles

    # what an action does not use would be silently ignored (`models list a b` lists everything)
    if args.folder and args.action != "add":
        raise InputError(f"--folder goes with models add, not with models {args.action}",
                         "e.g. avatar-studio models add --folder ~/avatar-models")
    if args.action == "list" and (args.key or args.path):
        extra = " ".join(a for a in (args.key, args.path) if a)
        raise InputError(f"models list takes no names or files (got {extra})",
                         "it lists every file; to add one: avatar-studio models add NAME FILE")
    if args.action == "remove" and args.path:
        raise InputError(f"models remove takes only the name of the file to forget, not {args.path}",
                         f"e.g. avatar-studio models remove {args.key}")
    mf = ModelFiles()
    if args.action == "add":
        if args.folder:
            if args.key or args.path:
                raise InputError("models add --folder takes only the folder",
                                 "e.g. avatar-studio models add --folder ~/avatar-models")
            added, skipped = mf.add_folder(args.folder)
            for e in added:
                _say(f"added {e.key:<16} {e.path}  ({e.record.get('format', '')}; sha256 {e.sha256[:16]}…)")
            for p, why in skipped:
                _say(f"skipped {p}: {why}"[:200])
            return 0
        if not args.key or not args.path:
            raise InputError("models add needs a name and a file (or --folder DIR)",
                             f"e.g. avatar-studio models add lpips vgg16.pth; names: {', '.join(SPECS)}")
        e = mf.set(args.key, args.path)
        _say(f"{e.spec.title}: {e.path}", f"  {e.record.get('format', '')}; {e.size} bytes; sha256 {e.sha256}")
        return 0
    if args.action == "remove":
        if not args.key:
            raise InputError("models remove needs the name of the file to forget",
                             f"e.g. avatar-studio models remove clip; names: {', '.join(SPECS)}")
        if args.key not in SPECS:
            raise InputError(f"unknown model file '{args.key}'", f"names: {', '.join(SPECS)}")
        if args.key not in mf.data["files"]:
            _say(f"{SPECS[args.key].title}: not set in the settings, nothing to remove"
                 + (" (the default file it finds is not a setting)" if mf.entry(args.key).state == "default" else ""))
            return 0
        mf.remove(args.key)
        _say(f"{SPECS[args.key].title}: removed from the settings (the file itself was not deleted)")
        return 0
    _say(f"settings file: {mf.file}", "")
    for e in mf.entries():
        _say(f"{e.key:<16} {e.spec.title:<38} {e.status}", f"{'':<16} unlocks: {e.spec.purpose}")
        if e.path is not None:
            _say(f"{'':<16} file: {e.path}" + (f"  ({e.size} bytes, sha256 {e.sha256[:16]}…)" if e.sha256 else ""))
        if e.state in ("changed", "gone", "invalid"):
            _say(f"{'':<16} {e.problem}")
        if e.state != "present" and e.state != "default":
            _say(f"{'':<16} get: {e.spec.how_to_get}", f"{'':<16} add: avatar-studio models add {e.key} /path/to/file")
    return 0


BENCH_OPTIONS = {"video": ("track", "export", "driving"), "max_frames": ("track",), "repeat": ("track", "train-step"),
                 "landscape_1080p": ("track",), "whole_frame": ("track",), "actor": ("driving",),
                 "engine": ("driving",), "clip": ("driving",), "no_detail": ("driving",)}
"""The benchmarks that use each of `bench`'s arguments; any other would be silently ignored."""


def _bench_unused(args) -> None:
    """Refuse, in one line, the arguments `bench WHAT` does not use (`bench generator --max-frames 5`)."""
    given = {name: getattr(args, name) for name in BENCH_OPTIONS}
    unused = [name for name, users in BENCH_OPTIONS.items()
              if args.what not in users and given[name] is not None and given[name] is not False]   # 0 counts
    if not unused:
        return
    shown = ["a video or project" if n == "video" else "--" + n.replace("_", "-") for n in unused]
    where = "; ".join(f"{s} goes with bench {' / '.join(BENCH_OPTIONS[n])}" for n, s in zip(unused, shown))
    raise InputError(f"bench {args.what} does not use {' or '.join(shown)}",
                     f"leave {'it' if len(shown) == 1 else 'them'} out ({where})")


def cmd_bench(args) -> int:
    _bench_unused(args)
    for flag, value in (("--max-frames", args.max_frames), ("--repeat", args.repeat)):
        if value is not None and value < 1:  # 0 would silently mean "the default"
            raise InputError(f"{flag} must be at least 1, not {value}", f"e.g. {flag} 3, or leave it out")
    if args.what == "track":
        from .benchmarks.tracking import main as bench_main

        argv = [args.video] if args.video else []
        if not argv and not args.landscape_1080p:
            raise InputError("bench track needs a video (or --landscape-1080p)",
                             "e.g. avatar-studio bench track VIDEO, or avatar-studio bench track --landscape-1080p")
        argv += ["--max-frames", str(args.max_frames)] if args.max_frames else []
        argv += ["--repeat", str(args.repeat)] if args.repeat else []
        argv += ["--landscape-1080p"] if args.landscape_1080p else []
        argv += ["--whole-frame"] if args.whole_frame else []
        return bench_main(argv)
    if args.what == "generator":
        from .benchmarks.generator import main as bench_main

        return bench_main([])
    if args.what == "export":
        from .benchmarks.export import main as bench_main

        if not args.video:
            raise InputError("bench export needs a project with a trained avatar",
                             "e.g. avatar-studio bench export PROJECT")
        from .session import Session

        if not Session.open(args.video).trained_engines():  # say it here, not as a failed export inside the benchmark
            raise InputError(f"project {args.video} has no trained avatar yet",
                             f"train one with `avatar-studio run {_shown(args.video)}`, then benchmark its export")
        return bench_main([args.video])
    if args.what == "driving":
        from .benchmarks.driving import main as bench_main

        if not args.video or not args.actor:
            raise InputError("bench driving needs a project and a trained actor",
                             "e.g. avatar-studio bench driving PROJECT --actor VIDEO")
        return bench_main([args.video, "--actor", args.actor] + (["--engine", args.engine] if args.engine else [])
                          + (["--clip", args.clip] if args.clip else []) + (["--no-detail"] if args.no_detail else []))
    if args.what == "train-step":
        from .benchmarks.train_step import main as bench_main

        return bench_main(["--steps", str(args.repeat)] if args.repeat else [])
    raise InputError(f"unknown benchmark {args.what}")


def cmd_gui(args) -> int:
    from .gui.app import main as gui_main

    return gui_main(args=args)


def build_parser() -> argparse.ArgumentParser:
    from .engines import ENGINES

    p = argparse.ArgumentParser(prog="avatar-studio", description="Personal, controllable head avatars from one "
                                "phone video.")
    p.add_argument("--version", action="version", version=f"avatar-studio {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp, preset=True):
        if preset:
            sp.add_argument("--preset", default="preview", choices=("preview", "quality"),
                            help="preview: sized for a laptop CPU; quality: for a CUDA GPU")
        sp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where to compute (auto: the GPU when there is one)")

    sp = sub.add_parser("new", help="create a project from a video: decode, track and align the face")
    sp.add_argument("project", help="folder to create for the project")
    sp.add_argument("--video", required=True, help="the subject's video (MP4/MOV from a phone)")
    sp.add_argument("--start", type=float, help="trim: start second")
    sp.add_argument("--end", type=float, help="trim: end second")
    sp.add_argument("--fps", type=float, help="decode at this frame rate (default: the video's)")
    sp.add_argument("--max-frames", type=int, help="use at most this many frames")
    sp.add_argument("--crop-size", type=int, choices=(128, 256, 512, 1024), help="aligned crop size")
    common(sp)
    sp.set_defaults(func=cmd_new)

    sp = sub.add_parser("status", help="what is done in a project and what comes next")
    sp.add_argument("project")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("run", help="make an avatar from a video (or finish a project): every stage, then eval")
    sp.add_argument("target", help="a video file, or an existing project folder")
    sp.add_argument("--project", help="project folder to create (default: <video name>_avatar)")
    sp.add_argument("--engine", default="pvp", choices=(*ENGINES, "both"),
                    help="; ".join(f"{e.name}: {e.title}" for e in ENGINES.values()) + "; both: every engine")
    sp.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    sp.add_argument("--controls", choices=("named", "flame"), default=None,
                    help="what the expression sliders are: named (the twelve named expressions, the default) or "
                         "flame (jaw + FLAME expression coefficients; needs FLAME's files, see `models list`)")
    sp.add_argument("--set", action="append", metavar="STAGE.NAME=VALUE",
                    help="change a stage's setting, e.g. --set prior.steps=800 (the time estimate is then skipped)")
    sp.add_argument("--nproc", type=int, default=1, metavar="N",
                    help="train each training stage in N processes on this machine (one per GPU), through "
                         "torchrun's launcher; the global batch and learning rate stay the preset's")
    sp.add_argument("--preset", default=None, choices=("preview", "quality"),
                    help="preview: sized for a laptop CPU; quality: for a CUDA GPU (default: preview for a new "
                         "project, a project's own preset for an existing one; given for an existing project, the "
                         "stages not trained yet switch to it)")
    sp.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"),
                    help="where to compute (auto: the GPU when there is one; default: the project's, auto for a new one)")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("run-stage", help="run (or resume) one stage of a project")
    sp.add_argument("project")
    sp.add_argument("stage")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE", help="change a setting of the stage")
    sp.add_argument("--force", action="store_true", help="run even if it is up to date")
    sp.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))
    g = sp.add_argument_group("several processes / machines (passed to torchrun's launcher)")
    g.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="processes on this machine (one per GPU; CPU processes share the cores)")
    g.add_argument("--nnodes", default="1", metavar="N", help="machines taking part (run the command on each)")
    g.add_argument("--node-rank", type=int, default=0, metavar="R", help="this machine's rank, 0 .. nnodes-1")
    g.add_argument("--rdzv-endpoint", default="", metavar="HOST:PORT",
                   help="where the machines meet: the first machine's address and a free port")
    g.add_argument("--rdzv-backend", default="static", choices=("static", "c10d"),
                   help="static: ranks from --node-rank (torchrun's default); c10d: assigned at the meeting")
    g.add_argument("--rdzv-id", default="avatar-studio", metavar="ID", help="c10d: one id per run, the same on "
                   "every machine")
    sp.set_defaults(func=cmd_run_stage)

    sp = sub.add_parser("queue", help="a queue of avatars: add videos, run them here or on a Ray cluster, list, "
                        "read a job's log")
    sp.add_argument("action", choices=("add", "list", "run", "log"))
    sp.add_argument("videos", nargs="*", metavar="VIDEO|ID", help="add: the videos; log: the job id")
    sp.add_argument("--queue", metavar="DIR", help="the queue folder (default: $AVATAR_STUDIO_QUEUE, else queue/ "
                    "in the settings folder)")
    sp.add_argument("--engine", default="pvp", choices=(*ENGINES, "both"), help="add: the engine to train")
    sp.add_argument("--out", metavar="DIR", help="add: where the projects go (default: the current folder)")
    sp.add_argument("--set", action="append", metavar="STAGE.NAME=VALUE", help="add: a stage setting for these jobs")
    sp.add_argument("--no-eval", action="store_true", help="add: skip the evaluation at the end of each job")
    sp.add_argument("--ray", metavar="ADDRESS", help="run: submit each job to the Ray cluster at ADDRESS (its "
                    "dashboard, e.g. http://head:8265) instead of running them here one after another")
    sp.add_argument("--cpus-per-job", type=float, default=1.0, help="run --ray: CPUs Ray reserves for each job")
    sp.add_argument("--gpus-per-job", type=float, default=0.0, help="run --ray: GPUs Ray reserves for each job")
    sp.add_argument("--python", metavar="PATH", help="run: the Python that runs each job (default: this one; on "
                    "a cluster, one with Avatar Studio installed on every machine)")
    sp.add_argument("--retry-failed", action="store_true", help="run: run failed jobs again too")
    sp.add_argument("--tail", type=int, default=0, metavar="N", help="log: only the last N lines")
    common(sp)
    sp.set_defaults(func=cmd_queue)

    sp = sub.add_parser("config", help="show or change a stage's settings")
    sp.add_argument("project")
    sp.add_argument("stage")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE")
    sp.add_argument("--reset", action="store_true",
                    help="put the stage back on the project's preset (a trained stage then trains again)")
    sp.set_defaults(func=cmd_config)

    sp = sub.add_parser("eval", help="measure a trained avatar: held-out quality, control accuracy, speed")
    sp.add_argument("project")
    sp.add_argument("--engine", default=None, choices=tuple(ENGINES))
    sp.add_argument("--edits", action="store_true",
                    help="measure the saved appearance edits instead (5 yaws x 3 expressions: CLIP score gain, "
                         "identity to the unedited render, share changed outside the face/hair)")
    sp.add_argument("--no-detail", dest="detail", action="store_false", default=True,
                    help="measure the engine's render alone, without detail from the subject's own video frames")
    sp.add_argument("--no-flame-warp", dest="flame_geometry", action="store_false", default=True,
                    help="FLAME controls: measure without FLAME's geometry warp (the FLAME sliders are scored "
                         "both ways anyway)")
    sp.add_argument("--no-scene", dest="scene", action="store_false", default=True,
                    help="measure with the engine's own background instead of the video's (the held-out frames "
                         "are scored both ways anyway)")
    sp.add_argument("--size", type=int, default=None, metavar="PX",
                    help="measure the avatar shown at PX pixels (up to the tracked crops' size, 256): the render "
                         "upsampled, the video's frames lending their detail at full resolution; the report goes to "
                         "eval/<engine>_<PX>px/")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("export", help="render a clip: turntable, the subject's own motion, a driver video, or a "
                        "keyframed timeline")
    sp.add_argument("project")
    sp.add_argument("--out", "-o", required=True, help="output file (.mp4, .gif) or folder (PNG frames)")
    sp.add_argument("--source", choices=("turntable", "self", "driver", "timeline", "flame"))
    sp.add_argument("--frames", choices=("heldout", "train", "all"), help="source=self: which frames")
    sp.add_argument("--driver", help="source=driver: the driving video")
    sp.add_argument("--transfer", choices=("learned", "parameters"),
                    help="source=driver: learned (the actor's network from `drive`; the default when there is one) "
                         "or parameters (the named expressions, normalised)")
    sp.add_argument("--timeline", help="source=timeline: JSON keyframes")
    sp.add_argument("--flame", help="source=flame: a FLAME parameter file (.npz/.npy/.pkl or a folder of them)")
    sp.add_argument("--duration", type=float, help="source=turntable: seconds")
    sp.add_argument("--expression", help="source=turntable: e.g. smile_left=0.8,jaw_open=0.3")
    sp.add_argument("--fps", type=float)
    sp.add_argument("--format", choices=("mp4", "gif", "png"))
    sp.add_argument("--crf", type=int, help="MP4 quality (lower = better), default 18")
    sp.add_argument("--side-by-side", action="store_true", default=None)
    sp.add_argument("--paste-back", action="store_true", default=None)
    sp.add_argument("--no-audio", dest="audio", action="store_false", default=None)
    sp.add_argument("--engine", choices=tuple(ENGINES))
    sp.add_argument("--edit", action="append", metavar="NAME=STRENGTH",
                    help="apply a saved appearance edit, e.g. --edit \"blue hair=0.8\" (repeat to stack edits)")
    sp.add_argument("--no-detail", dest="detail", action="store_false", default=None,
                    help="render the engine's image alone, without detail from the subject's own video frames")
    sp.add_argument("--no-flame-warp", dest="flame_geometry", action="store_false", default=None,
                    help="FLAME controls: render without FLAME's geometry warp (the engine's own expression only)")
    sp.add_argument("--no-scene", dest="scene", action="store_false", default=None,
                    help="keep the engine's own background instead of the video's behind the person")
    sp.add_argument("--size", type=int, metavar="PX",
                    help="image size in pixels (default: the engine's, 128 in preview; up to the tracked crops' "
                         "size, 256): the render upsampled, the video's frames lending their detail at full "
                         "resolution")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("drive", help="train the learned transfer of another person (an actor) onto the avatar, "
                        "for export --source driver")
    sp.add_argument("project")
    sp.add_argument("--actor", required=True, help="the actor's video (tracked like a subject, kept in drivers/)")
    sp.add_argument("--preset", default=None, choices=("preview", "quality"),
                    help="preview: minutes on a CPU; quality: the paper's schedule for a GPU (default: the project's)")
    sp.add_argument("--no-cycle", action="store_true", help="train without the cycle-consistency term (ablation)")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE", help="change a setting (e.g. steps=500)")
    sp.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))
    sp.set_defaults(func=cmd_drive)

    sp = sub.add_parser("edit", help="appearance edits: find one from a text prompt (needs a CLIP file), compute "
                        "directions from the avatar itself, list or remove them")
    sp.add_argument("project")
    sp.add_argument("--text", metavar="PROMPT", help="find a text edit, e.g. --text \"blue hair\" (StyleCLIP)")
    sp.add_argument("--global", dest="global_prompt", metavar="PROMPT",
                    help="make a global-direction edit, e.g. --global \"blue hair\" (StyleCLIP global directions: the "
                         "avatar's channel effects are computed once, then any prompt is one matrix product; needs a "
                         "CLIP file)")
    sp.add_argument("--channel-effects", action="store_true",
                    help="compute (or check) the avatar's per-channel CLIP effects that --global uses, with progress; "
                         "resumable, cached in the project until the avatar is retrained")
    sp.add_argument("--directions", action="store_true",
                    help="compute the avatar's principal directions (GANSpace; no file needed) and a picture")
    sp.add_argument("--list", action="store_true", help="list the saved edits")
    sp.add_argument("--remove", metavar="NAME", help="remove a saved edit")
    sp.add_argument("--neutral", metavar="TEXT", help="--text/--global: a neutral description, e.g. \"a face\"")
    sp.add_argument("--name", help="--text/--global: the edit's name (default: the prompt)")
    sp.add_argument("--beta", type=float, help="--global: threshold β in [0, 1); channels whose relevance is under β "
                    "of the largest are left out (default 0.1; larger = fewer channels, a narrower edit)")
    sp.add_argument("--steps", type=int, help="--text: optimisation steps (default: 100 in the preview preset)")
    sp.add_argument("--keep-background", action="store_true",
                    help="--text: penalise changes outside the face and hair")
    sp.add_argument("--engine", choices=tuple(ENGINES), help="which engine's avatar (default: the trained one)")
    sp.set_defaults(func=cmd_edit)

    sp = sub.add_parser("models", help="optional weight files (StyleGAN2, CLIP, ArcFace, LPIPS, FLAME): list, add "
                        "(checked and hashed), remove")
    sp.add_argument("action", nargs="?", default="list", choices=("list", "add", "remove"))
    sp.add_argument("key", nargs="?", help="stylegan2, clip, arcface, lpips, flame or flame-mediapipe")
    sp.add_argument("path", nargs="?", help="the file (for add)")
    sp.add_argument("--folder", metavar="DIR", help="add: import every recognised weight file in DIR")
    sp.set_defaults(func=cmd_models)

    sp = sub.add_parser("bench", help="benchmarks that print figures")
    sp.add_argument("what", choices=("track", "generator", "export", "driving", "train-step"))
    sp.add_argument("video", nargs="?", help="video for the tracking benchmark (project for the export and driving "
                                             "ones)")
    sp.add_argument("--actor", help="driving: the trained actor's video")
    sp.add_argument("--engine", choices=tuple(ENGINES), help="driving: the engine (default: every trained one)")
    sp.add_argument("--clip", help="driving: also write actor | parameter transfer | learned transfer to this MP4")
    sp.add_argument("--no-detail", action="store_true",
                    help="driving: render the engine's image alone, without detail from the subject's video")
    sp.add_argument("--max-frames", type=int)
    sp.add_argument("--repeat", type=int, help="track: the clip K times in a row (memory must stay flat); "
                                                 "train-step: how many steps are timed")
    sp.add_argument("--landscape-1080p", action="store_true",
                    help="track: a 1920x1080 landscape clip with a small face, made from a shared clip")
    sp.add_argument("--whole-frame", action="store_true", help="track: run the mesh on the whole frame (old way)")
    sp.set_defaults(func=cmd_bench)

    from .gui.app import add_arguments as gui_arguments   # argparse only: no Qt is imported here

    sp = sub.add_parser("gui", help="open the studio window")
    gui_arguments(sp)
    sp.set_defaults(func=cmd_gui)
    return p


def _output_gone() -> bool:
    """Whether the program reading our standard output or error has gone (`avatar-studio status P | head -1`): the
    write end of a pipe whose reader closed polls as an error (POSIX; False where that cannot be asked)."""
    import select

    try:
        poller = select.poll()
        for stream in (sys.stdout, sys.stderr):
            poller.register(stream.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):   # no poll (Windows), no real file behind the stream
        return False


def _quiet_exit() -> int:
    """Stop without a word when our reader has gone (as `cat` or `grep` do): further writes, the interpreter's
    own flush at exit included, go nowhere; the exit status is a SIGPIPE's, 128 + 13."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    return 141


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:          # only where the reader of our output went (argparse's help, say)
        if _output_gone():
            return _quiet_exit()
        raise


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError as exc:
        if _output_gone():           # `avatar-studio status P | head -1`: not a problem, stop quietly
            return _quiet_exit()
        return _unexpected(exc)      # another pipe (a child process, ffmpeg) broke: a real problem
    except Cancelled as exc:
        print(f"\ncancelled — {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ncancelled — run the same command again to resume", file=sys.stderr)
        return 130
    except StudioError as exc:
        msg = exc.message.rstrip(".")
        print(f"error: {msg}." + (f" {exc.hint[0].upper()}{exc.hint[1:]}." if exc.hint else ""), file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a bug: one line on screen, traceback in a log file
        return _unexpected(exc)


def _unexpected(exc: BaseException) -> int:
    """A bug: one line on screen, the traceback in a log file; exit status 1."""
    import tempfile
    import traceback

    log = Path(tempfile.gettempdir()) / f"avatar-studio-crash-{os.getpid()}.log"
    log.write_text("".join(traceback.format_exception(exc)))
    print(f"error: unexpected problem ({type(exc).__name__}: {exc}). Details were saved to {log}; please "
          f"include it in a bug report.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
