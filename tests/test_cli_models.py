"""`avatar-studio models`: lists what each optional file unlocks, adds a checked file, refuses a wrong one
(one line, exit 2), reports a changed or missing file, imports a folder."""
import pytest
import torch

from studio.cli import main
from test_model_files import alexnet_file, arcface_file, embedding_file, flame_file

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(tmp_path / "no-shared"))


def _block(out: str, key: str) -> str:
    """The lines `models list` prints for one key."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(key + " "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1].strip()), len(lines))
    return "\n".join(lines[start:end])


def test_models_list_add_remove(capsys, tmp_path):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "avatar-studio models add lpips" in out
    assert "unlocks: A true LPIPS perceptual loss" in _block(out, "lpips")
    assert "not configured" in _block(out, "flame-mediapipe")
    good = alexnet_file(tmp_path / "alexnet.pth")
    assert main(["models", "add", "lpips", str(good)]) == 0
    out = capsys.readouterr().out
    assert "AlexNet backbone" in out and "sha256" in out
    assert main(["models", "list"]) == 0
    block = _block(capsys.readouterr().out, "lpips")
    assert str(good) in block and "present, unchanged" in block
    assert main(["models", "remove", "lpips"]) == 0
    main(["models"])
    assert "not configured" in _block(capsys.readouterr().out, "lpips")


def test_wrong_file_is_refused_in_one_line_with_exit_code_2(capsys, tmp_path):
    notes = tmp_path / "notes.pth"
    notes.write_text("hello")
    assert main(["models", "add", "lpips", str(notes)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: notes.pth cannot be used as LPIPS")
    assert "not a PyTorch checkpoint" in err
    arc = arcface_file(tmp_path / "arcface.pt")
    assert main(["models", "add", "stylegan2", str(arc)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be used as StyleGAN2 generator" in err and "Traceback" not in err
    assert main(["models", "add", "lpips"]) == 2
    assert "needs a name and a file" in capsys.readouterr().err
    main(["models"])
    assert "not configured" in _block(capsys.readouterr().out, "stylegan2")


def test_list_reports_a_changed_and_a_missing_file(capsys, tmp_path):
    arc = arcface_file(tmp_path / "arcface.pt")
    emb = embedding_file(tmp_path / "mediapipe_landmark_embedding.npz")
    assert main(["models", "add", "arcface", str(arc)]) == 0
    assert main(["models", "add", "flame-mediapipe", str(emb)]) == 0
    capsys.readouterr()
    arcface_file(arc)  # saved again: new random weights, same size
    emb.unlink()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "CHANGED since it was added" in _block(out, "arcface")
    assert "add it again" in _block(out, "arcface")
    assert "MISSING: the file is gone" in _block(out, "flame-mediapipe")


def test_add_folder(capsys, tmp_path):
    d = tmp_path / "from-my-workstation"
    d.mkdir()
    arcface_file(d / "arcface_mobilefacenet.pt")
    flame_file(d / "generic_model.pkl")
    (d / "junk.pth").write_text("nope")
    assert main(["models", "add", "--folder", str(d)]) == 0
    out = capsys.readouterr().out
    assert "added arcface" in out and "added flame " in out and "skipped" in out and "junk.pth" in out
    main(["models"])
    out = capsys.readouterr().out
    assert "present, unchanged" in _block(out, "flame") and "present, unchanged" in _block(out, "arcface")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["models", "add", "--folder", str(empty)]) == 2
    assert "no recognised model file" in capsys.readouterr().err
