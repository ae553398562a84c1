"""Driving an avatar trained on FLAME controls from a FLAME parameter file (`export --source flame`).

The sequence (any layout `studio.flame.sequences` reads) is normalised to the subject's own fitted
sequence (``<project>/flame/flame.npz``; PVP appendix B: each coefficient's and the jaw's mean and
std matched), then each frame becomes the avatar's controls [yaw, pitch, jaw, flame_00 …]: yaw and
pitch from the sequence's head rotation when it has one (0 otherwise), jaw and the coefficients
from the normalised sequence, measured from the subject's rest face like the avatar's own controls.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..motion import Motion
from .controls import controls_from_sequence, is_flame_controls
from .sequences import normalise_to_subject, read_sequence


def yaw_pitch_degrees(rotation: np.ndarray) -> np.ndarray:
    """(N, 3) FLAME head rotations (axis-angle, y up, z towards the viewer) → (N, 2) [yaw, pitch] in
    degrees in the tracking's convention (yaw > 0: the nose turns to the image's right; pitch > 0:
    the face tilts up), from where the rotation sends the face's forward axis."""
    r = np.asarray(rotation, np.float64)
    theta = np.linalg.norm(r, axis=1, keepdims=True)
    k = r / np.maximum(theta, 1e-12)
    z = np.array([0.0, 0.0, 1.0])
    # Rodrigues applied to z: z cosθ + (k × z) sinθ + k (k·z)(1 − cosθ)
    n = z * np.cos(theta) + np.cross(k, z) * np.sin(theta) + k * k[:, 2:3] * (1 - np.cos(theta))
    yaw = np.degrees(np.arctan2(n[:, 0], n[:, 2]))
    pitch = np.degrees(np.arctan2(n[:, 1], np.hypot(n[:, 0], n[:, 2])))
    return np.stack([yaw, pitch], 1)


def flame_motion(project, path, control_names: list[str], fps: float | None = None) -> Motion:
    """A `Motion` from the FLAME sequence at `path` for an avatar with FLAME controls `control_names`."""
    if not is_flame_controls(control_names):
        raise InputError("this avatar was trained on the named expression controls, so a FLAME sequence cannot "
                         "drive it", "train it with FLAME controls (`avatar-studio run VIDEO --controls flame`)")
    seq = read_sequence(path)
    subject = read_sequence(project.output("flame", "sequence"))
    norm = normalise_to_subject(seq, subject)
    n_expr = len(control_names) - 3
    ctrl = np.zeros((seq.n_frames, len(control_names)), np.float32)
    if seq.pose is not None:
        ctrl[:, :2] = yaw_pitch_degrees(seq.pose)
    ctrl[:, 2:] = controls_from_sequence(norm, n_expr)
    notes = [] if seq.pose is not None else [f"{seq.source} has no head pose: yaw and pitch stay at 0"]
    return Motion(name="flame", fps=float(fps or seq.fps or 25.0), controls=ctrl, control_names=list(control_names),
                  notes=notes)
