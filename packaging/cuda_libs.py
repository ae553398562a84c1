"""Slim the CPU bundle's CUDA libraries:   python3 packaging/cuda_libs.py BUNDLE/_internal

The bundle carries PyPI's torch 2.14.1, a CUDA 13 build: the CPU-only torch wheel does not load PyPI's
torchvision, which open_clip imports (measured: "operator torchvision::nms does not exist"). That
torch cannot be imported without its CUDA libraries: `torch/_C` links, through libtorch_python and
libtorch_cuda, to cuBLAS, cuFFT, cuRAND, cuSPARSE, cuSPARSELt, NCCL, NVRTC, nvJitLink and NVSHMEM
(measured: with nvidia/ removed, `import torch` fails with "libcudnn.so.9: cannot open shared object
file"). On the CPU none of their functions is ever called, so the CPU bundle keeps:

- real: libcudart (torch asks it how many GPUs there are: none, since the bundle's runtime hook sets
  CUDA_VISIBLE_DEVICES=""), libcupti (the profiler), libcufile and libcudnn.so.9 (a small loader);
- stubs: for each of the large libraries above, a library with the same soname, symbol versions and
  function names, built here with gcc; each function prints which CUDA function was called and
  aborts. The dynamic linker is satisfied, and a call that should never happen on the CPU stops the
  program with a message instead of doing something wrong;
- nothing else: libraries that only a GPU run loads on demand (cuDNN's engines, cuSOLVER with
  libtorch_cuda_linalg, nvrtc-builtins, ...) are removed, after checking that no library left in the
  bundle needs them.

Prints what it did and the bytes saved; exits non-zero, with a one-line reason, when a tool (gcc,
readelf) is missing or a library left behind still needs a removed one.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

STUBBED = ("libcublas", "libcublasLt", "libcufft", "libcurand", "libcusparse", "libcusparseLt", "libnccl",
           "libnvrtc", "libnvJitLink", "libnvshmem_host")
# loaded only by a GPU run, on demand (dlopen), and needing libraries that are removed here
DROPPED = ("libtorch_cuda_linalg.so",)


def base_name(path: Path) -> str:
    """libcublasLt.so.13 → libcublasLt."""
    return path.name.split(".so")[0]


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True, text=True).stdout


def needed(path: Path) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", readelf("-d", str(path)))


def soname(path: Path) -> str:
    m = re.search(r"\(SONAME\)\s+Library soname: \[(.+?)\]", readelf("-d", str(path)))
    return m.group(1) if m else path.name


def exported_functions(path: Path) -> list[tuple[str, str, bool]]:
    """(name, version or "", default version?) of every function the library defines."""
    out = []
    for line in readelf("--dyn-syms", str(path)).splitlines():
        parts = line.split()
        if len(parts) < 8 or parts[3] not in ("FUNC", "IFUNC") or parts[4] not in ("GLOBAL", "WEAK") \
                or parts[6] == "UND":
            continue
        sym = parts[7]
        if "@@" in sym:
            name, ver = sym.split("@@", 1)
            out.append((name, ver, True))
        elif "@" in sym:
            name, ver = sym.split("@", 1)
            out.append((name, ver, False))
        else:
            out.append((sym, "", True))
    return out


def build_stub(real: Path, dest: Path, workdir: Path) -> int:
    """Writes the stub of `real` to `dest`; returns the number of functions it stands in for."""
    funcs = exported_functions(real)
    if not funcs:
        raise RuntimeError(f"{real.name}: no exported functions found (readelf output not understood)")
    name = soname(real)
    c = [
        "#include <stdio.h>",
        "#include <stdlib.h>",
        "static void stub_called(const char *fn) {",
        f'  fprintf(stderr, "avatar-studio: %s from {name} was called, but this CPU bundle carries only a '
        f'stand-in for that CUDA library (it never uses a GPU); use the CUDA bundle (packaging/build.sh '
        f'--cuda) to run on a GPU\\n", fn);',
        "  abort();",
        "}",
    ]
    versions: dict[str, list[str]] = {}
    for i, (fn, ver, default) in enumerate(funcs):
        c.append(f'void stub_{i}(void) {{ stub_called("{fn}"); }}')
        if ver:
            c.append(f'__asm__(".symver stub_{i},{fn}{"@@" if default else "@"}{ver}");')
            versions.setdefault(ver, [])
        else:
            c.append(f'__asm__(".globl {fn}\\n.set {fn},stub_{i}");')
            versions.setdefault("", []).append(fn)
    src = workdir / f"{name}.c"
    src.write_text("\n".join(c) + "\n")
    vmap = workdir / f"{name}.map"
    # the version nodes the functions carry (the first also hides the stub_N names); or an anonymous one
    nodes = [v for v in versions if v]
    local = "local: stub_*; stub_called;"
    vmap.write_text("\n".join([f"{nodes[0]} {{ {local} }};", *(f"{v} {{ }};" for v in nodes[1:])]
                              if nodes else [f"{{ {local} }};"]) + "\n")
    tmp = dest.with_name(dest.name + ".stub-tmp")
    res = subprocess.run(["gcc", "-shared", "-fPIC", "-O0", "-o", str(tmp), str(src), f"-Wl,-soname,{name}",
                          f"-Wl,--version-script,{vmap}"], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"gcc could not build the stub of {name}: {res.stderr.strip()[-500:]}")
    os.replace(tmp, dest)
    return len(funcs)


def slim(internal: Path) -> int:
    for tool in ("gcc", "readelf"):
        if shutil.which(tool) is None:
            print(f"error: the CPU bundle's CUDA stubs need {tool} (Debian: apt-get install gcc binutils)",
                  file=sys.stderr)
            return 2
    libs = [p for p in internal.rglob("*.so*") if p.is_file() and not p.is_symlink() and is_elf(p)]
    cuda = [p for p in libs if p.relative_to(internal).parts[0] == "nvidia"]
    if not cuda:
        print(f"error: no CUDA libraries (nvidia/*/lib) under {internal}: is this a bundle of PyPI's torch?",
              file=sys.stderr)
        return 2
    saved = 0
    for p in libs:
        if p.name in DROPPED:
            saved += p.stat().st_size
            p.unlink()
            print(f"   removed {p.relative_to(internal)} (GPU only, loaded on demand)")
    with tempfile.TemporaryDirectory() as tmp:
        for p in cuda:
            if base_name(p) in STUBBED:
                before = p.stat().st_size
                try:
                    n = build_stub(p, p, Path(tmp))
                except (RuntimeError, subprocess.CalledProcessError) as e:
                    print(f"error: {e}", file=sys.stderr)
                    return 1
                saved += before - p.stat().st_size
                print(f"   stub    {p.relative_to(internal)} ({before / 1e6:.0f} MB → "
                      f"{p.stat().st_size / 1e6:.1f} MB, {n} functions)")
    # what is still needed, starting from every library outside nvidia/ (the stubs need nothing)
    by_name = {p.name: p for p in cuda}
    left = [p for p in internal.rglob("*.so*") if p.is_file() and is_elf(p)]
    stack = [p for p in left if p.relative_to(internal).parts[0] != "nvidia"]
    keep: set[str] = set()
    while stack:
        for n in needed(stack.pop()):
            if n in by_name and n not in keep:
                keep.add(n)
                stack.append(by_name[n])
    for p in cuda:
        if p.name not in keep and p.exists():
            saved += p.stat().st_size
            p.unlink()
            print(f"   removed {p.relative_to(internal)} (no library of the bundle needs it)")
    missing = [n for n in keep if not by_name[n].exists()]
    if missing:
        print(f"error: still needed but removed: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    real = sorted(n for n in keep if base_name(by_name[n]) not in STUBBED)
    print(f"   kept real: {', '.join(real)}; saved {saved / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("usage: python3 packaging/cuda_libs.py BUNDLE/_internal", file=sys.stderr)
        sys.exit(2)
    sys.exit(slim(Path(sys.argv[1])))
