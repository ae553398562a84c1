"""Per-frame FLAME parameter files: read the common layouts, write our own, and normalise a
sequence to the subject's distribution.

Layouts understood (N frames; a leading batch axis of 1 per frame is fine):

    avatar-studio   npz: format = "avatar-studio-flame/1", expression (N, E), jaw (N, 3),
                    pose (N, 3) head rotation, fps; optional eyes (N, 6), eyelids (N, 2),
                    shape (S,), rest_expression (E,) + rest_jaw (3,) (the subject's rest face:
                    what FLAME controls measure from, `studio.flame.controls`). Rotations are
                    axis-angle in radians in FLAME's frame (y up, z towards the viewer). Written
                    by the `flame` step (`write_sequence`).
    DECA / EMOCA    exp (N, 50) + pose (N, 6) = global rotation 3 + jaw 3
                    (EMOCA's expcode / posecode names too)
    SMIRK           expression_params (N, 50) + jaw_params (N, 3), optional pose_params (N, 3),
                    eyelid_params (N, 2)
    metrical-tracker  exp (N, 100) + jaw (N, 3 axis-angle or N, 6 as pytorch3d's 6D rotation);
                    its per-frame dicts nest these under "flame"

Files: .npz (read with allow_pickle=False), or .npy / .pkl holding a dict of arrays, read with
a restricted unpickler that builds numpy arrays and plain containers only and refuses every other
class (nothing in the file runs); or a folder of per-frame files of one layout, in name order.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.flame_pickle import FlameFileError, safe_unpickle

from ..atomic import write_with
from ..errors import InputError

FORMAT = "avatar-studio-flame/1"
LAYOUTS = ("avatar-studio npz (format, expression, jaw, pose, fps)", "DECA/EMOCA (exp + pose)",
           "SMIRK (expression_params + jaw_params)", "metrical-tracker (exp + jaw)")
LAYOUT_HINT = "FLAME sequences understood: " + "; ".join(LAYOUTS)


@dataclass
class FlameSequence:
    expression: np.ndarray           # (N, E) expression coefficients
    jaw: np.ndarray                  # (N, 3) jaw axis-angle, radians
    pose: np.ndarray | None = None   # (N, 3) head rotation axis-angle, when the file has it
    fps: float | None = None         # frame rate, when the file says
    eyes: np.ndarray | None = None   # (N, 6)
    eyelids: np.ndarray | None = None  # (N, 2)
    layout: str = "avatar-studio"    # which layout the file was read as
    source: str = ""                 # file name
    rest_expression: np.ndarray | None = None  # (E,) the subject's rest face (our layout only)
    rest_jaw: np.ndarray | None = None         # (3,)

    @property
    def n_frames(self) -> int:
        return int(self.expression.shape[0])


# ----------------------------------------------------------------------------------------------
# rotations

def rotation_6d_to_axis_angle(d6: np.ndarray) -> np.ndarray:
    """pytorch3d's 6D rotation (first two rows of the matrix, Gram-Schmidt) (N, 6) → axis-angle (N, 3)."""
    a1, a2 = d6[:, :3], d6[:, 3:]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=1, keepdims=True), 1e-12)
    a2 = a2 - (b1 * a2).sum(1, keepdims=True) * b1
    b2 = a2 / np.maximum(np.linalg.norm(a2, axis=1, keepdims=True), 1e-12)
    b3 = np.cross(b1, b2)
    R = np.stack([b1, b2, b3], 1)                                   # rows
    w = np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], 1)
    cos = np.clip((np.trace(R, axis1=1, axis2=2) - 1) / 2, -1, 1)
    theta = np.arccos(cos)
    sin = np.sin(theta)
    factor = np.where(sin > 1e-6, theta / (2 * np.maximum(sin, 1e-12)), 0.5)
    return w * factor[:, None]


# ----------------------------------------------------------------------------------------------
# reading

def _bad(path: Path, what: str) -> InputError:
    return InputError(f"{path.name}: {what}", LAYOUT_HINT)


def _load_pickled(path: Path, data: bytes) -> dict:
    try:
        obj = safe_unpickle(data, object_arrays=True)
    except FlameFileError as exc:
        raise _bad(path, f"refused: {exc}") from None
    except Exception as exc:
        raise _bad(path, f"is not a readable pickle ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.size == 1:
        obj = obj.reshape(()).item()
    if not isinstance(obj, dict):
        raise _bad(path, f"holds a {type(obj).__name__}, not a dict of FLAME parameters")
    return obj


def _load_dict(path: Path) -> dict:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            except ValueError as exc:
                raise _bad(path, f"holds pickled Python objects, which are not read from .npz ({exc})") from None
        if suffix == ".npy":
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise _bad(path, f"is a .npy of format version {version}, not read here (use .npz)")
                shape, _, dtype = read_header(f)
                if dtype.hasobject:  # a dict saved with np.save: a pickle after the header
                    return _load_pickled(path, f.read())
            raise _bad(path, f"is a plain array of shape {shape}; a sequence needs named parameters "
                             "(save a dict, or an .npz)")
        if suffix in (".pkl", ".pickle"):
            return _load_pickled(path, path.read_bytes())
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _bad(path, f"cannot be read ({exc})") from None
    raise _bad(path, f"has an unknown file type '{suffix}' (use .npz, .npy or .pkl)")


def _frames(value, path: Path, key: str, width: int | None = None) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise _bad(path, f"'{key}' is not numeric")
    a = a.astype(np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim > 2:  # (N, 1, D) per-frame batches
        a = a.reshape(a.shape[0], -1) if np.prod(a.shape[1:-1]) == 1 else a
    if a.ndim != 2 or (width is not None and a.shape[1] < width):
        raise _bad(path, f"'{key}' has shape {np.asarray(value).shape}, expected (frames, {width or 'D'})")
    if not np.all(np.isfinite(a)):
        raise _bad(path, f"'{key}' holds NaN or infinite values")
    return a


def _missing(path: Path, layout: str, key: str) -> InputError:
    return _bad(path, f"looks like {layout} but has no '{key}'")


def parse_sequence(d: dict, path: Path) -> FlameSequence:
    """A dict of arrays in one of the known layouts → `FlameSequence`."""
    d = {str(k): v for k, v in d.items()}
    if isinstance(d.get("flame"), dict):  # metrical-tracker's per-frame checkpoint
        d = {**d, **{str(k): v for k, v in d["flame"].items()}}
    fps = float(np.asarray(d["fps"]).reshape(-1)[0]) if "fps" in d and np.asarray(d["fps"]).size == 1 else None

    def opt(key: str, width: int) -> np.ndarray | None:
        return _frames(d[key], path, key, width) if key in d else None

    fmt = d.get("format")
    if fmt is not None:
        fmt = str(np.asarray(fmt).reshape(-1)[0]) if np.asarray(fmt).size == 1 else str(fmt)
        if not fmt.startswith("avatar-studio-flame/"):
            raise _bad(path, f"has format '{fmt}', expected '{FORMAT}'")
        if fmt != FORMAT:
            raise _bad(path, f"is {fmt}, newer than this app reads ({FORMAT}); update the app")
        for k in ("expression", "jaw"):
            if k not in d:
                raise _missing(path, "an avatar-studio sequence", k)
        seq = FlameSequence(_frames(d["expression"], path, "expression"), _frames(d["jaw"], path, "jaw", 3)[:, :3],
                            opt("pose", 3), fps, opt("eyes", 6), opt("eyelids", 2), "avatar-studio")
        if "rest_expression" in d or "rest_jaw" in d:
            for k in ("rest_expression", "rest_jaw"):
                if k not in d:
                    raise _missing(path, "an avatar-studio sequence with a rest face", k)
            rest_e = _frames(d["rest_expression"], path, "rest_expression")
            rest_j = _frames(d["rest_jaw"], path, "rest_jaw", 3)
            if len(rest_e) != 1 or len(rest_j) != 1 or rest_e.shape[1] != seq.expression.shape[1]:
                raise _bad(path, f"'rest_expression' / 'rest_jaw' have shapes {rest_e.shape} / {rest_j.shape}, "
                                 f"expected ({seq.expression.shape[1]},) / (3,)")
            seq = replace(seq, rest_expression=rest_e[0], rest_jaw=rest_j[0, :3])
    elif "expression_params" in d:
        if "jaw_params" not in d:
            raise _missing(path, "a SMIRK sequence", "jaw_params")
        seq = FlameSequence(_frames(d["expression_params"], path, "expression_params"),
                            _frames(d["jaw_params"], path, "jaw_params", 3)[:, :3], opt("pose_params", 3), fps,
                            None, opt("eyelid_params", 2), "SMIRK")
    elif "exp" in d or "expcode" in d:
        ek = "exp" if "exp" in d else "expcode"
        exp = _frames(d[ek], path, ek)
        pk = "pose" if "pose" in d else "posecode" if "posecode" in d else None
        if pk is not None:
            pose = _frames(d[pk], path, pk, 6)
            seq = FlameSequence(exp, pose[:, 3:6], pose[:, :3], fps, None, None, "DECA/EMOCA")
        elif "jaw" in d:
            jaw = _frames(d["jaw"], path, "jaw", 3)
            jaw = rotation_6d_to_axis_angle(jaw[:, :6]) if jaw.shape[1] == 6 else jaw[:, :3]
            eyes = opt("eyes", 6)
            if eyes is not None and eyes.shape[1] == 12:
                eyes = np.concatenate([rotation_6d_to_axis_angle(eyes[:, :6]), rotation_6d_to_axis_angle(eyes[:, 6:])], 1)
            seq = FlameSequence(exp, jaw, None, fps, eyes, opt("eyelids", 2), "metrical-tracker")
        else:
            raise _bad(path, f"has '{ek}' but neither 'pose' (DECA/EMOCA: global 3 + jaw 3) nor 'jaw' "
                             "(metrical-tracker)")
    else:
        keys = ", ".join(sorted(d)[:12]) or "none"
        raise _bad(path, f"has no FLAME expression key ('expression', 'expression_params', 'exp' or 'expcode'); "
                         f"its keys: {keys}")
    n = seq.n_frames
    for name in ("jaw", "pose", "eyes", "eyelids"):
        x = getattr(seq, name)
        if x is not None and len(x) != n:
            raise _bad(path, f"has {n} frames of expression but {len(x)} of {name}")
    return replace(seq, source=path.name)


def read_sequence(path: str | os.PathLike) -> FlameSequence:
    """Read a FLAME parameter sequence (a file, or a folder of per-frame files)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"the FLAME sequence {path} does not exist", LAYOUT_HINT)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".npz", ".npy", ".pkl", ".pickle"))
        if not files:
            raise InputError(f"the folder {path} holds no .npz / .npy / .pkl FLAME files", LAYOUT_HINT)
        parts = [parse_sequence(_load_dict(f), f) for f in files]
        if len({p.layout for p in parts}) > 1:
            raise InputError(f"the folder {path} mixes FLAME layouts ({', '.join(sorted({p.layout for p in parts}))})",
                             LAYOUT_HINT)

        def cat(name):
            xs = [getattr(p, name) for p in parts]
            return None if any(x is None for x in xs) else np.concatenate(xs)
        return FlameSequence(cat("expression"), cat("jaw"), cat("pose"), parts[0].fps, cat("eyes"), cat("eyelids"),
                             parts[0].layout, path.name)
    return parse_sequence(_load_dict(path), path)


def write_sequence(path: str | os.PathLike, seq: FlameSequence, shape: np.ndarray | None = None) -> Path:
    """Write `seq` in our layout (atomic .npz)."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise InputError(f"{path.name}: FLAME sequences are written as .npz")
    arrays = {"format": np.array(FORMAT), "expression": np.asarray(seq.expression, np.float32),
              "jaw": np.asarray(seq.jaw, np.float32),
              "pose": np.asarray(seq.pose if seq.pose is not None else np.zeros((seq.n_frames, 3)), np.float32),
              "fps": np.array(float(seq.fps or 0.0))}
    if seq.eyes is not None:
        arrays["eyes"] = np.asarray(seq.eyes, np.float32)
    if seq.eyelids is not None:
        arrays["eyelids"] = np.asarray(seq.eyelids, np.float32)
    if shape is not None:
        arrays["shape"] = np.asarray(shape, np.float32)
    if seq.rest_expression is not None and seq.rest_jaw is not None:
        arrays["rest_expression"] = np.asarray(seq.rest_expression, np.float32)
        arrays["rest_jaw"] = np.asarray(seq.rest_jaw, np.float32)
    write_with(path, lambda tmp: np.savez(tmp, **arrays))
    return path


def sequence_from_fit(fit, fps: float) -> FlameSequence:
    """A `FlameFit` (studio.flame.fit) as a sequence with one row per tracked frame; frames that
    were not fitted (no face) repeat the nearest fitted frame."""
    rows = np.flatnonzero(fit.fitted)
    if len(rows) == 0:
        raise InputError("no fitted frame to export")
    all_rows = np.arange(len(fit.fitted))
    nearest = rows[np.clip(np.searchsorted(rows, all_rows), 0, len(rows) - 1)]
    before = rows[np.clip(np.searchsorted(rows, all_rows) - 1, 0, len(rows) - 1)]
    nearest = np.where(np.abs(before - all_rows) < np.abs(nearest - all_rows), before, nearest)
    return FlameSequence(expression=fit.expression[nearest], jaw=fit.jaw[nearest], pose=fit.rotation[nearest],
                         fps=float(fps), eyes=fit.eyes[nearest] if fit.eyes_fitted else None,
                         eyelids=fit.eyelids[nearest] if np.any(fit.eyelids) else None, layout="avatar-studio")


def with_rest(seq: FlameSequence, rows) -> FlameSequence:
    """`seq` with its rest face set to the per-coefficient median of jaw and expression over `rows`
    (the subject's rest frames: `studio.flame.controls.rest_rows`)."""
    rows = np.asarray(rows, int)
    if len(rows) == 0:
        raise ValueError("with_rest needs at least one rest frame")
    return replace(seq, rest_expression=np.median(seq.expression[rows], axis=0),
                   rest_jaw=np.median(seq.jaw[rows], axis=0))


# ----------------------------------------------------------------------------------------------
# normalisation (PVP, appendix B)

def _match(x: np.ndarray, target: np.ndarray, eps: float) -> np.ndarray:
    mu_s, sd_s = x.mean(0), x.std(0)
    mu_t, sd_t = target.mean(0), target.std(0)
    gain = np.where(sd_s > eps, sd_t / np.maximum(sd_s, eps), 1.0)
    return (x - mu_s) * gain + mu_t


def normalise_to_subject(seq: FlameSequence, subject: FlameSequence, eps: float = 1e-6) -> FlameSequence:
    """Match each expression coefficient's and each jaw component's mean and standard deviation over
    `seq` to the subject's fitted distribution (`subject`: e.g. the subject's own fitted sequence).

    The result has the subject's number of expression coefficients (extra ones dropped, missing
    ones at the subject's rest, zero without one); a coefficient constant over `seq` is shifted
    only. Head pose is left as it is. The result is in the subject's space, so it carries the
    subject's rest face (not `seq`'s own).
    """
    E = subject.expression.shape[1]
    k = min(E, seq.expression.shape[1])
    expr = np.zeros((seq.n_frames, E))
    if subject.rest_expression is not None:
        expr[:] = subject.rest_expression[None, :E]
    expr[:, :k] = _match(seq.expression[:, :k], subject.expression[:, :k], eps)
    jaw = _match(seq.jaw, subject.jaw, eps)
    return replace(seq, expression=expr, jaw=jaw, rest_expression=subject.rest_expression, rest_jaw=subject.rest_jaw)
