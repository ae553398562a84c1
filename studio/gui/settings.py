"""App-level GUI settings: recent projects, the last project, window geometry. No Qt here.

Stored in ``<config dir>/gui.json`` (see `model_files.config_dir`), written atomically.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import write_json
from ..model_files import config_dir

MAX_RECENT = 10


class AppSettings:
    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else config_dir()
        self.file = self.folder / "gui.json"
        self.data: dict = {"recent": [], "last_project": None}
        if self.file.exists():
            try:
                data = json.loads(self.file.read_text("utf-8"))
                if isinstance(data, dict):
                    self.data.update(data)
            except (OSError, ValueError):
                pass

    def save(self) -> None:
        try:
            write_json(self.file, self.data)
        except Exception:  # settings are a convenience; never stop the app over them
            pass

    @property
    def recent(self) -> list[str]:
        """Recent project folders, newest first, only those that still exist."""
        return [p for p in self.data.get("recent", []) if (Path(p) / "project.json").exists()]

    def add_recent(self, path: str | os.PathLike) -> None:
        p = str(Path(path).resolve())
        rec = [x for x in self.data.get("recent", []) if x != p]
        self.data["recent"] = [p, *rec][:MAX_RECENT]
        self.data["last_project"] = p
        self.save()

    def clear_recent(self) -> None:
        self.data["recent"] = []
        self.save()

    @property
    def last_project(self) -> str | None:
        p = self.data.get("last_project")
        return p if p and (Path(p) / "project.json").exists() else None

    def forget_last(self) -> None:
        self.data["last_project"] = None
        self.save()

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.save()
