"""Edit jobs that the CLI and the GUI both run: find a text edit (optimised or a global direction), compute
directions, list, remove.

Qt-free, and shaped like the stages (`studio.stages`): each long job is a generator of `Progress`
events that returns its result (`iter_text_edit`, `iter_directions`), and a function drives it
with an ``on_progress`` callback (`find_text_edit`, `compute_directions`). The CLI prints the events
as a progress bar; the GUI runs the job in a child process (`studio.workers.edit_process`) and
shows the progress and the preview strip. A `Control` pauses or cancels between steps.

Jobs that write into the project hold the project lock (`studio.lock.project_lock`), so an edit job
and a stage never write at the same time, and a second process gets the one-line "busy" error.

**Text edits** (StyleCLIP latent optimisation, `studio.edits.styleclip`) run through the shared
training loop (`studio.loop.TrainingLoop`): the search is checkpointed in
``<project>/edits/<engine>/jobs/<edit>/train.ckpt``, so a cancelled or killed search continues at the
same step when it is started again with the same settings. They need a CLIP checkpoint added with
``avatar-studio models add clip FILE`` (`clip_status` says whether one is usable and what to do).

**Global directions** (StyleCLIP's third method, `studio.edits.global_directions`): the CLIP effect of
every latent channel is measured once per avatar (`compute_channel_effects`, through the same training
loop: checkpointed in ``<project>/edits/<engine>/jobs/channel_effects/train.ckpt``, so a cancelled or
killed run continues at the same step) and cached in ``<project>/edits/<engine>/channel_effects.safetensors``
under a key naming the trained model (its stages' run ids), the CLIP file's hash and the settings; a
retrained avatar, another CLIP file or other settings miss the cache. `find_global_edit` then matches a
prompt's text direction against the effects (one matrix product) and saves an ordinary edit of kind
"global" (prompt, neutral, threshold β, default strength: with the ArcFace file the largest that keeps
the person, as for text edits).

**Directions** (GANSpace, `studio.edits.ganspace`): PCA of the avatar's own latents (for LatentAvatar
also the styles of its training frames), labelled pose / expression / appearance — by re-tracking
renders when the project's tracking can do it, else by the latent measure — saved as edits named
"component K", with a picture (top components × strengths × three poses) in the edits folder.

Every edit records which trained model it was made for (`model_key`); `describe_edit` marks one made
for an earlier training of the engine.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator

import numpy as np

from ..errors import Cancelled, InputError, MissingModelError, ProjectError
from ..progress import Control, Progress, run_to_end
from .model import Edit, EditSet, file_stem, validate_name

STAGE = "edit"
"""The `Progress.stage` of edit jobs."""
TEXT_STEPS = {"preview": 100, "quality": 300}
"""Default optimisation steps of a text edit per project preset."""
DIRECTION_COMPONENTS = 8
"""Principal components saved as direction edits."""
CLIP_FORMATS = (".bin / .pt / .pth (a state_dict or open_clip's training checkpoint) or .safetensors; "
                "the architecture is named by an open_clip_config.json beside it or inferred from the file")
ProgressFn = Callable[[Progress], None]


class NoClipFile(MissingModelError, InputError):
    """Text edits were asked for, but no usable CLIP checkpoint is configured."""


# ----------------------------------------------------------------------------- shared helpers
def _project(project):
    from ..project import Project

    return project if hasattr(project, "root") and hasattr(project, "record") else Project.open(project)


def edit_engines() -> list[str]:
    """Engines that can be edited, in registry order."""
    from ..engines import ENGINES

    return [n for n, s in ENGINES.items() if s.edits]


def resolve_engine(project, engine: str | None = None) -> str:
    """The engine an edit job works on: `engine` (checked), else the first trained engine that has edits."""
    from ..avatar import trained_engines
    from ..engines import engine as engine_spec

    project = _project(project)
    if engine is None:
        trained = [e for e in trained_engines(project) if e in edit_engines()]
        if not trained:
            raise ProjectError(f"project {project.name} has no trained avatar to edit yet",
                               f"train one with `avatar-studio run {project.root}`")
        return trained[0]
    spec = engine_spec(engine)
    if not spec.edits:
        raise ProjectError(f"the {spec.title} has no appearance edits", f"edits exist for: {', '.join(edit_engines())}")
    return engine


def model_key(project, engine: str) -> str:
    """Names the trained model of `engine` in `project`: the run ids of its core stages (changes on retraining
    them; an optional stage such as the StyleGAN engine's sharpening head works after the latents an edit
    moves, so retraining it leaves the edits valid)."""
    from ..engines import engine as engine_spec

    project = _project(project)
    return "/".join(str(project.record(s).get("run_id") or "-") for s in engine_spec(engine).core_stages)


def _open_avatar(project, engine: str):
    from ..avatar import Avatar

    return Avatar.open(project, engine)


@dataclass
class JobContext:
    """What `TrainingLoop` needs from a stage context, for an edit job."""

    project: Any
    workdir: Path
    device: str = "cpu"
    control: Control = field(default_factory=Control)
    stage: str = STAGE

    def check(self) -> None:
        self.control.checkpoint()

    def note_step(self, steps: dict[str, int]) -> None:
        """The job's own checkpoint records how far it got; nothing goes into the manifest."""


drive = run_to_end
"""Run a job generator to the end, handing each event to `on_progress`; returns its result."""


# ----------------------------------------------------------------------------- weight files
def clip_status() -> tuple[bool, str]:
    """(whether text edits can run here, one line saying so or what to do) — for the GUI's panel and
    `edit --list`. Cheap: no checkpoint is loaded."""
    try:
        load_clip_model(check_only=True)
    except (MissingModelError, InputError) as exc:
        return False, f"{exc.message}. {exc.hint[:1].upper()}{exc.hint[1:]}."
    from ..model_files import ModelFiles

    return True, f"text edits use the CLIP file {ModelFiles().entry('clip').path}"


def load_clip_model(device: str = "cpu", check_only: bool = False, purpose: str = "text edits"):
    """The configured CLIP checkpoint as a frozen `models.clip_loader.ClipModel`.

    Raises `NoClipFile` (naming the file kind, the command that adds it and the formats) when none is
    configured or the configured one cannot be used, and `InputError` when open_clip_torch is missing.
    """
    from ..model_files import SPECS, ModelFiles

    spec = SPECS["clip"]
    entry = ModelFiles().entry("clip")
    add = f"add one with `avatar-studio models add clip FILE` (or in the window's Models dialog); formats: {CLIP_FORMATS}"
    if entry.source == "missing":
        raise NoClipFile(f"{purpose} need a {spec.title} file ({spec.how_to_get}), and none is configured", add)
    if not entry.ok:
        raise NoClipFile(f"{purpose} need a {spec.title} file, but {entry.path} cannot be used: {entry.problem}",
                         add)
    from models.clip_loader import ClipFileError, load_clip, open_clip_available

    if not open_clip_available():
        raise InputError(f"{purpose} need the open_clip_torch package, which cannot be imported here",
                         "install Avatar Studio as the README says (it pins torch, torchvision and open_clip_torch "
                         "that work together)")
    if check_only:
        return None
    try:
        return load_clip(entry.path, device=device)
    except ClipFileError as exc:
        raise NoClipFile(f"the CLIP file {entry.path} cannot be loaded: {exc}", add) from None


def load_arcface_model(device: str = "cpu"):
    """The configured ArcFace network, or None when no usable file is configured."""
    from ..model_files import arcface_path

    path = arcface_path()
    if path is None:
        return None
    from models.arcface import load_arcface

    return load_arcface(path, device)


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


# ----------------------------------------------------------------------------- directions
def _frame_latents(avatar, adapter, project, control: Control, max_frames: int = 400
                   ) -> Generator[Progress, None, "Any"]:
    """For LatentAvatar, the styles of its training frames (their encoded codes); None otherwise."""
    if not hasattr(adapter, "latents_for_codes") or not hasattr(avatar.engine, "encode_image"):
        return None
    from ..tracking.data import TrackingData

    try:
        tracking = TrackingData.from_project(project)
    except (ProjectError, OSError, ValueError, KeyError):
        return None
    rows, _ = tracking.split()
    if len(rows) > max_frames:
        rows = rows[np.linspace(0, len(rows) - 1, max_frames).astype(int)]
    codes = []
    for i in range(0, len(rows), 32):
        control.checkpoint()
        try:
            crops = tracking.crops(rows[i:i + 32], size=avatar.size)
        except FileNotFoundError:
            return None
        codes.append(avatar.engine.encode_image(crops))
        yield Progress(stage=STAGE, step=min(i + 32, len(rows)), total=len(rows), part="frames",
                       message="encoding the training frames")
    return adapter.latents_for_codes(np.concatenate(codes)) if codes else None


def _tracking_for_labels(project):
    """The project's tracking when it can re-track renders (a tracked project), else (None, why)."""
    from ..tracking.data import TrackingData

    try:
        tracking = TrackingData.from_project(project)
    except (ProjectError, OSError, ValueError, KeyError):
        return None, "the project has no tracking"
    if "expression_scaling" not in tracking.meta:
        return None, "the project's tracking has no expression scaling"
    return tracking, ""


def iter_directions(project, engine: str | None = None, *, components: int = DIRECTION_COMPONENTS,
                    picture_top: int = 5, relabel: bool = True, control: Control | None = None
                    ) -> Generator[Progress, None, tuple[list[Edit], Path]]:
    """Compute GANSpace directions and save them as edits (see the module docstring); yields `Progress`,
    returns (the direction edits, appearance first; the picture's path)."""
    from ..atomic import write_json
    from ..lock import project_lock
    from .adapters import adapter_for
    from .ganspace import components_picture, compute_components, direction_edit, label_by_tracking, save_picture

    project = _project(project)
    control = control or Control()
    engine = resolve_engine(project, engine)
    if components < 1:
        raise InputError(f"directions need at least one component, not {components}")
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    with project_lock(project.root, f"edit: directions ({engine})"):
        yield Progress(stage=STAGE, step=0, total=1, part="load", message=f"loading the {engine} avatar")
        avatar = _open_avatar(project, engine)
        adapter = adapter_for(avatar.engine)
        t = time.perf_counter()
        extra = yield from _frame_latents(avatar, adapter, project, control)
        times["frames"] = time.perf_counter() - t
        control.checkpoint()
        t = time.perf_counter()
        yield Progress(stage=STAGE, step=0, total=1, part="pca", message="principal components of the avatar's latents")
        comps = compute_components(adapter, n_components=components, extra=extra)
        times["pca"] = time.perf_counter() - t
        yield Progress(stage=STAGE, step=1, total=1, part="pca", message=f"{len(comps.sigma)} components")
        label_note = "labels from the latent measure"
        tracking, why = _tracking_for_labels(project) if relabel else (None, "re-tracking was not asked for")
        if tracking is not None:
            control.checkpoint()
            t = time.perf_counter()
            yield Progress(stage=STAGE, step=0, total=1, part="label", message="re-tracking renders of each component")
            comps = label_by_tracking(adapter, comps, tracking)
            times["label"] = time.perf_counter() - t
            label_note = "labels from re-tracked renders"
            yield Progress(stage=STAGE, step=1, total=1, part="label", message=label_note)
        else:
            label_note += f" ({why})"
        control.checkpoint()
        t = time.perf_counter()
        yield Progress(stage=STAGE, step=0, total=1, part="picture", message="rendering the directions picture")
        edits = EditSet.for_project(project, engine)
        picture = edits.folder / "directions.png"
        edits.folder.mkdir(parents=True, exist_ok=True)
        save_picture(components_picture(adapter, comps, top=min(picture_top, len(comps.sigma))), picture)
        times["picture"] = time.perf_counter() - t
        control.checkpoint()
        # save: one edit per component; earlier direction edits that are not recomputed go
        key = model_key(project, engine)
        L = adapter.latent_shape[0]
        out: list[Edit] = []
        names = []
        for k in comps.order():
            name = f"component {k}"
            if name in edits and edits.get(name).kind != "direction":
                name = f"direction {k}"
            e = direction_edit(comps, k, L, name=name)
            e.summary.update(model=key, label_source="tracking" if tracking is not None else "latent",
                             **({"tracked": comps.tracked[k]} if comps.tracked else {}))
            out.append(edits.save(e))
            names.append(name)
        for old in [e.name for e in edits if e.kind == "direction" and e.name not in names]:
            edits.remove(old)
        times["total"] = time.perf_counter() - t_start
        write_json(edits.folder / "directions.json",
                   {"format": "avatar-studio/directions", "version": 1, "engine": engine, "model": key,
                    "samples": comps.n_samples, "labels": label_note, "picture": picture.name,
                    "seconds": {k: round(v, 2) for k, v in times.items()}, "components": comps.to_json(),
                    "edits": names})
        yield Progress(stage=STAGE, step=1, total=1, part="save",
                       message=f"saved {len(out)} directions in {times['total']:.1f} s; {label_note}")
    return out, picture


def compute_directions(project, engine: str | None = None, on_progress: ProgressFn | None = None,
                       control: Control | None = None, **options) -> tuple[list[Edit], Path]:
    """GANSpace directions of the avatar, saved as edits; returns (edits, picture path). See `iter_directions`."""
    return drive(iter_directions(project, engine, control=control, **options), on_progress)


def directions_info(project, engine: str) -> dict | None:
    """What the last `compute_directions` wrote (directions.json), or None."""
    path = EditSet.folder_for(project, engine) / "directions.json"
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


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

