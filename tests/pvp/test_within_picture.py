"""Losses against the video's crops leave out its black bars (`studio.pvp.common.within_picture`)."""
from __future__ import annotations

import numpy as np
import torch

from studio.pvp.common import load_pictures, within_picture
from studio.tracking.data import TrackingData


class _Tracking:
    def __init__(self, masks):
        self.masks = masks

    def picture_masks(self, rows, size):
        return self.masks[list(rows)]

    bar_masks = TrackingData.bar_masks
    picture_masks_u8 = TrackingData.picture_masks_u8   # the real conversion, over the masks above


def test_the_target_is_the_render_itself_on_a_bar_and_the_frame_elsewhere():
    target = torch.rand(2, 3, 8, 8)
    out = torch.rand(2, 3, 8, 8, requires_grad=True)
    m = np.ones((2, 8, 8), np.float32)
    m[:, :, :3] = 0.0
    keep = load_pictures(_Tracking(m), [0, 1], 8)
    assert keep.dtype == torch.uint8 and keep.shape == (2, 1, 8, 8)
    y = within_picture(target, out, keep)
    assert torch.equal(y[..., 3:], target[..., 3:])
    assert torch.allclose(y[..., :3], out.detach()[..., :3])
    torch.nn.functional.l1_loss(out, y).backward()
    assert out.grad[..., :3].abs().max() == 0 and out.grad[..., 3:].abs().min() > 0
    assert within_picture(target, out, None) is target


def test_a_video_without_bars_leaves_training_as_it_was():
    assert load_pictures(_Tracking(np.ones((3, 8, 8), np.float32)), [0, 1, 2], 8) is None
