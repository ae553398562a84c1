"""LatentAvatar: a latent-expression tri-plane head NeRF with super-resolution.

    face region ──encoder──► θ ◄──mapper── tracked expression controls
                              │
                     tri-plane generator (modulated convs)
                              │ planes (B, 3, C, H, W)
    camera(yaw, pitch) ─► rays ─► samples ─► tri-plane features ─► point MLP (σ, colour, features)
                              │ volume rendering
                     low-res colour + feature map + mask (B, ·, r, r)
                              │ super-resolution U-Net
                          image (B, 3, s, s)

Colours are in [0, 1] throughout. The background (where rays leave the head volume empty) is a
learned low-res image, so the mask is the accumulated opacity and is trained against the matte.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .camera import rays
from .networks import ExpressionEncoder, ExpressionMapper, PointDecoder, SuperResolution
from .rendering import sample_along_rays, volume_integrate
from .triplane import TriplaneGenerator, sample_triplane


@dataclass
class LatentAvatarConfig:
    code_dim: int = 64
    """Size of the latent expression code θ (128 in the paper)."""
    encoder_res: int = 64
    """Side of the face region fed to the encoder (128 in the paper)."""
    face_fraction: float = 0.75
    """Side of the face region as a share of the aligned crop."""
    face_offset_y: float = 0.04
    """Downward shift of the face region's centre, as a share of the crop (covers mouth and chin)."""
    n_expr: int = 12
    """Number of expression controls the mapper takes."""
    plane_res: int = 64
    """Side of each tri-plane (128 in the paper)."""
    plane_channels: int = 16
    """Channels of each tri-plane (32 in the paper)."""
    gen_max_channels: int = 128
    """Generator channels at 4x4."""
    gen_min_channels: int = 32
    """Generator channels at the plane resolution."""
    feature_dim: int = 16
    """Channels the point decoder emits (the first 3 are colour)."""
    decoder_hidden: int = 64
    """Hidden width of the point decoder."""
    low_res: int = 32
    """Side of the volume-rendered image."""
    out_res: int = 128
    """Side of the final image (after super-resolution)."""
    sr_channels: int = 64
    """Channels of the super-resolution U-Net at the low resolution."""
    n_samples: int = 24
    """Samples per ray."""
    radius: float = 4.0
    """Camera distance from the head centre (world units)."""
    half_extent: float = 1.0
    """Half the width of the crop, in world units, at the head centre's depth."""
    bound: float = 1.0
    """The tri-planes span [-bound, bound]³; density outside is zero."""
    density_scale: float = 10.0
    """σ = density_scale · softplus(raw - 4)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatentAvatarConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def face_region(images: torch.Tensor, cfg: LatentAvatarConfig) -> torch.Tensor:
    """(B, 3, S, S) aligned crops (any range) → (B, 3, e, e) fixed face square for the encoder.

    The aligned crops come from landmark-based alignment, so a fixed square of them is the face
    region "cropped from the landmarks" that the paper feeds its encoder.
    """
    s = images.shape[-1]
    side = int(round(s * cfg.face_fraction))
    x0 = (s - side) // 2
    y0 = min(s - side, max(0, x0 + int(round(s * cfg.face_offset_y))))
    face = images[..., y0:y0 + side, x0:x0 + side]
    return F.interpolate(face, size=(cfg.encoder_res, cfg.encoder_res), mode="bilinear", align_corners=False,
                         antialias=side > cfg.encoder_res)


class LatentAvatar(nn.Module):
    def __init__(self, cfg: LatentAvatarConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ExpressionEncoder(cfg.code_dim, cfg.encoder_res)
        self.mapper = ExpressionMapper(cfg.n_expr, cfg.code_dim)
        self.generator = TriplaneGenerator(cfg.code_dim, cfg.plane_channels, cfg.plane_res,
                                           cfg.gen_max_channels, cfg.gen_min_channels)
        self.decoder = PointDecoder(cfg.plane_channels, cfg.feature_dim, cfg.decoder_hidden, cfg.density_scale)
        self.superres = SuperResolution(cfg.feature_dim + 1, cfg.low_res, cfg.out_res, cfg.sr_channels)
        self.background = nn.Parameter(torch.zeros(1, 3, cfg.low_res, cfg.low_res))  # logits of the bg colour

    # ------------------------------------------------------------------ pieces
    def encode(self, face: torch.Tensor) -> torch.Tensor:
        """(B, 3, e, e) face regions in [0, 1] → θ (B, D)."""
        return self.encoder(face * 2 - 1)

    def encode_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) aligned crops in [0, 1] → θ (B, D)."""
        return self.encode(face_region(crops, self.cfg))

    def map_expression(self, expr: torch.Tensor) -> torch.Tensor:
        """(B, E) expression controls → θ (B, D)."""
        return self.mapper(expr)

    def planes(self, code: torch.Tensor) -> torch.Tensor:
        """θ (B, D) → tri-planes (B, 3, C, H, W)."""
        return self.generator(code)

    def render(self, planes: torch.Tensor, yaw: torch.Tensor, pitch: torch.Tensor,
               stratified: bool = False) -> dict[str, torch.Tensor]:
        """Render tri-planes from the camera of head pose (yaw, pitch) in degrees, each (B,).

        Returns image (B, 3, s, s), low (B, 3, r, r), mask (B, 1, r, r), depth (B, 1, r, r).
        """
        cfg = self.cfg
        b, r, n = planes.shape[0], cfg.low_res, cfg.n_samples
        assert yaw.shape == (b,) and pitch.shape == (b,), (yaw.shape, pitch.shape)
        origins, dirs = rays(yaw, pitch, r, cfg.radius, cfg.half_extent)         # (B, R, 3)
        t, deltas, pts = sample_along_rays(origins, dirs, cfg.radius - cfg.bound, cfg.radius + cfg.bound, n,
                                           stratified=stratified)
        feats = sample_triplane(planes, pts.reshape(b, -1, 3), cfg.bound)        # (B, R*S, C)
        sigma, values = self.decoder(feats)
        inside = (pts.reshape(b, -1, 3).abs() <= cfg.bound).all(-1)
        sigma = (sigma * inside).reshape(b, r * r, n)
        values = values.reshape(b, r * r, n, -1)
        out, acc, weights, _ = volume_integrate(sigma, values, deltas)           # (B, R, F), (B, R)
        depth = (weights * t).sum(-1) + (1 - acc) * (cfg.radius + cfg.bound)
        to_map = lambda v: v.reshape(b, r, r, -1).permute(0, 3, 1, 2)           # (B, R, C) → (B, C, r, r)
        mask = to_map(acc[..., None])
        bg = torch.sigmoid(self.background)
        low = to_map(out[..., :3]) + (1 - mask) * bg
        feat_map = to_map(out[..., 3:])
        image = self.superres(torch.cat([low, feat_map, mask], 1), low)
        return {"image": image, "low": low, "mask": mask, "depth": to_map(depth[..., None])}

    def forward(self, code: torch.Tensor, yaw: torch.Tensor, pitch: torch.Tensor,
                stratified: bool = False) -> dict[str, torch.Tensor]:
        return self.render(self.planes(code), yaw, pitch, stratified)
