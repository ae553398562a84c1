"""A FLAME-format model built at test time (never committed): the real FLAME needs a registration.

From a shared clip (`build_subject_fixture`):
- template: the subject's mean MediaPipe mesh (468 face points + 10 iris points = 478 vertices,
  one per landmark), pose-normalised with the app's own canonical-face fit, in metres (outer eye
  corners 9 cm apart), y up, z towards the viewer;
- joints: global (under the chin), neck, jaw (behind the mouth, near the condyles) and two eyeballs
  (behind each iris), regressed from rigid vertices by a sparse `J_regressor` with affine weights;
- skinning: lower lip, chin and jaw line on the jaw joint (smooth fall-off up to the mouth
  corners, upper lip on the neck), each iris on its eyeball, the rest on the neck;
- per frame of the clip, jaw and eye rotations are fitted to the pose-normalised landmarks and
  taken out (inverse skinning); `posedirs` for the jaw features are a ridge regression of what
  remains on the lower face on the rotation's first-order part (R − Rᵀ)/2, the expression basis is the PCA of the rest (component k scaled by
  its standard deviation over the clip, so coefficients are about N(0, 1) like FLAME's);
- shape: ten smooth identity deformations (face width/height/depth, nose, chin, eye spacing, …),
  made orthogonal to the expression basis; padded with zeros to FLAME's 300 + 100 components;
- triangles from mediapipe's FACEMESH_TESSELATION (3-cliques of its edges) plus iris fans;
- eyelid blendshapes (metrical-tracker style l_eyelid.npy / r_eyelid.npy): upper lid onto lower lid.

`write_generic_model` writes the arrays in generic_model.pkl's layout: `shapedirs` and
`posedirs` as chumpy arrays (a stand-in class registered as `chumpy.ch.Ch` only while pickling, so
the file holds real chumpy global references), `J_regressor` as a scipy csc_matrix,
`kintree_table` with FLAME's 2**32 - 1 root marker. `write_identity_embedding` puts each of the 478
MediaPipe landmarks on its own vertex (a one-hot barycentric coordinate in a triangle using it).

Without the shared clip, `build_synthetic_fixture` makes a smooth head-like cap with the same
layout (pure-model tests still run; fits on it are a weaker check).
"""
from __future__ import annotations

import collections
import pickle
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

N_SHAPE, N_EXPR = 300, 100
EYE_DISTANCE_M = 0.09
RIGHT_IRIS = [468, 469, 470, 471, 472]   # subject's right eye (image left): FLAME joint 4
LEFT_IRIS = [473, 474, 475, 476, 477]    # subject's left eye: FLAME joint 3
UPPER_LIP = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_LIP = [146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324]
LIDS = {"right": ([246, 161, 160, 159, 158, 157, 173], [7, 163, 144, 145, 153, 154, 155]),
        "left": ([466, 388, 387, 386, 385, 384, 398], [249, 390, 373, 374, 380, 381, 382])}


@dataclass
class FlameFixture:
    model_path: Path
    embedding_path: Path
    eyelid_paths: tuple[Path, Path]
    source: str
    """The clip the model was built from, or "synthetic"."""
    arrays: dict = field(default_factory=dict)
    """What went into the files (template, exprdirs, …) for tests to compare against."""
    tracked: np.ndarray | None = None
    """(N, 478, 3) pixel landmarks of the frames the fixture was built from (None if synthetic)."""


# ---------------------------------------------------------------------------------------- mesh
def tessellation_triangles() -> np.ndarray:
    """(F, 3) triangles of mediapipe's face mesh (3-cliques of FACEMESH_TESSELATION) + iris fans."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    adj = collections.defaultdict(set)
    for a, b in fmc.FACEMESH_TESSELATION:
        adj[a].add(b)
        adj[b].add(a)
    tris = {tuple(sorted((a, b, c))) for a, b in fmc.FACEMESH_TESSELATION for c in adj[a] & adj[b]}
    for centre, ring in ((468, fmc.FACEMESH_RIGHT_IRIS), (473, fmc.FACEMESH_LEFT_IRIS)):
        tris |= {(centre, a, b) for a, b in ring}
    return np.array(sorted(tris), np.int64)


def track_clip(video: Path, every: int = 3) -> np.ndarray:
    """(N, 478, 3) pixel landmarks of every `every`-th frame of `video` (mediapipe face mesh)."""
    from studio.tracking.tracker import FaceMesh
    from studio.video import plan_decode, probe, read_frames

    settings = plan_decode(probe(video))
    mesh = FaceMesh(video=True, max_faces=1)
    out = []
    try:
        for i, frame in enumerate(read_frames(video, settings)):
            if i % every == 0:
                lm, _ = mesh(frame)
                if lm is not None:
                    out.append(lm)
    finally:
        mesh.close()
    return np.stack(out).astype(np.float64)


def pose_normalise(landmarks: np.ndarray) -> np.ndarray:
    """(N, 478, 3) pixels → (N, 478, 3) in the subject's canonical frame (app's own fit), metres."""
    from studio.tracking import geometry as geo
    from studio.tracking.tracker import canonical_landmarks

    canon, rigid = geo.canonical_face(geo.to_yup(landmarks[:, : geo.MESH_POINTS]))
    q = np.stack([canonical_landmarks(lm, canon, rigid)[1] for lm in landmarks])
    return q * EYE_DISTANCE_M, rigid


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _gauss(points: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    return np.exp(-0.5 * ((points - centre) ** 2).sum(-1) / radius ** 2)


def rig(template: np.ndarray, rigid_idx: np.ndarray) -> dict:
    """Joints, regressor, skinning weights and kinematic tree for a 478-vertex mediapipe template."""
    s = EYE_DISTANCE_M
    T = template
    V = len(T)
    mouth_y = 0.5 * (T[61, 1] + T[291, 1])
    eye_y = 0.5 * (T[33, 1] + T[263, 1])
    eye_z = 0.5 * (T[33, 2] + T[263, 2])
    chin = T[152]
    joints = np.array([
        [0.0, chin[1] - 0.3 * s, eye_z - 1.0 * s],                         # global: below and behind the chin
        [0.0, mouth_y - 0.2 * s, eye_z - 1.0 * s],                          # neck
        [0.0, mouth_y + 0.3 * (eye_y - mouth_y), eye_z - 0.9 * s],         # jaw: near the condyles
        T[LEFT_IRIS[0]] - np.array([0, 0, 0.13 * s]),                       # left eyeball centre
        T[RIGHT_IRIS[0]] - np.array([0, 0, 0.13 * s]),                      # right eyeball centre
    ])
    anchors = {0: rigid_idx, 1: rigid_idx, 2: rigid_idx,
               3: np.array(LEFT_IRIS + [362, 263, 386, 374]), 4: np.array(RIGHT_IRIS + [133, 33, 159, 145])}
    reg = np.zeros((5, V))
    for j, idx in anchors.items():
        # minimum-norm affine weights: Σ w_i v_i = joint, Σ w_i = 1
        A = np.vstack([T[idx].T, np.ones(len(idx))])                       # (4, k)
        w = np.linalg.lstsq(A, np.append(joints[j], 1.0), rcond=None)[0]
        reg[j, idx] = w
    w_jaw = _smoothstep((mouth_y - T[:, 1]) / (0.35 * s) + 0.15)
    w_jaw[UPPER_LIP] = 0.0
    w_jaw[LOWER_LIP] = 1.0
    w_jaw[[61, 291, 78, 308]] = 0.5
    w_jaw[RIGHT_IRIS + LEFT_IRIS] = 0.0
    weights = np.zeros((V, 5))
    weights[:, 2] = w_jaw
    weights[:, 1] = 1.0 - w_jaw
    for j, iris in ((3, LEFT_IRIS), (4, RIGHT_IRIS)):
        weights[iris] = 0.0
        weights[iris, j] = 1.0
    kintree = np.array([[2 ** 32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.uint32)
    return {"joints": joints, "j_regressor": reg, "lbs_weights": weights, "kintree_table": kintree,
            "parents": np.array([-1, 0, 1, 1, 1])}


def shape_basis(T: np.ndarray) -> np.ndarray:
    """(V, 3, 10) smooth identity deformations of template T (metres)."""
    s = EYE_DISTANCE_M
    c = T - T.mean(0)
    mouth_y = 0.5 * (T[61, 1] + T[291, 1])
    lower = _smoothstep((mouth_y - T[:, 1]) / (0.5 * s))
    upper = _smoothstep((T[:, 1] - T[[105, 334], 1].mean()) / (0.4 * s))
    z = np.zeros(len(T))
    fields = [
        np.stack([c[:, 0], z, z], 1),                                       # face width
        np.stack([z, c[:, 1], z], 1),                                       # face height
        np.stack([z, z, c[:, 2]], 1),                                       # depth
        np.stack([c[:, 0] * lower, z, z], 1),                               # jaw width
        np.stack([z, z, _gauss(T, T[1], 0.35 * s) * s], 1),                 # nose protrusion
        np.stack([np.sign(c[:, 0]) * (_gauss(T, T[468], 0.4 * s) + _gauss(T, T[473], 0.4 * s)) * s, z, z], 1),
        np.stack([z, -lower * s, z], 1),                                    # chin length
        np.stack([z, z, -upper * c[:, 1]], 1),                              # forehead slope
        np.stack([z, z, (_gauss(T, T[50], 0.5 * s) + _gauss(T, T[280], 0.5 * s)) * s], 1),  # cheeks
        np.stack([c[:, 0] * _gauss(T, T[13], 0.6 * s), z, z], 1),           # mouth width
    ]
    out = np.stack(fields, -1)
    out /= np.sqrt((out ** 2).sum((0, 1), keepdims=True))
    return out * 0.15 * s                                                   # one unit ≈ a few mm per vertex


def eyelid_basis(T: np.ndarray) -> np.ndarray:
    """(V, 3, 2) left / right: each upper-lid vertex moves onto the lower-lid vertex below it."""
    out = np.zeros((len(T), 3, 2))
    for k, side in enumerate(("left", "right")):
        up, low = LIDS[side]
        out[up, :, k] = T[low] - T[up]
    return out


def _model(arrays: dict, with_expr: bool = True):
    from models.flame import FLAME

    V = len(arrays["v_template"])
    return FLAME(v_template=arrays["v_template"], shapedirs=arrays["shapedirs"],
                 exprdirs=arrays["exprdirs"] if with_expr else np.zeros((V, 3, 1)),
                 posedirs=arrays["posedirs"], j_regressor=arrays["j_regressor"], parents=arrays["parents"],
                 lbs_weights=arrays["lbs_weights"], faces=arrays["faces"])


def learn_expression_space(q: np.ndarray, arrays: dict, n_expr: int = N_EXPR) -> dict:
    """Fit jaw + eye rotations per frame, take them out, regress jaw correctives, PCA the rest."""
    torch.manual_seed(0)
    T = arrays["v_template"]
    N, V = q.shape[:2]
    model = _model({**arrays, "posedirs": np.zeros((V, 3, 36))}, with_expr=False)
    target = torch.tensor(q, dtype=torch.float32)
    w = torch.tensor(arrays["lbs_weights"], dtype=torch.float32)
    vw = (w[:, 2] + w[:, 3] + w[:, 4]).clamp(min=0.0)                       # vertices the rotations move
    jaw = torch.zeros(N, 3, requires_grad=True)
    eyes = torch.zeros(N, 6, requires_grad=True)
    opt = torch.optim.LBFGS([jaw, eyes], max_iter=60, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        v = model(jaw_pose=jaw, eye_pose=eyes).vertices
        loss = (((v - target) ** 2).sum(-1) * vw).sum() / N * 1e4
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    with torch.no_grad():
        posed = model(jaw_pose=jaw, eye_pose=eyes).vertices
        from models.flame import rodrigues

        rots = rodrigues(torch.cat([torch.zeros(N, 1, 3), torch.zeros(N, 1, 3), jaw[:, None], eyes.view(N, 2, 3)], 1))
        # per-vertex blended rotation (all joints above the jaw / eyes are unrotated)
        M = torch.einsum("vj,bjmn->bvmn", w, rots)                           # (N, V, 3, 3)
        resid = torch.linalg.solve(M, (target - posed)[..., None])[..., 0]   # rest-space residual
        feats = (rots[:, 1:] - torch.eye(3)).reshape(N, -1)                  # (N, 36)
    d = resid.numpy().reshape(N, -1).astype(np.float64)                      # (N, V*3)
    f9 = feats.numpy().astype(np.float64)[:, 9:18]                           # jaw's (R - I), row-major
    # regress on the rotation's first-order part (R - Rᵀ)/2 = sin θ · [axis]×, so correctives stay
    # bounded for jaw angles beyond those seen; spread back onto the 9 entries of (R - I)
    f = 0.5 * np.stack([f9[:, 7] - f9[:, 5], f9[:, 2] - f9[:, 6], f9[:, 3] - f9[:, 1]], 1)   # (N, 3)
    lower = np.repeat(arrays["lbs_weights"][:, 2], 3)                        # correctives on the jaw region
    lam = 1e-2 * np.trace(f.T @ f) / 3 + 1e-12
    P = np.linalg.solve(f.T @ f + lam * np.eye(3), f.T @ (d * lower))        # (3, V*3)
    spread = np.zeros((3, 9))
    for axis, (pos, neg) in enumerate(((7, 5), (2, 6), (3, 1))):
        spread[axis, pos], spread[axis, neg] = 0.5, -0.5
    posedirs = np.zeros((V, 3, 36))
    posedirs[:, :, 9:18] = (spread.T @ P).T.reshape(V, 3, 9)
    rest = d - f @ P
    rest = rest - rest.mean(0)
    _, S, Vt = np.linalg.svd(rest, full_matrices=False)
    k = min(n_expr, N - 1)
    exprdirs = np.zeros((V, 3, n_expr))
    exprdirs[:, :, :k] = (Vt[:k] * (S[:k] / np.sqrt(N))[:, None]).T.reshape(V, 3, k)
    return {"posedirs": posedirs, "exprdirs": exprdirs, "jaw_fitted": jaw.detach().numpy(),
            "eyes_fitted": eyes.detach().numpy(), "expr_std": S[:k] / np.sqrt(N)}


def _orthogonalise(shapedirs: np.ndarray, exprdirs: np.ndarray) -> np.ndarray:
    E = exprdirs.reshape(-1, exprdirs.shape[2])
    E = E[:, np.linalg.norm(E, axis=0) > 0]
    Q, _ = np.linalg.qr(E)
    S = shapedirs.reshape(-1, shapedirs.shape[2])
    norms = np.linalg.norm(S, axis=0)
    S = S - Q @ (Q.T @ S)
    S *= norms / np.maximum(np.linalg.norm(S, axis=0), 1e-12)
    return S.reshape(shapedirs.shape)


def subject_arrays(landmarks_px: np.ndarray) -> dict:
    """All of the fixture's arrays from tracked pixel landmarks (N, 478, 3)."""
    q, rigid = pose_normalise(landmarks_px)
    T = q.mean(0)
    arrays = {"v_template": T, "faces": tessellation_triangles(), **rig(T, rigid)}
    V = len(T)
    shape10 = shape_basis(T)
    arrays["shapedirs"] = np.concatenate([shape10, np.zeros((V, 3, N_SHAPE - shape10.shape[2]))], -1)
    arrays["posedirs"] = np.zeros((V, 3, 36))
    arrays.update(learn_expression_space(q, arrays))
    arrays["shapedirs"][:, :, :10] = _orthogonalise(shape10, arrays["exprdirs"])
    arrays["eyelid_dirs"] = eyelid_basis(T)
    arrays["normalised"] = q
    return arrays


def synthetic_arrays(n_rows: int = 22, n_cols: int = 22) -> dict:
    """A smooth head-like cap of 478 vertices with the same layout (no real face in it)."""
    u, v = np.meshgrid(np.linspace(-1.1, 1.1, n_cols), np.linspace(-1.2, 1.0, n_rows))
    pts = np.stack([0.075 * np.sin(u.ravel()), 0.1 * v.ravel(), 0.06 * np.cos(u.ravel()) * np.cos(0.7 * v.ravel())], 1)
    V = 478
    T = pts[:V]
    faces = []
    for r in range(n_rows - 1):
        for c in range(n_cols - 1):
            a, b, cc, d = r * n_cols + c, r * n_cols + c + 1, (r + 1) * n_cols + c, (r + 1) * n_cols + c + 1
            for tri in ((a, b, cc), (b, d, cc)):
                if max(tri) < V:
                    faces.append(tri)
    faces = np.array(faces, np.int64)
    y = T[:, 1]
    w_jaw = _smoothstep((-0.03 - y) / 0.04)
    weights = np.zeros((V, 5))
    weights[:, 2], weights[:, 1] = w_jaw, 1 - w_jaw
    left, right = np.argsort(_gauss(T, np.array([0.03, 0.03, 0.06]), 0.01))[-5:], \
        np.argsort(_gauss(T, np.array([-0.03, 0.03, 0.06]), 0.01))[-5:]
    for j, idx in ((3, left), (4, right)):
        weights[idx] = 0
        weights[idx, j] = 1
    joints = np.array([[0, -0.15, -0.08], [0, -0.08, -0.08], [0, -0.02, -0.06],
                       [0.03, 0.03, 0.045], [-0.03, 0.03, 0.045]])
    reg = np.zeros((5, V))
    anchors = np.arange(0, V, 37)
    A = np.vstack([T[anchors].T, np.ones(len(anchors))])
    for j in range(5):
        reg[j, anchors] = np.linalg.lstsq(A, np.append(joints[j], 1.0), rcond=None)[0]
    bumps = [(_gauss(T, T[i], 0.03)[:, None] * np.array(d)) for i, d in
             ((100, (0, 0, 0.01)), (300, (0.01, 0, 0)), (60, (0, 0.008, 0)), (400, (0, -0.01, 0.004)),
              (200, (0.004, 0.004, 0.004)), (250, (0, 0, -0.006)))]
    exprdirs = np.zeros((V, 3, N_EXPR))
    exprdirs[:, :, : len(bumps)] = np.stack(bumps, -1)
    shapedirs = np.zeros((V, 3, N_SHAPE))
    shapedirs[:, 0, 0], shapedirs[:, 1, 1] = T[:, 0] * 0.05, T[:, 1] * 0.05
    shapedirs[:, :, :2] = _orthogonalise(shapedirs[:, :, :2], exprdirs)
    return {"v_template": T, "faces": faces, "shapedirs": shapedirs, "exprdirs": exprdirs,
            "posedirs": np.zeros((V, 3, 36)), "j_regressor": reg, "lbs_weights": weights,
            "kintree_table": np.array([[2 ** 32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.uint32),
            "parents": np.array([-1, 0, 1, 1, 1]), "joints": joints, "eyelid_dirs": np.zeros((V, 3, 2))}


# ---------------------------------------------------------------------------------------- files
class _ChumpyCh:
    """Pickles like a leaf chumpy.ch.Ch (its __dict__ minus the caches chumpy drops)."""

    def __init__(self, x: np.ndarray):
        self.x = np.asarray(x, np.float64)
        self._dirty_vars = set()
        self._itr = None
        self._depends_on_deps = {}
        self._make_dense = False
        self._make_sparse = False


def write_generic_model(path: Path, arrays: dict, protocol: int = 2) -> None:
    """generic_model.pkl layout with chumpy arrays and a scipy csc_matrix regressor."""
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    _ChumpyCh.__module__, _ChumpyCh.__qualname__, _ChumpyCh.__name__ = "chumpy.ch", "Ch", "Ch"
    ch.Ch = _ChumpyCh
    chumpy.ch = ch
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, ch
    try:
        data = {
            "v_template": np.asarray(arrays["v_template"], np.float64),
            "shapedirs": _ChumpyCh(np.concatenate([arrays["shapedirs"], arrays["exprdirs"]], -1)),
            "posedirs": _ChumpyCh(arrays["posedirs"]),
            "J_regressor": scipy.sparse.csc_matrix(arrays["j_regressor"]),
            "weights": np.asarray(arrays["lbs_weights"], np.float64),
            "kintree_table": np.asarray(arrays["kintree_table"]),
            "f": np.asarray(arrays["faces"], np.uint32),
            "J": np.asarray(arrays["joints"], np.float64),
            "bs_style": "lbs", "bs_type": "lrotmin",
        }
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
    finally:
        for k, mod in saved.items():
            if mod is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = mod


def write_identity_embedding(path: Path, faces: np.ndarray, n_landmarks: int = 478) -> None:
    """Each landmark i on vertex i: a triangle that uses i, with a one-hot barycentric coordinate."""
    face_idx = np.zeros(n_landmarks, np.int64)
    bary = np.zeros((n_landmarks, 3))
    for i in range(n_landmarks):
        f, k = np.argwhere(faces == i)[0]
        face_idx[i], bary[i, k] = f, 1.0
    np.savez(path, lmk_face_idx=face_idx, lmk_b_coords=bary, landmark_indices=np.arange(n_landmarks))


def write_fixture(out_dir: Path, arrays: dict, source: str, tracked: np.ndarray | None = None) -> FlameFixture:
    out_dir.mkdir(parents=True, exist_ok=True)
    model = out_dir / "generic_model.pkl"
    emb = out_dir / "mediapipe_landmark_embedding.npz"
    lids = (out_dir / "l_eyelid.npy", out_dir / "r_eyelid.npy")
    write_generic_model(model, arrays)
    write_identity_embedding(emb, arrays["faces"])
    np.save(lids[0], arrays["eyelid_dirs"][:, :, 0])
    np.save(lids[1], arrays["eyelid_dirs"][:, :, 1])
    return FlameFixture(model, emb, lids, source, arrays, tracked)


def build_subject_fixture(out_dir: Path, video: Path, every: int = 3) -> FlameFixture:
    lm = track_clip(video, every=every)
    return write_fixture(out_dir, subject_arrays(lm), video.name, lm)


def build_synthetic_fixture(out_dir: Path) -> FlameFixture:
    return write_fixture(out_dir, synthetic_arrays(), "synthetic")


# ---------------------------------------------------------------------------------------- cache
_BUILT: dict[str, FlameFixture] = {}


def _scratch() -> Path:
    import atexit
    import shutil
    import tempfile

    if "dir" not in _BUILT:
        d = Path(tempfile.mkdtemp(prefix="flame_fixture_"))
        atexit.register(shutil.rmtree, d, True)
        _BUILT["dir"] = d  # type: ignore[assignment]
    return _BUILT["dir"]  # type: ignore[return-value]


def subject_fixture(video: Path) -> FlameFixture:
    """The subject fixture of `video`, built once per test process."""
    key = f"subject:{video}"
    if key not in _BUILT:
        _BUILT[key] = build_subject_fixture(_scratch() / "subject", video)
    return _BUILT[key]


def synthetic_fixture() -> FlameFixture:
    if "synthetic" not in _BUILT:
        _BUILT["synthetic"] = build_synthetic_fixture(_scratch() / "synthetic")
    return _BUILT["synthetic"]
