"""Map a rosinality/stylegan2-pytorch `g_ema` state dict onto our (NVIDIA-named) Generator.

Both codebases use the same equalized-learning-rate convention: weights are stored unscaled and
multiplied at run time by lr_mul / sqrt(fan_in), biases by lr_mul; modulation biases start at 1;
the mapping network uses lr_mul 0.01 and pixel norm with eps 1e-8; ToRGB scales its style by
1 / sqrt(in_channels) and does not demodulate; the [1, 3, 3, 1] blur is normalized with gain 4
for up-sampling and padded (1, 1) after the stride-2 transposed convolution. So the mapping is a
renaming plus reshapes:

    style.{i+1}.weight/bias             -> mapping.fc{i}.weight/bias
    input.input [1, C, 4, 4]            -> synthesis.b4.const [C, 4, 4]
    conv1.*, to_rgb1.*                  -> synthesis.b4.conv1.*, synthesis.b4.torgb.*
    convs.{2k}, convs.{2k+1}, to_rgbs.k -> synthesis.b{8*2^k}.conv0, .conv1, .torgb
    *.conv.weight [1, O, I, k, k]       -> *.weight [O, I, k, k]
    *.conv.modulation.weight/bias       -> *.affine.weight/bias
    *.noise.weight [1]                  -> *.noise_strength []
    *.activate.bias                     -> *.bias
    to_rgb*.bias [1, 3, 1, 1]           -> *.torgb.bias [3]
    noises.noise_{j} [1, 1, R, R]       -> noise_const [R, R] of the j-th conv layer
    latent_avg (top level of the file)  -> mapping.w_avg

The one thing a state dict cannot tell is the mapping lr_mul (rosinality's `lr_mlp`, default
0.01); pass another value if the network was trained with one.
"""

import math
import re

import torch

from .networks import GeneratorConfig


class RosinalityFormatError(ValueError):
    pass


def _channels(sd, log_size):
    ch = {4: sd['input.input'].shape[1]}
    for k in range(log_size - 2):
        ch[2 ** (k + 3)] = sd[f'convs.{2 * k}.conv.weight'].shape[1]
    return ch


def infer_config(sd):
    """GeneratorConfig for a rosinality g_ema state dict (sizes read from the tensor shapes)."""
    for key in ('input.input', 'conv1.conv.weight', 'to_rgb1.conv.weight', 'style.1.weight'):
        if key not in sd:
            raise RosinalityFormatError(f'missing {key!r}')
    n_mlp = len([k for k in sd if re.fullmatch(r'style\.\d+\.weight', k)])
    num_rgbs = len([k for k in sd if re.fullmatch(r'to_rgbs\.\d+\.conv\.weight', k)])
    log_size = num_rgbs + 2
    resolution = 2 ** log_size
    style_dim = sd['style.1.weight'].shape[1]
    ch = _channels(sd, log_size)
    channel_max = ch[4]
    channel_base = ch[resolution] * resolution
    expected = {res: min(channel_base // res, channel_max) for res in ch}
    if expected != ch:
        raise RosinalityFormatError(f'channel widths {ch} do not follow min(base // res, max); cannot express them')
    blur = sd.get('convs.0.conv.blur.kernel')
    taps = [1, 3, 3, 1]
    if blur is not None:
        row = blur.sum(dim=0)
        row = row / row[0]
        taps = [round(float(v), 6) for v in row]
    return GeneratorConfig(
        z_dim=style_dim, w_dim=style_dim, img_resolution=resolution, img_channels=sd['to_rgb1.conv.weight'].shape[1],
        mapping_layers=n_mlp, mapping_lr_multiplier=0.01, channel_base=channel_base, channel_max=channel_max,
        resample_filter=taps,
    )


def convert_state_dict(sd, cfg, latent_avg=None, lr_mlp=0.01):
    """Our state dict (without resample_filter buffers) from a rosinality g_ema state dict."""
    out = {}
    rescale = lr_mlp / cfg.mapping_lr_multiplier      # 1 unless the file used another lr_mlp
    for i in range(cfg.mapping_layers):
        out[f'mapping.fc{i}.weight'] = sd[f'style.{i + 1}.weight'] * rescale
        out[f'mapping.fc{i}.bias'] = sd[f'style.{i + 1}.bias'] * rescale

    def styled(dst, src, noise_key):
        out[f'{dst}.weight'] = sd[f'{src}.conv.weight'].squeeze(0)
        out[f'{dst}.affine.weight'] = sd[f'{src}.conv.modulation.weight']
        out[f'{dst}.affine.bias'] = sd[f'{src}.conv.modulation.bias']
        out[f'{dst}.noise_strength'] = sd[f'{src}.noise.weight'].reshape([])
        out[f'{dst}.bias'] = sd[f'{src}.activate.bias']
        noise = sd.get(noise_key)
        if noise is not None:
            out[f'{dst}.noise_const'] = noise.reshape(noise.shape[-2:])

    def torgb(dst, src):
        out[f'{dst}.weight'] = sd[f'{src}.conv.weight'].squeeze(0)
        out[f'{dst}.affine.weight'] = sd[f'{src}.conv.modulation.weight']
        out[f'{dst}.affine.bias'] = sd[f'{src}.conv.modulation.bias']
        out[f'{dst}.bias'] = sd[f'{src}.bias'].reshape(-1)

    out['synthesis.b4.const'] = sd['input.input'].squeeze(0)
    styled('synthesis.b4.conv1', 'conv1', 'noises.noise_0')
    torgb('synthesis.b4.torgb', 'to_rgb1')
    log_size = int(math.log2(cfg.img_resolution))
    for k in range(log_size - 2):
        res = 2 ** (k + 3)
        styled(f'synthesis.b{res}.conv0', f'convs.{2 * k}', f'noises.noise_{2 * k + 1}')
        styled(f'synthesis.b{res}.conv1', f'convs.{2 * k + 1}', f'noises.noise_{2 * k + 2}')
        torgb(f'synthesis.b{res}.torgb', f'to_rgbs.{k}')
    if latent_avg is not None:
        out['mapping.w_avg'] = latent_avg.reshape(-1)
    return out


def mean_latent(G, n=4096, seed=0):
    """Average w over n random z (what rosinality's `mean_latent` computes), for files without latent_avg."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([n, G.z_dim], generator=gen)
    with torch.no_grad():
        return G.mapping(z, None)[:, 0].mean(dim=0)
