"""The saved edits of one project and engine, with the artist's on/off and strength for each.

`EditChoices` is that state for one project and engine; the viewer's Edits panel and the Export page
get the same object from `choices_for`, so both show the same edits at the same strengths.
Listing and deleting edits read and write the project's files: they run in background jobs.
"""
from __future__ import annotations

from pathlib import Path

from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import QObject, Signal

from .workers import Failure, run_job


# ----------------------------------------------------------------------------- Qt-free calls (run in jobs)
def list_edit_metas(project, engine: str) -> dict:
    """The saved edits of `engine` as plain data (no tensors), for the GUI thread. Runs in a job.

    {"edits": [`Edit.meta()` + "describe" (one line) + "current" (made for this training)],
     "picture": the directions picture's path or None}
    """
    from ..edits.direction_jobs import directions_info
    from ..edits.jobs import describe_edit, is_current, list_edits
    from ..edits.model import EditSet

    edits = [{**e.meta(), "describe": describe_edit(project, e), "current": is_current(project, e)}
             for e in list_edits(project, engine)]
    info = directions_info(project, engine) or {}
    picture = EditSet.folder_for(project, engine) / info["picture"] if info.get("picture") else None
    return {"edits": edits, "picture": str(picture) if picture is not None and picture.is_file() else None}


def remove_saved_edit(project, engine: str, name: str) -> str:
    from ..edits.jobs import remove_edit

    remove_edit(project, engine, name)
    return name


def engine_has_edits(engine: str | None) -> bool:
    from ..engines import ENGINES

    spec = ENGINES.get(engine or "")
    return bool(spec is not None and spec.edits)


# ----------------------------------------------------------------------------- shared state
class EditChoices(QObject):
    """The saved edits of one engine in one project, with the artist's on/off and strength for each.

    `changed` fires when the list changes (loaded, an edit added or removed); `strengths_changed`
    when a strength or on/off changes. `active()` is what a render or an export applies.
    """

    changed = Signal()
    strengths_changed = Signal()
    failed = Signal(object)       # Failure while listing or deleting

    def __init__(self, project, engine: str):
        super().__init__()
        self.project, self.engine = project, engine
        self.edits: list[dict] = []
        """Edit metadata (`Edit.meta()` + "describe", "current"), in the project's order."""
        self.picture: str | None = None
        """The directions picture, when directions were computed."""
        self.loaded = False
        self._state: dict[str, list] = {}       # name -> [enabled, strength]
        self._turn_on: set[str] = set()         # names to switch on when they first appear
        self._seq = 0

    # ---- reading
    def names(self) -> list[str]:
        return [m["name"] for m in self.edits]

    def meta(self, name: str) -> dict | None:
        return next((m for m in self.edits if m["name"] == name), None)

    def enabled(self, name: str) -> bool:
        return bool(self._state.get(name, [False])[0])

    def strength(self, name: str) -> float:
        st = self._state.get(name)
        return float(st[1]) if st else 0.0

    def active(self) -> dict[str, float]:
        """{name: strength} of the edits switched on with a strength other than 0."""
        return {n: float(self._state[n][1]) for n in self.names()
                if n in self._state and self._state[n][0] and float(self._state[n][1]) != 0.0}

    # ---- writing
    def set_enabled(self, name: str, on: bool) -> None:
        st = self._state.get(name)
        if st is not None and bool(st[0]) != bool(on):
            st[0] = bool(on)
            self.strengths_changed.emit()

    def set_strength(self, name: str, value: float) -> None:
        st = self._state.get(name)
        if st is not None and float(st[1]) != float(value):
            st[1] = float(value)
            self.strengths_changed.emit()

    def reload(self, turn_on: tuple[str, ...] = ()) -> None:
        """Re-read the list in a background job; names in `turn_on` are switched on when they appear."""
        self._turn_on.update(turn_on)
        self._seq += 1
        seq = self._seq
        project, engine = self.project, self.engine
        run_job(lambda: list_edit_metas(project, engine), lambda metas: self._listed(seq, metas),
                lambda f: self._list_failed(seq, f))

    def _listed(self, seq: int, listing: dict) -> None:
        if seq != self._seq:
            return  # a newer listing is on its way
        metas = listing["edits"]
        self.picture = listing.get("picture")
        names = [m["name"] for m in metas]
        for m in metas:
            n = m["name"]
            if n not in self._state:
                self._state[n] = [False, float(m.get("default_strength", 1.0))]
            if n in self._turn_on:
                self._state[n] = [True, float(m.get("default_strength", 1.0))]
                self._turn_on.discard(n)
        for n in list(self._state):
            if n not in names:
                del self._state[n]
        self.edits = list(metas)
        self.loaded = True
        self.changed.emit()

    def _list_failed(self, seq: int, f: Failure) -> None:
        if seq == self._seq:
            self.edits, self.loaded = [], True
            self.changed.emit()
            self.failed.emit(f)

    def remove(self, name: str) -> None:
        """Delete `name` from the project (a background job), then re-list."""
        project, engine = self.project, self.engine
        run_job(lambda: remove_saved_edit(project, engine, name), lambda _n: self.reload(), self.failed.emit)


_CHOICES: dict[tuple[str, str], EditChoices] = {}


def choices_for(project, engine: str) -> EditChoices:
    """The one `EditChoices` of (project folder, engine), shared by the viewer and the Export page."""
    key = (str(Path(project.root).resolve()), engine)
    ch = _CHOICES.get(key)
    if ch is None:
        ch = _CHOICES[key] = EditChoices(project, engine)
    ch.project = project
    return ch


def forget_choices() -> None:
    """Drop every shared state (tests)."""
    _CHOICES.clear()
