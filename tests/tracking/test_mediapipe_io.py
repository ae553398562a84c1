"""The landmark reader that replaces mediapipe's pure-Python protobuf parsing gives the same numbers."""
from __future__ import annotations

import numpy as np
import pytest

from studio.tracking.mediapipe_io import _parse_general, parse_landmark_list


def _landmark_list(points, extra=False):
    from mediapipe.framework.formats import landmark_pb2

    msg = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in points:
        p = msg.landmark.add()
        p.x, p.y, p.z = float(x), float(y), float(z)
        if extra:
            p.visibility, p.presence = 0.75, 0.5
    return msg


def test_parse_matches_protobuf_fast_and_general_path():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(478, 3)).astype(np.float32)
    for extra in (False, True):  # 17-byte records (fast path) and records with visibility/presence
        msg = _landmark_list(pts, extra)
        got = parse_landmark_list(msg.SerializeToString())
        ref = np.array([(p.x, p.y, p.z) for p in msg.landmark], np.float32)
        assert got.shape == (478, 3) and np.array_equal(got, ref)
    # a zero coordinate is still written (proto2 optional), fields out of order are still read
    msg = _landmark_list([(0.0, 0.5, -0.25)])
    assert np.array_equal(parse_landmark_list(msg.SerializeToString()), [[0.0, 0.5, -0.25]])
    swapped = bytes([0x0A, 0x0A, 0x15]) + np.float32(0.5).tobytes() + bytes([0x0D]) + np.float32(0.25).tobytes()
    assert np.array_equal(_parse_general(swapped), [[0.25, 0.5, 0.0]])
    assert parse_landmark_list(b"").shape == (0, 3)


def test_face_mesh_output_identical_to_mediapipe(d3_video):
    import mediapipe as mp

    from studio.tracking.mediapipe_io import face_mesh
    from studio.video import FrameReader, plan_decode, probe

    frames = list(FrameReader(d3_video, plan_decode(probe(d3_video), max_frames=3)))
    stock = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
    fast = face_mesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
    try:
        for f in frames:
            ref = stock.process(f).multi_face_landmarks[0]
            got = fast.process(f).multi_face_landmarks[0]
            assert got.shape == (478, 3)
            assert np.array_equal(got, np.array([(p.x, p.y, p.z) for p in ref.landmark], np.float32))
    finally:
        stock.close()
        fast.close()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])


def test_native_chatter_is_kept_off_stderr_and_everything_else_reaches_it(capfd):
    """mediapipe's TFLite printed "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." as the first line
    of every `avatar-studio new`; `started_quietly` drops that line and passes anything else written meanwhile."""
    import os

    from studio.tracking.mediapipe_io import _NATIVE_CHATTER, started_quietly

    def make():
        os.write(2, (_NATIVE_CHATTER[0] + "\nW0000 a real native warning\n").encode())
        return "solution"

    assert started_quietly(make) == "solution"
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "a real native warning" in err


def test_a_fresh_process_tracking_a_frame_prints_nothing_to_stderr():
    """The real graphs, in a fresh process (TFLite logs its line once per process): the face detector, the mesh
    and the selfie segmentation made and run on a frame leave stderr empty."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent("""
        import numpy as np
        from studio.tracking.roi import FaceDetector
        from studio.tracking.tracker import FaceMesh, Segmenter
        frame = np.zeros((240, 320, 3), np.uint8)
        FaceDetector()(frame); FaceMesh()(frame); Segmenter()(frame)
        print("ran")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0 and "ran" in r.stdout, r.stderr
    assert "XNNPACK" not in r.stderr, r.stderr
