"""An interlaced clip (a camcorder's 1080i, a TV recording's 576i) is deinterlaced: each frame holds two fields
taken a field apart, and read as one picture every moving edge shows combs (the face's outline, the eyes, the
mouth), which the avatar would learn as texture."""
from __future__ import annotations

import numpy as np

from studio.video import FrameReader, plan_decode, probe
from tests.conftest import ffmpeg


def _combs(f: np.ndarray) -> float:
    """How much each row differs from the mean of the rows above and below it (high where fields disagree)."""
    g = f.astype(float).mean(-1)
    return float(np.abs(g[1:-1] - 0.5 * (g[:-2] + g[2:])).mean())


def test_an_interlaced_clip_is_deinterlaced(tmp_path, short_clip):
    # 30 progressive frames a second → 15 interlaced: each frame's top field from one frame, its bottom from the
    # next (a field apart, as a camcorder records), flagged top field first
    inter = tmp_path / "interlaced.mp4"
    ffmpeg("-i", str(short_clip), "-vf", "scale=512:512,tinterlace=mode=interleave_top,setfield=tff", "-flags",
           "+ilme+ildct", "-c:v", "libx264", "-x264-params", "tff=1", "-crf", "10", "-an", str(inter))
    info = probe(inter)
    assert info.interlaced and info.field_order.startswith("top")
    s = plan_decode(info)
    assert s.deinterlace
    src = list(FrameReader(short_clip, plan_decode(probe(short_clip), max_frames=40)))
    got = list(FrameReader(inter, s))
    s.deinterlace = False
    woven = list(FrameReader(inter, s))                       # both fields read as one picture (before)
    assert len(got) == len(woven) >= 19
    plain = np.mean([_combs(np.asarray(f)) for f in src])
    before = np.mean([_combs(f) for f in woven])
    after = np.mean([_combs(f) for f in got])
    assert before > 1.5 * plain                               # the combs this guards against
    assert after < 1.15 * plain and after < 0.5 * before
    # each frame shows its first field's moment: nearer the progressive frame it was taken from than the woven one
    import cv2

    def off(frames):
        return np.mean([np.abs(cv2.resize(g, (256, 256), interpolation=cv2.INTER_AREA).astype(float)
                               - src[2 * k].astype(float)).mean() for k, g in enumerate(frames[:19])])

    assert off(got) < 0.8 * off(woven)


def test_a_progressive_clip_is_left_as_it_is(short_clip):
    info = probe(short_clip)
    assert info.field_order == "progressive" and not info.interlaced and not plan_decode(info).deinterlace


def test_ingest_says_the_clip_is_interlaced(tmp_path, short_clip):
    from studio.pipeline import run_stage
    from studio.project import Project

    mts = tmp_path / "camcorder.mts"   # MPEG-TS, as a camcorder writes it (no keyframe index)
    ffmpeg("-i", str(short_clip), "-vf", "tinterlace=mode=interleave_top,setfield=tff", "-flags", "+ilme+ildct",
           "-c:v", "libx264", "-x264-params", "tff=1", "-c:a", "aac", "-f", "mpegts", str(mts))
    res = run_stage(Project.create(tmp_path / "p", mts), "ingest", {"start": 0.2})
    assert res["summary"]["interlaced"].startswith("top") and res["summary"]["expected_frames"] == 17
