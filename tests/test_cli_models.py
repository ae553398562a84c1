"""`avatar-studio models`: lists what each optional file is for, adds a valid file, refuses a wrong one."""
import torch

from studio.cli import main


def test_models_list_add_remove(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(tmp_path / "cfg"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "LPIPS" in out and "avatar-studio models add lpips" in out
    bad = tmp_path / "notes.pth"
    bad.write_text("hello")
    assert main(["models", "add", "lpips", str(bad)]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err
    good = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, good)
    assert main(["models", "add", "lpips", str(good)]) == 0
    assert "sha256" in capsys.readouterr().out
    main(["models"])
    assert str(good) in capsys.readouterr().out
    assert main(["models", "remove", "lpips"]) == 0
