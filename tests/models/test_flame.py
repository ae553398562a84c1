"""The FLAME layer (models/flame.py) on FLAME-format fixtures read through models/flame_pickle.py:
zero parameters give the template, the jaw moves only the lower face, eyes only the irises, pose
correctives act through (R − I), landmarks follow the embedding, gradients reach every input,
wrong shapes are refused."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.flame import FLAME, embed_landmarks, rodrigues
from models.flame_pickle import read_eyelid_blendshapes, read_flame_model, read_mediapipe_embedding
from tests.conftest import VIDEOS
from tests.flame.fixture import LEFT_IRIS, LOWER_LIP, RIGHT_IRIS, UPPER_LIP, subject_fixture, synthetic_fixture

D3 = VIDEOS / "subject_turns_d3.mp4"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["synthetic", "subject"])
def fx(request):
    if request.param == "synthetic":
        return synthetic_fixture()
    if not D3.exists():
        pytest.skip(f"needs the shared test video {D3} (../shared beside the repo) to build the subject fixture")
    return subject_fixture(D3)


def _model(fx, eyelids=False) -> FLAME:
    data = read_flame_model(fx.model_path)
    if eyelids:
        data.eyelid_dirs = read_eyelid_blendshapes(*fx.eyelid_paths, n_vertices=len(data.v_template))
    return FLAME(**data.arrays())


def test_rodrigues_matches_closed_form_and_is_smooth_at_zero():
    torch.manual_seed(0)
    r = torch.randn(64, 3, dtype=torch.float64)
    R = rodrigues(r)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(R), torch.ones(64, dtype=torch.float64), atol=1e-12)
    # R maps the axis to itself and turns a perpendicular vector by |r|
    axis = r / r.norm(dim=1, keepdim=True)
    assert torch.allclose((R @ axis[..., None])[..., 0], axis, atol=1e-12)
    perp = torch.linalg.cross(axis, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(64, 3))
    perp = perp / perp.norm(dim=1, keepdim=True)
    cos = ((R @ perp[..., None])[..., 0] * perp).sum(1)
    assert torch.allclose(cos, torch.cos(r.norm(dim=1)), atol=1e-12)
    # at zero: identity, and the gradient is the cross-product generator (finite, not NaN)
    z = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rodrigues, (z,))
    assert torch.autograd.gradcheck(rodrigues, (torch.tensor([[1e-4, -2e-4, 5e-5]], dtype=torch.float64,
                                                              requires_grad=True),))


def test_zero_parameters_give_the_template(fx):
    model = _model(fx)
    out = model(batch_size=2)
    T = torch.as_tensor(fx.arrays["v_template"], dtype=torch.float32)
    assert out.vertices.shape == (2, model.n_vertices, 3)
    assert torch.allclose(out.vertices[0], T, atol=1e-6)
    # the joints are what the regressor gives on the template
    assert torch.allclose(out.joints[0], torch.as_tensor(fx.arrays["joints"], dtype=torch.float32), atol=1e-5)


def test_jaw_moves_only_the_lower_face(fx):
    model = _model(fx)
    jaw = torch.tensor([[math.radians(15), 0.0, 0.0]])
    moved = (model(jaw_pose=jaw).vertices - model().vertices)[0].norm(dim=1).numpy()
    w_jaw = fx.arrays["lbs_weights"][:, 2]
    assert moved[w_jaw == 0].max() < 1e-7, "vertices not skinned to the jaw stayed put"
    assert moved[w_jaw > 0.5].min() > 1e-4
    if fx.source != "synthetic":
        T = fx.arrays["v_template"]
        upper = [i for i in UPPER_LIP if i not in (61, 291, 78, 308)]  # corners are half on the jaw
        assert moved[LOWER_LIP].min() > 3e-3 and moved[upper].max() < 1e-7
        chin_dy = (model(jaw_pose=jaw).vertices - model().vertices)[0, 152, 1].item()
        assert chin_dy < -5e-3, "a positive jaw pitch opens the mouth (chin goes down)"
        assert T[moved > 1e-4, 1].max() < T[[33, 263], 1].mean(), "nothing above the eyes moves"


def test_eye_rotation_moves_only_the_eyes(fx):
    model = _model(fx)
    eyes = torch.tensor([[0.0, 0.3, 0.0, 0.0, 0.0, 0.0]])  # left eye looks sideways
    moved = (model(eye_pose=eyes).vertices - model().vertices)[0].norm(dim=1).numpy()
    on_left = fx.arrays["lbs_weights"][:, 3] > 0.5
    assert moved[~on_left].max() < 1e-7 and moved[on_left].max() > 1e-4
    if fx.source != "synthetic":
        assert set(np.flatnonzero(moved > 1e-6)) == set(LEFT_IRIS)
        # the iris keeps its distance to the eyeball centre
        c = model().joints[0, 3]
        r0 = (model().vertices[0, LEFT_IRIS] - c).norm(dim=1)
        r1 = (model(eye_pose=eyes).vertices[0, LEFT_IRIS] - c).norm(dim=1)
        assert torch.allclose(r0, r1, atol=1e-6)
    assert RIGHT_IRIS  # (the right eye is joint 4, tested through the same weights)


def test_global_rotation_is_rigid_and_expression_is_linear(fx):
    model = _model(fx)
    torch.manual_seed(1)
    expr = torch.randn(1, 20)
    a = model(expression=expr).vertices[0]
    b = model(expression=expr, global_pose=torch.tensor([[0.2, -0.5, 0.1]])).vertices[0]
    dist = lambda x: (x[:, None] - x[None]).norm(dim=-1)  # noqa: E731
    assert torch.allclose(dist(a), dist(b), atol=2e-6)
    assert not torch.allclose(a, b, atol=1e-3)
    # no pose: the offset is exactly exprdirs · ψ (blendshapes are linear)
    E = torch.as_tensor(fx.arrays["exprdirs"][:, :, :20], dtype=torch.float32)
    T = torch.as_tensor(fx.arrays["v_template"], dtype=torch.float32)
    assert torch.allclose(a, T + E @ expr[0], atol=1e-5)


def test_pose_correctives_follow_rotation_minus_identity(fx):
    """With only the jaw rotated, vertices fully on the neck get exactly the corrective offset
    posedirs · (R_jaw − I) (they are not rotated); without rotation the correctives vanish."""
    data = read_flame_model(fx.model_path)
    V = len(data.v_template)
    rng = np.random.default_rng(0)
    data.posedirs = rng.normal(0, 1e-3, (V, 3, 36))
    with_pd = FLAME(**data.arrays())
    data.posedirs = np.zeros((V, 3, 36))
    without = FLAME(**data.arrays())
    assert torch.allclose(with_pd().vertices, without().vertices, atol=1e-7)
    jaw = torch.tensor([[0.3, 0.1, -0.05]])
    diff = (with_pd(jaw_pose=jaw).vertices - without(jaw_pose=jaw).vertices)[0].double().numpy()
    feat = np.zeros(36)
    feat[9:18] = (rodrigues(jaw.double())[0] - torch.eye(3, dtype=torch.float64)).reshape(-1).numpy()
    expected = np.einsum("vcp,p->vc", np.random.default_rng(0).normal(0, 1e-3, (V, 3, 36)), feat)
    on_neck = data.lbs_weights[:, 1] > 0.999
    assert on_neck.any()
    assert np.allclose(diff[on_neck], expected[on_neck], atol=2e-6)


def test_landmarks_through_the_embedding(fx):
    model = _model(fx)
    emb = read_mediapipe_embedding(fx.embedding_path)
    torch.manual_seed(2)
    params = dict(expression=torch.randn(3, 10), jaw_pose=0.1 * torch.randn(3, 3), global_pose=0.2 * torch.randn(3, 3))
    full = model(**params).vertices
    face_idx, bary = torch.as_tensor(emb.face_idx), torch.as_tensor(emb.bary, dtype=torch.float32)
    lm = model.landmarks(face_idx, bary, **params)           # computed on the used vertices only
    assert lm.shape == (3, len(emb.face_idx), 3)
    assert torch.allclose(lm, embed_landmarks(full, model.faces, face_idx, bary), atol=1e-6)
    # the fixture's identity embedding: landmark i is vertex i
    assert torch.allclose(lm, full[:, emb.landmark_indices], atol=1e-6)
    # a genuinely barycentric point lies inside its triangle
    mid = embed_landmarks(full, model.faces, face_idx[:1], torch.full((1, 3), 1 / 3))
    tri = full[:, model.faces[face_idx[0]]]
    assert torch.allclose(mid[:, 0], tri.mean(1), atol=1e-6)


def test_gradients_reach_every_input(fx):
    model = _model(fx, eyelids=True)
    inputs = {"shape": torch.zeros(1, 10), "expression": torch.zeros(2, 50), "global_pose": torch.zeros(2, 3),
              "neck_pose": torch.zeros(2, 3), "jaw_pose": torch.full((2, 3), 0.05), "eye_pose": torch.zeros(2, 6),
              "eyelids": torch.zeros(2, 2)}
    for x in inputs.values():
        x.requires_grad_(True)
    target = model(jaw_pose=torch.full((2, 3), 0.05)).vertices.detach() + 1e-3
    loss = ((model(**inputs).vertices - target) ** 2).sum()
    loss.backward()
    for name, x in inputs.items():
        assert x.grad is not None and torch.isfinite(x.grad).all(), name
        if name == "eyelids" and fx.source == "synthetic":
            continue  # the synthetic fixture's eyelid blendshapes are zero
        assert x.grad[..., :2].abs().sum() > 0, f"no gradient reaches {name}"


def test_eyelids_close_the_upper_lid():
    if not D3.exists():
        pytest.skip(f"needs the shared test video {D3} (../shared beside the repo) to build the subject fixture")
    fx = subject_fixture(D3)
    model = _model(fx, eyelids=True)
    closed = model(eyelids=torch.tensor([[1.0, 0.0]])).vertices[0].numpy()
    upper, lower = [387, 386, 385], [373, 374, 380]
    assert np.allclose(closed[upper], fx.arrays["v_template"][lower], atol=1e-6)
    with pytest.raises(ValueError, match="eyelid"):
        _model(fx)(eyelids=torch.zeros(1, 2))


def test_wrong_shapes_are_refused():
    model = _model(synthetic_fixture())
    with pytest.raises(ValueError, match=r"jaw_pose: expected shape \(2, 3\)"):
        model(expression=torch.zeros(2, 10), jaw_pose=torch.zeros(2, 6))
    with pytest.raises(ValueError, match="expression"):
        model(expression=torch.zeros(1, model.n_expr + 1))
    with pytest.raises(ValueError, match="bary"):
        model.landmarks(torch.zeros(4, dtype=torch.long), torch.zeros(3, 3))
    data = read_flame_model(synthetic_fixture().model_path)
    data.posedirs = data.posedirs[:, :, :30]
    with pytest.raises(ValueError, match="posedirs"):
        FLAME(**data.arrays())
