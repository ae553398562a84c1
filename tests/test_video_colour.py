"""A clip's colours: HDR phone clips tone-mapped to ordinary colours, the clip's own matrix and range, exports
tagged BT.709. Every clip here is made by the test (no ../shared needed)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from studio.video import DecodeSettings, FrameReader, ffmpeg_exe, plan_decode, probe
from studio.video.colour import colour_mode, parse_format

W, H = 320, 192


def _patches() -> np.ndarray:
    """Big flat patches (so chroma subsampling only touches their edges): skin tones, saturated primaries,
    greys, and a smooth ramp."""
    cols = [(224, 172, 138), (141, 85, 60), (198, 134, 66), (200, 40, 40), (40, 160, 60), (50, 70, 190),
            (235, 235, 235), (128, 128, 128), (30, 30, 30), (90, 160, 200)]
    img = np.zeros((H, W, 3), np.uint8)
    for k, c in enumerate(cols):
        r, q = divmod(k, 5)
        img[r * 64:(r + 1) * 64, q * 64:(q + 1) * 64] = c
    img[128:] = np.linspace(10, 245, W)[None, :, None].astype(np.uint8)
    return img


def _interiors(a: np.ndarray) -> np.ndarray:
    """The patches' insides, 12 px from every edge."""
    return np.concatenate([a[r * 64 + 12:(r + 1) * 64 - 12, q * 64 + 12:(q + 1) * 64 - 12].reshape(-1, 3)
                           for r in range(2) for q in range(5)])


def _encode(img: np.ndarray, out: Path, vf: str, args: list[str], frames: int = 6, size=(W, H),
            pix_fmt: str = "rgb24") -> Path:
    raw = np.ascontiguousarray(img).tobytes() * frames
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", pix_fmt,
           "-s", f"{size[0]}x{size[1]}", "-r", "30", "-i", "-", "-vf", vf, *args, str(out)]
    subprocess.run(cmd, input=raw, check=True, capture_output=True)
    return out


def _hdr(img: np.ndarray, out: Path, trc: str) -> Path:
    """`img` (ordinary BT.709 colours) as a phone's HDR clip: BT.2020, HLG or PQ, 10-bit HEVC, SDR white at
    203 nits (ITU-R BT.2408, as phones record)."""
    vf = ("setparams=color_primaries=bt709:color_trc=bt709:colorspace=gbr:range=pc,zscale=t=linear:npl=203,"
          f"format=gbrpf32le,zscale=p=bt2020:t={trc}:m=bt2020nc:r=tv:npl=203,format=yuv420p10le")
    return _encode(img, out, vf, ["-c:v", "libx265", "-x265-params", "log-level=error:lossless=0:crf=8",
                                  "-color_primaries", "bt2020", "-color_trc", trc, "-colorspace", "bt2020nc",
                                  "-tag:v", "hvc1"])


def _first(path: Path, **changes) -> np.ndarray:
    s = plan_decode(probe(path))
    for k, v in changes.items():
        setattr(s, k, v)
    return next(iter(FrameReader(path, s)))


def test_ffmpegs_stream_lines_are_read():
    line = ("  Stream #0:0[0x1](und): Video: hevc (Main 10) (hvc1 / 0x31637668), yuv420p10le(tv, "
            "bt2020nc/bt2020/arib-std-b67, progressive), 3840x2160, 41096 kb/s, 29.98 fps")
    assert parse_format(line) == {"pix_fmt": "yuv420p10le", "color_range": "tv", "color_space": "bt2020nc",
                                  "color_primaries": "bt2020", "color_trc": "arib-std-b67",
                                  "field_order": "progressive"}
    one = parse_format("Stream #0:0: Video: h264 (Main) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 512x480")
    assert (one["color_space"], one["color_primaries"], one["color_trc"]) == ("bt709",) * 3
    bare = parse_format("Stream #0:0: Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 512x512, 30 fps")
    assert bare == {"pix_fmt": "yuv420p", "color_range": "", "color_space": "", "color_primaries": "", "color_trc": "",
                    "field_order": "progressive"}
    part = parse_format("Stream #0:1: Video: h264 (High), yuvj420p(pc, unknown/bt709/bt709, progressive), 410x412")
    assert part["color_range"] == "pc" and part["color_space"] == "" and part["color_primaries"] == "bt709"
    # what each needs
    assert colour_mode(**{k: v for k, v in parse_format(line).items() if k not in ("color_range", "field_order")}) \
        == "hlg"
    swapped = parse_format("Stream #0:0: Video: mpeg2video (Main), yuv420p(tv, bt470bg, top coded first (swapped)), "
                           "720x576 [SAR 16:15 DAR 4:3], 25 fps")
    assert swapped["field_order"] == "top coded first (swapped)" and swapped["color_space"] == "bt470bg"
    assert colour_mode("yuv420p10le", "bt2020nc", "bt2020", "smpte2084") == "pq"
    assert colour_mode("yuv420p", "", "bt709", "bt709", 410, 412) == "bt709"   # the matrix from the primaries
    assert colour_mode("yuv420p", width=1920, height=1080) == "bt709"          # untagged HD, as players read it
    assert colour_mode("yuv420p", width=640, height=480) == "bt601"            # untagged SD
    assert colour_mode("rgb24") == "rgb"


@pytest.mark.parametrize("trc,mode", [("arib-std-b67", "hlg"), ("smpte2084", "pq")])
def test_an_hdr_phone_clip_comes_out_in_ordinary_colours(tmp_path, trc, mode):
    """An HDR clip decoded as ffmpeg does by itself is dark, grey and flat (a face at about 60 % of its
    brightness): the avatar would learn and export those colours. Decoded by its curve and tone-mapped it
    gives back the picture it was made from."""
    img = _patches()
    clip = _hdr(img, tmp_path / f"{mode}.mov", trc)
    info = probe(clip)
    assert (info.color_trc, info.colour, plan_decode(info).colour) == (trc, mode, mode)
    want = _interiors(img).astype(float)
    got = _interiors(_first(clip)).astype(float)
    plain = _interiors(_first(clip, colour="")).astype(float)   # ffmpeg's own conversion (before)
    assert np.abs(plain - want).mean() > 15.0                     # the fault this guards against
    assert np.abs(got - want).mean() < 6.0
    assert np.abs(got.mean(0) - want.mean(0)).max() < 6.0         # no cast, no darkening
    sat = lambda a: (a.max(1) - a.min(1)).mean()                  # noqa: E731 — colourfulness of the patches
    assert sat(got) > 0.9 * sat(want) and sat(plain) < 0.85 * sat(want)


def test_hdr_highlights_roll_off_instead_of_clipping(tmp_path):
    """Brighter than ordinary white (up to 1000 nits, a phone's HDR highlights): kept as a gentle gradient, not
    cut flat at white, and everything well below white left as it is."""
    w, h = 256, 32
    lin = np.tile(np.linspace(0, 1000 / 203, w, dtype=np.float32), (h, 1))   # linear light, 1.0 = SDR white
    planes = np.stack([lin, lin, lin])
    vf = ("setparams=color_primaries=bt709:color_trc=linear:colorspace=gbr:range=pc,"
          "zscale=p=bt2020:t=smpte2084:m=bt2020nc:r=tv:npl=203,format=yuv420p10le")
    clip = _encode(planes, tmp_path / "ramp.mp4", vf,
                   ["-c:v", "libx265", "-x265-params", "log-level=error:crf=4", "-color_primaries", "bt2020",
                    "-color_trc", "smpte2084", "-colorspace", "bt2020nc"], size=(w, h), pix_fmt="gbrpf32le")
    row = _first(clip)[h // 2, :, 1].astype(int)
    x = np.linspace(0, 1000 / 203, w)
    at = lambda v: row[int(np.argmin(np.abs(x - v)))]             # noqa: E731
    assert np.all(np.diff(row[4:-4]) >= -2)                       # no step back
    assert at(3.0) - at(1.0) >= 8 and at(1.5) < at(3.0) < 255     # highlights keep their gradient
    # a quarter of white (linear) is 0.25 ** (1 / 2.4)-ish of 255 in BT.709: about 137, left alone
    assert abs(at(0.25) - 137) < 10


def test_a_clips_own_matrix_and_range_are_used(tmp_path):
    """Untagged HD is BT.709 to every player, but ffmpeg converts it as BT.601 (reds and greens off by up to
    10 levels); a full-range clip read as TV range loses its contrast."""
    img = _patches()
    big = np.repeat(np.repeat(img, 4, 0), 4, 1)[:720, :1280]                 # 1280x720 (from 1280x768)
    hd = _encode(big, tmp_path / "hd.mp4", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
                 "setparams=colorspace=unknown",   # the matrix said nowhere, as some editors write
                 ["-c:v", "libx264", "-crf", "6"], frames=3, size=(1280, 720))
    info = probe(hd)
    assert info.color_space == "" and info.colour == "bt709"
    want = _interiors(img).astype(float)
    got = _interiors(_first(hd)[::4, ::4]).astype(float)
    plain = _interiors(_first(hd, colour="")[::4, ::4]).astype(float)
    assert np.abs(got - want).mean() < 2.5 and np.abs(got - want).max() < 8
    assert np.abs(plain - want).max() > 12.0                                 # read as BT.601: off
    full = _encode(img, tmp_path / "full.mp4", "scale=out_color_matrix=bt601:out_range=full,format=yuvj420p",
                   ["-c:v", "libx264", "-crf", "6", "-color_range", "pc", "-colorspace", "smpte170m"])
    info = probe(full)
    s = plan_decode(info)
    assert s.full_range and s.colour == "bt601"
    assert np.abs(_interiors(_first(full)).astype(float) - _interiors(img)).mean() < 2.5


def test_an_export_says_its_colours_and_reads_back_as_rendered(tmp_path):
    """An export is BT.709, TV range, tagged so: at HD size an untagged BT.601 file (as exports were) shows
    shifted colours in a player, which reads untagged HD as BT.709."""
    from studio.video.encode import ClipWriter

    img = np.repeat(np.repeat(_patches(), 4, 0), 4, 1)[:720, :1280]
    w = ClipWriter(tmp_path / "out.mp4", "mp4", 1280, 720, 30.0)
    for _ in range(3):
        w.write(img)
    out = w.finish()
    info = probe(out)
    assert (info.color_space, info.color_primaries, info.color_trc, info.color_range) == ("bt709",) * 3 + ("tv",)
    got = _interiors(_first(out)[::4, ::4]).astype(float)
    assert np.abs(got - _interiors(img[::4, ::4])).mean() < 2.5


def test_projects_made_before_keep_their_frames(tmp_path):
    """A project's saved decode settings without a colour (made before it was chosen per clip) decode as they
    did, so an avatar is not shown frames in other colours than it was trained on."""
    img = _patches()
    clip = _hdr(img, tmp_path / "old.mov", "arib-std-b67")
    old = {k: v for k, v in plan_decode(probe(clip)).to_dict().items() if k not in ("colour", "full_range")}
    settings = DecodeSettings(**old)
    assert settings.colour == ""
    cmd = " ".join(FrameReader(clip, settings).command())
    assert f"scale={W}:{H}:flags=area,setsar=1 " in cmd + " " and "zscale" not in cmd


def test_new_on_an_hdr_phone_clip_says_its_colours_were_converted(capsys, tmp_path, short_clip):
    """An artist's iPhone clip (HLG): `new` tracks it in ordinary colours and says so on its summary line."""
    from studio.cli import main
    from tests.conftest import ffmpeg

    hlg = tmp_path / "iphone.mov"
    ffmpeg("-i", str(short_clip), "-vf", "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv,"
           "zscale=t=linear:npl=203,format=gbrpf32le,zscale=p=bt2020:t=arib-std-b67:m=bt2020nc:r=tv:npl=203,"
           "format=yuv420p10le", "-c:v", "libx265", "-x265-params", "log-level=error", "-color_primaries", "bt2020",
           "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc", "-c:a", "copy", str(hlg))
    assert main(["new", str(tmp_path / "p"), "--video", str(hlg)]) == 0
    out = capsys.readouterr().out
    assert "tracked 40/40 frames" in out and "colours: HDR (HLG), shown in ordinary colours" in out
    assert main(["new", str(tmp_path / "q"), "--video", str(short_clip)]) == 0
    assert "colours:" not in capsys.readouterr().out     # an ordinary clip: nothing to say
