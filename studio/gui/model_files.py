"""Optional weight files the user supplies: where they are, whether they are usable, their sha256.

No Qt here: the GUI's "Models" dialog, the CLI and the stages can all read this. The list lives
in an app-level settings file, ``<config dir>/models.json``; the config dir is
``$AVATAR_STUDIO_CONFIG_DIR`` when set, else ``$XDG_CONFIG_HOME/avatar-studio`` or
``~/.config/avatar-studio``. Writes are atomic (`studio.atomic`).

The default path of Avatar Studio needs none of these files; features that do need one ask
for it with `ModelFiles.require(key)`, which raises `MissingModelError` saying how to add it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_json
from ..errors import InputError, MissingModelError

SCHEMA_VERSION = 1
FILE_NAME = "models.json"


def config_dir() -> Path:
    """The app-level settings folder (not a project folder)."""
    env = os.environ.get("AVATAR_STUDIO_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "avatar-studio"


def shared_dir() -> Path | None:
    """The read-only `shared/` folder ($AVATAR_STUDIO_SHARED, else beside the repository), when present."""
    env = os.environ.get("AVATAR_STUDIO_SHARED")
    path = Path(env).expanduser() if env else Path(__file__).resolve().parents[2].parent / "shared"
    return path if path.is_dir() else None


@dataclass(frozen=True)
class ModelSpec:
    key: str
    """Id used in models.json and by code (`require("arcface")`)."""
    title: str
    """Name the user sees."""
    purpose: str
    """What the file is used for, in one sentence."""
    extensions: tuple[str, ...]
    """Accepted file name endings (lower case)."""
    how_to_get: str
    """Where a user finds the file."""
    default_rel: str | None = None
    """Path relative to the shared/ folder used when nothing is configured, if any."""


KNOWN: tuple[ModelSpec, ...] = (
    ModelSpec("stylegan2", "StyleGAN2 generator (FFHQ)",
              "The face prior of the StyleGAN engine (pivots, prior, PTI). Without it the StyleGAN "
              "engine trains its generator from scratch on your video.",
              (".pkl", ".pt", ".pth"),
              "NVIDIA's stylegan2-ada-pytorch ffhq.pkl, or a rosinality stylegan2-pytorch .pt checkpoint"),
    ModelSpec("clip", "CLIP (open_clip checkpoint)",
              "Text-driven edits (\"make her smile\") in the viewer and in StyleCLIP mappers.",
              (".pt", ".pth", ".bin", ".safetensors"),
              "an open_clip ViT-B-32 checkpoint (e.g. open_clip_pytorch_model.bin)"),
    ModelSpec("arcface", "ArcFace (face identity)",
              "The identity loss during training and the identity-similarity metric.",
              (".pt", ".pth"),
              "a MobileFaceNet/ArcFace state_dict (.pt)",
              default_rel="weights/arcface_mobilefacenet.pt"),
    ModelSpec("lpips", "LPIPS backbone (VGG16 / AlexNet)",
              "A true LPIPS perceptual loss and metric. Without it a lighter built-in perceptual loss is used.",
              (".pth", ".pt"),
              "torchvision's vgg16-397923af.pth or alexnet-owt-7be5be79.pth"),
    ModelSpec("flame", "FLAME head model",
              "FLAME expression/jaw sliders in the viewer (instead of the named expression sliders).",
              (".pkl",),
              "generic_model.pkl from flame.is.tue.mpg.de (free registration)"),
)
SPECS = {s.key: s for s in KNOWN}


@dataclass
class ModelEntry:
    spec: ModelSpec
    path: Path | None
    """The file in use (configured, else the default), or None."""
    source: str
    """"configured", "default" or "missing"."""
    ok: bool
    """True when the file exists and looks like the right format."""
    problem: str = ""
    """Why it is not usable, when not ok."""
    sha256: str = ""
    size: int = 0

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def status(self) -> str:
        if self.source == "missing":
            return "not configured"
        if not self.ok:
            return f"problem: {self.problem}"
        return "configured" if self.source == "configured" else "found (default)"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def check_file(spec: ModelSpec, path: Path) -> str:
    """Empty string when `path` looks usable for `spec`, else a short reason. Reads 4 bytes only."""
    if not path.exists():
        return "the file is gone"
    if not path.is_file():
        return "not a file"
    if not path.name.lower().endswith(spec.extensions):
        return f"expected a {' / '.join(spec.extensions)} file"
    if path.stat().st_size == 0:
        return "the file is empty"
    with open(path, "rb") as f:
        head = f.read(4)
    low = path.name.lower()
    if low.endswith(".pkl") and not head.startswith(b"\x80"):
        return "not a pickle file"
    if low.endswith((".pt", ".pth")) and not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        return "not a PyTorch checkpoint"
    return ""


class ModelFiles:
    """The user's list of optional weight files (models.json)."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else config_dir()
        self.file = self.folder / FILE_NAME
        self.data: dict = {"schema": SCHEMA_VERSION, "files": {}}
        if self.file.exists():
            try:
                data = json.loads(self.file.read_text("utf-8"))
                if isinstance(data, dict) and isinstance(data.get("files"), dict):
                    self.data = data
            except (OSError, ValueError):
                pass  # a damaged settings file: start empty, it is rewritten on the next change

    def save(self) -> None:
        write_json(self.file, self.data)

    def _record(self, key: str) -> dict | None:
        return self.data["files"].get(key)

    def entry(self, key: str) -> ModelEntry:
        spec = SPECS[key]
        rec = self._record(key)
        if rec:
            path, source = Path(rec["path"]), "configured"
        else:
            sd = shared_dir()
            path = sd / spec.default_rel if sd and spec.default_rel else None
            if path is None or not path.exists():
                return ModelEntry(spec, None, "missing", False, "not configured")
            source = "default"
            rec = {}
        problem = check_file(spec, path)
        if problem:
            return ModelEntry(spec, path, source, False, problem, rec.get("sha256", ""))
        st = path.stat()
        digest = rec.get("sha256", "")
        if not digest or rec.get("size") != st.st_size or rec.get("mtime") != int(st.st_mtime):
            digest = sha256_file(path)
            if source == "configured":  # remember it; the file changed or was never hashed
                self.data["files"][key] = {"path": str(path), "sha256": digest, "size": st.st_size,
                                           "mtime": int(st.st_mtime)}
                self.save()
        return ModelEntry(spec, path, source, True, "", digest, st.st_size)

    def entries(self) -> list[ModelEntry]:
        return [self.entry(s.key) for s in KNOWN]

    def set(self, key: str, path: str | os.PathLike) -> ModelEntry:
        """Configure `key` to use `path` (validated and hashed)."""
        if key not in SPECS:
            raise InputError(f"unknown model file '{key}'", f"known: {', '.join(SPECS)}")
        path = Path(path).expanduser().resolve()
        problem = check_file(SPECS[key], path)
        if problem:
            raise InputError(f"{path.name} cannot be used as {SPECS[key].title}: {problem}",
                             f"choose {SPECS[key].how_to_get}")
        st = path.stat()
        self.data["files"][key] = {"path": str(path), "sha256": sha256_file(path), "size": st.st_size,
                                   "mtime": int(st.st_mtime)}
        self.save()
        return self.entry(key)

    def remove(self, key: str) -> None:
        """Forget the configured file (the file itself is not deleted)."""
        if self.data["files"].pop(key, None) is not None:
            self.save()

    def path(self, key: str) -> Path | None:
        e = self.entry(key)
        return e.path if e.ok else None

    def require(self, key: str, feature: str = "") -> Path:
        e = self.entry(key)
        if e.ok and e.path is not None:
            return e.path
        what = f"{feature} needs" if feature else "this needs"
        if e.source == "missing":
            raise MissingModelError(f"{what} the {e.spec.title} file, which is not configured",
                                    f"add {e.spec.how_to_get} in the window's Models dialog "
                                    f"(or in {FILE_NAME} in {config_dir()})")
        raise MissingModelError(f"{what} the {e.spec.title} file, but {e.path} cannot be used: {e.problem}",
                                f"choose {e.spec.how_to_get}")
