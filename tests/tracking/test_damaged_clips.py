"""Damaged phone clips through `avatar-studio new`: what is lost is said in seconds and the rest is
used; files that cannot be used at all get one plain line and exit code 2."""
from __future__ import annotations

import json

import pytest

from studio.cli import main
from tests.conftest import ffmpeg


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys, tmp_path, video, expect: str) -> str:
    proj = tmp_path / "proj"
    code, out, err = run_cli(capsys, "new", str(proj), "--video", str(video))
    assert code == 2, (code, err)
    assert "Traceback" not in out + err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and expect in errors[0], err
    assert not proj.exists()
    return errors[0]


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory, d3_video):
    """4 s of the subject at 192x192 with sound, index at the front (as phones' shared clips), a
    keyframe every second."""
    out = tmp_path_factory.mktemp("damaged") / "face.mp4"
    ffmpeg("-ss", "2", "-i", str(d3_video), "-t", "4", "-vf", "scale=192:192", "-c:v", "libx264", "-preset", "veryfast",
           "-g", "30", "-crf", "20", "-c:a", "aac", "-movflags", "+faststart", str(out))
    return out


def _project_json(proj, stage, name):
    return json.loads((proj / stage / name).read_text())


def test_clip_cut_in_half_is_not_accepted_silently(capsys, tmp_path, face_clip):
    data = face_clip.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    proj = tmp_path / "p"
    code, out, err = run_cli(capsys, "new", str(proj), "--video", str(half))
    assert code == 0, err
    notes = [ln for ln in out.splitlines() if ln.startswith("note: the video is damaged: it stops at")]
    assert len(notes) == 1 and "of 4.0 s" in notes[0] and "are used" in notes[0], out
    assert "note: the audio track is incomplete" in out
    video = _project_json(proj, "ingest", "video.json")
    lost = video["damage"]["video_lost_s"]
    assert 0.8 < lost < 3.2
    manifest = json.loads((proj / "project.json").read_text())
    summary = json.dumps(manifest)
    assert "damaged" in summary and "header_duration_s" in summary
    tracking = _project_json(proj, "track", "tracking.json")
    s = tracking["summary"]
    # the frames tracked are the readable part (the last packets before the cut are partial: a few
    # frames fewer), nothing else is said about it, and the report carries the note
    assert 0 <= round((4.0 - lost) * 30) - s["frames"] <= 6
    assert "expected frames" not in out
    assert tracking["damage"]["ingest"] and "stops at" in tracking["damage"]["ingest"][0]
    code, out, err = run_cli(capsys, "status", str(proj))
    assert code == 0 and "damaged" in out
    # a trim that starts after the cut has nothing left to use
    code, out, err = run_cli(capsys, "new", str(tmp_path / "p2"), "--video", str(half), "--start", "3.0")
    assert code == 2 and "has no readable video in the chosen span (3.0–4.0 s)" in err
    assert not (tmp_path / "p2").exists()


def test_undecodable_stretch_is_skipped_and_said(capsys, tmp_path, face_clip):
    data = bytearray(face_clip.read_bytes())
    n = len(data)
    data[n // 2: n // 2 + n // 8] = bytes(n // 8)  # a run of zeros inside the picture data
    bad = tmp_path / "zeroed.mp4"
    bad.write_bytes(bytes(data))
    proj = tmp_path / "p"
    code, out, err = run_cli(capsys, "new", str(proj), "--video", str(bad))
    assert code == 0, err
    notes = [ln for ln in out.splitlines() if "of the video is damaged (" in ln]
    assert len(notes) == 1 and "were skipped and the rest was used" in notes[0], out
    # the zeros hit sound packets too (they are interleaved with the picture)
    assert "note: the audio track has damaged parts" in out
    tracking = _project_json(proj, "track", "tracking.json")
    s = tracking["summary"]
    lost = tracking["damage"]["lost"]
    assert len(lost) == 1 and s["damaged_s"] > 0.2
    skipped = s["skipped_reasons"]["video damaged (frame could not be decoded)"]
    assert abs(skipped - s["damaged_s"] * 30) <= 1.5
    assert s["frames"] == 120  # the clip's length is kept: times stay right for export
    from studio.project import Project
    from studio.tracking.data import TrackingData

    t = TrackingData.from_project(Project.open(proj))
    a, b = lost[0]
    inside = (t.time >= a) & (t.time < b - 0.01)
    assert not t.valid[inside].any() and t.valid[~inside].sum() == s["tracked"]
    assert not t.crop_path(int(inside.argmax())).exists()


def test_unusable_files_are_refused_with_one_line(capsys, tmp_path, face_clip):
    # index at the end and the end cut off: nothing can be found
    tail = tmp_path / "tail.mp4"
    ffmpeg("-i", str(face_clip), "-c", "copy", str(tail))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(tail.read_bytes()[: tail.stat().st_size * 2 // 3])
    refused(capsys, tmp_path, cut, "is incomplete")
    # index at the front but no picture data at all after it
    data = face_clip.read_bytes()
    mdat = data.find(b"mdat")
    header_only = tmp_path / "header_only.mp4"
    header_only.write_bytes(data[: mdat + 4])
    refused(capsys, tmp_path, header_only, "no video frame can be read")
    # a photo, random bytes, a folder
    photo = tmp_path / "photo.jpg"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1", str(photo))
    refused(capsys, tmp_path, photo, "is a still image, not a video")
    noise = tmp_path / "noise.mov"
    noise.write_bytes(bytes(range(256)) * 400)
    refused(capsys, tmp_path, noise, "not a video file that can be read")
    folder = tmp_path / "clips.mp4"
    folder.mkdir()
    refused(capsys, tmp_path, folder, "is a folder, not a video")
