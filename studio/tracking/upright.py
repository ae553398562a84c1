"""Which way up the face is: a clip whose rotation tag is missing or wrong shows the face on its side or upside
down. The face mesh follows a face on its side (its crops come out upright, roll near ±90°), but an upside-down
face it fits upright, chin for forehead: its crops, pose and expressions are all wrong and nothing said so.

`find_turn` scores a few frames turned each of the four ways with mediapipe's face detector (short range, the one
the face mesh starts from): the turn that shows the face upright scores highest. It is taken where it leads the
picture as it is by `MARGIN`, or, for a quarter turn, where the face mesh agrees (forehead over chin points that
way): a face on its side can score nearly as high as upright (0.87 against 0.81 on the landscape d14), and the
mesh follows a face on its side but not one upside down. Seven real clips (d3, d9, d14, driver_tps, the landscape
d14, d3 with a second face, the 2-minute d9), each turned the four ways: the highest score was the right turn in
all 28; the margin alone took 25 (every upside-down one; three quarter turns kept as they were), the margin or
the mesh all 28."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..video import TURNS

_CV_TURN = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}

MARGIN = 0.08
"""A turn is taken where its frames score this much more on average than the picture as it is. On the seven clips
upright, every other turn scored 0.03–0.15 below the picture as it is; on their turned copies the right turn led
it by 0.03–0.64, by under this only for three quarter turns (0.03–0.07), which the face mesh confirmed."""


@dataclass
class TurnFound:
    turn: int
    """Degrees clockwise that make the face upright (0: the picture is upright)."""
    scores: dict
    """Mean detection score of the sampled frames for each turn (0 for a frame without a face)."""
    faces: int
    """Sampled frames in which a face was found the best turn's way up."""


def turn_picture(rgb: np.ndarray, turn: int) -> np.ndarray:
    return rgb if turn == 0 else cv2.rotate(rgb, _CV_TURN[turn])


def mesh_turn(frames: list[np.ndarray]) -> int | None:
    """The quarter turn (degrees clockwise) that puts the face mesh's top (forehead over chin) up, from the median
    of the frames' directions; None where no frame has a face."""
    from .geometry import CHIN, FOREHEAD
    from .tracker import FaceMesh

    mesh = FaceMesh(video=False, max_faces=1)
    try:
        angles = []
        for f in frames:
            lm, _ = mesh(f)
            if lm is not None:
                up = lm[FOREHEAD, :2] - lm[CHIN, :2]
                angles.append(np.degrees(np.arctan2(up[0], -up[1])))   # clockwise from the picture's up
    finally:
        mesh.close()
    if not angles:
        return None
    # the median direction as a unit vector's (angles wrap at ±180)
    a = np.radians(angles)
    mean = np.degrees(np.arctan2(np.median(np.sin(a)), np.median(np.cos(a))))
    return int(round(-mean / 90.0)) * 90 % 360


def find_turn(frames: list[np.ndarray]) -> TurnFound:
    """The turn (degrees clockwise) that shows the face in `frames` upright; 0 unless another is clearly better."""
    import mediapipe as mp

    from .mediapipe_io import started_quietly

    det = started_quietly(lambda: mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                                               min_detection_confidence=0.2))
    try:
        scores = {t: [] for t in TURNS}
        for f in frames:
            for t in TURNS:
                found = det.process(np.ascontiguousarray(turn_picture(f, t))).detections or []
                scores[t].append(max((d.score[0] for d in found), default=0.0))
    finally:
        det.close()
    mean = {t: float(np.mean(v)) if v else 0.0 for t, v in scores.items()}
    best = max(TURNS, key=lambda t: (mean[t], t == 0))
    # a clear lead over the picture as it is, or for a quarter turn the face mesh's word
    if best and mean[best] < mean[0] + MARGIN and (best == 180 or mesh_turn(frames) != best):
        best = 0
    return TurnFound(turn=best, scores={t: round(v, 3) for t, v in mean.items()},
                     faces=int(sum(s > 0 for s in scores[best])))
