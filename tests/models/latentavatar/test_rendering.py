"""Ray sampling and volume integration against closed forms; cameras."""
from __future__ import annotations

import math

import pytest
import torch

from models.latentavatar import cam2world, rays, sample_along_rays, volume_integrate


def _slab_density(points: torch.Tensor, lo: float, hi: float, sigma: float) -> torch.Tensor:
    z = points[..., 2]
    return torch.where((z >= lo) & (z < hi), torch.full_like(z, sigma), torch.zeros_like(z))


@pytest.mark.parametrize("stratified", [False, True])
def test_constant_density_slab_has_analytic_transmittance(stratified):
    # rays along +z from the origin; slab of density 2 between z=1 and z=3, aligned with the bins
    origins = torch.zeros(1, 3, 3)
    dirs = torch.tensor([[0.0, 0.0, 1.0]]).expand(1, 3, 3)
    t, deltas, pts = sample_along_rays(origins, dirs, 0.0, 4.0, 8, stratified=stratified)
    assert t.shape == (1, 3, 8) and pts.shape == (1, 3, 8, 3)
    assert torch.all((t[..., 1:] - t[..., :-1]) > 0)
    sigma = _slab_density(pts, 1.0, 3.0, 2.0)
    colour = torch.tensor([0.2, 0.5, 0.9]).expand(1, 3, 8, 3)
    out, acc, weights, trans = volume_integrate(sigma, colour, deltas)
    expected_t = math.exp(-2.0 * 2.0)
    assert torch.allclose(1 - acc, torch.full_like(acc, expected_t), atol=1e-6)
    assert torch.allclose(out, torch.tensor([0.2, 0.5, 0.9]) * (1 - expected_t), atol=1e-6)
    # transmittance reaching each bin start: 1 before the slab, exp(-σ (z - 1)) inside, exp(-4) after
    starts = torch.arange(8) * 0.5
    analytic = torch.exp(-2.0 * (starts.clamp(1, 3) - 1))
    assert torch.allclose(trans[0, 0], analytic, atol=1e-6)
    assert torch.allclose(weights.sum(-1), acc)


def test_unaligned_slab_converges_with_many_samples():
    origins = torch.zeros(1, 1, 3)
    dirs = torch.tensor([[[0.0, 0.0, 1.0]]])
    _, deltas, pts = sample_along_rays(origins, dirs, 0.0, 4.0, 4000)
    sigma = _slab_density(pts, 0.73, 2.41, 1.5)
    _, acc, _, _ = volume_integrate(sigma, torch.ones(1, 1, 4000, 1), deltas)
    assert acc.item() == pytest.approx(1 - math.exp(-1.5 * (2.41 - 0.73)), abs=2e-3)


def test_camera_from_pose():
    rot, pos = cam2world(torch.tensor([0.0, 90.0, 0.0]), torch.tensor([0.0, 0.0, 30.0]), 4.0)
    # frontal: camera on +z looking at the origin, image right = +x, image down = -y
    assert torch.allclose(pos[0], torch.tensor([0.0, 0.0, 4.0]), atol=1e-6)
    assert torch.allclose(rot[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-6)
    # yaw > 0 (face turns to the image's right) == camera moves to -x
    assert torch.allclose(pos[1], torch.tensor([-4.0, 0.0, 0.0]), atol=1e-5)
    # pitch > 0 (face tilts up) == camera moves down
    assert pos[2, 1] < -1.9 and pos[2, 2] > 3.4
    # every camera looks at the origin
    for i in range(3):
        assert torch.allclose(rot[i][:, 2], -pos[i] / 4.0, atol=1e-6)
    o, d = rays(torch.zeros(1), torch.zeros(1), 4, 4.0, 1.0)
    assert o.shape == d.shape == (1, 16, 3)
    assert torch.allclose(d.norm(dim=-1), torch.ones(1, 16))
    # the centre rays of the 4x4 grid hit the z=0 plane within the crop's half extent
    hit = o + d * (4.0 / -d[..., 2:3])
    assert hit[..., :2].abs().max() <= 1.0 + 1e-5
    assert hit[0, 0, 0] < 0 and hit[0, 0, 1] > 0  # first pixel = top left = (-x, +y)
