"""What a stage is: a config dataclass, presets, and a run function that yields `Progress`.

A stage module registers itself with `register(StageSpec(...))`. The run function has the
signature ``run(ctx: StageContext, cfg: Config) -> Generator[Progress, None, dict]``: it yields
progress events and returns a result dict with ``outputs`` (name -> project-relative path) and
``summary`` (plain numbers and strings the user sees in `status` and the GUI).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator

from ..progress import Control, Progress
from ..project import Project

StageRun = Callable[["StageContext", Any], Generator[Progress, None, dict]]


@dataclass
class StageSpec:
    name: str
    """Short id used in the manifest and the CLI (e.g. "track")."""
    title: str
    """Human title for the GUI and status table."""
    config_cls: type
    """The stage's config dataclass."""
    presets: dict[str, Any]
    """Named config instances: at least "preview" and "quality"."""
    run: StageRun
    """The stage function."""
    depends_on: tuple[str, ...] = ()
    """Stages whose outputs this one reads."""
    description: str = ""
    """One paragraph for the user."""
    models: tuple[str, ...] = ()
    """Keys of the optional weight files this stage uses when they are added (`studio.model_files`)."""
    models_required: bool = False
    """Whether the stage cannot run at all without every file in `models` (the FLAME fit): the window then
    says the stage *needs* them, not that it works better with them."""
    trains: bool = False
    """Whether the stage trains through `studio.loop.TrainingLoop` (checkpoints, resume, caps)."""
    parallel: bool = False
    """Whether its training splits each batch across processes (`--nproc N`, `studio.distributed`):
    it samples through ``loop.shard``; a stage without it runs in one process."""
    extra_depends: Callable[[Any], tuple[str, ...]] | None = None
    """Stages this one also reads under a given config (e.g. `flame` when its controls are "flame");
    the pipeline requires them done and records them as upstream, like `depends_on`."""

    def depends(self, cfg: Any = None) -> tuple[str, ...]:
        """`depends_on` plus what `extra_depends` adds for `cfg`."""
        extra = tuple(self.extra_depends(cfg)) if self.extra_depends is not None and cfg is not None else ()
        return self.depends_on + tuple(e for e in extra if e not in self.depends_on)

    def preset(self, name: str) -> Any:
        base = self.presets.get(name) or self.presets.get("preview") or self.config_cls()
        return dataclasses.replace(base)


@dataclass
class StageContext:
    project: Project
    """The open project."""
    stage: str
    """This stage's name."""
    workdir: Path
    """Folder for this stage's outputs and checkpoints (inside the project)."""
    device: str = "cpu"
    """"cpu" or "cuda"."""
    control: Control = field(default_factory=Control)
    """Pause/cancel control; stages call `ctx.check()` between steps."""
    resumed: bool = False
    """True when the workdir holds checkpoints from an interrupted run with the same config."""

    def check(self) -> None:
        """Block while paused; raise `Cancelled` once cancelled. The training loop calls it per step."""
        self.control.checkpoint()

    def note_step(self, steps: dict[str, int]) -> None:
        """Record in the manifest how far training got (what `status` shows after a crash)."""
        self.project.update_record(self.stage, progress={k: int(v) for k, v in steps.items()})

    def progress(self, step: int, total: int, **kw: Any) -> Progress:
        return Progress(stage=self.stage, step=step, total=total, **kw)


REGISTRY: dict[str, StageSpec] = {}


def register(spec: StageSpec) -> StageSpec:
    REGISTRY[spec.name] = spec
    return spec
