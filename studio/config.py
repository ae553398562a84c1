"""Config dataclass helpers: documented fields, hashing, and round-trips through JSON.

Every stage has a config dataclass of plain types. Each field carries its help text in
`metadata["help"]` (read by the CLI's `--help`, the GUI's settings form and the docs).
Presets are named instances (`preview` for a CPU, `quality` for a CUDA GPU).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T")


def opt(default: Any, help: str, *, choices: tuple | None = None, minimum: float | None = None,
        maximum: float | None = None, advanced: bool = False) -> Any:
    """A documented config field. `advanced` fields are folded away in the GUI form."""
    md = {"help": help, "choices": choices, "min": minimum, "max": maximum, "advanced": advanced}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=md)
    return dataclasses.field(default=default, metadata=md)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_hash(cfg: Any) -> str:
    """Short hash of a config dataclass (or of its dict)."""
    blob = json.dumps(cfg if isinstance(cfg, dict) else to_dict(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def field_help(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def _coerce(value: Any, typ: Any, name: str) -> Any:
    origin = typing.get_origin(typ)
    if typ is bool or typ == "bool":
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise InputError(f"setting {name} must be true or false, not {value!r}")
        return bool(value)
    if typ in (int, "int"):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InputError(f"setting {name} must be a whole number, not {value!r}") from None
    if typ in (float, "float"):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"setting {name} must be a number, not {value!r}") from None
    if typ in (str, "str"):
        return str(value)
    if origin is typing.Union or str(typ).startswith(("typing.Optional", "float | None", "int | None", "str | None")):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if not args:  # string annotation form, e.g. "float | None"
            base = str(typ).split("|")[0].strip()
            args = [{"float": float, "int": int, "str": str}.get(base, str)]
        return _coerce(value, args[0], name)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        (inner, *_) = typing.get_args(typ) or (str,)
        return origin(_coerce(v, inner, name) for v in value)
    return value


def _label(cls: type) -> str:
    """A settings class as the user knows it: PivotsConfig -> "pivots", FlameFitConfig -> "flame fit"."""
    name = cls.__name__.removesuffix("Config") or cls.__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()


def from_dict(cls: type[T], data: dict, base: T | None = None, strict: bool = True) -> T:
    """Build `cls` from a dict (e.g. read back from a project), starting from `base` or defaults.

    Unknown keys raise InputError when `strict`, else they are ignored (older projects).
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown and strict:
        raise InputError(f"unknown setting(s) for {_label(cls)}: {', '.join(sorted(unknown))}",
                         f"known settings: {', '.join(sorted(names))}")
    out = dataclasses.replace(base) if base is not None else cls()
    for k, v in data.items():
        if k not in names:
            continue
        v = _coerce(v, hints.get(k, type(v)), k)
        f = next(f for f in dataclasses.fields(cls) if f.name == k)
        choices = f.metadata.get("choices")
        if choices and v not in choices:
            raise InputError(f"setting {k} must be one of {', '.join(map(str, choices))}, not {v!r}")
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if lo is not None and v is not None and v < lo:
            raise InputError(f"setting {k} must be at least {lo}, not {v}")
        if hi is not None and v is not None and v > hi:
            raise InputError(f"setting {k} must be at most {hi}, not {v}")
        setattr(out, k, v)
    return out


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """Parse CLI `--set key=value` items."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"cannot read setting {item!r}", "write it as name=value, e.g. --set fps=25")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out
