"""Every bad input gives one plain line, a non-zero exit, no traceback, and no half-made project."""
from __future__ import annotations

import pytest

from studio.cli import main
from tests.conftest import ffmpeg


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def check_refused(capsys, tmp_path, video, expect):
    proj = tmp_path / "proj"
    code, out, err = run_cli(capsys, "new", str(proj), "--video", str(video))
    assert code != 0
    assert "Traceback" not in err + out
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    assert expect in errors[0], err
    assert not proj.exists(), "no half-made project may be left"
    return err


def test_missing_file(capsys, tmp_path):
    check_refused(capsys, tmp_path, tmp_path / "nope.mp4", "does not exist")


def test_not_a_video(capsys, tmp_path):
    f = tmp_path / "notes.mp4"
    f.write_text("this is a shopping list, not a video\n" * 50)
    check_refused(capsys, tmp_path, f, "not a video file")


def test_zero_length_video(capsys, tmp_path):
    f = tmp_path / "empty.mp4"
    f.write_bytes(b"")
    check_refused(capsys, tmp_path, f, "empty")


def test_audio_only_file(capsys, tmp_path, short_clip):
    f = tmp_path / "sound.m4a"
    ffmpeg("-i", str(short_clip), "-vn", "-c:a", "aac", str(f))
    check_refused(capsys, tmp_path, f, "no video stream")


def test_no_face_anywhere(capsys, tmp_path):
    f = tmp_path / "wall.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "libx264", str(f))
    check_refused(capsys, tmp_path, f, "no face was found")


def test_too_few_face_frames(capsys, tmp_path, short_clip):
    f = tmp_path / "brief.mp4"
    # 8 frames of face, then 2 s of test pattern
    ffmpeg("-i", str(short_clip), "-f", "lavfi", "-i", "testsrc2=size=256x256:rate=30:duration=2",
           "-filter_complex", "[0:v]trim=end_frame=8,setpts=PTS-STARTPTS[a];[1:v]setpts=PTS-STARTPTS[b];"
           "[a][b]concat=n=2:v=1[v]", "-map", "[v]", "-c:v", "libx264", str(f))
    err = check_refused(capsys, tmp_path, f, "frames show a usable face")
    assert "at least 20" in err


def test_existing_project_folder_is_left_alone(capsys, tmp_path, short_clip):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "precious.txt").write_text("keep me")
    code, out, err = run_cli(capsys, "new", str(proj), "--video", str(short_clip))
    assert code != 0 and err.strip().splitlines()[-1].startswith("error:") and "already exists" in err
    assert (proj / "precious.txt").read_text() == "keep me"


def test_several_faces_takes_the_largest_and_says_so(capsys, tmp_path, short_clip):
    f = tmp_path / "two.mp4"
    ffmpeg("-i", str(short_clip), "-filter_complex",
           "[0:v]split[a][b];[b]scale=160:160,pad=256:256:48:48:color=gray[s];[a][s]hstack[v]",
           "-map", "[v]", "-c:v", "libx264", "-crf", "16", str(f))
    code, out, err = run_cli(capsys, "new", str(tmp_path / "p2"), "--video", str(f), "--max-frames", "30")
    assert code == 0, err
    assert "several faces" in out and "largest" in out


def test_very_large_resolution_is_downscaled(capsys, tmp_path, short_clip):
    f = tmp_path / "huge.mp4"
    ffmpeg("-i", str(short_clip), "-frames:v", "24", "-vf", "scale=3840:2160,setsar=1", "-c:v", "libx264",
           "-preset", "ultrafast", str(f))
    code, out, err = run_cli(capsys, "new", str(tmp_path / "p3"), "--video", str(f), "--max-frames", "24")
    assert code == 0, err
    assert "downscaled to 1280x720" in out
    from studio.project import Project
    from studio.tracking.data import TrackingData

    t = TrackingData.from_project(Project.open(tmp_path / "p3"))
    assert tuple(t.frame_size) == (1280, 720) and t.valid.sum() >= 20


def test_status_reports_next_step(capsys, tmp_path, short_clip):
    proj = tmp_path / "p"
    code, out, err = run_cli(capsys, "new", str(proj), "--video", str(short_clip))
    assert code == 0, err
    code, out, err = run_cli(capsys, "status", str(proj))
    assert code == 0
    assert "track" in out and "done" in out and "next" in out.lower()
    code, out, err = run_cli(capsys, "status", str(tmp_path / "missing"))
    assert code != 0 and "no project" in err


def test_output_piped_into_a_reader_that_stops_is_not_a_crash(tmp_path):
    """`avatar-studio status P | head -1`: when the reader of our output goes away the command stops quietly (exit
    status 141, as for SIGPIPE), with no "unexpected problem" line and no crash log."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from studio.project import Project

    Project.create(tmp_path / "p")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "status", str(tmp_path / "p")], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                       # the reader is gone before the command writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == "", err
    assert not list(tmp_path.glob("avatar-studio-crash-*.log"))


def test_a_broken_pipe_elsewhere_is_still_reported(capsys, tmp_path, monkeypatch):
    """A BrokenPipeError that is not about our own output (a child process or ffmpeg died) stays a problem worth
    reporting: one line, a crash log, exit status 1."""
    import tempfile

    from studio import cli

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_status(parser(), broken))
    code, out, err = run_cli(capsys, "status", str(tmp_path))
    assert code == 1
    assert "unexpected problem (BrokenPipeError" in err and "Traceback" not in err
    logs = list(tmp_path.glob("avatar-studio-crash-*.log"))
    assert len(logs) == 1 and "BrokenPipeError" in logs[0].read_text()


def _with_status(parser, func):
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.choices["status"].set_defaults(func=func)
    return parser
