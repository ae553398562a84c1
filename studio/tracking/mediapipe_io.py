"""Reading mediapipe's face-mesh output without the pure-Python protobuf parser.

mediapipe 0.10.9 needs protobuf < 4, whose wheels for Python 3.11 have no compiled parser, so
``FaceMesh.process`` hands back each 478-point landmark list by parsing it in pure Python:
about as much CPU time per frame as the mesh network itself (cProfile on a 1280x720 clip:
``InternalParse`` 18.6 s of 68.8 s). `face_mesh` returns a FaceMesh whose landmark output is
read straight from the serialized bytes into a NumPy array instead.

Wire format of ``NormalizedLandmarkList`` (mediapipe/framework/formats/landmark.proto):
repeated field 1 (tag 0x0A, length-delimited) of ``NormalizedLandmark`` messages with float
fields x=1 (tag 0x0D), y=2 (0x15), z=3 (0x1D), visibility=4 (0x25), presence=5 (0x2D).
"""
from __future__ import annotations

import os
import struct
import sys
import tempfile
import threading

import numpy as np

_FLOAT_TAGS = {0x0D: 0, 0x15: 1, 0x1D: 2}  # x, y, z; visibility / presence are read past
_RECORD = 17  # 0x0A 0x0F | 0x0D x | 0x15 y | 0x1D z  (what the face mesh writes)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _parse_general(buf: bytes) -> np.ndarray:
    """Any valid encoding (fields in any order, missing or extra fields)."""
    points: list[list[float]] = []
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 2:
            length, i = _varint(buf, i)
            if field == 1:
                p = [0.0, 0.0, 0.0]
                j, end = i, i + length
                while j < end:
                    k, j = _varint(buf, j)
                    w = k & 7
                    if w == 5:
                        if k in _FLOAT_TAGS:
                            p[_FLOAT_TAGS[k]] = struct.unpack_from("<f", buf, j)[0]
                        j += 4
                    elif w == 0:
                        _, j = _varint(buf, j)
                    elif w == 1:
                        j += 8
                    elif w == 2:
                        ln, j = _varint(buf, j)
                        j += ln
                    else:
                        raise ValueError(f"unexpected wire type {w} in a landmark")
                points.append(p)
            i += length
        elif wire == 0:
            _, i = _varint(buf, i)
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise ValueError(f"unexpected wire type {wire} in a landmark list")
    return np.array(points, np.float32).reshape(-1, 3)


def parse_landmark_list(buf: bytes) -> np.ndarray:
    """Serialized NormalizedLandmarkList → (K, 3) float32 normalized (x, y, z)."""
    n = len(buf)
    if n and n % _RECORD == 0:
        rec = np.frombuffer(buf, np.uint8).reshape(-1, _RECORD)
        if (np.all(rec[:, 0] == 0x0A) and np.all(rec[:, 1] == _RECORD - 2) and np.all(rec[:, 2] == 0x0D)
                and np.all(rec[:, 7] == 0x15) and np.all(rec[:, 12] == 0x1D)):
            cols = np.ascontiguousarray(rec[:, [3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16]])
            return cols.view("<f4").reshape(-1, 3).astype(np.float32)
    return _parse_general(buf)


_NATIVE_CHATTER = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)
"""What mediapipe's native code prints to the process's stderr when a graph opens its TFLite model (TFLite's
log-once line): not meant for a user, who saw it as the first line of every `avatar-studio new`."""
_quiet = threading.Lock()


def started_quietly(make):
    """`make()` (a mediapipe solution: FaceMesh, FaceDetection, ...) with its graph opened before it returns, the
    process's stderr (file descriptor 2, where native code writes) caught meanwhile and given back without
    `_NATIVE_CHATTER`. A graph opens its models on its own threads after the constructor returns (the line came
    out in the middle of `new`'s progress); waiting for it to be idle makes the opening happen here. Whatever
    else was written meanwhile (another thread's message, a native warning) reaches stderr afterwards."""
    with _quiet:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):          # no real stderr (a frozen app without a console)
            return make()
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                solution = make()
                graph = getattr(solution, "_graph", None)
                if graph is not None:
                    graph.wait_until_idle()
                return solution
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                caught.seek(0)
                text = caught.read().decode("utf-8", "replace")
                kept = [ln for ln in text.splitlines(keepends=True) if ln.strip() not in _NATIVE_CHATTER]
                if kept:
                    os.write(2, "".join(kept).encode("utf-8", "replace"))


def face_mesh(**kwargs):
    """mediapipe ``FaceMesh(**kwargs)`` whose ``process(rgb).multi_face_landmarks`` is a list of
    (K, 3) float32 arrays of normalized landmarks (x, y in [0, 1] of width / height, z in the
    scale of x) instead of protobuf messages."""
    import mediapipe as mp
    from mediapipe.python._framework_bindings import _packet_getter
    from mediapipe.python.solution_base import PacketDataType

    class _FaceMesh(mp.solutions.face_mesh.FaceMesh):
        def _get_packet_content(self, packet_data_type, output_packet):
            if packet_data_type == PacketDataType.PROTO_LIST and not output_packet.is_empty():
                return [parse_landmark_list(b) for b in _packet_getter._get_serialized_proto_list(output_packet)]
            return super()._get_packet_content(packet_data_type, output_packet)

    return started_quietly(lambda: _FaceMesh(**kwargs))
