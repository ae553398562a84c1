"""`avatar-studio edit` (--text, --directions, --list, --remove), `export --edit` and `eval --edits` on tiny
trained projects: what the user reads, the exit codes, and that the edit reaches the exported clip."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from studio.cli import main

from conftest import needs_open_clip


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _frames(folder) -> np.ndarray:
    files = sorted(folder.glob("*.png"))
    assert files, f"no frames in {folder}"
    return np.stack([cv2.imread(str(f))[..., ::-1] for f in files])


EXPORT = ("--source", "turntable", "--duration", "0.4", "--fps", "10")


def test_list_and_text_without_clip(project_copy, no_weights, capsys):
    proj = project_copy("pvp")
    rc, out, err = _run(capsys, "edit", proj.root, "--list")
    assert rc == 0 and "no saved edits yet" in out and "--directions" in out
    assert "Text edits need a CLIP" in out and "avatar-studio models add clip FILE" in out
    rc, out, err = _run(capsys, "edit", proj.root, "--text", "blue hair")
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: text edits need a CLIP")
    assert "avatar-studio models add clip FILE" in err and ".safetensors" in err
    rc, out, err = _run(capsys, "edit", proj.root)
    assert rc == 2 and "exactly one of --text, --global, --channel-effects, --directions, --list, --remove" in err
    rc, out, err = _run(capsys, "edit", proj.root, "--list", "--neutral", "a face")
    assert rc == 2 and "--neutral goes with --text" in err


def test_directions_list_remove_and_unknown_names(project_copy, no_weights, capsys, tmp_path):
    proj = project_copy("pvp")
    rc, out, err = _run(capsys, "edit", proj.root, "--directions")
    assert rc == 0, err
    assert "saved 8 directions for the pvp engine" in out and "picture: " in out
    picture = out.split("picture: ")[1].splitlines()[0].strip()
    assert cv2.imread(picture) is not None
    rc, out, err = _run(capsys, "edit", proj.root, "--list")
    assert rc == 0 and "StyleGAN avatar (PVP):" in out and "component 0" in out and "direction (component" in out
    assert "directions picture:" in out
    rc, out, err = _run(capsys, "edit", proj.root, "--remove", "component 7")
    assert rc == 0 and "removed edit 'component 7' (pvp)" in out
    rc, out, err = _run(capsys, "edit", proj.root, "--remove", "component 7")
    assert rc == 2 and err.count("\n") == 1 and "no edit named 'component 7'" in err and "'component 0' (pvp)" in err
    # export: unknown name, bad syntax, bad strength → one line each, exit 2, no file
    for args, says in ((["--edit", "blue hair=0.8"], "no edit named 'blue hair' for the pvp engine"),
                       (["--edit", "component 1"], "cannot read --edit 'component 1'"),
                       (["--edit", "component 1=lots"], "'lots' is not a strength for edit 'component 1'")):
        rc, out, err = _run(capsys, "export", proj.root, "-o", tmp_path / "bad", *EXPORT, *args)
        assert rc == 2 and err.count("\n") == 1 and says in err, (args, err)
        assert not (tmp_path / "bad").exists()


def test_export_with_an_edit_differs_from_the_unedited_clip(project_copy, no_weights, capsys, tmp_path):
    proj = project_copy("pvp")
    assert _run(capsys, "edit", proj.root, "--directions")[0] == 0
    rc, out, err = _run(capsys, "export", proj.root, "-o", tmp_path / "plain", *EXPORT)
    assert rc == 0, err
    rc, out, err = _run(capsys, "export", proj.root, "-o", tmp_path / "zero", *EXPORT, "--edit", "component 0=0")
    assert rc == 0, err
    rc, out, err = _run(capsys, "export", proj.root, "-o", tmp_path / "edited", *EXPORT,
                        "--edit", "component 0=2", "--edit", "component 1=-1")
    assert rc == 0, err
    assert "with edits: component 0=2, component 1=-1" in out
    plain, zero, edited = (_frames(tmp_path / n) for n in ("plain", "zero", "edited"))
    assert len(plain) == len(edited) == 4
    assert np.array_equal(zero, plain), "strength 0 exports the unedited clip"
    assert np.abs(edited.astype(int) - plain).mean() > 2.0
    rc, out, err = _run(capsys, "export", proj.root, "-o", tmp_path / "clip.mp4", *EXPORT, "--edit", "component 0=2")
    assert rc == 0 and (tmp_path / "clip.mp4").stat().st_size > 0, err


@pytest.mark.parametrize("engine", ["pvp", "nerf"])
def test_text_edit_export_and_eval(project_copy, clip_added, capsys, tmp_path, engine):
    """The new user's path with the CLIP file added: `edit --text`, `export --edit` (the clip is redder),
    `eval --edits` (the table and the report: CLIP gain positive at every sweep point)."""
    from avatars import face_region, red_share

    needs_open_clip()
    proj = project_copy(engine)
    rc, out, err = _run(capsys, "edit", proj.root, "--text", "red", "--engine", engine, "--steps", "40")
    assert rc == 0, err
    assert f"saved edit 'red' ({engine}): 40 steps" in out and f'--edit "red=1"' in out
    rc, out, err = _run(capsys, "edit", proj.root, "--list")
    assert rc == 0 and 'text "red"' in out and "text edits: ready" in out
    assert _run(capsys, "export", proj.root, "-o", tmp_path / "plain", *EXPORT, "--engine", engine)[0] == 0
    assert _run(capsys, "export", proj.root, "-o", tmp_path / "red", *EXPORT, "--engine", engine,
                "--edit", "red=1")[0] == 0
    plain, red = _frames(tmp_path / "plain"), _frames(tmp_path / "red")
    region = face_region(plain.shape[1])
    assert (red_share(red, region) > red_share(plain, region) + 0.01).all()
    rc, out, err = _run(capsys, "eval", proj.root, "--engine", engine, "--edits")
    assert rc == 0, err
    assert "over 5 yaws x 3 expressions" in out and "red" in out and "CLIP gain" in out
    report = json.loads((proj.root / "eval" / engine / "edits.json").read_text())
    row = report["edits"][0]
    assert row["name"] == "red" and row["points"] == 15 and report["clip"] is True
    assert row["clip_gain_min"] > 0, f"CLIP gain at every sweep point: {row['clip_gain']}"
    assert "identity not measured" in out and (proj.root / "eval" / engine / "edits.png").is_file()


def test_eval_edits_without_edits_or_clip(project_copy, no_weights, capsys):
    proj = project_copy("nerf")
    rc, out, err = _run(capsys, "eval", proj.root, "--edits")
    assert rc == 2 and "has no saved edits for the nerf engine" in err and "--directions" in err
    assert _run(capsys, "edit", proj.root, "--directions", "--engine", "nerf")[0] == 0
    rc, out, err = _run(capsys, "eval", proj.root, "--edits")
    assert rc == 0, err
    report = json.loads((proj.root / "eval" / "nerf" / "edits.json").read_text())
    assert len(report["edits"]) == 8 and report["clip"] is False
    assert all(r["clip_gain_mean"] is None for r in report["edits"])
    assert "CLIP score gain not measured" in out
