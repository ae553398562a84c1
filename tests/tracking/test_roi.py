"""Face regions: exact coordinate mapping, and the follower on large frames with a small face."""
from __future__ import annotations

import numpy as np
import pytest

from studio.tracking.roi import Region


def _ramp(h, w):
    """Float image whose channels are each pixel's own (x, y) centre coordinate."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.dstack([xs, ys, np.zeros_like(xs)])


@pytest.mark.parametrize("region", [
    Region(100.0, 40.0, 600.0),      # inside, downscaled (area)
    Region(30.0, 20.0, 128.0),       # inside, upscaled (linear)
    Region(-50.3, 300.7, 500.0),     # partly outside the frame (warpAffine path)
])
def test_region_cut_maps_pixel_centres_exactly(region):
    frame = _ramp(720, 1280)
    img, ox, oy, s = region.cut(frame, 256)
    assert img.shape == (256, 256, 3)
    c = np.arange(40, 216, 25, dtype=np.float32)  # interior region pixels (no border effects)
    cx, cy = np.meshgrid(c, c)
    want_x = ox + (cx + 0.5) / s - 0.5
    want_y = oy + (cy + 0.5) / s - 0.5
    inside = (want_x > 1) & (want_x < 1278) & (want_y > 1) & (want_y < 718)
    got = img[cy.astype(int), cx.astype(int)]
    assert inside.sum() > 10
    assert np.abs(got[..., 0] - want_x)[inside].max() < 0.05  # a half-pixel slip would be 0.5 px or more
    assert np.abs(got[..., 1] - want_y)[inside].max() < 0.05  # a half-pixel slip would be 0.5 px or more


def test_region_holds_small_moves_only():
    r = Region.around(500, 300, 400)
    assert r.holds(Region.around(520, 290, 420))
    assert not r.holds(Region.around(560, 300, 400))  # moved 15 % of the side
    assert not r.holds(Region.around(500, 300, 480))  # 20 % larger


def _frames(video, n, every=1):
    from studio.video import FrameReader, plan_decode, probe

    out = []
    for i, f in enumerate(FrameReader(video, plan_decode(probe(video), max_frames=n * every))):
        if i % every == 0:
            out.append(f.copy())
    return out


def _in_landscape(face: np.ndarray, side: int, at=(760, 300)) -> np.ndarray:
    """Paste a square frame, resized to `side`, into a textured 1280x720 landscape frame."""
    import cv2

    rng = np.random.default_rng(1)
    canvas = cv2.resize(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8), (1280, 720),
                        interpolation=cv2.INTER_NEAREST)
    x, y = at
    canvas[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return canvas


def test_follower_agrees_with_whole_frame_mesh_and_finds_small_faces(d3_video):
    from studio.tracking.roi import FaceFollower
    from studio.tracking.tracker import FaceMesh

    frames = _frames(d3_video, 24)
    big = [_in_landscape(f, 400) for f in frames]
    whole, follow = FaceMesh(video=True, max_faces=2), FaceFollower(redetect_every=10)
    try:
        diffs, eye = [], []
        for f in big:
            a, _ = whole(f)
            b, n = follow(f)
            assert a is not None and b is not None and n == 1
            diffs.append(np.linalg.norm(a[:, :2] - b[:, :2], axis=1).mean())
            eye.append(np.linalg.norm(a[33, :2] - a[263, :2]))
        # same landmarks within ~1 % of the eye distance on average
        assert np.mean(diffs) < 0.012 * np.mean(eye), (np.mean(diffs), np.mean(eye))
        # the detector ran on the first frame and then every 10 frames, not on every frame
        assert follow.stats["detections"] == 3

        # a small face (about 70 px wide in 1280x720): the whole-frame mesh misses it
        small = [_in_landscape(f, 200, at=(900, 420)) for f in frames[:6]]
        follow2 = FaceFollower()
        try:
            got = [follow2(f)[0] for f in small]
            assert all(g is not None for g in got)
            for g in got:  # landmarks land on the pasted face: eye corner inside the pasted square
                assert 900 < g[33, 0] < 1100 and 420 < g[33, 1] < 620
        finally:
            follow2.close()

        # the face leaves the frame: no landmarks, and it is found again when it returns
        empty = np.full_like(big[0], 90)
        assert follow(empty)[0] is None
        back, _ = follow(big[3])
        assert back is not None and np.linalg.norm(back[:, :2] - whole(big[3])[0][:, :2], axis=1).mean() < 6.0
    finally:
        whole.close()
        follow.close()


def test_follower_switches_to_a_clearly_larger_face(d3_video):
    import cv2

    from studio.tracking.roi import FaceFollower

    frames = _frames(d3_video, 14)
    follow = FaceFollower(redetect_every=5)
    try:
        for f in frames[:6]:  # one small face at the right
            lm, n = follow(_in_landscape(f, 260, at=(960, 380)))
            assert lm is not None and lm[1, 0] > 960
        for f in frames[6:]:  # a much larger face comes into view at the left
            two = _in_landscape(f, 260, at=(960, 380))
            two[60:60 + 560, 60:60 + 560] = cv2.resize(f, (560, 560), interpolation=cv2.INTER_AREA)
            lm, n = follow(two)
        assert n == 2
        assert lm is not None and lm[1, 0] < 620  # nose tip on the larger face
    finally:
        follow.close()


def _on_black(face: np.ndarray, side: int, at) -> np.ndarray:
    """A square frame resized to `side`, alone on a black 1280x720 frame (a small clip padded to 4K)."""
    import cv2

    out = np.zeros((720, 1280, 3), np.uint8)
    x, y = at
    out[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return out


def test_small_face_in_a_large_frame_is_found_in_tiles(d3_video):
    """A face about 60 px wide in a 1280x720 frame (a 4K clip of someone across a room): the detectors
    on the whole frame see it in some places and not in others (none of 90 frames of such a clip);
    the tiles find it wherever it is, and nothing in a busy faceless frame."""
    from studio.tracking.roi import FaceDetector, FaceFollower

    frames = _frames(d3_video, 4, every=30)
    places = [(700, 350), (800, 500), (160, 400), (1000, 120), (420, 40)]
    detect = FaceDetector()
    try:
        for f in frames:
            for x, y in places:
                boxes = detect(_on_black(f, 100, (x, y)))
                assert len(boxes) == 1, ((x, y), boxes)
                cx, cy = (boxes[0, 0] + boxes[0, 2]) / 2, (boxes[0, 1] + boxes[0, 3]) / 2
                assert x < cx < x + 100 and y < cy < y + 100
        busy = _in_landscape(frames[0], 2, at=(0, 0))  # coloured blocks, no face
        assert len(detect(busy)) == 0
    finally:
        detect.close()
    follow = FaceFollower()
    try:  # and the face mesh follows it from there
        for f in frames:
            lm, n = follow(_on_black(f, 100, (800, 500)))
            assert lm is not None and n == 1 and 800 < lm[1, 0] < 900 and 500 < lm[1, 1] < 600
    finally:
        follow.close()
