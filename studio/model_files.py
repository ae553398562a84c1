"""Optional weight files (StyleGAN2, CLIP, ArcFace, LPIPS backbone, FLAME) for stages and the CLI.

The settings live in the app's config folder (``models.json``); the Models dialog of the GUI edits
them. This module is the non-GUI front door: stages ask for a path and get None when the user has
not configured the file (and no default is present).
"""
from __future__ import annotations

from pathlib import Path

from .gui.model_files import KNOWN, SPECS, ModelFiles  # no Qt in that module

__all__ = ["KNOWN", "SPECS", "ModelFiles", "model_path", "arcface_path", "lpips_path", "stylegan2_path"]


def model_path(key: str) -> Path | None:
    try:
        return ModelFiles().path(key)
    except Exception:  # an unreadable settings file must not stop training; the dialog reports it
        return None


def arcface_path() -> Path | None:
    return model_path("arcface")


def lpips_path() -> Path | None:
    return model_path("lpips")


def stylegan2_path() -> Path | None:
    return model_path("stylegan2")
