"""Read FLAME's released files without chumpy and without running anything from them.

`generic_model.pkl` (FLAME 2020 and FLAME 2023) is a pickled dict written by Python 2 code that
used chumpy::

    v_template    (V, 3)        mean head, metres, y up          ndarray or chumpy array
    shapedirs     (V, 3, 400)   300 shape then 100 expression components      chumpy array
    posedirs      (V, 3, 36)    pose correctives                 ndarray or chumpy array
    J_regressor   (5, V)        scipy.sparse.csc_matrix
    weights       (V, 5)        skinning weights
    kintree_table (2, 5)        parents (root = 2**32 - 1) over joint ids
    f             (F, 3)        triangles
    (J, bs_style, bs_type, ... further keys are ignored)

`RestrictedUnpickler.find_class` hands out an allow-list only: numpy's array/dtype/scalar
reconstructors, inert stand-ins for `chumpy.ch.Ch` and scipy's sparse matrices (each keeps its
pickled state as a dict; the numpy value is rebuilt from that state, never by chumpy or scipy
code), and set/frozenset/object. Any other global — os.system, builtins.eval, a chumpy
expression class — raises `FlameFileError` before anything from the file runs.

`mediapipe_landmark_embedding.npz` holds lmk_face_idx (L,), lmk_b_coords (L, 3) and
landmark_indices (L,) (which of mediapipe's 478 landmarks each row is); L = 105 in the release.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import dataclass

import numpy as np

MODEL_FILE = "FLAME's generic_model.pkl (FLAME 2020 or 2023, flame.is.tue.mpg.de)"
EMBEDDING_FILE = ("FLAME's mediapipe_landmark_embedding.npz (keys lmk_face_idx, lmk_b_coords, "
                  "landmark_indices)")
MEDIAPIPE_LANDMARKS = 478
FLAME_SHAPE_COMPONENTS = 300
"""FLAME 2020 and 2023 store 300 shape then 100 expression components in `shapedirs`."""


class FlameFileError(ValueError):
    """A FLAME file that cannot be used; the message says what is wrong and which file is expected."""


# ----------------------------------------------------------------------------------------------
# Stand-ins for the classes a FLAME pickle names.

class _PickledState:
    """Base of the inert stand-ins: keeps the state BUILD gives it, runs nothing."""

    kind = "object"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slot state)
        if not isinstance(state, dict):
            raise FlameFileError(f"a pickled {self.kind} has state of type {type(state).__name__}, expected a dict")
        self.state = state


class ChumpyArray(_PickledState):
    """`chumpy.ch.Ch`: a leaf chumpy array keeps its value in state['x']."""

    kind = "chumpy array"

    def to_numpy(self) -> np.ndarray:
        x = getattr(self, "state", {}).get("x")
        if isinstance(x, ChumpyArray):
            return x.to_numpy()
        if not isinstance(x, np.ndarray):
            raise FlameFileError(f"a chumpy array without a numpy value ('x' is {type(x).__name__})")
        return x


class SparseMatrix(_PickledState):
    """scipy.sparse csc/csr/coo matrices, rebuilt densely from data / indices / indptr."""

    kind = "sparse matrix"
    fmt = "csc"

    def to_numpy(self) -> np.ndarray:
        st = getattr(self, "state", {})
        shape = st.get("_shape", st.get("shape"))
        try:
            rows, cols = (int(s) for s in shape)
            dense = np.zeros((rows, cols), np.float64)
            data = np.asarray(st["data"], np.float64)
            if self.fmt == "coo":
                r, c = np.asarray(st["row"], np.int64), np.asarray(st["col"], np.int64)
                np.add.at(dense, (r, c), data)
                return dense
            idx, ptr = np.asarray(st["indices"], np.int64), np.asarray(st["indptr"], np.int64)
            n_outer = cols if self.fmt == "csc" else rows
            if len(ptr) != n_outer + 1 or ptr[-1] > len(data) or len(idx) != len(data) or np.any(np.diff(ptr) < 0):
                raise ValueError("inconsistent index pointers")
            outer = np.repeat(np.arange(n_outer), np.diff(ptr))
            n = int(ptr[-1])
            if self.fmt == "csc":
                np.add.at(dense, (idx[:n], outer), data[:n])
            else:
                np.add.at(dense, (outer, idx[:n]), data[:n])
            return dense
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise FlameFileError(f"a damaged {self.fmt} sparse matrix ({exc})") from None


class _Csr(SparseMatrix):
    fmt = "csr"


class _Coo(SparseMatrix):
    fmt = "coo"


_STAND_INS = (ChumpyArray, SparseMatrix, _Csr, _Coo)


def _reconstructor(cls, base, state):
    """copyreg._reconstructor (protocols 0/1) for the stand-ins only."""
    if cls not in _STAND_INS or base is not object:
        raise FlameFileError(f"refusing to rebuild {getattr(cls, '__name__', cls)!r} from the file")
    obj = object.__new__(cls)
    if state is not None:
        obj.__setstate__(state)
    return obj


def _np_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise FlameFileError(f"refusing array subtype {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _np_frombuffer(buf, dtype, shape, order):
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise FlameFileError("refusing a numpy scalar of object dtype")
    if isinstance(data, str):
        data = data.encode("latin1")
    return np.frombuffer(data or b"", dtype=dtype, count=1)[0]


def _codecs_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise FlameFileError("refusing _codecs.encode other than latin1 text")
    return text.encode("latin1")


def _dtype(*args):
    dt = np.dtype(*args)
    if dt.hasobject:
        raise FlameFileError("refusing an object dtype")
    return dt


_ALLOWED = {("chumpy.ch", "Ch"): ChumpyArray,
            ("copy_reg", "_reconstructor"): _reconstructor, ("copyreg", "_reconstructor"): _reconstructor,
            ("__builtin__", "object"): object, ("builtins", "object"): object,
            ("__builtin__", "set"): set, ("builtins", "set"): set,
            ("__builtin__", "frozenset"): frozenset, ("builtins", "frozenset"): frozenset,
            ("_codecs", "encode"): _codecs_encode}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _np_reconstruct
    _ALLOWED[(_mod, "scalar")] = _np_scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _np_frombuffer
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = _dtype
for _mod in ("scipy.sparse.csc", "scipy.sparse._csc"):
    _ALLOWED[(_mod, "csc_matrix")] = SparseMatrix
for _mod in ("scipy.sparse.csr", "scipy.sparse._csr"):
    _ALLOWED[(_mod, "csr_matrix")] = _Csr
for _mod in ("scipy.sparse.coo", "scipy.sparse._coo"):
    _ALLOWED[(_mod, "coo_matrix")] = _Coo


def _dtype_with_objects(*args):
    return np.dtype(*args)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals above; everything else is refused.

    `object_arrays=True` also accepts numpy arrays of Python objects (a dict saved with np.save):
    their items are themselves unpickled under the same allow-list, so nothing runs either.
    """

    def __init__(self, file, *, object_arrays: bool = False, **kwargs):
        super().__init__(file, **kwargs)
        self.object_arrays = object_arrays

    def find_class(self, module, name):
        if self.object_arrays and (module, name) == ("numpy", "dtype"):
            return _dtype_with_objects
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise FlameFileError(f"refusing to load {module}.{name}: a FLAME file holds only numpy, chumpy and "
                             f"scipy.sparse arrays")

    def persistent_load(self, pid):
        raise FlameFileError("refusing a persistent id: not a FLAME file")


def safe_unpickle(data: bytes, object_arrays: bool = False):
    """Unpickle `data` with `RestrictedUnpickler` (Python 2 strings read as latin1)."""
    return RestrictedUnpickler(io.BytesIO(data), object_arrays=object_arrays, encoding="latin1").load()


def to_numpy(value) -> np.ndarray:
    """An unpickled value (ndarray, chumpy stand-in, sparse stand-in) as a numpy array."""
    if isinstance(value, (ChumpyArray, SparseMatrix)):
        return value.to_numpy()
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        return value
    raise FlameFileError(f"expected an array, found {type(value).__name__}")


# ----------------------------------------------------------------------------------------------
# generic_model.pkl

@dataclass
class FlameModelData:
    """The arrays of a FLAME model, ready for `models.flame.FLAME(**data.arrays())`."""

    v_template: np.ndarray   # (V, 3)
    shapedirs: np.ndarray    # (V, 3, S)
    exprdirs: np.ndarray     # (V, 3, E)
    posedirs: np.ndarray     # (V, 3, 36)
    j_regressor: np.ndarray  # (5, V) dense
    parents: np.ndarray      # (5,) -1 for the root
    lbs_weights: np.ndarray  # (V, 5)
    faces: np.ndarray        # (F, 3) int64
    eyelid_dirs: np.ndarray | None = None  # (V, 3, 2)

    def arrays(self) -> dict:
        return {k: getattr(self, k) for k in ("v_template", "shapedirs", "exprdirs", "posedirs", "j_regressor",
                                              "parents", "lbs_weights", "faces", "eyelid_dirs")}


def _fail(path, what: str, expected: str = MODEL_FILE) -> FlameFileError:
    return FlameFileError(f"{os.path.basename(os.fspath(path))}: {what}; expected {expected}")


def _parents(kintree: np.ndarray) -> np.ndarray:
    kt = np.asarray(kintree).astype(np.int64)
    if kt.ndim != 2 or kt.shape[0] != 2:
        raise ValueError(f"kintree_table has shape {kt.shape}, expected (2, J)")
    col = {int(j): i for i, j in enumerate(kt[1])}
    return np.array([-1 if i == 0 else col.get(int(p), -2) for i, p in enumerate(kt[0])], np.int64)


def read_flame_model(path: str | os.PathLike, n_shape: int | None = None) -> FlameModelData:
    """Read generic_model.pkl (FLAME 2020 / 2023) without chumpy and without running its code.

    `n_shape`: how many of `shapedirs`' components are shape (the rest are expression); the
    default is FLAME's 300 when the file has 400 components.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        obj = safe_unpickle(raw)
    except FlameFileError as exc:
        raise _fail(path, str(exc)) from None
    except Exception as exc:  # truncated / not a pickle / wrong bytes
        raise _fail(path, f"is not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise _fail(path, f"holds a {type(obj).__name__}, not a dict of arrays")
    keys = {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
    need = ["v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f"]
    missing = [k for k in need if k not in keys]
    if missing:
        raise _fail(path, f"has no {', '.join(repr(k) for k in missing)}")
    try:
        a = {k: to_numpy(keys[k]) for k in need}
        v_template = np.asarray(a["v_template"], np.float64)
        V = v_template.shape[0]
        dirs = np.asarray(a["shapedirs"], np.float64)
        if v_template.shape != (V, 3) or dirs.ndim != 3 or dirs.shape[:2] != (V, 3):
            raise ValueError(f"v_template {v_template.shape} and shapedirs {dirs.shape} do not match (V, 3, S)")
        C = dirs.shape[2]
        if n_shape is None:
            if C != FLAME_SHAPE_COMPONENTS + 100:
                raise ValueError(f"shapedirs has {C} components, FLAME files have 300 shape + 100 expression")
            n_shape = FLAME_SHAPE_COMPONENTS
        if not 0 < n_shape < C:
            raise ValueError(f"cannot split {C} shapedirs components into {n_shape} shape + the rest expression")
        parents = _parents(a["kintree_table"])
        J = len(parents)
        data = FlameModelData(
            v_template=v_template, shapedirs=dirs[:, :, :n_shape], exprdirs=dirs[:, :, n_shape:],
            posedirs=np.asarray(a["posedirs"], np.float64), j_regressor=np.asarray(a["J_regressor"], np.float64),
            parents=parents, lbs_weights=np.asarray(a["weights"], np.float64),
            faces=np.asarray(a["f"]).astype(np.int64))
        if J != 5 or np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, J)):
            raise ValueError(f"kintree_table gives parents {parents.tolist()}, FLAME has 5 joints in a chain")
        checks = {"posedirs": (data.posedirs, (V, 3, 9 * (J - 1))), "J_regressor": (data.j_regressor, (J, V)),
                  "weights": (data.lbs_weights, (V, J))}
        for name, (arr, want) in checks.items():
            if arr.shape != want:
                raise ValueError(f"{name} has shape {arr.shape}, expected {want}")
        if data.faces.ndim != 2 or data.faces.shape[1] != 3 or data.faces.min() < 0 or data.faces.max() >= V:
            raise ValueError(f"f (triangles) has shape {data.faces.shape} or indices outside 0..{V - 1}")
        for name in ("v_template", "shapedirs", "exprdirs", "posedirs", "j_regressor", "lbs_weights"):
            if not np.all(np.isfinite(getattr(data, name))):
                raise ValueError(f"{name} holds NaN or infinite values")
    except (FlameFileError, ValueError, TypeError) as exc:
        raise _fail(path, str(exc)) from None
    return data


def read_eyelid_blendshapes(left: str | os.PathLike, right: str | os.PathLike, n_vertices: int) -> np.ndarray:
    """metrical-tracker's l_eyelid.npy / r_eyelid.npy ((V, 3) offsets each) → (V, 3, 2)."""
    out = []
    for p in (left, right):
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _fail(p, f"cannot be read as a plain .npy ({exc})", "an eyelid blendshape .npy of shape (V, 3)") from None
        if arr.shape != (n_vertices, 3) or not np.all(np.isfinite(arr)):
            raise _fail(p, f"has shape {arr.shape}", f"an eyelid blendshape .npy of shape ({n_vertices}, 3)")
        out.append(np.asarray(arr, np.float64))
    return np.stack(out, -1)


# ----------------------------------------------------------------------------------------------
# mediapipe_landmark_embedding.npz

@dataclass
class LandmarkEmbedding:
    face_idx: np.ndarray          # (L,) int64 triangle of each landmark
    bary: np.ndarray              # (L, 3) barycentric coordinates
    landmark_indices: np.ndarray  # (L,) int64 mediapipe landmark (0..477) of each row

    def check(self, n_faces: int) -> None:
        """Raise FlameFileError when the embedding does not fit a model with `n_faces` triangles."""
        if self.face_idx.max(initial=-1) >= n_faces:
            raise FlameFileError(f"the landmark embedding names triangle {int(self.face_idx.max())} but the FLAME "
                                 f"model has {n_faces}; expected the embedding that belongs to this model")


def read_mediapipe_embedding(path: str | os.PathLike) -> LandmarkEmbedding:
    """Read FLAME's mediapipe_landmark_embedding.npz with allow_pickle=False."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            missing = [k for k in ("lmk_face_idx", "lmk_b_coords", "landmark_indices") if k not in files]
            if missing:
                raise _fail(path, f"has no {', '.join(repr(k) for k in missing)}", EMBEDDING_FILE)
            face_idx, bary, lmk = z["lmk_face_idx"], z["lmk_b_coords"], z["landmark_indices"]
    except FlameFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _fail(path, f"cannot be read as a plain .npz ({exc})", EMBEDDING_FILE) from None
    face_idx = np.asarray(face_idx).reshape(-1)
    lmk = np.asarray(lmk).reshape(-1)
    bary = np.asarray(bary, np.float64)
    L = len(face_idx)
    if bary.shape == (3, L) and L != 3:
        bary = bary.T
    problems = []
    if bary.shape != (L, 3):
        problems.append(f"lmk_b_coords has shape {bary.shape}, expected ({L}, 3)")
    elif not np.all(np.isfinite(bary)) or np.abs(bary.sum(1) - 1).max() > 1e-3:
        problems.append("lmk_b_coords rows do not sum to 1")
    if lmk.shape != (L,):
        problems.append(f"landmark_indices has {lmk.size} entries for {L} landmarks")
    if not (np.issubdtype(face_idx.dtype, np.integer) and np.issubdtype(lmk.dtype, np.integer)):
        problems.append("lmk_face_idx and landmark_indices must be integers")
    elif L and (face_idx.min() < 0 or lmk.min() < 0 or lmk.max() >= MEDIAPIPE_LANDMARKS):
        problems.append(f"indices outside the mesh or outside mediapipe's {MEDIAPIPE_LANDMARKS} landmarks")
    if L == 0:
        problems.append("it holds no landmarks")
    if problems:
        raise _fail(path, "; ".join(problems), EMBEDDING_FILE)
    return LandmarkEmbedding(face_idx=face_idx.astype(np.int64), bary=bary, landmark_indices=lmk.astype(np.int64))
