"""What the edit jobs share (`studio.edits.jobs` and the job modules beside it): the project, engine and
trained model a job works on, the `JobContext` the shared training loop runs a job in, driving a job
generator, and the weight files (the CLIP checkpoint text edits need, the optional ArcFace network).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, MissingModelError, ProjectError
from ..progress import Control, Progress, run_to_end

STAGE = "edit"
"""The `Progress.stage` of edit jobs."""
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
