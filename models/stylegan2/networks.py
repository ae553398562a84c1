"""StyleGAN2 generator: mapping network z -> w (with running average and truncation) and
synthesis network ws -> image (modulated/demodulated convolutions, per-layer noise, skip ToRGB,
FIR up-sampling). Parameter names follow NVIDIA stylegan2-ada-pytorch, so its checkpoints load
as a state-dict copy. Images are (B, C, H, W) float in [-1, 1]."""

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .layers import FullyConnectedLayer, assert_shape, modulated_conv2d, normalize_2nd_moment
from .ops import bias_act, setup_filter, upsample2d
from .ops.bias_act import activation_funcs

NOISE_MODES = ('const', 'random', 'none')


class MappingNetwork(nn.Module):
    """(B, z_dim) latents [+ (B, c_dim) labels] -> (B, num_ws, w_dim) intermediate latents."""

    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality, 0 = no latent.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = no label.
        w_dim,                      # Intermediate latent (W) dimensionality.
        num_ws,                     # Number of intermediate latents to output, None = do not broadcast.
        num_layers=8,               # Number of mapping layers.
        embed_features=None,        # Label embedding dimensionality, None = same as w_dim.
        layer_features=None,        # Number of intermediate features in the mapping layers, None = same as w_dim.
        activation='lrelu',         # Activation function: 'relu', 'lrelu', etc.
        lr_multiplier=0.01,         # Learning rate multiplier for the mapping layers.
        w_avg_beta=0.998,           # Decay for tracking the moving average of W during training, None = do not track.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features_list = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features_list[idx], features_list[idx + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        """Truncation pulls the first `truncation_cutoff` ws (None: all) towards w_avg:
        w_avg + truncation_psi * (w - w_avg). update_emas=True (training) moves w_avg towards the batch mean."""
        x = None
        if self.z_dim > 0:
            assert_shape(z, [None, self.z_dim])
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            assert c is not None, 'this generator is conditional: pass c'
            assert_shape(c, [None, self.c_dim])
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        if update_emas and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])                    # [B, L, w_dim]

        if truncation_psi != 1:
            assert self.w_avg_beta is not None
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self):
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (+ optional 2x FIR upsampling), noise, bias, leaky ReLU."""

    def __init__(self,
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        w_dim,                          # Intermediate latent (W) dimensionality.
        resolution,                     # Resolution of this layer.
        kernel_size=3,                  # Convolution kernel size.
        up=1,                           # Integer upsampling factor.
        use_noise=True,                 # Enable noise input?
        activation='lrelu',             # Activation function: 'relu', 'lrelu', etc.
        resample_filter=[1, 3, 3, 1],   # Low-pass filter to apply when resampling activations.
        conv_clamp=None,                # Clamp the output of convolution layers to +-X, None = disable clamping.
        channels_last=False,            # Use channels_last format for the weights?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = activation_funcs[activation].def_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        """(B, in_channels, R/up, R/up), (B, w_dim) -> (B, out_channels, R, R)."""
        assert noise_mode in NOISE_MODES, f'noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}'
        in_resolution = self.resolution // self.up
        assert_shape(x, [None, self.in_channels, in_resolution, in_resolution])
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == 'const':
            noise = self.noise_const * self.noise_strength

        flip_weight = (self.up == 1)  # slightly faster
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=flip_weight, fused_modconv=fused_modconv)

        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}, '
                f'resolution={self.resolution}, up={self.up}, activation={self.activation}')


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 convolution to image channels, plus bias."""

    def __init__(self,
        in_channels,            # Number of input channels.
        out_channels,           # Number of output (image) channels.
        w_dim,                  # Intermediate latent (W) dimensionality.
        kernel_size=1,          # Convolution kernel size.
        conv_clamp=None,        # Clamp the output to +-X, None = disable clamping.
        channels_last=False,    # Use channels_last format for the weights?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True):
        """(B, in_channels, R, R), (B, w_dim) -> (B, out_channels, R, R)."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self):
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}'


# On a CPU the synthesis blocks keep their activations channels-last (NHWC) in fp32 too, unless one
# sample runs the fused path: oneDNN's convolutions run on that layout without reordering each tensor.
# Generator forward + backward at batch 8, 128 px, 2-core Xeon (2026-12-06): 292 -> 254 ms. The same
# function to float rounding. False keeps NCHW (`studio.compute.cpu_channels_last` sets it).
CPU_CHANNELS_LAST = True


def fused_modconv_default(training: bool, dtype, ws) -> bool:
    """Whether a synthesis block folds the styles into per-sample weights (one grouped convolution)
    instead of scaling the activations around one shared-weight convolution. NVIDIA's rule (fused when
    not training, in fp32 or for one sample), except that on a CPU only one sample is fused: there the
    grouped convolution of a batch is slower (a 128 px generator, batch 4, forward + backward, one
    thread: 364 ms fused against 283 ms; forward only 137 against 112), for the same result to float
    rounding (tests/models/stylegan2/test_sg2_networks.py)."""
    batch = int(ws.shape[0])
    if ws.device.type == "cpu" and batch > 1:
        return False
    return (not training) and (dtype == torch.float32 or batch == 1)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (2x up) conv0, conv1, ToRGB added to the upsampled skip image."""

    def __init__(self,
        in_channels,                        # Number of input channels, 0 = first block.
        out_channels,                       # Number of output channels.
        w_dim,                              # Intermediate latent (W) dimensionality.
        resolution,                         # Resolution of this block.
        img_channels,                       # Number of output color channels.
        is_last,                            # Is this the last block?
        architecture='skip',                # Architecture: only 'skip' (StyleGAN2 config-f generator).
        resample_filter=[1, 3, 3, 1],       # Low-pass filter to apply when resampling activations.
        conv_clamp=None,                    # Clamp the output of convolution layers to +-X, None = disable clamping.
        use_fp16=False,                     # Use FP16 for this block (on CUDA only)?
        fp16_channels_last=False,           # Use channels-last memory format with FP16?
        **layer_kwargs,                     # Arguments for SynthesisLayer.
    ):
        if architecture != 'skip':
            raise ValueError(f"SynthesisBlock: only architecture='skip' is implemented, got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
            conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last)
        self.num_torgb += 1

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, **layer_kwargs):
        """x: (B, in_channels, R/2, R/2) or None; img: (B, img_channels, R/2, R/2) or None;
        ws: (B, num_conv + num_torgb, w_dim). Returns x (B, out_channels, R, R), img (B, img_channels, R, R)."""
        assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        use_fp16 = self.use_fp16 and not force_fp32 and ws.device.type == 'cuda'
        dtype = torch.float16 if use_fp16 else torch.float32
        memory_format = torch.channels_last if self.channels_last and use_fp16 else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = fused_modconv_default(self.training, dtype, ws)
        if ws.device.type == 'cpu' and CPU_CHANNELS_LAST and not fused_modconv:
            memory_format = torch.channels_last

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).expand([ws.shape[0], -1, -1, -1])
            if memory_format != torch.contiguous_format:
                x = x.contiguous(memory_format=memory_format)
        else:
            assert_shape(x, [None, self.in_channels, self.resolution // 2, self.resolution // 2])
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        if img is not None:
            assert_shape(img, [None, self.img_channels, self.resolution // 2, self.resolution // 2])
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
        y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        img = img.add_(y) if img is not None else y
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture}'


class SynthesisNetwork(nn.Module):
    """(B, num_ws, w_dim) -> (B, img_channels, img_resolution, img_resolution) image in about [-1, 1]."""

    def __init__(self,
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output image resolution, a power of two >= 4.
        img_channels,               # Number of color channels.
        channel_base=32768,         # Overall multiplier for the number of channels.
        channel_max=512,            # Maximum number of channels in any layer.
        num_fp16_res=0,             # Use FP16 for the N highest resolutions (on CUDA).
        **block_kwargs,             # Arguments for SynthesisBlock.
    ):
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0, 'img_resolution must be a power of two >= 4'
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res // 2] if res > 4 else 0
            out_channels = channels_dict[res]
            use_fp16 = (res >= fp16_resolution)
            is_last = (res == self.img_resolution)
            block = SynthesisBlock(in_channels, out_channels, w_dim=w_dim, resolution=res,
                img_channels=img_channels, is_last=is_last, use_fp16=use_fp16, **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f'b{res}', block)

    def forward(self, ws, noise_mode='const', **block_kwargs):
        assert_shape(ws, [None, self.num_ws, self.w_dim])
        assert noise_mode in NOISE_MODES, f'noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}'
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            cur_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, cur_ws, noise_mode=noise_mode, **block_kwargs)
        return img

    def extra_repr(self):
        return f'w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'


class Generator(nn.Module):
    """StyleGAN2 generator: z (B, z_dim) -> image (B, img_channels, R, R) in about [-1, 1]."""

    def __init__(self,
        z_dim,                  # Input latent (Z) dimensionality.
        w_dim,                  # Intermediate latent (W) dimensionality.
        img_resolution,         # Output resolution, a power of two (64..1024 in practice, >= 4 works).
        img_channels=3,         # Number of output color channels.
        c_dim=0,                # Conditioning label (C) dimensionality, 0 = unconditional.
        mapping_kwargs=None,    # Arguments for MappingNetwork (num_layers, lr_multiplier, w_avg_beta, ...).
        synthesis_kwargs=None,  # Arguments for SynthesisNetwork (channel_base, channel_max, num_fp16_res, conv_clamp, ...).
    ):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        self.init_kwargs = dict(z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                c_dim=c_dim, mapping_kwargs=dict(mapping_kwargs), synthesis_kwargs=dict(synthesis_kwargs))
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, noise_mode='const', update_emas=False, **synthesis_kwargs):
        """z: (B, z_dim); c: (B, c_dim) or None. Returns (B, img_channels, R, R)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)

    @classmethod
    def from_config(cls, cfg):
        """Build an untrained generator from a GeneratorConfig."""
        return cls(**cfg.generator_kwargs())


@dataclass
class GeneratorConfig:
    """Everything needed to rebuild a Generator (plain types, JSON round-trippable)."""

    z_dim: int = 512
    """Input latent (Z) dimensionality."""
    w_dim: int = 512
    """Intermediate latent (W) dimensionality."""
    img_resolution: int = 1024
    """Output resolution, a power of two (64..1024)."""
    img_channels: int = 3
    """Output color channels."""
    c_dim: int = 0
    """Conditioning label dimensionality, 0 = unconditional."""
    mapping_layers: int = 8
    """Number of fully connected layers in the mapping network."""
    mapping_lr_multiplier: float = 0.01
    """Learning rate multiplier of the mapping layers (also the stored-weight scale)."""
    w_avg_beta: float = 0.998
    """Decay of the running average of w used for truncation."""
    channel_base: int = 32768
    """Channels at resolution R are min(channel_base // R, channel_max)."""
    channel_max: int = 512
    """Maximum channels of any layer."""
    num_fp16_res: int = 0
    """Run the N highest resolutions in FP16 on CUDA."""
    conv_clamp: float | None = None
    """Clamp convolution outputs to +-X (256 in NVIDIA's FP16 configs), None = off."""
    resample_filter: list = field(default_factory=lambda: [1, 3, 3, 1])
    """Taps of the low-pass filter used for up-sampling."""

    @classmethod
    def small(cls, resolution=128):
        """CPU-trainable: 256-d w, 2-layer mapping, at most 128 channels, 32 at 128x128."""
        return cls(z_dim=256, w_dim=256, img_resolution=resolution, mapping_layers=2,
                   channel_base=4096, channel_max=128)

    @classmethod
    def ffhq_config_f(cls, resolution=1024):
        """NVIDIA FFHQ config-f shapes: 512-d z and w, 8-layer mapping, 512 channels up to 64x64 (18 ws at 1024)."""
        return cls(z_dim=512, w_dim=512, img_resolution=resolution, mapping_layers=8,
                   channel_base=32768, channel_max=512)

    def generator_kwargs(self):
        return dict(
            z_dim=self.z_dim, w_dim=self.w_dim, img_resolution=self.img_resolution, img_channels=self.img_channels, c_dim=self.c_dim,
            mapping_kwargs=dict(num_layers=self.mapping_layers, lr_multiplier=self.mapping_lr_multiplier, w_avg_beta=self.w_avg_beta),
            synthesis_kwargs=dict(channel_base=self.channel_base, channel_max=self.channel_max, num_fp16_res=self.num_fp16_res,
                                  conv_clamp=self.conv_clamp, resample_filter=list(self.resample_filter)),
        )

    def build(self):
        """A freshly initialized Generator with this configuration."""
        return Generator.from_config(self)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f'GeneratorConfig: unknown fields {sorted(unknown)}')
        return cls(**d)
