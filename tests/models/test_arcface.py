"""MobileFaceNet: strict load of the real weights, and identity similarity on real videos."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from models.arcface import (MobileFaceNet, embed, face_region_from_aligned, identity_similarity,
                            load_arcface)


def shared_dir() -> Path:
    env = os.environ.get("AVATAR_STUDIO_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared"


WEIGHTS = shared_dir() / "weights" / "arcface_mobilefacenet.pt"
VIDEOS = shared_dir() / "data" / "videos"
needs_weights = pytest.mark.skipif(not WEIGHTS.exists(),
                                   reason=f"ArcFace weights not found at {WEIGHTS} (../shared is absent)")


def test_shapes_and_bad_input():
    net = MobileFaceNet().eval()
    out = net(torch.rand(2, 3, 112, 112))
    assert out.shape == (2, 128)
    with pytest.raises(ValueError):
        net(torch.rand(1, 3, 64, 64))
    face = face_region_from_aligned(torch.rand(3, 3, 256, 256))
    assert face.shape == (3, 3, 112, 112)


def test_state_dict_roundtrip(tmp_path):
    net = MobileFaceNet()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    net2 = load_arcface(tmp_path / "w.pt")
    x = torch.rand(1, 3, 112, 112)
    assert torch.allclose(net.eval()(x), net2(x))


@needs_weights
def test_real_weights_load_strictly():
    net = load_arcface(WEIGHTS)
    n = sum(p.numel() for p in net.parameters())
    assert 0.95e6 < n < 1.1e6
    assert len(torch.load(WEIGHTS, map_location="cpu", weights_only=True)) == 307


def _rough_crops(path: Path, n: int = 6) -> np.ndarray:
    import cv2
    import mediapipe as mp

    det = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.3)
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    out = []
    for i in np.linspace(0, total - 1, n).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
        ok, frame = cap.read()
        if not ok:
            continue
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        found = det.process(rgb).detections
        if not found:
            continue
        r = found[0].location_data.relative_bounding_box
        h, w = rgb.shape[:2]
        cx, cy = (r.xmin + r.width / 2) * w, (r.ymin + r.height / 2) * h
        s = max(r.width * w, r.height * h) * 1.1
        x0, y0 = int(max(0, cx - s / 2)), int(max(0, cy - s / 2))
        out.append(cv2.resize(rgb[y0:y0 + int(s), x0:x0 + int(s)], (112, 112), interpolation=cv2.INTER_AREA))
    cap.release()
    return np.stack(out)


@needs_weights
@pytest.mark.skipif(not VIDEOS.exists(), reason=f"shared videos not found at {VIDEOS}")
def test_same_person_more_similar_than_across():
    net = load_arcface(WEIGHTS)
    emb = {p.name: embed(net, _rough_crops(p), aligned=False) for p in sorted(VIDEOS.glob("*.mp4"))}
    names = list(emb)
    same, cross = [], []
    for a in names:
        sims = emb[a] @ emb[a].T
        k = len(sims)
        same_a = float((sims.sum() - sims.diagonal().sum()) / (k * (k - 1)))
        same.append(same_a)
        for b in names:
            if b != a:
                cross_ab = float((emb[a] @ emb[b].T).mean())
                cross.append(cross_ab)
                assert same_a > cross_ab + 0.1, (a, b, same_a, cross_ab)
    assert np.mean(same) > np.mean(cross) + 0.25, (same, cross)
    # the pairwise helper agrees with the matrix
    a = emb[names[0]]
    assert torch.allclose(identity_similarity(a, a), torch.ones(len(a)), atol=1e-5)


def test_feature_maps_shapes_and_agree_with_forward():
    from models.arcface import FEATURE_TAPS

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = MobileFaceNet().eval()
    x = torch.rand(2, 3, 112, 112)
    maps = net.feature_maps(x)
    assert [tuple(m.shape) for m in maps] == [(2, 64, 56, 56), (2, 64, 28, 28), (2, 128, 14, 14), (2, 128, 7, 7)]
    assert FEATURE_TAPS[-1] == len(net.features) - 1
    # the last map is the input of the embedding head: finishing the network from it gives forward()
    head = net.bn(net.conv3(net.gdconv(net.conv2(maps[-1]))).flatten(1))
    assert torch.allclose(head, net(x), atol=1e-5)
    assert len(net.feature_maps(x, taps=(0,))) == 2
    with pytest.raises(ValueError):
        net.feature_maps(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError):
        net.feature_maps(x, taps=(99,))


def test_face_loss_matches_the_metrics_and_trains_the_input_only():
    """`FaceLoss` gives, in one pass, the eval's feature distance and 1 − the embeddings' cosine; its
    gradient reaches the image, not the frozen network, and `.train()` does not unfreeze BatchNorm."""
    from models.arcface import FaceLoss
    from studio import metrics

    torch.manual_seed(0)
    net = MobileFaceNet()
    for m in net.modules():                          # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    loss = FaceLoss(net)
    loss.train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x, y = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64)
    dist, ident = loss(x, y)
    assert dist.shape == ident.shape == (3,)
    assert torch.allclose(dist, metrics.feature_distance_tensor(net, x, y), atol=1e-5)
    ex = torch.nn.functional.normalize(net(face_region_from_aligned(x)), dim=1)
    ey = torch.nn.functional.normalize(net(face_region_from_aligned(y)), dim=1)
    assert torch.allclose(ident, 1 - (ex * ey).sum(1), atol=1e-5)
    same_d, same_i = loss(x, x)
    assert float(same_d.abs().max()) < 1e-5 and float(same_i.abs().max()) < 1e-5
    assert bool((dist > 1e-3).all()) and bool((ident > -1e-5).all())   # a random net's embeddings nearly agree
    xg = x.clone().requires_grad_(True)
    d, i = loss(xg, y)
    (d + i).sum().backward()
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(ValueError):
        loss(x, y[:2])


@needs_weights
def test_face_loss_descends_toward_the_real_face():
    """With the real network: a few gradient steps on a blurred real face lower both losses against
    the sharp one, and the image gains fine detail it did not have."""
    import cv2

    from models.arcface import FaceLoss

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cap = cv2.VideoCapture(str(VIDEOS / "subject_turns_d3.mp4"))
    ok, f = cap.read()
    cap.release()
    assert ok
    h, w = f.shape[:2]
    s = min(h, w)
    sharp = cv2.cvtColor(cv2.resize(f[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2], (128, 128),
                                    interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    soft = cv2.GaussianBlur(sharp, (0, 0), 2.5)
    y = torch.from_numpy(sharp).permute(2, 0, 1)[None].float() / 255
    x = (torch.from_numpy(soft).permute(2, 0, 1)[None].float() / 255).requires_grad_(True)
    loss = FaceLoss(load_arcface(WEIGHTS))
    d0, i0 = (float(v) for v in loss(x, y))
    opt = torch.optim.Adam([x], lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        d, i = loss(x, y)
        (d + i).sum().backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    d1, i1 = (float(v) for v in loss(x, y))
    assert d1 < 0.7 * d0 and i1 < 0.7 * i0, (d0, d1, i0, i1)
