"""Export: formats, audio, paste-back, driver reenactment, timeline, cancel (no file left)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from studio.avatar import Avatar
from studio.errors import Cancelled, InputError
from studio.export import ExportConfig, export, feather_mask, paste_back
from studio.motion import normalise_to_subject, timeline_motion
from studio.progress import Control, run_to_end
from studio.tracking.data import TrackingData
from studio.video import media_duration, probe
from tests.conftest import shared_video


class NearestFrameEngine:
    """Test engine: shows the training crop whose tracked controls are nearest. Not a model —
    it exercises export plumbing with real pictures that follow the motion."""

    name = "nearest"

    def __init__(self, tracking: TrackingData, size: int = 96):
        self.size = size
        train, _ = tracking.split()
        self.rows = train
        self.ctrl = tracking.controls(train)
        self.scale = self.ctrl.std(0) + 1e-3
        self.scale[2:] *= 4.0  # pose decides first, as in a turntable
        self.crops = tracking.crops(train, size=size)
        self.control_names = ["yaw", "pitch"] + tracking.expression_names
        self.ranges = tracking.control_ranges()

    def render_controls(self, controls, edits=None):
        d = (((controls[:, None, :] - self.ctrl[None]) / self.scale) ** 2).sum(-1)
        return self.crops[d.argmin(1)]


def run_export(project, cfg, out, control=None, avatar=None):
    events = []
    return run_to_end(export(project, cfg, out, control=control, avatar=avatar), events.append), events


@pytest.fixture(scope="module")
def avatar(tracked_d3):
    return Avatar(NearestFrameEngine(TrackingData.from_project(tracked_d3)))


def test_turntable_mp4(tracked_d3, avatar, tmp_path):
    out = tmp_path / "turn.mp4"
    res, events = run_export(tracked_d3, ExportConfig(source="turntable", duration=4.0, fps=25), out, avatar=avatar)
    d = media_duration(out)
    assert d["frames"] == 100 and probe(out).fps == 25
    assert events[-1].step == events[-1].total == 100
    assert res["audio"] is False
    # the head really turns: first and middle frames differ
    cap = cv2.VideoCapture(str(out))
    frames = [cap.read()[1] for _ in range(100)]
    assert np.abs(frames[0].astype(int) - frames[25].astype(int)).mean() > 5


def test_self_reenactment_pasted_back_with_audio(tracked_d3, avatar, tmp_path):
    out = tmp_path / "self.mp4"
    cfg = ExportConfig(source="self", frames="heldout", paste_back=True)
    res, _ = run_export(tracked_d3, cfg, out, avatar=avatar)
    trk = TrackingData.from_project(tracked_d3)
    _, held = trk.split()
    d = media_duration(out)
    assert d["frames"] == len(held) == res["frames"]
    assert probe(out).display_size == (512, 512)  # the original frame size
    assert d["audio_seconds"] == pytest.approx(d["video_seconds"], abs=0.1)


class OwnFrameEngine(NearestFrameEngine):
    """Test engine: shows the tracked crop of the frame whose controls are nearest among all frames, held-out
    ones included, so a frame pasted back shows (nearly) its own face where it was."""

    def __init__(self, tracking: TrackingData, size: int = 128):
        super().__init__(tracking, size)
        self.rows = np.flatnonzero(tracking.valid)
        self.ctrl = tracking.controls(self.rows)
        self.crops = tracking.crops(self.rows, size=size)


def test_paste_back_writes_a_large_clip_at_its_own_size(tmp_path, d3_video):
    """A clip larger than the tracked frames (1440x1440, read at 1280x1280 for tracking) is pasted back at its
    own size, each face where it was in the full-size frame (at the tracked size the export lost a third of a
    1080p clip's pixels)."""
    from studio.pipeline import run_stage
    from studio.project import Project
    from tests.conftest import ffmpeg

    src = tmp_path / "big.mp4"
    ffmpeg("-ss", "2", "-i", str(d3_video), "-t", "1.2", "-vf", "scale=1440:1440:flags=bicubic", "-c:v", "libx264",
           "-preset", "ultrafast", "-crf", "14", "-c:a", "aac", str(src))
    proj = Project.create(tmp_path / "p", src)
    run_stage(proj, "ingest")
    run_stage(proj, "track")
    trk = TrackingData.from_project(proj)
    assert tuple(trk.frame_size) == (1280, 1280)
    out = tmp_path / "pasted.mp4"
    run_export(proj, ExportConfig(source="self", frames="heldout", paste_back=True), out,
               avatar=Avatar(OwnFrameEngine(trk)))
    assert probe(out).display_size == (1440, 1440)
    _, held = trk.split()

    def frames(path):
        cap = cv2.VideoCapture(str(path))
        got = []
        while True:
            ok, im = cap.read()
            if not ok:
                return got
            got.append(im.astype(np.float32))

    real, pasted = frames(src), frames(out)
    assert len(pasted) == len(held) > 0
    k = 1440 / 1280
    for i, row in enumerate(held):
        pts = trk.landmarks[row, :, :2] * k                       # the face in the full-size frame
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int)
        face = (slice(y0, y1), slice(x0, x1))
        diff = np.abs(pasted[i][face] - real[row][face]).mean()
        moved = np.abs(pasted[i][face] - real[row][y0 - 40:y1 - 40, x0 - 40:x1 - 40]).mean()
        assert diff < 12 and diff < 0.5 * moved, (row, diff, moved)   # its own face, where it was


def test_driver_reenactment_side_by_side(tracked_d3, avatar, tmp_path):
    driver = shared_video("driver_tps.mp4")
    out = tmp_path / "driven.mp4"
    res, events = run_export(tracked_d3, ExportConfig(source="driver", driver=str(driver), side_by_side=True), out,
                             avatar=avatar)
    assert any(ev.part == "driver" for ev in events), "driver tracking must report progress"
    d = media_duration(out)
    assert d["frames"] == 169 and probe(out).fps == 25
    assert probe(out).display_size == (192, 96)
    assert d["audio_seconds"] == pytest.approx(d["video_seconds"], abs=0.1)


def test_gif_and_png(tracked_d3, avatar, tmp_path):
    res, _ = run_export(tracked_d3, ExportConfig(source="turntable", duration=1.0, fps=10), tmp_path / "t.gif",
                        avatar=avatar)
    assert media_duration(tmp_path / "t.gif")["frames"] == 10
    res, _ = run_export(tracked_d3, ExportConfig(source="turntable", duration=1.0, fps=10), tmp_path / "frames",
                        avatar=avatar)
    pngs = sorted((tmp_path / "frames").glob("*.png"))
    assert len(pngs) == 10 and cv2.imread(str(pngs[0])).shape == (96, 96, 3)


def test_cancel_half_way_leaves_no_file(tracked_d3, avatar, tmp_path):
    out = tmp_path / "cancelled.mp4"
    ctl = Control()
    gen = export(tracked_d3, ExportConfig(source="turntable", duration=4.0, fps=25), out, control=ctl, avatar=avatar)
    with pytest.raises(Cancelled):
        for ev in gen:
            if ev.total and ev.step >= ev.total // 2:
                ctl.cancel()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "no partial file may be left"


def test_cancel_while_tracking_the_driver(tracked_d3, avatar, tmp_path):
    import shutil

    from studio.pipeline import stage_state
    from studio.project import Project

    driver = tmp_path / "drv.mp4"  # a new path: tracked from scratch, not the cached driver
    shutil.copy(shared_video("driver_tps.mp4"), driver)
    out = tmp_path / "driven.mp4"
    ctl = Control()
    seen = []
    gen = export(tracked_d3, ExportConfig(source="driver", driver=str(driver)), out, control=ctl, avatar=avatar)
    with pytest.raises(Cancelled):
        for ev in gen:
            seen.append(ev)
            if ev.part == "driver" and "(track" in ev.message and ev.step > 0:
                ctl.cancel()
    assert any(ev.part == "driver" for ev in seen), "tracking the driver must report progress"
    assert not out.exists()
    (droot,) = [p for p in (tracked_d3.root / "drivers").iterdir() if p.name.startswith("drv-")]
    assert stage_state(Project.open(droot), "track") == "cancelled", "the cancel must stop the tracking itself"


def test_timeline_interpolates(tmp_path):
    names = ["yaw", "pitch", "jaw_open"]
    p = tmp_path / "keys.json"
    p.write_text(json.dumps({"fps": 10, "interpolation": "linear",
                             "keys": [{"t": 0, "yaw": 0}, {"t": 1, "yaw": 20, "jaw_open": 1.0}, {"t": 2, "yaw": 0}]}))
    m = timeline_motion(p, names)
    assert len(m) == 21
    assert m.controls[5, 0] == pytest.approx(10.0) and m.controls[10, 0] == pytest.approx(20.0)
    assert np.all(m.controls[:, 2] == 1.0)  # one key: held
    p.write_text(json.dumps({"keys": [{"t": 1, "smile": 1}]}))
    with pytest.raises(InputError, match="unknown sliders"):
        timeline_motion(p, names)


def test_normalisation_matches_subject_statistics():
    rng = np.random.default_rng(0)
    subj = rng.normal([5, -3, 0.2], [4, 2, 0.3], size=(500, 3))
    drv = rng.normal([-10, 8, 0.6], [10, 1, 0.1], size=(400, 3))
    out = normalise_to_subject(drv, drv, subj)
    assert np.allclose(out.mean(0), subj.mean(0), atol=1e-4) and np.allclose(out.std(0), subj.std(0), rtol=1e-3)


def test_paste_back_puts_render_where_the_face_was():
    frame = np.zeros((200, 300, 3), np.uint8)
    A = np.array([[2.0, 0, -100], [0, 2.0, -40]])  # crop (size 128) covers x 50..114, y 20..84 of the frame
    render = np.full((64, 64, 3), 255, np.uint8)
    out = paste_back(frame, render, A, 128, feather_mask(64))
    assert out[52, 82].min() > 240 and out[150, 250].max() == 0


def test_turntable_starts_and_ends_facing_forward_with_lopsided_ranges():
    from studio.motion import turntable_motion

    names = ["yaw", "pitch", "jaw_open"]
    ranges = {"yaw": (-16.0, 23.3), "pitch": (-16.0, 4.2), "jaw_open": (0.0, 0.8)}  # as tracked on d3
    m = turntable_motion(names, ranges, duration=10.0, fps=25.0, expression={"jaw_open": 0.3})
    c = m.controls
    assert len(m) == 250
    assert abs(c[0, 0]) < 1e-4 and abs(c[0, 1]) < 1e-4  # frontal, not the middle of a lopsided range
    assert abs(c[-1, 0]) < 1.0 and abs(c[-1, 1]) < 0.1
    assert c[:, 0].max() == pytest.approx(0.9 * 23.3, rel=1e-3)  # each side to 90 % of its own extent
    assert c[:, 0].min() == pytest.approx(-0.9 * 16.0, rel=1e-3)
    assert c[:, 1].min() == pytest.approx(-0.45 * 16.0, rel=1e-3) and c[:, 1].max() <= 1e-6  # nods the roomy way
    assert np.all(c[:, 2] == np.float32(0.3))
    # forward outside the trained range: start at the nearest trained pose
    m = turntable_motion(names, {"yaw": (5.0, 30.0), "pitch": (-10.0, 10.0)}, duration=2.0, fps=10.0)
    assert m.controls[0, 0] == pytest.approx(5.0) and m.controls[:, 0].min() >= 5.0 - 1e-4


def test_cli_export_end_to_end(tracked_d3, avatar, tmp_path, monkeypatch, capsys):
    """The `export` command as a user types it (the avatar is the test engine: nothing is trained)."""
    from studio import avatar as avatar_mod
    from studio.cli import main

    monkeypatch.setattr(avatar_mod.Avatar, "open", classmethod(lambda cls, project, engine=None, detail=True, **_kw: avatar))
    out = tmp_path / "turn.mp4"
    assert main(["export", str(tracked_d3.root), "--source", "turntable", "--duration", "2", "-o", str(out)]) == 0
    d = media_duration(out)
    assert d["frames"] == 50 and d["fps"] == 25 and d["audio_seconds"] is None
    assert "wrote" in capsys.readouterr().out
    out = tmp_path / "self.mp4"
    assert main(["export", str(tracked_d3.root), "--source", "self", "--frames", "heldout", "--paste-back",
                 "--side-by-side", "-o", str(out)]) == 0
    trk = TrackingData.from_project(tracked_d3)
    d = media_duration(out)
    assert d["frames"] == len(trk.split()[1]) and probe(out).display_size == (1024, 512)
    assert d["audio_seconds"] == pytest.approx(d["video_seconds"], abs=0.1)
    # a bad request is one line and a non-zero exit code, with no file left behind
    assert main(["export", str(tracked_d3.root), "--source", "turntable", "--paste-back",
                 "-o", str(tmp_path / "bad.mp4")]) != 0
    assert "error:" in capsys.readouterr().err and not (tmp_path / "bad.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["self.mp4", "turn.mp4"]


def test_export_benchmark_reports_both_lengths(tracked_d3, avatar, monkeypatch, capsys):
    """The benchmark's table and ratio, with the per-length subprocess replaced by a fake."""
    from studio.benchmarks import export as bench

    def fake(project, duration, fps, engine, tmp):
        n = int(duration * fps)
        return {"duration": duration, "frames": n, "seconds": n / 30, "render_seconds": n / 31, "size": [128, 128],
                "peak_mb": 400.0 + duration / 60, "ffmpeg_peak_mb": 50.0, "bytes": 1000 * n}

    monkeypatch.setattr(bench, "run_length", fake)
    assert bench.main([str(tracked_d3.root)]) == 0
    text = capsys.readouterr().out
    assert "memory ratio       1.002" in text and "ok" in text


def test_face_mask_keeps_the_surroundings():
    from studio.export import face_mask

    m = face_mask(128)
    assert m[74, 64] == 1.0 and m[2, 2] == 0.0 and m[64, 2] == 0.0 and m[2, 64] == 0.0


def test_the_window_export_child_opens_the_avatar_with_detail_from_the_video(tmp_path, monkeypatch):
    """The export page's child process gets the engine's loader; it must open the avatar with the
    project, so detail from the video follows the Export form's `detail` as the CLI does (it used to
    wrap the bare engine: the window's clips were the soft render alone)."""
    from studio.avatar import Avatar
    from studio.engines import ENGINES, EngineSpec
    from studio.workers.export_process import open_avatar
    from tests.driving.synth import ControlsEngine, make_pair

    avatar_proj, _ = make_pair(tmp_path / "p")
    monkeypatch.setitem(ENGINES, "fake", EngineSpec(name="fake", title="fake", short="fake", stages=(),
                                                    loader=lambda project: ControlsEngine()))
    on = open_avatar(avatar_proj, {"engine": "fake", "detail": True}, ENGINES["fake"].loader)
    off = open_avatar(avatar_proj, {"engine": "fake", "detail": False}, ENGINES["fake"].loader)
    assert isinstance(on, Avatar) and on.project is avatar_proj and on.spec is ENGINES["fake"]
    assert on.detail and on.video_detail() is not None      # the synthetic subject's crops lend detail
    assert not off.detail and off.video_detail() is None
    assert open_avatar(avatar_proj, {"engine": "fake"}, None) is None


def test_png_frames_never_replace_a_folder_of_other_files(tracked_d3, avatar, tmp_path, monkeypatch):
    cfg = ExportConfig(source="turntable", duration=0.2, fps=10)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    (mine / "photos").mkdir()
    for out in (mine, tracked_d3.root):  # a user's folder, the project itself: both were wiped
        with pytest.raises(InputError, match="already holds other files|the project folder itself"):
            run_export(tracked_d3, cfg, out, avatar=avatar)
    assert (mine / "thesis.txt").read_text() == "precious" and (mine / "photos").is_dir()
    assert (tracked_d3.root / "project.json").exists()
    manifest = (tracked_d3.root / "project.json").read_bytes()   # an MP4 over it: refused by the export itself
    with pytest.raises(InputError, match="one of the project's own files"):
        run_export(tracked_d3, ExportConfig(source="turntable", duration=0.2, fps=10, format="mp4"),
                   tracked_d3.root / "project.json", avatar=avatar)
    assert (tracked_d3.root / "project.json").read_bytes() == manifest
    monkeypatch.chdir(mine)  # "." is the folder itself (it was a crash: '.' has an empty name)
    with pytest.raises(InputError, match="already holds other files"):
        run_export(tracked_d3, cfg, ".", avatar=avatar)
    frames = tmp_path / "frames"  # an earlier export's frames are replaced, as before
    run_export(tracked_d3, ExportConfig(source="turntable", duration=0.4, fps=10), frames, avatar=avatar)
    run_export(tracked_d3, cfg, frames, avatar=avatar)
    assert sorted(p.name for p in frames.iterdir()) == ["000000.png", "000001.png"]


def test_output_paths_that_cannot_work_are_refused_before_rendering(tracked_d3, avatar, tmp_path, monkeypatch):
    import errno

    from studio.errors import StudioError
    from studio.export import ClipWriter

    cfg = ExportConfig(source="turntable", duration=0.2, fps=10)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.mp4").mkdir()
    cases = [(tmp_path / "afile" / "sub" / "clip.mp4", cfg, "afile is a file, not a folder"),
             (tmp_path / "adir.mp4", cfg, "is a folder"),
             (tmp_path / "afile", cfg, "PNG frames go into a folder"),
             (tmp_path / "clip.mp4", ExportConfig(source="turntable", format="gif"), "says MP4 but the format"),
             (tmp_path / "clip.gif", ExportConfig(source="turntable", format="png"), "says GIF but the format")]
    for out, c, msg in cases:
        events = []
        with pytest.raises(InputError, match=msg):
            run_to_end(export(tracked_d3, c, out, avatar=avatar), events.append)
        assert not any(ev.part == "render" for ev in events)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("studio.video.encode.tempfile.mkstemp", read_only)
    with pytest.raises(StudioError, match="no permission to write"):  # was a crash after the first frames
        run_export(tracked_d3, cfg, tmp_path / "new" / "clip.mp4", avatar=avatar)
    assert not (tmp_path / "new").exists(), "nothing is created by the check"
    monkeypatch.undo()
    with pytest.raises(StudioError, match="afile is not a directory|afile"):  # the writer itself: no traceback
        ClipWriter(tmp_path / "afile" / "clip.mp4", "mp4", 16, 16, 25.0)
    w = ClipWriter(tmp_path / "clip.mp4", "mp4", 16, 16, 25.0)
    monkeypatch.setattr("pathlib.Path.unlink", lambda self, missing_ok=False: read_only())
    w.abort()  # on a read-only disk the clean-up must not hide the real error behind a traceback of its own


def test_settings_the_export_did_not_use_are_named(tracked_d3, avatar, tmp_path):
    cfg = ExportConfig(source="turntable", duration=0.2, fps=10, driver="actor.mp4", frames="all", crf=30)
    res, _ = run_export(tracked_d3, cfg, tmp_path / "t.gif", avatar=avatar)
    (note,) = [n for n in res["notes"] if "not used" in n]
    assert "driver (for source driver, not turntable)" in note and "frames (for source self" in note
    assert "crf (for MP4, not GIF)" in note and "duration" not in note
    res, _ = run_export(tracked_d3, ExportConfig(source="turntable", duration=0.2, fps=10), tmp_path / "u.mp4",
                        avatar=avatar)
    assert not any("not used" in n for n in res["notes"])


def test_turntable_expression_that_is_not_a_number(tracked_d3, avatar, tmp_path):
    with pytest.raises(InputError, match="'abc' is not a number"):  # was a ValueError traceback
        run_export(tracked_d3, ExportConfig(source="turntable", expression="smile_left=abc"), tmp_path / "x.mp4",
                   avatar=avatar)


def test_a_damaged_driver_is_reported(tracked_d3, avatar, tmp_path):
    from studio.export import build_motion

    driver = tmp_path / "cut.mp4"  # the first 300 kB of the clip: it stops at 3.8 s of 6.8 s, frames undecodable
    driver.write_bytes(shared_video("driver_tps.mp4").read_bytes()[:300000])
    m = build_motion(tracked_d3, ExportConfig(source="driver", driver=str(driver)), avatar)
    held = int((~np.asarray(m.source.valid, bool)).sum())
    assert held > 0
    assert any(n.startswith("driver cut.mp4:") and "cut off" in n for n in m.notes), m.notes
    assert any(n.startswith(f"{held} of {len(m)} frames of the driver have no tracked face") for n in m.notes)
    # its 3.8 s would be too short to teach an avatar; a driver teaches none, so that is not said of it
    assert not any("shows the face for only" in n for n in m.notes), m.notes


def test_timeline_mistakes_are_one_line(tmp_path):
    names = ["yaw", "pitch", "jaw_open"]
    p = tmp_path / "keys.json"
    bad = [({"keys": [{"t": 0, "yaw": "abc"}, {"t": 1}]}, "sets yaw to 'abc'"),
           ({"keys": [{"t": 0, "yaw": None}, {"t": 1}]}, "sets yaw to None"),
           ({"fps": 0, "keys": [{"t": 0, "yaw": 0}, {"t": 1}]}, "frame rate of 0"),
           ({"fps": -5, "keys": [{"t": 0, "yaw": 0}, {"t": 1}]}, "frame rate of -5"),
           ({"fps": "fast", "keys": [{"t": 0, "yaw": 0}, {"t": 1}]}, "frame rate of 'fast'"),
           ({"keys": [{"t": 0, "yaw": 0}, {"t": 1e9}]}, "longer than an hour"),
           ({"keys": [{"t": 0, "yaw": 0}, {"t": "inf"}]}, "needs a time 't'"),
           ({"interpolation": "cubic", "keys": [{"t": 0, "yaw": 0}, {"t": 1}]}, "unknown interpolation")]
    for spec, msg in bad:
        p.write_text(json.dumps(spec))
        with pytest.raises(InputError, match=msg):
            timeline_motion(p, names)
    with pytest.raises(InputError, match="is a folder"):
        timeline_motion(tmp_path, names)
    p.write_text(json.dumps({"keys": [{"t": 0, "yaw": "5"}, {"t": 1, "yaw": 15}]}))  # a number in quotes still reads
    assert timeline_motion(p, names).controls[0, 0] == 5.0


def test_a_driver_that_cannot_be_tracked_leaves_no_actor_behind(tracked_d3, avatar, tmp_path):
    from studio.driving.actors import list_actors
    from studio.errors import StudioError

    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    before = sorted(p.name for p in (tracked_d3.root / "drivers").iterdir()) \
        if (tracked_d3.root / "drivers").exists() else []
    with pytest.raises(StudioError, match="the driver video could not be tracked"):
        run_export(tracked_d3, ExportConfig(source="driver", driver=str(notes)), tmp_path / "x.mp4", avatar=avatar)
    after = sorted(p.name for p in (tracked_d3.root / "drivers").iterdir())
    assert after == before, "the failed driver stayed in drivers/ (and was listed as an actor to train)"
    assert not any(a.name == "notes.mp4" for a in list_actors(tracked_d3))


def test_an_export_renders_its_frames_as_one_clip_and_the_viewer_does_not(tracked_d3, tmp_path, monkeypatch):
    """Every frame of an export goes through one `LenderTrail` (the frames lending detail cross-fade from
    frame to frame instead of switching); a render outside an export (the viewer) uses none."""
    from studio.detail import LenderTrail

    seen: list[tuple[int, int]] = []
    follow = LenderTrail.follow
    monkeypatch.setattr(LenderTrail, "follow", lambda self, lenders, regions:
                        seen.append((id(self), len(lenders))) or follow(self, lenders, regions))
    av = Avatar(NearestFrameEngine(TrackingData.from_project(tracked_d3)), project=tracked_d3)
    res, _ = run_export(tracked_d3, ExportConfig(source="self", frames="heldout", batch=4), tmp_path / "s.mp4",
                        avatar=av)
    assert len({t for t, _ in seen}) == 1 and sum(n for _, n in seen) == res["frames"] > 8
    assert av._trail is None
    seen.clear()
    av.render(yaw=5.0)
    assert not seen
