"""The commands that use a trained avatar: `eval` (measure it), `export` (render a clip), `drive` (train an actor's
learned transfer) and `edit` (appearance edits: text, global directions, GANSpace directions, list, remove)."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..progress import clock_text as _fmt_s   # m:ss, shared with `speed_probe.RunPace`
from .common import ProgressPrinter, _print_warnings, _say, _shown


def cmd_eval(args) -> int:
    from ..evaluation import evaluate, format_table
    from ..project import Project

    project = Project.open(args.project)
    if args.size is not None and args.size < 1:  # 0 would silently mean "the engine's size"
        raise InputError(f"--size must be a number of pixels, not {args.size}", "e.g. --size 256, or leave it out")
    printer = ProgressPrinter()
    if args.edits:
        from ..evaluation import evaluate_edits, format_edit_table

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

    from ..config import from_dict
    from ..export import ExportConfig, export
    from ..progress import run_to_end
    from ..project import Project

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
         f"{res['size'][0]}x{res['size'][1]}" + (", with audio" if res["audio"] else "")
         + (", transparent background" if res.get("transparent") else ""))
    return 0


def cmd_drive(args) -> int:
    from ..config import parse_overrides
    from ..driving.job import train_actor
    from ..project import Project

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
    from ..edits.model import format_edit_list, parse_strengths

    out = []
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip():
            raise InputError(f"cannot read --edit {item!r}", "write it as NAME=STRENGTH, e.g. --edit \"blue hair=0.8\"")
        out.append(format_edit_list(parse_strengths([item])))
    return "; ".join(out)


def cmd_edit(args) -> int:
    from ..edits import jobs
    from ..project import Project

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
        from ..engines import ENGINES

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
