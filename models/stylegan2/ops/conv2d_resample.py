"""2-D convolution with optional FIR up/down-sampling, built from torch convolutions and
upfirdn2d. Up-sampling runs as a strided transposed convolution followed by a FIR blur,
down-sampling as a FIR blur followed by a strided convolution, so no pixel is computed twice.
"""

import torch
import torch.nn.functional as F

from .upfirdn2d import _parse_padding, get_filter_size, upfirdn2d


def _conv2d(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d / conv_transpose2d; flip_weight=False flips the kernel (a true convolution)."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    if w.shape[2] == 1 and w.shape[3] == 1 and stride == 1 and padding == 0 and x.shape[0] == 1:
        # 1x1 on one image (the fused ToRGB): a batched matmul beats the generic conv path.
        _, C, H, W = x.shape
        out = torch.bmm(w.reshape(groups, w.shape[0] // groups, w.shape[1]), x.reshape(groups, C // groups, H * W))
        return out.reshape(1, w.shape[0], H, W)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False, impl=None):
    """Convolve x with w, with FIR up- or down-sampling.

    Args:
        x: (B, groups * I, H, W) input.
        w: (groups * O, I, kh, kw) weight.
        f: low-pass filter for resampling (2-D or separable 1-D), None for box/identity.
        up, down: integer factors (one of them 1 for the fast paths below; both work).
        padding: int, [x, y] or [x0, x1, y0, y1] padding of the input.
        groups: grouped convolution (used by the fused modulated convolution).
        flip_weight: False: true convolution; True: correlation (faster, same with symmetric kernels).
    Returns:
        (B, groups * O, H', W') with H' = (H * up + pad_y - kh + 1) / down.
    """
    assert isinstance(x, torch.Tensor) and x.ndim == 4
    assert isinstance(w, torch.Tensor) and w.ndim == 4 and w.dtype == x.dtype
    assert isinstance(up, int) and up >= 1 and isinstance(down, int) and down >= 1
    out_channels, in_channels_per_group, kh, kw = w.shape
    fw, fh = get_filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Account for the filter's own footprint.
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    # 1x1 kernel + downsampling: filter and subsample first, then the cheap 1x1 conv.
    if kw == 1 and kh == 1 and (down > 1 and up == 1):
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return _conv2d(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 kernel + upsampling: the 1x1 conv at low resolution, then upsample.
    if kw == 1 and kh == 1 and (up > 1 and down == 1):
        x = _conv2d(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter, impl=impl)

    # Downsampling only: blur, then a strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return _conv2d(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling (optionally then downsampling): transposed strided convolution, then blur.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_channels_per_group, kh, kw)
            w = w.transpose(1, 2)
            w = w.reshape(groups * in_channels_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv2d(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=(not flip_weight))
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2, flip_filter=flip_filter, impl=impl)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
        return x

    # No resampling: plain convolution, padding folded in when symmetric.
    if up == 1 and down == 1:
        if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
            return _conv2d(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # Fallback: generic upfirdn2d, then a plain (strided) convolution.
    x = upfirdn2d(x, (f if up > 1 else None), up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter, impl=impl)
    x = _conv2d(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
    return x
