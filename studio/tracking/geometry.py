"""Geometry for tracking: similarity fits, the subject's canonical face, Euler angles,
FFHQ-style alignment and Gaussian temporal smoothing. Pure NumPy.

Coordinates: mediapipe gives landmarks in image pixels (x right, y down, z away from the
camera, in x's scale). `to_yup` turns them into a right-handed frame with x right, y up and
z towards the viewer, in which the head pose is estimated.
"""
from __future__ import annotations

import numpy as np

# Landmark indices of mediapipe's 478-point face mesh (468 mesh points + 2x5 iris points).
MESH_POINTS = 468
EYE_R_OUTER, EYE_R_INNER, EYE_L_INNER, EYE_L_OUTER = 33, 133, 362, 263  # R = subject's right (image left)
MOUTH_R, MOUTH_L = 61, 291
FOREHEAD, CHIN = 10, 152
EYE_R_REGION = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246, 70, 63, 105, 66, 107)
"""The subject's right eye's contour and the brow above it (their convex hull is the eye region)."""
EYE_L_REGION = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466, 300, 293, 334, 296,
                336)
MOUTH_REGION = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
"""The lips' outer contour."""
FEATURE_REGIONS = (EYE_R_REGION, EYE_L_REGION, MOUTH_REGION)
"""Eyes with brows, and mouth: where a face's identity and expression are read."""
SYMMETRIC_PAIRS = [(263, 33), (362, 133), (291, 61), (454, 234), (386, 159), (374, 145), (334, 105), (285, 55)]
"""(subject's left, subject's right) landmark pairs used to find the face's left-right axis."""


def to_yup(lm: np.ndarray) -> np.ndarray:
    """(..., 3) image-space landmarks → x right, y up, z towards viewer."""
    out = np.array(lm, dtype=np.float64, copy=True)
    out[..., 1] *= -1.0
    out[..., 2] *= -1.0
    return out


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising Σ w‖s·R·src + t − dst‖² for (P, D) point sets."""
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(src.shape[1])
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[-1, -1] = -1
    R = U @ D @ Vt
    var_s = (w * (xs ** 2).sum(1)).sum()
    s = float(np.trace(np.diag(S) @ D) / max(var_s, 1e-12))
    t = mu_d - s * R @ mu_s
    return s, R, t


def canonical_face(shapes: np.ndarray, iterations: int = 3, stable_share: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """The subject's own canonical face from many frames.

    shapes: (N, P, 3) y-up landmarks (mesh points only). Generalised Procrustes gives a mean
    shape; the most stable share of points (least residual motion: forehead, nose, cheeks —
    not lips, lids or brows) is kept as the rigid set for pose fits. The mean shape is then
    rotated into a frame defined by the face's own symmetry: x from the subject's right to
    left (mean over symmetric landmark pairs), y from chin to forehead made orthogonal to x,
    z = x × y towards the viewer; centred and scaled to unit outer-eye-corner distance.

    Returns (canonical (P, 3), rigid_idx (K,)).
    """
    shapes = np.asarray(shapes, np.float64)
    n, p, _ = shapes.shape
    ref = shapes[np.argmin(np.abs(np.arange(n) - n // 2))].copy()
    idx = np.arange(p)
    for it in range(iterations + 1):
        aligned = np.empty_like(shapes)
        for i in range(n):
            s, R, t = umeyama(shapes[i, idx], ref[idx])
            aligned[i] = (s * (R @ shapes[i].T)).T + t
        ref = aligned.mean(0)
        if it == iterations - 1:
            resid = ((aligned - ref) ** 2).sum(-1).mean(0)  # (P,)
            k = max(30, int(stable_share * p))
            idx = np.sort(np.argsort(resid)[:k])
    # symmetry frame
    xs = [ref[a] - ref[b] for a, b in SYMMETRIC_PAIRS]
    x = np.mean([v / np.linalg.norm(v) for v in xs], axis=0)
    x /= np.linalg.norm(x)
    y = ref[FOREHEAD] - ref[CHIN]
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    basis = np.stack([x, y, z])  # rows: new axes
    centred = ref - ref[idx].mean(0)
    canon = centred @ basis.T
    canon /= np.linalg.norm(canon[EYE_L_OUTER] - canon[EYE_R_OUTER])
    return canon, idx


def rotation_to_euler(R: np.ndarray) -> tuple[float, float, float]:
    """R = Ry(yaw)·Rx(−pitch)·Rz(roll) → (yaw, pitch, roll) in degrees.

    yaw > 0 turns the nose towards +x (image right), pitch > 0 tilts the face up,
    roll > 0 turns the head counter-clockwise as seen in the image.
    """
    # R = Ry(a) Rx(b) Rz(c):  R[1,2] = -sin b ; R[0,2] = sin a cos b ; R[2,2] = cos a cos b
    #                          R[1,0] = cos b sin c ; R[1,1] = cos b cos c
    b = np.arcsin(np.clip(-R[1, 2], -1.0, 1.0))
    a = np.arctan2(R[0, 2], R[2, 2])
    c = np.arctan2(R[1, 0], R[1, 1])
    return float(np.degrees(a)), float(-np.degrees(b)), float(np.degrees(c))


def euler_to_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    a, b, c = np.radians(yaw), np.radians(-pitch), np.radians(roll)
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    Rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


def fit_pose(lm_yup: np.ndarray, canon: np.ndarray, rigid_idx: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity fit canon → frame on the rigid points: lm ≈ s·R·canon + t."""
    return umeyama(canon[rigid_idx], lm_yup[rigid_idx])


# ----------------------------------------------------------------------------- alignment
def eye_mouth_points(lm_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image-left eye centre, image-right eye centre, image-left / image-right mouth corner."""
    eye_l = 0.5 * (lm_xy[EYE_R_OUTER] + lm_xy[EYE_R_INNER])
    eye_r = 0.5 * (lm_xy[EYE_L_OUTER] + lm_xy[EYE_L_INNER])
    return eye_l, eye_r, lm_xy[MOUTH_R], lm_xy[MOUTH_L]


NOSE_BASE = 2  # where the columella meets the upper lip: moves with the skull, not with the mouth
MOUTH_FROM_NOSE = 1.40
"""Eye-centre → mouth-corner-centre distance over eye-centre → nose-base distance on a closed
mouth (median 1.404, std 0.075 over the neutral frames of subject_turns_d3)."""


def ffhq_box(lm_xy: np.ndarray) -> np.ndarray:
    """FFHQ-style crop box from landmarks as (cx, cy, ux, uy): centre and half-side vector along x.

    The FFHQ construction (oriented by the eye-to-eye and eye-to-mouth directions, sized by the
    larger of 2x eye distance and 1.8x eye-mouth), except that the mouth point is placed from
    the nose base (`MOUTH_FROM_NOSE` times the eye→nose-base vector) instead of read from the
    mouth corners: those drop when the mouth opens (eye→mouth +23 % in an open-mouthed
    surprise), which zoomed the whole crop out by ~11 % and made an expression move the head,
    hair and background in the aligned image.
    """
    eye_l, eye_r, _, _ = eye_mouth_points(lm_xy)
    eye_avg = 0.5 * (eye_l + eye_r)
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = MOUTH_FROM_NOSE * (lm_xy[NOSE_BASE] - eye_avg)
    x = np.array([eye_to_eye[0] + eye_to_mouth[1], eye_to_eye[1] - eye_to_mouth[0]])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    c = eye_avg + eye_to_mouth * 0.1
    return np.array([c[0], c[1], x[0], x[1]])


def face_size(lm_xy: np.ndarray) -> float:
    """A face's size in pixels that stays put as the head turns: half the FFHQ crop box's half-side,
    i.e. the larger of the eye-centre distance and 0.9 times the eye-to-mouth distance (`ffhq_box`).
    Seen from the front it is the eye distance (on d3, d9 and d14 the eye term is the larger by
    4-16 %); turned to a near profile the eyes close up in the image (yaw 70°: a third of their
    frontal distance, 80°: a sixth) while the eye-to-mouth distance does not."""
    box = ffhq_box(lm_xy)
    return 0.5 * float(np.hypot(box[2], box[3]))


def box_to_affine(box: np.ndarray, size: int) -> np.ndarray:
    """(cx, cy, ux, uy) box → 2x3 affine mapping frame pixels to an S x S crop."""
    c = box[:2]
    ux = box[2:]
    uy = np.array([-ux[1], ux[0]])  # x rotated +90° in image coords (pointing down the face)
    # frame point p = c + a*ux + b*uy with a, b in [-1, 1] → crop ((a+1)/2*S, (b+1)/2*S)
    M = np.stack([ux, uy], axis=1)  # columns
    Minv = np.linalg.inv(M)
    A = (size / 2.0) * Minv
    t = (size / 2.0) * (np.ones(2) - Minv @ c)
    return np.concatenate([A, t[:, None]], axis=1)


def invert_affine(A: np.ndarray) -> np.ndarray:
    L = A[:, :2]
    Li = np.linalg.inv(L)
    return np.concatenate([Li, (-Li @ A[:, 2])[:, None]], axis=1)


# ----------------------------------------------------------------------------- smoothing
def gaussian_weights(sigma: float) -> np.ndarray:
    if sigma <= 0:
        return np.ones(1)
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return k / k.sum()


def smooth_at(values: np.ndarray, valid: np.ndarray, center: int, sigma: float) -> np.ndarray:
    """Gaussian-weighted mean of values[center-r : center+r] over valid rows (edges renormalised)."""
    k = gaussian_weights(sigma)
    r = len(k) // 2
    lo, hi = max(0, center - r), min(len(values), center + r + 1)
    w = k[lo - center + r: hi - center + r] * valid[lo:hi]
    if w.sum() <= 0:
        return values[center]
    w = w / w.sum()
    return np.tensordot(w, values[lo:hi], axes=(0, 0))


def smooth_series(values: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    out = np.array(values, dtype=np.float64, copy=True)
    for i in range(len(values)):
        if valid[i]:
            out[i] = smooth_at(values, valid, i, sigma)
    return out
