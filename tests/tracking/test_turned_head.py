"""A head turned to a near profile: its eyes close up in the image, but it is not a small face.

The shared clips turn at most ~23° (d3), so the near profile is made from d3's own tracked mesh: a
frontal frame's 3D landmarks turned about the head by a known yaw, as mediapipe would report them.
"""
from __future__ import annotations

import numpy as np
import pytest

from studio.tracking import geometry as geo
from studio.tracking.data import TrackingData
from studio.tracking.tracker import TrackOptions, _usable


@pytest.fixture(scope="module")
def frontal(tracked_d3):
    """(478, 3) image-space landmarks of d3's most frontal frame, its canonical face and rigid points."""
    trk = TrackingData.from_project(tracked_d3)
    with np.load(tracked_d3.path("track") / "tracking.npz") as z:
        raw, pose, valid = z["raw_landmarks"], z["pose"], z["valid"].astype(bool)
        canon, rigid = z["canonical"], z["rigid_idx"]
    rows = np.flatnonzero(valid)
    row = rows[np.argmin(np.abs(pose[rows, :2]).sum(1))]
    assert trk.valid[row]
    return raw[row].astype(np.float64), canon, rigid


def turned(lm: np.ndarray, yaw: float, scale: float = 1.0) -> np.ndarray:
    """The landmarks turned by `yaw` degrees about the head's vertical axis (through the rigid points'
    centre) and scaled about it, back in image coordinates (x right, y down, z away)."""
    p = geo.to_yup(lm)
    c = p[:geo.MESH_POINTS].mean(0)
    R = geo.euler_to_rotation(yaw, 0.0, 0.0)
    q = (scale * (R @ (p - c).T)).T + c
    return geo.to_yup(q)   # the flip is its own inverse


@pytest.mark.parametrize("yaw", [0.0, 45.0, 70.0, 80.0, -80.0])
def test_a_turned_head_is_not_a_small_face(frontal, yaw):
    lm, canon, rigid = frontal
    opts = TrackOptions()
    eye_frontal = np.hypot(*np.subtract(*geo.eye_mouth_points(lm[:, :2])[:2]))
    # a face just large enough seen from the front: at 80° its eyes are a few pixels apart
    s = 1.5 * opts.min_eye_distance / eye_frontal
    lm_t = turned(lm, yaw, s)
    eyes = np.hypot(*np.subtract(*geo.eye_mouth_points(lm_t[:, :2])[:2]))
    if abs(yaw) >= 70:
        assert eyes < opts.min_eye_distance   # the old rule (eye distance) would have skipped it
    assert _usable(lm_t, 4000, 4000, opts) is None
    size = geo.face_size(lm_t[:, :2])
    assert 0.85 * 1.5 * opts.min_eye_distance < size < 1.25 * 1.5 * opts.min_eye_distance
    # the pose fit reads the turn (the frame itself is within a few degrees of frontal)
    R, _q = _fit(lm_t, canon, rigid)
    assert abs(geo.rotation_to_euler(R)[0] - yaw) < 6.0


def test_a_small_face_is_still_too_small(frontal):
    lm, _canon, _rigid = frontal
    opts = TrackOptions()
    eye_frontal = np.hypot(*np.subtract(*geo.eye_mouth_points(lm[:, :2])[:2]))
    for yaw in (0.0, 60.0):
        small = turned(lm, yaw, 0.6 * opts.min_eye_distance / eye_frontal)
        assert _usable(small, 4000, 4000, opts) == "face too small"


def test_the_crop_keeps_its_size_as_the_head_turns(frontal):
    """The FFHQ crop is sized by the larger of the eye and eye-to-mouth terms: from the front to a near
    profile it changes by a few per cent, not by the eyes' closing up."""
    lm = frontal[0]
    half = [np.hypot(*geo.ffhq_box(turned(lm, y)[:, :2])[2:]) for y in (0, 20, 40, 60, 80)]
    assert max(half) / min(half) < 1.2, half


def _fit(lm, canon, rigid):
    from studio.tracking.tracker import canonical_landmarks

    return canonical_landmarks(lm.astype(np.float32), canon, rigid)
