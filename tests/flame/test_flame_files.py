"""Reading FLAME's files without chumpy and without running anything from them: the fixture's
generic_model.pkl (chumpy arrays, scipy csc_matrix) reads back exactly in protocols 0 and 2;
payload pickles are refused and their payload never runs; damaged files get one line naming
what is wrong and which file is expected; the MediaPipe embedding reader checks its arrays."""
from __future__ import annotations

import os
import pickle
import pickletools
import sys
import types

import numpy as np
import pytest

from models.flame_pickle import (FlameFileError, read_eyelid_blendshapes, read_flame_model,
                                 read_mediapipe_embedding)
from tests.flame.fixture import write_generic_model


def _globals_in(path) -> set[str]:
    """Module.name of every global a pickle references (GLOBAL and STACK_GLOBAL)."""
    out, strings = set(), []
    for op, arg, _ in pickletools.genops(open(path, "rb").read()):
        if op.name == "GLOBAL":
            out.add(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            out.add(".".join(strings[-2:]))
    return out


def test_fixture_model_reads_back_exactly(synthetic_flame):
    fx = synthetic_flame
    names = _globals_in(fx.model_path)
    assert "chumpy.ch.Ch" in names, "the fixture must hold real chumpy references"
    assert any(n.startswith("scipy.sparse") and n.endswith("csc_matrix") for n in names)
    assert "chumpy" not in sys.modules, "chumpy stand-in must be gone after writing"
    d = read_flame_model(fx.model_path)
    a = fx.arrays
    assert d.shapedirs.shape[2] == 300 and d.exprdirs.shape[2] == 100
    np.testing.assert_array_equal(d.v_template, a["v_template"])
    np.testing.assert_array_equal(d.shapedirs, a["shapedirs"])
    np.testing.assert_array_equal(d.exprdirs, a["exprdirs"])
    np.testing.assert_array_equal(d.posedirs, a["posedirs"])
    np.testing.assert_allclose(d.j_regressor, a["j_regressor"], rtol=0, atol=0)
    np.testing.assert_array_equal(d.lbs_weights, a["lbs_weights"])
    np.testing.assert_array_equal(d.faces, a["faces"])
    assert d.parents.tolist() == [-1, 0, 1, 1, 1]


def test_protocol_0_and_numpy_scalars(tmp_path, synthetic_flame):
    """Protocol 0 goes through copy_reg._reconstructor; an explicit shape split is honoured."""
    p = tmp_path / "generic_model.pkl"
    write_generic_model(p, synthetic_flame.arrays, protocol=0)
    assert "copy_reg._reconstructor" in _globals_in(p) or "copyreg._reconstructor" in _globals_in(p)
    d = read_flame_model(p, n_shape=100)
    assert d.shapedirs.shape[2] == 100 and d.exprdirs.shape[2] == 300
    np.testing.assert_array_equal(d.shapedirs, synthetic_flame.arrays["shapedirs"][:, :, :100])


def test_plain_numpy_layout_without_chumpy(tmp_path, synthetic_flame):
    """A generic_model.pkl whose arrays are plain numpy (no chumpy, dense regressor) reads too."""
    a = synthetic_flame.arrays
    obj = {"v_template": a["v_template"], "shapedirs": np.concatenate([a["shapedirs"], a["exprdirs"]], -1),
           "posedirs": a["posedirs"], "J_regressor": a["j_regressor"], "weights": a["lbs_weights"],
           "kintree_table": a["kintree_table"].astype(np.int64), "f": a["faces"]}
    p = tmp_path / "flame2023.pkl"
    p.write_bytes(pickle.dumps(obj, protocol=4))
    d = read_flame_model(p)
    np.testing.assert_array_equal(d.exprdirs, a["exprdirs"])
    np.testing.assert_array_equal(d.j_regressor, a["j_regressor"])


def test_python2_style_array_pickle():
    """Python 2's cPickle writes an array's bytes as a str (BINSTRING), which Python 3 reads as
    latin1 text; the reader must turn it back into the same numbers."""
    values = np.array([1.5, -2.25, 1e-3, 7.0])
    raw = values.astype("<f8").tobytes()
    P = pickle
    data = b"".join([
        P.PROTO + b"\x02",
        P.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n",
        P.GLOBAL + b"numpy\nndarray\n",
        P.BININT1 + b"\x00", P.TUPLE1,
        P.SHORT_BINSTRING + b"\x01b", P.TUPLE3, P.REDUCE,
        P.MARK, P.BININT1 + b"\x01", P.BININT1 + b"\x04", P.TUPLE1,
        P.GLOBAL + b"numpy\ndtype\n", P.SHORT_BINSTRING + b"\x02f8", P.BININT1 + b"\x00", P.BININT1 + b"\x01",
        P.TUPLE3, P.REDUCE,
        P.MARK, P.BININT1 + b"\x03", P.SHORT_BINSTRING + b"\x01<", P.NONE, P.NONE, P.NONE,
        P.BININT + (-1).to_bytes(4, "little", signed=True), P.BININT + (-1).to_bytes(4, "little", signed=True),
        P.BININT1 + b"\x00", P.TUPLE, P.BUILD,
        P.NEWFALSE, P.BINSTRING + len(raw).to_bytes(4, "little") + raw, P.TUPLE, P.BUILD, P.STOP])
    from models.flame_pickle import safe_unpickle, to_numpy

    np.testing.assert_array_equal(to_numpy(safe_unpickle(data)), values)


class _Payload:
    """Unpickling this runs os.system(touch marker) — if the reader lets it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _ExecPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("where", ["top", "inside_chumpy", "exec"])
def test_payload_pickle_is_refused_and_never_runs(tmp_path, synthetic_flame, where):
    marker = tmp_path / "pwned"
    a = synthetic_flame.arrays
    p = tmp_path / "generic_model.pkl"
    if where == "top":
        obj = {"v_template": a["v_template"], "shapedirs": _Payload(marker)}
        p.write_bytes(pickle.dumps(obj, protocol=2))
    elif where == "exec":
        p.write_bytes(pickle.dumps([_ExecPayload(marker)], protocol=4))
    else:  # the payload hides in a chumpy array's state (its 'x')
        chumpy = types.ModuleType("chumpy")
        ch = types.ModuleType("chumpy.ch")

        class Ch:
            def __init__(self, x):
                self.x = x

        Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
        ch.Ch, chumpy.ch = Ch, ch
        sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, ch
        try:
            p.write_bytes(pickle.dumps({"v_template": a["v_template"], "shapedirs": Ch(_Payload(marker))}, protocol=2))
        finally:
            sys.modules.pop("chumpy"), sys.modules.pop("chumpy.ch")
        assert "chumpy.ch.Ch" in _globals_in(p)
    with pytest.raises(FlameFileError) as err:
        read_flame_model(p)
    msg = str(err.value)
    assert "refusing" in msg and ("posix.system" in msg or "os.system" in msg or "builtins.exec" in msg)
    assert "generic_model.pkl" in msg and "\n" not in msg
    assert not marker.exists(), "the payload ran"


def test_damaged_and_wrong_files_get_one_line(tmp_path, synthetic_flame):
    good = synthetic_flame.model_path.read_bytes()
    cases = {
        "truncated.pkl": good[: len(good) // 2],
        "random.pkl": bytes(range(256)) * 4,
        "empty.pkl": b"",
    }
    a = synthetic_flame.arrays
    missing = tmp_path / "missing.pkl"
    write_generic_model(missing, a)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for name in cases:
        with pytest.raises(FlameFileError) as err:
            read_flame_model(tmp_path / name)
        assert name in str(err.value) and "generic_model.pkl" in str(err.value) and "\n" not in str(err.value)
    # a dict without shapedirs: the message names the key
    p = tmp_path / "no_shapedirs.pkl"
    p.write_bytes(pickle.dumps({k: v for k, v in {"v_template": a["v_template"], "f": a["faces"]}.items()}, protocol=2))
    with pytest.raises(FlameFileError, match="'shapedirs'"):
        read_flame_model(p)
    # wrong sizes: a model whose shapedirs has 50 components (not FLAME's 300 + 100)
    bad = dict(a, shapedirs=a["shapedirs"][:, :, :30], exprdirs=a["exprdirs"][:, :, :20])
    write_generic_model(p, bad)
    with pytest.raises(FlameFileError, match="300 shape \\+ 100 expression"):
        read_flame_model(p)
    bad = dict(a, lbs_weights=a["lbs_weights"][:, :4])
    write_generic_model(p, bad)
    with pytest.raises(FlameFileError, match="weights has shape"):
        read_flame_model(p)
    bad = dict(a, faces=a["faces"] + 10_000)
    write_generic_model(p, bad)
    with pytest.raises(FlameFileError, match="triangles"):
        read_flame_model(p)
    with pytest.raises(FlameFileError, match="cannot be read"):
        read_flame_model(tmp_path / "does_not_exist.pkl")


def test_embedding_reader(tmp_path, synthetic_flame):
    e = read_mediapipe_embedding(synthetic_flame.embedding_path)
    assert e.face_idx.shape == (478,) and e.bary.shape == (478, 3) and e.landmark_indices.tolist() == list(range(478))
    e.check(len(synthetic_flame.arrays["faces"]))
    with pytest.raises(FlameFileError, match="names triangle"):
        e.check(10)
    # transposed barycentrics (3, L) are accepted
    p = tmp_path / "t.npz"
    np.savez(p, lmk_face_idx=e.face_idx[:5], lmk_b_coords=e.bary[:5].T, landmark_indices=e.landmark_indices[:5])
    assert read_mediapipe_embedding(p).bary.shape == (5, 3)
    bad = {
        "missing.npz": dict(lmk_face_idx=e.face_idx, lmk_b_coords=e.bary),
        "sum.npz": dict(lmk_face_idx=e.face_idx, lmk_b_coords=e.bary * 2, landmark_indices=e.landmark_indices),
        "range.npz": dict(lmk_face_idx=e.face_idx, lmk_b_coords=e.bary, landmark_indices=e.landmark_indices + 100),
        "objects.npz": dict(lmk_face_idx=np.array([{"a": 1}], dtype=object), lmk_b_coords=e.bary,
                            landmark_indices=e.landmark_indices),
    }
    for name, arrays in bad.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(FlameFileError) as err:
            read_mediapipe_embedding(tmp_path / name)
        assert name in str(err.value) and "mediapipe_landmark_embedding.npz" in str(err.value)
    with pytest.raises(FlameFileError, match="'landmark_indices'"):
        read_mediapipe_embedding(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FlameFileError, match="cannot be read"):
        read_mediapipe_embedding(tmp_path / "junk.npz")


def test_eyelid_reader(tmp_path, synthetic_flame):
    V = len(synthetic_flame.arrays["v_template"])
    lids = read_eyelid_blendshapes(*synthetic_flame.eyelid_paths, n_vertices=V)
    assert lids.shape == (V, 3, 2)
    np.save(tmp_path / "short.npy", np.zeros((V - 1, 3)))
    with pytest.raises(FlameFileError, match="short.npy"):
        read_eyelid_blendshapes(tmp_path / "short.npy", synthetic_flame.eyelid_paths[1], n_vertices=V)
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(FlameFileError, match="plain .npy"):
        read_eyelid_blendshapes(tmp_path / "obj.npy", synthetic_flame.eyelid_paths[1], n_vertices=V)
