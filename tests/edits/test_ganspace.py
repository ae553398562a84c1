"""GANSpace directions: PCA of the avatar's own latents, components in σ units, labels, picture."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio.edits.adapters import EditAdapter, adapter_for
from studio.edits.ganspace import component_offset, components_picture, compute_components, direction_edit, \
    save_picture
from studio.edits.model import EditSet


class KnownAdapter(EditAdapter):
    """Latents with known structure: yaw moves axis 0 (large), jaw_open axis 1, and the anchors
    (like pivots) spread along axis 2 only."""

    engine_name = "pvp"

    def __init__(self):
        names = ["yaw", "pitch", "jaw_open", "smile"]
        super().__init__(SimpleNamespace(control_names=names, size=8,
                                         ranges={"yaw": (-20, 20), "pitch": (-5, 5), "jaw_open": (0, 1),
                                                 "smile": (0, 1)}))

    @property
    def latent_shape(self):
        return 3, 5

    def latent(self, controls):
        c = torch.as_tensor(np.asarray(controls, np.float32))
        w = torch.zeros(len(c), 5)
        w[:, 0] = c[:, 0] / 10               # σ ≈ 1.15
        w[:, 1] = (c[:, 2] - 0.5) * 2        # σ ≈ 0.58
        return w[:, None].expand(-1, 3, -1)

    def latent_samples(self, n=256, seed=0):
        anchors = torch.zeros(n // 2, 3, 5)
        anchors[:, :, 2] = torch.linspace(-0.8, 0.8, n // 2)[:, None]
        return torch.cat([super().latent_samples(n, seed), anchors])


def test_labels_and_order_on_known_latents():
    comps = compute_components(KnownAdapter(), n_samples=400, n_components=3)
    axes = comps.directions.abs().argmax(1).tolist()
    labels = dict(zip(axes, comps.labels))
    assert labels == {0: "pose", 1: "expression", 2: "appearance"}, (axes, comps.labels, comps.pose_share)
    assert comps.labels[comps.order()[0]] == "appearance", "appearance directions are listed first"
    assert torch.allclose(comps.directions @ comps.directions.t(), torch.eye(3), atol=1e-5)
    assert (comps.sigma[:-1] >= comps.sigma[1:]).all()


def test_component_moves_the_latent_along_itself_only(pvp_engine):
    a = adapter_for(pvp_engine)
    comps = compute_components(a, n_samples=256, n_components=6)
    L, D = a.latent_shape
    c = torch.from_numpy(a.sweep_controls())
    with torch.no_grad():
        base = a.latent(c)
    k, lo, hi = 1, 0, L // 2
    edit = direction_edit(comps, k, L, (lo, hi))
    assert edit.kind == "direction" and edit.component == k and edit.offset.shape == (L, D)
    for s in (-1.0, 1.0):
        moved = base + s * edit.offset
        d = moved - base                                                     # (B, L, D)
        assert d[:, hi:].abs().max() == 0, "layers outside the range stay"
        proj = d[:, lo:hi] @ comps.directions.t()                            # (B, l, K)
        assert torch.allclose(proj[..., k], torch.full_like(proj[..., k], s * float(comps.sigma[k])), atol=1e-5)
        others = torch.cat([proj[..., :k], proj[..., k + 1:]], -1)
        assert others.abs().max() < 1e-5, "no movement along the other components"
        resid = d[:, lo:hi] - proj[..., k:k + 1] * comps.directions[k]
        assert resid.abs().max() < 1e-5
    # σ is the spread of the samples along the component
    w = a.latent_samples(256, 0).mean(1)
    p = (w - comps.mean) @ comps.directions[k]
    assert abs(float(p.std()) - float(comps.sigma[k])) < 1e-3 * max(1.0, float(comps.sigma[k]))
    assert set(comps.labels) <= {"pose", "expression", "appearance"}
    with pytest.raises(Exception, match="no component"):
        component_offset(comps, 99, L)


def test_training_frame_latents_join_the_samples(nerf_engine):
    """Extra samples (the encoder codes of training frames for LatentAvatar) enter the PCA."""
    from avatars import synthetic_frames

    a = adapter_for(nerf_engine)
    frames, _, _ = synthetic_frames(size=16)
    extra = a.latents_for_codes(nerf_engine.encode_image(frames))
    assert extra.shape == (len(frames), *a.latent_shape)
    plain = compute_components(a, n_samples=64, n_components=3)
    more = compute_components(a, n_samples=64, n_components=3, extra=extra)
    assert more.n_samples == plain.n_samples + len(frames)
    flat = compute_components(a, n_samples=64, n_components=3, extra=extra[:, 0])   # (N, D) W vectors work too
    assert torch.allclose(flat.sigma, more.sigma)


def test_direction_edits_save_and_picture(pvp_engine, nerf_engine, tmp_path):
    import cv2

    for eng in (pvp_engine, nerf_engine):
        a = adapter_for(eng)
        comps = compute_components(a, n_samples=128, n_components=4)
        es = EditSet(tmp_path / "edits" / a.engine_name, a.engine_name)
        es.save(direction_edit(comps, 0, a.latent_shape[0]))
        assert EditSet(tmp_path / "edits" / a.engine_name, a.engine_name).get("component 0").label == comps.labels[0]
        pic = components_picture(a, comps, top=3)
        scale = max(1, 96 // a.size)
        assert pic.dtype == np.uint8 and pic.shape[1] == 150 + 5 * a.size * scale
        assert pic.shape[0] >= 3 * 3 * a.size * scale
        path = tmp_path / f"components_{a.engine_name}.png"
        save_picture(pic, path)
        assert cv2.imread(str(path)).shape == pic.shape
        if a.engine_name == "nerf":
            # the tiny LatentAvatar's codes hardly vary yet (θ std ~1e-3 after 120 steps), so its
            # components are real but too small to show; the StyleGAN one must show them
            assert (comps.sigma > 0).all()
            continue
        # the ±2σ columns differ from the 0σ column: the components change the picture
        s0 = 150 + 2 * a.size * scale
        mid = pic[18:18 + 3 * a.size * scale, s0:s0 + a.size * scale].astype(int)
        left = pic[18:18 + 3 * a.size * scale, 150:150 + a.size * scale].astype(int)
        assert np.abs(mid - left).mean() > 0.5
    if (p := __import__("os").environ.get("EDITS_PICTURE_DIR")):
        import shutil

        for f in tmp_path.glob("components_*.png"):
            shutil.copy(f, p)


def test_labels_from_retracked_renders(pvp_engine, monkeypatch):
    """The re-tracking path labels by what the tracker reads off the renders (a stand-in tracker
    here: mediapipe finds no face in 32 px renders): a component whose renders change the
    tracked yaw is "pose", one that changes a tracked expression is "expression", one whose
    renders lose the face keeps its latent label."""
    import studio.tracking.tracker as tracker
    from studio.edits.ganspace import label_by_tracking

    a = adapter_for(pvp_engine)
    comps = compute_components(a, n_samples=128, n_components=3)
    calls = []

    def fake_track(images, tracking):
        calls.append(len(images))
        out = []
        for i, img in enumerate(images):
            k, sign = divmod(i // 3, 2)          # 3 poses per (component, sign)
            if k == 2:
                out.append(None)
                continue
            yaw = 5.0 * sign if k == 0 else 0.0
            expr = np.zeros(12)
            expr[0] = 0.8 * sign if k == 1 else 0.0
            out.append({"pose": np.array([yaw, 0.0, 0.0]), "expr": expr})
        return out

    monkeypatch.setattr(tracker, "track_images", fake_track)
    out = label_by_tracking(a, comps, tracking=None)
    assert calls == [3 * 2 * 3]
    assert out.labels[:2] == ["pose", "expression"] and out.labels[2] == comps.labels[2]
    assert out.tracked[0]["pose_change_deg"] == pytest.approx(5.0) and out.tracked[2]["faces"] == 0
    assert "tracked" in out.to_json()[0]
