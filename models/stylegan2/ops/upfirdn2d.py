"""upfirdn2d: upsample by zero insertion, pad (or crop), FIR filter, downsample.

    y = downsample(conv(pad(upsample(x, up), padding), f * gain), down)

`upfirdn2d` is the public function; `_Upfirdn2dCuda` wraps the kernel in `upfirdn2d.cu` for
autograd (the op is linear, so its gradient is upfirdn2d again with up/down swapped and the
filter flipped); `_upfirdn2d_ref` is the plain-PyTorch twin and the specification.
Filters are 2-D `(fh, fw)` or 1-D `(ft,)` meaning the separable filter f[:, None] * f[None, :].
"""

import numpy as np
import torch
import torch.nn.functional as F

from . import _build

_SOURCES = ['upfirdn2d.cpp', 'upfirdn2d.cu']


def _plugin(impl, x):
    return _build.select_plugin('upfirdn2d', impl, x, 'stylegan2_upfirdn2d', _SOURCES)


def _parse_scaling(scaling):
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    sx, sy = scaling
    assert sx >= 1 and sy >= 1, scaling
    return int(sx), int(sy)


def _parse_padding(padding):
    if isinstance(padding, int):
        padding = [padding, padding]
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    px0, px1, py0, py1 = padding
    return int(px0), int(px1), int(py0), int(py1)


def get_filter_size(f):
    """(fw, fh) of a 2-D or separable 1-D filter; (1, 1) for None."""
    if f is None:
        return 1, 1
    assert isinstance(f, torch.Tensor) and f.ndim in (1, 2), 'filter must be a 1-D or 2-D tensor'
    fw = f.shape[-1]
    fh = f.shape[0]
    return int(fw), int(fh)


def setup_filter(f, device=torch.device('cpu'), normalize=True, flip_filter=False, gain=1, separable=None):
    """Turn a list of taps into a filter tensor, as the networks store it in `resample_filter` buffers.

    1-D taps become the 2-D outer product unless separable (default: separable when >= 8 taps).
    Normalized to sum 1, then scaled so the whole filter multiplies the signal by `gain`.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32, device='cpu')
    assert f.ndim in (0, 1, 2) and f.numel() > 0
    if f.ndim == 0:
        f = f[np.newaxis]
    if separable is None:
        separable = (f.ndim == 1 and f.numel() >= 8)
    if f.ndim == 1 and not separable:
        f = f.ger(f)
    assert f.ndim == (1 if separable else 2)
    if normalize:
        f /= f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl=None):
    """Pad, upsample, filter and downsample a batch of images.

    Args:
        x: (B, C, H, W) images.
        f: (fh, fw) filter, (ft,) separable filter, or None for identity.
        up, down: int or [x, y] integer factors.
        padding: int, [x, y] or [x0, x1, y0, y1]; negative values crop.
        flip_filter: False computes a true convolution (the filter is flipped), True a correlation.
        gain: overall signal gain.
        impl: 'auto' | 'ref' | 'cuda' (None: the current default, see ops.default_impl).
    Returns:
        (B, C, (H*up_y + py0 + py1 - fh) // down_y + 1, (W*up_x + px0 + px1 - fw) // down_x + 1)
    """
    assert isinstance(x, torch.Tensor) and x.ndim == 4, 'upfirdn2d expects (B, C, H, W)'
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    up = _parse_scaling(up)
    down = _parse_scaling(down)
    padding = _parse_padding(padding)
    plugin = _plugin(impl, x)
    if plugin is not None:
        return _Upfirdn2dCuda.apply(x, f, up, down, padding, bool(flip_filter), float(gain), plugin)
    return _upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def _upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Plain-PyTorch upfirdn2d; differentiable in x (and f) by autograd."""
    assert x.ndim == 4
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    assert f.ndim in (1, 2) and f.is_floating_point()
    batch_size, num_channels, in_height, in_width = x.shape
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)

    # Work with a 2-D filter (a separable one becomes its outer product) carrying the gain.
    f = f.to(x.dtype)
    f = f.ger(f) if f.ndim == 1 else f
    f = f * gain
    assert fh_fw_ok(f, padding=(padx0, padx1, pady0, pady1), up=(upx, upy), size=(in_height, in_width))
    fh, fw = f.shape

    if upx == 1 and upy == 1:
        # Pad (negative pads crop), correlate with the flipped filter; downsample through the stride.
        conv_pad = 0
        if padx0 == padx1 and pady0 == pady1 and padx0 >= 0 and pady0 >= 0:
            conv_pad = (pady0, padx0)      # symmetric: let the convolution pad, saving a copy
        elif any(p != 0 for p in (padx0, padx1, pady0, pady1)):
            x = F.pad(x, [padx0, padx1, pady0, pady1])
        w = (f if flip_filter else f.flip([0, 1]))[None, None].expand(num_channels, 1, fh, fw).contiguous()
        return F.conv2d(x, w, groups=num_channels, stride=(downy, downx), padding=conv_pad)

    # Upsampling: zero insertion followed by a convolution is a strided transposed convolution
    # with the unflipped filter; its output t satisfies y[o] = t[o + f - 1 - pad0].
    w = (f.flip([0, 1]) if flip_filter else f)[None, None].expand(num_channels, 1, fh, fw).contiguous()
    t = F.conv_transpose2d(x, w, stride=(upy, upx), groups=num_channels)
    out_h = in_height * upy + pady0 + pady1 - fh + 1
    out_w = in_width * upx + padx0 + padx1 - fw + 1
    cy, cx = fh - 1 - pady0, fw - 1 - padx0
    x = F.pad(t, [-cx, out_w + cx - t.shape[3], -cy, out_h + cy - t.shape[2]])
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def fh_fw_ok(f, padding, up, size):
    """The padded, upsampled input must be at least as large as the filter."""
    padx0, padx1, pady0, pady1 = padding
    return (size[0] * up[1] + pady0 + pady1 >= f.shape[0]) and (size[1] * up[0] + padx0 + padx1 >= f.shape[1])


class _Upfirdn2dCuda(torch.autograd.Function):
    """Autograd wrapper around a kernel `plugin.upfirdn2d(x, f2d, upx, upy, downx, downy,
    padx0, padx1, pady0, pady1, flip, stream)` that takes a 2-D float32 filter with the gain
    already folded in. The filter gets no gradient."""

    @staticmethod
    def forward(ctx, x, f, up, down, padding, flip_filter, gain, plugin):
        upx, upy = up
        downx, downy = down
        padx0, padx1, pady0, pady1 = padding
        fw, fh = get_filter_size(f)
        in_h, in_w = x.shape[2], x.shape[3]
        out_h = (in_h * upy + pady0 + pady1 - fh) // downy + 1
        out_w = (in_w * upx + padx0 + padx1 - fw) // downx + 1
        assert out_h >= 1 and out_w >= 1, 'upfirdn2d: output would be empty'
        f2 = f.float() if f.ndim == 2 else f.float().ger(f.float())
        f2 = (f2 * gain).contiguous()
        y = plugin.upfirdn2d(x.contiguous(), f2.to(x.device), upx, upy, downx, downy,
                             padx0, padx1, pady0, pady1, flip_filter, _build.current_stream(x))
        ctx.save_for_backward(f)
        ctx.conf = (up, down, padding, flip_filter, gain, plugin, (in_h, in_w), (out_h, out_w))
        return y

    @staticmethod
    def backward(ctx, dy):
        f, = ctx.saved_tensors
        (upx, upy), (downx, downy), (padx0, _, pady0, _), flip_filter, gain, plugin, (in_h, in_w), (out_h, out_w) = ctx.conf
        fw, fh = get_filter_size(f)
        dx = None
        if ctx.needs_input_grad[0]:
            # The adjoint: upsample dy by `down`, correlate with the flipped filter, keep every `up`-th sample.
            p = [
                fw - padx0 - 1,
                in_w * upx - out_w * downx + padx0 - upx + 1,
                fh - pady0 - 1,
                in_h * upy - out_h * downy + pady0 - upy + 1,
            ]
            dx = _Upfirdn2dCuda.apply(dy, f, (downx, downy), (upx, upy), p, not flip_filter, gain, plugin)
            assert dx.shape[2:] == (in_h, in_w)
        return dx, None, None, None, None, None, None, None


class EmulatedPlugin:
    """The kernel contract of upfirdn2d.cpp implemented with the reference (used by CPU tests to
    check the autograd wrapper; never used for speed)."""

    @staticmethod
    def upfirdn2d(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, stream):
        assert f.ndim == 2 and f.dtype == torch.float32 and x.is_contiguous()
        with torch.no_grad():
            return _upfirdn2d_ref(x, f, [upx, upy], [downx, downy], [padx0, padx1, pady0, pady1], flip, 1)


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl=None):
    """Filter (B, C, H, W) with f, padding so the output keeps H, W (plus `padding`)."""
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl=None):
    """(B, C, H, W) -> (B, C, H*up, W*up), low-pass filtered with f; keeps the signal's mean."""
    upx, upy = _parse_scaling(up)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [
        padx0 + (fw + upx - 1) // 2,
        padx1 + (fw - upx) // 2,
        pady0 + (fh + upy - 1) // 2,
        pady1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl=None):
    """(B, C, H, W) -> (B, C, H/down, W/down), low-pass filtered with f."""
    downx, downy = _parse_scaling(down)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [
        padx0 + (fw - downx + 1) // 2,
        padx1 + (fw - downx) // 2,
        pady0 + (fh - downy + 1) // 2,
        pady1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
