"""Detail from the video (`studio.detail`): which frames lend detail, that the warp moves their
detail onto the render, that an edit's own detail is kept, and how `Avatar` uses it."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from studio import metrics
from studio.avatar import Avatar
from studio.detail import DetailConfig, VideoDetail, edit_keep_mask

S = 128


def _textured(seed: int, shift: int = 0) -> np.ndarray:
    """A 'face': a disc of fine random texture with two dark eyes, moved `shift` px to the right."""
    rng = np.random.default_rng(seed)
    img = np.full((S, S, 3), 180, np.float32)
    yy, xx = np.mgrid[0:S, 0:S]
    disc = np.hypot(yy - S / 2, xx - S / 2) < 40
    grain = cv2.GaussianBlur(rng.normal(0, 1, (S, S)).astype(np.float32), (0, 0), 0.8)
    img[disc] = 150 + 90 * grain[disc][:, None]
    for ex in (-15, 15):
        cv2.circle(img, (S // 2 + ex, S // 2 - 10), 6, (30, 30, 30), -1)
    img = cv2.warpAffine(img, np.float32([[1, 0, shift], [0, 1, 0]]), (S, S), borderMode=cv2.BORDER_REPLICATE)
    return np.clip(img, 0, 255).astype(np.uint8)


def _square_faces(n: int) -> np.ndarray:
    """(n, S, S) face masks: the square round each `_textured` frame's disc."""
    face = np.zeros((n, S, S), np.float32)
    face[:, 24:104, 24:104] = 1.0
    return face


INNER = (slice(40, 88), slice(40, 88))
"""The middle of the `_textured` face, well inside `_square_faces`."""


def _high(img: np.ndarray) -> np.ndarray:
    """The grey image minus its σ 2 px blur: the fine texture a warp moves."""
    f = img.astype(np.float32).mean(-1)
    return f - cv2.GaussianBlur(f, (0, 0), 2.0)


def _frames(n: int = 6):
    crops = np.stack([_textured(i) for i in range(n)])
    controls = np.zeros((n, 4), np.float32)
    controls[:, 0] = np.linspace(-30, 30, n)     # yaw
    controls[:, 2] = np.linspace(0, 1, n)        # an expression
    return crops, controls


def test_neighbours_by_controls_nearest_first_weights_sum_to_one():
    crops, controls = _frames()
    vd = VideoDetail(crops, controls)
    idx, w = vd.neighbours(controls[[4, 1]] + np.array([1.0, 0, 0.01, 0], np.float32))
    assert idx[:, 0].tolist() == [4, 1]
    assert idx.shape == (2, 3) and np.allclose(w.sum(1), 1) and (w[:, 0] > w[:, 1]).all()
    one = VideoDetail(crops, controls, DetailConfig(neighbours=1))
    assert one.neighbours(controls[[2]])[0].tolist() == [[2]]
    with pytest.raises(ValueError):
        vd.neighbours(np.zeros((1, 3), np.float32))          # wrong number of controls


def test_detail_of_the_frame_is_moved_onto_a_blurred_shifted_render():
    """The render is frame 3 moved 3 px and blurred away (what a soft avatar shows); the frames
    lend their texture, warped onto the render: the result is far sharper and nearer the truth."""
    crops, controls = _frames()
    truth = _textured(3, shift=3)
    render = cv2.GaussianBlur(truth, (0, 0), 3.0)
    vd = VideoDetail(crops, controls, DetailConfig(neighbours=1))
    out = vd.apply(render[None], controls[[3]])[0]
    mask = np.zeros((S, S), bool)
    mask[30:98, 30:98] = True
    sharp_render = metrics.sharpness_ratio_each(render[None], truth[None], mask[None])[0]
    sharp_out = metrics.sharpness_ratio_each(out[None], truth[None], mask[None])[0]
    assert sharp_render < 0.1 and 0.5 < sharp_out < 1.5
    assert metrics.psnr(out[None], truth[None]) > metrics.psnr(render[None], truth[None]) + 1.0
    # the warp follows the render: without it (frame pasted as is) the eyes land 3 px off
    flat = render.astype(np.float32)
    unwarped = np.clip(cv2.GaussianBlur(flat, (0, 0), vd._band) + crops[3] - cv2.GaussianBlur(
        crops[3].astype(np.float32), (0, 0), vd._band), 0, 255).astype(np.uint8)
    assert metrics.psnr(out[None], truth[None]) > metrics.psnr(unwarped[None], truth[None])


def test_lanczos_sampling_keeps_more_of_the_frames_fine_detail_than_bicubic():
    """The render sits half a pixel off the frame, so every pixel samples the frame between pixels:
    bicubic softens its finest texture there, the Lanczos kernel (the default) much less."""
    crops, controls = _frames()
    shifted = cv2.warpAffine(crops[3].astype(np.float32), np.float32([[1, 0, 0.5], [0, 1, 0.5]]), (S, S),
                             flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    render = np.clip(cv2.GaussianBlur(shifted, (0, 0), 3.0), 0, 255).astype(np.uint8)
    mask = np.zeros((S, S), bool)
    mask[36:92, 36:92] = True

    def fine_energy(img):
        return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)[mask].var())

    kept = {}
    for sampling in ("cubic", "lanczos"):
        vd = VideoDetail(crops, controls, DetailConfig(neighbours=1, sampling=sampling))
        kept[sampling] = fine_energy(vd.apply(render[None], controls[[3]])[0]) / fine_energy(crops[3])
    assert DetailConfig().sampling == "lanczos"
    assert kept["lanczos"] > kept["cubic"] + 0.05, kept
    assert kept["lanczos"] < 1.3, kept                # sharper, not ringing


def test_by_image_when_there_are_no_controls():
    crops = np.stack([_textured(i, shift=s) for i, s in enumerate((-12, 0, 12))])
    vd = VideoDetail(crops, None)
    assert not vd.has_controls
    idx, _ = vd.neighbours_by_image(np.stack([cv2.GaussianBlur(crops[i], (0, 0), 2.0) for i in (2, 0)]))
    assert idx[:, 0].tolist() == [2, 0]
    out = vd.apply(cv2.GaussianBlur(crops[2], (0, 0), 3.0)[None])
    assert out.shape == (1, S, S, 3) and out.dtype == np.uint8


def test_edit_keep_mask_marks_only_what_the_edit_changed():
    a = np.full((1, S, S, 3), 120, np.uint8)
    b = a.copy()
    b[0, :, : S // 2] = 200                                # the edit recolours the left half
    keep = edit_keep_mask(b, a, S)
    assert keep.shape == (1, S, S)
    assert keep[0, S // 2, 10] == pytest.approx(1.0) and keep[0, S // 2, S - 10] == pytest.approx(0.0)
    # where kept, the render's own detail is added: an edit's sharp edge survives
    crops, controls = _frames()
    edited = cv2.GaussianBlur(crops[2], (0, 0), 3.0)
    cv2.line(edited, (10, 100), (118, 100), (0, 0, 255), 1)     # the edit's own thin line
    vd = VideoDetail(crops, controls, DetailConfig(neighbours=1))
    full = np.ones((1, S, S), np.float32)
    with_keep = vd.apply(edited[None], controls[[2]], keep=full)[0]
    without = vd.apply(edited[None], controls[[2]])[0]
    assert with_keep[100, 20:108, 2].mean() > without[100, 20:108, 2].mean() + 20


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        VideoDetail(np.zeros((0, S, S, 3), np.uint8), None)
    crops, controls = _frames()
    with pytest.raises(ValueError):
        VideoDetail(crops, controls[:3])
    with pytest.raises(ValueError):
        VideoDetail(crops, controls).apply(np.zeros((1, 64, 64, 3), np.uint8), controls[:1])
    with pytest.raises(ValueError, match="sampling"):
        VideoDetail(crops, controls, DetailConfig(sampling="nearest"))


class _Engine:
    name, size = "toy", S
    control_names = ["yaw", "pitch", "e1", "e2"]
    ranges = {n: (-40.0, 40.0) for n in control_names}

    def render_controls(self, controls, edits=None):
        return np.stack([cv2.GaussianBlur(_textured(1), (0, 0), 3.0)] * len(controls))


def test_avatar_uses_video_detail_only_with_a_project_and_when_on(tmp_path, monkeypatch):
    crops, controls = _frames()
    engine = _Engine()
    c = np.zeros((1, 4), np.float32)
    plain = Avatar(engine)                                 # no project: the engine's render as it is
    assert plain.video_detail() is None
    assert np.array_equal(plain.render_batch(c)[0], engine.render_controls(c))

    monkeypatch.setattr(VideoDetail, "from_project",
                        classmethod(lambda cls, project, size, controls="named", config=None: cls(crops, _frames()[1])))
    project = object()
    on = Avatar(engine, project=project, scene=False)   # the scene has its own tests
    off = Avatar(engine, project=project, detail=False, scene=False)
    assert off.video_detail() is None and np.array_equal(off.render_batch(c)[0], engine.render_controls(c))
    shown = on.render_batch(c)[0]
    assert not np.array_equal(shown, engine.render_controls(c))
    assert cv2.Laplacian(cv2.cvtColor(shown[0], cv2.COLOR_RGB2GRAY), cv2.CV_32F).var() > \
        5 * cv2.Laplacian(cv2.cvtColor(engine.render_controls(c)[0], cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()
    assert np.array_equal(on.render(yaw=0.0).image, shown[0])


def test_a_larger_out_size_takes_the_frames_detail_at_their_own_resolution(monkeypatch):
    """`out_size` 256 over an engine rendering 128: the render is upsampled and the frames (here 256 px with
    grain finer than a 128 px image holds) lend their detail at 256, so the image holds far more fine detail
    than the 128 px avatar blown up."""
    def grain(seed):
        rng = np.random.default_rng(seed)
        g = cv2.GaussianBlur(rng.normal(0, 1, (256, 256)).astype(np.float32), (0, 0), 0.7)
        return np.clip(150 + 80 * g, 0, 255).astype(np.uint8)[..., None].repeat(3, -1)

    big = np.stack([grain(i) for i in range(6)])
    controls = _frames()[1]
    sizes = []

    def from_project(cls, project, size, **_):
        sizes.append(size)
        return cls(np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in big]), controls)

    monkeypatch.setattr(VideoDetail, "from_project", classmethod(from_project))
    engine = _Engine()
    c = np.zeros((1, 4), np.float32)
    small = Avatar(engine, project=object(), scene=False)
    large = Avatar(engine, project=object(), scene=False, out_size=256)
    a, b = small.render_batch(c)[0][0], large.render_batch(c)[0][0]
    assert a.shape == (S, S, 3) and b.shape == (256, 256, 3) and large.size == 256 and sizes == [S, 256]

    def fine(img):
        return cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()

    assert fine(b) > 3 * fine(cv2.resize(a, (256, 256), interpolation=cv2.INTER_LANCZOS4))
    # the engine alone, and an avatar with detail off, are the render upsampled
    assert large.engine_renders(c).shape == (1, 256, 256, 3)
    off = Avatar(engine, project=object(), detail=False, scene=False, out_size=256)
    assert np.array_equal(off.render_batch(c)[0], large.engine_renders(c))


def test_open_refuses_an_out_size_the_frames_cannot_serve(tmp_path, monkeypatch):
    import json

    from studio.engines import ENGINES
    from studio.errors import ProjectError
    from studio.project import Project

    import dataclasses

    import studio.avatar as avatar_mod
    import studio.engines as engines_mod

    proj = Project.create(tmp_path / "p")
    monkeypatch.setattr(avatar_mod, "trained_engines", lambda project: ["pvp"])
    monkeypatch.setitem(engines_mod.ENGINES, "pvp", dataclasses.replace(ENGINES["pvp"], loader=lambda project: _Engine()))
    with pytest.raises(ProjectError, match="tracked crops.*missing"):     # no tracking: nothing past the engine's
        Avatar.open(proj, "pvp", out_size=256)
    (proj.root / "track").mkdir()
    (proj.root / "track" / "tracking.json").write_text(json.dumps({"crop_size": 256}))
    assert Avatar.open(proj, "pvp", out_size=256).size == 256
    assert Avatar.open(proj, "pvp", out_size=S).size == S and Avatar.open(proj, "pvp").size == S
    for bad in (512, 64):
        with pytest.raises(ProjectError, match=f"at {bad} px") as err:
            Avatar.open(proj, "pvp", out_size=bad)
        assert "128–256" in err.value.hint


def test_each_engine_brings_its_own_detail_config(tmp_path, monkeypatch):
    """The NeRF engine's render draws the eyes, so its detail matches the flow more finely and applies half of it
    inside the face (the frames' own eyes and mouth, whole); the StyleGAN engine's applies part of the flow inside the
    face, as much as its render's own sharpness says, and its frames give the middle band over a wider region
    round the eyes and mouth. `Avatar` builds the detail with its engine's config."""
    import studio.detail as detail_mod
    from studio.engines import ENGINES
    from studio.project import Project

    nerf, pvp = ENGINES["nerf"].detail_config(), ENGINES["pvp"].detail_config()
    assert pvp == DetailConfig(face_flow=0.5, face_flow_sharpness=0.6, face_flow_floor=0.1, feature_grow=20.0,
                                band_sigma=24.0)
    assert nerf == DetailConfig(face_flow=0.5, flow_smooth=4.0, flow_sigma=1.0)
    assert nerf.mid_share == DetailConfig().mid_share and "arcface" in ENGINES["nerf"].model_files
    seen = []
    monkeypatch.setattr(detail_mod.VideoDetail, "from_project",
                        classmethod(lambda cls, project, size, controls="named", config=DetailConfig(): seen.append(config)))
    for name in ("nerf", "pvp"):
        Avatar(_Engine(), ENGINES[name], Project.create(tmp_path / name)).video_detail()
    assert seen == [nerf, pvp]


def test_from_project_is_none_without_tracked_crops(tmp_path):
    from studio.project import Project

    proj = Project.create(tmp_path / "p")
    assert VideoDetail.from_project(proj, 64) is None


def test_emphasis_finds_frames_that_show_the_pushed_slider():
    """Frames: rest (all expressions 0) with small variations, and one frame with the jaw wide open
    but another expression moved too. A query with only the jaw pushed to its end: the plain
    distance prefers a rest frame, the emphasised one the open-jaw frame."""
    from studio.detail import ControlIndex

    rng = np.random.default_rng(0)
    c = np.zeros((40, 6))
    c[:, 2:] = rng.normal(0, 0.1, (40, 4))
    c[7, 2], c[7, 3] = 1.5, 1.2                   # jaw open (and a second control moved) in frame 7
    q = np.zeros((1, 6))
    q[0, 2] = 1.5
    plain, pushed = ControlIndex(c), ControlIndex(c)
    assert plain.distances(q).argmin() != 7
    assert pushed.distances(q, emphasis=1.5).argmin() == 7
    # without emphasis it is the plain squared distance; at rest emphasis changes little
    assert np.allclose(plain.distances(c[:3]), ControlIndex(c).distances(c[:3], emphasis=0.0))
    assert ControlIndex(c).distances(np.zeros((1, 6)), emphasis=1.5).argmin() == \
        ControlIndex(c).distances(np.zeros((1, 6))).argmin()


def test_emphasis_on_the_frames_too_keeps_away_frames_with_strong_expressions_not_asked_for():
    """A query opens the jaw wide, the rest at rest. Frame 7 opens it as wide but also shuts the eyes;
    frame 9 opens it a little less and does nothing else. The query's emphasis alone weighs the jaw so
    much that frame 7 wins; counting the frames' own far-out controls (`frames_too`) keeps frame 7's
    shut eyes in the distance and picks frame 9. Never nearer than the query-only emphasis."""
    from studio.detail import ControlIndex, DetailConfig

    rng = np.random.default_rng(0)
    c = np.zeros((40, 6))
    c[:, 2:] = rng.normal(0, 0.1, (40, 4))
    c[7, 2], c[7, 4] = 1.5, 1.5
    c[9, 2] = 1.1
    q = np.zeros((1, 6))
    q[0, 2] = 1.5
    index = ControlIndex(c)
    assert index.distances(q, emphasis=1.5).argmin() == 7
    assert index.distances(q, emphasis=1.5, frames_too=True).argmin() == 9
    both, alone = index.distances(c[:5], 1.5, True), index.distances(c[:5], 1.5)
    assert np.all(both >= alone - 1e-9)
    assert np.allclose(index.distances(q, 0.0, True), index.distances(q))   # no emphasis: plain distance
    assert DetailConfig().emphasis_frames is False


def test_a_further_warp_is_folded_into_the_frames_single_resampling():
    """FLAME's geometry (`fields`): the result equals the finished image warped afterwards, but the
    frames' detail is resampled once, so it stays sharper than warping the finished image."""
    from studio.flame.warp import remap_by

    crops, controls = _frames()
    truth = _textured(3, shift=3)
    render = cv2.GaussianBlur(truth, (0, 0), 3.0)
    vd = VideoDetail(crops, controls, DetailConfig(neighbours=1))
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    bump = np.exp(-((xx - 64) ** 2 + (yy - 54) ** 2) / (2 * 14.0 ** 2))
    field = np.stack([-1.7 * bump, 0.8 * bump], -1).astype(np.float32)   # eyes region moves 1.7 px right
    once = vd.apply(render[None], controls[[3]], fields=[field])[0]
    twice = remap_by(vd.apply(render[None], controls[[3]])[0], field)
    mask = np.zeros((S, S), bool)
    mask[30:98, 30:98] = True
    diff = np.abs(once.astype(np.float32) - twice.astype(np.float32))[mask].mean()
    assert diff < 2.5, diff                          # the same picture, moved the same way
    moved = np.abs(once.astype(np.float32) - vd.apply(render[None], controls[[3]])[0].astype(np.float32))[mask].mean()
    assert moved > 2 * diff, (moved, diff)           # and the warp did move it
    s_once, s_twice = metrics.sharpness_ratio_each(np.stack([once, twice]), np.stack([truth, truth]),
                                                   np.stack([mask, mask]))
    assert s_once > s_twice, (s_once, s_twice)
    none = vd.apply(render[None], controls[[3]], fields=[None])[0]
    assert np.array_equal(none, vd.apply(render[None], controls[[3]])[0])


def test_frames_turned_the_other_way_do_not_lend_detail():
    """Many expression controls against two of pose: a render turned right whose expression matches a
    frame turned left takes its detail from frames turned right (within `pose_window`)."""
    n = 12
    crops = np.stack([_textured(i) for i in range(n)])
    controls = np.zeros((n, 2 + 20), np.float32)
    controls[:, 0] = np.linspace(-30, 30, n)
    rng = np.random.default_rng(0)
    controls[:, 2:] = rng.normal(0, 1, (n, 20))
    q = controls[[0]].copy()
    q[0, 0] = 28.0                                       # frame 0's expression, head turned the other way
    free = VideoDetail(crops, controls, DetailConfig(pose_window=0.0))
    assert free.neighbours(q)[0][0, 0] == 0, "by control distance alone, the left-turned frame wins"
    idx, _ = VideoDetail(crops, controls, DetailConfig(pose_window=6.0)).neighbours(q)
    # two frames are within 6° (24.5°, 30°); a third is needed, so the next nearest in pose (19.1°)
    assert sorted(idx[0].tolist()) == [9, 10, 11], controls[idx[0], 0]
    default = VideoDetail(crops, controls).neighbours(q)[0]          # 15°
    assert (controls[default[0], 0] >= 28.0 - 15.0).all(), controls[default[0], 0]
    far = q.copy()
    far[0, 0] = 80.0                                     # beyond every frame: the ones nearest in pose
    idx, _ = VideoDetail(crops, controls, DetailConfig(pose_window=6.0)).neighbours(far)
    assert sorted(idx[0].tolist()) == [9, 10, 11]


def test_a_frame_sampled_past_its_edge_lends_no_mirrored_detail():
    """Where the flow reaches past a frame's edge the frame holds nothing: that part lends no detail
    (mirroring the frame there, as first built, put a mirrored earring by the border of d3's
    turned-head renders). A bright line 4 px from the right edge, a flow 8 px to the right: the line
    shows where the flow puts it (8 px left of it), and no copy of it appears where the mirror would
    have put one."""
    S = 128
    frame = np.full((S, S, 3), 100, np.uint8)
    frame[:, S - 4] = 250
    vd = VideoDetail(frame[None], None)

    class Shift:   # the flow the DIS estimator would find for a render 8 px to the left of the frame
        @staticmethod
        def calc(a, b, _):
            f = np.zeros((S, S, 2), np.float32)
            f[..., 0] = 8.0
            return f

    vd._flow = Shift()
    render = np.full((1, S, S, 3), 100, np.uint8)
    warped, inside = vd.warp(render[0], frame)
    assert inside[:, :S - 9].min() == 1.0 and inside[:, S - 7:].max() == 0.0
    assert warped.shape == (S, S, 3)
    out = vd.apply(render)[0].astype(np.float32).mean(-1)
    line, mirror = out[:, S - 12].mean(), out[:, S - 5].mean()   # the mirror: column S − 4 seen at S − 5
    assert line > 150, line
    assert abs(mirror - 100) < 3, mirror


def test_frames_lend_detail_only_where_they_show_the_person():
    """A frame whose person (a textured disc, matte 1) stands before a textured background (matte 0):
    the background's texture moves with every head shift in a real clip, so only the person's
    detail is lent; the background stays the render's own (here a sharp edge of its own survives).
    Without the matte the frame's background texture is pasted in."""
    rng = np.random.default_rng(7)
    frame = _textured(0).astype(np.float32)
    yy, xx = np.mgrid[0:S, 0:S]
    person = (np.hypot(yy - S / 2, xx - S / 2) < 40).astype(np.float32)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (S, S)).astype(np.float32), (0, 0), 0.8)
    frame = np.clip(frame + (1 - person)[..., None] * 60 * grain[..., None], 0, 255).astype(np.uint8)
    render = cv2.GaussianBlur(frame, (0, 0), 3.0)
    render[:, :6] = 20                                 # the render's own sharp edge, in the background
    controls = np.zeros((1, 4), np.float32)
    cfg = DetailConfig(neighbours=1, band_sigma=5.0, matte_grow=0.0)
    out = VideoDetail(frame[None], controls, cfg, mattes=person[None]).apply(render[None], controls)[0]
    pasted = VideoDetail(frame[None], controls, DetailConfig(neighbours=1, band_sigma=5.0, person_only=False),
                         mattes=person[None]).apply(render[None], controls)[0]
    grown = VideoDetail(frame[None], controls, DetailConfig(neighbours=1, band_sigma=5.0, matte_grow=8.0),
                        mattes=person[None]).apply(render[None], controls)[0]
    rad = np.hypot(yy - S / 2, xx - S / 2)
    inner = rad < 30
    far = (rad > 60) & (xx > 12) & (xx < S - 8) & (yy > 8) & (yy < S - 8)
    ring = (rad > 42) & (rad < 45)                     # just outside the person: the grown matte lends there

    def lap(img, m):
        return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_32F)[m].var())

    assert lap(out, inner) > 0.5 * lap(frame, inner)                # the person's detail is lent
    assert np.abs(out[far].astype(int) - render[far].astype(int)).max() <= 2   # the background is the render's
    assert lap(pasted, far) > 5 * lap(out, far)                        # without the matte: pasted
    assert np.abs(out[:, :4].astype(int) - 20).max() <= 2              # the render's own edge survives
    assert lap(grown, ring) > 3 * lap(out, ring)                       # the matte grown by 8 px lends there
    assert np.abs(grown[far].astype(int) - render[far].astype(int)).max() <= 2   # and still not far out
    with pytest.raises(ValueError):
        VideoDetail(frame[None], controls, cfg, mattes=person[None, :64])


def _blobs(seed: int, sigma: float = 4.0, amplitude: float = 25.0) -> np.ndarray:
    """A pattern of the detail band's middle (structure of a few px, none finer than a pixel)."""
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.normal(0, 1, (S, S)).astype(np.float32), (0, 0), sigma)
    return (amplitude * g / g.std())[..., None]


def _mid(img: np.ndarray) -> np.ndarray:
    x = np.asarray(img, np.float32).mean(-1)
    return cv2.GaussianBlur(x, (0, 0), 1.0) - cv2.GaussianBlur(x, (0, 0), 12.0)


def _corr(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    return float(np.corrcoef(a[m], b[m])[0, 1])


def test_mid_band_is_shared_with_the_render_outside_the_features_and_the_frames_elsewhere():
    """The render is the frame without its finest texture and with a middle-band pattern of its own.
    Outside the eyes and mouth (feature mask 0) the frames give the finest band and `mid_share` of the
    middle band, the render the rest: at 0 the render's pattern is kept whole, at 1 (as before) it is
    replaced by the frame's middle band. Where the feature mask is 1 the frame's middle band is kept
    whatever `mid_share` says. The fine band is the frame's in every case."""
    frame = _textured(0)
    pattern = _blobs(1)
    render = np.clip(cv2.GaussianBlur(frame, (0, 0), 1.5).astype(np.float32) + pattern, 0, 255).astype(np.uint8)
    controls = np.zeros((1, 4), np.float32)
    zero, one = np.zeros((1, S, S), np.float32), np.ones((1, S, S), np.float32)

    class Still:   # the frame is in place: the band logic alone is looked at, not the flow
        @staticmethod
        def calc(a, b, _):
            return np.zeros((S, S, 2), np.float32)

    def run(share, features, feature_share=1.0):
        cfg = DetailConfig(neighbours=1, mid_share=share, feature_share=feature_share)
        vd = VideoDetail(frame[None], controls, cfg, features=features)
        vd._flow = Still()
        return vd.apply(render[None], controls)[0]

    m = np.zeros((S, S), bool)
    m[30:98, 30:98] = True
    p = _mid(np.repeat(pattern, 3, -1) + 128)
    own, half, frames_only = run(0.0, zero), run(0.5, zero), run(1.0, zero)
    d = _mid(own) - _mid(frames_only)                                 # what keeping the render's band adds
    assert _corr(d, p, m) > 0.8                                       # the render's own pattern
    h = _mid(half) - _mid(frames_only)
    assert _corr(h, d, m) > 0.95 and 0.4 < float(np.std(h[m]) / np.std(d[m])) < 0.6   # half of it
    assert np.array_equal(run(0.0, one), frames_only)                # in the features: the frame's
    # ... unless `feature_share` says otherwise (the NeRF engine's 0.5): there the render's band counts too
    assert np.array_equal(run(0.5, one, feature_share=0.5), half)
    assert np.array_equal(run(1.0, one, feature_share=0.0), own)     # split on with mid_share 1 as well
    fine = lambda img: np.asarray(img, np.float32).mean(-1) - cv2.GaussianBlur(   # noqa: E731
        np.asarray(img, np.float32).mean(-1), (0, 0), 1.0)
    for out in (own, half, frames_only):                             # the finest band is the frame's
        assert _corr(fine(out), fine(frame), m) > 0.9
        assert metrics.sharpness_ratio_each(out[None], frame[None], m[None])[0] > 0.4
    assert metrics.sharpness_ratio_each(render[None], frame[None], m[None])[0] < 0.15
    with pytest.raises(ValueError):
        VideoDetail(frame[None], controls, features=zero[:, :64])


def test_feature_masks_cover_eyes_and_mouth_not_the_cheeks():
    from studio.detail import feature_masks
    from studio.tracking.geometry import EYE_R_REGION, FEATURE_REGIONS, MOUTH_REGION

    lm = np.full((2, 478, 2), 64.0, np.float32)
    centres = {0: (44, 50), 1: (84, 50), 2: (64, 96)}              # eye, eye, mouth (px)
    for k, idx in enumerate(FEATURE_REGIONS):
        ang = np.linspace(0, 2 * np.pi, len(idx), endpoint=False)
        lm[0, list(idx)] = np.stack([centres[k][0] + 8 * np.cos(ang), centres[k][1] + 4 * np.sin(ang)], 1)
    lm[1] = np.nan                                                    # a frame the mesh missed
    m = feature_masks(lm, S, grow=4.0)
    assert m.shape == (2, S, S) and m.dtype == np.float32
    assert m[0, 50, 44] > 0.95 and m[0, 50, 84] > 0.95 and m[0, 96, 64] > 0.95
    assert m[0, 75, 30] < 0.05 and m[0, 10, 64] < 0.05               # cheek and forehead
    assert m[1].min() == 1.0                                          # no landmarks: the frame lends as before
    assert len(EYE_R_REGION) and len(MOUTH_REGION)


def test_from_project_gives_each_frame_its_eyes_and_mouth(tracked_d3):
    """On the real tracked clip: every training frame has a feature mask, over its own tracked eyes
    and mouth and off the face's outline."""
    from studio.tracking.data import TrackingData
    from studio.tracking.geometry import EYE_R_OUTER, MOUTH_R

    vd = VideoDetail.from_project(tracked_d3, 64)
    assert vd is not None and vd.features is not None and vd.features.shape == vd.crops.shape[:3]
    trk = TrackingData.from_project(tracked_d3)
    train, _ = trk.split()
    for i in (0, len(train) // 2, len(train) - 1):
        lm = trk.crop_landmarks(int(train[i])) * (64 / trk.crop_size)
        for p in (EYE_R_OUTER, MOUTH_R):
            x, y = np.round(lm[p]).astype(int)
            assert vd.features[i, y, x] > 0.5, (i, p)
        x, y = np.round(lm[234]).astype(int)                          # the face's edge by the ear
        assert vd.features[i, y, min(x + 1, 63)] < 0.5, i
    assert VideoDetail.from_project(tracked_d3, 64, config=DetailConfig(mid_share=1.0)).features is None
    assert vd.faces is not None and vd.landmarks is not None          # the default warps the face's shape
    bare = VideoDetail.from_project(tracked_d3, 64, config=DetailConfig(shape_share=0.0))
    assert bare.faces is None and bare.landmarks is None              # ... off: the whole flow, no masks
    faced = VideoDetail.from_project(tracked_d3, 64, config=DetailConfig(face_flow=0.5, shape_share=0.0))
    assert faced.faces is not None and faced.faces.shape == vd.crops.shape[:3]
    for i in (0, len(train) - 1):
        lm = trk.crop_landmarks(int(train[i])) * (64 / trk.crop_size)
        x, y = np.round(lm[4]).astype(int)                            # the nose tip: inside the face
        assert faced.faces[i, y, x] > 0.9, i
        assert faced.faces[i, 1, 1] < 0.05 and faced.faces[i, 1, 62] < 0.05, i   # the crop's top corners


def test_face_hull_masks_cover_the_mesh_and_nothing_without_landmarks():
    from studio.detail import face_hull_masks

    lm = np.full((2, 4, 2), np.nan, np.float32)
    lm[0] = [[40, 30], [88, 30], [88, 100], [40, 100]]
    m = face_hull_masks(lm, S, erode=0.0, feather=0.0)
    assert m.shape == (2, S, S) and m[0, 64, 64] == 1.0 and m[0, 64, 20] == 0.0 and m[0, 10, 64] == 0.0
    assert m[1].max() == 0.0                                          # no landmarks: the flow applies in full
    eroded = face_hull_masks(lm, S, erode=6.0, feather=2.0)
    assert eroded[0, 64, 64] > 0.99 and eroded[0, 64, 42] < 0.05 < m[0, 64, 42]


def test_inside_the_face_only_face_flow_of_the_flow_to_the_render_applies():
    """The render is the frame's face moved 3 px and blurred (a soft render whose shapes are off). With
    the whole flow the frame's eyes follow the render; with `face_flow` 0 over a face mask they stay
    where the frame has them, and the flow still applies outside the mask."""
    crops, controls = _frames()
    frame = crops[3]
    render = cv2.GaussianBlur(_textured(3, shift=3), (0, 0), 3.0)
    face = _square_faces(len(crops))                                  # round the disc of each frame's 'face'
    full = VideoDetail(crops, controls, DetailConfig(neighbours=1))
    kept = VideoDetail(crops, controls, DetailConfig(neighbours=1, face_flow=0.0), faces=face)
    assert kept.faces is not None and full.faces is None

    def agree(a, b, sl):
        a, b = _high(a)[sl].ravel(), _high(b)[sl].ravel()
        return float(np.corrcoef(a, b)[0, 1])

    moved = _textured(3, shift=3)
    inner = INNER
    out_full, out_kept = full.apply(render[None], controls[[3]])[0], kept.apply(render[None], controls[[3]])[0]
    assert agree(out_full, moved, inner) > agree(out_full, frame, inner) + 0.2       # followed the render
    assert agree(out_kept, frame, inner) > agree(out_kept, moved, inner) + 0.2       # stayed in place
    with pytest.raises(ValueError):
        VideoDetail(crops, controls, DetailConfig(face_flow=0.0), faces=face[:, :64, :64])


def test_the_face_follows_a_sharp_render_and_not_a_blur_with_face_flow_sharpness():
    """With `face_flow_sharpness` the share of the flow inside the face is set per render by the render's own
    fine detail against its nearest frame's: a render as sharp as the frame is followed in full, a heavy
    blur hardly at all (its frame's eyes stay where the frame has them)."""
    crops, controls = _frames()
    face = _square_faces(len(crops))
    vd = VideoDetail(crops, controls, DetailConfig(neighbours=1, face_flow=0.5, face_flow_sharpness=0.5), faces=face)
    moved = _textured(3, shift=3)
    blurred = cv2.GaussianBlur(moved, (0, 0), 3.0)
    assert vd.face_flow_for(moved, 3) == 1.0                    # as sharp as the frame (ratio 1 > 0.5)
    soft = vd.face_flow_for(blurred, 3)
    assert soft is not None and 0.0 <= soft < 0.1
    half = metrics.laplacian_energy(moved, face[3] > 0.5)
    assert vd.face_flow_for(cv2.GaussianBlur(moved, (0, 0), 0.6), 3) == pytest.approx(
        min(1.0, metrics.laplacian_energy(cv2.GaussianBlur(moved, (0, 0), 0.6), face[3] > 0.5) / half / 0.5), rel=0.05)
    plain = VideoDetail(crops, controls, DetailConfig(neighbours=1, face_flow=0.5), faces=face)
    assert plain.face_flow_for(moved, 3) is None                # off: the config's face_flow

    def high(img):
        return _high(img)[INNER].ravel()

    out = vd.apply(blurred[None], controls[[3]])[0]
    assert np.corrcoef(high(out), high(crops[3]))[0, 1] > np.corrcoef(high(out), high(moved))[0, 1] + 0.2
    assert DetailConfig(face_flow_sharpness=0.4, shape_share=0.0).needs_faces
    assert not DetailConfig(shape_share=0.0).needs_faces and DetailConfig().needs_faces


def test_a_blurred_render_under_the_floor_gets_none_of_the_flow_inside_the_face():
    """`face_flow_floor`: the share rises from 0 at that much of the frame's fine detail to 1 at
    `face_flow_sharpness`, linearly; under the floor (a blur) the frame's face is not pulled toward it."""
    crops, controls = _frames()
    face = _square_faces(len(crops))
    moved = _textured(3, shift=3)
    ratio = {sig: metrics.laplacian_energy(cv2.GaussianBlur(moved, (0, 0), sig), face[3] > 0.5)
             / metrics.laplacian_energy(crops[3], face[3] > 0.5) for sig in (0.5, 0.7, 3.0)}
    assert ratio[3.0] < 0.1 < ratio[0.7] < ratio[0.5] < 0.6, ratio
    floor = VideoDetail(crops, controls, DetailConfig(neighbours=1, face_flow=0.5, face_flow_sharpness=0.6,
                                                      face_flow_floor=0.1), faces=face)
    linear = VideoDetail(crops, controls, DetailConfig(neighbours=1, face_flow=0.5, face_flow_sharpness=0.6),
                         faces=face)
    blurred = cv2.GaussianBlur(moved, (0, 0), 3.0)
    assert floor.face_flow_for(blurred, 3) == 0.0 < linear.face_flow_for(blurred, 3)
    for sig in (0.5, 0.7):
        img = cv2.GaussianBlur(moved, (0, 0), sig)
        assert floor.face_flow_for(img, 3) == pytest.approx((ratio[sig] - 0.1) / 0.5, rel=1e-4)
        assert linear.face_flow_for(img, 3) == pytest.approx(ratio[sig] / 0.6, rel=1e-4)
    assert floor.face_flow_for(moved, 3) == 1.0
    # none of the flow inside the face: the blurred render's output keeps its frame's texture in place there
    def hi(img):
        return _high(img)[INNER].ravel()

    a = floor.apply(blurred[None], controls[[3]])[0]
    b = linear.apply(blurred[None], controls[[3]])[0]
    assert np.corrcoef(hi(a), hi(crops[3]))[0, 1] >= np.corrcoef(hi(b), hi(crops[3]))[0, 1]


def test_face_hull_masks_grow_when_erode_is_negative():
    from studio.detail import face_hull_masks

    lm = np.float32([[[40, 30], [88, 30], [88, 100], [40, 100]]])
    bare = face_hull_masks(lm, S, erode=0.0, feather=0.0)
    grown = face_hull_masks(lm, S, erode=-6.0, feather=0.0)
    assert bare[0, 64, 36] == 0.0 and grown[0, 64, 36] == 1.0 and grown[0, 64, 30] == 0.0
    assert grown[0, 64, 64] == 1.0 and grown.sum() > bare.sum()


def test_outside_the_face_only_a_share_of_the_frames_finest_band_is_lent():
    """The render is the frame blurred (σ 3): outside a face mask, `outside_fine_share` 0 leaves out the
    frame's finest band (σ < 1 px) while the coarser detail still comes; inside it the finest band is
    the frame's in full, as it is everywhere with share 1."""
    crops, controls = _frames()
    frame = crops[3]
    render = cv2.GaussianBlur(frame, (0, 0), 3.0)
    wide = np.zeros((len(crops), S, S), np.float32)
    wide[:, :, :S // 2] = 1.0                                        # the 'face': the left half
    cfg = DetailConfig(neighbours=1, mid_share=1.0, outside_fine_share=0.0)
    cut = VideoDetail(crops, controls, cfg, wide_faces=wide)
    full = VideoDetail(crops, controls, DetailConfig(neighbours=1, mid_share=1.0, outside_fine_share=1.0), wide_faces=wide)
    assert cut.wide_faces is not None and VideoDetail(crops, controls, cfg).wide_faces is None

    def fine(img):
        f = img.astype(np.float32).mean(-1)
        return f - cv2.GaussianBlur(f, (0, 0), 1.0)

    def mid(img):
        f = img.astype(np.float32).mean(-1)
        return cv2.GaussianBlur(f, (0, 0), 1.0) - cv2.GaussianBlur(f, (0, 0), 6.0)

    left, right = (slice(34, 94), slice(30, 56)), (slice(34, 94), slice(72, 98))   # inside the disc, off the seam
    a, b, c = cut.apply(render[None], controls[[3]])[0], full.apply(render[None], controls[[3]])[0], frame
    energy = lambda img, sl: float((fine(img)[sl] ** 2).mean())          # noqa: E731
    assert energy(a, left) > 0.8 * energy(c, left) and energy(b, right) > 0.8 * energy(c, right)
    assert energy(a, right) < 0.3 * energy(c, right)                    # the finest band left out there
    corr = np.corrcoef(mid(a)[right].ravel(), mid(c)[right].ravel())[0, 1]
    assert corr > 0.9                                                   # the coarser detail still lent
    with pytest.raises(ValueError):
        VideoDetail(crops, controls, cfg, wide_faces=wide[:, :64, :64])


def test_from_project_grows_each_frames_face_for_the_finest_band(tracked_d3):
    from studio.tracking.data import TrackingData

    vd = VideoDetail.from_project(tracked_d3, 64)
    assert vd is not None and vd.wide_faces is not None and vd.wide_faces.shape == vd.crops.shape[:3]
    assert VideoDetail.from_project(tracked_d3, 64, config=DetailConfig(outside_fine_share=1.0)).wide_faces is None
    trk = TrackingData.from_project(tracked_d3)
    train, _ = trk.split()
    for i in (0, len(train) - 1):
        lm = trk.crop_landmarks(int(train[i])) * (64 / trk.crop_size)
        x, y = np.round(lm[234]).astype(int)                          # the face's edge by the ear: kept whole
        assert vd.wide_faces[i, y, x] > 0.9, i
        assert vd.wide_faces[i, 1, 1] < 0.05 and vd.wide_faces[i, 1, 62] < 0.05, i


# ----------------------------------------------------------------------------- the face shape the controls predict
def test_shape_model_learns_how_the_controls_move_the_mesh():
    """Landmarks that move linearly with the controls (plus tracking jitter) are predicted to within the
    jitter, frames without a mesh are left out of the fit, and bad shapes are refused."""
    from studio.detail import ShapeModel

    rng = np.random.default_rng(0)
    n, p = 60, 5
    controls = rng.normal(0, 1, (n, 3))
    base = rng.uniform(30, 90, (p, 2))
    motion = rng.normal(0, 2, (3, p, 2))                              # px per unit of each control
    lms = base + np.einsum("nc,cpk->npk", controls, motion) + rng.normal(0, 0.2, (n, p, 2))
    lms[7] = np.nan                                                   # a frame the tracker lost
    model = ShapeModel(controls, lms, ridge=1.0)
    query = np.array([[1.5, -0.5, 0.0], [0.0, 0.0, 2.0]])
    want = base + np.einsum("nc,cpk->npk", query, motion)
    got = model.predict(query)
    assert got.shape == (2, p, 2) and np.abs(got - want).max() < 0.5
    with pytest.raises(ValueError):
        model.predict(np.zeros((1, 2)))
    with pytest.raises(ValueError):
        ShapeModel(controls[:1], lms[:1])                             # one frame: nothing to learn
    with pytest.raises(ValueError):
        ShapeModel(controls, lms[:, :, :1])


def test_shape_field_moves_the_points_and_leaves_the_border():
    """The backward offsets at each target point reach back to its source point (a patch of points
    shifted 4 px right samples 4 px to the left), fall to 0 at the image's border, and stop at `cap`."""
    from studio.detail import shape_field

    yy, xx = np.mgrid[44:85:8, 44:85:8]
    src = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)
    f = shape_field(src, src + [4.0, 0.0], S, smooth=0.0, cap=0.0)
    assert f.shape == (S, S, 2) and f.dtype == np.float32
    assert f[64, 68, 0] == pytest.approx(-4.0, abs=0.2) and abs(f[64, 68, 1]) < 0.2
    assert np.abs(f[0]).max() < 1e-3 and np.abs(f[:, -1]).max() < 1e-3
    capped = shape_field(src, src + [4.0, 0.0], S, smooth=2.0, cap=1.5)
    assert np.linalg.norm(capped, axis=-1).max() <= 1.5 + 1e-4


def _dotted(x: float) -> np.ndarray:
    """A textured 'face' with one dark dot (a mouth corner) centred at column `x`, row 80."""
    img = _textured(0).astype(np.float32)
    yy, xx = np.mgrid[0:S, 0:S]
    img[np.hypot(yy - 80, xx - x) < 4] = 20
    return img.astype(np.uint8)


def _dot_x(img: np.ndarray) -> float:
    band = img[72:89, 40:100].astype(np.float32).mean(-1)
    w = np.clip(60 - band, 0, None)
    return 40 + float((w.sum(0) * np.arange(w.shape[1])).sum() / w.sum())


def test_a_frame_is_moved_toward_the_shape_the_renders_controls_predict():
    """Frames whose dot sits at 50 + 10·c px for an expression control c; the render asks for c = 1.6, past
    the last frame (c = 1, dot at 60), and is a blur the flow cannot lock onto. The mesh: a ring round the
    face and the dot's outline. With `shape_share` s the frame's dot moves s · 6 px toward where the mesh
    model puts it (66); with 0 it stays at 60."""
    cs = np.linspace(0, 1, 6)
    crops = np.stack([_dotted(50 + 10 * c) for c in cs])
    controls = np.zeros((6, 3), np.float32)
    controls[:, 2] = cs
    ring = np.stack([[64 + 30 * np.cos(a), 64 + 30 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)])
    mouth = np.stack([[7 * np.cos(a), 7 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)] + [[0, 0]])
    lms = np.stack([np.concatenate([ring, mouth + [50 + 10 * c, 80.0]]) for c in cs]).astype(np.float32)
    face = np.stack([cv2.GaussianBlur(cv2.fillConvexPoly(np.zeros((S, S), np.float32), ring.astype(np.int32), 1.0),
                                      (0, 0), 2.0)] * 6)
    query = np.array([[0.0, 0.0, 1.6]], np.float32)
    render = cv2.GaussianBlur(crops[-1], (0, 0), 6.0)[None]
    x = {}
    for share in (0.0, 0.5, 1.0):
        vd = VideoDetail(crops, controls, DetailConfig(neighbours=1, face_flow=0.0, shape_share=share, shape_cap=20.0, shape_ridge=0.01),
                         faces=face, landmarks=lms)
        assert (vd.landmarks is None) == (share == 0.0)
        x[share] = _dot_x(vd.apply(render, query)[0])
    assert x[0.0] == pytest.approx(60.0, abs=0.7)
    assert x[0.5] == pytest.approx(63.0, abs=1.0) and x[1.0] == pytest.approx(66.0, abs=1.2)
    # the shape the frame's own controls predict: no move
    same = VideoDetail(crops, controls, DetailConfig(neighbours=1, face_flow=0.0, shape_share=1.0), faces=face, landmarks=lms)
    assert _dot_x(same.apply(render, controls[[-1]])[0]) == pytest.approx(60.0, abs=0.7)
    with pytest.raises(ValueError):
        VideoDetail(crops, controls, DetailConfig(shape_share=0.5), faces=face, landmarks=lms[:, :, :1])


def test_shape_warp_keeps_a_bounded_number_of_lattices_and_skips_a_frame_without_a_mesh(monkeypatch):
    import studio.detail.video_detail as detail   # the module whose `VideoDetail` reads it

    monkeypatch.setattr(detail, "LATTICES_KEPT", 2)
    crops, controls = _frames()
    rng = np.random.default_rng(1)
    lms = rng.uniform(30, 100, (len(crops), 20, 2)).astype(np.float32)
    lms[5] = np.nan                                                   # the tracker lost the face there
    face = np.ones((len(crops), S, S), np.float32)
    vd = VideoDetail(crops, controls, DetailConfig(shape_share=0.5), faces=face, landmarks=lms)
    wanted = vd._shape.predict(controls[[0]] + 0.5)[0]
    for j in range(5):
        assert vd.shape_field_for(j, wanted).shape == (S, S, 2)
    assert list(vd._lattices) == [3, 4]                                 # the last two used
    assert vd.shape_field_for(5, wanted) is None
    assert vd.apply(crops[[5]], controls[[5]]).shape == (1, S, S, 3)  # that frame still lends, unwarped


# ------------------------------------------------------------------ frames that look like the person
def test_frame_atypicality_singles_out_the_frame_unlike_the_rest():
    from studio.detail import frame_atypicality

    rng = np.random.default_rng(0)
    base = rng.normal(size=16)
    e = base[None] + 0.05 * rng.normal(size=(10, 16))
    e[7] = rng.normal(size=16)                                   # another face (or a blur, a hand over it)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    z = frame_atypicality(e)
    assert z.shape == (10,) and int(np.argmax(z)) == 7 and z[7] > 2.0
    assert abs(float(np.median(z))) < 1e-9
    assert np.array_equal(frame_atypicality(np.tile(e[:1], (4, 1))), np.zeros(4))   # all alike: no preference
    with pytest.raises(ValueError):
        frame_atypicality(np.zeros((0, 16)))


def test_frames_that_look_like_the_person_are_preferred_among_near_ones():
    """Frames 2 and 3 are about as near the query; frame 2 is a little nearer but looks least like the
    rest: with `typical_weight` frame 3 lends the most detail, without it frame 2 (as before)."""
    crops, controls = _frames()
    controls[3] = controls[2] + np.array([0, 0, 0.0022, 0], np.float32)
    query = controls[[2]] + np.array([0, 0, 0.001, 0], np.float32)
    rng = np.random.default_rng(1)
    e = np.tile(rng.normal(size=(1, 8)), (len(crops), 1)) + 0.01 * rng.normal(size=(len(crops), 8))
    e[2] = rng.normal(size=8)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    plain = VideoDetail(crops, controls, embeddings=e)                          # the default: off
    assert plain.atypicality is None and plain.neighbours(query)[0][0, 0] == 2
    vd = VideoDetail(crops, controls, DetailConfig(typical_weight=0.3), embeddings=e)
    assert vd.atypicality is not None and int(np.argmax(vd.atypicality)) == 2
    idx, w = vd.neighbours(query)
    assert idx[0, 0] == 3 and np.isclose(w.sum(), 1.0)
    no_arcface = VideoDetail(crops, controls, DetailConfig(typical_weight=0.3))  # no embeddings: by controls alone
    assert no_arcface.atypicality is None and no_arcface.neighbours(query)[0][0, 0] == 2
    with pytest.raises(ValueError):
        VideoDetail(crops, controls, DetailConfig(typical_weight=0.3), embeddings=e[:3])


def test_frame_embeddings_are_kept_in_the_project_under_a_key(monkeypatch, tmp_path):
    """Computed once with the ArcFace file and kept (atomically) in the project; other frames or another
    ArcFace file compute them again; a damaged cache or a read-only folder is no error; none without
    the file, or with a damaged one."""
    import os
    import types

    import studio.detail as detail_mod
    from tests.conftest import use_arcface

    proj = types.SimpleNamespace(root=tmp_path / "p")
    proj.root.mkdir()
    crops = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    rows = np.arange(5)
    use_arcface(monkeypatch, tmp_path, "fixture")
    e = detail_mod.frame_embeddings(proj, rows, crops)
    path = proj.root / detail_mod.EMBEDDINGS_FILE.format(size=64)
    assert e.shape == (5, 128) and path.is_file()
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    calls = []
    real = metrics.embeddings
    monkeypatch.setattr(metrics, "embeddings", lambda x, *a, **k: calls.append(len(x)) or real(x, *a, **k))
    assert np.array_equal(detail_mod.frame_embeddings(proj, rows, crops), e) and calls == []   # from the project
    other = crops.copy()
    other[0] = 255 - other[0]
    e2 = detail_mod.frame_embeddings(proj, rows, other)
    assert calls == [5] and not np.allclose(e2[0], e[0]) and np.allclose(e2[1:], e[1:], atol=1e-5)
    path.write_bytes(b"damaged")
    assert np.allclose(detail_mod.frame_embeddings(proj, rows, crops), e, atol=1e-5) and calls == [5, 5]
    assert detail_mod.frame_embeddings(proj, rows, crops) is not None and calls == [5, 5]   # written again
    if os.geteuid() != 0:                        # root writes through permissions
        path.unlink()
        os.chmod(path.parent, 0o555)
        try:
            assert detail_mod.frame_embeddings(proj, rows, crops).shape == (5, 128) and not path.exists()
        finally:
            os.chmod(path.parent, 0o755)
    (tmp_path / "bad").mkdir()
    use_arcface(monkeypatch, tmp_path / "bad", "corrupt")
    assert detail_mod.frame_embeddings(proj, rows, crops) is None
    use_arcface(monkeypatch, tmp_path, "absent")
    assert detail_mod.frame_embeddings(proj, rows, crops) is None


def test_from_project_weighs_the_frames_by_how_much_they_look_like_the_person(monkeypatch, tmp_path, tracked_d3):
    from tests.conftest import use_arcface

    use_arcface(monkeypatch, tmp_path, "fixture")
    assert VideoDetail.from_project(tracked_d3, 64).atypicality is None                # off by default
    on = DetailConfig(typical_weight=0.3)
    vd = VideoDetail.from_project(tracked_d3, 64, config=on)
    assert vd.atypicality is not None and vd.atypicality.shape == (len(vd.crops),)
    assert np.isfinite(vd.atypicality).all() and vd.atypicality.std() > 0.5
    use_arcface(monkeypatch, tmp_path, "absent")
    assert VideoDetail.from_project(tracked_d3, 64, config=on).atypicality is None


def test_crop_source_share_is_zero_past_the_pictures_edge_and_ramps_inside():
    from studio.tracking.data import crop_source_share

    # a 64-px crop of a 100 x 80 frame, 1 crop px per frame px, its top-left at frame (50, 40):
    # columns 50 on and rows 40 on of the crop lie past the frame's right and bottom edges
    A = np.array([[1.0, 0.0, -50.0], [0.0, 1.0, -40.0]])
    m = crop_source_share(A, 64, (0.0, 0.0, 100.0, 80.0), ramp=3.0)
    assert m.shape == (64, 64) and m.dtype == np.float32
    assert m[:30, :40].min() == 1.0                       # well inside the frame
    assert m[45:, :].max() == 0.0 and m[:, 55:].max() == 0.0   # the tracker's repeated edge: nothing
    assert 0.0 < m[10, 48] < 1.0 and m[10, 46] == 1.0     # a ramp of 3 px inside the edge
    assert np.all(np.diff(m[10, 40:55]) <= 0)             # falling toward the edge
    # a black bar down the left: its columns count as past the picture too
    bars = crop_source_share(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), 64, (20.0, 0.0, 100.0, 80.0), ramp=3.0)
    assert bars[:, :20].max() == 0.0 and bars[30, 30] == 1.0
    # 2 crop px per frame px (frame x 50..99 -> crop columns 0..98): the ramp is in crop pixels
    twice = crop_source_share(np.array([[2.0, 0.0, -100.0], [0.0, 2.0, 0.0]]), 128, (0.0, 0.0, 100.0, 80.0), ramp=3.0)
    assert twice[40, :95].min() == 1.0 and twice[40, 100:].max() == 0.0 and 0.0 < twice[40, 97] < 1.0


def test_frames_lend_nothing_past_the_videos_edge():
    """A frame whose lower half lies past the video's edge (the tracker repeats the edge there: vertical
    streaks) lends no detail there; the render stays as it is, and the upper half still gets the frame's."""
    frame = _textured(0)
    frame[64:] = frame[63]                                # the repeated edge row: streaks
    render = cv2.GaussianBlur(_textured(0), (0, 0), 3.0)
    controls = np.zeros((1, 4), np.float32)
    sources = np.ones((1, S, S), np.float32)
    sources[0, 62:] = 0.0
    cfg = DetailConfig(neighbours=1, band_sigma=5.0)
    out = VideoDetail(frame[None], controls, cfg, sources=sources).apply(render[None], controls)[0]
    lent = VideoDetail(frame[None], controls, cfg).apply(render[None], controls)[0]
    below = (slice(70, 120), slice(30, 98))
    assert np.abs(out[below].astype(int) - render[below].astype(int)).max() <= 2
    assert np.abs(lent[below].astype(int) - render[below].astype(int)).mean() > 5   # without: the streaks are lent
    above = (slice(30, 55), slice(40, 88))
    assert np.abs(_high(out)[above]).mean() > 0.5 * np.abs(_high(frame)[above]).mean()
    with pytest.raises(ValueError):
        VideoDetail(frame[None], controls, cfg, sources=sources[:, :64])


def test_from_project_leaves_out_what_the_crops_show_past_the_frames_edge(tracked_d3):
    """d3 is a 512 x 512 clip whose crops reach past its bottom edge (the neck repeats there): those pixels
    lend nothing, those inside the frame do, and `frame_edge` 0 lends everything as before."""
    from studio.tracking.data import TrackingData

    trk = TrackingData.from_project(tracked_d3)
    train, _ = trk.split()
    vd = VideoDetail.from_project(tracked_d3, 64)
    sources = trk.source_masks(train, 64, 3.0 * 64 / 128)
    assert (sources < 0.01).mean() > 0.02                  # the test clip's crops do reach past the frame
    past = sources == 0.0
    assert past.mean() > 0.02 and vd.mattes[past].max() == 0.0
    whole = VideoDetail.from_project(tracked_d3, 64, config=DetailConfig(frame_edge=0.0))
    inside = sources == 1.0
    assert inside.mean() > 0.5 and np.array_equal(vd.mattes[inside], whole.mattes[inside])
    assert whole.mattes[past].max() > 0.5                  # the person matte reaches the repeated neck


def test_a_render_whose_colour_drifted_far_from_the_frames_is_brought_within_colour_drift():
    """A render paler and greener than the frame lending it detail by far more than `colour_drift` (an
    engine at a slider's end the clip barely shows) is moved toward the frame's colour until it differs by
    `colour_drift`; one that differs by less (every held-out frame of the six avatars) is left as it is."""
    frame = _textured(0)
    controls = np.zeros((1, 4), np.float32)
    person = np.zeros((1, S, S), np.float32)
    person[0, 20:108, 20:108] = 1.0
    inner = (slice(40, 88), slice(40, 88))
    base = cv2.GaussianBlur(frame, (0, 0), 2.0).astype(np.float32)
    for shift, moved in (((10.0, 8.0, 0.0), False), ((20.0, 45.0, 38.0), True)):
        render = np.clip(base + np.array(shift, np.float32), 0, 255).astype(np.uint8)
        cfg = DetailConfig(neighbours=1, band_sigma=12.0, matte_grow=0.0)
        vd = VideoDetail(frame[None], controls, cfg, mattes=person)
        out = vd.apply(render[None], controls)[0].astype(np.float32)
        off = VideoDetail(frame[None], controls, DetailConfig(neighbours=1, band_sigma=12.0, matte_grow=0.0,
                                                              colour_drift=0.0), mattes=person)
        plain = off.apply(render[None], controls)[0].astype(np.float32)
        gap = np.linalg.norm(out[inner].mean((0, 1)) - frame[inner].astype(np.float32).mean((0, 1)))
        plain_gap = np.linalg.norm(plain[inner].mean((0, 1)) - frame[inner].astype(np.float32).mean((0, 1)))
        if moved:
            assert plain_gap > 50.0 and 10.0 < gap < 20.0, (plain_gap, gap)
            corner = (slice(0, 8), slice(0, 8))                 # outside the person: the render as it was
            assert np.abs(out[corner] - plain[corner]).max() <= 1.0
        else:
            assert np.array_equal(out, plain)


def test_an_appearance_edits_own_colour_is_not_taken_back_as_drift():
    """Where an appearance edit changed the render (`keep`), its colour is the edit's, not a drift: a render
    made 60 levels bluer by an edit over the whole person keeps it."""
    frame = _textured(0)
    controls = np.zeros((1, 4), np.float32)
    person = np.zeros((1, S, S), np.float32)
    person[0, 20:108, 20:108] = 1.0
    base = cv2.GaussianBlur(frame, (0, 0), 2.0).astype(np.float32)
    render = np.clip(base + np.array((-20.0, 0.0, 60.0), np.float32), 0, 255).astype(np.uint8)
    cfg = DetailConfig(neighbours=1, band_sigma=12.0, matte_grow=0.0)
    vd = VideoDetail(frame[None], controls, cfg, mattes=person)
    keep = np.zeros((1, S, S), np.float32)
    keep[0, 10:118, 10:118] = 1.0
    inner = (slice(40, 88), slice(40, 88))
    kept = vd.apply(render[None], controls, keep=keep)[0].astype(np.float32)
    pulled = vd.apply(render[None], controls)[0].astype(np.float32)
    blue = lambda img: float(img[inner][..., 2].mean() - frame[inner][..., 2].astype(np.float32).mean())
    assert blue(kept) > 40.0 and blue(pulled) < 20.0, (blue(kept), blue(pulled))


# ---------------------------------------------------------------- the eyes lent by frames that show them
NAMED = ["yaw", "pitch", "jaw_open", "smile_left", "smile_right", "pucker", "mouth_stretch", "brow_raise_left",
         "brow_raise_right", "brow_frown", "blink_left", "blink_right", "gaze_horizontal", "gaze_vertical"]


def _eye_mesh(n: int) -> np.ndarray:
    """(n, 478, 2) meshes whose eye regions are ellipses round (44, 50) and (84, 50) and whose mouth is round
    (64, 96), the other points at the middle (as `test_feature_masks_cover_eyes_and_mouth_not_the_cheeks`)."""
    from studio.tracking.geometry import FEATURE_REGIONS

    lm = np.full((n, 478, 2), 64.0, np.float32)
    for k, idx in enumerate(FEATURE_REGIONS):
        cx, cy = ((44, 50), (84, 50), (64, 96))[k]
        ang = np.linspace(0, 2 * np.pi, len(idx), endpoint=False)
        lm[:, list(idx)] = np.stack([cx + 8 * np.cos(ang), cy + 4 * np.sin(ang)], 1)
    return lm


def _winking_clip():
    """Controls of a clip: 30 frames turned and moving their eyes a little (yaw ±10°, each eye control ±0.5),
    the mouth at rest; frame 30 opens the jaw wide and winks (blink_left 1.5), frame 31 opens it less with the
    eyes at rest, both facing the camera. A query opening the jaw wide, the rest at rest, picks frame 30."""
    rng = np.random.default_rng(3)
    c = np.zeros((32, len(NAMED)), np.float32)
    c[:30, 0] = rng.uniform(-10, 10, 30)
    eyes = [NAMED.index(n) for n in NAMED[7:]]
    c[:30, eyes] = rng.uniform(-0.5, 0.5, (30, len(eyes)))
    c[30, 2], c[30, NAMED.index("blink_left")] = 1.0, 1.5
    c[31, 2] = 0.8
    q = np.zeros((1, len(NAMED)), np.float32)
    q[0, 2] = 1.0
    return c, q


def test_region_masks_cover_each_part_on_its_own():
    from studio.detail.masks import region_masks

    lm = _eye_mesh(1)[0]
    eyes, mouth = region_masks(lm, S, 4.0, parts=((0, 1), (2,)))
    assert eyes[50, 44] > 0.95 and eyes[50, 84] > 0.95 and eyes[96, 64] < 0.05
    assert mouth[96, 64] > 0.95 and mouth[50, 44] < 0.05 and mouth[75, 30] < 0.05
    assert region_masks(np.full((478, 2), np.nan, np.float32), S, 4.0).max() == 0.0   # no mesh: no region


def test_region_columns_only_for_the_named_controls():
    from studio.detail.choice import REGIONS, region_columns

    cols = region_columns(NAMED)
    assert cols is not None and len(cols) == len(REGIONS)
    assert sorted(NAMED[i] for i in cols[0]) == sorted(REGIONS[0][1])
    assert "jaw_open" not in [NAMED[i] for i in cols[0]]
    assert region_columns(["yaw", "pitch", "jaw"] + [f"flame_{i:02d}" for i in range(10)]) is None


def test_a_winking_frame_does_not_lend_its_eyes_to_a_render_whose_eyes_are_at_rest():
    """The whole face comes from the frame that opens the jaw as asked (frame 30), but it winks where the
    render's eyes are at rest: the eyes are lent by frame 31 (its eyes at rest, near enough) instead. Where the
    render asks for the wink itself, or with `region_match` 0, frame 30 lends its eyes as before."""
    from studio.detail.choice import region_columns

    c, q = _winking_clip()
    crops = np.stack([_textured(i) for i in range(len(c))])
    vd = VideoDetail(crops, c, DetailConfig(), landmarks=_eye_mesh(len(c)), regions=region_columns(NAMED))
    idx, w = vd.neighbours(q)
    assert idx[0, 0] == 30 and w[0, 0] > 0.9                          # the premise: the wink is the nearest
    lend = vd.lenders(q)[0]
    assert lend[30][0] == pytest.approx(w[0, 0]) and lend[30][1][0] == 0.0       # the face, not the eyes
    assert lend[31][1][0] > 0.9 and sum(r[0] for _, r in lend.values()) == pytest.approx(1.0)
    assert sum(base for base, _ in lend.values()) == pytest.approx(1.0)          # the rest as before
    wink = q.copy()
    wink[0, NAMED.index("blink_left")] = 0.6                         # the render asks for the wink
    assert all(r is None for _, r in vd.lenders(wink)[0].values())
    off = VideoDetail(crops, c, DetailConfig(region_match=0.0), landmarks=_eye_mesh(len(c)),
                      regions=region_columns(NAMED))
    assert off.regions is None and all(r is None for _, r in off.lenders(q)[0].values())
    # frame 31 too far off to stand in (its jaw much less open than asked): the face's eyes stay
    far = c.copy()
    far[31, 2] = 0.2
    vd_far = VideoDetail(crops, far, DetailConfig(), landmarks=_eye_mesh(len(c)), regions=region_columns(NAMED))
    assert vd_far.neighbours(q)[0][0, 0] == 30
    assert all(r is None for _, r in vd_far.lenders(q)[0].values())
    # ... or turned away by more than REGION_TURN degrees from the render and the face's frames
    turned = c.copy()
    turned[31, 0] = 9.0
    vd_turned = VideoDetail(crops, turned, DetailConfig(), landmarks=_eye_mesh(len(c)), regions=region_columns(NAMED))
    assert vd_turned._distances(q)[0, 31] <= 4 * vd_turned._distances(q)[0, 30]   # near enough but for the turn
    assert all(r is None for _, r in vd_turned.lenders(q)[0].values())


def test_an_eye_slider_does_not_borrow_an_open_mouth():
    """The other way round: a query shuts the left eye with the mouth at rest; frame 30 shuts it as asked but
    opens the jaw, frame 31 shuts it a little less with the mouth at rest. The face (and the eyes) come from
    frame 30, the mouth from frame 31."""
    from studio.detail.choice import region_columns

    c, _ = _winking_clip()
    blink = NAMED.index("blink_left")
    c[31, 2], c[31, blink] = 0.0, 0.9
    q = np.zeros((1, len(NAMED)), np.float32)
    q[0, blink] = 1.5
    crops = np.stack([_textured(i) for i in range(len(c))])
    vd = VideoDetail(crops, c, DetailConfig(), landmarks=_eye_mesh(len(c)), regions=region_columns(NAMED))
    assert vd.neighbours(q)[0][0, 0] == 30                          # the premise
    lend = vd.lenders(q)[0]
    eyes, mouth = 0, 1
    assert lend[30][1][eyes] == pytest.approx(lend[30][0]) and lend[30][1][mouth] == 0.0
    assert lend[31][1][mouth] > 0.9


def test_the_eyes_detail_comes_from_the_frame_that_shows_them_and_the_rest_from_the_face():
    """Frame 30 (the face) and frame 31 (the eyes at rest) carry different fine textures; the render is frame
    30 blurred. Over the eyes the result's fine band follows frame 31's, elsewhere in the face frame 30's."""
    from studio.detail.choice import region_columns

    c, q = _winking_clip()
    crops = np.stack([_textured(i) for i in range(len(c))])
    render = cv2.GaussianBlur(crops[30], (0, 0), 1.5)[None]

    class Still:   # frames in place: which frame lends where is looked at, not the flow
        @staticmethod
        def calc(a, b, _):
            return np.zeros((S, S, 2), np.float32)

    def run(cfg):
        vd = VideoDetail(crops, c, cfg, landmarks=_eye_mesh(len(c)), regions=region_columns(NAMED))
        vd._flow = Still()
        return vd.apply(render, q)[0]

    on, off = run(DetailConfig(shape_share=0.0)), run(DetailConfig(shape_share=0.0, region_match=0.0))
    eyes = np.zeros((S, S), bool)
    eyes[41:47, 36:52] = True             # inside the eye region, above the dark eye all frames share
    cheek = np.zeros((S, S), bool)
    cheek[80:90, 36:50] = True            # below the eyes' (grown, feathered) region
    h30, h31 = _high(crops[30]), _high(crops[31])
    assert _corr(_high(on), h31, eyes) > 0.8 and _corr(_high(on), h30, eyes) < 0.3
    assert _corr(_high(off), h30, eyes) > 0.8
    assert _corr(_high(on), h30, cheek) > 0.8
    assert np.abs(on[cheek].astype(int) - off[cheek]).max() <= 2   # as before (the colour kept within a level or two)


def test_from_project_knows_the_eye_controls_and_meshes(tracked_d3):
    vd = VideoDetail.from_project(tracked_d3, 64)
    assert vd is not None and vd.regions is not None and len(vd.regions) == 2     # the eyes, the mouth
    assert vd._meshes is not None and vd._meshes.shape[:1] == vd.crops.shape[:1]
    assert VideoDetail.from_project(tracked_d3, 64, config=DetailConfig(region_match=0.0)).regions is None


def test_a_trail_cross_fades_a_switch_of_lenders_over_frames():
    """Frame 7 lends alone, then frame 9 alone: without a trail the detail switches in one frame; along a
    trail frame 9 takes over over a few frames (`hold` 0.3: 70 %, 91 %, then all, frame 7's 3 % let go), the
    weights always sum to 1,
    at most `most` lenders, and a region's own weights fade the same way."""
    from studio.detail import LenderTrail

    trail = LenderTrail(hold=0.3, most=3)
    seq = [{7: (1.0, None)}] * 3 + [{9: (1.0, None)}] * 4
    out = trail.follow(seq, regions=0)
    assert [round(o.get(9, (0.0, None))[0], 3) for o in out] == [0, 0, 0, 0.7, 0.91, 1.0, 1.0]
    assert all(abs(sum(w for w, _ in o.values()) - 1) < 1e-9 for o in out)
    assert list(out[3]) == [9, 7]                                        # heaviest first
    # many lenders: only the `most` heaviest are kept, renormalised
    trail = LenderTrail(hold=0.3, most=3)
    trail.follow([{1: (0.4, None), 2: (0.3, None), 3: (0.3, None)}], regions=0)
    o = trail.follow([{4: (0.5, None), 5: (0.5, None)}], regions=0)[0]
    assert len(o) == 3 and set(o) == {4, 5, 1} and abs(sum(w for w, _ in o.values()) - 1) < 1e-9
    # regions (eyes, mouth): the eyes lent by frame 2 while frame 1 lends the face, then by frame 1 again
    trail = LenderTrail(hold=0.3)
    a = trail.follow([{1: (1.0, np.array([0.0, 1.0])), 2: (0.0, np.array([1.0, 0.0]))}], regions=2)[0]
    assert a[2][1][0] == 1.0 and a[1][1][0] == 0.0
    b = trail.follow([{1: (1.0, None)}], regions=2)[0]
    assert abs(b[2][1][0] - 0.3) < 1e-9 and abs(b[1][1][0] - 0.7) < 1e-9 and b[1][0] == 1.0
    # no hold: as chosen
    assert LenderTrail(hold=0.0).follow(seq, regions=0) == [dict(s) for s in seq]
    with pytest.raises(ValueError):
        LenderTrail(hold=1.0)


def test_an_export_along_a_trail_changes_less_where_the_lending_frame_switches():
    """Renders of a clip whose controls cross from frame 1's neighbourhood to frame 4's (different textures):
    frame by frame the detail jumps at the crossing; in one `Avatar.sequence`-style trail the largest
    change between consecutive frames is smaller and no frame differs from both neighbours' lenders."""
    from studio.detail import LenderTrail

    crops, controls = _frames()
    vd = VideoDetail(crops, controls, DetailConfig(neighbours=1))
    q = np.repeat(controls[[1]], 8, 0)
    q[4:] = controls[4]
    renders = np.stack([cv2.GaussianBlur(crops[1], (0, 0), 4.0)] * 8)
    alone = vd.apply(renders, q).astype(np.float32)
    trail = LenderTrail()
    along = np.concatenate([vd.apply(renders[:3], q[:3], trail=trail), vd.apply(renders[3:], q[3:], trail=trail)])
    along = along.astype(np.float32)
    step = lambda x: np.abs(np.diff(x, axis=0)).mean((1, 2, 3))   # noqa: E731
    assert step(along).max() < 0.8 * step(alone).max(), (step(alone), step(along))   # 70 % of the switch at once
    assert np.allclose(along[:4], alone[:4])                  # before the crossing the same frames, the same image
    assert np.abs(along[-1] - alone[-1]).mean() < 0.1 * np.abs(alone[-1] - alone[0]).mean()   # then frame 4's


def test_a_long_clip_lends_from_some_of_its_frames_spread_over_it(tracked_d3, monkeypatch):
    """Every training frame of a 2-minute clip held the viewer's first render for 26 s and 1.6 GB at 128 px
    (97 s and 6.5 GB at 256): at most `LENDING_MOST` frames lend detail and build the background, spread
    evenly over the clip; a clip with fewer keeps them all."""
    from studio.scene import ScenePlate
    from studio.tracking import data as tdata
    from studio.tracking.data import TrackingData, spread_rows

    rows = np.arange(10, 3010)
    kept = spread_rows(rows, 900)
    assert len(kept) == 900 and kept[0] == 10 and kept[-1] == 3009 and np.all(np.diff(kept) >= 3)
    assert np.array_equal(spread_rows(rows[:900], 900), rows[:900])
    train, _ = TrackingData.from_project(tracked_d3).split()
    assert len(VideoDetail.from_project(tracked_d3, 64).crops) == len(train)      # d3's 301: all
    seen: list[int] = []
    real = ScenePlate.from_tracking.__func__
    monkeypatch.setattr(ScenePlate, "from_tracking", classmethod(
        lambda cls, tracking, rows, config=None: seen.append(len(rows)) or real(cls, tracking, rows, config)))
    monkeypatch.setattr(tdata, "LENDING_MOST", 40)
    vd = VideoDetail.from_project(tracked_d3, 64)
    assert len(vd.crops) == 40 and vd.has_controls
    ScenePlate.from_project(tracked_d3)
    assert seen == [40]
