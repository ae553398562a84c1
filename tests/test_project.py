"""Project folder: atomic manifest, relative paths, up-to-date checks, staleness, errors."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

import pytest

from studio import atomic
from studio.config import opt
from studio.errors import ProjectError, StudioError
from studio.pipeline import run_stage, set_stage_config, stage_state
from studio.project import Project
from studio.stages.base import REGISTRY, StageSpec


@dataclass
class _Cfg:
    value: int = opt(1, "a number")


CALLS: list[str] = []


def _make_stage(name, depends=()):
    def run(ctx, cfg):
        CALLS.append(name)
        yield ctx.progress(1, 1)
        (ctx.workdir / "out.txt").write_text(str(cfg.value))
        return {"outputs": {"out": f"{name}/out.txt"}, "summary": {"value": cfg.value}}

    return StageSpec(name=name, title=name, config_cls=_Cfg, presets={"preview": _Cfg()}, run=run, depends_on=depends)


@pytest.fixture
def fake_stages():
    specs = [_make_stage("t_a"), _make_stage("t_b", ("t_a",)), _make_stage("t_c", ("t_b",))]
    for s in specs:
        REGISTRY[s.name] = s
    CALLS.clear()
    yield
    for s in specs:
        REGISTRY.pop(s.name, None)


def test_manifest_roundtrip_and_relative_paths(tmp_path, fake_stages):
    proj = Project.create(tmp_path / "p")
    run_stage(proj, "t_a")
    data = json.loads((tmp_path / "p" / "project.json").read_text())
    assert data["schema"] == 1
    assert data["stages"]["t_a"]["outputs"]["out"] == "t_a/out.txt"  # relative
    shutil.move(str(tmp_path / "p"), str(tmp_path / "moved"))
    moved = Project.open(tmp_path / "moved")
    assert moved.output("t_a", "out").read_text() == "1"
    assert stage_state(moved, "t_a") == "done"


def test_rerun_same_config_does_nothing_and_change_marks_later_stale(tmp_path, fake_stages):
    proj = Project.create(tmp_path / "p")
    for s in ("t_a", "t_b", "t_c"):
        run_stage(proj, s)
    assert CALLS == ["t_a", "t_b", "t_c"]
    run_stage(proj, "t_a")
    assert CALLS == ["t_a", "t_b", "t_c"], "an up-to-date stage must not rerun"
    set_stage_config(proj, "t_a", {"value": "5"})
    assert [stage_state(proj, s) for s in ("t_a", "t_b", "t_c")] == ["stale", "stale", "stale"]
    run_stage(proj, "t_a")
    assert stage_state(proj, "t_a") == "done"
    assert stage_state(proj, "t_b") == "stale" and stage_state(proj, "t_c") == "stale"
    with pytest.raises(ProjectError):
        run_stage(proj, "t_c")  # its input is stale: says to run t_b first
    run_stage(proj, "t_b")
    run_stage(proj, "t_c")
    assert stage_state(proj, "t_c") == "done"


@dataclass
class _CfgV2:  # the same stage's config after an app upgrade added a setting
    value: int = opt(1, "a number")
    extra: float = opt(0.5, "a setting added later")


def test_setting_added_by_an_upgrade_does_not_make_a_trained_stage_stale(tmp_path, fake_stages):
    proj = Project.create(tmp_path / "p")
    run_stage(proj, "t_a")
    run_stage(proj, "t_b")
    for name in ("t_a", "t_b"):
        REGISTRY[name].config_cls = _CfgV2
        REGISTRY[name].presets = {"preview": _CfgV2()}
    assert stage_state(proj, "t_a") == "done" and stage_state(proj, "t_b") == "done"
    run_stage(proj, "t_b")
    assert CALLS == ["t_a", "t_b"], "an upgrade must not retrain a finished stage"
    set_stage_config(proj, "t_a", {"extra": "0.7"})  # a real change of the new setting still counts
    assert stage_state(proj, "t_a") == "stale" and stage_state(proj, "t_b") == "stale"


def test_atomic_write_keeps_old_file_when_writer_dies(tmp_path):
    path = tmp_path / "m.json"
    atomic.write_json(path, {"v": 1})

    def dying(tmp):
        tmp.write_text('{"v": 2, "half')
        raise KeyboardInterrupt  # the process is killed mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic.write_with(path, dying)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"], "no temp file left behind"



@pytest.mark.skipif(os.name != "posix", reason="file permission bits are POSIX's")
def test_atomic_writes_give_files_the_users_permissions_not_mkstemps(tmp_path):
    """mkstemp's temp files are 0600; a project's files should be as any file the user makes (0666 less
    the umask), so a project folder can be shared or read by another account like the folders in it."""
    import stat

    from models.stylegan2.checkpoint import _atomic_write

    old = os.umask(0o022)
    try:
        atomic.write_json(tmp_path / "a.json", {"v": 1})
        with atomic.atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
        _atomic_write(tmp_path / "c.pt", lambda f: f.write(b"y"))
        os.umask(0o077)
        atomic.write_json(tmp_path / "a.json", {"v": 2})
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"a.json": 0o600, "b.bin": 0o644, "c.pt": 0o644}, {k: oct(v) for k, v in modes.items()}

def test_disk_full_is_a_plain_error(tmp_path, monkeypatch):
    import errno
    import os

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StudioError, match="disk is full"):
        atomic.write_json(tmp_path / "x.json", {"a": 1})


def test_open_errors(tmp_path):
    with pytest.raises(ProjectError, match="no project"):
        Project.open(tmp_path / "nothing")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "project.json").write_text("{broken")
    with pytest.raises(ProjectError, match="cannot be read"):
        Project.open(tmp_path / "p")
    for damaged in ({"stages": 5}, {"schema": 1, "stages": {"track": "done"}}):   # hand-edited: not a traceback
        (tmp_path / "p" / "project.json").write_text(json.dumps(damaged))
        with pytest.raises(ProjectError, match="is damaged"):
            Project.open(tmp_path / "p")


def test_a_project_is_called_by_its_folder_and_opens_from_its_manifest(tmp_path, monkeypatch):
    made = Project.create(tmp_path / "first")
    shutil.copytree(made.root, tmp_path / "copy")
    assert Project.open(tmp_path / "copy").name == "copy"           # not "first", written when it was made
    assert Project.open(tmp_path / "copy" / "project.json").root == (tmp_path / "copy").resolve()
    monkeypatch.chdir(tmp_path / "copy")
    assert Project.open(".").name == "copy"


def test_unexpected_error_is_logged_not_raised_raw(tmp_path):
    def boom(ctx, cfg):
        yield ctx.progress(0, 1)
        raise ZeroDivisionError("oops")

    REGISTRY["t_boom"] = StageSpec(name="t_boom", title="b", config_cls=_Cfg, presets={}, run=boom)
    try:
        proj = Project.create(tmp_path / "p")
        with pytest.raises(StudioError, match="unexpected error") as ei:
            run_stage(proj, "t_boom")
        assert "logs/" in ei.value.hint
        assert Project.open(tmp_path / "p").record("t_boom")["status"] == "failed"
        assert list((tmp_path / "p" / "logs").glob("t_boom-*.log"))
    finally:
        REGISTRY.pop("t_boom")


# ----------------------------------------------------------------------------- compatibility across schema versions
FIXTURES = __import__("pathlib").Path(__file__).resolve().parent / "fixtures"


def _copy_fixture(tmp_path, name="project_v0", to="moved_avatar"):
    dst = tmp_path / to
    shutil.copytree(FIXTURES / name, dst)
    return dst


def test_version0_project_opens_and_status_works(tmp_path, capsys):
    from studio import project as project_mod
    from studio.cli import main

    root = _copy_fixture(tmp_path)
    on_disk = (root / "project.json").read_text()
    assert "schema" not in json.loads(on_disk)
    proj = Project.open(root)
    assert proj.manifest["schema"] == project_mod.SCHEMA_VERSION and "root" not in proj.manifest
    assert proj.manifest["source"] == {"path": "/home/artist/videos/old_clip.mp4", "size": None, "mtime": None}
    assert proj.record("track")["outputs"]["meta"] == "track/tracking.json"  # was absolute under the old root
    assert proj.output("track", "meta") == root.resolve() / "track" / "tracking.json"
    assert json.loads(proj.output("track", "meta").read_text())["crop_size"] == 128
    assert stage_state(proj, "ingest") in ("done", "stale") and stage_state(proj, "track") in ("done", "stale")
    assert main(["status", str(root)]) == 0
    out = capsys.readouterr().out
    assert "/home/artist/videos/old_clip.mp4" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith(("ingest ", "track "))] == \
        ["ingest", "track"]
    assert (root / "project.json").read_text() == on_disk, "opening and status must not rewrite the project"
    proj.update_record("track", note="touched")  # the first save writes format 1 and keeps the old manifest
    assert json.loads((root / "project.json").read_text())["schema"] == project_mod.SCHEMA_VERSION
    assert json.loads((root / "project.schema0.json").read_text()) == json.loads(on_disk)
    again = Project.open(root)
    assert again.migrated_from is None and again.record("track")["note"] == "touched"


def test_project_from_a_newer_version_gets_a_clear_message(tmp_path, capsys):
    from studio.cli import main
    from studio.project import SCHEMA_VERSION

    root = tmp_path / "future"
    root.mkdir()
    text = json.dumps({"schema": SCHEMA_VERSION + 1, "app_version": "9.0.0", "name": "future", "stages": {},
                       "new_thing": {"a": 1}})
    (root / "project.json").write_text(text)
    with pytest.raises(ProjectError) as ei:
        Project.open(root)
    assert "made by a newer Avatar Studio (9.0.0)" in ei.value.message and "update Avatar Studio" in ei.value.hint
    assert main(["status", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the project") and err.count("\n") == 1 and "Traceback" not in err
    assert (root / "project.json").read_text() == text
    (root / "project.json").write_text(json.dumps({"schema": "one", "stages": {}}))
    with pytest.raises(ProjectError, match="unreadable schema version"):
        Project.open(root)


def test_migrations_run_one_version_at_a_time(tmp_path, monkeypatch):
    from studio import project as project_mod

    seen = []

    def step(v):
        def run(manifest, root):
            seen.append((v, manifest["schema"] if "schema" in manifest else 0))
            manifest.setdefault("history", []).append(v)
            return manifest
        return run

    monkeypatch.setattr(project_mod, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(project_mod, "MIGRATIONS", {0: project_mod._migrate_0_to_1, 1: step(1), 2: step(2)})
    up, found = project_mod.migrate({"schema": 1, "stages": {}}, tmp_path)
    assert found == 1 and up["schema"] == 3 and up["history"] == [1, 2] and seen == [(1, 1), (2, 2)]
    monkeypatch.setattr(project_mod, "MIGRATIONS", {0: project_mod._migrate_0_to_1, 2: step(2)})
    with pytest.raises(ProjectError, match="format 1, which this version cannot upgrade"):
        project_mod.migrate({"schema": 1, "stages": {}}, tmp_path)


def test_run_pipeline_reports_each_stage_when_it_ends(tmp_path, fake_stages):
    """`run` re-prices the stages left after each one: the pipeline says which stage ended, its result and its
    time, in order, under one hold of the project's lock; a stage already done is reported too."""
    from studio.pipeline import run_pipeline

    proj = Project.create(tmp_path / "p")
    run_stage(proj, "t_a")
    seen = []
    out = run_pipeline(proj, ["t_a", "t_b", "t_c"], on_stage_done=lambda n, r, s: seen.append((n, r, s)))
    assert [n for n, _, _ in seen] == ["t_a", "t_b", "t_c"] and CALLS == ["t_a", "t_b", "t_c"]
    assert all(r is out[n] and s >= 0 for n, r, s in seen)
    assert seen[1][1]["summary"] == {"value": 1}


@pytest.fixture
def fake_engine(fake_stages, monkeypatch):
    """An engine made of the fake stages t_a → t_b → t_c, with no common stages before them."""
    from studio import engines

    monkeypatch.setattr(engines, "COMMON_STAGES", ())
    monkeypatch.setitem(engines.ENGINES, "pvp", engines.EngineSpec(name="pvp", title="fake", short="fake",
                                                                   stages=("t_a", "t_b", "t_c"), loader=lambda p: None))


def test_a_changed_setting_plans_its_stage_and_the_stages_after_it(tmp_path, fake_engine):
    """`run PROJECT --set STAGE.NAME=VALUE` on a finished project: the stage whose setting changes runs again,
    and so does every stage after it that depends on it; a setting equal to the one it ran with changes nothing."""
    from studio.session import Session

    proj = Project.create(tmp_path / "p")
    session = Session(proj)
    assert session.plan_engine("pvp") == ["t_a", "t_b", "t_c"]
    for s in ("t_a", "t_b", "t_c"):
        run_stage(proj, s)
    assert session.plan_engine("pvp") == []
    assert session.plan_engine("pvp", {"t_b": {"value": "1"}}) == [], "the same value is no change"
    assert session.plan_engine("pvp", {"t_b": {"value": "7"}}) == ["t_b", "t_c"]
    assert session.plan_engine("pvp", {"t_c": {"value": "7"}}) == ["t_c"]
    assert session.plan_engine("pvp", {"t_a": {"value": "2"}, "t_c": {"value": "1"}}) == ["t_a", "t_b", "t_c"]


def test_run_with_a_setting_on_a_finished_project_trains_again(tmp_path, fake_engine, capsys):
    from studio.cli import main

    proj = Project.create(tmp_path / "p")
    for s in ("t_a", "t_b", "t_c"):
        run_stage(proj, s)
    CALLS.clear()
    assert main(["run", str(proj.root), "--engine", "pvp", "--no-eval", "--set", "t_b.value=7"]) == 0
    assert CALLS == ["t_b", "t_c"], "the changed stage and the one after it run again"
    done = Project.open(proj.root)
    assert (done.root / "t_b" / "out.txt").read_text() == "7"
    assert done.record("t_b")["config"]["value"] == 7
    assert [stage_state(done, s) for s in ("t_a", "t_b", "t_c")] == ["done"] * 3
    CALLS.clear()
    assert main(["run", str(proj.root), "--engine", "pvp", "--no-eval", "--set", "t_b.value=7"]) == 0
    assert CALLS == [], "the same setting again: nothing to do"
    assert main(["run", str(proj.root), "--engine", "pvp", "--no-eval", "--set", "nerf.steps=5"]) == 0
    out = capsys.readouterr().out
    assert "settings for nerf are not used" in out and "fake" in out, out


def test_reset_to_preset_on_a_trained_stage_makes_it_and_the_stages_after_it_stale(tmp_path, fake_stages):
    """"Reset to preset" (the GUI's button, `config --reset`) on a stage trained with other settings: it shows the
    preset's settings and trains again, and so do the stages after it; on a stage already on the preset nothing
    changes; a stage that never ran just follows the preset."""
    from studio.session import Session

    proj = Project.create(tmp_path / "p")
    session = Session(proj)
    set_stage_config(proj, "t_a", {"value": "5"})
    for s in ("t_a", "t_b"):
        run_stage(proj, s)
    assert session.reset_config("t_a") is True
    assert session.config("t_a").value == 1
    assert stage_state(proj, "t_a") == "stale" and stage_state(proj, "t_b") == "stale"
    CALLS.clear()
    run_stage(proj, "t_a")
    assert CALLS == ["t_a"] and (proj.root / "t_a" / "out.txt").read_text() == "1"
    assert session.reset_config("t_a") is False, "already on the preset"
    assert stage_state(proj, "t_a") == "done"
    set_stage_config(proj, "t_c", {"value": "3"})      # never ran
    assert session.reset_config("t_c") is True and "config" not in proj.record("t_c")
    assert session.config("t_c").value == 1


def test_run_with_another_preset_on_an_existing_project_and_config_reset(tmp_path, fake_engine, monkeypatch, capsys):
    """`run PROJECT --preset quality` moves an existing project to that preset (it was silently ignored): stages not
    trained yet take its settings, trained ones keep theirs and the line names them and `config … --reset`, which
    puts one on the preset so that it and the stages after it train again."""
    from studio.cli import main, project_commands

    for name, value in (("t_a", 9), ("t_b", 8), ("t_c", 7)):
        monkeypatch.setitem(REGISTRY[name].presets, "quality", _Cfg(value=value))
    monkeypatch.setattr(project_commands, "_time_estimate", lambda *a, **k: ("", None))
    proj = Project.create(tmp_path / "p")
    for s in ("t_a", "t_b"):
        run_stage(proj, s)
    CALLS.clear()
    assert main(["run", str(proj.root), "--engine", "pvp", "--no-eval", "--preset", "quality"]) == 0
    out = capsys.readouterr().out
    assert "preset quality (was preview)" in out and "t_a, t_b keep the settings they trained with" in out, out
    assert "--reset" in out
    assert CALLS == ["t_c"] and (proj.root / "t_c" / "out.txt").read_text() == "7"
    assert Project.open(proj.root).preset == "quality"

    assert main(["config", str(proj.root), "t_a", "--reset"]) == 0
    out = capsys.readouterr().out
    assert "back on the quality preset's settings; it and the stages after it will rerun" in out, out
    assert "value" in out and "= 9" in out
    CALLS.clear()
    assert main(["run", str(proj.root), "--engine", "pvp", "--no-eval"]) == 0
    assert CALLS == ["t_a", "t_b", "t_c"] and (proj.root / "t_a" / "out.txt").read_text() == "9"
    assert main(["config", str(proj.root), "t_a", "--reset"]) == 0
    assert "already follows the quality preset" in capsys.readouterr().out
    assert main(["config", str(proj.root), "t_a", "--reset", "--set", "value=2"]) == 2
    assert "--reset and --set together" in capsys.readouterr().err


def test_a_project_with_nothing_trained_can_be_removed_one_with_a_trained_stage_cannot(tmp_path, fake_stages):
    """`Project.remove_unstarted` (the window's "Remove the project" after its video showed no face) deletes only
    a project in which no stage past ingest finished, as the manifest on disk says, and none while it is busy."""
    from studio.lock import project_lock

    fresh = Project.create(tmp_path / "fresh")
    fresh.update_record("ingest", status="done")
    fresh.update_record("track", status="failed")
    assert fresh.nothing_trained
    with project_lock(fresh.root, "a stage"):
        with pytest.raises(ProjectError, match="busy"):
            fresh.remove_unstarted()
    assert (fresh.root / "project.json").is_file()
    fresh.remove_unstarted()
    assert not fresh.root.exists()

    trained = Project.create(tmp_path / "trained")
    shown = Project.open(trained.root)            # what a window opened before a stage finished elsewhere
    run_stage(trained, "t_a")
    assert shown.nothing_trained                  # its copy of the manifest is old; the one on disk decides
    before = sorted(p.name for p in trained.root.rglob("*"))
    with pytest.raises(ProjectError, match="trained stages"):
        shown.remove_unstarted()
    assert sorted(p.name for p in trained.root.rglob("*")) == before
    trained.update_record("t_a", status="stale")
    assert not Project.open(trained.root).nothing_trained
