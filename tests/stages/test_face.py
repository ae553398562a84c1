"""`studio.stages.face`: the shared ArcFace face losses see the images as the eval scores them."""
from __future__ import annotations

import torch

from models.arcface import FaceLoss, MobileFaceNet
from studio.stages.face import face_loss, face_terms


def _face() -> FaceLoss:
    torch.manual_seed(0)
    return FaceLoss(MobileFaceNet())


def test_face_terms_rescale_the_generator_range_and_take_the_first_images():
    face = _face()
    g = torch.Generator().manual_seed(1)
    out = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1        # a generator's (-1, 1) images
    target = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    dist, ident = face_terms(face, out, target, count=2)
    ref_d, ref_i = face((out[:2] + 1) / 2, (target[:2] + 1) / 2)
    assert torch.allclose(dist, ref_d.mean()) and torch.allclose(ident, ref_i.mean())
    raw_d, _ = face(out[:2], target[:2])                        # the range unconverted gives another value
    assert not torch.allclose(dist, raw_d.mean())
    same_d, same_i = face_terms(face, target, target)
    assert same_d.abs() < 1e-5 and same_i.abs() < 1e-5
    unit_d, _ = face_terms(face, (out + 1) / 2, (target + 1) / 2, value_range=(0.0, 1.0))
    full_d, _ = face_terms(face, out, target)
    assert torch.allclose(unit_d, full_d)


def test_face_loss_not_wanted_loads_nothing():
    assert face_loss(False, "cpu", "w=0") == (None, "")
