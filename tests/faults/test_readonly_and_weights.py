"""A read-only project folder, and a weight file replaced by garbage after it was added."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from tests.faults.conftest import cli, one_error_line
from tests.stages.test_nerf import make_project
from tests.test_model_files import arcface_file


def _tree_digest(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def readonly_project(tmp_path):
    """A project nobody may write to: chmod -R a-w, or (as root, where chmod does not stop writes)
    every write under it failing with EROFS as on a read-only mount."""
    root = make_project(tmp_path / "p").root
    if os.geteuid() == 0:
        yield root, "readonly"
        return
    modes = {p: p.stat().st_mode for p in [root, *root.rglob("*")]}
    for p in modes:
        p.chmod(stat.S_IMODE(modes[p]) & ~0o222)
    yield root, ""
    for p, m in modes.items():
        p.chmod(stat.S_IMODE(m))


def test_readonly_project(readonly_project):
    root, fault = readonly_project
    before = _tree_digest(root)
    r = cli("run-stage", root, "pivots", fault=fault, AVATAR_FAULT_ROOT=str(root))
    line = one_error_line(r)
    assert "no permission to write" in line or "may write to it" in line, line
    assert _tree_digest(root) == before, "a refused run changed the project"
    s = cli("status", root, fault=fault, AVATAR_FAULT_ROOT=str(root))
    assert s.returncode == 0 and "pivots" in s.stdout and "Traceback" not in s.stderr, s.stderr
    assert _tree_digest(root) == before


def test_weight_file_replaced_by_garbage(tmp_path):
    cfg = {"AVATAR_STUDIO_CONFIG_DIR": str(tmp_path / "config"), "AVATAR_STUDIO_SHARED": str(tmp_path / "none")}
    weights = arcface_file(tmp_path / "arcface.pt")
    r = cli("models", "add", "arcface", weights, **cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    weights.write_bytes(os.urandom(4096))  # replaced by garbage after it was added
    r = cli("models", "list", **cfg)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    block = r.stdout[r.stdout.index("\narcface"):].split("\n\n")[0]
    assert "arcface" in block and ("CHANGED" in block or "problem" in block), r.stdout
    assert "avatar-studio models add arcface" in block
    # every stage and eval asks model_files for the path: a damaged file means "not configured",
    # the documented fallback (identity loss off, identity metric "not measured")
    probe = "from studio.model_files import arcface_path; print(arcface_path())"
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, **cfg), cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0 and out.stdout.strip() == "None", out.stdout + out.stderr
    # adding the garbage again is refused in one line
    line = one_error_line(cli("models", "add", "arcface", weights, **cfg))
    assert "arcface" in line.lower() or "ArcFace" in line, line
