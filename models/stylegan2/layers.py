"""Building blocks shared by the StyleGAN2 generator and discriminator: equalized-learning-rate
fully connected and convolution layers, the modulated convolution, shape checks."""

import numpy as np
import torch
from torch import nn

from .ops import bias_act, conv2d_resample, setup_filter
from .ops.bias_act import activation_funcs


def assert_shape(tensor, ref_shape):
    """Raise ValueError unless tensor.shape matches ref_shape (None matches any size)."""
    if tensor.ndim != len(ref_shape):
        raise ValueError(f'Wrong number of dimensions: got {tensor.ndim} {tuple(tensor.shape)}, expected {len(ref_shape)} {tuple(ref_shape)}')
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is not None and size != ref_size:
            raise ValueError(f'Wrong size for dimension {idx}: got {tuple(tensor.shape)}, expected {tuple(ref_shape)}')


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """Scale x to unit mean square along dim (the mapping network's pixel norm)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalized learning rate: weights are stored as N(0, 1) / lr_multiplier
    and scaled by lr_multiplier / sqrt(in_features) at run time."""

    def __init__(self,
        in_features,            # Number of input features.
        out_features,           # Number of output features.
        bias=True,              # Apply additive bias before the activation?
        activation='linear',    # Activation function: 'relu', 'lrelu', etc.
        lr_multiplier=1,        # Learning rate multiplier.
        bias_init=0,            # Initial value of the additive bias.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        """(B, in_features) -> (B, out_features)."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act(x, b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}'


class Conv2dLayer(nn.Module):
    """Convolution with equalized learning rate, optional FIR up/down-sampling, bias, activation."""

    def __init__(self,
        in_channels,                # Number of input channels.
        out_channels,               # Number of output channels.
        kernel_size,                # Width and height of the convolution kernel.
        bias=True,                  # Apply additive bias before the activation?
        activation='linear',        # Activation function: 'relu', 'lrelu', etc.
        up=1,                       # Integer upsampling factor.
        down=1,                     # Integer downsampling factor.
        resample_filter=[1, 3, 3, 1],   # Low-pass filter to apply when resampling activations.
        conv_clamp=None,            # Clamp the output to +-X, None = disable clamping.
        channels_last=False,        # Expect the input to have memory_format=channels_last?
        trainable=True,             # Update the weights of this layer during training?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = activation_funcs[activation].def_gain
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer('weight', weight)
            if bias is not None:
                self.register_buffer('bias', bias)
            else:
                self.bias = None

    def forward(self, x, gain=1):
        """(B, in_channels, H, W) -> (B, out_channels, H * up / down, W * up / down)."""
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = (self.up == 1)  # slightly faster
        x = conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding, flip_weight=flip_weight)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, '
                f'up={self.up}, down={self.down}')


def modulated_conv2d(
    x,                          # Input tensor of shape [batch_size, in_channels, in_height, in_width].
    weight,                     # Weight tensor of shape [out_channels, in_channels, kernel_height, kernel_width].
    styles,                     # Modulation coefficients of shape [batch_size, in_channels].
    noise=None,                 # Optional noise tensor to add to the output activations.
    up=1,                       # Integer upsampling factor.
    down=1,                     # Integer downsampling factor.
    padding=0,                  # Padding with respect to the upsampled image.
    resample_filter=None,       # Low-pass filter to apply when resampling activations.
    demodulate=True,            # Apply weight demodulation?
    flip_weight=True,           # False = convolution, True = correlation (matches torch.nn.functional.conv2d).
    fused_modconv=True,         # Perform modulation, convolution, and demodulation as a single fused operation?
):
    """StyleGAN2 modulated convolution: scale the weight's input channels by the style,
    renormalize each output filter to unit norm (demodulate), convolve."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    assert_shape(weight, [out_channels, in_channels, kh, kw])
    assert_shape(x, [batch_size, in_channels, None, None])
    assert_shape(styles, [batch_size, in_channels])

    # Pre-normalize inputs to avoid FP16 overflow.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)

    # Per-sample weights and demodulation coefficients.
    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)     # [B, O, I, kh, kw]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()               # [B, O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)

    # Unfused: scale activations before and after a shared-weight convolution.
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample(x=x, w=weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            x = torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        elif noise is not None:
            x = x.add_(noise.to(x.dtype))
        return x

    # Fused: one grouped convolution with a per-sample weight.
    x = x.reshape(1, -1, *x.shape[2:])                                        # [1, B*I, H, W]
    w = w.reshape(-1, in_channels, kh, kw)                                    # [B*O, I, kh, kw]
    x = conv2d_resample(x=x, w=w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                        groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise.to(x.dtype))
    return x
