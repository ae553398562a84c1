"""Appearance edits measured (`avatar-studio eval --edits`): `iter_evaluate_edits`, `evaluate_edits` and
`format_edit_table`.

Each saved edit of an engine, at its default strength, over a sweep of yaws × expressions
(`EDIT_YAWS`, `EDIT_EXPRESSIONS`): CLIP score gain, identity kept, change outside the face/hair region;
written to ``eval/<engine>/edits.json`` with the sheet ``edits.png``.
"""
from __future__ import annotations

import time
from typing import Callable, Generator

import numpy as np

from ..progress import Progress
from .run import STAGE
from .sheets import _sheet, _write_png

EDIT_YAWS, EDIT_EXPRESSIONS = 5, 3
"""The sweep every edit is measured over: 5 yaw values across the trained range × 3 expressions
(neutral, jaw open, a mix of every expression), `studio.edits.adapters.EditAdapter.sweep_controls`."""


def iter_evaluate_edits(project, engine: str | None = None, names: list[str] | None = None
                        ) -> Generator[Progress, None, dict]:
    """Measure the saved edits of an engine (`studio.edits.evaluate.evaluate_edit`, each at its default
    strength) over the sweep: CLIP score gain for its prompt (mean, worst point; when a CLIP file is
    configured), ArcFace identity of edited vs unedited renders (when the ArcFace file is configured),
    the share of the image that changed outside the face/hair region. Writes
    ``eval/<engine>/edits.json`` and a sheet ``eval/<engine>/edits.png`` (the unedited renders across the
    yaw range at the neutral expression, then one row per edit at its default strength)."""
    import torch

    from ..avatar import Avatar, trained_engines, why_not_trained
    from ..edits.adapters import adapter_for
    from ..edits.evaluate import evaluate_edit, write_report
    from ..edits.jobs import clip_status, is_current, list_edits, load_arcface_model, load_clip_model, resolve_engine
    from ..edits.model import ActiveEdits
    from ..errors import InputError, ProjectError

    engine = resolve_engine(project, engine)
    if engine not in trained_engines(project):   # say so, not "no saved edits" for an avatar that cannot have any
        raise ProjectError(*why_not_trained(project, engine))
    edits = list_edits(project, engine)
    if names:
        known = {e.name: e for e in edits}
        missing = [n for n in names if n not in known]
        if missing:
            raise InputError(f"no edit named '{missing[0]}' for the {engine} engine",
                             "saved edits: " + (", ".join(f"'{n}'" for n in known) or "none yet"))
        edits = [known[n] for n in names]
    if not edits:
        raise InputError(f"project {project.name} has no saved edits for the {engine} engine",
                         f"make one with `avatar-studio edit {project.root} --text \"blue hair\"` (needs a CLIP file) "
                         f"or `avatar-studio edit {project.root} --directions`")
    yield Progress(stage=STAGE, step=0, total=len(edits), part="edits", message=f"loading the {engine} avatar")
    avatar = Avatar.open(project, engine)
    adapter = adapter_for(avatar.engine)
    device = str(adapter.device)
    clip_ok, clip_line = clip_status()
    clip = load_clip_model(device) if clip_ok and any(e.prompt for e in edits) else None
    arcface = load_arcface_model(device)
    rows = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, e in enumerate(edits):
            yield Progress(stage=STAGE, step=i, total=len(edits), part="edits", message=f"measuring '{e.name}'",
                           elapsed=time.perf_counter() - t0)
            row = evaluate_edit(adapter, e, clip=clip, arcface=arcface, yaws=EDIT_YAWS, expressions=EDIT_EXPRESSIONS)
            row.update(label=e.label, current=is_current(project, e), prompt=e.prompt)
            rows.append(row)
        # the sheet: unedited / edited across the yaw range at the neutral expression
        c = np.repeat(adapter.neutral()[None], EDIT_YAWS, 0)
        c[:, 0] = np.linspace(adapter.lo[0], adapter.hi[0], EDIT_YAWS)
        sheet_rows, labels = [avatar.render_batch(c)[0]], ["unedited"]
        for e in edits:
            sheet_rows.append(avatar.render_batch(c, edits=ActiveEdits([(e.name, e.offset, e.default_strength)]))[0])
            labels.append(e.name)
    yield Progress(stage=STAGE, step=len(edits), total=len(edits), part="edits", message="measured",
                   elapsed=time.perf_counter() - t0)
    out = project.root / "eval" / engine
    _write_png(out / "edits.png", _sheet(sheet_rows, cell=min(128, max(64, avatar.size)), labels=labels))
    notes = []
    if clip is None:
        notes.append("CLIP score gain not measured: " + (clip_line if not clip_ok else "no text edits"))
    if arcface is None:
        notes.append("identity not measured: no ArcFace file is configured "
                     "(`avatar-studio models add arcface FILE`)")
    if not all(r["current"] for r in rows):
        notes.append("edits marked * were made for an earlier training of this engine")
    report = {"engine": engine, "size": avatar.size, "sweep": f"{EDIT_YAWS} yaws x {EDIT_EXPRESSIONS} expressions",
              "clip": clip is not None, "arcface": arcface is not None, "notes": notes,
              "seconds": round(time.perf_counter() - t0, 2), "sheet": "edits.png", "edits": rows}
    report["path"] = str(write_report(project, engine, rows,
                                      **{k: v for k, v in report.items() if k not in ("edits", "engine")}))
    return report


def evaluate_edits(project, engine: str | None = None, on_progress: Callable[[Progress], None] | None = None,
                   **kw) -> dict:
    """Run `iter_evaluate_edits` to the end, passing its progress events to `on_progress`."""
    from ..progress import run_to_end

    return run_to_end(iter_evaluate_edits(project, engine, **kw), on_progress)


def format_edit_table(report: dict) -> str:
    """The `eval --edits` table: one row per edit, then what was not measured and where the report is."""
    from ..edits.evaluate import format_rows

    rows = [dict(r, name=("* " if not r.get("current", True) else "") + r["name"]) for r in report["edits"]]
    lines = [f"appearance edits, {report['engine']} engine ({report['size']} px), over {report['sweep']} "
             f"(each at its default strength)", format_rows(rows), "",
             "CLIP gain: cos(edited, prompt) − cos(unedited, prompt), mean / worst sweep point; gain>0: points "
             "where it is positive;",
             "identity: ArcFace cosine of edited vs unedited renders (mean / worst); changed outside: share of "
             "pixels outside the face/hair region that moved by more than 8/255."]
    lines += [f"note: {n}" for n in report.get("notes", [])]
    lines.append(f"report: {report.get('path', '')}")
    return "\n".join(lines)
