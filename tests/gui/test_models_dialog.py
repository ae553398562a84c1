"""The Models dialog: lists every optional file, adds a checked one, refuses a wrong one in a dialog,
imports a folder, and shows a changed or missing file as such."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the file makers of test_model_files
from test_model_files import alexnet_file, arcface_file, flame_file  # noqa: E402

from studio.model_files import KNOWN  # noqa: E402

torch.set_num_threads(1)


def _wait_idle(qtbot, dlg, cond=lambda: True):
    qtbot.waitUntil(lambda: not dlg.busy and len(dlg.entries) == len(KNOWN) and cond(), timeout=20000)


def _row(key: str) -> int:
    return [s.key for s in KNOWN].index(key)


def test_models_dialog_add_refuse_remove(window, tmp_path, qtbot, screenshot, monkeypatch):
    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(tmp_path / "no-shared"))
    dlg = window.show_models()
    _wait_idle(qtbot, dlg)
    assert dlg.table.rowCount() == len(KNOWN) == 6
    r = _row("lpips")
    dlg.table.selectRow(r)
    assert "LPIPS" in dlg.about.text() and "Unlocks:" in dlg.about.text()
    dlg.add_clicked(str(alexnet_file(tmp_path / "alexnet.pth")))
    _wait_idle(qtbot, dlg, lambda: dlg.entries[r].source == "configured")
    assert dlg.table.item(r, 1).text() == "present, unchanged since added"
    assert dlg.table.item(r, 2).toolTip() == dlg.entries[r].sha256
    assert "AlexNet backbone" in dlg.message.text()
    assert dlg.remove_btn.isEnabled()
    dlg.copy_btn.click()
    dlg.remove_clicked()
    _wait_idle(qtbot, dlg, lambda: dlg.entries[r].source == "missing")
    wrong = tmp_path / "vgg16.pth"
    torch.save({"w": torch.zeros(2)}, wrong)  # a torch file, but no VGG inside
    dlg.add_clicked(str(wrong))
    qtbot.waitUntil(lambda: getattr(dlg, "refresh_error", None) is not None, timeout=20000)
    assert "cannot be used as LPIPS" in dlg.refresh_error.text()
    assert "neither a torchvision VGG16 nor an AlexNet" in dlg.refresh_error.text()
    dlg.refresh_error.close()
    _wait_idle(qtbot, dlg)
    assert dlg.entries[r].source == "missing"
    dlg.close_btn.click()


def test_models_dialog_add_folder_then_changed_and_missing(window, tmp_path, qtbot, screenshot, monkeypatch):
    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(tmp_path / "no-shared"))
    folder = tmp_path / "models"
    folder.mkdir()
    arc = arcface_file(folder / "arcface_mobilefacenet.pt")
    flame = flame_file(folder / "generic_model.pkl")
    (folder / "junk.pt").write_text("no")
    dlg = window.show_models()
    _wait_idle(qtbot, dlg)
    dlg.add_folder_clicked(str(folder))
    _wait_idle(qtbot, dlg, lambda: dlg.entries[_row("flame")].source == "configured")
    assert dlg.message.text().startswith("Added 2:") and "junk.pt" in dlg.message.text()
    assert dlg.entries[_row("arcface")].state == "present"
    arcface_file(arc)  # saved again with other weights
    flame.unlink()
    dlg.refresh()
    _wait_idle(qtbot, dlg, lambda: dlg.entries[_row("arcface")].state == "changed")
    assert dlg.table.item(_row("arcface"), 1).text() == "CHANGED since it was added"
    assert dlg.table.item(_row("flame"), 1).text() == "MISSING: the file is gone"
    dlg.table.selectRow(_row("arcface"))
    assert "add it again" in dlg.about.text()
    screenshot(dlg, "models_dialog_changed_missing")
    dlg.close_btn.click()


def test_models_dialog_names_stages_as_the_stage_list_does(window, tmp_path, qtbot, monkeypatch):
    """The StyleGAN2 file read "(pivots, prior, PTI)" — the stages' code names — where the window's stage list
    says "Subject prior", "Pivotal tuning": the dialog (and `models list`) use the stages' titles."""
    from studio.stages import REGISTRY

    monkeypatch.setenv("AVATAR_STUDIO_SHARED", str(tmp_path / "no-shared"))
    dlg = window.show_models()
    _wait_idle(qtbot, dlg)
    dlg.table.selectRow(_row("stylegan2"))
    about = dlg.about.text()
    assert all(REGISTRY[n].title in about for n in ("prior", "pti")) and "(pivots, prior, PTI)" not in about
    dlg.close_btn.click()
