"""The mappers' pivot-pose loss: the pose mapper's blend of pivots must carry the pose asked for.
Without it, on d9 the blend spread its weight over many pivots and the head hardly turned."""
from __future__ import annotations

import numpy as np
import torch

from models.pvp_mappers import PoseMapper
from studio.stages.mappers import pivot_pose_loss


def _blend_yaw_error(pm, sweep, pivot_pose):
    with torch.no_grad():
        got = pm.weights(sweep) @ pivot_pose
    return float((got[:, 0] - sweep[:, 0]).abs().mean())


def test_pivot_pose_loss_makes_the_blend_follow_the_commanded_yaw():
    torch.manual_seed(0)
    # six pivots; most of the clip (and its mean) sits left of centre, as on d9
    pivot_pose = torch.tensor([[-12.0, -4], [-8, -3], [-4, -5], [-3, -2], [2, -4], [10, -3]])
    pm = PoseMapper(torch.randn(6, 2, 8), hidden=32, beta=0.05, pose_mean=torch.tensor([-4.0, -4.0]),
                    pose_std=torch.tensor([5.0, 2.0]))
    sweep = torch.stack([torch.linspace(-12, 10, 12), torch.full((12,), -3.5)], 1)
    before = _blend_yaw_error(pm, sweep, pivot_pose)
    assert before > 4.0, before                 # even weights: every pose gets the pivots' mean yaw
    lo, hi = torch.tensor([-12.0, -5]), torch.tensor([10.0, -2])
    opt = torch.optim.Adam(pm.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    std = torch.tensor([5.0, 2.0])
    for _ in range(400):
        even = lo + torch.from_numpy(rng.random((16, 2)).astype(np.float32)) * (hi - lo)
        loss = pivot_pose_loss(pm, even, pivot_pose, std)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _blend_yaw_error(pm, sweep, pivot_pose)
    assert after < 1.0, (before, after)
    # and the loss is zero only when the blend carries the pose: a blend pinned to one pivot is not
    one = torch.zeros(1, 2) + pivot_pose[5]
    assert pivot_pose_loss(pm, one, pivot_pose, std) < 0.05
    assert pivot_pose_loss(pm, one, torch.flip(pivot_pose, [0]), std) > 0.5
