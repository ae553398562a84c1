"""A clip whose face lies on its side or upside down (its rotation tag lost) is turned upright at ingest.

Before: an upside-down face was tracked as an upright one chin for forehead (every crop upside down, pose off by
16° on average on d3, expressions wrong) and nothing said so."""
from __future__ import annotations

import numpy as np
import pytest

from studio.video import FrameReader, plan_decode, probe
from tests.conftest import ffmpeg

# ffmpeg filters that turn the picture so that the given clockwise turn puts it upright again
_MAKE = {90: "transpose=cclock", 180: "hflip,vflip", 270: "transpose=clock"}


def _turned(src, tmp_path, turn: int):
    out = tmp_path / f"turned{turn}.mp4"
    ffmpeg("-i", str(src), "-vf", _MAKE[turn], "-c:v", "libx264", "-crf", "14", "-c:a", "copy", str(out))
    return out


def test_a_turn_decodes_the_picture_turned(tmp_path, short_clip):
    up = next(iter(FrameReader(short_clip, plan_decode(probe(short_clip))))).astype(int)
    wide = tmp_path / "wide.mp4"
    ffmpeg("-i", str(short_clip), "-vf", "crop=256:192:0:32", "-c:v", "libx264", "-crf", "14", str(wide))
    plain = next(iter(FrameReader(wide, plan_decode(probe(wide))))).astype(int)
    for turn, k in ((90, -1), (180, 2), (270, 1)):
        s = plan_decode(probe(wide), turn=turn)
        assert (s.width, s.height) == ((192, 256) if turn != 180 else (256, 192))
        got = next(iter(FrameReader(wide, s))).astype(int)
        assert got.shape == np.rot90(plain, k).shape and np.abs(got - np.rot90(plain, k)).mean() < 1.0, turn
    assert up.shape == (256, 256, 3)


@pytest.mark.parametrize("turn", [180, 90])
def test_an_upside_down_or_sideways_face_is_turned_upright_and_tracked_as_the_upright_one(tmp_path, short_clip,
                                                                                          turn):
    from studio.pipeline import run_stage
    from studio.project import Project
    from studio.tracking.data import TrackingData

    ref = Project.create(tmp_path / "upright", short_clip)
    res = run_stage(ref, "ingest")
    assert "turn" not in res["summary"] and not any("upside" in w or "side" in w for w in res["warnings"])
    run_stage(ref, "track")
    proj = Project.create(tmp_path / "p", _turned(short_clip, tmp_path, turn))
    res = run_stage(proj, "ingest")
    assert res["summary"]["turn"] == turn
    how = "upside down" if turn == 180 else "on its side"
    assert any(f"the face is {how} in the video" in w and "--turn 0" in w for w in res["warnings"]), res["warnings"]
    run_stage(proj, "track")
    a, b = TrackingData.load(ref.stage_dir("track")), TrackingData.load(proj.stage_dir("track"))
    assert a.valid.sum() == b.valid.sum() == 40
    assert np.abs(a.pose - b.pose).mean() < 1.0                   # upside down untouched: 16° (d3, whole clip)
    assert np.abs(a.expr - b.expr).mean() < 0.1


def test_turn_0_keeps_the_picture_as_the_file_shows_it(tmp_path, short_clip):
    from studio.pipeline import run_stage
    from studio.project import Project

    proj = Project.create(tmp_path / "p", _turned(short_clip, tmp_path, 180))
    res = run_stage(proj, "ingest", {"turn": "0"})
    assert "turn" not in res["summary"] and not any("upside" in w for w in res["warnings"])


def test_paste_back_of_a_turned_clip_is_upright_at_the_videos_own_size():
    """Paste-back decodes the video at its own size (not the tracked frames'): a turned clip's size is turned too."""
    from studio.export import own_size_decode
    from studio.video import VideoInfo

    info = VideoInfo(path="/x.mp4", width=1920, height=1080, rotation=0, sar=1.0, fps=30.0, duration=10.0,
                     has_audio=False)
    for turn, size in ((90, (1080, 1920)), (180, (1920, 1080)), (0, (1920, 1080))):
        video = {"info": info.to_dict(), "decode": plan_decode(info, turn=turn).to_dict()}
        own = own_size_decode(video)
        assert (own["width"], own["height"], own["turn"]) == (*size, turn)
