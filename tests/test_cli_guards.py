"""The command line refuses, in one line and before anything is made or changed, what it used to take silently or
carry out to the project's harm: a project path that is a file, options a command does not use, a refused command
that had already changed the project, an export over the project's own files or its video, a change of settings
while another process works on the project; and the commands it suggests can be pasted as they are."""
from __future__ import annotations

import fcntl
import os

import pytest

from studio.cli import main
from studio.lock import lock_path
from studio.project import Project
from tests.conftest import ffmpeg


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(code, err, expect):
    assert code == 2, err
    assert "Traceback" not in err and "unexpected problem" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expect in errors[0], err
    return errors[0]


@pytest.fixture(scope="module")
def wall(tmp_path_factory):
    """A second of test pattern: a video without a face (ingest reads it, tracking finds nothing)."""
    f = tmp_path_factory.mktemp("clips") / "wall.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1", "-c:v", "libx264", str(f))
    return f


@pytest.fixture(autouse=True)
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_STUDIO_CONFIG_DIR", str(tmp_path / "cfg"))


def test_a_project_path_that_is_a_file_is_refused_in_one_line(capsys, tmp_path, wall):
    f = tmp_path / "notes"
    f.write_text("keep me")
    code, out, err = run_cli(capsys, "new", f, "--video", wall)
    refused(code, err, "is a file, not a folder")
    code, out, err = run_cli(capsys, "new", f / "p", "--video", wall)
    refused(code, err, "notes is a file")
    code, out, err = run_cli(capsys, "run", wall, "--project", f, "--no-eval")
    refused(code, err, "is a file, not a folder")
    assert f.read_text() == "keep me"


def test_a_failed_new_in_an_empty_folder_leaves_it_empty(capsys, tmp_path, wall):
    folder = tmp_path / "chosen"
    folder.mkdir()
    code, out, err = run_cli(capsys, "new", folder, "--video", wall)
    refused(code, err, "no face was found")
    assert folder.is_dir() and list(folder.iterdir()) == [], "no half-made project may be left"


def test_run_checks_its_settings_before_it_makes_or_changes_a_project(capsys, tmp_path, wall, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "run", wall, "--set", "nosuch.k=1")
    refused(code, err, "unknown stage 'nosuch'")
    assert not (tmp_path / "wall_avatar").exists(), "a refused command makes no project"
    proj = Project.create(tmp_path / "p")
    code, out, err = run_cli(capsys, "run", proj.root, "--preset", "quality", "--set", "pivots.k=1", "--no-eval")
    refused(code, err, "at least 2")
    assert Project.open(proj.root).preset == "preview", "a refused command leaves the project's preset alone"
    for cmd in (("run", proj.root, "--no-eval"), ("run-stage", proj.root, "pivots")):
        code, out, err = run_cli(capsys, *cmd, "--nproc", "0")
        refused(code, err, "--nproc must be at least 1")


def test_run_does_not_silently_ignore_the_video_or_project_it_is_given(capsys, tmp_path, wall):
    other = tmp_path / "other.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "libx264", str(other))
    proj = Project.create(tmp_path / "p", other)
    before = (proj.root / "project.json").read_text()
    code, out, err = run_cli(capsys, "run", wall, "--project", proj.root, "--no-eval")
    refused(code, err, "was made from another video (other.mp4), not wall.mp4")
    code, out, err = run_cli(capsys, "run", proj.root, "--project", tmp_path / "elsewhere", "--no-eval")
    refused(code, err, "is already a project")
    assert (proj.root / "project.json").read_text() == before and not (tmp_path / "elsewhere").exists()


def test_export_never_writes_over_the_projects_files_or_its_video(capsys, tmp_path, wall):
    video = tmp_path / "subject.mp4"
    video.write_bytes(wall.read_bytes())
    proj = Project.create(tmp_path / "p", video)
    manifest = (proj.root / "project.json").read_text()
    code, out, err = run_cli(capsys, "export", proj.root, "-o", video, "--source", "turntable")
    refused(code, err, "is the video the avatar was made from")
    code, out, err = run_cli(capsys, "export", proj.root, "-o", proj.root / "project.json", "--format", "mp4")
    refused(code, err, "one of the project's own files")
    code, out, err = run_cli(capsys, "export", proj.root, "-o", proj.root, "--format", "mp4")
    refused(code, err, "the project folder itself")
    assert video.read_bytes() == wall.read_bytes() and (proj.root / "project.json").read_text() == manifest


def test_config_does_not_change_a_busy_project_and_says_when_nothing_changed(capsys, tmp_path):
    proj = Project.create(tmp_path / "p")
    code, out, err = run_cli(capsys, "config", proj.root, "pivots", "--set", "k=5")
    assert code == 0 and "saved" in out
    code, out, err = run_cli(capsys, "config", proj.root, "pivots", "--set", "k=5")
    assert code == 0 and "nothing changed" in out and "rerun" not in out, out
    before = (proj.root / "project.json").read_text()
    fd = os.open(lock_path(proj.root), os.O_RDWR | os.O_CREAT)   # another process at work on the project
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for change in (("--set", "k=7"), ("--reset",)):
            code, out, err = run_cli(capsys, "config", proj.root, "pivots", *change)
            refused(code, err, "is busy")
    finally:
        os.close(fd)
    assert (proj.root / "project.json").read_text() == before


def test_config_reset_of_a_stage_whose_run_died(capsys, tmp_path):
    """A record that says "running" while nobody holds the lock is a run that died: `config --reset` (which now
    holds the lock itself) still puts that stage back on the preset."""
    proj = Project.create(tmp_path / "p")
    proj.update_record("pivots", status="running", config={"k": 5, "pose_weight": 2.0, "seed": 0})
    code, out, err = run_cli(capsys, "config", proj.root, "pivots", "--reset")
    assert code == 0 and "back on the preview preset" in out, out + err
    assert "config" not in Project.open(proj.root).record("pivots")


def test_suggested_commands_quote_a_path_with_spaces(capsys, tmp_path):
    proj = Project.create(tmp_path / "my avatar")
    code, out, err = run_cli(capsys, "status", proj.root)
    assert code == 0
    assert f"run-stage '{proj.root}' ingest" in out, out


def test_zero_or_negative_numbers_are_refused_not_ignored(capsys, tmp_path):
    proj = Project.create(tmp_path / "p")
    code, out, err = run_cli(capsys, "eval", proj.root, "--size", "0")
    refused(code, err, "--size must be a number of pixels, not 0")
    code, out, err = run_cli(capsys, "queue", "log", "1", "--queue", tmp_path / "q", "--tail", "-3")
    refused(code, err, "--tail must be a number of lines")
    code, out, err = run_cli(capsys, "bench", "train-step", "--repeat", "0")
    refused(code, err, "--repeat must be at least 1")


def test_queue_options_of_another_action_are_refused(capsys, tmp_path, wall):
    q = tmp_path / "q"
    code, out, err = run_cli(capsys, "queue", "add", wall, "--queue", q, "--ray", "http://head:8265")
    refused(code, err, "--ray goes with queue run")
    code, out, err = run_cli(capsys, "queue", "run", "--queue", q, "--cpus-per-job", "4")
    refused(code, err, "--cpus-per-job goes with queue run --ray")
    code, out, err = run_cli(capsys, "queue", "list", wall, "--queue", q)
    refused(code, err, "queue list takes no videos")
    assert not (q / "queue.json").exists() or "wall" not in (q / "queue.json").read_text()


def test_models_remove_and_bench_say_plainly_what_is_wrong(capsys, tmp_path):
    code, out, err = run_cli(capsys, "models", "remove")
    assert "None" not in refused(code, err, "models remove needs the name")
    code, out, err = run_cli(capsys, "models", "remove", "clip")
    assert code == 0 and "nothing to remove" in out and "removed" not in out, out
    code, out, err = run_cli(capsys, "bench", "track")
    assert "Avatar-studio" not in refused(code, err, "bench track needs a video")
    proj = Project.create(tmp_path / "p")
    code, out, err = run_cli(capsys, "bench", "export", proj.root)
    refused(code, err, "has no trained avatar yet")
    code, out, err = run_cli(capsys, "edit", proj.root, "--list", "--beta", "0.3")
    assert "...." not in refused(code, err, "--beta goes with --global")



def test_arguments_a_subcommand_does_not_use_are_refused_in_one_line(capsys, tmp_path, monkeypatch):
    """`bench generator` silently ignored --max-frames and --actor, `models list a b` its extra arguments: each is
    refused in one line naming what is not used, and nothing is run."""
    import studio.benchmarks.driving
    import studio.benchmarks.generator
    import studio.benchmarks.train_step

    ran = []
    for mod in (studio.benchmarks.generator, studio.benchmarks.train_step, studio.benchmarks.driving):
        monkeypatch.setattr(mod, "main", lambda argv, _m=mod.__name__: ran.append(_m) or 0)
    code, out, err = run_cli(capsys, "bench", "generator", "--max-frames", "5", "--actor", "a.mp4")
    line = refused(code, err, "bench generator does not use --max-frames or --actor")
    assert "--max-frames goes with bench track" in line and "--actor goes with bench driving" in line
    code, out, err = run_cli(capsys, "bench", "generator", "clip.mp4")
    refused(code, err, "bench generator does not use a video or project")
    code, out, err = run_cli(capsys, "bench", "train-step", "--max-frames", "0")
    refused(code, err, "bench train-step does not use --max-frames")   # not "must be at least 1"
    code, out, err = run_cli(capsys, "bench", "driving", tmp_path, "--actor", "a.mp4", "--whole-frame")
    refused(code, err, "bench driving does not use --whole-frame")
    assert ran == []
    code, out, err = run_cli(capsys, "bench", "train-step", "--repeat", "2")
    assert code == 0 and ran == ["studio.benchmarks.train_step"], err

    code, out, err = run_cli(capsys, "models", "list", "a", "b")
    refused(code, err, "models list takes no names or files (got a b)")
    code, out, err = run_cli(capsys, "models", "list", "--folder", tmp_path)
    refused(code, err, "--folder goes with models add, not with models list")
    code, out, err = run_cli(capsys, "models", "remove", "clip", "extra")
    refused(code, err, "models remove takes only the name of the file to forget, not extra")
    code, out, err = run_cli(capsys, "models", "list")
    assert code == 0 and "stylegan2" in out


def test_drive_refuses_no_cycle_with_cycle_set_true(capsys, tmp_path, monkeypatch):
    """`drive --no-cycle --set cycle=true` silently trained without the cycle term: the two are refused together,
    in one line naming both, before any training; --no-cycle with cycle=false agrees and goes on."""
    import studio.driving.job

    seen = []

    def fake_train(project, actor, **kw):
        seen.append(kw["overrides"])
        return {"actor": str(actor), "outputs": {}, "summary": {}, "warnings": []}

    monkeypatch.setattr(studio.driving.job, "train_actor", fake_train)
    proj = Project.create(tmp_path / "p")
    for value in ("true", "yes"):
        code, out, err = run_cli(capsys, "drive", proj.root, "--actor", tmp_path / "a.mp4", "--no-cycle",
                                 "--set", f"cycle={value}")
        refused(code, err, f"--no-cycle and --set cycle={value} together")
    assert seen == []
    code, out, err = run_cli(capsys, "drive", proj.root, "--actor", tmp_path / "a.mp4", "--no-cycle",
                             "--set", "cycle=false")
    assert code == 0 and seen == [{"cycle": "false"}], err


def test_trim_and_rate_flags_are_checked_by_name_before_anything_is_made(capsys, tmp_path, wall):
    root = tmp_path / "p"
    for flags, expect in ((["--start", "nan"], "--start must be a number"),
                          (["--max-frames", "0"], "--max-frames must be more than 0"),
                          (["--fps", "-5"], "--fps must be more than 0"),
                          (["--start", "-1"], "--start must be 0 or more"),
                          (["--start", "3", "--end", "2"], "--end (2 s) must come after --start (3 s)")):
        code, out, err = run_cli(capsys, "new", root, "--video", wall, *flags)
        refused(code, err, expect)
        assert not root.exists()


def test_an_avatar_whose_settings_changed_is_called_out_of_date_not_untrained(capsys, tmp_path):
    from studio.engines import required
    from tests.conftest import mark_done

    proj = Project.create(tmp_path / "my avatar")
    for name in required("nerf"):
        mark_done(proj, name)
    mark_done(proj, "track")   # tracked again since the NeRF trained: the NeRF stage is stale
    code, out, err = run_cli(capsys, "eval", proj.root, "--engine", "nerf")
    line = refused(code, err, "the NeRF avatar in project my avatar is out of date")
    assert "LatentAvatar (tri-plane NeRF) must train again" in line and "my avatar' --engine nerf`" in line
    code, out, err = run_cli(capsys, "eval", proj.root, "--engine", "pvp")
    refused(code, err, "the StyleGAN avatar is not trained in project my avatar")
