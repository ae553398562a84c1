"""The text-edit job (see `studio.edits.jobs` for what every edit job shares): find an edit for a prompt
and save it in the project.

**Text edits** (StyleCLIP latent optimisation, `studio.edits.styleclip`) run through the shared
training loop (`studio.loop.TrainingLoop`): the search is checkpointed in
``<project>/edits/<engine>/jobs/<edit>/train.ckpt``, so a cancelled or killed search continues at the
same step when it is started again with the same settings. They need a CLIP checkpoint added with
``avatar-studio models add clip FILE`` (`clip_status` says whether one is usable and what to do).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Generator

from ..errors import Cancelled, InputError
from ..progress import Control, Progress
from .job_helpers import (STAGE, JobContext, ProgressFn, _open_avatar, _project, drive, load_arcface_model,
                          load_clip_model, model_key, resolve_engine)
from .model import Edit, EditSet, file_stem, validate_name

TEXT_STEPS = {"preview": 100, "quality": 300}
"""Default optimisation steps of a text edit per project preset."""


# ----------------------------------------------------------------------------- text edits
def _job_dir(project, engine: str, name: str) -> Path:
    return EditSet.folder_for(project, engine) / "jobs" / file_stem(name)


def iter_text_edit(project, engine: str | None = None, prompt: str = "", neutral: str = "", name: str | None = None,
                   steps: int | None = None, *, keep_background: bool = False, control: Control | None = None,
                   **options) -> Generator[Progress, None, Edit]:
    """Find a text edit (see the module docstring); yields `Progress`, returns the saved `Edit`.

    `options` go to `studio.edits.styleclip.StyleClipConfig` (batch, augmentations, lr, w_l2,
    w_identity, layers, seed, ...). `keep_background` adds the L1 term outside the face/hair mask.
    """
    from ..compute import resolve_device
    from ..config import config_hash
    from ..lock import project_lock
    from ..loop import TrainingLoop
    from .adapters import adapter_for
    from .styleclip import StyleClipConfig, StyleClipSearch

    project = _project(project)
    control = control or Control()
    engine = resolve_engine(project, engine)
    prompt = " ".join(str(prompt).split())
    if not prompt:
        raise InputError("a text edit needs a prompt", "describe the look, e.g. --text \"blue hair\"")
    try:
        name = validate_name(name or prompt)
    except InputError as exc:
        raise InputError(exc.message, exc.hint + " (give the edit a name with --name)") from None
    steps = int(steps) if steps is not None else TEXT_STEPS.get(project.preset, TEXT_STEPS["preview"])
    if steps < 1:
        raise InputError(f"a text edit needs at least one step, not {steps}", "e.g. --steps 100")
    unknown = set(options) - set(StyleClipConfig.__dataclass_fields__) - {"prompt", "neutral", "name", "steps"}
    if unknown:
        raise InputError(f"unknown text-edit setting(s): {', '.join(sorted(unknown))}",
                         f"known: {', '.join(StyleClipConfig.__dataclass_fields__)}")
    if keep_background:
        options.setdefault("w_background", 1.0)
    device = resolve_device(project.device)
    load_clip_model(check_only=True)   # say what is missing before anything is loaded
    with project_lock(project.root, f"edit: text '{name}'"):
        yield Progress(stage=STAGE, step=0, total=1, part="load", message=f"loading the {engine} avatar and CLIP")
        clip = load_clip_model(device)
        arcface = load_arcface_model(device)
        avatar = _open_avatar(project, engine)
        adapter = adapter_for(avatar.engine)
        cfg = StyleClipConfig(prompt=prompt, neutral=neutral, name=name, steps=steps, **options)
        search = StyleClipSearch(adapter, clip, cfg, arcface=arcface)

        from ..model_files import ModelFiles

        clip_entry = ModelFiles().entry("clip")
        key = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
               "model": model_key(project, engine), "clip": clip_entry.sha256, "arcface": arcface is not None}
        workdir = _job_dir(project, engine, name)
        job_file = workdir / "job.json"
        fingerprint = config_hash(key)
        if workdir.exists():
            try:
                old = json.loads(job_file.read_text("utf-8")).get("fingerprint")
            except (OSError, ValueError):
                old = None
            if old != fingerprint:   # other settings, model or CLIP: this checkpoint cannot be resumed
                shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True, exist_ok=True)
        from ..atomic import write_json

        write_json(job_file, {"fingerprint": fingerprint, "job": "text", "engine": engine, "name": name, **key})
        ctx = JobContext(project=project, workdir=workdir, device=device, control=control)
        loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=30.0)
        loop.track("search", search)
        if search.step_count:
            yield Progress(stage=STAGE, step=search.step_count, total=steps, part="search",
                           message=f"resuming '{name}' at step {search.step_count} of {steps}")
        t0 = time.perf_counter()
        try:
            yield from loop.part("search", steps, lambda i: search.step(), preview=search.preview,
                                 preview_every=max(1, steps // 10),
                                 message=f"finding '{name}' ({engine})")
        except Cancelled:
            loop.save()      # between two steps: the next run continues from here
            loop.finish()
            raise
        figures = loop.finish()
        search.calibrate_strength()   # with ArcFace: the default strength keeps the person recognisable
        edit = search.result()
        edit.summary.update(model=model_key(project, engine), clip_file=Path(clip_entry.path).name,
                            clip_sha256=clip_entry.sha256, identity_loss=arcface is not None, device=device,
                            train_minutes=figures["train_minutes"], wall_seconds=round(time.perf_counter() - t0, 2),
                            **({"resumed_from": figures["resumed_from"]} if "resumed_from" in figures else {}))
        edits = EditSet.for_project(project, engine)
        saved = edits.save(edit)
        from .ganspace import save_picture

        # at the strength export applies by default (ArcFace may have lowered it), as a global edit's picture
        save_picture(search.preview(edit.default_strength), edits.preview_path(name))
        shutil.rmtree(workdir, ignore_errors=True)
        yield Progress(stage=STAGE, step=1, total=1, part="save", message=f"saved edit '{name}' ({engine})")
    return saved


def find_text_edit(project, engine: str | None = None, prompt: str = "", neutral: str = "", name: str | None = None,
                   steps: int | None = None, on_progress: ProgressFn | None = None, control: Control | None = None,
                   **options) -> Edit:
    """Find a text edit with StyleCLIP latent optimisation and save it in the project (see `iter_text_edit`)."""
    return drive(iter_text_edit(project, engine, prompt, neutral, name, steps, control=control, **options),
                 on_progress)
