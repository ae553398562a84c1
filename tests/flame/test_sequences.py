"""FLAME parameter sequences (studio/flame/sequences.py): every layout reads to the same numbers,
missing keys get a message naming the key and the layouts understood, pickles are read without
running anything, and normalisation matches the subject's per-coefficient mean and std."""
from __future__ import annotations

import math
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.flame import rodrigues
from studio.errors import InputError
from studio.flame.sequences import (FORMAT, FlameSequence, normalise_to_subject, read_sequence,
                                    rotation_6d_to_axis_angle, sequence_from_fit, write_sequence)

N = 12
RNG = np.random.default_rng(0)
EXPR = RNG.normal(0, 1, (N, 50))
EXPR100 = RNG.normal(0, 1, (N, 100))
JAW = np.stack([np.linspace(0, 0.3, N), RNG.normal(0, 0.02, N), RNG.normal(0, 0.02, N)], 1)
GLOBAL = RNG.normal(0, 0.1, (N, 3))


def _6d(aa: np.ndarray) -> np.ndarray:
    """pytorch3d's matrix_to_rotation_6d: the first two rows of the rotation matrix."""
    R = rodrigues(torch.as_tensor(aa)).numpy()
    return R[:, :2, :].reshape(len(aa), 6)


def test_rotation_6d_round_trip():
    aa = RNG.normal(0, 0.8, (50, 3))
    np.testing.assert_allclose(rotation_6d_to_axis_angle(_6d(aa)), aa, atol=1e-9)
    np.testing.assert_allclose(rotation_6d_to_axis_angle(_6d(np.zeros((2, 3)))), 0, atol=1e-12)


def test_each_layout_reads(tmp_path):
    # ours, written by the app
    ours = write_sequence(tmp_path / "ours.npz", FlameSequence(EXPR, JAW, GLOBAL, 25.0))
    s = read_sequence(ours)
    assert s.layout == "avatar-studio" and s.fps == 25.0 and s.n_frames == N
    np.testing.assert_allclose(s.expression, EXPR, atol=1e-6)
    np.testing.assert_allclose(s.pose, GLOBAL, atol=1e-6)
    assert not list(tmp_path.glob(".*tmp*")), "the atomic write left a temp file"
    # DECA: exp + pose (global 3 + jaw 3)
    np.savez(tmp_path / "deca.npz", exp=EXPR, pose=np.concatenate([GLOBAL, JAW], 1), shape=np.zeros((N, 100)))
    s = read_sequence(tmp_path / "deca.npz")
    assert s.layout == "DECA/EMOCA"
    np.testing.assert_allclose(s.jaw, JAW)
    np.testing.assert_allclose(s.pose, GLOBAL)
    # EMOCA names, with a per-frame batch axis of 1
    np.savez(tmp_path / "emoca.npz", expcode=EXPR[:, None], posecode=np.concatenate([GLOBAL, JAW], 1)[:, None])
    s = read_sequence(tmp_path / "emoca.npz")
    np.testing.assert_allclose(s.expression, EXPR)
    np.testing.assert_allclose(s.jaw, JAW)
    # SMIRK
    np.savez(tmp_path / "smirk.npz", expression_params=EXPR, jaw_params=JAW, pose_params=GLOBAL,
             eyelid_params=np.zeros((N, 2)))
    s = read_sequence(tmp_path / "smirk.npz")
    assert s.layout == "SMIRK" and s.eyelids.shape == (N, 2)
    np.testing.assert_allclose(s.jaw, JAW)
    # metrical-tracker: exp (100) + jaw as 6D rotations, eyes as two 6D rotations
    eyes = RNG.normal(0, 0.2, (N, 6))
    np.savez(tmp_path / "metrical.npz", exp=EXPR100, jaw=_6d(JAW),
             eyes=np.concatenate([_6d(eyes[:, :3]), _6d(eyes[:, 3:])], 1))
    s = read_sequence(tmp_path / "metrical.npz")
    assert s.layout == "metrical-tracker" and s.expression.shape == (N, 100)
    np.testing.assert_allclose(s.jaw, JAW, atol=1e-9)
    np.testing.assert_allclose(s.eyes, eyes, atol=1e-9)


def test_folder_of_per_frame_pickles(tmp_path):
    """metrical-tracker writes one dict per frame with the parameters under 'flame'; a .pkl of
    numpy arrays is read by the restricted unpickler."""
    for i in range(N):
        frame = {"flame": {"exp": EXPR100[i:i + 1], "jaw": JAW[i:i + 1], "shape": np.zeros((1, 300))},
                 "frame_id": f"{i:05d}"}
        (tmp_path / f"{i:05d}.pkl").write_bytes(pickle.dumps(frame, protocol=4))
    s = read_sequence(tmp_path)
    assert s.layout == "metrical-tracker" and s.n_frames == N
    np.testing.assert_allclose(s.expression, EXPR100)
    np.testing.assert_allclose(s.jaw, JAW)
    # a dict saved with np.save (an object array) reads too
    np.save(tmp_path / "dict.npy", {"expression_params": EXPR, "jaw_params": JAW}, allow_pickle=True)
    s = read_sequence(tmp_path / "dict.npy")
    assert s.layout == "SMIRK"
    np.testing.assert_allclose(s.expression, EXPR)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".pkl", ".npy"])
def test_payload_sequence_is_refused_and_never_runs(tmp_path, suffix):
    marker = tmp_path / "pwned"
    d = {"exp": EXPR, "pose": _Payload(marker)}
    p = tmp_path / f"evil{suffix}"
    if suffix == ".pkl":
        p.write_bytes(pickle.dumps(d))
    else:
        np.save(p, np.array([d], dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as err:
        read_sequence(p)
    assert "refus" in str(err.value) and "system" in str(err.value)
    assert not marker.exists(), "the payload ran"
    # an npz carrying objects is not unpickled at all
    np.savez(tmp_path / "obj.npz", exp=np.array([d], dtype=object))
    with pytest.raises(InputError, match="pickled Python objects"):
        read_sequence(tmp_path / "obj.npz")
    assert not marker.exists()


def test_missing_keys_name_the_key_and_the_layouts(tmp_path):
    cases = {
        "exp_only.npz": (dict(exp=EXPR), ["'pose'", "'jaw'"]),
        "smirk_no_jaw.npz": (dict(expression_params=EXPR), ["'jaw_params'"]),
        "ours_no_jaw.npz": (dict(format=np.array(FORMAT), expression=EXPR), ["'jaw'"]),
        "nothing.npz": (dict(betas=EXPR), ["'expression'", "'exp'", "betas"]),
    }
    for name, (arrays, words) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(InputError) as err:
            read_sequence(tmp_path / name)
        text = str(err.value)
        assert name in err.value.message and "\n" not in text
        for w in words:
            assert w in err.value.message, (name, w, text)
        for layout in ("DECA/EMOCA", "SMIRK", "metrical-tracker", "avatar-studio"):
            assert layout in err.value.hint
    np.savez(tmp_path / "frames.npz", exp=EXPR, pose=np.zeros((N - 1, 6)))
    with pytest.raises(InputError, match="12 frames of expression but 11 of jaw"):
        read_sequence(tmp_path / "frames.npz")
    np.savez(tmp_path / "nan.npz", exp=EXPR * np.nan, pose=np.zeros((N, 6)))
    with pytest.raises(InputError, match="NaN"):
        read_sequence(tmp_path / "nan.npz")
    np.save(tmp_path / "plain.npy", EXPR)
    with pytest.raises(InputError, match="plain array"):
        read_sequence(tmp_path / "plain.npy")
    np.savez(tmp_path / "future.npz", format=np.array("avatar-studio-flame/9"), expression=EXPR, jaw=JAW)
    with pytest.raises(InputError, match="newer"):
        read_sequence(tmp_path / "future.npz")
    with pytest.raises(InputError, match="does not exist"):
        read_sequence(tmp_path / "nope.npz")
    (tmp_path / "seq.txt").write_text("1 2 3")
    with pytest.raises(InputError, match="unknown file type"):
        read_sequence(tmp_path / "seq.txt")


def test_normalise_to_subject_matches_mean_and_std():
    rng = np.random.default_rng(5)
    subject = FlameSequence(rng.normal(0.3, 0.5, (200, 50)), rng.normal(0, 0.05, (200, 3)) + [0.1, 0, 0])
    driver_expr = rng.normal(-1.0, 2.0, (80, 100))
    driver_expr[:, 7] = 0.25  # constant in the driver: only shifted
    driver = FlameSequence(driver_expr, rng.normal(0, 0.2, (80, 3)), GLOBAL[:1].repeat(80, 0), 30.0)
    out = normalise_to_subject(driver, subject)
    assert out.expression.shape == (80, 50) and out.fps == 30.0
    keep = [k for k in range(50) if k != 7]
    np.testing.assert_allclose(out.expression[:, keep].mean(0), subject.expression[:, keep].mean(0), atol=1e-9)
    np.testing.assert_allclose(out.expression[:, keep].std(0), subject.expression[:, keep].std(0), atol=1e-9)
    np.testing.assert_allclose(out.expression[:, 7], subject.expression[:, 7].mean(), atol=1e-9)
    np.testing.assert_allclose(out.jaw.mean(0), subject.jaw.mean(0), atol=1e-9)
    np.testing.assert_allclose(out.jaw.std(0), subject.jaw.std(0), atol=1e-9)
    np.testing.assert_array_equal(out.pose, driver.pose)
    # order is kept: the normalised coefficient is an increasing function of the original
    assert np.all(np.diff(out.expression[np.argsort(driver_expr[:, 3]), 3]) >= -1e-12)
    # a driver with fewer coefficients: the missing ones stay zero
    short = normalise_to_subject(FlameSequence(driver_expr[:, :10], driver.jaw), subject)
    assert short.expression.shape == (80, 50) and np.all(short.expression[:, 10:] == 0)


def test_sequence_from_fit_fills_unfitted_rows(tmp_path):
    fitted = np.array([False, True, True, False, False, True, False])
    n = len(fitted)
    expr = np.arange(n, dtype=float)[:, None].repeat(50, 1) * fitted[:, None]
    fit = SimpleNamespace(fitted=fitted, expression=expr, jaw=np.zeros((n, 3)), rotation=np.zeros((n, 3)),
                          eyes=np.zeros((n, 6)), eyelids=np.zeros((n, 2)), eyes_fitted=False)
    seq = sequence_from_fit(fit, fps=30.0)
    assert seq.expression[:, 0].tolist() == [1, 1, 2, 2, 5, 5, 5]
    s = read_sequence(write_sequence(tmp_path / "subject.npz", seq, shape=np.zeros(100)))
    assert s.fps == 30.0 and s.n_frames == n and s.eyes is None
    with pytest.raises(InputError, match=".npz"):
        write_sequence(tmp_path / "subject.npy", seq)
    assert math.isfinite(float(s.expression.sum()))
