"""Pipeline stages. Importing this package registers every stage.

Which engine owns which stage is said once, in `studio.engines.ENGINES`; a new stage is a
module here (config dataclass + presets + a run generator, registered with `register`) added
to `_STAGE_MODULES` in run order, and named in its engine's spec.
"""
from __future__ import annotations

import importlib

from .base import REGISTRY, StageContext, StageSpec, register

# Order matters: it is the order stages run in and are listed in.
_STAGE_MODULES = ["ingest", "track", "flame", "pivots", "prior", "pti", "mappers", "sharpen", "nerf"]

for _name in _STAGE_MODULES:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["REGISTRY", "StageContext", "StageSpec", "register"]
