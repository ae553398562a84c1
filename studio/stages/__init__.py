"""Pipeline stages. Importing this package registers every stage that is available."""
from __future__ import annotations

import importlib

from .base import REGISTRY, StageContext, StageSpec, register

# Order matters: it is the order stages run in and are listed in.
_STAGE_MODULES = ["ingest", "track", "pivots", "prior", "pti", "mappers", "nerf"]

for _name in _STAGE_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a stage not written yet
        if exc.name != f"{__name__}.{_name}":
            raise

ENGINES = {
    "pvp": [s for s in ("ingest", "track", "pivots", "prior", "pti", "mappers") if s in REGISTRY],
    "nerf": [s for s in ("ingest", "track", "nerf") if s in REGISTRY],
}

__all__ = ["REGISTRY", "ENGINES", "StageContext", "StageSpec", "register"]
