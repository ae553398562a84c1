"""Cameras from tracked head pose: the head stays fixed in a canonical space, the camera moves.

Conventions (world = the canonical head space)::

    x → image right (of the frontal view), y → up, z → out of the face (towards the frontal camera)
    camera axes as in OpenCV: x right, y down, z forward (viewing direction)

The tracked head rotation is R_head = R_y(yaw) · R_x(-pitch) (yaw > 0 turns the face towards the
image's right side, pitch > 0 tilts it up; see `studio.tracking.data.POSE_NAMES`). Rendering the
canonical head from camera R_head⁻¹ gives the same image as rendering the rotated head from the
frontal camera, so the camera is placed at ``R_headᵀ · (0, 0, radius)`` looking at the origin.
Roll is not modelled: the FFHQ-style aligned crops already remove roll, scale and translation.

Intrinsics follow the aligned crop: a pinhole whose field of view shows ``half_extent`` world
units either side of the origin at distance ``radius`` (tan(fov/2) = half_extent / radius),
with the principal point at the crop centre. The crop is square, so one focal serves both axes.
"""
from __future__ import annotations

import math

import torch


def rotation_y(a: torch.Tensor) -> torch.Tensor:
    """(B,) radians → (B, 3, 3) rotation about +y (takes +z towards +x for a > 0)."""
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([torch.stack([c, z, s], -1), torch.stack([z, o, z], -1), torch.stack([-s, z, c], -1)], -2)


def rotation_x(a: torch.Tensor) -> torch.Tensor:
    """(B,) radians → (B, 3, 3) rotation about +x (takes +z towards -y for a > 0)."""
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([torch.stack([o, z, z], -1), torch.stack([z, c, -s], -1), torch.stack([z, s, c], -1)], -2)


def head_rotation(yaw_deg: torch.Tensor, pitch_deg: torch.Tensor) -> torch.Tensor:
    """(B,), (B,) degrees → (B, 3, 3) R_head = R_y(yaw) · R_x(-pitch)."""
    return rotation_y(torch.deg2rad(yaw_deg)) @ rotation_x(-torch.deg2rad(pitch_deg))


def cam2world(yaw_deg: torch.Tensor, pitch_deg: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera rotation (B, 3, 3) (columns = camera axes in world) and position (B, 3)."""
    rt = head_rotation(yaw_deg, pitch_deg).transpose(1, 2)                 # R_headᵀ
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=rt.dtype, device=rt.device))
    rot = rt @ flip                                                         # (B, 3, 3)
    pos = rt @ torch.tensor([0.0, 0.0, radius], dtype=rt.dtype, device=rt.device)  # (B, 3)
    return rot, pos


def pixel_directions(res: int, half_extent: float, radius: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """(R, 3) camera-space directions (unnormalised, z = 1) through pixel centres of a res x res image."""
    tan_half = half_extent / radius
    u = (torch.arange(res, device=device, dtype=dtype) + 0.5) / res * 2 - 1    # (res,) left → right
    v, uu = torch.meshgrid(u, u, indexing="ij")                                 # rows (down), cols (right)
    return torch.stack([uu * tan_half, v * tan_half, torch.ones_like(uu)], -1).reshape(-1, 3)


def rays(yaw_deg: torch.Tensor, pitch_deg: torch.Tensor, res: int, radius: float,
         half_extent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins (B, R, 3) and unit directions (B, R, 3) for a res x res image, R = res²."""
    rot, pos = cam2world(yaw_deg.float(), pitch_deg.float(), radius)
    d = pixel_directions(res, half_extent, radius, device=rot.device)           # (R, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    dirs = torch.einsum("bij,rj->bri", rot, d)                                  # (B, R, 3)
    origins = pos[:, None, :].expand_as(dirs)
    return origins, dirs


def fov_degrees(half_extent: float, radius: float) -> float:
    return math.degrees(2 * math.atan(half_extent / radius))
