"""Optional weight files the user supplies: what each unlocks, where it is, whether it is still the
file that was checked when it was added.

No Qt here: the CLI (`avatar-studio models`), the GUI's Models dialog and the stages all read this.
The list lives in an app-level settings file, ``<config dir>/models.json``; the config dir is
``$AVATAR_STUDIO_CONFIG_DIR`` when set, else ``$XDG_CONFIG_HOME/avatar-studio`` or
``~/.config/avatar-studio``. Writes are atomic (`studio.atomic`).

`ModelFiles.set(key, path)` checks the file's *format* (a StyleGAN2 pickle really holds a
generator, an ArcFace file really loads into MobileFaceNet, ...; see `CHECKS`: none of them runs
code from the file) and records its sha256, size and mtime. Listing compares size
and mtime with the record and, when they differ, the sha256: a file that changed since it was
added is reported and not used until it is added again.

The default path of Avatar Studio needs none of these files; features that do need one ask
for it with `ModelFiles.require(key)`, which raises `MissingModelError` saying how to add it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_json
from .errors import InputError, MissingModelError

SCHEMA_VERSION = 2
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
    if env:
        path = Path(env).expanduser()
    elif getattr(sys, "frozen", False):  # a bundle has no repository beside it
        return None
    else:
        path = Path(__file__).resolve().parents[1].parent / "shared"
    return path if path.is_dir() else None


@dataclass(frozen=True)
class ModelSpec:
    key: str
    """Id used in models.json and by code (`require("arcface")`)."""
    title: str
    """Name the user sees."""
    purpose: str
    """What the file unlocks, in one or two sentences."""
    extensions: tuple[str, ...]
    """Accepted file name endings (lower case)."""
    how_to_get: str
    """Where a user finds the file."""
    default_rel: str | None = None
    """Path relative to the shared/ folder used when nothing is configured, if any."""
    name_hints: tuple[str, ...] = ()
    """Lower-case pieces of usual file names; `add_folder` tries these specs first for such files."""


KNOWN: tuple[ModelSpec, ...] = (
    ModelSpec("stylegan2", "StyleGAN2 generator (FFHQ)",
              "The face prior of the StyleGAN engine: the Subject prior stage imports it and Pivotal tuning "
              "starts from it. Without it the StyleGAN "
              "engine trains its generator from scratch on your video.",
              (".pkl", ".pt", ".pth", ".safetensors"),
              "NVIDIA's stylegan2-ada-pytorch ffhq.pkl, or a rosinality stylegan2-pytorch .pt checkpoint",
              name_hints=("ffhq", "stylegan", "550000", "network-snapshot")),
    ModelSpec("clip", "CLIP (open_clip checkpoint)",
              "Text-driven edits (\"make her smile\") in the viewer and in StyleCLIP mappers.",
              (".pt", ".pth", ".bin", ".safetensors"),
              "an open_clip ViT-B-32 checkpoint (e.g. open_clip_pytorch_model.bin)",
              name_hints=("clip", "vit-b", "vit_b")),
    ModelSpec("arcface", "ArcFace (face identity)",
              "The identity loss during training and the identity-similarity metric.",
              (".pt", ".pth"),
              "a MobileFaceNet/ArcFace state_dict (.pt)",
              default_rel="weights/arcface_mobilefacenet.pt",
              name_hints=("arcface", "mobilefacenet", "facenet")),
    ModelSpec("lpips", "LPIPS backbone (VGG16 / AlexNet)",
              "A true LPIPS perceptual loss and metric. Without it a lighter built-in perceptual loss is used.",
              (".pth", ".pt"),
              "torchvision's vgg16-397923af.pth or alexnet-owt-7be5be79.pth",
              name_hints=("vgg", "alexnet", "lpips")),
    ModelSpec("flame", "FLAME head model",
              "FLAME expression/jaw sliders in the viewer (instead of the named expression sliders).",
              (".pkl",),
              "generic_model.pkl from flame.is.tue.mpg.de (free registration)",
              name_hints=("generic_model", "flame")),
    ModelSpec("flame-mediapipe", "FLAME ↔ mediapipe landmark embedding",
              "Fits FLAME to the tracked mediapipe landmarks (needed with the FLAME head model).",
              (".npz",),
              "mediapipe_landmark_embedding.npz (distributed with the FLAME fitting code of MICA / metrical-tracker)",
              name_hints=("mediapipe_landmark_embedding", "landmark_embedding")),
)
SPECS = {s.key: s for s in KNOWN}

# What `ModelEntry.state` can be, and what the user reads for it.
STATE_TEXT = {
    "not-configured": "not configured",
    "default": "found (default)",
    "present": "present, unchanged since added",
    "changed": "CHANGED since it was added",
    "gone": "MISSING: the file is gone",
    "invalid": "problem",
}


@dataclass
class ModelEntry:
    spec: ModelSpec
    path: Path | None
    """The file in use (configured, else the default), or None."""
    source: str
    """"configured", "default" or "missing"."""
    ok: bool
    """True when the file exists, looks like the right format and is the file that was added."""
    problem: str = ""
    """Why it is not usable, when not ok."""
    sha256: str = ""
    """The file's sha256 now (empty when it cannot be read)."""
    size: int = 0
    state: str = "not-configured"
    """One of `STATE_TEXT`'s keys."""
    record: dict = field(default_factory=dict)
    """What models.json remembers (path, sha256, size, mtime, added, format)."""

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def changed(self) -> bool:
        return self.state == "changed"

    @property
    def status(self) -> str:
        if self.state == "invalid":
            return f"problem: {self.problem}"
        return STATE_TEXT[self.state]


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
    """Cheap check (name and first bytes): empty string when `path` may be usable for `spec`, else a reason."""
    if not path.exists():
        return "the file is gone"
    if not path.is_file():
        return "not a file"
    if not path.name.lower().endswith(spec.extensions):
        return f"expected a {' / '.join(spec.extensions)} file"
    if path.stat().st_size == 0:
        return "the file is empty"
    with open(path, "rb") as f:
        head = f.read(16)
    low = path.name.lower()
    if low.endswith(".pkl") and not head.startswith(b"\x80"):
        return "not a pickle file"
    if low.endswith((".pt", ".pth", ".bin")) and not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        return "not a PyTorch checkpoint"
    if low.endswith(".npz") and not head.startswith(b"PK\x03\x04"):
        return "not a NumPy .npz archive"
    if low.endswith(".safetensors"):
        n = int.from_bytes(head[:8], "little") if len(head) >= 9 else 0
        if not (2 <= n < 100_000_000 and head[8:9] == b"{"):
            return "not a safetensors file"
    return ""


def validate(key: str, path: str | os.PathLike) -> str:
    """Full format check of `path` as the file `key` (see `CHECKS`). Returns a short description
    of what the file is; raises `InputError` with the reason when it is not."""
    if key not in SPECS:
        raise InputError(f"unknown model file '{key}'", f"known: {', '.join(SPECS)}")
    spec = SPECS[key]
    path = Path(path)
    problem = check_file(spec, path)
    if not problem:
        try:
            return CHECKS[key](path)
        except FormatProblem as exc:
            problem = str(exc)
    raise InputError(f"{path.name} cannot be used as {spec.title}: {_one_line(problem)}",
                     f"choose {spec.how_to_get}")


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ------------------------------------------------------------------ format checks (none runs code from a file)
class FormatProblem(ValueError):
    """The file is not what it should be; the message says why, in a few words."""


def _optional_module(name: str):
    """`models.<...>` modules other engineers add over time; None while absent."""
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise


def _torch_state(path: Path) -> dict:
    """The dict in a weights file: safetensors, or torch.save read with weights_only (no code runs)."""
    import torch

    if path.name.lower().endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 — safetensors has its own error types
            raise FormatProblem(f"unreadable safetensors file ({exc})") from exc
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except Exception as exc:  # noqa: BLE001 — pickle, zip and torch errors all mean "not a weights file"
        raise FormatProblem(f"not a plain PyTorch weights file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise FormatProblem(f"the file holds a {type(data).__name__}, not a state_dict")
    inner = data.get("state_dict")
    if isinstance(inner, dict) and len(data) <= 4:
        data = inner
    return {(k[7:] if isinstance(k, str) and k.startswith("module.") else k): v for k, v in data.items()}


def _check_stylegan2(path: Path) -> str:
    from models.stylegan2.checkpoint import CheckpointError, load_generator

    try:
        _, cfg = load_generator(path)
    except CheckpointError as exc:
        msg = str(exc).replace(f"{path}: ", "").replace(f"{path} ", "the file ").split("; expected an NVIDIA")[0]
        msg = re.sub(r"\[([^\],]+), [^\]]{40,}\]", r"[\1, …]", msg)  # long key lists: the first key is enough
        raise FormatProblem(msg) from exc
    return f"StyleGAN2 generator, {cfg.img_resolution} px, w_dim {cfg.w_dim}"


def _check_arcface(path: Path) -> str:
    import torch

    from models.arcface import EMBEDDING_DIM, INPUT_SIZE, load_arcface

    try:
        net = load_arcface(path)
    except RuntimeError as exc:  # strict load: names or shapes differ from MobileFaceNet
        first = str(exc).strip().splitlines()
        detail = " ".join(first[1:2]) if len(first) > 1 else first[0] if first else ""
        raise FormatProblem(f"its tensors do not fit the ArcFace MobileFaceNet ({detail})") from exc
    except (AttributeError, TypeError) as exc:
        raise FormatProblem("it is not a state_dict of tensors") from exc
    except Exception as exc:  # noqa: BLE001 — unpickling refused or a damaged file
        raise FormatProblem(f"not a plain PyTorch weights file ({type(exc).__name__}: {exc})") from exc
    with torch.no_grad():
        emb = net(torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0)))
    if emb.shape != (2, EMBEDDING_DIM) or not torch.isfinite(emb).all():
        raise FormatProblem("the network does not give finite 128-d embeddings")
    return f"ArcFace MobileFaceNet, {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters"


def _check_lpips(path: Path) -> str:
    from models.perceptual import Backbone, detect_arch

    state = _torch_state(path)
    try:
        arch = detect_arch(state)
    except ValueError as exc:
        raise FormatProblem(str(exc)) from exc
    name = "VGG16" if arch == "vgg" else "AlexNet"
    feats = {k: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
    try:
        Backbone(arch).load_state_dict(feats, strict=True)
    except RuntimeError as exc:
        raise FormatProblem(f"its features.* tensors do not match torchvision's {name} "
                            f"({' '.join(str(exc).splitlines()[1:2])})") from exc
    return f"{name} backbone (torchvision state_dict)"


_CLIP_KEYS = ("token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight")


def _check_clip(path: Path) -> str:
    loader = _optional_module("models.clip_loader")
    if loader is not None and hasattr(loader, "check_clip_file"):
        try:
            info = loader.check_clip_file(path)
        except Exception as exc:  # noqa: BLE001 — the loader's own refusal, whatever its type
            raise FormatProblem(str(exc)) from exc
        params = getattr(info, "parameters", None)
        return f"CLIP checkpoint, {params / 1e6:.1f} M parameters" if isinstance(params, int) else "CLIP checkpoint"
    state = _torch_state(path)
    missing = [k for k in _CLIP_KEYS if k not in state]
    if not any(isinstance(k, str) and k.startswith("visual.") for k in state):
        missing.append("visual.*")
    if not any(isinstance(k, str) and k.startswith("transformer.resblocks.") for k in state):
        missing.append("transformer.resblocks.*")
    if missing:
        raise FormatProblem(f"not a CLIP checkpoint: it has no {', '.join(missing)}")
    tok, proj, pos = state["token_embedding.weight"], state["text_projection"], state["positional_embedding"]
    if tok.ndim != 2 or proj.ndim != 2 or pos.ndim != 2 or tok.shape[1] != proj.shape[0] != pos.shape[1]:
        raise FormatProblem("not a CLIP checkpoint: the text tower's tensor shapes do not fit together")
    return f"CLIP checkpoint (vocabulary {tok.shape[0]}, embedding {proj.shape[1]})"


# The globals a FLAME generic_model.pkl refers to: numpy arrays, scipy sparse matrices, chumpy arrays.
_FLAME_GLOBAL_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "scipy.sparse.csc",
                         "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse.coo",
                         "scipy.sparse._coo", "copy_reg", "copyreg", "_codecs")
_FLAME_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


def _scan_flame_pickle(path: Path) -> str:
    """Walk the pickle's opcodes without building anything: every global it names must be numpy,
    scipy.sparse or chumpy, and the FLAME keys must be there."""
    import pickletools

    strings: set[str] = set()
    recent: list[str | None] = [None, None]  # the values of the last two pushes (None: not a string)
    memo: dict[int, str | None] = {}
    try:
        with open(path, "rb") as f:
            for op, arg, _pos in pickletools.genops(f):
                name = op.name
                if name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                    memo[len(memo) if name == "MEMOIZE" else int(arg)] = recent[-1]
                    continue
                if name == "FRAME":
                    continue
                value = None
                if ("STRING" in name or "UNICODE" in name) and isinstance(arg, (str, bytes)):
                    value = arg.decode("latin1") if isinstance(arg, bytes) else arg
                    if len(value) < 64:
                        strings.add(value)
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    value = memo.get(int(arg))
                if name in ("GLOBAL", "INST"):
                    module, attr = str(arg).split(" ", 1)
                elif name == "STACK_GLOBAL":
                    module, attr = recent[-2] or "?", recent[-1] or "?"
                else:
                    recent = [recent[-1], value]
                    continue
                recent = [recent[-1], None]
                ok = module in _FLAME_GLOBAL_MODULES or module == "chumpy" or module.startswith("chumpy.") or \
                    (module in ("__builtin__", "builtins") and attr in ("object", "set", "frozenset"))  # chumpy's _dirty_vars
                if not ok:
                    raise FormatProblem(f"the pickle refers to {module}.{attr}, which a FLAME model never does "
                                        f"(refused without loading it)")
    except FormatProblem:
        raise
    except (ValueError, EOFError) as exc:
        raise FormatProblem(f"a damaged or truncated pickle ({exc})") from exc
    missing = [k for k in _FLAME_KEYS if k not in strings]
    if missing:
        raise FormatProblem(f"not a FLAME model: it has no {', '.join(missing)}")
    return "FLAME model pickle"


def _check_flame(path: Path) -> str:
    reader = _optional_module("models.flame_pickle")
    if reader is None or not hasattr(reader, "read_flame_model"):
        return _scan_flame_pickle(path)
    try:  # the reader's restricted unpickler refuses any global outside its allow-list
        data = reader.read_flame_model(path)
    except Exception as exc:  # noqa: BLE001 — FlameFileError, or anything a damaged file raises
        raise FormatProblem(str(exc).replace(f"{path.name}: ", "")) from exc
    return (f"FLAME model, {data.v_template.shape[0]} vertices, {data.shapedirs.shape[-1]} shape and "
            f"{data.exprdirs.shape[-1]} expression components")


def _check_flame_mediapipe(path: Path) -> str:
    import zipfile

    import numpy as np

    reader = _optional_module("models.flame_pickle")
    if reader is not None and hasattr(reader, "read_mediapipe_embedding"):
        try:
            emb = reader.read_mediapipe_embedding(path)
        except Exception as exc:  # noqa: BLE001 — the reader's own refusal
            raise FormatProblem(str(exc).replace(f"{path.name}: ", "")) from exc
        return f"mediapipe landmark embedding ({len(emb.face_idx)} landmarks)"
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("lmk_face_idx", "lmk_b_coords") if k not in z.files]
            if missing:
                raise FormatProblem(f"not a landmark embedding: it has no {', '.join(missing)} "
                                    f"(it holds {', '.join(z.files[:6]) or 'nothing'})")
            idx, bary = z["lmk_face_idx"], z["lmk_b_coords"]
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise FormatProblem(f"not a readable .npz of plain arrays ({exc})") from exc
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or bary.shape != (idx.shape[0], 3):
        raise FormatProblem(f"lmk_face_idx {idx.shape} and lmk_b_coords {bary.shape} do not fit together "
                            f"(expected (N,) integers and (N, 3))")
    return f"mediapipe landmark embedding ({idx.shape[0]} landmarks)"


CHECKS = {"stylegan2": _check_stylegan2, "clip": _check_clip, "arcface": _check_arcface, "lpips": _check_lpips,
          "flame": _check_flame, "flame-mediapipe": _check_flame_mediapipe}
"""key -> check(path) returning a short description of the file or raising `FormatProblem`."""


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
        self.data["schema"] = SCHEMA_VERSION
        write_json(self.file, self.data)

    def _record(self, key: str) -> dict | None:
        rec = self.data["files"].get(key)
        return rec if isinstance(rec, dict) and rec.get("path") else None

    def entry(self, key: str) -> ModelEntry:
        """The state of one file: configured or default, present, changed since added, gone."""
        spec = SPECS[key]
        rec = self._record(key)
        if rec is None:
            sd = shared_dir()
            path = sd / spec.default_rel if sd and spec.default_rel else None
            if path is None or not path.exists():
                return ModelEntry(spec, None, "missing", False, "not configured")
            problem = check_file(spec, path)
            if problem:
                return ModelEntry(spec, path, "default", False, problem, state="invalid")
            return ModelEntry(spec, path, "default", True, "", sha256_file(path), path.stat().st_size,
                              state="default")
        path = Path(rec["path"])
        if not path.exists():
            return ModelEntry(spec, path, "configured", False, f"the file is gone (was {path})",
                              rec.get("sha256", ""), state="gone", record=rec)
        problem = check_file(spec, path)
        if problem:
            return ModelEntry(spec, path, "configured", False, problem, state="invalid", record=rec)
        st = path.stat()
        same_stat = rec.get("size") == st.st_size and rec.get("mtime") == st.st_mtime_ns
        digest = rec.get("sha256", "") if same_stat else sha256_file(path)
        if digest != rec.get("sha256"):
            return ModelEntry(spec, path, "configured", False,
                              f"the file changed since it was added (sha256 {digest[:12]}… instead of "
                              f"{str(rec.get('sha256'))[:12]}…); add it again to check and accept it",
                              digest, st.st_size, state="changed", record=rec)
        if not same_stat:  # touched or copied, same content: remember the new size/mtime
            rec.update(size=st.st_size, mtime=st.st_mtime_ns)
            self.save()
        return ModelEntry(spec, path, "configured", True, "", digest, st.st_size, state="present", record=rec)

    def entries(self) -> list[ModelEntry]:
        return [self.entry(s.key) for s in KNOWN]

    def set(self, key: str, path: str | os.PathLike) -> ModelEntry:
        """Configure `key` to use `path` after checking its format; records sha256, size and mtime."""
        if key not in SPECS:
            raise InputError(f"unknown model file '{key}'", f"known: {', '.join(SPECS)}")
        path = Path(path).expanduser().resolve()
        fmt = validate(key, path)
        self._remember(key, path, fmt)
        self.save()
        return self.entry(key)

    def _remember(self, key: str, path: Path, fmt: str) -> None:
        st = path.stat()
        self.data["files"][key] = {"path": str(path), "sha256": sha256_file(path), "size": st.st_size,
                                   "mtime": st.st_mtime_ns, "format": fmt,
                                   "added": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def add_folder(self, folder: str | os.PathLike) -> tuple[list[ModelEntry], list[tuple[Path, str]]]:
        """Import every recognised weight file under `folder` (recursively).

        Each candidate (a file with one of the known extensions) is checked against the specs
        whose usual file names it matches first, then against the others; the first spec whose
        full format check passes takes it. Returns (the entries added, [(file, why it was skipped)]).
        Raises `InputError` when the folder does not exist or holds no recognised file.
        """
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder", "give the folder that holds the weight files")
        exts = tuple({e for s in KNOWN for e in s.extensions})
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(exts))
        found: dict[str, Path] = {}
        skipped: list[tuple[Path, str]] = []
        for p in files:
            low = p.name.lower()
            specs = [s for s in KNOWN if low.endswith(s.extensions)]
            specs.sort(key=lambda s: not any(h in low for h in s.name_hints))
            reasons = []
            for s in specs:
                try:
                    fmt = validate(s.key, p)
                except InputError as exc:
                    reasons.append(f"{s.key}: {exc.message.split(': ', 1)[-1]}")
                    continue
                if s.key in found:
                    skipped.append((p, f"another {s.key} file was found first ({found[s.key].name})"))
                else:
                    found[s.key] = p
                    self._remember(s.key, p, fmt)
                break
            else:
                skipped.append((p, "not recognised (" + "; ".join(reasons) + ")"))
        if not found:
            raise InputError(f"no recognised model file in {folder}",
                             "known files: " + "; ".join(s.how_to_get for s in KNOWN))
        self.save()
        return [self.entry(k) for k in found], skipped

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
                                    f"add {e.spec.how_to_get} with `avatar-studio models add {key} FILE` or "
                                    f"in the window's Models dialog")
        raise MissingModelError(f"{what} the {e.spec.title} file, but {e.path} cannot be used: {e.problem}",
                                f"choose {e.spec.how_to_get} in the Models dialog, or "
                                f"`avatar-studio models add {key} FILE`")


# ------------------------------------------------------------------ front door for the stages
def model_path(key: str) -> Path | None:
    """The usable file for `key`, or None (not configured, gone, changed, or an unreadable settings file)."""
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


def flame_paths() -> tuple[Path, Path] | None:
    """(generic_model.pkl, mediapipe_landmark_embedding.npz) when both FLAME files are usable, else None."""
    model, emb = model_path("flame"), model_path("flame-mediapipe")
    return (model, emb) if model is not None and emb is not None else None
