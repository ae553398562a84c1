"""FLAME geometry on the render (`studio.flame.warp`): displacements against the model's own landmarks,
the reference expression found by the engine's latent, and the image warp itself."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.flame import rodrigues
from studio.flame.warp import FlameGeometry, FlameWarpConfig, similarity_to
from tests.flame.test_fit import _load

SCALE, CENTRE, SIZE = 420.0, 64.0, 128


def _frames(model, emb, n=12, seed=0):
    """n training frames: FLAME parameters, their crop landmarks (478, 2) at SIZE and controls."""
    rng = np.random.default_rng(seed)
    E = 50
    expr = np.zeros((n, E), np.float32)
    expr[:, :10] = rng.normal(0, 1.0, (n, 10))
    jaw = np.zeros((n, 3), np.float32)
    jaw[:, 0] = rng.uniform(0, math.radians(12), n)
    rot = np.zeros((n, 3), np.float32)
    rot[:, 1] = np.radians(rng.uniform(-15, 15, n))
    rot[:, 0] = np.radians(rng.uniform(-8, 8, n))
    f32 = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        v = model.landmarks(f32(emb.face_idx), f32(emb.bary), expression=f32(expr), jaw_pose=f32(jaw), batch_size=n)
        cam = (v @ rodrigues(f32(rot)).transpose(1, 2)).double().numpy()
    lm = np.zeros((n, 478, 2))
    lm[:, emb.landmark_indices] = np.stack([cam[..., 0] * SCALE + CENTRE, -cam[..., 1] * SCALE + CENTRE], -1)
    rest_e, rest_j = np.zeros(E, np.float32), np.zeros(3, np.float32)
    controls = np.concatenate([np.degrees(rot[:, 1:2]), np.degrees(rot[:, 0:1]), jaw[:, :1], expr], 1).astype(np.float32)
    return dict(expression=expr, jaw=jaw, rotation=rot, crop_landmarks=lm, controls=controls,
                rest_expression=rest_e, rest_jaw=rest_j)


def _geometry(model, emb, frames, latents=None, **cfg):
    return FlameGeometry(model, emb, np.zeros(10, np.float32), frames["expression"], frames["jaw"], frames["rotation"],
                         frames["crop_landmarks"], frames["controls"], frames["rest_expression"], frames["rest_jaw"],
                         SIZE, FlameWarpConfig(**cfg), latents=latents)


def _model_shift(model, emb, frames, j, controls):
    """What FLAME says: frame j's landmarks moved from its own expression to `controls`' (crop px)."""
    f32 = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    jaw = np.zeros((1, 3), np.float32)
    jaw[0, 0] = controls[2]
    with torch.no_grad():
        a = model.landmarks(f32(emb.face_idx), f32(emb.bary), expression=f32(controls[None, 3:]), jaw_pose=f32(jaw),
                            batch_size=1)[0]
        b = model.landmarks(f32(emb.face_idx), f32(emb.bary), expression=f32(frames["expression"][j:j + 1]),
                            jaw_pose=f32(frames["jaw"][j:j + 1]), batch_size=1)[0]
        d = ((a - b) @ rodrigues(f32(frames["rotation"][j:j + 1]))[0].T).double().numpy()
    return np.stack([d[:, 0], -d[:, 1]], -1) * SCALE


def test_similarity_fit_recovers_scale_and_translation():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(30, 2))
    s, t = similarity_to(p, 3.5 * p + np.array([7.0, -2.0]))
    assert s == pytest.approx(3.5) and np.allclose(t, [7.0, -2.0])


def test_a_training_frame_gets_no_warp_and_one_coefficient_gets_its_flame_motion(synthetic_flame):
    model, emb = _load(synthetic_flame)
    fr = _frames(model, emb)
    geo = _geometry(model, emb, fr, neighbours=1)
    assert np.allclose(geo._scale, SCALE, rtol=1e-3), geo._scale   # the crop scale, found from the landmarks
    where, shift = geo.displacements(fr["controls"][3:4])
    assert np.abs(shift).max() < 1e-3, "a frame the engine was trained on is left as it is"
    assert np.allclose(where[0], fr["crop_landmarks"][3][emb.landmark_indices])
    # control-space neighbours: a small move of flame_04 stays nearest frame 3, so the warp is FLAME's motion
    c = fr["controls"][3].copy()
    c[3 + 4] += 0.3
    where, shift = geo.displacements(c[None])
    want = _model_shift(model, emb, fr, 3, c)
    assert np.abs(want).max() > 0.2, "the move is visible"
    assert np.allclose(shift[0], want, atol=1e-3)


def test_the_reference_follows_the_engines_latent(synthetic_flame):
    """An engine whose latent ignores flame_04 renders the same face whatever flame_04 says, so the warp
    adds flame_04's whole motion; one whose latent follows it finds the frame that shows it, so nothing
    is added where that frame is commanded."""
    model, emb = _load(synthetic_flame)
    fr = _frames(model, emb)
    follows = lambda c: np.asarray(c)[:, 2:].astype(np.float64)   # noqa: E731
    ignores = lambda c: np.delete(np.asarray(c)[:, 2:], 1 + 4, axis=1).astype(np.float64)  # noqa: E731
    c = fr["controls"][5].copy()
    c[3 + 4] = fr["controls"][8][3 + 4]    # frame 5 with frame 8's flame_04: not a training frame
    g_follow = _geometry(model, emb, fr, latents=follows, neighbours=1)
    g_ignore = _geometry(model, emb, fr, latents=ignores, neighbours=1)
    assert g_ignore.shown(c[None])[0][0, 0] == 5, "ignoring flame_04, the render shows frame 5's face"
    _, shift_i = g_ignore.displacements(c[None])
    pose_j = int(np.argmin(((fr["controls"][:, :2] - c[:2]) / fr["controls"][:, :2].std(0)) ** 2 @ np.ones(2)))
    assert pose_j == 5
    assert np.allclose(shift_i[0], _model_shift(model, emb, fr, 5, c), atol=1e-3)
    _, shift_f = g_follow.displacements(fr["controls"][8:9])
    assert np.abs(shift_f).max() < 1e-3


def test_the_warp_moves_what_is_at_the_landmarks_and_leaves_the_border(synthetic_flame):
    model, emb = _load(synthetic_flame)
    fr = _frames(model, emb)
    geo = _geometry(model, emb, fr)
    S = SIZE
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    where = np.stack(np.meshgrid(np.arange(50, 80, 3.0), np.arange(50, 80, 3.0)), -1).reshape(-1, 2)
    shift = np.tile([2.0, -1.0], (len(where), 1))
    f = geo.field(where, shift)
    inside = f[62:68, 62:68].reshape(-1, 2)
    assert np.allclose(inside, [-2.0, 1.0], atol=0.15), "backward offsets inside the moved region"
    assert np.abs(f[:8, :8]).max() < 0.05 and np.abs(f[-8:, -8:]).max() < 0.05, "the border stays put"
    blob = np.exp(-((xx - 64) ** 2 + (yy - 64) ** 2) / (2 * 2.0 ** 2))
    img = np.repeat((40 + 200 * blob)[..., None], 3, -1).astype(np.uint8)
    out = geo.warp_image(img, where, shift).astype(np.float64)[..., 0] - 40
    cx, cy = (out * xx).sum() / out.sum(), (out * yy).sum() / out.sum()
    assert cx == pytest.approx(66.0, abs=0.2) and cy == pytest.approx(63.0, abs=0.2)
    assert geo.warp_image(img, where, shift * 0.001) is img, "below min_shift nothing is resampled"


def test_the_warp_at_twice_the_size_is_the_same_motion_in_twice_the_pixels(synthetic_flame):
    """An avatar shown at the tracked crops' size (`Avatar(out_size=256)` over a 128 px engine) builds its
    FLAME geometry at that size: the same controls must move each landmark twice as many pixels, and the
    field, brought back to 128 px, must be the 128 px field."""
    import cv2

    model, emb = _load(synthetic_flame)
    fr = _frames(model, emb)
    big = dict(fr, crop_landmarks=fr["crop_landmarks"] * 2)
    args = lambda f: (model, emb, np.zeros(10, np.float32), f["expression"], f["jaw"], f["rotation"],  # noqa: E731
                      f["crop_landmarks"], f["controls"], f["rest_expression"], f["rest_jaw"])
    g128, g256 = FlameGeometry(*args(fr), 128), FlameGeometry(*args(big), 256)
    c = fr["controls"][4].copy()
    c[3 + 2] += 1.5
    c[2] += 0.08
    w1, s1 = g128.displacements(c[None])
    w2, s2 = g256.displacements(c[None])
    assert np.abs(s1).max() > 0.5, "the commanded move is visible at 128 px"
    assert np.allclose(w2, 2 * w1, atol=1e-6) and np.allclose(s2, 2 * s1, rtol=1e-4, atol=1e-4)
    f1, f2 = g128.fields(c[None])[0], g256.fields(c[None])[0]
    assert f1 is not None and f2 is not None and f2.shape == (256, 256, 2)
    back = cv2.resize(f2, (128, 128), interpolation=cv2.INTER_AREA) / 2
    moved = np.linalg.norm(f1, axis=-1) > 0.2
    assert moved.sum() > 50
    err = np.linalg.norm(back - f1, axis=-1)[moved]
    assert err.mean() < 0.05 * np.linalg.norm(f1, axis=-1)[moved].mean() + 0.02, err.mean()
