"""packaging/cuda_libs.py on a tiny stand-in: a versioned shared library ("libfakecuda.so.13", as the CUDA
libraries are versioned by their soname) and a program linked to it. The stub must satisfy the dynamic
linker (same soname, version nodes and function names) so the program loads and runs its other code,
and a call into the stub must stop the program with a message naming the function; `slim` must stub
the large libraries, remove the ones nothing needs, and keep those still needed."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
import cuda_libs  # noqa: E402

pytestmark = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("readelf")), reason="needs gcc and readelf")


def _gcc(*args: str) -> None:
    subprocess.run(["gcc", *args], check=True, capture_output=True, text=True)


def _fake_lib(folder: Path, soname: str, body: str) -> Path:
    """A shared library `soname` whose functions carry the version node `soname`, like CUDA's."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lib.c").write_text(body)
    (folder / "lib.map").write_text(f"{soname} {{ global: *; }};\n")
    out = folder / soname
    _gcc("-shared", "-fPIC", "-o", str(out), str(folder / "lib.c"), f"-Wl,-soname,{soname}",
         f"-Wl,--version-script,{folder / 'lib.map'}")
    return out


def _program(tmp: Path, libdir: Path, lib: str) -> Path:
    (tmp / "main.c").write_text(
        '#include <stdio.h>\n#include <string.h>\nint fakeBlasCreate(void); int fakeBlasVersion(void);\n'
        'int main(int argc, char **argv) {\n'
        '  printf("loaded\\n"); fflush(stdout);\n'
        '  if (argc > 1 && !strcmp(argv[1], "call")) printf("version %d\\n", fakeBlasVersion());\n'
        '  return 0;\n}\n')
    exe = tmp / "main"
    _gcc("-o", str(exe), str(tmp / "main.c"), f"-L{libdir}", f"-l:{lib}", f"-Wl,-rpath,{libdir}")
    return exe


def test_stub_loads_in_place_of_the_real_library_and_stops_with_a_message_when_called(tmp_path):
    libdir = tmp_path / "nvidia" / "cu13" / "lib"
    real = _fake_lib(libdir, "libcublas.so.13", "int fakeBlasCreate(void) { return 0; }\n"
                                                "int fakeBlasVersion(void) { return 1300; }\n")
    exe = _program(tmp_path, libdir, "libcublas.so.13")
    assert subprocess.run([exe, "call"], capture_output=True, text=True).stdout == "loaded\nversion 1300\n"

    n = cuda_libs.build_stub(real, real, tmp_path)
    assert n == 2
    assert cuda_libs.soname(real) == "libcublas.so.13"
    assert {(f, v) for f, v, _ in cuda_libs.exported_functions(real)} == {
        ("fakeBlasCreate", "libcublas.so.13"), ("fakeBlasVersion", "libcublas.so.13")}
    res = subprocess.run([exe], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout == "loaded\n", res.stderr       # loads, runs the rest
    res = subprocess.run([exe, "call"], capture_output=True, text=True)
    assert res.returncode != 0 and res.stdout == "loaded\n"
    assert "fakeBlasVersion from libcublas.so.13 was called" in res.stderr and "CPU bundle" in res.stderr


def test_slim_stubs_large_libraries_removes_unneeded_ones_and_keeps_needed_ones(tmp_path):
    internal = tmp_path / "_internal"
    nv = internal / "nvidia" / "cu13" / "lib"
    blas = _fake_lib(nv, "libcublas.so.13", "int fakeBlasVersion(void) { return 1; }\n")
    _fake_lib(nv / "x", "libnvJitLink.so.13", "int fakeJit(void) { return 1; }\n")
    shutil.move(str(nv / "x" / "libnvJitLink.so.13"), nv / "libnvJitLink.so.13")
    shutil.rmtree(nv / "x")
    _fake_lib(nv / "y", "libcudart.so.13", "int fakeRt(void) { return 2; }\n")
    shutil.move(str(nv / "y" / "libcudart.so.13"), nv / "libcudart.so.13")
    shutil.rmtree(nv / "y")
    for f in ("lib.c", "lib.map"):
        (nv / f).unlink()
    # a library of the app that needs cuBLAS and cudart (as libtorch_cuda does); nothing needs nvJitLink
    app = internal / "torch" / "lib"
    app.mkdir(parents=True)
    (tmp_path / "app.c").write_text("int fakeBlasVersion(void); int fakeRt(void);\n"
                                    "int appFn(void) { return fakeBlasVersion() + fakeRt(); }\n")
    _gcc("-shared", "-fPIC", "-o", str(app / "libtorch_cuda.so"), str(tmp_path / "app.c"), f"-L{nv}",
         "-l:libcublas.so.13", "-l:libcudart.so.13")
    (app / "libtorch_cuda_linalg.so").write_bytes(b"\x7fELF not really")
    assert cuda_libs.slim(internal) == 0
    assert not (app / "libtorch_cuda_linalg.so").exists()
    assert not (nv / "libnvJitLink.so.13").exists()                # stubbed, then nothing needed it
    assert (nv / "libcudart.so.13").exists()                       # needed, kept real
    assert blas.exists() and cuda_libs.exported_functions(blas) == [("fakeBlasVersion", "libcublas.so.13", True)]
    assert "stub_called" in subprocess.run(["readelf", "-W", "-s", str(blas)], capture_output=True,
                                           text=True).stdout       # the stub, not the original


def test_slim_refuses_a_folder_without_cuda_libraries(tmp_path, capsys):
    (tmp_path / "torch").mkdir()
    assert cuda_libs.slim(tmp_path) == 2
    assert "no CUDA libraries" in capsys.readouterr().err
