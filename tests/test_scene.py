"""The video's own background behind the avatar (`studio.scene`).

A synthetic clip: a fixed, smoothly textured background frame (200 x 160) and a magenta disc (the
"person") that moves over it. Each row's frame -> crop transform moves, scales and turns the crop a
little, as tracking does; its crop is the frame warped by that transform and its matte the disc
warped by it. The plate is built from the training rows and checked against the background a
held-out row's crop really shows, and against the frame area that no training crop saw.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import cv2
import numpy as np
import pytest

from studio import metrics
from studio.scene import SceneConfig, ScenePlate
from studio.tracking.data import EXPRESSION_NAMES, TrackingData

W, H, S = 200, 160, 64          # frame width and height, crop side
N_TRAIN = 24
HELD = N_TRAIN                  # held-out row inside the area the training crops saw
BEYOND = N_TRAIN + 1            # held-out row looking past the right edge of what they saw (and of the frame)
PERSON = (255, 0, 255)


def _background(seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: smooth random colour texture (σ 4 frame px), grey 128 ± 40."""
    noise = cv2.GaussianBlur(np.random.default_rng(seed).normal(0, 1, (H, W, 3)).astype(np.float32), (0, 0), 4.0)
    return np.clip(128 + noise / noise.std() * 40, 0, 255).astype(np.uint8)


def _affine(scale: float, cx: float, cy: float, deg: float = 0.0) -> np.ndarray:
    """(2, 3) frame -> crop: the frame point (cx, cy) to the crop's centre, `scale` crop px per frame px."""
    a = np.radians(deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    t = np.array([(S - 1) / 2, (S - 1) / 2]) - r @ [cx, cy]
    return np.hstack([r, t[:, None]])


def _frame_with_person(bg: np.ndarray, px: float, py: float, radius: float = 22.0) -> tuple[np.ndarray, np.ndarray]:
    """The frame with the disc at (px, py) and the disc's (H, W) float32 matte (anti-aliased edge)."""
    m = np.zeros((H, W), np.float32)
    cv2.circle(m, (int(round(px * 16)), int(round(py * 16))), int(round(radius * 16)), 1.0, -1,
               lineType=cv2.LINE_AA, shift=4)
    f = bg * (1 - m[..., None]) + np.array(PERSON, np.float32) * m[..., None]
    return np.clip(f + 0.5, 0, 255).astype(np.uint8), m


def _write_tracking(root, bg, transforms, people) -> TrackingData:
    """A `track` folder (crops, mattes, tracking.npz/json) of `bg` seen through `transforms` with the
    disc at `people` ((n, 2) frame px); returns it loaded."""
    (root / "crops").mkdir(parents=True)
    (root / "mattes").mkdir()
    n = len(transforms)
    for i, (t, (px, py)) in enumerate(zip(transforms, people)):
        frame, m = _frame_with_person(bg, px, py)
        crop = cv2.warpAffine(frame, t, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        matte = cv2.warpAffine(m, t, (S, S), flags=cv2.INTER_LINEAR)
        cv2.imwrite(str(root / "crops" / f"{i:06d}.png"), crop[..., ::-1])
        cv2.imwrite(str(root / "mattes" / f"{i:06d}.png"), np.round(matte * 255).astype(np.uint8))
    np.savez(root / "tracking.npz", time=np.arange(n, dtype=np.float32) / 25, valid=np.ones(n, bool),
             pose=np.zeros((n, 3), np.float32), expr=np.zeros((n, len(EXPRESSION_NAMES)), np.float32),
             landmarks=np.zeros((n, 478, 3), np.float32), transforms=np.asarray(transforms, np.float32))
    (root / "tracking.json").write_text(json.dumps({"fps": 25, "frame_size": [W, H], "crop_size": S,
                                                    "expression_names": EXPRESSION_NAMES}))
    return TrackingData.load(root)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(tracking, train rows, background frame): 24 training rows, then HELD and BEYOND."""
    rng = np.random.default_rng(1)
    bg = _background()
    transforms, people = [], []
    for _ in range(N_TRAIN):
        cx, cy = rng.uniform(70, 100), rng.uniform(62, 98)       # crops stay left of x = 170
        transforms.append(_affine(rng.uniform(0.5, 0.6), cx, cy, rng.uniform(-5, 5)))
        people.append((cx + rng.uniform(-12, 12), cy + rng.uniform(-10, 10)))
    transforms += [_affine(0.55, 85, 80, 2.0), _affine(0.55, 150, 80)]
    people += [(92, 75), (150, 80)]
    tracking = _write_tracking(tmp_path_factory.mktemp("scene") / "track", bg, transforms, people)
    return tracking, np.arange(N_TRAIN), bg


@pytest.fixture(scope="module")
def plate(clip):
    tracking, train, _ = clip
    p = ScenePlate.from_tracking(tracking, train)
    assert p is not None
    return p


def _true_background(bg: np.ndarray, t: np.ndarray, size: int = S) -> np.ndarray:
    return cv2.warpAffine(bg, np.asarray(t, np.float64), (size, size), flags=cv2.INTER_LINEAR).astype(np.float32)


def _frame_x(t: np.ndarray, size: int = S) -> np.ndarray:
    """(size, size): the frame x each crop pixel of `t` shows."""
    inv = cv2.invertAffineTransform(np.asarray(t, np.float64))
    yy, xx = np.mgrid[0:size, 0:size]
    return inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]


# ------------------------------------------------------------------ building and looking through the plate

def test_plate_shows_the_true_background_of_a_heldout_crop_without_the_person(clip, plate):
    tracking, train, bg = clip
    t = tracking.transforms[train].astype(np.float64)
    per_px = np.sqrt(np.abs(np.linalg.det(t[:, :, :2])))
    assert plate.scale == pytest.approx(min(1.0, float(np.median(per_px))))
    assert plate.color.shape == (round(H * plate.scale), round(W * plate.scale), 3)
    assert plate.weight.shape == plate.color.shape[:2] and plate.crop_size == S

    color, trust = plate.background(tracking.transforms[HELD], S)
    assert color.shape == (S, S, 3) and trust.shape == (S, S)
    assert color.dtype == np.float32 and trust.dtype == np.float32
    assert trust.min() >= 0.0 and trust.max() <= 1.0
    truth = _true_background(bg, tracking.transforms[HELD])
    background = (trust > 0.999) & (tracking.matte(HELD) < 0.01)
    assert background.mean() > 0.6, "the plate should fully trust most of the held-out crop's background"
    err = np.abs(color - truth).mean(-1)[background]
    assert err.mean() < 3.0, err.mean()
    # the discs of the training frames (magenta, far from any background colour) are left out
    ever_person = np.zeros((S, S), bool)              # held-out crop pixels some training frame had the person on
    held = np.vstack([tracking.transforms[HELD], [0, 0, 1]])
    for r in train:
        crop_to_held = (held @ np.linalg.inv(np.vstack([tracking.transforms[r], [0, 0, 1]])))[:2]
        ever_person |= cv2.warpAffine(tracking.matte(int(r)), crop_to_held, (S, S)) > 0.5
    assert (background & ever_person).sum() > 200, "the check should cover where training frames had the person"
    assert np.percentile(np.abs(color - truth).mean(-1)[background & ever_person], 99) < 10.0


def test_trust_is_zero_where_no_training_crop_saw_the_frame(clip, plate):
    tracking, train, _ = clip
    corners = np.array([[-0.5, -0.5], [S - 0.5, -0.5], [-0.5, S - 0.5], [S - 0.5, S - 0.5]])
    seen_right = max((corners @ cv2.invertAffineTransform(t.astype(np.float64))[:, :2].T
                      + cv2.invertAffineTransform(t.astype(np.float64))[:, 2])[:, 0].max()
                     for t in tracking.transforms[train])
    assert seen_right < 172
    _, trust = plate.background(tracking.transforms[BEYOND], S)
    fx = _frame_x(tracking.transforms[BEYOND])
    unseen = fx > seen_right + 4                      # a plate pixel's linear footprint
    assert unseen.mean() > 0.2 and (fx > W).any()     # beyond what the crops saw, and beyond the frame
    assert trust[unseen].max() == 0.0
    assert (trust[fx < seen_right - 25] > 0.999).mean() > 0.95


def test_placement_is_the_median_training_transform(clip, plate):
    tracking, train, _ = clip
    med = np.median(tracking.transforms[train].astype(np.float64), axis=0)
    assert np.allclose(plate.placement, med)
    a, ta = plate.background(None, S)
    b, tb = plate.background(med, S)
    assert np.array_equal(a, b) and np.array_equal(ta, tb)


def test_background_at_a_render_size_matches_the_area_downscaled_crop(clip, plate):
    tracking, _, bg = clip
    size = S // 2
    color, trust = plate.background(tracking.transforms[HELD], size)
    assert color.shape == (size, size, 3)
    truth = cv2.resize(_true_background(bg, tracking.transforms[HELD]), (size, size), interpolation=cv2.INTER_AREA)
    matte = cv2.resize(tracking.matte(HELD), (size, size), interpolation=cv2.INTER_AREA)
    background = (trust > 0.999) & (matte < 0.01)
    assert background.mean() > 0.5
    assert np.abs(color - truth).mean(-1)[background].mean() < 2.5


def test_crop_edges_do_not_darken_the_plate(tmp_path):
    flat = np.full((H, W, 3), 200, np.uint8)
    rng = np.random.default_rng(3)
    base = _affine(0.55, 90, 80)
    transforms = [base + [[0, 0, dx], [0, 0, dy]] for dx, dy in rng.uniform(-0.5, 0.5, (10, 2))]
    tracking = _write_tracking(tmp_path / "track", flat, transforms, [(-100, -100)] * 10)   # no person in view
    plate = ScenePlate.from_tracking(tracking, np.arange(10))
    color, trust = plate.background(base, S)
    assert (trust > 0.999).mean() > 0.95
    assert np.abs(color[trust > 0.999] - 200).max() < 2.0


# ------------------------------------------------------------------ compositing

def test_composite_puts_the_plate_behind_the_person_and_keeps_the_rest(clip, plate):
    tracking, _, _ = clip
    truth = tracking.crop(HELD)
    matte = tracking.matte(HELD)
    grey = np.full_like(truth, 128)
    render = np.clip(truth * matte[..., None] + grey * (1 - matte[..., None]) + 0.5, 0, 255).astype(np.uint8)
    t = tracking.transforms[HELD][None].astype(np.float64)
    out = plate.composite(render[None], t, mattes=matte[None])
    assert out.shape == (1, S, S, 3) and out.dtype == np.uint8
    assert metrics.psnr(out, truth[None]) > metrics.psnr(render[None], truth[None]) + 8.0
    person = matte >= 1.0
    assert person.sum() > 100 and np.array_equal(out[0][person], render[person])      # the person is untouched
    # no placement: the plate at the median training transform
    at_placement = plate.composite(render[None], plate.placement[None], mattes=matte[None])
    assert np.array_equal(plate.composite(render[None], None, mattes=matte[None]), at_placement)
    assert not np.array_equal(at_placement, out)

    # where the plate saw nothing, a render that looks nothing like the background around it stays as it
    # was (hair or a shoulder the matte missed); where the plate is trusted, the plate replaces it
    red = np.zeros((2, S, S, 3), np.uint8)
    red[..., 0] = 250
    beyond = np.repeat(tracking.transforms[BEYOND][None].astype(np.float64), 2, 0)
    out = plate.composite(red, beyond, mattes=np.zeros((2, S, S), np.float32))
    color, trust = plate.background(tracking.transforms[BEYOND], S)
    unseen = trust == 0
    assert unseen.sum() > 500 and np.array_equal(out[:, unseen], red[:, unseen])
    full = trust > 0.999
    assert full.sum() > 500 and np.abs(out[0][full].astype(np.float32) - color[full]).max() <= 1.0

    # a render there that looks like it (a pale ghost of the clip's heads) takes the background filled in
    # from around the hole; with `fill_gate` 0 it stays too
    fill = plate.filled_view(tracking.transforms[BEYOND], S)
    ghost = np.clip(fill + 10.0, 0, 255).astype(np.uint8)[None]
    out = plate.composite(ghost, beyond[:1], mattes=np.zeros((1, S, S), np.float32))
    assert np.abs(ghost[0][unseen].astype(np.float32) - fill[unseen]).mean() > 9.0
    assert np.abs(out[0][unseen].astype(np.float32) - fill[unseen]).mean() < 2.0
    assert np.abs(out[0][full].astype(np.float32) - color[full]).max() <= 1.0
    off = ScenePlate(plate.color, plate.weight, plate.scale, S, plate.placement,
                     dataclasses.replace(SceneConfig(), fill_gate=0.0), plate.spread)
    assert np.array_equal(off.composite(ghost, beyond[:1], mattes=np.zeros((1, S, S), np.float32))[0][unseen],
                          ghost[0][unseen])


def test_the_fill_continues_the_background_into_the_plates_holes(clip, plate):
    tracking, _, _ = clip
    fill = plate.filled
    assert fill.shape == plate.color.shape and np.isfinite(fill).all()
    # where many frames saw the background, away from the edge of what they saw, the fill is the plate
    w = plate.weight
    inner = cv2.erode((w >= 3 * plate.config.min_frames).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    own = plate.color / np.maximum(w, 1e-3)[..., None]
    assert inner.sum() > 1000 and np.abs(fill[inner] - own[inner]).max() < 1.0
    # in the holes it continues the background around them: near the plate's own colours at the hole's edge
    hole = w < 1e-3
    assert hole.sum() > 500
    edge = cv2.dilate(hole.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & (w >= plate.config.min_frames)
    ring = cv2.dilate(edge.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & hole
    assert abs(fill[ring].mean() - own[edge].mean()) < 12.0
    # past the frame's edge, the fill's edge repeats (as the tracker's crops repeat the frame's)
    view = plate.filled_view(tracking.transforms[BEYOND], S)
    assert np.isfinite(view).all() and view.min() >= 0 and view.max() <= 255


def test_the_fill_leaves_out_what_few_frames_saw_at_the_edge_of_a_hole():
    """A grey wall seen by 5 frames on the left, a hole on the right, and between them a dark strip seen
    by one frame only (a strand of hair the mattes missed): the hole is filled with the wall's grey."""
    size = 96
    color = np.zeros((size, size, 3), np.float32)
    weight = np.zeros((size, size), np.float32)
    color[:, :40], weight[:, :40] = 100.0 * 5, 5.0
    color[:, 40:46], weight[:, 40:46] = 10.0 * 1, 1.0
    plate = ScenePlate(color, weight, 1.0, size, np.eye(2, 3), SceneConfig())
    fill = plate.filled
    assert np.abs(fill[:, 60:] - 100.0).max() < 2.0
    assert np.abs(fill[:, :30] - 100.0).max() < 1e-3
    # the same plate filled from every pixel it has would carry the strip's dark into the hole
    from studio.scene import _push_pull
    assert _push_pull(color, weight, plate.config.min_frames)[:, 50:60].mean() < 95.0


def test_push_pull_fills_a_gap_between_two_colours_with_colours_between_them():
    from studio.scene import _push_pull

    color = np.zeros((64, 64, 3), np.float32)
    weight = np.zeros((64, 64), np.float32)
    color[:, :16], weight[:, :16] = 50.0 * 4, 4.0
    color[:, 48:], weight[:, 48:] = 200.0 * 4, 4.0
    out = _push_pull(color, weight, 3.0)
    assert np.allclose(out[:, :12], 50.0, atol=1e-3) and np.allclose(out[:, 52:], 200.0, atol=1e-3)
    gap = out[:, 16:48, 0].mean(0)
    assert gap.min() >= 50.0 - 1e-3 and gap.max() <= 200.0 + 1e-3
    assert gap[:8].mean() < 110.0 < 140.0 < gap[-8:].mean()        # each side keeps its colour near it
    assert np.all(np.diff(gap) > -1.0)                               # rising from one side to the other
    assert np.array_equal(_push_pull(np.zeros_like(color), np.zeros_like(weight), 3.0), np.zeros_like(color))


def test_from_tracking_is_none_without_rows_mattes_transforms_or_background(clip, tmp_path):
    tracking, train, _ = clip
    assert ScenePlate.from_tracking(tracking, []) is None
    assert ScenePlate.from_tracking(dataclasses.replace(tracking, transforms=None), train) is None
    no_mattes = tmp_path / "no_mattes"
    shutil.copytree(tracking.root / "crops", no_mattes / "crops")
    assert ScenePlate.from_tracking(dataclasses.replace(tracking, root=no_mattes), train) is None
    all_person = tmp_path / "all_person"
    shutil.copytree(tracking.root / "crops", all_person / "crops")
    (all_person / "mattes").mkdir()
    for r in train:
        cv2.imwrite(str(all_person / "mattes" / f"{r:06d}.png"), np.full((S, S), 255, np.uint8))
    assert ScenePlate.from_tracking(dataclasses.replace(tracking, root=all_person), train) is None
    # the clip itself does build one (so the Nones above are about what was taken away)
    assert ScenePlate.from_tracking(tracking, train) is not None


def test_from_project_builds_the_plate_of_the_training_rows_only(clip, tmp_path):
    from studio.project import Project

    tracking, _, _ = clip
    proj = Project.create(tmp_path / "p")
    shutil.copytree(tracking.root, proj.stage_dir("track"), dirs_exist_ok=True)
    proj.update_record("track", status="done", run_id="track0", outputs={"tracking": "track/tracking.npz"})
    train, held = TrackingData.from_project(proj).split()
    assert HELD in held and BEYOND in held
    plate = ScenePlate.from_project(proj)
    expected = ScenePlate.from_tracking(tracking, train)
    assert np.allclose(plate.color, expected.color) and np.allclose(plate.weight, expected.weight)
    right = lambda p: p.weight[:, int(np.ceil(180 * p.scale)):]   # frame x >= 180: only BEYOND saw it  # noqa: E731
    assert right(plate).max() == 0.0
    assert right(ScenePlate.from_tracking(tracking, np.arange(BEYOND + 1))).max() > 0.5


def test_from_project_is_none_for_an_untracked_project(tmp_path):
    from studio.project import Project

    assert ScenePlate.from_project(Project.create(tmp_path / "untracked")) is None


# ------------------------------------------------------------------ the default matte: selfie segmentation

def _flat_plate(rgb, size: int = 128) -> ScenePlate:
    """A plate of one colour over the whole frame, seen by 5 frames, placed at the identity."""
    color = np.broadcast_to(np.asarray(rgb, np.float32) * 5, (size, size, 3)).copy()
    return ScenePlate(color, np.full((size, size), 5, np.float32), 1.0, size, np.eye(2, 3), SceneConfig())


def test_default_composite_segments_and_replaces_a_person_free_image():
    pytest.importorskip("mediapipe", reason="the default person matte is mediapipe's selfie segmentation")
    plate = _flat_plate((20, 200, 60))
    try:
        img = np.full((1, 128, 128, 3), 128, np.uint8)        # no person in it
        assert plate.person_matte(img[0]).max() < 0.05
        out = plate.composite(img)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - [20, 200, 60]).max() <= 1
    finally:
        plate.close()
    assert plate._segmenter is None


def test_default_composite_keeps_a_real_person(tmp_path):
    pytest.importorskip("mediapipe", reason="the default person matte is mediapipe's selfie segmentation")
    from tests.conftest import shared_video

    cap = cv2.VideoCapture(str(shared_video("subject_turns_d3.mp4")))
    ok, frame = cap.read()
    cap.release()
    assert ok
    img = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (128, 128), interpolation=cv2.INTER_AREA)
    blue = np.array([0, 0, 255])
    plate = _flat_plate(blue)
    try:
        out = plate.composite(img[None])[0].astype(int)
    finally:
        plate.close()
    face = (slice(50, 90), slice(45, 85))                    # nose, mouth, cheeks
    assert np.abs(out[face] - img[face]).mean() < 3.0
    wall = (slice(0, 12), slice(0, 12))                      # the top-left corner is the wall behind her
    assert np.abs(out[wall] - blue).mean() < 10.0


# ------------------------------------------------------------------ the avatar and `avatar-studio eval`

def test_avatar_and_eval_put_the_videos_background_behind_the_person(tmp_path, monkeypatch):
    """The tiny project of tests/test_evaluation.py, with disc mattes, and an engine that draws the
    right person on a wrong (flat grey) background. The person matte of a render is the disc (no
    mediapipe): the report scores the avatar with the video's background (clearly nearer the real
    crops) and with the engine's own (the same figures as a run with the scene off)."""
    import studio.tracking.tracker as tracker
    from studio import evaluation
    from studio.avatar import Avatar
    from test_evaluation import CROP, RENDER, BlurredTruthEngine, make_project

    def disc(size: int, radius: float) -> np.ndarray:
        yy, xx = np.mgrid[0:size, 0:size]
        return np.clip(radius + 0.5 - np.hypot(yy - (size - 1) / 2, xx - (size - 1) / 2), 0, 1).astype(np.float32)

    class GreyBackground(BlurredTruthEngine):
        def render_controls(self, controls, edits=None):
            imgs = super().render_controls(controls)
            keep = disc(self.size, 24 / CROP * self.size)[None, ..., None]
            return np.clip(imgs * keep + 90 * (1 - keep) + 0.5, 0, 255).astype(np.uint8)

    proj = make_project(tmp_path / "proj")
    matte = np.round(disc(CROP, 22) * 255).astype(np.uint8)       # the 'face' disc of every crop
    for p in (proj.stage_dir("track") / "mattes").glob("*.png"):
        cv2.imwrite(str(p), matte)
    trk = TrackingData.from_project(proj)
    engine = GreyBackground(trk)
    monkeypatch.setattr(ScenePlate, "person_matte",
                        lambda self, image: disc(image.shape[0], 24 / CROP * image.shape[0]))
    monkeypatch.setattr(Avatar, "open", classmethod(
        lambda cls, project, engine_name=None, detail=True, flame_geometry=True, scene=True, out_size=None:
        cls(engine, project=project, detail=detail, flame_geometry=flame_geometry, scene=scene, out_size=out_size)))
    monkeypatch.setattr(metrics, "arcface_weights", lambda: None)
    monkeypatch.setattr(tracker, "track_images", lambda images, tracking: [None] * len(images))

    assert Avatar(engine).scene_plate() is None                             # no project
    assert Avatar(engine, project=proj, scene=False).scene_plate() is None
    assert isinstance(Avatar(engine, project=proj).scene_plate(), ScenePlate)
    _, held = trk.split()
    c = trk.controls(held[:1])
    corner = (slice(0, 4), slice(0, 4))
    shown = Avatar(engine, project=proj, detail=False).render_batch(c)[0][0]
    assert np.abs(shown[corner].astype(int) - (200, 190, 170)).max() <= 2            # the crops' background
    assert np.array_equal(Avatar(engine, project=proj, detail=False, scene=False).render_batch(c)[0][0][corner],
                          np.full((4, 4, 3), 90, np.uint8))

    on = evaluation.evaluate(proj, sweep_points=3, latency_frames=2)
    off = evaluation.evaluate(proj, sweep_points=3, latency_frames=2, scene=False)
    assert on["scene"] is True and off["scene"] is False
    assert "heldout_own_background" in on and "heldout_own_background" not in off
    assert on["heldout_own_background"]["psnr"] == pytest.approx(off["heldout"]["psnr"], abs=1e-3)
    assert on["heldout"]["psnr"] > off["heldout"]["psnr"] + 3.0
    assert on["heldout"]["psnr_clamped"] > off["heldout"]["psnr_clamped"] + 3.0
    assert "background" in on["heldout_engine"]["note"]
    assert "engine's own background" in evaluation.format_table(on)
    alone = evaluation.evaluate(proj, sweep_points=3, latency_frames=2, detail=False)
    assert alone["scene"] is True and "heldout_own_background" not in alone      # the engine's render is it
    assert alone["heldout_engine"]["psnr"] == pytest.approx(off["heldout_engine"]["psnr"], abs=1e-3)
    assert alone["heldout"]["psnr"] > alone["heldout_engine"]["psnr"] + 3.0
    assert RENDER < CROP                                                        # placed at a render size


def test_a_scene_that_changes_between_frames_is_trusted_less(clip, plate, tmp_path):
    """Frames that disagree about the background (a walking camera, a door, a screen) leave a smeared
    plate: its trust falls with the colour's spread over the frames. The still clip's plate agrees with
    itself to within resampling and keeps its full trust."""
    tracking, train, _ = clip
    transforms = [tracking.transforms[int(r)].astype(np.float64) for r in train]
    people = [(10.0, 10.0)] * len(train)   # the person far off: every crop pixel is background
    root = tmp_path / "changing"
    (root / "crops").mkdir(parents=True)
    (root / "mattes").mkdir()
    for i, t in enumerate(transforms):         # another background in every frame
        frame, m = _frame_with_person(_background(seed=100 + i), *people[i])
        cv2.imwrite(str(root / "crops" / f"{i:06d}.png"),
                    cv2.warpAffine(frame, t, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[..., ::-1])
        cv2.imwrite(str(root / "mattes" / f"{i:06d}.png"),
                    np.round(cv2.warpAffine(m, t, (S, S)) * 255).astype(np.uint8))
    n = len(transforms)
    np.savez(root / "tracking.npz", time=np.arange(n, dtype=np.float32) / 25, valid=np.ones(n, bool),
             pose=np.zeros((n, 3), np.float32), expr=np.zeros((n, len(EXPRESSION_NAMES)), np.float32),
             landmarks=np.zeros((n, 478, 3), np.float32), transforms=np.asarray(transforms, np.float32))
    (root / "tracking.json").write_text(json.dumps({"fps": 25, "frame_size": [W, H], "crop_size": S,
                                                    "expression_names": EXPRESSION_NAMES}))
    changing = ScenePlate.from_tracking(TrackingData.load(root), np.arange(n))
    t = tracking.transforms[HELD]
    seen = plate.background(t, S)[1] > 0.99
    assert seen.mean() > 0.5
    assert np.median(plate.spread[plate.weight > 3]) < 10.0   # resampling at other scales and turns
    assert np.median(changing.spread[changing.weight > 3]) > 25.0
    trust_changing = changing.background(t, S)[1]
    assert trust_changing[seen].mean() < 0.6
    # without the spread the same plate would be fully trusted there
    blind = ScenePlate(changing.color, changing.weight, changing.scale, S, changing.placement)
    assert blind.background(t, S)[1][seen].mean() > 0.95


# ------------------------------------------------------------------ black bars baked into the video

BAR = 40     # frame columns 0..39 are a black bar in every frame


def test_black_bars_lie_over_the_avatar_where_the_crop_shows_them(tmp_path):
    """A clip padded with a black bar down its left side: the tracker's picture box leaves the bar out, the
    crops that reach it show it (and, past the frame's edge, repeat it), and the composite lays it over a
    render that drew the person and the background there, as the video's crop does; a video without bars
    is left as it was."""
    from studio.tracking.data import picture_box

    bg = _background(5)
    bg[:, :BAR] = 0
    rng = np.random.default_rng(2)
    transforms = [_affine(0.55, rng.uniform(70, 100), rng.uniform(62, 98)) for _ in range(N_TRAIN)]
    transforms.append(_affine(0.55, 50, 80))            # a held-out crop reaching over the bar and past the frame
    people = [(85.0, 80.0)] * N_TRAIN + [(70.0, 80.0)]
    brightest = np.max([_frame_with_person(bg, px, py)[0].max(-1) for px, py in people], axis=0)
    assert picture_box(brightest) == (BAR, 0, W, H)
    tracking = _write_tracking(tmp_path / "track", bg, transforms, people)
    tracking.meta["picture"] = [BAR, 0, W, H]
    plate = ScenePlate.from_tracking(tracking, np.arange(N_TRAIN))
    assert plate.picture == (BAR, 0.0, W, H) and plate.frame_size == (W, H)

    held = N_TRAIN
    truth = tracking.crop(held).astype(np.float32)
    fx = _frame_x(tracking.transforms[held])
    on_bar = fx < BAR - 1                                # inside the bar, or past the frame's edge beside it
    assert on_bar.mean() > 0.2 and (fx < 0).any()
    assert truth[on_bar].max() < 2.0                     # the crop shows the bar there
    masks = tracking.picture_masks([held])
    assert masks.shape == (1, S, S)
    assert masks[0][on_bar].max() == 0.0 and masks[0][fx > BAR + 1].min() == 1.0

    # the avatar draws the frame as if it had no bar: the composite lays the bar back over it
    clean, m = _frame_with_person(_background(5), 70.0, 80.0)
    render = cv2.warpAffine(clean, tracking.transforms[held].astype(np.float64), (S, S), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    matte = cv2.warpAffine(m, tracking.transforms[held].astype(np.float64), (S, S), flags=cv2.INTER_LINEAR)
    t = tracking.transforms[held][None].astype(np.float64)
    out = plate.composite(render[None], t, mattes=matte[None])[0].astype(np.float32)
    assert render[on_bar].mean() > 60                    # the render drew something there
    assert out[on_bar].max() < 3.0
    inside = fx > BAR + 2
    assert np.abs(out - render)[inside & (matte >= 1.0)].max() == 0     # the person in the picture is untouched
    without = ScenePlate.from_tracking(tracking, np.arange(N_TRAIN), dataclasses.replace(SceneConfig(), frame_edge=False))
    assert without.composite(render[None], t, mattes=matte[None])[0][on_bar].mean() > 60

    # no bars: nothing is cut, and the masks are all ones
    tracking.meta["picture"] = None
    assert tracking.picture == (0.0, 0.0, W, H)
    assert tracking.picture_masks([held]).min() == 1.0
    assert ScenePlate.from_tracking(tracking, np.arange(N_TRAIN)).picture_view(tracking.transforms[held], S) is None


def test_picture_box_finds_bars_on_any_side_and_not_in_a_dark_clip():
    from studio.tracking.data import picture_box

    b = np.full((90, 160), 120.0)
    assert picture_box(b) == (0, 0, 160, 90)
    b[:12], b[-9:], b[:, :3], b[:, -20:] = 10.0, 0.0, 23.0, 5.0
    assert picture_box(b) == (3, 12, 140, 81)
    b[40, 1] = 200.0                                     # a bright pixel in column 1: the bar ends before it
    assert picture_box(b)[0] == 1
    assert picture_box(np.full((90, 160), 12.0)) is None  # a dark clip is not all bars


def test_nothing_is_filled_where_no_pixel_was_seen_clearly():
    """Every plate pixel seen by one frame only (fewer than `min_frames`): no fill, and a render keeps its
    own background wherever the plate is not trusted, as before the fill."""
    size = 48
    color = np.full((size, size, 3), 100.0, np.float32)
    weight = np.ones((size, size), np.float32)
    weight[:, 30:] = 0.0
    plate = ScenePlate(color, weight, 1.0, size, np.eye(2, 3), SceneConfig())
    assert plate.filled is None and plate.filled_view(None, size) is None
    render = np.full((1, size, size, 3), 104, np.uint8)      # near the plate's colour: the gate would take it
    out = plate.composite(render, mattes=np.zeros((1, size, size), np.float32))
    assert np.array_equal(out[0][:, 34:], render[0][:, 34:])


def test_the_videos_black_bars_lend_nothing_to_the_fill():
    """A pillarboxed video: the plate saw the bar (black) on the left and a grey wall; the hole beside the
    bar is filled with the wall's grey, not darkened by the bar."""
    size = 96
    color = np.zeros((size, size, 3), np.float32)
    weight = np.full((size, size), 5.0, np.float32)
    color[:, 12:] = 120.0 * 5
    weight[:, 24:60] = 0.0                                    # the hole: behind the person all clip long
    picture = (12.0, 0.0, float(size), float(size))
    with_bars = ScenePlate(color, weight, 1.0, size, np.eye(2, 3), SceneConfig(), picture=picture,
                           frame_size=(size, size))
    assert np.abs(with_bars.filled[:, 24:60] - 120.0).max() < 1.0
    unaware = ScenePlate(color, weight, 1.0, size, np.eye(2, 3), SceneConfig())
    assert unaware.filled[:, 24:36].mean() < 110.0            # the bar's black would bleed in
