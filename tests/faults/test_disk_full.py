"""A full disk (ENOSPC from the kernel: the file is redirected to /dev/full, see _faulty_cli.py)
during a training checkpoint and during an export: one plain "disk is full" line, exit 2, the last
good checkpoint still loads and the rerun resumes from it; an earlier export stays intact."""
from __future__ import annotations

import errno
import hashlib
import os

import pytest
import torch

from studio.pipeline import stage_state
from studio.project import Project
from tests.faults.conftest import assert_status_truthful, cli, copy_project, one_error_line
from tests.stages.test_nerf import TINY, make_project

SETS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


def test_disk_full_during_a_checkpoint(tmp_path):
    root = make_project(tmp_path / "p").root
    r = cli("run-stage", root, "nerf", *SETS, fault="ckpt-full:4")  # checkpoints 1-3 fit, the 4th does not
    line = one_error_line(r)
    assert "the disk is full while writing train.ckpt" in line and "free some space" in line.lower(), line
    ckpt = root / "nerf" / "train.ckpt"
    state = torch.load(ckpt, weights_only=True)  # the last good checkpoint, whole
    done = sum(state["steps"].values())
    assert 0 < done < TINY["steps"] + TINY["mapper_steps"]
    assert not [p for p in ckpt.parent.iterdir() if p.name.startswith(".train.")], "a temporary file was left"
    out = assert_status_truthful(root)
    assert stage_state(Project.open(root), "nerf") != "done"
    r = cli("run-stage", root, "nerf", *SETS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed" in r.stdout, "the rerun must continue the checkpoint, not start again"
    assert stage_state(Project.open(root), "nerf") == "done"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_disk_full_during_an_export(tmp_path, nerf_project):
    root = copy_project(nerf_project, tmp_path / "p")
    out = tmp_path / "clip.mp4"
    assert cli("export", root, "-o", out, "--source", "turntable", "--duration", "1").returncode == 0
    before = _sha(out)
    r = cli("export", root, "-o", out, "--source", "turntable", "--duration", "2", fault="export-full")
    line = one_error_line(r)
    assert "the disk is full while writing clip.mp4" in line, line
    assert _sha(out) == before, "the earlier export was damaged"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "p"], "a partial file was left"
    assert_status_truthful(root)


def test_disk_full_at_the_final_rename(tmp_path, nerf_project, monkeypatch):
    """The last step of an export (moving the finished file into place) fails with ENOSPC."""
    from studio.errors import StudioError
    from studio.export import ExportConfig, export

    root = copy_project(nerf_project, tmp_path / "p")
    out = tmp_path / "clip.gif"
    out.write_bytes(b"GIF89a earlier export")
    real = os.replace

    def replace(src, dst, *a, **kw):
        if str(dst) == str(out):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    gen = export(Project.open(root), ExportConfig(source="turntable", duration=0.5), out)
    with pytest.raises(StudioError) as err:
        for _ in gen:
            pass
    assert "the disk is full while writing clip.gif" in str(err.value)
    assert out.read_bytes() == b"GIF89a earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "p"]
