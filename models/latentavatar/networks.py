"""The smaller networks of LatentAvatar: expression encoder, expression mapper, point decoder,
and the super-resolution U-Net."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class _SoftplusCPU(torch.autograd.Function):
    """softplus(x) = max(x, 0) + log(1 + exp(−|x|)); the backward is PyTorch's own.

    The same function as `F.softplus` (β 1, threshold 20: within 1e-6, and x itself above 20), built
    from operations the CPU runs vectorised. PyTorch's CPU softplus goes through a log1p that is not
    vectorised: on the point decoder's (4 · 1024 rays · 24 samples, 64) activations it took 36 ms
    against 1–4 ms for exp, log or sigmoid of the same tensor, and this one about 9 ms; a preview
    NeRF training step went from 255–267 ms to 201–229 (`avatar-studio bench train-step`, README)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.exp(-x.abs()).add_(1).log_().add_(x.clamp_min(0))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.ops.aten.softplus_backward(grad, x, 1.0, 20.0)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """`F.softplus` (β 1, threshold 20), computed by `_SoftplusCPU` on the CPU; on a GPU PyTorch's own."""
    return F.softplus(x) if x.device.type != "cpu" else _SoftplusCPU.apply(x)


class Softplus(nn.Module):
    """`nn.Softplus()` through `softplus`; no parameters, so state dicts are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return softplus(x)


def normalize_code(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale codes to unit RMS (the sphere of radius √D), as StyleGAN normalises its latents.

    Encoder and mapper then share a bounded space without saturating: a tanh bound was tried and
    the encoder drove every unit into saturation, where the gradient dies and θ stops carrying
    the expression.
    """
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


class ExpressionEncoder(nn.Module):
    """Face region (B, 3, e, e) in [-1, 1] → person-specific expression code θ (B, D)."""

    def __init__(self,
                 code_dim: int,          # D
                 in_res: int = 64,       # e, a power of two ≥ 16
                 base_channels: int = 32):
        super().__init__()
        layers, c, res = [nn.Conv2d(3, base_channels, 3, 1, 1), _act()], base_channels, in_res
        while res > 4:
            cout = min(c * 2, 256)
            layers += [nn.Conv2d(c, cout, 4, 2, 1), _act()]
            c, res = cout, res // 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c * 16, code_dim)
        self.in_res = in_res

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        assert face.ndim == 4 and face.shape[1:] == (3, self.in_res, self.in_res), face.shape
        return normalize_code(self.head(self.body(face).flatten(1)))


class ExpressionMapper(nn.Module):
    """Tracked expression controls (B, E) (jaw_open first) → θ (B, D); a small MLP.

    Inputs are standardised with the buffers `expr_mean` / `expr_std` (`set_stats`, from the
    training controls): FLAME controls mix units (jaw in radians, std ~0.05, beside coefficients of
    std ~1), and an unscaled jaw barely reaches the first layer. A state dict saved before the
    buffers existed loads with mean 0 and std 1, i.e. as it was trained.
    """

    def __init__(self, n_expr: int, code_dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_expr, hidden), _act(), nn.Linear(hidden, hidden), _act(),
                                 nn.Linear(hidden, code_dim))
        self.register_buffer("expr_mean", torch.zeros(n_expr))
        self.register_buffer("expr_std", torch.ones(n_expr))

    @torch.no_grad()
    def set_stats(self, expr: torch.Tensor, floor: float = 1e-4) -> None:
        """Standardise inputs with the mean and std of (N, E) training controls."""
        self.expr_mean.copy_(expr.mean(0))
        self.expr_std.copy_(expr.std(0).clamp_min(floor))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, fill in (("expr_mean", 0.0), ("expr_std", 1.0)):  # saved before the standardisation
            if prefix + name not in state_dict:
                state_dict[prefix + name] = torch.full_like(getattr(self, name), fill)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, expr: torch.Tensor) -> torch.Tensor:
        return normalize_code(self.net((expr - self.expr_mean) / self.expr_std))


class PointDecoder(nn.Module):
    """Summed tri-plane features (B, P, C) → density σ (B, P) and a feature vector (B, P, F).

    The first three feature channels are the colour in [0, 1] (sigmoid with a small margin, as in
    EG3D); σ = density_scale · softplus(raw + density_bias). The negative bias starts training from
    a mostly transparent volume, so the mask can grow into the matte rather than erode from a solid
    block.
    """

    def __init__(self, in_channels: int, feature_dim: int, hidden: int = 64, density_scale: float = 10.0,
                 density_bias: float = -4.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_channels, hidden), Softplus(), nn.Linear(hidden, hidden),
                                 Softplus(), nn.Linear(hidden, 1 + feature_dim))
        self.density_scale, self.density_bias = density_scale, density_bias

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 from here on, also when the step runs under bfloat16 autocast: the density bias moves the
        # pre-activation to about -4, where bfloat16's spacing (1/32) changes the density by 3 %, and the
        # transmittance is an exponential of a running sum over the samples (`volume_integrate`)
        out = self.net(feats).float()
        sigma = self.density_scale * softplus(out[..., 0] + self.density_bias)
        rgb = torch.sigmoid(out[..., 1:4]) * 1.002 - 0.001
        return sigma, torch.cat([rgb, out[..., 4:]], dim=-1)


class SuperResolution(nn.Module):
    """U-Net: low-res colour + features + mask (B, 3+F'+1, r, r) → image (B, 3, s, s), s = r·2^k.

    One down/up level with a skip at the input resolution, then k (upsample + 2 convs) stages; the
    output is a residual on the bilinearly upsampled low-res colour.
    """

    def __init__(self, in_channels: int, low_res: int, out_res: int, channels: int = 64, min_channels: int = 16):
        super().__init__()
        assert out_res % low_res == 0 and (out_res // low_res) & (out_res // low_res - 1) == 0, (low_res, out_res)
        c = channels
        self.inc = nn.Sequential(nn.Conv2d(in_channels, c, 3, 1, 1), _act())
        self.down = nn.Sequential(nn.Conv2d(c, c, 4, 2, 1), _act(), nn.Conv2d(c, c, 3, 1, 1), _act())
        self.merge = nn.Sequential(nn.Conv2d(2 * c, c, 3, 1, 1), _act())
        ups = []
        res = low_res
        while res < out_res:
            cout = max(min_channels, c // 2)
            ups.append(nn.Sequential(nn.Conv2d(c, cout, 3, 1, 1), _act(), nn.Conv2d(cout, cout, 3, 1, 1), _act()))
            c, res = cout, res * 2
        self.ups = nn.ModuleList(ups)
        self.to_rgb = nn.Conv2d(c, 3, 3, 1, 1)
        nn.init.zeros_(self.to_rgb.bias)
        self.to_rgb.weight.data.mul_(0.1)
        self.out_res = out_res

    def forward(self, x: torch.Tensor, low_rgb: torch.Tensor) -> torch.Tensor:
        h = self.inc(x)
        d = F.interpolate(self.down(h), size=h.shape[-2:], mode="bilinear", align_corners=False)
        h = self.merge(torch.cat([h, d], 1))
        for up in self.ups:
            h = up(F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False))
        base = F.interpolate(low_rgb, size=(self.out_res, self.out_res), mode="bilinear", align_corners=False)
        return base + self.to_rgb(h)
