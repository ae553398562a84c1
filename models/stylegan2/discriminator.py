"""StyleGAN2 residual discriminator: image (B, C, R, R) [+ label] -> realness logit (B, 1).
Parameter names follow NVIDIA stylegan2-ada-pytorch (b{res}.fromrgb/conv0/conv1/skip, b4.mbstd/conv/fc/out)."""

import numpy as np
import torch
from torch import nn

from .layers import Conv2dLayer, FullyConnectedLayer, assert_shape
from .networks import MappingNetwork


class DiscriminatorBlock(nn.Module):
    """(B, tmp, R, R) -> (B, out, R/2, R/2): two 3x3 convs (the second with 2x FIR down) plus a 1x1 residual skip."""

    def __init__(self,
        in_channels,                    # Number of input channels, 0 = first block (reads the image).
        tmp_channels,                   # Number of intermediate channels.
        out_channels,                   # Number of output channels.
        resolution,                     # Resolution of this block.
        img_channels,                   # Number of input color channels.
        activation='lrelu',             # Activation function: 'relu', 'lrelu', etc.
        resample_filter=[1, 3, 3, 1],   # Low-pass filter to apply when resampling activations.
        conv_clamp=None,                # Clamp the output of convolution layers to +-X, None = disable clamping.
        use_fp16=False,                 # Use FP16 for this block (on CUDA only)?
        fp16_channels_last=False,       # Use channels-last memory format with FP16?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', torch.as_tensor(np.outer(resample_filter, resample_filter) / np.sum(resample_filter) ** 2, dtype=torch.float32))
        cl = self.channels_last
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation, conv_clamp=conv_clamp, channels_last=cl)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp, channels_last=cl)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                                 resample_filter=resample_filter, conv_clamp=conv_clamp, channels_last=cl)
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                resample_filter=resample_filter, channels_last=cl)

    def forward(self, x, img, force_fp32=False):
        use_fp16 = self.use_fp16 and not force_fp32 and (img if img is not None else x).device.type == 'cuda'
        dtype = torch.float16 if use_fp16 else torch.float32
        memory_format = torch.channels_last if self.channels_last and use_fp16 else torch.contiguous_format
        if x is not None:
            assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0:
            assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            x = self.fromrgb(img.to(dtype=dtype, memory_format=memory_format))
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=np.sqrt(0.5))
        return y.add_(x)


class MinibatchStdLayer(nn.Module):
    """Append the standard deviation over groups of samples as extra feature maps."""

    def __init__(self,
        group_size,         # Samples per group, None = whole minibatch.
        num_channels=1,     # Number of std channels to append.
    ):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        """(B, C, H, W) -> (B, C + num_channels, H, W). B must be a multiple of the group size."""
        N, C, H, W = x.shape
        G = min(self.group_size, N) if self.group_size is not None else N
        F = self.num_channels
        c = C // F
        y = x.reshape(G, -1, F, c, H, W)        # [G, n, F, c, H, W]
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)               # [n, F, c, H, W]
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])                # [n, F]
        y = y.reshape(-1, F, 1, 1)
        y = y.repeat(G, 1, H, W)                 # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self):
        return f'group_size={self.group_size}, num_channels={self.num_channels}'


class DiscriminatorEpilogue(nn.Module):
    """(B, C, 4, 4) -> (B, 1): minibatch std, 3x3 conv, fc, output (projected onto cmap when conditional)."""

    def __init__(self,
        in_channels,                # Number of input channels.
        cmap_dim,                   # Dimensionality of mapped conditioning label, 0 = no label.
        resolution,                 # Resolution of this block (4).
        mbstd_group_size=4,         # Group size for the minibatch standard deviation layer, None = entire minibatch.
        mbstd_num_channels=1,       # Number of features for the minibatch standard deviation layer, 0 = disable.
        activation='lrelu',         # Activation function: 'relu', 'lrelu', etc.
        conv_clamp=None,            # Clamp the output of convolution layers to +-X, None = disable clamping.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, cmap):
        assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            assert_shape(cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator. Returns (B, 1) logits (real > fake)."""

    def __init__(self,
        img_resolution,             # Input resolution, a power of two >= 8.
        img_channels=3,             # Number of input color channels.
        c_dim=0,                    # Conditioning label (C) dimensionality, 0 = unconditional.
        channel_base=32768,         # Overall multiplier for the number of channels.
        channel_max=512,            # Maximum number of channels in any layer.
        num_fp16_res=0,             # Use FP16 for the N highest resolutions (on CUDA).
        conv_clamp=None,            # Clamp the output of convolution layers to +-X, None = disable clamping.
        cmap_dim=None,              # Dimensionality of mapped conditioning label, None = default.
        mbstd_group_size=4,         # Minibatch std group size (the batch must be a multiple of it, or smaller).
        mbstd_num_channels=1,       # Minibatch std channels, 0 = disable.
        mapping_kwargs=None,        # Arguments for the label MappingNetwork.
    ):
        assert img_resolution >= 8 and img_resolution & (img_resolution - 1) == 0, 'img_resolution must be a power of two >= 8'
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0

        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels_dict[res], channels_dict[res // 2], resolution=res,
                                       img_channels=img_channels, conv_clamp=conv_clamp, use_fp16=(res >= fp16_resolution))
            setattr(self, f'b{res}', block)
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=4, mbstd_group_size=mbstd_group_size,
                                        mbstd_num_channels=mbstd_num_channels, conv_clamp=conv_clamp)

    def forward(self, img, c=None, **block_kwargs):
        """img: (B, img_channels, R, R) in [-1, 1]; c: (B, c_dim) or None. Returns (B, 1)."""
        assert_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        x = None
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            x = block(x, img if x is None else None, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, cmap)

    def extra_repr(self):
        return f'c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'
