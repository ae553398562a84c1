"""Export with the video's own background (`studio.scene.ScenePlate`) behind the avatar.

A tiny synthetic project (no video, no training, no mediapipe): a fixed, smoothly textured background
frame seen by a camera that pans, zooms and turns a little from frame to frame (each row's tracked
frame -> crop transform), with a magenta disc, the "person", always at the crop's centre (the tracker
centres the face). Two rows have no face (``valid=False``, no crop, a zero transform as the tracker
stores). The engine draws the person on a flat grey background; the render's person matte
(`ScenePlate.person_matte`, mediapipe's selfie segmentation in the app) is patched to the engine's
disc.

- source=self: each exported frame gets the plate at that frame's own tracked transform, so its
  background is that frame's real background (not the clip's median placement, not the engine's);
- a frame without a face keeps the last frame's placement (as its controls do);
- other sources get the default placement; `scene=False` exports the engine's render as it is.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from studio.avatar import Avatar
from studio.export import ExportConfig, export
from studio.progress import run_to_end
from studio.project import Project
from studio.scene import ScenePlate
from studio.tracking.data import EXPRESSION_NAMES, TrackingData

W, H, S = 200, 160, 64          # frame width and height, tracked crop side
RENDER = 48                     # the engine's render side (the plate is placed at a render size)
N = 40                          # rows; the last 15 % (34..39) are held out
INVALID = (10, 36)              # rows without a face: one in training, one held out
PERSON = (255, 0, 255)
PERSON_R = 20.0 / S             # the person's radius in the crops, as a share of the side
MATTE_R = 23.0 / S              # the render's person matte (a little wider than the person it draws)
GREY = 90


def _disc(size: int, radius: float) -> np.ndarray:
    """(size, size) float32 anti-aliased disc of `radius` px at the image's centre."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.clip(radius + 0.5 - np.hypot(yy - (size - 1) / 2, xx - (size - 1) / 2), 0, 1).astype(np.float32)


def _background() -> np.ndarray:
    """(H, W, 3) uint8: smooth random colour texture (σ 3 frame px), grey 128 ± 40."""
    noise = cv2.GaussianBlur(np.random.default_rng(5).normal(0, 1, (H, W, 3)).astype(np.float32), (0, 0), 3.0)
    return np.clip(128 + noise / noise.std() * 40, 0, 255).astype(np.uint8)


def _affine(scale: float, cx: float, cy: float, deg: float) -> np.ndarray:
    """(2, 3) frame -> crop: frame point (cx, cy) to the crop's centre, `scale` crop px per frame px."""
    a = np.radians(deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    t = np.array([(S - 1) / 2, (S - 1) / 2]) - r @ [cx, cy]
    return np.hstack([r, t[:, None]])


class DiscOnGreyEngine:
    """Test engine, not a model: the person (a magenta disc) on a flat grey background, whatever the
    controls: the background of each exported frame can only come from the plate."""

    name = "disc"

    def __init__(self, tracking: TrackingData, size: int = RENDER):
        self.size = size
        self.control_names = ["yaw", "pitch"] + tracking.expression_names
        self.ranges = tracking.control_ranges()
        keep = _disc(size, PERSON_R * size)[..., None]
        self.image = np.clip(np.array(PERSON, np.float32) * keep + GREY * (1 - keep) + 0.5, 0, 255).astype(np.uint8)

    def render_controls(self, controls, edits=None):
        return np.repeat(self.image[None], len(controls), 0)


def make_project(root) -> tuple[Project, np.ndarray]:
    """The synthetic tracked project (see the module docstring) and its background frame."""
    proj = Project.create(root)
    track = proj.stage_dir("track")
    (track / "crops").mkdir()
    (track / "mattes").mkdir()
    bg = _background()
    k = np.linspace(0, 1, N)
    # the camera pans ±22 frame px (≈ ±12 crop px) and back, zooms 0.5..0.6 and turns ±4°
    cx = 100 + 22 * np.sin(2 * np.pi * k)
    cy = 80 + 14 * np.sin(2 * np.pi * 1.5 * k + 0.7)
    scale = 0.55 + 0.05 * np.cos(2 * np.pi * k)
    deg = 4 * np.sin(2 * np.pi * 2 * k)
    transforms = np.zeros((N, 2, 3), np.float32)
    valid = np.ones(N, bool)
    valid[list(INVALID)] = False
    crop_disc = _disc(S, PERSON_R * S)
    for i in range(N):
        if not valid[i]:
            continue                                    # no face: no crop, no matte, a zero transform
        t = _affine(scale[i], cx[i], cy[i], deg[i])
        transforms[i] = t
        crop = cv2.warpAffine(bg, t, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        crop = crop * (1 - crop_disc[..., None]) + np.array(PERSON, np.float32) * crop_disc[..., None]
        cv2.imwrite(str(track / "crops" / f"{i:06d}.png"), np.clip(crop + 0.5, 0, 255).astype(np.uint8)[..., ::-1])
        cv2.imwrite(str(track / "mattes" / f"{i:06d}.png"), np.round(crop_disc * 255).astype(np.uint8))
    np.savez(track / "tracking.npz", time=np.arange(N, dtype=np.float32) / 25, valid=valid,
             pose=np.zeros((N, 3), np.float32), expr=np.zeros((N, len(EXPRESSION_NAMES)), np.float32),
             landmarks=np.zeros((N, 478, 3), np.float32), transforms=transforms)
    (track / "tracking.json").write_text(json.dumps({"fps": 25, "frame_size": [W, H], "crop_size": S,
                                                     "expression_names": EXPRESSION_NAMES}))
    proj.update_record("ingest", status="done", run_id="ingest0", upstream={})
    proj.update_record("track", status="done", run_id="track0", upstream={"ingest": "ingest0"},
                       outputs={"tracking": "track/tracking.npz"})
    return proj, bg


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("export_scene") / "proj")[0]


@pytest.fixture
def opened(project, monkeypatch):
    """Patch `Avatar.open` (export opens the avatar with the config's detail / scene switches) to wrap
    the disc engine, and the render's person matte to the engine's disc; returns the avatars opened."""
    engine = DiscOnGreyEngine(TrackingData.from_project(project))
    avatars: list[Avatar] = []

    def open_(cls, project, engine_name=None, detail=True, flame_geometry=True, scene=True, out_size=None):
        av = cls(engine, project=project, detail=detail, flame_geometry=flame_geometry, scene=scene, out_size=out_size)
        avatars.append(av)
        return av

    monkeypatch.setattr(Avatar, "open", classmethod(open_))
    monkeypatch.setattr(ScenePlate, "person_matte", lambda self, image: _disc(image.shape[0], MATTE_R * image.shape[0]))
    return engine, avatars


def run_export(project, cfg, out) -> tuple[dict, np.ndarray]:
    res = run_to_end(export(project, cfg, out))
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == res["frames"]
    return res, np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in pngs])


def _background_error(frames: np.ndarray, trk: TrackingData, rows) -> np.ndarray:
    """Per frame: mean absolute error against the row's real crop (area-downscaled to the render size)
    over the pixels that are background both in the real crop and outside the render's person."""
    truth = trk.crops(rows, size=RENDER).astype(np.float32)
    real_bg = trk.mattes(rows, size=RENDER) < 0.01
    render_bg = _disc(RENDER, MATTE_R * RENDER) < 0.01
    mask = real_bg & render_bg[None]
    assert mask.mean() > 0.4
    err = np.abs(frames.astype(np.float32) - truth).mean(-1)
    return np.array([e[m].mean() for e, m in zip(err, mask)])


# ------------------------------------------------------------------ source=self: each frame where its head was

@pytest.mark.parametrize("frames, fps, batch", [("all", None, 3), ("heldout", None, 4), ("all", 12.5, 3)],
                         ids=["all", "heldout", "resampled"])
def test_self_export_places_each_frames_background_where_its_head_was(project, opened, tmp_path, frames, fps, batch):
    engine, avatars = opened
    trk = TrackingData.from_project(project)
    res, out = run_export(project, ExportConfig(source="self", frames=frames, fps=fps, batch=batch, detail=False),
                          tmp_path / "self")
    n_rows = {"all": N, "heldout": N - 34}[frames]
    rows = np.arange(N - n_rows, N)[:: 2 if fps else 1]
    assert res["frames"] == len(rows) == len(out) and out.shape[1:] == (RENDER, RENDER, 3)
    (avatar,) = avatars
    plate = avatar.scene_plate()
    assert isinstance(plate, ScenePlate)
    valid = trk.valid[rows]
    assert (~valid).sum() >= 1 and valid.sum() >= 5          # each case meets a frame without a face

    # the camera really moves: the tracked placements of these frames are far apart (crop px)
    shift = trk.transforms[rows[valid]][:, :, 2]
    assert np.ptp(shift, axis=0).max() > 5.0

    render = engine.render_controls(np.zeros((1, 2 + len(EXPRESSION_NAMES)), np.float32))
    at_median = plate.composite(render, None)[0]
    for i, r in enumerate(rows):
        # exactly the plate at this frame's own tracked transform (its row, not its index in the clip)
        held = r if trk.valid[r] else max(k for k in range(r) if trk.valid[k])   # no face: the last placement
        want = plate.composite(render, trk.transforms[held][None].astype(np.float64))[0]
        assert np.array_equal(out[i], want), f"frame {i} (row {r}) is not the plate at its own placement"

    # and that is the frame's real background: clearly nearer than the median placement or the engine's own
    own = _background_error(out[valid], trk, rows[valid])
    median = _background_error(np.repeat(at_median[None], valid.sum(), 0), trk, rows[valid])
    engine_own = _background_error(np.repeat(render, valid.sum(), 0), trk, rows[valid])
    assert own.mean() < 6.0, own
    assert own.mean() < 0.4 * median.mean(), (own.mean(), median.mean())
    assert own.mean() < 0.2 * engine_own.mean(), (own.mean(), engine_own.mean())
    assert (own < median).mean() > 0.8            # frame by frame, not only on average


def test_a_frame_without_a_face_keeps_the_last_placement(project, opened, tmp_path):
    engine, avatars = opened
    trk = TrackingData.from_project(project)
    r = INVALID[0]
    assert not trk.valid[r] and not trk.crop_path(r).exists()
    assert np.all(trk.transforms[r] == 0)                   # as the tracker stores a row without a face
    res, out = run_export(project, ExportConfig(source="self", frames="train", batch=4, detail=False),
                          tmp_path / "train")
    assert res["frames"] == 34
    plate = avatars[0].scene_plate()
    render = engine.render_controls(np.zeros((1, 2 + len(EXPRESSION_NAMES)), np.float32))
    default = plate.composite(render, None)[0]
    # as its controls hold the last valid frame's, its placement does (no jump of the background)
    last = plate.composite(render, trk.transforms[r - 1][None].astype(np.float64))[0]
    assert trk.valid[r - 1] and np.array_equal(out[r], last)
    assert not np.array_equal(last, default)
    # the stored (zero) transform would look elsewhere
    assert not np.array_equal(plate.composite(render, trk.transforms[r][None].astype(np.float64))[0], last)
    # its neighbours still get their own placements
    for n in (r - 1, r + 1):
        assert np.array_equal(out[n], plate.composite(render, trk.transforms[n][None].astype(np.float64))[0])


# ------------------------------------------------------------------ other sources, and the scene off

def test_other_sources_get_the_default_placement(project, opened, tmp_path):
    engine, avatars = opened
    res, out = run_export(project, ExportConfig(source="turntable", duration=0.4, fps=10, detail=False),
                          tmp_path / "turn")
    assert res["frames"] == 4
    plate = avatars[0].scene_plate()
    render = engine.render_controls(np.zeros((1, 2 + len(EXPRESSION_NAMES)), np.float32))
    default = plate.composite(render, None)[0]
    assert not np.array_equal(default, render[0])            # the plate does show
    assert all(np.array_equal(f, default) for f in out)


@pytest.mark.parametrize("source", ["self", "turntable"])
def test_scene_off_exports_the_engines_own_background(project, opened, tmp_path, source):
    engine, avatars = opened
    cfg = dict(source="self", frames="heldout") if source == "self" else dict(source="turntable", duration=0.4, fps=10)
    res_off, off = run_export(project, ExportConfig(**cfg, detail=False, scene=False), tmp_path / "off")
    res_on, on = run_export(project, ExportConfig(**cfg, detail=False), tmp_path / "on")
    assert [a.scene for a in avatars] == [False, True]
    assert avatars[0].scene_plate() is None
    render = engine.render_controls(np.zeros((len(off), 2 + len(EXPRESSION_NAMES)), np.float32))
    assert res_off["frames"] == res_on["frames"] == len(render) > 0
    assert np.array_equal(off, render)                       # exactly the engine's render
    assert np.abs(on.astype(int) - off.astype(int)).mean() > 10.0   # and the scene did change the background
