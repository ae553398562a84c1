"""The edit model shared by both engines: named offsets saved in the project, applied with strengths.

An edit is a learned (or computed) offset in the space the engine's adapter exposes
(`studio.edits.adapters`): W+ (L, D) for the StyleGAN engine, the tri-plane generator's per-layer
style input (L, D) for LatentAvatar. It is added, scaled by a strength, on top of whatever latent
the pose and expression controls give, so it follows the head as it turns and changes expression::

    latent' = latent + Σ_k strength_k · offset_k

Strength 0 (or no edit) leaves the latent untouched — the same tensor object, so the render is
bit-identical to the unedited one. Edits stack by summing.

On disk, per engine: ``<project>/edits/<engine>/edits.json`` (the list, without tensors) and one
``<file>.safetensors`` per edit holding its offset. Every write is atomic; the offset file is
written before the list that names it, and the list is rewritten before a removed edit's file is
deleted, so a killed process leaves at worst an unreferenced file, never a dangling entry.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from ..atomic import write_json, write_with
from ..errors import InputError, ProjectError

FORMAT = "avatar-studio/edits"
VERSION = 1
KINDS = ("text", "direction", "global")
MAX_NAME = 80


@dataclass
class Edit:
    """One named appearance edit."""

    name: str
    """What the artist calls it ("blue hair", "component 3")."""
    kind: str
    """"text" (StyleCLIP latent optimisation), "direction" (GANSpace) or "global" (StyleCLIP global direction)."""
    engine: str
    """The engine whose latent space the offset lives in ("pvp", "nerf")."""
    offset: torch.Tensor | None = None
    """(L, D) float32: the change of the latent at strength 1 (zero outside `layers`)."""
    prompt: str = ""
    """Text edits: the target description."""
    neutral: str = ""
    """Text edits: the neutral description the direction is taken from ("" = absolute target)."""
    component: int | None = None
    """Direction edits: the principal component index (0 = largest variance)."""
    layers: tuple[int, int] | None = None
    """[start, stop) of the latent layers the offset acts on (None = all)."""
    threshold: float | None = None
    """Global directions: β, channels whose relevance is below it are zeroed."""
    default_strength: float = 1.0
    """Strength a new slider starts at (for directions: in units of the component's σ)."""
    strength_range: tuple[float, float] = (-2.0, 2.0)
    """Range of the strength slider."""
    label: str = ""
    """What the edit mostly changes, where measured ("appearance", "pose", "expression")."""
    summary: dict[str, Any] = field(default_factory=dict)
    """How it was found (steps, seconds, losses, measurements); plain JSON values."""
    file: str = ""
    """Name of the offset's safetensors file inside the engine's edits folder (set on save)."""

    def __post_init__(self):
        self.name = validate_name(self.name)
        if self.kind not in KINDS:
            raise InputError(f"unknown edit kind '{self.kind}'", f"one of {', '.join(KINDS)}")
        if self.layers is not None:
            self.layers = (int(self.layers[0]), int(self.layers[1]))
        self.strength_range = (float(self.strength_range[0]), float(self.strength_range[1]))
        if self.offset is not None:
            self.offset = torch.as_tensor(self.offset).detach().float().cpu().contiguous()
            if self.offset.ndim != 2:
                raise ValueError(f"an edit offset is (L, D), got {tuple(self.offset.shape)}")

    def meta(self) -> dict:
        d = dataclasses.asdict(dataclasses.replace(self, offset=None))
        d.pop("offset")
        d["shape"] = list(self.offset.shape) if self.offset is not None else None
        d["layers"] = list(self.layers) if self.layers is not None else None
        d["strength_range"] = list(self.strength_range)
        return d

    @classmethod
    def from_meta(cls, d: Mapping[str, Any], offset: torch.Tensor | None) -> "Edit":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names and k != "offset"}
        if kw.get("layers") is not None:
            kw["layers"] = tuple(kw["layers"])
        if "strength_range" in kw:
            kw["strength_range"] = tuple(kw["strength_range"])
        return cls(offset=offset, **kw)


def validate_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name:
        raise InputError("an edit needs a name", "give it one, e.g. the prompt")
    if len(name) > MAX_NAME:
        raise InputError(f"the edit name is {len(name)} characters long", f"use at most {MAX_NAME}")
    if "=" in name:
        raise InputError(f"the edit name '{name}' contains '='", "'=' separates a name from its strength "
                         "on the command line (--edit \"blue hair=0.8\"); choose another name")
    if ";" in name:
        raise InputError(f"the edit name '{name}' contains ';'", "';' separates edits in an export's edit list "
                         "(\"blue hair=0.8; component 3=-1\"); choose another name")
    return name


def file_stem(name: str) -> str:
    """A file name for an edit: a readable slug plus a short hash (two names never share a file)."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40] or "edit"
    return f"{slug}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


# ----------------------------------------------------------------------------- applying
def apply_offsets(latent: torch.Tensor, terms: Iterable[tuple[torch.Tensor, float]]) -> torch.Tensor:
    """latent (B, L, D) + Σ strength · offset (L, D); zero strengths are skipped.

    With nothing to add the very same tensor comes back (bit-identical render).
    """
    out = latent
    for offset, strength in terms:
        s = float(strength)
        if s == 0.0:
            continue
        if offset.shape != latent.shape[1:]:
            raise ProjectError(f"an edit's offset has shape {tuple(offset.shape)} but this avatar's latent is "
                               f"{tuple(latent.shape[1:])}", "the edit was made for another model; find it again")
        out = out + s * offset.to(device=latent.device, dtype=latent.dtype)
    return out


def apply_edits(latent: torch.Tensor, edits: "EditSet", strengths: Mapping[str, float]) -> torch.Tensor:
    """Add the named edits, each scaled by its strength, to `latent` (B, L, D)."""
    return edits.apply(latent, strengths)


class ActiveEdits:
    """Edits with their strengths, bound for rendering: ``.apply(latent)``. False when nothing is active.

    Engines take this as their ``edits`` argument (`PVPEngine.render_controls` already calls
    ``edits.apply(ws)``).
    """

    def __init__(self, terms: list[tuple[str, torch.Tensor, float]]):
        self.terms = [(n, o, float(s)) for n, o, s in terms if float(s) != 0.0]

    def __bool__(self) -> bool:
        return bool(self.terms)

    def apply(self, latent: torch.Tensor) -> torch.Tensor:
        return apply_offsets(latent, [(o, s) for _, o, s in self.terms])

    def describe(self) -> str:
        return ", ".join(f"{n}={s:g}" for n, _, s in self.terms) or "none"


# ----------------------------------------------------------------------------- the saved set
class EditSet:
    """The edits of one engine in one project folder (`<project>/edits/<engine>/`)."""

    def __init__(self, folder: str | Path, engine: str):
        self.folder = Path(folder)
        self.engine = engine
        self._edits: dict[str, Edit] = {}
        self._load()

    @classmethod
    def folder_for(cls, project, engine: str) -> Path:
        """``<project>/edits/<engine>/`` (a `Project` or a folder)."""
        root = project.root if hasattr(project, "root") else Path(project)
        return Path(root) / "edits" / engine

    @classmethod
    def index_for(cls, project, engine: str) -> Path:
        """The edit list file of `engine` in `project` (whether or not it exists yet)."""
        return cls.folder_for(project, engine) / "edits.json"

    @classmethod
    def for_project(cls, project, engine: str) -> "EditSet":
        return cls(cls.folder_for(project, engine), engine)

    @property
    def index_path(self) -> Path:
        return self.folder / "edits.json"

    # ---- reading
    def _load(self) -> None:
        from safetensors.torch import load_file

        if not self.index_path.exists():
            return
        try:
            data = json.loads(self.index_path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ProjectError(f"{self.index_path} is damaged ({exc})",
                               "delete it to start the edit list afresh (the offsets beside it stay)") from exc
        if data.get("format") != FORMAT or int(data.get("version", 0)) > VERSION:
            raise ProjectError(f"{self.index_path} is not an edit list this version reads "
                               f"({data.get('format')!r} v{data.get('version')})", "update Avatar Studio")
        for d in data.get("edits", []):
            path = self.folder / d.get("file", "")
            try:
                offset = load_file(str(path))["offset"] if path.is_file() else None
            except Exception as exc:
                raise ProjectError(f"the offset of edit '{d.get('name')}' ({path.name}) is damaged ({exc})",
                                   f"remove the edit with `avatar-studio edit PROJECT --remove \"{d.get('name')}\"`"
                                   ) from exc
            if offset is None:
                raise ProjectError(f"the offset file of edit '{d.get('name')}' is missing ({path.name})",
                                   f"remove the edit with `avatar-studio edit PROJECT --remove \"{d.get('name')}\"`")
            e = Edit.from_meta(d, offset)
            self._edits[e.name] = e

    def names(self) -> list[str]:
        return list(self._edits)

    def __contains__(self, name: str) -> bool:
        return name in self._edits

    def __len__(self) -> int:
        return len(self._edits)

    def __iter__(self):
        return iter(self._edits.values())

    def get(self, name: str) -> Edit:
        if name not in self._edits:
            known = ", ".join(f"'{n}'" for n in self._edits) or "none yet"
            raise InputError(f"no edit named '{name}' for the {self.engine} engine", f"saved edits: {known}")
        return self._edits[name]

    # ---- writing
    def _write_index(self) -> None:
        write_json(self.index_path, {"format": FORMAT, "version": VERSION, "engine": self.engine,
                                     "edits": [e.meta() for e in self._edits.values()]})

    def save(self, edit: Edit, overwrite: bool = True) -> Edit:
        """Store `edit` (its offset file first, then the list). Same name replaces unless `overwrite` is False."""
        from safetensors.torch import save_file

        if edit.offset is None:
            raise ValueError("an edit without an offset cannot be saved")
        if edit.engine != self.engine:
            raise ProjectError(f"edit '{edit.name}' belongs to the {edit.engine} engine, not {self.engine}")
        if edit.name in self._edits and not overwrite:
            raise InputError(f"an edit named '{edit.name}' exists already", "choose another name or remove it first")
        old = self._edits.get(edit.name)
        edit = dataclasses.replace(edit, file=file_stem(edit.name) + ".safetensors")
        self.folder.mkdir(parents=True, exist_ok=True)
        write_with(self.folder / edit.file,
                   lambda tmp: save_file({"offset": edit.offset.contiguous()}, str(tmp), metadata={"name": edit.name}))
        self._edits[edit.name] = edit
        self._write_index()
        if old is not None and old.file and old.file != edit.file:
            (self.folder / old.file).unlink(missing_ok=True)
        return edit

    def remove(self, name: str) -> None:
        edit = self.get(name)
        del self._edits[name]
        self._write_index()
        if edit.file:
            (self.folder / edit.file).unlink(missing_ok=True)
        self.preview_path(name).unlink(missing_ok=True)

    def preview_path(self, name: str) -> Path:
        """Where the edit's before/after picture lives (written by the job that found it, if any)."""
        return self.folder / (file_stem(name) + ".png")

    # ---- applying
    def bind(self, strengths: Mapping[str, float]) -> ActiveEdits:
        """Check the names and bind the offsets with their strengths (unknown names raise `InputError`)."""
        return ActiveEdits([(n, self.get(n).offset, float(s)) for n, s in strengths.items()])

    def defaults(self) -> dict[str, float]:
        return {e.name: e.default_strength for e in self._edits.values()}

    def apply(self, latent: torch.Tensor, strengths: Mapping[str, float]) -> torch.Tensor:
        return self.bind(strengths).apply(latent)


def parse_strengths(items: Iterable[str], edits: EditSet | None = None) -> dict[str, float]:
    """Command-line ``"blue hair=0.8"`` items → {name: strength}; a bare name takes its default strength."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = str(item).rpartition("=")
        if not sep:
            name, value = value, ""
        name = " ".join(name.split())
        if value.strip() == "":
            if edits is None:
                raise InputError(f"edit '{name}' has no strength", "write it as NAME=STRENGTH, e.g. \"blue hair=0.8\"")
            out[name] = edits.get(name).default_strength
            continue
        try:
            out[name] = float(value)
            if not math.isfinite(out[name]):  # nan renders a black face, inf a blank one
                raise ValueError(value)
        except ValueError:
            raise InputError(f"'{value}' is not a strength for edit '{name}'",
                             "write it as NAME=STRENGTH, e.g. \"blue hair=0.8\"") from None
        if edits is not None:
            edits.get(name)
    return out


def parse_edit_list(text: str, edits: EditSet | None = None) -> dict[str, float]:
    """An export's edit list ``"blue hair=0.8; component 3=-1.5"`` → {name: strength} ("" → {})."""
    items = [t for t in str(text or "").split(";") if t.strip()]
    return parse_strengths(items, edits)


def format_edit_list(strengths: Mapping[str, float]) -> str:
    """{name: strength} → ``"blue hair=0.8; component 3=-1.5"`` (what `ExportConfig.edits` holds)."""
    return "; ".join(f"{validate_name(n)}={float(s):g}" for n, s in strengths.items())
