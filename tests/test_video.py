"""Ingest: probing, rotation tags, trim / rate / cap, variable frame rate, audio."""
from __future__ import annotations

import numpy as np
import pytest

from studio.errors import InputError
from studio.video import FrameReader, extract_audio, media_duration, plan_decode, probe
from tests.conftest import ffmpeg


def test_probe_and_decode_count(short_clip):
    info = probe(short_clip)
    assert (info.width, info.height, info.rotation) == (256, 256, 0)
    s = plan_decode(info)
    frames = list(FrameReader(short_clip, s))
    assert len(frames) == 40 and frames[0].shape == (256, 256, 3) and frames[0].dtype == np.uint8


def test_rotation_tag_comes_out_upright(tmp_path, d3_video):
    portrait = tmp_path / "portrait.mp4"
    ffmpeg("-i", str(d3_video), "-t", "0.5", "-vf", "crop=288:512:112:0", "-c:v", "libx264", "-crf", "14",
           str(portrait))
    land = tmp_path / "landscape.mp4"
    ffmpeg("-i", str(portrait), "-vf", "transpose=1", "-c:v", "libx264", "-crf", "14", str(land))
    tagged = tmp_path / "tagged.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(land), "-c", "copy", str(tagged))
    info = probe(tagged)
    assert (info.width, info.height) == (512, 288) and info.rotation in (90, 270)
    assert info.display_size == (288, 512)
    a = next(iter(FrameReader(portrait, plan_decode(probe(portrait)))))
    b = next(iter(FrameReader(tagged, plan_decode(info))))
    assert b.shape == (512, 288, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0  # same upright picture


def test_trim_fps_and_cap(short_clip):
    info = probe(short_clip)
    s = plan_decode(info, start=0.5, fps=15)
    n = sum(1 for _ in FrameReader(short_clip, s))
    assert abs(n - round((1.34 - 0.5) * 15)) <= 1
    s = plan_decode(info, max_frames=7)
    assert sum(1 for _ in FrameReader(short_clip, s)) == 7
    with pytest.raises(InputError, match="past the end"):
        plan_decode(info, start=99)


def test_variable_frame_rate_is_resampled(tmp_path, short_clip):
    vfr = tmp_path / "vfr.mp4"
    # drop every third frame and keep the original timestamps: irregular frame intervals
    ffmpeg("-i", str(short_clip), "-vf", "select='not(eq(mod(n\\,3)\\,1))'", "-fps_mode", "vfr", "-c:v", "libx264",
           str(vfr))
    s = plan_decode(probe(vfr), fps=30)
    n = sum(1 for _ in FrameReader(vfr, s))
    assert abs(n - 40) <= 2, n  # constant 30 fps over the same 1.33 s


def test_audio_is_kept_and_trimmed(tmp_path, short_clip):
    dst = tmp_path / "a.m4a"
    assert extract_audio(short_clip, dst, start=0.3, end=1.0)
    d = media_duration(dst)
    assert d["audio_seconds"] == pytest.approx(0.7, abs=0.08)
