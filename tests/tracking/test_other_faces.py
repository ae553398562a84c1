"""Another person's face in the clip: where the tracker jumped to it, those frames are not the subject's.

The follower switches to a clearly larger face that comes into view (it may have locked onto a face on a
poster before the person came in), so a friend leaning into the shot took its place; those frames went into
training as the subject. The pass marks where the tracked face jumps (`face_jumped`, only while another face
is in view), smooths crops only within a stretch of one face, and `other_face_rows` finds the stretches that
are not the subject's (the face tracked in most frames).
"""
from __future__ import annotations

import numpy as np

from studio.tracking import geometry as geo
from studio.tracking.tracker import JUMP_MOVE, PassResult, face_jumped, other_face_rows


def _face(cx: float, cy: float, half: float) -> np.ndarray:
    """(478, 3) landmarks whose FFHQ crop box is centred near (cx, cy) with half-side about `half`: a
    canonical-looking face made of the four points `ffhq_box` reads, the rest at their centre."""
    lm = np.zeros((478, 3), np.float32)
    eye = half / 2.0                            # box half-side = 2 x eye distance
    lm[:, 0], lm[:, 1] = cx, cy
    for idx in (geo.EYE_R_OUTER, geo.EYE_R_INNER):
        lm[idx, :2] = (cx - eye / 2, cy - 0.1 * half)
    for idx in (geo.EYE_L_OUTER, geo.EYE_L_INNER):
        lm[idx, :2] = (cx + eye / 2, cy - 0.1 * half)
    lm[geo.NOSE_BASE, :2] = (cx, cy - 0.1 * half + 0.3 * half)
    return lm


def _pass(faces: list[tuple[float, float, float]], stretches: list[int], n_faces: int = 2) -> PassResult:
    n = len(faces)
    lm = np.stack([_face(*f) for f in faces])
    return PassResult(n_frames=n, valid=np.ones(n, bool), landmarks=lm.copy(), raw_landmarks=lm,
                      transforms=np.zeros((n, 2, 3), np.float32), n_faces=np.full(n, n_faces, np.int16),
                      reasons={}, segments=np.array(stretches, np.int32))


def test_a_jump_is_told_from_a_moving_head():
    a = geo.ffhq_box(_face(300, 300, 100)[:, :2])
    half = float(np.hypot(*a[2:]))
    moved = geo.ffhq_box(_face(300 + 0.1 * half, 300, 100)[:, :2])     # a quick head move: 0.1 half-sides
    assert not face_jumped(a, moved)
    far = geo.ffhq_box(_face(300 + 1.5 * half, 300, 100)[:, :2])       # a face beside it
    assert face_jumped(a, far)
    assert not face_jumped(a, far, gap=20)                             # lost for 20 frames: it may have moved
    bigger = geo.ffhq_box(_face(300, 300, 170)[:, :2])                 # the same place, 1.7 times the size
    assert face_jumped(a, bigger)
    assert JUMP_MOVE > 0.08 * 3                                         # well above the heads' own moves


def test_the_face_tracked_in_most_frames_is_the_subject():
    subject, friend = (300, 300, 100), (900, 250, 160)
    # the subject, a friend leaning in (the tracker followed the larger face), the subject again
    res = _pass([subject] * 20 + [friend] * 8 + [subject] * 15, [0] * 20 + [1] * 8 + [2] * 15)
    assert list(other_face_rows(res)) == list(range(20, 28))
    # the subject moved while the friend was in view: still the face before the one jumped from
    moved = (420, 320, 100)
    res = _pass([subject] * 20 + [friend] * 8 + [moved] * 15, [0] * 20 + [1] * 8 + [2] * 15)
    assert list(other_face_rows(res)) == list(range(20, 28))
    # a face on a poster followed first, then the person who came in: the poster's frames go
    poster = (150, 120, 60)
    res = _pass([poster] * 10 + [subject] * 30, [0] * 10 + [1] * 30)
    assert list(other_face_rows(res)) == list(range(10))
    # one stretch, or none recorded (a project tracked before): nothing goes
    assert not len(other_face_rows(_pass([subject] * 10, [0] * 10)))
    res = _pass([subject] * 10, [0] * 10)
    res.segments = None
    assert not len(other_face_rows(res))


def test_frames_dropped_after_the_pass_leave_their_stretch(tmp_path):
    """Rows dropped for another reason (damaged video) are not counted in any stretch."""
    from studio.tracking.tracker import drop_rows

    subject, friend = (300, 300, 100), (900, 250, 160)
    res = _pass([subject] * 10 + [friend] * 12 + [subject] * 8, [0] * 10 + [1] * 12 + [2] * 8)
    drop_rows(res, range(0, 6), "video damaged (frame could not be decoded)", tmp_path)
    # the subject now has 4 + 8 frames against the friend's 12: a tie goes to the face tracked first
    assert list(other_face_rows(res)) == list(range(10, 22))
    assert (res.segments[:6] == -1).all()
