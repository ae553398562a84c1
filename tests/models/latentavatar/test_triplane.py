"""Tri-plane sampling against hand-computed points; the generator's shapes."""
from __future__ import annotations

import torch

from models.latentavatar import TriplaneGenerator, sample_triplane


def _planes() -> torch.Tensor:
    xy = torch.tensor([[1.0, 2.0], [3.0, 4.0]])       # rows ← y, columns ← x
    xz = torch.tensor([[10.0, 20.0], [30.0, 40.0]])   # rows ← z, columns ← x
    yz = torch.tensor([[100.0, 200.0], [300.0, 400.0]])  # rows ← z, columns ← y
    return torch.stack([xy, xz, yz])[None, :, None]   # (1, 3, 1, 2, 2)


def test_sample_triplane_hand_computed_point():
    # 2x2 planes, align_corners=False: pixel centres at -0.5 and +0.5
    pts = torch.tensor([[[0.0, 0.25, -0.5], [2.0, 0.0, 0.0], [-0.5, -0.5, 0.5]]])
    f = sample_triplane(_planes(), pts)
    assert f.shape == (1, 3, 1)
    # point 0: xy at (x=0, y=.25): 0.25·1.5 + 0.75·3.5 = 3; xz at (0, -.5): 15; yz at (.25, -.5): 175
    assert torch.allclose(f[0, 0, 0], torch.tensor(193.0))
    # point 1 is outside the xy and xz planes (x = 2 → zeros); yz at the centre: mean 250
    assert torch.allclose(f[0, 1, 0], torch.tensor(250.0))
    # point 2 sits on pixel centres: 1 + 30 + 300
    assert torch.allclose(f[0, 2, 0], torch.tensor(331.0))


def test_sample_triplane_bound_scales_coordinates():
    pts = torch.tensor([[[0.0, 0.5, -1.0]]])
    assert torch.allclose(sample_triplane(_planes(), pts, bound=2.0), sample_triplane(_planes(), pts / 2))


def test_generator_shapes_and_gradients():
    gen = TriplaneGenerator(code_dim=8, plane_channels=4, plane_res=16, max_channels=32, min_channels=8)
    code = torch.randn(2, 8, requires_grad=True)
    planes = gen(code)
    assert planes.shape == (2, 3, 4, 16, 16)
    planes.square().mean().backward()
    assert code.grad is not None and code.grad.abs().sum() > 0
    # different codes give different planes
    assert not torch.allclose(planes[0], planes[1])
