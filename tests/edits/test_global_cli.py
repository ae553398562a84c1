"""`avatar-studio edit --global / --channel-effects` on a tiny trained StyleGAN project: the one-line
messages without a CLIP file, the options that go with --global only, the cache reported as reused,
the saved edit in --list and `eval --edits` measuring it."""
from __future__ import annotations

import json

from studio.cli import main

from conftest import needs_open_clip


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_without_a_clip_file_each_says_which_file_and_how_to_add_it(project_copy, no_weights, capsys):
    proj = project_copy("pvp")
    for args in (["--global", "blue hair"], ["--channel-effects"]):
        rc, out, err = _run(capsys, "edit", proj.root, *args)
        assert rc == 2 and err.count("\n") == 1, (args, err)
        assert err.startswith("error: global-direction edits need a CLIP (open_clip checkpoint) file"), err
        assert "none is configured" in err and "avatar-studio models add clip FILE" in err and ".safetensors" in err
        assert not (proj.root / "edits" / "pvp" / "channel_effects.safetensors").exists()
    rc, out, err = _run(capsys, "edit", proj.root, "--list", "--beta", "0.2")
    assert rc == 2 and "--beta goes with --global" in err
    rc, out, err = _run(capsys, "edit", proj.root, "--channel-effects", "--neutral", "a face")
    assert rc == 2 and "--neutral goes with --text or --global" in err
    rc, out, err = _run(capsys, "edit", proj.root, "--global", "red", "--steps", "5")
    assert rc == 2 and "--steps goes with --text" in err
    rc, out, err = _run(capsys, "edit", proj.root, "--global", "red", "--text", "red")
    assert rc == 2 and "exactly one of --text, --global, --channel-effects" in err


def test_channel_effects_then_global_edit_list_and_eval(project_copy, clip_added, capsys):
    needs_open_clip()
    proj = project_copy("pvp")
    rc, out, err = _run(capsys, "edit", proj.root, "--channel-effects")
    assert rc == 0, err
    assert "channel effects of the pvp avatar: computed in" in out and "(gradient, 6 samples)" in out
    assert "--global" in out
    rc, out, err = _run(capsys, "edit", proj.root, "--channel-effects")
    assert rc == 0 and "reused the cached" in out
    rc, out, err = _run(capsys, "edit", proj.root, "--global", "red", "--neutral", "grey", "--beta", "0.15")
    assert rc == 0, err
    assert "saved edit 'red' (pvp, global direction)" in out and "β 0.15" in out and "cached channel effects" in out
    assert '--edit "red=1"' in out
    rc, out, err = _run(capsys, "edit", proj.root, "--global", "red", "--beta", "1.2")
    assert rc == 2 and err.count("\n") == 1 and "β must be in [0, 1)" in err
    rc, out, err = _run(capsys, "edit", proj.root, "--list")
    assert rc == 0 and 'global direction "red" from "grey"; β 0.15' in out, out
    rc, out, err = _run(capsys, "eval", proj.root, "--edits")
    assert rc == 0, err
    row = json.loads((proj.root / "eval" / "pvp" / "edits.json").read_text())["edits"][0]
    assert row["name"] == "red" and row["kind"] == "global" and row["points"] == 15
    # the tiny test CLIP's gain sits near 0 at a point or two (one point once gave -0.002); the edit
    # must raise "red" on average and at nearly every pose/expression point
    gains = row["clip_gain"]
    assert sum(g > 0 for g in gains) >= 13 and sum(gains) / len(gains) > 0.02, f"CLIP gain per sweep point: {gains}"
