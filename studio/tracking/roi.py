"""Find the face on a downscaled frame, then run the face mesh on the face region only.

Given a whole landscape frame, mediapipe's face mesh finds faces with its short-range detector
on the frame letterboxed to 128x128, so a face that is small in a wide shot is never found
(subject_turns_d3 pasted 200 px wide into a 1280x720 frame: 0 of 150 frames), and with
``max_num_faces=2`` that detector runs on every frame. `FaceFollower` instead:

- finds faces with mediapipe's face detector on a copy of the frame downscaled to
  `detect_side` (short-range model, then the full-range model when that finds nothing, then
  the short-range model on tiles of a large frame, where a small face can hide);
- cuts a square region around the face, `REGION_SCALE` times the face's landmark extent,
  resampled to `REGION_SIZE` pixels (the mesh's 192x192 input then covers its own 1.5x face
  box at about 1:1), and runs the mesh (``max_num_faces=1``, video mode) on that region;
- follows the face: the region stays while the face stays near its centre (`KEEP_SHIFT`,
  `KEEP_SIZE`) and is re-centred on the landmarks when it drifts;
- finds the face again (detector on the whole frame) when the mesh loses it, when the
  landmarks fill too much or too little of the region or sit off its centre, and every
  `redetect_every` frames, which also counts the faces in view and switches to a clearly
  larger face that has come into view.

On whole frames where mediapipe finds the face itself, the landmarks agree with the
whole-frame mesh to about 0.3-0.9 px (README, tracking measurements) at about the same CPU
cost: the speed-up of the tracking stage came from elsewhere (`mediapipe_io`, the crop writer
thread, the report). Landmarks are returned in frame pixels with the whole-frame mesh's
conventions (pixel centres at integer coordinates; z in the scale of x).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

REGION_SIZE = 256
"""Side of the square face region the mesh runs on, in pixels."""
REGION_SCALE = 2.0
"""Region side over the larger side of the landmarks' bounding box."""
DETECT_SCALE = 1.9
"""Region side over the larger side of a detector box (detector boxes omit the forehead)."""
KEEP_SHIFT = 0.10
"""The region stays put while the face's centre is within this share of its side from the
region's centre and its size within `KEEP_SIZE`: moving the region every frame adds its own
jitter to the mesh's (mean second difference of the landmarks over 150 frames of
subject_turns_d3: 1.67 px when the region moves every frame, 1.13 px with these values,
1.13 px for the mesh on the whole frame)."""
KEEP_SIZE = 0.15


@dataclass
class Region:
    """A square region of the frame: left/top edge (ox, oy) and side, in frame pixels."""

    ox: float
    oy: float
    side: float

    @classmethod
    def around(cls, cx: float, cy: float, side: float) -> "Region":
        return cls(cx - side / 2.0, cy - side / 2.0, side)

    @classmethod
    def from_landmarks(cls, lm: np.ndarray) -> "Region":
        x, y = lm[:, 0], lm[:, 1]
        x0, x1, y0, y1 = float(x.min()), float(x.max()), float(y.min()), float(y.max())
        return cls.around(0.5 * (x0 + x1), 0.5 * (y0 + y1), REGION_SCALE * max(x1 - x0, y1 - y0, 1.0))

    @classmethod
    def from_box(cls, box: np.ndarray) -> "Region":
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        return cls.around(0.5 * (x0 + x1), 0.5 * (y0 + y1), DETECT_SCALE * max(x1 - x0, y1 - y0, 1.0))

    def holds(self, other: "Region") -> bool:
        """Whether `other` (the region the face would now want) is close enough to keep this one."""
        dx = (other.ox + other.side / 2) - (self.ox + self.side / 2)
        dy = (other.oy + other.side / 2) - (self.oy + self.side / 2)
        return max(abs(dx), abs(dy)) <= KEEP_SHIFT * self.side and abs(other.side / self.side - 1) <= KEEP_SIZE

    def cut(self, frame: np.ndarray, size: int = REGION_SIZE) -> tuple[np.ndarray, float, float, float]:
        """Resample the region to (size, size, 3) with bilinear sampling straight from the frame (as
        mediapipe samples its own face box; an area filter gave the same landmarks on the 1080p
        benchmark clip at 8x the cost). Parts outside the frame are black. Returns (image, ox, oy,
        scale): a point at region pixel coordinate c (pixel centres at integers, as mediapipe's
        landmarks are) is at ox + (c + 0.5) / scale - 0.5 in the frame."""
        s = size / max(self.side, 1.0)
        A = np.array([[s, 0.0, s * (0.5 - self.ox) - 0.5], [0.0, s, s * (0.5 - self.oy) - 0.5]])
        img = cv2.warpAffine(frame, A, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return img, self.ox, self.oy, s


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def landmark_box(lm: np.ndarray) -> np.ndarray:
    return np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()], np.float64)


TILE_MIN_LONG_SIDE = 960
"""Frames whose long side is at least this are searched in tiles when the whole frame shows no face (on
smaller ones the whole-frame detectors already see faces down to about 100 px)."""
TILE_MIN_SCORE = 0.8
"""Least detector score of a face found in a tile: small faces there score 0.9 or more, while busy
texture (a wall of coloured blocks) gives false faces of up to 0.6 in some of the many tiles."""


class FaceDetector:
    """mediapipe face detection on a downscaled frame → (K, 5) boxes [x0, y0, x1, y1, score] in
    frame pixels, largest first.

    Both of mediapipe's detectors squeeze the whole frame into their input (128 or 192 px), so on
    a landscape frame a small face is found in some places and not in others (a 4K clip of someone
    across a room, decoded at 1280x720: a 72 px face, none of 90 frames; d3 pasted into 1280x720
    frames at 5 places on 2 backgrounds, faces of about 50 / 60 / 80 px: 7 / 15 / 24 of 30
    found). When the whole frame shows no face, square tiles half the frame's short side,
    overlapping by half, are searched too (`_tiled`): 30 of 30 at each of those sizes. That costs
    about 30 ms more on a 1280x720 frame (18 tiles), and only where the whole frame shows no face."""

    def __init__(self, min_confidence: float = 0.5, detect_side: int = 384, tiles: bool = True):
        import mediapipe as mp

        self._mp = mp
        self.min_confidence = min_confidence
        self.detect_side = detect_side
        self.tiles = tiles
        self._models: dict[int, object] = {}

    def _model(self, selection: int):
        if selection not in self._models:
            from .mediapipe_io import started_quietly

            self._models[selection] = started_quietly(lambda: self._mp.solutions.face_detection.FaceDetection(
                model_selection=selection, min_detection_confidence=self.min_confidence))
        return self._models[selection]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        f = min(1.0, self.detect_side / max(h, w))
        small = rgb if f >= 1.0 else cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))),
                                                interpolation=cv2.INTER_AREA)
        for selection in (0, 1):  # short range (selfie distance), then full range (small faces)
            boxes = self._boxes(selection, small, 0.0, 0.0, w, h)
            if boxes:
                return _largest_first(boxes)
        if self.tiles and max(h, w) >= TILE_MIN_LONG_SIDE:
            return _largest_first(self._tiled(rgb))
        return np.zeros((0, 5), np.float64)

    def _boxes(self, selection: int, img: np.ndarray, ox: float, oy: float, w: float, h: float) -> list:
        """Detections on `img`, which shows the frame's (ox, oy, w, h) part, as frame-pixel boxes."""
        res = self._model(selection).process(np.ascontiguousarray(img))
        out = []
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            out.append([ox + b.xmin * w, oy + b.ymin * h, ox + (b.xmin + b.width) * w, oy + (b.ymin + b.height) * h,
                        d.score[0]])
        return out

    def _tiled(self, rgb: np.ndarray) -> list:
        """The short-range detector on square tiles half the short side, overlapping by half: a face
        up to a quarter of the short side lies whole in some tile, so a box touching a tile's edge
        inside the frame (a face cut by the tile) is dropped, and the copies of one face in
        overlapping tiles are merged (the surest kept). Only sure detections count
        (`TILE_MIN_SCORE`): many tiles give false faces many chances."""
        h, w = rgb.shape[:2]
        side = min(h, w) // 2
        step = side // 2
        xs = sorted(set(list(range(0, w - side, step)) + [w - side]))
        ys = sorted(set(list(range(0, h - side, step)) + [h - side]))
        edge = 0.01 * side
        found = []
        for y in ys:
            for x in xs:
                for b in self._boxes(0, rgb[y:y + side, x:x + side], x, y, side, side):
                    cut = ((x > 0 and b[0] <= x + edge) or (y > 0 and b[1] <= y + edge)
                           or (x + side < w and b[2] >= x + side - edge) or (y + side < h and b[3] >= y + side - edge))
                    if not cut and b[4] >= max(self.min_confidence, TILE_MIN_SCORE):
                        found.append(b)
        kept: list = []
        for b in sorted(found, key=lambda b: -b[4]):
            if all(box_iou(np.asarray(b), np.asarray(k)) < 0.3 for k in kept):
                kept.append(b)
        return kept

    def close(self) -> None:
        for m in self._models.values():
            m.close()
        self._models.clear()


class RegionMesh:
    """mediapipe face mesh (478 points with iris, one face, video mode) on a face region."""

    def __init__(self, min_confidence: float = 0.5, size: int = REGION_SIZE):
        from .mediapipe_io import face_mesh

        self.size = size
        self._mesh = face_mesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                               min_detection_confidence=min_confidence, min_tracking_confidence=min_confidence)

    def reset(self) -> None:
        """Forget the previous frame's face (after the region jumped)."""
        self._mesh.reset()

    def __call__(self, frame: np.ndarray, region: Region) -> tuple[np.ndarray | None, np.ndarray | None]:
        """→ (landmarks (478, 3) in frame pixels, landmarks in region pixels), or (None, None)."""
        img, ox, oy, s = region.cut(frame, self.size)
        res = self._mesh.process(img)
        faces = res.multi_face_landmarks
        if not faces:
            return None, None
        local = faces[0] * np.float32(self.size)
        lm = np.empty_like(local)
        lm[:, 0] = ox + (local[:, 0] + 0.5) / s - 0.5
        lm[:, 1] = oy + (local[:, 1] + 0.5) / s - 0.5
        lm[:, 2] = local[:, 2] / s
        return lm, local

    def close(self) -> None:
        self._mesh.close()


def plausible_in_region(local: np.ndarray, size: int = REGION_SIZE) -> bool:
    """Landmarks (region pixels) fill a sensible share of the region and sit near its centre."""
    ext = max(float(np.ptp(local[:, 0])), float(np.ptp(local[:, 1])))
    expected = size / REGION_SCALE
    cx = 0.5 * (local[:, 0].min() + local[:, 0].max())
    cy = 0.5 * (local[:, 1].min() + local[:, 1].max())
    off = max(abs(cx - size / 2), abs(cy - size / 2))
    return 0.6 * expected <= ext <= 1.5 * expected and off <= 0.2 * size


class FaceFollower:
    """Per frame: (landmarks (478, 3) in frame pixels or None, number of faces in view).

    The face count comes from the most recent detector run (every `redetect_every` frames and
    whenever the face is found again)."""

    def __init__(self, min_confidence: float = 0.5, redetect_every: int = 10, detect_side: int = 384):
        self.detector = FaceDetector(min_confidence, detect_side)
        self.mesh = RegionMesh(min_confidence)
        self.redetect_every = max(1, int(redetect_every))
        self.region: Region | None = None
        self.n_faces = 0
        self._since_detect = 0
        self.stats = {"detections": 0, "resets": 0}

    def _detect(self, frame: np.ndarray) -> np.ndarray:
        boxes = self.detector(frame)
        self.n_faces = len(boxes)
        self._since_detect = 0
        self.stats["detections"] += 1
        return boxes

    def _jump(self, region: Region) -> None:
        self.region = region
        self.mesh.reset()
        self.stats["resets"] += 1

    def _mesh_checked(self, frame: np.ndarray) -> np.ndarray | None:
        """Mesh on the current region; one retry on a region re-centred on a poorly placed face."""
        lm, local = self.mesh(frame, self.region)
        if lm is not None and not plausible_in_region(local, self.mesh.size):
            self._jump(Region.from_landmarks(lm))
            lm, local = self.mesh(frame, self.region)
            if lm is not None and not plausible_in_region(local, self.mesh.size):
                lm = None
        return lm

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray | None, int]:
        detected = False
        if self.region is None or self._since_detect >= self.redetect_every:
            boxes = self._detect(frame)
            detected = True
            if len(boxes) == 0:
                # nothing the detector can see; keep following a face the mesh still holds
                if self.region is None:
                    return None, 0
            elif self.region is None:
                self._jump(Region.from_box(boxes[0]))
            else:
                self._maybe_switch(boxes)
        self._since_detect += 1
        lm = self._mesh_checked(frame)
        if lm is None and not detected:  # lost: look for the face in the whole frame
            boxes = self._detect(frame)
            if len(boxes):
                self._jump(Region.from_box(boxes[0]))
                lm = self._mesh_checked(frame)
        if lm is None:
            self.region = None
            return None, self.n_faces
        want = Region.from_landmarks(lm)
        if not self.region.holds(want):
            self.region = want
        return lm, max(self.n_faces, 1)

    def _maybe_switch(self, boxes: np.ndarray) -> None:
        """Switch to the largest detected face when it is not the followed one and clearly larger."""
        r = self.region
        followed = np.array([r.ox, r.oy, r.ox + r.side, r.oy + r.side]) if r is not None else None
        if followed is None:
            return
        big = boxes[0]
        if box_iou(followed, _region_box_of(big)) > 0.2:
            return
        area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
        same = [b for b in boxes if box_iou(followed, _region_box_of(b)) > 0.2]
        if not same or area(big) > 1.25 * area(same[0]):
            self._jump(Region.from_box(big))

    def close(self) -> None:
        self.detector.close()
        self.mesh.close()


def _largest_first(boxes: list) -> np.ndarray:
    """(K, 5) boxes sorted by area, largest first."""
    if not boxes:
        return np.zeros((0, 5), np.float64)
    out = np.array(boxes, np.float64)
    area = (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1])
    return out[np.argsort(-area)]


def _region_box_of(det: np.ndarray) -> np.ndarray:
    r = Region.from_box(det)
    return np.array([r.ox, r.oy, r.ox + r.side, r.oy + r.side])
