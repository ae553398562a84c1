"""The settings form generated from a config dataclass."""
from __future__ import annotations

from gui_fakes import FakeTrainConfig

from studio.config import from_dict
from studio.gui.config_form import ConfigForm


def test_form_covers_every_field_and_round_trips(qtbot):
    form = ConfigForm(FakeTrainConfig)
    qtbot.addWidget(form)
    assert set(form.editors) == {"steps", "step_seconds", "learning_rate", "size", "torch_work", "note", "clip"}
    cfg = FakeTrainConfig(steps=123, learning_rate=0.0005, size=128, torch_work=False, note="hi", clip=2.5)
    form.set_config(cfg)
    back = from_dict(FakeTrainConfig, form.values())
    assert back == cfg
    # help text is shown as the tooltip; advanced fields are folded away
    assert "Adam" in form.editors["learning_rate"].toolTip()
    assert form.advanced_box.isVisibleTo(form) and not form.advanced_inner.isVisibleTo(form)
    # choices become a drop-down, min/max limit spin boxes
    assert form.editors["size"].count() == 3
    assert form.editors["steps"].minimum() == 1 and form.editors["steps"].maximum() == 100000


def test_editing_emits_changed_once_loaded(qtbot):
    form = ConfigForm(FakeTrainConfig)
    qtbot.addWidget(form)
    form.set_config(FakeTrainConfig())  # loading does not count as an edit
    with qtbot.waitSignal(form.changed, timeout=1000):
        form.editors["steps"].setValue(77)
    assert form.values()["steps"] == 77
    form.editors["clip"].setText("")
    assert from_dict(FakeTrainConfig, form.values()).clip is None


def test_field_names_read_as_words_with_their_capitals_and_units():
    """"Flame geometry", "Target psnr", "Time budget min" and "Warp px" read as FLAME geometry, Target PSNR and the
    unit in brackets, as the viewer and the README write them."""
    from studio.gui.config_form import humanize

    assert humanize("flame_geometry") == "FLAME geometry"
    assert humanize("target_psnr") == "Target PSNR"
    assert humanize("time_budget_min") == "Time budget (min)"
    assert humanize("checkpoint_every_s") == "Checkpoint every (s)"
    assert humanize("warp_px") == "Warp (px)"
    assert humanize("min_frames") == "Min frames" and humanize("steps") == "Steps"
    assert humanize("wplus") == "W+" and humanize("tune_lr") == "Tune LR"


def test_a_time_budget_of_zero_reads_no_cap(qtbot):
    """"Time budget (min)" showed "0.000": at 0 it says what its help says 0 means ("no cap"), and a cap reads as
    plain minutes ("30.0"); the value stays a number. Fields whose help gives 0 no short meaning show the number."""
    from studio.driving.config import DriveConfig
    from studio.gui.config_form import zero_text
    from studio.stages.mappers import MappersConfig

    form = ConfigForm(MappersConfig)
    qtbot.addWidget(form)
    form.set_config(MappersConfig())
    budget = form.editors["time_budget_min"]
    assert budget.value() == 0 and budget.text() == "no cap", budget.text()
    budget.setValue(30)
    assert budget.text() == "30.0" and form.values()["time_budget_min"] == 30.0
    assert zero_text("CPU threads (0 = the cores other programs leave free).") == ""
    drive = ConfigForm(DriveConfig)
    qtbot.addWidget(drive)
    drive.set_config(DriveConfig())
    assert drive.editors["time_budget_min"].text() == "no cap" and drive.editors["threads"].text() == "0"
