"""Fitting FLAME to landmarks (studio/flame/fit.py) on the FLAME-format fixture (built from the
subject of subject_turns_d3 when ../shared is there, synthetic otherwise).

Landmarks are synthesised by the model itself from known parameters (smooth trajectories, head
turned, orthographic camera, pixels), so a correct fitter must find those parameters again:
tolerances are stated in each test. Resume from a state_dict must give the same fit as an
uninterrupted run."""
from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
import torch

from models.flame import FLAME, rodrigues
from models.flame_pickle import read_eyelid_blendshapes, read_flame_model, read_mediapipe_embedding
from studio.errors import InputError
from studio.flame.fit import FitConfig, FlameFitter, fit_all, rotation_log
from studio.flame.files import load_flame
from studio.flame.overlay import draw_mesh, fit_overlays, save_fit_sheet


def _load(fx, eyelids=False):
    data = read_flame_model(fx.model_path)
    if eyelids:
        data.eyelid_dirs = read_eyelid_blendshapes(*fx.eyelid_paths, n_vertices=len(data.v_template))
    return FLAME(**data.arrays()), read_mediapipe_embedding(fx.embedding_path)


def synthesise(model, emb, n=24, yaw_deg=0.0, seed=0, scale=2200.0, eyes=False):
    """Known parameters and the (n, 478, 3) pixel landmarks the model gives for them."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, math.pi, n)
    expr = np.zeros((n, 50))
    for k in range(10):
        expr[:, k] = rng.uniform(0.6, 1.2) * np.sin(t * rng.uniform(0.5, 1.5) + rng.uniform(0, 6))
    jaw = np.zeros((n, 3))
    jaw[:, 0] = math.radians(10) * (0.5 + 0.5 * np.sin(1.3 * t))
    rot = np.zeros((n, 3))
    rot[:, 1] = math.radians(yaw_deg) + math.radians(8) * np.sin(t)
    rot[:, 0] = math.radians(6) * np.cos(t)
    eye = np.zeros((n, 6))
    if eyes:
        eye[:, 1] = eye[:, 4] = math.radians(15) * np.sin(t)
    f32 = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        v = model.landmarks(f32(emb.face_idx), f32(emb.bary), expression=f32(expr), jaw_pose=f32(jaw),
                            eye_pose=f32(eye), batch_size=n)
        cam = (v @ rodrigues(f32(rot)).transpose(1, 2)).double().numpy()
    lm = np.zeros((n, 478, 3))
    lm[:, emb.landmark_indices] = np.stack([cam[..., 0] * scale + 300, -cam[..., 1] * scale + 260,
                                            -cam[..., 2] * scale], -1)
    return {"expression": expr, "jaw": jaw, "rotation": rot, "eyes": eye, "landmarks": lm}


@pytest.mark.parametrize("yaw_deg", [0.0, 30.0])
def test_fit_recovers_expression_jaw_and_pose(subject_flame, yaw_deg):
    """Tolerances: first 10 expression coefficients within 0.15 on average (they swing ±1),
    jaw within 0.5°, head rotation within 1°, landmarks within 0.1 % of the face size. On the
    subject fixture (a face-like basis); the synthetic stand-in's basis is not identifiable enough
    (seen in a clone without ../shared: error 0.32–0.44)."""
    model, emb = _load(subject_flame)
    truth = synthesise(model, emb, yaw_deg=yaw_deg)
    fit, _ = fit_all(model, emb, truth["landmarks"], config=FitConfig(steps=300, rigid_steps=40))
    e_expr = np.abs(fit.expression[:, :10] - truth["expression"][:, :10]).mean()
    e_jaw = np.degrees(np.abs(fit.jaw - truth["jaw"])).mean()
    R_err = [np.degrees(np.linalg.norm(rotation_log(rodrigues(torch.tensor(a)).numpy().T @
                                                    rodrigues(torch.tensor(b)).numpy())))
             for a, b in zip(fit.rotation, truth["rotation"])]
    s = fit.summary()
    print(f"yaw {yaw_deg}: expr err {e_expr:.3f}, jaw err {e_jaw:.3f} deg, rot err {np.mean(R_err):.3f} deg, {s}")
    assert e_expr < 0.15
    assert e_jaw < 0.5
    assert np.mean(R_err) < 1.0
    assert s["error_pct_mean"] < 0.1
    # the correlation a FLAME slider needs: fitted vs commanded per coefficient
    r = [np.corrcoef(fit.expression[:, k], truth["expression"][:, k])[0, 1] for k in range(10)]
    assert min(r) > 0.9


def test_fit_recovers_eye_rotation_and_eyelids(subject_flame):
    """The subject fixture's irises sit on the eyeball joints: gaze is recovered within 2°."""
    model, emb = _load(subject_flame, eyelids=True)
    truth = synthesise(model, emb, n=16, eyes=True, seed=3)
    fit, fitter = fit_all(model, emb, truth["landmarks"], config=FitConfig(steps=250, rigid_steps=40))
    assert fitter.eyes_on and fit.eyes_fitted and fitter.eyelids_on
    assert np.degrees(np.abs(fit.eyes[:, [1, 4]] - truth["eyes"][:, [1, 4]])).mean() < 2.0
    assert np.abs(fit.eyelids).max() < 0.1, "open eyes stay open"


def test_resume_gives_the_same_fit(synthetic_flame):
    model, emb = _load(synthetic_flame)
    truth = synthesise(model, emb, n=10)
    cfg = FitConfig(steps=30, rigid_steps=10, batch_frames=4)
    straight = FlameFitter(model, emb, truth["landmarks"], config=cfg)
    for i in range(30):
        straight.step(i)
    first = FlameFitter(model, emb, truth["landmarks"], config=cfg)
    for i in range(17):
        first.step(i)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # what the training loop does
    second = FlameFitter(model, emb, truth["landmarks"], config=cfg)
    second.load_state_dict(state)
    for i in range(17, 30):
        second.step(i)
    a, b = straight.result(), second.result()
    np.testing.assert_allclose(a.expression, b.expression, atol=1e-6)
    np.testing.assert_allclose(a.rotation, b.rotation, atol=1e-6)
    # a state from other frames is refused
    other = FlameFitter(model, emb, truth["landmarks"], valid=np.arange(10) != 3, config=cfg)
    with pytest.raises(ValueError, match="other tracked frames"):
        other.load_state_dict(state)


def test_smoothing_reduces_jitter(synthetic_flame):
    """1.5 px landmark noise: the default temporal term makes the frame-to-frame error of the
    expression and jaw trajectories smaller than without it (measured 0.063 → 0.041; jaw 0.00285 →
    0.00271 rad on the current synthetic fixture — the jaw's own regulariser already keeps it steady,
    so only "smaller" is asserted for it; an earlier fixture gave 0.0036 → 0.0025)."""
    model, emb = _load(synthetic_flame)
    truth = synthesise(model, emb, n=20, seed=1)
    noisy = truth["landmarks"] + np.random.default_rng(0).normal(0, 1.5, truth["landmarks"].shape)
    jitter = {}
    for w in (0.0, FitConfig().w_smooth):
        fit, _ = fit_all(model, emb, noisy, config=FitConfig(steps=200, rigid_steps=30, w_smooth=w))
        jitter[w] = (np.abs(np.diff(fit.expression[:, :6] - truth["expression"][:, :6], axis=0)).mean(),
                     np.abs(np.diff(fit.jaw[:, 0] - truth["jaw"][:, 0])).mean())
    smooth, rough = jitter[FitConfig().w_smooth], jitter[0.0]
    assert smooth[0] < 0.8 * rough[0] and smooth[1] < rough[1], jitter


def test_invalid_rows_error_figures_and_bad_input(synthetic_flame):
    model, emb = _load(synthetic_flame)
    truth = synthesise(model, emb, n=8)
    valid = np.ones(8, bool)
    valid[[2, 5]] = False
    lm = truth["landmarks"].copy()
    lm[~valid] = 0.0
    fit, _ = fit_all(model, emb, lm, valid, FitConfig(steps=120, rigid_steps=30))
    assert fit.fitted.tolist() == valid.tolist()
    assert np.isnan(fit.error_px[~valid]).all() and np.isfinite(fit.error_px[valid]).all()
    np.testing.assert_allclose(fit.error_pct[valid], fit.error_px[valid] / fit.face_px[valid] * 100)
    assert (fit.expression[~valid] == 0).all()
    with pytest.raises(InputError, match="no tracked face"):
        FlameFitter(model, emb, lm, np.zeros(8, bool))
    with pytest.raises(InputError, match="landmarks"):
        FlameFitter(model, emb, lm[:, :, 0])
    with pytest.raises(InputError, match="MediaPipe landmark"):
        FlameFitter(model, emb, lm[:, :100])


def test_fit_on_the_real_clip_and_overlay(subject_flame, tmp_path):
    """The subject fixture fitted to 40 really tracked frames of d3: mean landmark error under
    1 % of the face size; the mesh drawn over a crop changes pixels only where the face is."""
    model, emb = _load(subject_flame)
    lm = subject_flame.tracked[:40]
    fit, fitter = fit_all(model, emb, lm, config=FitConfig(steps=200))
    s = fit.summary()
    print("d3, 40 tracked frames:", s)
    assert s["error_pct_mean"] < 1.0 and s["error_px_p95"] < 5.0

    class Tracking:  # the parts of TrackingData the overlay uses
        transforms = np.tile(np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]), (40, 1, 1))
        landmarks = lm

        @staticmethod
        def crop(row):
            return np.full((256, 256, 3), 40, np.uint8)

    imgs = fit_overlays(fitter, Tracking, [0, 20])
    assert len(imgs) == 2 and imgs[0].shape == (256, 256, 3)
    changed = np.argwhere((imgs[0] != 40).any(-1))
    box = lm[0, :, :2] * 0.5
    lo, hi = box.min(0) - 3, box.max(0) + 3
    assert len(changed) > 500
    assert (changed[:, 1] >= lo[0]).all() and (changed[:, 1] <= hi[0]).all()
    assert (changed[:, 0] >= lo[1]).all() and (changed[:, 0] <= hi[1]).all()
    sheet = save_fit_sheet(fitter, Tracking, tmp_path / "flame_fit.png", count=4, size=128)
    img = cv2.imread(str(sheet))
    assert img is not None and img.shape[0] > 128 and img.shape[1] > 3 * 128
    with pytest.raises(ValueError, match="draw_mesh"):
        draw_mesh(np.zeros((8, 8)), np.zeros((3, 2)), np.zeros((1, 3), int))


def test_load_flame_turns_file_errors_into_input_errors(tmp_path, synthetic_flame):
    model, emb = load_flame(synthetic_flame.model_path, synthetic_flame.embedding_path, synthetic_flame.eyelid_paths)
    assert model.has_eyelids and len(emb.face_idx) == 478
    (tmp_path / "generic_model.pkl").write_bytes(b"garbage")
    with pytest.raises(InputError) as err:
        load_flame(tmp_path / "generic_model.pkl", synthetic_flame.embedding_path)
    assert "generic_model.pkl" in err.value.message and "models add flame" in err.value.hint
    np.savez(tmp_path / "emb.npz", lmk_face_idx=np.array([10 ** 6]), lmk_b_coords=np.array([[1.0, 0, 0]]),
             landmark_indices=np.array([0]))
    with pytest.raises(InputError, match="names triangle"):
        load_flame(synthetic_flame.model_path, tmp_path / "emb.npz")
