"""The engine registry: the one place that says what an avatar engine is.

An engine is the stages it owns (run after the common `ingest` → `track`), the loader that
turns a trained project into a renderer, the optional weight files it can use, and what it can
do. The CLI, the GUI, `studio.avatar.Avatar`, evaluation and export all read `ENGINES`; none
keeps a list of its own.

This module is light (no torch): loaders are named as ``"module:function"`` and imported only
when an avatar is opened. Engine modules never import stage modules (a contract in
pyproject.toml): what both need lives in shared modules such as `studio.pvp.common`.

To add an engine: write its stages (`studio/stages/<name>.py`, registered there), a loader
returning an object with ``name``, ``size``, ``control_names``, ``ranges`` and
``render_controls(controls, edits=None)``, and one `EngineSpec` below.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class EngineSpec:
    name: str
    """Id used in project folders, the CLI (`--engine`) and settings ("pvp", "nerf")."""
    title: str
    """Name the user sees."""
    short: str
    """Short name for tight places (the viewer's engine switch)."""
    stages: tuple[str, ...]
    """The stages this engine owns, in run order (the common ingest/track come before them)."""
    loader: "str | Callable[[Any], Any]"
    """``"module:function"`` (or a callable) that takes a `Project` and returns the engine's renderer."""
    summary: str = ""
    """One sentence for the engine chooser."""
    model_files: tuple[str, ...] = ()
    """Optional weight files (keys of `studio.model_files`) the engine can use."""
    free_camera: bool = False
    """Yaw and pitch move a real 3D camera (evaluation adds multi-view figures)."""
    edits: bool = False
    """Appearance edits can be applied to its renders."""
    driving: bool = False
    """Another person's video can drive it (export --source driver)."""
    optional: tuple[str, ...] = ()
    """Stages among `stages` that `run` trains but an avatar does not need to open: one trained before
    they existed still opens and renders without them (`required` leaves them out)."""
    detail: tuple[tuple[str, Any], ...] = ()
    """(field, value) pairs of `studio.detail.DetailConfig` that differ from its defaults for this
    engine's renders (see `detail_config`)."""

    @property
    def core_stages(self) -> tuple[str, ...]:
        """Its stages without the optional ones: what a trained avatar of this engine must have done."""
        return tuple(s for s in self.stages if s not in self.optional)

    def load(self, project) -> Any:
        return call_loader(self.loader, project)

    def detail_config(self):
        """The `studio.detail.DetailConfig` the detail from the video uses over this engine's renders."""
        from ..detail import DetailConfig

        return DetailConfig(**dict(self.detail))


def call_loader(loader: "str | Callable[[Any], Any]", project) -> Any:
    """Run a loader given as ``"module:function"`` or as a callable."""
    if isinstance(loader, str):
        module, func = loader.split(":")
        loader = getattr(importlib.import_module(module), func)
    return loader(project)


ENGINES: dict[str, EngineSpec] = {
    spec.name: spec for spec in (
        EngineSpec(name="pvp", title="StyleGAN avatar (PVP)", short="StyleGAN", stages=("pivots", "prior", "pti", "mappers", "sharpen"),
                   optional=("sharpen",),
                   loader="studio.engines.pvp:load",
                   summary="A StyleGAN2 generator tuned on your video's pivot frames, steered by pose and "
                           "expression mappers. Sharpest in the poses your video shows.",
                   model_files=("stylegan2", "arcface", "lpips", "clip"), edits=True, driving=True,
                   # its render's shapes are less right than a near frame's: inside the face only part of the
                   # flow to it applies, in proportion to the render's own fine detail against its nearest
                   # frame's above a tenth of it, none below (README, "The face keeps its place", "A floor under
                   # the face's flow"; half where that cannot be measured), and the
                   # frames give the whole middle band over eyes, brows and mouth grown 20 px, nose and cheeks
                   # with them (README, "The frames' own eyes, wider"); and everything finer than 24 px (at
                   # 128 px) from the frames, only the broadest shading from its render (README, "The face shape
                   # the controls predict")
                   detail=(("face_flow", 0.5), ("face_flow_sharpness", 0.6), ("face_flow_floor", 0.1),
                           ("feature_grow", 20.0), ("band_sigma", 24.0))),
        EngineSpec(name="nerf", title="NeRF avatar (LatentAvatar)", short="NeRF", stages=("nerf",),
                   loader="studio.engines.nerf:load",
                   summary="A tri-plane NeRF driven by a learned expression code: a real 3D head, so "
                           "yaw and pitch move a camera.",
                   model_files=("arcface", "lpips", "clip"), free_camera=True, edits=True, driving=True,
                   # its render draws the eyes (held-out ArcFace identity 0.84-0.91 alone), so the flow is matched
                   # more finely (README, "Detail from the video"); inside the face half of it applies and the
                   # frames give the eyes' and mouth's whole middle band (README, "The frames' own eyes")
                   detail=(("face_flow", 0.5), ("flow_smooth", 4.0), ("flow_sigma", 1.0))),
    )
}
COMMON_STAGES = ("ingest", "track")
"""Stages every engine needs before its own."""


def engine(name: str) -> EngineSpec:
    from ..errors import ProjectError

    try:
        return ENGINES[name]
    except KeyError:
        raise ProjectError(f"unknown engine '{name}'", f"engines: {', '.join(ENGINES)}") from None


def required(name: str) -> tuple[str, ...]:
    """The stages an avatar of engine `name` needs to open: the common ones, then its core stages."""
    return COMMON_STAGES + engine(name).core_stages


def engine_of(stage: str) -> str | None:
    """The engine that owns `stage` (None for the common stages)."""
    return next((e.name for e in ENGINES.values() if stage in e.stages), None)


def chain(name: str) -> tuple[str, ...]:
    """Every stage an engine needs, in run order: the common ones, then its own."""
    return COMMON_STAGES + engine(name).stages
