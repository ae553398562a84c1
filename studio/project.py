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
from typing import Any, Callable

from . import __version__
from .atomic import write_json
from .errors import ProjectError

SCHEMA_VERSION = 1
MANIFEST = "project.json"


# ----------------------------------------------------------------------------- schema migrations
# A manifest written by an older version is upgraded in memory when the project opens, one version at
# a time, by MIGRATIONS[v] (v -> v + 1). The file on disk is rewritten only on the first save, after
# the original is kept as project.schema<v>.json. A manifest from a newer version is refused with a
# message, never half-read. To change the schema: bump SCHEMA_VERSION, add MIGRATIONS[old], keep a
# small project of the old version under tests/fixtures/ and a test that opens it.

def _relative_output(value: Any, old_root: str | None) -> Any:
    """An absolute path a version-0 manifest kept for an output, made relative to the project root."""
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    posix = Path(value).as_posix()
    if old_root and posix.startswith(Path(old_root).as_posix().rstrip("/") + "/"):
        return posix[len(Path(old_root).as_posix().rstrip("/")) + 1:]
    return value  # outside the project (or unknown root): keep it, `output()` still resolves it


def _migrate_0_to_1(manifest: dict, root: Path) -> dict:
    """Version 0 (manifests without a "schema" field): the project's absolute root was stored as
    "root", stage outputs as absolute paths under it (so a moved project lost its files), and the
    source video as a bare path string. Version 1 keeps paths relative and the source as
    {path, size, mtime} (size/mtime from the file when it is still there)."""
    old_root = manifest.pop("root", None)
    for rec in (manifest.get("stages") or {}).values():
        for holder in (rec, rec.get("result") or {}):
            outs = holder.get("outputs")
            if isinstance(outs, dict):
                holder["outputs"] = {k: _relative_output(v, old_root) for k, v in outs.items()}
    src = manifest.get("source")
    if isinstance(src, str):
        try:
            st = Path(src).stat()
            manifest["source"] = {"path": src, "size": st.st_size, "mtime": int(st.st_mtime)}
        except OSError:
            manifest["source"] = {"path": src, "size": None, "mtime": None}
    manifest.setdefault("name", Path(old_root).name if old_root else root.name)
    manifest.setdefault("preset", "preview")
    manifest.setdefault("device", "auto")
    manifest.setdefault("stages", {})
    return manifest


MIGRATIONS: dict[int, Callable[[dict, Path], dict]] = {0: _migrate_0_to_1}
"""MIGRATIONS[v](manifest, project root) turns a version-v manifest into version v + 1."""


def manifest_schema(manifest: dict) -> int:
    """The schema version of a manifest; 0 for the unversioned first layout."""
    schema = manifest.get("schema", 0)
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 0:
        raise ProjectError(f"the project manifest has an unreadable schema version ({schema!r})",
                           "restore project.json from a backup; the stage folders are still intact")
    return schema


def migrate(manifest: dict, root: Path) -> tuple[dict, int]:
    """(the manifest upgraded to SCHEMA_VERSION, the version it had). Refuses newer versions."""
    found = manifest_schema(manifest)
    if found > SCHEMA_VERSION:
        made_by = manifest.get("app_version")
        raise ProjectError(f"the project {root} was made by a newer Avatar Studio"
                           + (f" ({made_by})" if made_by else "")
                           + f": project format {found}, this version {__version__} reads formats up to "
                           f"{SCHEMA_VERSION}", "update Avatar Studio to open it; the project was not changed")
    version = found
    manifest = json.loads(json.dumps(manifest))  # a deep copy: the caller's dict stays the original
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ProjectError(f"the project {root} has format {version}, which this version cannot upgrade",
                               "open it once with an older Avatar Studio that reads it, or start a new project")
        manifest = step(manifest, root)
        version += 1
        manifest["schema"] = version
    return manifest, found


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
        if root.name == MANIFEST and root.is_file():   # the manifest itself was named: its folder is the project
            root = root.parent
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
        if not isinstance(manifest, dict):
            raise ProjectError(f"the project manifest {path} is not a JSON object",
                               "restore it from a backup; the stage folders are still intact")
        stages = manifest.get("stages", {})
        if not isinstance(stages, dict) or not all(isinstance(r, dict) for r in stages.values()):
            raise ProjectError(f"the project manifest {path} is damaged (its list of stages is not what this app "
                               "writes)", "restore it from a backup; the stage folders are still intact")
        upgraded, found = migrate(manifest, root)
        proj = cls(root, upgraded)
        if found != SCHEMA_VERSION:
            proj.migrated_from = (found, manifest)
        return proj

    # ----------------------------------------------------------------- basics
    migrated_from: tuple[int, dict] | None = None
    """(old schema version, the manifest as it was on disk) when `open` upgraded it and it is not saved yet."""

    def save(self) -> None:
        if self.migrated_from is not None:  # keep the old manifest before the upgraded one replaces it
            version, original = self.migrated_from
            backup = self.root / f"project.schema{version}.json"
            if not backup.exists():
                write_json(backup, original)
            self.migrated_from = None
        write_json(self.root / MANIFEST, self.manifest)

    @property
    def name(self) -> str:
        """The project folder's name: what the user sees and typed (a copied or renamed folder is called by its
        new name, not by the one written in project.json when it was made)."""
        return self.root.name or str(self.root)

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

    @property
    def nothing_trained(self) -> bool:
        """Whether no stage past reading the video has finished here (a project whose tracking failed, or
        never ran): removing it loses nothing but what reading the video wrote (the project keeps no copy of the
        video itself)."""
        return not any(rec.get("status") in ("done", "stale")
                       for name, rec in self.manifest["stages"].items() if name != "ingest")

    def remove_unstarted(self) -> None:
        """Delete this project's folder, which the app made and in which nothing was trained (`nothing_trained`):
        what `avatar-studio new` does itself when its video shows no face, for the window's "Remove the
        project". Refused (ProjectError, nothing deleted) while a process works in it, or where a stage past
        ingest has finished (as the manifest on disk says now)."""
        from .lock import is_busy

        if is_busy(self.root):
            raise ProjectError(f"the project {self.root.name} is busy: a stage is working on it",
                               "stop it first, then remove the project")
        if not Project.open(self.root).nothing_trained:
            raise ProjectError(f"the project {self.root} holds trained stages and is not removed",
                               "delete its folder yourself if you no longer want it")
        shutil.rmtree(self.root)

    def remove_stage_outputs(self, stage: str) -> None:
        d = self.root / stage
        if d.exists():
            shutil.rmtree(d)


def is_project(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).exists()
