"""The project folder: a manifest (JSON with a schema version) plus each stage's outputs.

Layout::

    my_avatar/
      project.json          manifest: source video, preset, per-stage config/status/timings/outputs
      ingest/ track/ ...    one folder per stage (paths in the manifest are relative to the root)
      logs/                 tracebacks of unexpected errors, for bug reports

All writes go through `studio.atomic`, so a killed process leaves the last good manifest.
Paths inside the project are relative: a project folder can be moved or zipped.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import write_json
from .errors import ProjectError

SCHEMA_VERSION = 1
MANIFEST = "project.json"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Project:
    """An avatar project on disk. Cheap to open; every mutation saves the manifest atomically."""

    def __init__(self, root: str | os.PathLike, manifest: dict):
        self.root = Path(root).resolve()
        self.manifest = manifest

    # ----------------------------------------------------------------- create / open
    @classmethod
    def create(cls, root: str | os.PathLike, source_video: str | os.PathLike | None = None,
               preset: str = "preview", device: str = "auto") -> "Project":
        root = Path(root)
        if root.exists() and (root / MANIFEST).exists():
            raise ProjectError(f"a project already exists at {root}",
                               "choose another name, or open it with `avatar-studio status`")
        if root.exists() and any(root.iterdir()):
            raise ProjectError(f"the folder {root} already exists and is not empty",
                               "choose a new project name")
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "schema": SCHEMA_VERSION,
            "app_version": __version__,
            "name": root.name,
            "created": now_iso(),
            "preset": preset,
            "device": device,
            "source": None,
            "stages": {},
        }
        proj = cls(root, manifest)
        if source_video is not None:
            proj.set_source(source_video)
        proj.save()
        return proj

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Project":
        root = Path(root)
        path = root / MANIFEST
        if not path.exists():
            if not root.exists():
                raise ProjectError(f"no project at {root}", "check the path, or create one with `avatar-studio new`")
            raise ProjectError(f"{root} is not an avatar project (no {MANIFEST})",
                               "create one with `avatar-studio new`")
        try:
            manifest = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ProjectError(f"the project manifest {path} cannot be read ({exc})",
                               "restore it from a backup; the stage folders are still intact") from exc
        schema = manifest.get("schema")
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise ProjectError(f"project {root} was made by a newer Avatar Studio (schema {schema})",
                               "update Avatar Studio to open it")
        return cls(root, manifest)

    # ----------------------------------------------------------------- basics
    def save(self) -> None:
        write_json(self.root / MANIFEST, self.manifest)

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.root.name)

    @property
    def preset(self) -> str:
        return self.manifest.get("preset", "preview")

    @property
    def device(self) -> str:
        return self.manifest.get("device", "auto")

    def set_source(self, video: str | os.PathLike) -> None:
        video = Path(video).resolve()
        st = video.stat()
        self.manifest["source"] = {"path": str(video), "size": st.st_size, "mtime": int(st.st_mtime)}

    @property
    def source_video(self) -> Path:
        src = self.manifest.get("source")
        if not src:
            raise ProjectError("this project has no source video", "create it with --video")
        path = Path(src["path"])
        if not path.exists():
            raise ProjectError(f"the source video {path} is gone",
                               "put the video back at that path; the project keeps no copy of it")
        return path

    def path(self, rel: str | os.PathLike) -> Path:
        """Absolute path of a project-relative path."""
        return self.root / rel

    def rel(self, path: str | os.PathLike) -> str:
        """Project-relative POSIX path of an absolute path inside the project."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def stage_dir(self, stage: str) -> Path:
        d = self.root / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ----------------------------------------------------------------- stage records
    def record(self, stage: str) -> dict[str, Any]:
        return self.manifest["stages"].get(stage, {})

    def update_record(self, stage: str, **fields: Any) -> dict:
        rec = self.manifest["stages"].setdefault(stage, {})
        rec.update(fields)
        self.save()
        return rec

    def output(self, stage: str, key: str) -> Path:
        """Absolute path of output `key` of a finished stage."""
        rec = self.record(stage)
        outs = rec.get("outputs") or {}
        if rec.get("status") != "done" or key not in outs:
            raise ProjectError(f"stage '{stage}' has not finished in {self.root.name}",
                               f"run `avatar-studio run-stage {self.root} {stage}` first")
        return self.root / outs[key]

    def result(self, stage: str) -> dict:
        return self.record(stage).get("result") or {}

    def log_dir(self) -> Path:
        d = self.root / "logs"
        d.mkdir(exist_ok=True)
        return d

    def remove_stage_outputs(self, stage: str) -> None:
        d = self.root / stage
        if d.exists():
            shutil.rmtree(d)


def is_project(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).exists()
