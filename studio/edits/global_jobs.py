"""The global-direction jobs (see `studio.edits.jobs` for what every edit job shares): measure the
channel effects of an avatar once, then make an edit for a prompt from them.

**Global directions** (StyleCLIP's third method, `studio.edits.global_directions`): the CLIP effect of
every latent channel is measured once per avatar (`compute_channel_effects`, through the same training
loop: checkpointed in ``<project>/edits/<engine>/jobs/channel_effects/train.ckpt``, so a cancelled or
killed run continues at the same step) and cached in ``<project>/edits/<engine>/channel_effects.safetensors``
under a key naming the trained model (its stages' run ids), the CLIP file's hash and the settings; a
retrained avatar, another CLIP file or other settings miss the cache. `find_global_edit` then matches a
prompt's text direction against the effects (one matrix product) and saves an ordinary edit of kind
"global" (prompt, neutral, threshold β, default strength: with the ArcFace file the largest that keeps
the person, as for text edits).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Generator

from ..errors import Cancelled, InputError, ProjectError
from ..progress import Control, Progress
from .job_helpers import (STAGE, JobContext, ProgressFn, _open_avatar, _project, drive, load_arcface_model,
                          load_clip_model, model_key, resolve_engine)
from .model import Edit, EditSet, validate_name


# ----------------------------------------------------------------------------- global directions
GLOBAL_BETA = 0.1
"""Default threshold β of a global-direction edit (channels under β of the largest relevance are zeroed)."""
EFFECTS_FILE = "channel_effects.safetensors"
"""The channel-effects cache inside ``<project>/edits/<engine>/``."""


def effects_path(project, engine: str) -> Path:
    return EditSet.folder_for(project, engine) / EFFECTS_FILE


def _effects_config(options: dict):
    from .global_directions import ChannelEffectsConfig

    known = set(ChannelEffectsConfig.__dataclass_fields__)
    unknown = set(options) - known
    if unknown:
        raise InputError(f"unknown channel-effects setting(s): {', '.join(sorted(unknown))}",
                         f"known: {', '.join(sorted(known))}")
    cfg = ChannelEffectsConfig(**options)
    cfg.check()
    return cfg


def effects_key(project, engine: str, cfg, clip_sha256: str) -> str:
    """What a channel-effects cache was computed from: the trained model (its stages' run ids, so a
    retrained avatar misses the cache), the CLIP file's hash and the settings."""
    from ..config import config_hash

    return f"model {model_key(project, engine)}; clip {clip_sha256}; settings {config_hash(vars(cfg))}"


def _channel_effects(project, engine: str, adapter, clip, cfg, control: Control, device: str,
                     recompute: bool = False) -> Generator[Progress, None, dict]:
    """Reuse the cached channel effects of (model, CLIP, settings), or compute them through the training
    loop (checkpointed in ``edits/<engine>/jobs/channel_effects/``: a cancelled or killed run continues at
    the same step) and cache them. The caller holds the project lock. Returns {"effects", "sigma",
    "cached", "seconds", "path", "key", "method", "samples"}."""
    from ..atomic import write_json
    from ..loop import TrainingLoop
    from ..model_files import ModelFiles
    from .global_directions import ChannelEffects, effects_meta, load_effects, save_effects

    key = effects_key(project, engine, cfg, ModelFiles().entry("clip").sha256)
    path = effects_path(project, engine)
    info = {"path": str(path), "key": key, "method": cfg.method, "samples": cfg.samples}
    if not recompute:
        hit = load_effects(path, key)
        if hit is not None:
            meta = effects_meta(path) or {}
            yield Progress(stage=STAGE, step=1, total=1, part="effects",
                           message=f"reusing the cached channel effects ({path.name})")
            return {**info, "effects": hit[0], "sigma": hit[1], "cached": True,
                    "seconds": float(meta.get("seconds", 0) or 0)}
    workdir = EditSet.folder_for(project, engine) / "jobs" / "channel_effects"
    job_file = workdir / "job.json"
    if workdir.exists():
        try:
            old = json.loads(job_file.read_text("utf-8")).get("key")
        except (OSError, ValueError):
            old = None
        if old != key:   # another model, CLIP file or settings: that checkpoint cannot be resumed
            shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(job_file, {"job": "channel_effects", "engine": engine, "key": key})
    ctx = JobContext(project=project, workdir=workdir, device=device, control=control)
    loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=30.0)
    effects = ChannelEffects(adapter, clip, cfg)
    loop.track("effects", effects)
    total = effects.total_steps
    L, D = adapter.latent_shape
    if effects.steps:
        yield Progress(stage=STAGE, step=effects.steps, total=total, part="effects",
                       message=f"resuming the channel effects at step {effects.steps} of {total}")

    def step(i: int) -> None:
        if effects.steps != i:
            raise ProjectError(f"the channel-effects checkpoint is inconsistent (step {effects.steps} vs {i})",
                               f"delete {workdir} and run again")
        effects.step()

    try:
        yield from loop.part("effects", total, step, progress_every=1,
                             message=f"CLIP effect of each of the {L * D} latent channels ({cfg.method}, "
                                     f"{cfg.samples} samples)")
    except Cancelled:
        loop.save()      # between two steps: the next run continues from here
        loop.finish()
        raise
    figures = loop.finish()
    save_effects(effects, path, key)
    shutil.rmtree(workdir, ignore_errors=True)
    return {**info, "effects": effects.effects, "sigma": effects.sigma, "cached": False,
            "seconds": round(effects.seconds, 2), "train_minutes": figures["train_minutes"],
            **({"resumed_from": figures["resumed_from"]} if "resumed_from" in figures else {})}


def iter_channel_effects(project, engine: str | None = None, *, recompute: bool = False,
                         control: Control | None = None, **options) -> Generator[Progress, None, dict]:
    """Compute (or reuse) the per-channel CLIP effects that global-direction edits are made from; yields
    `Progress`, returns the `_channel_effects` dict. `options` go to
    `studio.edits.global_directions.ChannelEffectsConfig` (samples, method, chunk, seed)."""
    from ..compute import resolve_device
    from ..lock import project_lock
    from .adapters import adapter_for

    project = _project(project)
    control = control or Control()
    engine = resolve_engine(project, engine)
    cfg = _effects_config(options)
    device = resolve_device(project.device)
    load_clip_model(check_only=True, purpose="global-direction edits")
    with project_lock(project.root, f"edit: channel effects ({engine})"):
        yield Progress(stage=STAGE, step=0, total=1, part="load", message=f"loading the {engine} avatar and CLIP")
        clip = load_clip_model(device, purpose="global-direction edits")
        adapter = adapter_for(_open_avatar(project, engine).engine)
        t0 = time.perf_counter()
        out = yield from _channel_effects(project, engine, adapter, clip, cfg, control, device, recompute)
        out["wall_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def compute_channel_effects(project, engine: str | None = None, on_progress: ProgressFn | None = None,
                            control: Control | None = None, **options) -> dict:
    """The channel effects of the avatar, computed once and cached in the project (see `iter_channel_effects`)."""
    return drive(iter_channel_effects(project, engine, control=control, **options), on_progress)


def _global_name(project, engine: str, prompt: str, name: str | None) -> str:
    """The edit's name: `name`, else the prompt, else "<prompt> (global)" when an edit of another kind
    already has the prompt's name (a global edit never silently replaces a text edit)."""
    if name:
        return validate_name(name)
    try:
        name = validate_name(prompt)
    except InputError as exc:
        raise InputError(exc.message, exc.hint + " (give the edit a name with --name)") from None
    edits = EditSet.for_project(project, engine)
    if name in edits and edits.get(name).kind != "global":
        name = validate_name(f"{prompt} (global)")
    return name


def iter_global_edit(project, engine: str | None = None, prompt: str = "", neutral: str = "",
                     name: str | None = None, beta: float | None = None, *, templates: tuple[str, ...] | None = None,
                     control: Control | None = None, **options) -> Generator[Progress, None, Edit]:
    """Make a StyleCLIP global-direction edit for `prompt` and save it: the channel effects (cached, or
    computed with progress first), then Δt = CLIP(prompt) − CLIP(neutral) matched against them (one matrix
    product), channels under β zeroed. With the ArcFace file the default strength is the largest that
    keeps the person (as for text edits). `options` go to `ChannelEffectsConfig`."""
    from ..compute import resolve_device
    from ..lock import project_lock
    from ..model_files import ModelFiles
    from .adapters import adapter_for
    from .ganspace import save_picture
    from .global_directions import TEMPLATES, calibrate_strength, global_edit, preview_strip, text_direction

    project = _project(project)
    control = control or Control()
    engine = resolve_engine(project, engine)
    prompt = " ".join(str(prompt).split())
    neutral = " ".join(str(neutral or "").split())
    if not prompt:
        raise InputError("a global-direction edit needs a prompt", "describe the look, e.g. --global \"blue hair\"")
    beta = GLOBAL_BETA if beta is None else float(beta)
    if not 0.0 <= beta < 1.0:
        raise InputError(f"the threshold β must be in [0, 1), not {beta:g}",
                         "e.g. --beta 0.1 (channels whose relevance is under β of the largest are left out)")
    cfg = _effects_config(options)
    device = resolve_device(project.device)
    load_clip_model(check_only=True, purpose="global-direction edits")
    name = _global_name(project, engine, prompt, name)
    with project_lock(project.root, f"edit: global '{name}'"):
        t0 = time.perf_counter()
        yield Progress(stage=STAGE, step=0, total=1, part="load", message=f"loading the {engine} avatar and CLIP")
        clip = load_clip_model(device, purpose="global-direction edits")
        arcface = load_arcface_model(device)
        adapter = adapter_for(_open_avatar(project, engine).engine)
        eff = yield from _channel_effects(project, engine, adapter, clip, cfg, control, device)
        control.checkpoint()
        direction = text_direction(clip, prompt, neutral, templates or TEMPLATES)
        edit = global_edit(eff["effects"], eff["sigma"], adapter.latent_shape, engine, direction, prompt, neutral,
                           beta=beta, name=name)
        calibration = {}
        if arcface is not None:
            edit.default_strength, calibration = calibrate_strength(adapter, edit.offset, arcface)
        clip_entry = ModelFiles().entry("clip")
        edit.summary.update(model=model_key(project, engine), clip_file=Path(clip_entry.path).name,
                            clip_sha256=clip_entry.sha256, identity_loss=arcface is not None, device=device,
                            effects_cached=eff["cached"], effects_seconds=eff["seconds"], method=eff["method"],
                            samples=eff["samples"], templates=len(templates or TEMPLATES),
                            wall_seconds=round(time.perf_counter() - t0, 2),
                            **({"identity_by_strength": calibration} if calibration else {}))
        edits = EditSet.for_project(project, engine)
        saved = edits.save(edit)
        strip = preview_strip(adapter, edit.offset, edit.default_strength)
        save_picture(strip, edits.preview_path(name))
        yield Progress(stage=STAGE, step=1, total=1, part="save", preview=strip,
                       message=f"saved edit '{name}' ({engine}): {edit.summary['channels_kept']} of "
                               f"{edit.summary['channels']} channels, strength {edit.default_strength:g}")
    return saved


def find_global_edit(project, engine: str | None = None, prompt: str = "", neutral: str = "",
                     name: str | None = None, beta: float | None = None, on_progress: ProgressFn | None = None,
                     control: Control | None = None, **options) -> Edit:
    """A global-direction edit for `prompt`, saved in the project (see `iter_global_edit`)."""
    return drive(iter_global_edit(project, engine, prompt, neutral, name, beta, control=control, **options),
                 on_progress)
