"""The commands that make and train a project: `new`, `status`, `run-stage`, `queue`, `config` and `run` (video
to avatar in one go, with the time estimate from a speed probe), and their checks of the options and folders."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..errors import InputError, StudioError
from ..progress import clock_text as _fmt_s   # m:ss, shared with `speed_probe.RunPace`
from .common import ProgressPrinter, _print_warnings, _say, _shown


def _ingest_overrides(args) -> dict:
    """--start/--end/--fps/--max-frames (and --turn) as the ingest stage's settings, checked here so that a bad value is
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
    if getattr(args, "turn", None):
        o["turn"] = args.turn
    return o


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
    from ..project import Project, is_project

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
    from ..lock import project_lock
    from ..video.colour import CONVERTED
    from ..video.colour import describe as describe_colour
    from ..pipeline import run_stage
    from ..project import Project
    from ..video import probe

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
    colour = r1["summary"].get("colour", "")
    converted = any(colour == describe_colour(m) for m in CONVERTED)   # HDR / wide gamut: say so
    _say(f"created project {root}",
         f"tracked {s['tracked']}/{s['frames']} frames; yaw {s['yaw_range'][0]}..{s['yaw_range'][1]}°, "
         f"pitch {s['pitch_range'][0]}..{s['pitch_range'][1]}°"
         + (f"; colours: {colour}" if converted else ""),
         f"report: {root / r2['outputs']['contact_sheet']} and {root / r2['outputs']['curves']}",
         f"next: avatar-studio status {_shown(root)}")
    return 0


def cmd_status(args) -> int:
    from ..session import Session
    from ..stages import REGISTRY

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
    from ..compute import resolve_device
    from ..config import parse_overrides
    from ..distributed import (MirroredError, PeerLost, launch, launched_by_torchrun, leave,
                              process_group, stage_cli_args)
    from ..pipeline import run_stage, spec
    from ..project import Project

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
    from ..distributed import options_from_args

    if args.nproc < 1:
        raise InputError(f"--nproc must be at least 1, not {args.nproc}", "e.g. --nproc 2, or leave it out")
    opts = options_from_args(args)
    opts.check()
    return opts


def _run_stage_here(project, args, overrides: dict) -> int:
    from ..pipeline import run_stage

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
    from ..batch import Queue, format_table, run_local

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
            from ..batch.ray_jobs import refresh

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
            from ..batch.ray_jobs import live_log

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
        from ..batch.ray_jobs import run_ray

        counts = run_ray(queue, args.ray, cpus=args.cpus_per_job, gpus=args.gpus_per_job,
                         python=args.python or sys.executable, retry_failed=args.retry_failed, say=_say)
    else:
        counts = run_local(queue, retry_failed=args.retry_failed, say=_say, python=args.python or sys.executable)
    _say(f"queue: {counts['done']} done, {counts['failed']} failed" +
         (" — see `avatar-studio queue list` and `queue log ID`" if counts["failed"] else ""))
    return 1 if counts["failed"] else 0


def cmd_config(args) -> int:
    import dataclasses

    from ..config import to_dict
    from ..pipeline import spec, stage_config
    from ..project import Project

    project = Project.open(args.project)
    s = spec(args.stage)
    if args.reset and args.set:
        raise InputError("--reset and --set together", "reset the stage first, then change what you want with --set")
    if args.reset or args.set:  # a change: not while another process works on the project (it would undo it)
        from ..session import Session

        cfg = Session(project).change(f"config {args.stage}", lambda session: _change_config(session.project, args))
    else:
        cfg = stage_config(project, args.stage)
    for f in dataclasses.fields(s.config_cls):
        _say(f"{f.name:<22} = {to_dict(cfg)[f.name]!s:<10}  {f.metadata.get('help', '')}")
    return 0


def _change_config(project, args):
    """`config --reset` or `config --set` (under the project's lock); returns the stage's config."""
    from ..config import parse_overrides, to_dict
    from ..pipeline import set_stage_config, stage_config, stage_state

    if args.reset:
        from ..session import Session

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
    from ..engines import ENGINES
    from ..project import Project, is_project
    from ..session import Session
    from ..speed_probe import RunPace
    from ..video import probe

    if args.controls == "flame":  # say it before any tracking runs
        from ..model_files import flame_paths
        from ..stages.flame import missing_files_error

        if flame_paths() is None:
            raise missing_files_error()
    from ..batch import parse_settings
    from ..distributed import run_stages

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
    from ..engines import chain

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
        from ..evaluation import evaluate, format_table

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
    from ..engines import ENGINES, chain

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
    from ..engines import ENGINES
    from ..speed_probe import probe

    if not any(s in stages for e in engines for s in ENGINES[e].stages):
        return "", None
    est = probe(project.preset, device or project.device)
    parts = [f"{ENGINES[e].title}: about {est.minutes_for([s for s in ENGINES[e].stages if s in stages])} min"
             for e in engines if any(s in stages for s in ENGINES[e].stages)]
    return (f"expected training time {est.where(this_machine=True)}, measured by a {est.probe_seconds:.0f}-second speed test: "
            + "; ".join(parts) + " (tracking comes on top)"), est
