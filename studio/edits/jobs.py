"""Edit jobs that the CLI and the GUI both run: find a text edit (optimised or a global direction), compute
directions, list, remove.

Qt-free, and shaped like the stages (`studio.stages`): each long job is a generator of `Progress`
events that returns its result (`iter_text_edit`, `iter_directions`), and a function drives it
with an ``on_progress`` callback (`find_text_edit`, `compute_directions`). The CLI prints the events
as a progress bar; the GUI runs the job in a child process (`studio.workers.edit_process`) and
shows the progress and the preview strip. A `Control` pauses or cancels between steps.

Jobs that write into the project hold the project lock (`studio.lock.project_lock`), so an edit job
and a stage never write at the same time, and a second process gets the one-line "busy" error.

The jobs live beside this module, one kind each: text edits in `studio.edits.text_jobs`, global directions
and the channel effects they are made from in `studio.edits.global_jobs`, GANSpace directions in
`studio.edits.direction_jobs`; what they share (the engine and trained model a job works on, the job
context, the CLIP and ArcFace files) is in `studio.edits.job_helpers`. This module lists, describes and
removes saved edits and gathers the jobs' entry points, so the CLI, the window's edit process and the
evaluation call every job as `jobs.<name>`.

Every edit records which trained model it was made for (`model_key`); `describe_edit` marks one made
for an earlier training of the engine.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .direction_jobs import DIRECTION_COMPONENTS, compute_directions, directions_info, iter_directions
from .global_jobs import compute_channel_effects, effects_path, find_global_edit, iter_channel_effects, iter_global_edit
from .job_helpers import (NoClipFile, _project, clip_status, edit_engines, load_arcface_model, load_clip_model,
                          model_key, resolve_engine)
from .model import Edit, EditSet, file_stem
from .text_jobs import find_text_edit, iter_text_edit

__all__ = [
    # saved edits (this module)
    "list_edits", "is_current", "describe_edit", "remove_edit", "edit_picture",
    # the jobs and what their callers use (text_jobs, global_jobs, direction_jobs, job_helpers)
    "iter_text_edit", "find_text_edit",
    "iter_channel_effects", "compute_channel_effects", "effects_path", "iter_global_edit", "find_global_edit",
    "iter_directions", "compute_directions", "directions_info", "DIRECTION_COMPONENTS",
    "NoClipFile", "clip_status", "load_clip_model", "load_arcface_model", "edit_engines", "resolve_engine", "model_key",
]


# ----------------------------------------------------------------------------- list / remove
def list_edits(project, engine: str | None = None) -> list[Edit]:
    """The saved edits of `engine` (or of every engine that has edits), in the order they were saved."""
    project = _project(project)
    engines = [resolve_engine(project, engine)] if engine else edit_engines()
    out: list[Edit] = []
    for e in engines:
        out.extend(EditSet.for_project(project, e))
    return out


def is_current(project, edit: Edit) -> bool:
    """False when the edit was made for an earlier training of its engine (retrained since)."""
    made = edit.summary.get("model")
    return made is None or made == model_key(project, edit.engine)


def describe_edit(project, edit: Edit) -> str:
    """One line for `edit --list` and the GUI: what it is, how it was found, its strengths."""
    if edit.kind == "text":
        what = f"text \"{edit.prompt}\"" + (f" from \"{edit.neutral}\"" if edit.neutral else "")
        s = edit.summary
        how = f"{s.get('steps', '?')} steps" + (f", {s['wall_seconds']:.0f} s" if "wall_seconds" in s else "")
    elif edit.kind == "direction":
        what = f"direction (component {edit.component}, {edit.label or 'unlabelled'})"
        how = f"σ {edit.summary.get('sigma', 0):.3g}, {100 * edit.summary.get('explained', 0):.1f}% of the variance"
    else:
        what = f"global direction \"{edit.prompt}\"" + (f" from \"{edit.neutral}\"" if edit.neutral else "")
        s = edit.summary
        how = f"β {edit.threshold:g}" + (f", {s['channels_kept']} of {s['channels']} channels"
                                          if "channels_kept" in s and "channels" in s else "")
    lo, hi = edit.strength_range
    line = f"{what}; {how}; strength {edit.default_strength:g} ({lo:g}…{hi:g})"
    if not is_current(project, edit):
        line += "; made for an earlier training of this engine (find it again)"
    return line


def remove_edit(project, engine: str | None, name: str) -> Edit:
    """Remove a saved edit (under the project lock); `engine` None: the one engine that has it."""
    from ..lock import project_lock

    project = _project(project)
    name = " ".join(str(name).split())
    engines = [resolve_engine(project, engine)] if engine else edit_engines()
    holders = [e for e in engines if name in EditSet.for_project(project, e)]
    if not holders:
        known = ", ".join(f"'{e.name}' ({e.engine})" for e in list_edits(project)) or "none yet"
        raise InputError(f"no edit named '{name}'" + (f" for the {engine} engine" if engine else ""),
                         f"saved edits: {known}")
    if len(holders) > 1:
        raise InputError(f"both engines have an edit named '{name}'", f"say which with --engine ({', '.join(holders)})")
    with project_lock(project.root, f"edit: remove '{name}'"):
        edits = EditSet.for_project(project, holders[0])
        edit = edits.get(name)
        edits.remove(name)
    return edit


def edit_picture(project, edit: Edit) -> Path | None:
    """The edit's before/after picture, when its job wrote one."""
    p = EditSet.folder_for(project, edit.engine) / (file_stem(edit.name) + ".png")
    return p if p.is_file() else None
