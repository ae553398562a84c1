"""Ingest: probing, rotation tags, trim / rate / cap, variable frame rate, audio, damaged files."""
from __future__ import annotations

import numpy as np
import pytest

from studio.errors import InputError
from studio.video import FrameReader, extract_audio, media_duration, plan_decode, probe, scan_media
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


def test_the_clips_own_stream_is_decoded_beside_other_video_streams(tmp_path, short_clip):
    """A file with more video streams than the clip (a second camera, a cover picture first, as an
    editor may write): probe, the damage scan and the decoder all take the clip's stream. ffmpeg left
    to itself decodes the largest stream, which was squeezed into the clip's size."""
    other = tmp_path / "other.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=480x270:rate=25:duration=1.34", "-c:v", "libx264", str(other))
    second = tmp_path / "second_camera.mp4"  # the clip first; a larger stream after it
    ffmpeg("-i", str(short_clip), "-i", str(other), "-map", "0:v", "-map", "1:v", "-map", "0:a", "-c", "copy",
           str(second))
    cover = tmp_path / "cover_first.mkv"  # a one-frame picture first, the clip marked default after it
    ffmpeg("-i", str(short_clip), "-frames:v", "1", "-vf", "scale=120:80", str(tmp_path / "cover.jpg"))
    ffmpeg("-i", str(tmp_path / "cover.jpg"), "-i", str(short_clip), "-map", "0", "-map", "1:v", "-map", "1:a",
           "-c", "copy", "-disposition:v:0", "0", "-disposition:v:1", "default", str(cover))
    want = next(iter(FrameReader(short_clip, plan_decode(probe(short_clip))))).astype(int)
    for path, stream in ((second, 0), (cover, 1)):
        info = probe(path)
        assert (info.width, info.height, info.fps, info.stream) == (256, 256, 30.0, stream), path.name
        assert scan_media(path, info).damage(fps=info.fps)["notes"] == [], path.name  # the clip's packets
        frames = list(FrameReader(path, plan_decode(info)))
        assert len(frames) == 40, path.name
        assert np.abs(frames[0].astype(int) - want).mean() < 2.0, path.name  # the clip, not the other stream


def test_trim_fps_and_cap(short_clip):
    info = probe(short_clip)
    s = plan_decode(info, start=0.5, fps=15)
    n = sum(1 for _ in FrameReader(short_clip, s))
    assert abs(n - round((1.34 - 0.5) * 15)) <= 1
    s = plan_decode(info, max_frames=7)
    assert sum(1 for _ in FrameReader(short_clip, s)) == 7
    with pytest.raises(InputError, match="past the end"):
        plan_decode(info, start=99)


def test_trim_of_a_camcorder_file_without_index(tmp_path, d3_video):
    """An .mts (MPEG-TS, as camcorders write; no keyframe index) trimmed to start between keyframes:
    a jump there gave broken frames up to the next keyframe (reported as damage and skipped, or no
    frame at all). It is read from its beginning instead: the same frames as the MP4 of the same stream."""
    mp4, mts = tmp_path / "clip.mp4", tmp_path / "clip.mts"
    ffmpeg("-i", str(d3_video), "-t", "3", "-c:v", "libx264", "-preset", "veryfast", "-g", "15", "-c:a", "aac",
           str(mp4))
    ffmpeg("-i", str(mp4), "-c", "copy", "-f", "mpegts", str(mts))
    info = probe(mts)
    assert "mpegts" in info.container
    for start, end in ((1.2, None), (1.7, 2.5)):
        want = list(FrameReader(mp4, plan_decode(probe(mp4), start=start, end=end)))
        r = FrameReader(mts, plan_decode(info, start=start, end=end))
        got = list(r)
        assert abs(len(got) - len(want)) <= 1 and len(want) == round(((end or 3.0) - start) * 30), (len(got), len(want))
        assert r.report.bad_spans == [] and r.report.errors == 0, r.report.messages
        assert np.abs(got[0].astype(int) - want[0].astype(int)).mean() < 2.0  # the frame at the start
        assert np.abs(got[-1].astype(int) - want[-1].astype(int)).mean() < 2.0


def test_variable_frame_rate_is_resampled(tmp_path, short_clip):
    vfr = tmp_path / "vfr.mp4"
    # drop every third frame and keep the original timestamps: irregular frame intervals
    ffmpeg("-i", str(short_clip), "-vf", "select='not(eq(mod(n\\,3)\\,1))'", "-fps_mode", "vfr", "-c:v", "libx264",
           str(vfr))
    s = plan_decode(probe(vfr), fps=30)
    n = sum(1 for _ in FrameReader(vfr, s))
    assert abs(n - 40) <= 2, n  # constant 30 fps over the same 1.33 s


def test_a_held_frame_of_a_variable_rate_clip_is_not_damage(tmp_path, short_clip):
    """A variable-rate clip whose picture stood still for half a second (a phone's stall, a screen
    recording) has one frame lasting that long: an intact file, not a hole; it was reported as
    damaged at ingest and its frames there skipped."""
    held = tmp_path / "held.mp4"
    ffmpeg("-i", str(short_clip), "-vf", "select='not(between(n\\,10\\,24))'", "-fps_mode", "vfr", "-c:v", "libx264",
           "-c:a", "copy", str(held))
    info = probe(held)
    scan = scan_media(held, info)
    assert scan.damage(fps=info.fps)["notes"] == [] and scan.video.gaps == []
    r = FrameReader(held, plan_decode(info, fps=30))
    frames = list(r)
    assert abs(len(frames) - 40) <= 1 and r.report.lost == [] and r.report.bad_spans == []
    assert np.array_equal(frames[12], frames[20])  # the held frame fills its half second


def test_audio_is_kept_and_trimmed(tmp_path, short_clip):
    dst = tmp_path / "a.m4a"
    assert extract_audio(short_clip, dst, start=0.3, end=1.0) == []  # no decoder errors
    d = media_duration(dst)
    assert d["audio_seconds"] == pytest.approx(0.7, abs=0.08)


# ----------------------------------------------------------------------------- damaged files
@pytest.fixture(scope="module")
def pattern_clip(tmp_path_factory):
    """6 s of test pattern (30 fps, a keyframe every second) with a tone, index at the front."""
    out = tmp_path_factory.mktemp("damaged") / "pattern.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30:duration=6", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=6", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac",
           "-movflags", "+faststart", str(out))
    return out


def _truncate(src, dst, keep: float):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def test_clip_cut_in_half_is_found_by_the_scan(tmp_path, pattern_clip):
    half = _truncate(pattern_clip, tmp_path / "half.mp4", 0.5)
    info = probe(half)
    assert info.duration == pytest.approx(6.0, abs=0.05)  # the header still promises 6 s
    scan = scan_media(half, info)
    assert 2.0 < scan.video.end < 4.0 and scan.audio.end < 4.0
    dmg = scan.damage(fps=info.fps)
    assert dmg["video_lost_s"] == pytest.approx(6.0 - scan.video.end, abs=0.05)
    assert dmg["audio_lost_s"] > 2.0
    assert any("the video is damaged: it stops at" in n and "are used" in n for n in dmg["notes"])
    assert any(n.startswith("the audio track is incomplete: it stops at") for n in dmg["notes"])
    assert scan.readable() == pytest.approx(scan.video.end, abs=0.05)
    # a trim that ends before the damage sees none
    assert scan.damage(0.0, 1.5, fps=30)["notes"] == []
    # decoding stops at the same point (and the reader does not hang on the decoder's errors)
    r = FrameReader(half, plan_decode(info))
    n = sum(1 for _ in r)
    assert abs(n - scan.video.end * 30) <= 2 and r.report.complete and r.report.errors > 0
    # the intact file has nothing to report
    good = scan_media(pattern_clip)
    assert good.damage(fps=30)["notes"] == [] and good.readable() == pytest.approx(6.0, abs=0.05)


def test_undecodable_stretch_is_reported_with_its_time(tmp_path, pattern_clip):
    """Zeroed bytes in the middle of an MP4: the packets are still indexed (the scan sees nothing)
    but the decoder produces no frame for them, and the constant-rate filter repeats the last
    good frame; the reader finds the stretch from the decoded timestamps."""
    data = bytearray(pattern_clip.read_bytes())
    n = len(data)
    data[n // 2: n // 2 + n // 10] = bytes(n // 10)
    bad = tmp_path / "zeroed.mp4"
    bad.write_bytes(bytes(data))
    r = FrameReader(bad, plan_decode(probe(bad)))
    frames = [f.copy() for f in r]
    rep = r.report
    assert len(frames) == 180  # same count as the intact clip: the gap is filled with repeats
    assert len(rep.lost) == 1 and rep.decoded < 180 and rep.errors > 0
    a, b = rep.lost[0]
    repeats = [i for i in range(1, len(frames)) if np.array_equal(frames[i], frames[i - 1])]
    assert len(repeats) == 180 - rep.decoded
    # the stretch the reader reports is exactly where the repeated frames are
    assert abs(repeats[0] / 30 - a) < 0.02 and abs((repeats[-1] + 1) / 30 - b) < 0.02
    assert rep.lost_seconds == pytest.approx((180 - rep.decoded) / 30, abs=0.04)
    # frames after the hole predict from missing ones until the next keyframe (one a second here):
    # the damaged stretch covers the hole and ends on a keyframe
    assert len(rep.bad_spans) == 1
    d0, d1 = rep.bad_spans[0]
    # (it starts at the keyframe before the first error: at most two keyframe intervals in all)
    assert d0 <= a and b <= d1 and abs(d1 - round(d1)) < 1e-6 and abs(d0 - round(d0)) < 1e-6 and d1 - d0 <= 2.0


def test_damaged_spans_from_the_decoder_log():
    from studio.video import damaged_spans, merge_spans

    f = lambda t, key=False: ("frame", t, key)  # noqa: E731
    err = ("error",)
    # an error after 1.0 s; the keyframe at 2.0 s, decoded cleanly, ends the stretch; it starts at
    # the keyframe before the error (where the error line lands among the frames varies by run)
    ev = [f(0.0, True), f(0.5), f(1.0), err, f(1.5), f(1.6), f(1.7), f(2.0, True), f(2.5)]
    assert damaged_spans(ev, end=3.0) == [[0.0, 2.0]]
    assert damaged_spans(ev[:3] + [err] + ev[3:], end=3.0) == [[0.0, 2.0]]  # a line later: the same
    # ... but no more than `snap_back` before the error
    assert damaged_spans(ev, end=3.0, snap_back=0.25) == [[0.75, 2.0]]
    # errors right before a keyframe may belong to packets after it (the parser reads ahead):
    # that keyframe does not end the stretch, the next clean one does
    ev = [f(0.0, True), f(0.9), err, f(1.0, True), f(1.1), f(1.2), f(1.3), f(2.0, True)]
    assert damaged_spans(ev, end=3.0) == [[0.0, 2.0]]
    # damage up to the end of the clip
    assert damaged_spans([f(0.0, True), f(0.1), err, f(0.2)], end=0.3) == [[0.0, 0.3]]
    assert damaged_spans([f(0.0, True), f(0.1)], end=0.2) == []
    # frames missing (a jump in the times) in a clip with errors: the frames after the hole
    # predict from missing ones until the next keyframe, even where the errors were logged long
    # before (and the stretch they opened was closed)
    ten = [f(i / 10, i % 10 == 0) for i in range(40)]
    ev = [err] + ten[:5] + ten[6:25] + ten[31:]  # errors at 0 s, a hole from 2.5 s to 3.1 s
    assert damaged_spans(ev, end=4.0) == [[0.0, 1.0], [2.0, 4.0]]
    ev = [err] + ten[:5] + ten[6:25] + ten[30:]  # the first frame after the hole is a keyframe
    assert damaged_spans(ev, end=4.0) == [[0.0, 1.0], [2.0, 3.0]]
    # a jump without any error is a clip's own timing (a variable frame rate), not damage
    assert damaged_spans(ten[:25] + ten[31:], end=4.0) == []
    assert merge_spans([[2, 3], [0, 1], [0.5, 1.5]]) == [[0, 1.5], [2, 3]]


def test_missing_stretch_in_a_stream_without_index(tmp_path, pattern_clip):
    ts = tmp_path / "clip.ts"
    ffmpeg("-i", str(pattern_clip), "-c", "copy", "-f", "mpegts", str(ts))
    data = ts.read_bytes()
    cut = len(data) // 2 // 188 * 188
    holed = tmp_path / "holed.ts"
    holed.write_bytes(data[:cut] + data[cut + 188 * 700:])  # 700 transport packets gone
    scan = scan_media(holed)
    assert len(scan.video.gaps) == 1 and len(scan.audio.gaps) == 1
    dmg = scan.damage(fps=30)
    assert 0.3 < dmg["video_lost_s"] < 3.0
    assert any("1 stretch" in n and "missing at" in n for n in dmg["notes"])


def test_index_missing_and_still_image_are_refused(tmp_path, pattern_clip):
    tail_index = tmp_path / "tail.mp4"
    ffmpeg("-i", str(pattern_clip), "-c", "copy", str(tail_index))  # index written at the end
    cut = _truncate(tail_index, tmp_path / "cut.mp4", 0.6)
    with pytest.raises(InputError, match="incomplete"):
        probe(cut)
    still = tmp_path / "photo.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", "-f", "image2", "-c:v", "png", str(still))
    with pytest.raises(InputError, match="still image"):
        probe(still)


def test_audio_cut_short_is_reported_and_the_rest_kept(tmp_path):
    short_audio = tmp_path / "short_audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30:duration=6", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=2.5", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
           str(short_audio))
    dmg = scan_media(short_audio).damage(fps=30)
    assert dmg["video_lost_s"] == 0.0 and dmg["audio_lost_s"] == pytest.approx(3.5, abs=0.1)
    assert dmg["notes"] == ["the audio track is incomplete: it stops at 2.5 s of 6.0 s (3.5 s missing at the end); "
                            "exports will be silent for those 3.5 s, the rest of the sound is kept"]
    assert extract_audio(short_audio, tmp_path / "a.m4a") == []
    assert media_duration(tmp_path / "a.m4a")["audio_seconds"] == pytest.approx(2.5, abs=0.1)


# ----------------------------------------------------------------------------- decoding ahead
def test_prefetching_reader_gives_the_same_frames_and_report(tmp_path, pattern_clip):
    """Frames read ahead on a thread (started before the first is asked for) are the frames and the
    damage report of the plain reader, on an intact clip and one with an undecodable stretch."""
    data = bytearray(pattern_clip.read_bytes())
    n = len(data)
    data[n // 2: n // 2 + n // 10] = bytes(n // 10)
    bad = tmp_path / "zeroed.mp4"
    bad.write_bytes(bytes(data))
    for clip in (pattern_clip, bad):
        s = plan_decode(probe(clip))
        plain = FrameReader(clip, s)
        a = [f.copy() for f in plain]
        ahead = FrameReader(clip, s, prefetch=3).start()
        b = list(ahead)
        assert len(a) == len(b) == 180
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert b[0].flags.owndata and not np.shares_memory(b[0], b[1])  # each frame its own array
        ra, rb = plain.report, ahead.report
        assert rb.complete and (rb.frames, rb.decoded, rb.lost) == (ra.frames, ra.decoded, ra.lost)
        # the damaged stretch starts at a keyframe (where ffmpeg's error lines land among its frame
        # lines varies between runs, up to eight frames apart on a busy machine), so it is the same
        assert rb.bad_spans == ra.bad_spans
    assert ra.lost  # the damaged clip was seen as damaged by both


def test_prefetching_reader_stops_when_abandoned(pattern_clip):
    import threading

    before = {t.ident for t in threading.enumerate()}
    r = FrameReader(pattern_clip, plan_decode(probe(pattern_clip)), prefetch=4)
    it = iter(r)
    for _ in range(5):
        next(it)
    proc = r._proc
    it.close()  # the caller stops part-way (e.g. a cancelled stage)
    assert proc.poll() is not None  # ffmpeg was ended
    assert r.report is not None and not r.report.complete and r.report.frames == 5
    left = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("ffmpeg")]
    assert left == []
    # started but never read: close() ends ffmpeg and the reader thread too
    r2 = FrameReader(pattern_clip, plan_decode(probe(pattern_clip)), prefetch=2).start()
    proc2 = r2._proc
    r2.close()
    assert proc2.poll() is not None
    assert [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("ffmpeg")] == []


def test_ingest_notes_a_downscale_only_where_the_video_is_large(tmp_path, short_clip):
    """An odd size (641x479, no 4:2:0 encoder writes it; MPEG-4 part 2 does) is decoded at the nearest
    even size without being called "large"; a video over `max_side` is."""
    from studio.pipeline import run_stage
    from studio.project import Project

    odd = tmp_path / "odd.mp4"
    ffmpeg("-i", str(short_clip), "-vf", "scale=641:479", "-c:v", "mpeg4", "-q:v", "3", "-c:a", "copy", str(odd))
    proj = Project.create(tmp_path / "p", odd)
    res = run_stage(proj, "ingest")
    assert res["summary"]["size"] == "640x480" and res["summary"]["expected_frames"] == 40
    assert not any("large" in w for w in res["warnings"]), res["warnings"]
    proj = Project.create(tmp_path / "q", odd)
    res = run_stage(proj, "ingest", {"max_side": 320})
    assert res["summary"]["size"] == "320x240"
    assert "the video is large (641x479); frames are downscaled to 320x240" in res["warnings"]


def test_ingest_of_a_live_recording_without_a_length(tmp_path, short_clip):
    """A WebM written live (a browser's recorder) has no length in its header: the frame count and the
    trim check come from its packets (the record said 0 expected frames, and a start past the end
    was only found as "no readable video in 5.0–0.0 s")."""
    from studio.pipeline import run_stage
    from studio.project import Project

    live = tmp_path / "live.webm"
    ffmpeg("-i", str(short_clip), "-c:v", "libvpx", "-deadline", "realtime", "-b:v", "1M", "-c:a", "libopus",
           "-f", "webm", "-live", "1", str(live))
    assert probe(live).duration == 0.0
    proj = Project.create(tmp_path / "p", live)
    res = run_stage(proj, "ingest")
    assert res["summary"]["expected_frames"] == 40 and res["summary"]["duration_s"] == pytest.approx(1.33, abs=0.05)
    assert res["warnings"] == []
    proj = Project.create(tmp_path / "q", live)
    with pytest.raises(InputError, match=r"the trim start \(5.0 s\) is past the end of the video \(1.3 s\)"):
        run_stage(proj, "ingest", {"start": 5.0})
