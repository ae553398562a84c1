"""The commands around the projects: `models` (the optional weight files), `bench` (benchmarks that print
figures) and `gui` (the studio window)."""
from __future__ import annotations

from ..errors import InputError
from .common import _say, _shown


def cmd_models(args) -> int:
    from ..model_files import SPECS, ModelFiles

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
        from ..benchmarks.tracking import main as bench_main

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
        from ..benchmarks.generator import main as bench_main

        return bench_main([])
    if args.what == "export":
        from ..benchmarks.export import main as bench_main

        if not args.video:
            raise InputError("bench export needs a project with a trained avatar",
                             "e.g. avatar-studio bench export PROJECT")
        from ..session import Session

        if not Session.open(args.video).trained_engines():  # say it here, not as a failed export inside the benchmark
            raise InputError(f"project {args.video} has no trained avatar yet",
                             f"train one with `avatar-studio run {_shown(args.video)}`, then benchmark its export")
        return bench_main([args.video])
    if args.what == "driving":
        from ..benchmarks.driving import main as bench_main

        if not args.video or not args.actor:
            raise InputError("bench driving needs a project and a trained actor",
                             "e.g. avatar-studio bench driving PROJECT --actor VIDEO")
        return bench_main([args.video, "--actor", args.actor] + (["--engine", args.engine] if args.engine else [])
                          + (["--clip", args.clip] if args.clip else []) + (["--no-detail"] if args.no_detail else []))
    if args.what == "train-step":
        from ..benchmarks.train_step import main as bench_main

        return bench_main(["--steps", str(args.repeat)] if args.repeat else [])
    raise InputError(f"unknown benchmark {args.what}")


def cmd_gui(args) -> int:
    from ..gui.app import main as gui_main

    return gui_main(args=args)
