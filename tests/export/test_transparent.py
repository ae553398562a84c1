"""A transparent background: the person alone, for compositing in a video editor (ProRes 4444 MOV with
transparency, or PNG frames with an alpha channel)."""
from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from studio.avatar import Avatar
from studio.errors import InputError
from studio.export import ExportConfig
from studio.tracking.data import TrackingData
from studio.video import ffmpeg_exe, probe
from tests.export.test_export import NearestFrameEngine, run_export


@pytest.fixture(scope="module")
def avatar(tracked_d3):
    """Real crops of d3 as renders (the export tests' stand-in engine): a person and a wall to tell apart."""
    return Avatar(NearestFrameEngine(TrackingData.from_project(tracked_d3)))


def _alpha_checks(rgba: np.ndarray) -> None:
    """The person opaque, the wall behind them clear: the face's middle against the crop's top corners."""
    a = rgba[..., 3].astype(float) / 255.0
    s = a.shape[0]
    middle = a[int(0.4 * s):int(0.6 * s), int(0.4 * s):int(0.6 * s)].mean()
    corners = np.mean([a[:s // 8, :s // 8].mean(), a[:s // 8, -s // 8:].mean()])
    assert middle > 0.9 and corners < 0.2, (middle, corners)


def test_png_frames_with_alpha(tracked_d3, avatar, tmp_path):
    out = tmp_path / "frames"
    res, events = run_export(tracked_d3, ExportConfig(source="turntable", duration=0.3, fps=10, transparent=True),
                             out, avatar=avatar)
    assert res["format"] == "png" and res["transparent"] and res["frames"] == 3
    shown = [e.preview for e in events if getattr(e, "preview", None) is not None]
    assert shown and all(p.shape[-1] == 3 for p in shown)       # the window's preview stays RGB
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3
    for p in pngs:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 3 and img.shape[2] == 4
        _alpha_checks(img)


def test_a_mov_with_transparency_for_an_editor(tracked_d3, avatar, tmp_path):
    out = tmp_path / "held.mov"
    res, _ = run_export(tracked_d3, ExportConfig(source="self", frames="heldout", transparent=True), out,
                        avatar=avatar)
    assert res["format"] == "mov" and res["audio"] is True
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    assert "prores (4444)" in text and "yuva444p" in text and "pcm_s16le" in text
    w, h = res["size"]
    raw = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(out), "-frames:v", "3", "-pix_fmt", "rgba",
                          "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    for frame in np.frombuffer(raw, np.uint8).reshape(-1, h, w, 4):
        _alpha_checks(frame)
    assert probe(out).color_space == "bt709"


def test_what_cannot_be_transparent_is_refused_before_rendering(tracked_d3, avatar, tmp_path):
    with pytest.raises(InputError, match=r"MP4 cannot keep a transparent background") as e:
        run_export(tracked_d3, ExportConfig(source="turntable", duration=0.2, transparent=True),
                   tmp_path / "clip.mp4", avatar=avatar)
    assert "clip.mov" in e.value.hint
    with pytest.raises(InputError, match=r"GIF cannot keep"):
        run_export(tracked_d3, ExportConfig(source="turntable", duration=0.2, transparent=True),
                   tmp_path / "clip.gif", avatar=avatar)
    with pytest.raises(InputError, match=r"not side by side"):
        run_export(tracked_d3, ExportConfig(source="self", side_by_side=True, transparent=True),
                   tmp_path / "clip.mov", avatar=avatar)
    assert not list(tmp_path.iterdir())
    # a .mov without a transparent background is an MP4 (H.264) as before
    res, _ = run_export(tracked_d3, ExportConfig(source="turntable", duration=0.2, fps=10), tmp_path / "plain.mov",
                        avatar=avatar)
    assert res["format"] == "mp4" and not res["transparent"]
