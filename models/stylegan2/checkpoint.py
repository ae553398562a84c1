"""Load a StyleGAN2 generator from any of the formats we accept, without running code from the file.

    NVIDIA stylegan2-ada-pytorch / stylegan3 (`networks_stylegan2`) .pkl -> G_ema
    rosinality/stylegan2-pytorch .pt (torch.save dict with 'g_ema' [, 'latent_avg'])
    our own: <name>.safetensors or <name>.pt (state dict) + <name>.json (GeneratorConfig)

`load_generator(path)` sniffs the bytes, not the extension. Anything else raises
`CheckpointError` naming what was expected.
"""

import argparse
import io
import json
import os
import pickle
import tempfile
import zipfile

import torch

from . import nvidia_pickle, rosinality
from .networks import Generator, GeneratorConfig

FORMAT_NAME = 'avatar-studio/stylegan2-generator'
FORMAT_VERSION = 1
EXPECTED = ("an NVIDIA stylegan2-ada-pytorch/stylegan3 network pickle (.pkl with 'G_ema'), "
            "a rosinality stylegan2-pytorch checkpoint (.pt with 'g_ema'), "
            "or an Avatar Studio generator (.safetensors or .pt state dict with a .json config)")
_NVIDIA_G_CLASSES = ('training.networks.Generator', 'training.networks_stylegan2.Generator')
_LEGACY_TORCH_MAGIC = b'\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19'


class CheckpointError(ValueError):
    """The file is not a generator checkpoint we can read (the message says what was expected)."""


def config_path(path):
    """The JSON config that sits beside a state-dict file: foo.safetensors -> foo.json."""
    return os.path.splitext(os.fspath(path))[0] + '.json'


# ----------------------------------------------------------------------------------------------
# Format detection.

def detect_format(path):
    """'nvidia-pkl', 'torch-zip' (rosinality or ours, told apart by content), 'safetensors'; else CheckpointError."""
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f'cannot read {path}: {e}') from e
    if head.startswith(b'PK\x03\x04'):
        return 'torch-zip'
    if head.startswith(_LEGACY_TORCH_MAGIC):
        return 'torch-legacy'
    if head[:1] == b'\x80':
        return 'nvidia-pkl'
    if len(head) >= 9:
        n = int.from_bytes(head[:8], 'little')
        if 2 <= n < 100_000_000 and head[8:9] == b'{':
            return 'safetensors'
    raise CheckpointError(f'{path} is not a StyleGAN2 checkpoint: expected {EXPECTED}')


# ----------------------------------------------------------------------------------------------
# Loading.

def load_generator(path, device='cpu'):
    """(Generator in eval mode, GeneratorConfig) from a checkpoint in any supported format."""
    kind = detect_format(path)
    if kind == 'nvidia-pkl':
        G, cfg = _load_nvidia(path)
    elif kind == 'safetensors':
        G, cfg = _load_safetensors(path)
    else:
        G, cfg = _load_torch(path)
    return G.eval().requires_grad_(False).to(device), cfg


def _build_and_fill(cfg, state_dict, what):
    try:
        G = Generator.from_config(cfg)
    except (AssertionError, ValueError, TypeError) as e:
        raise CheckpointError(f'{what}: unsupported generator configuration {cfg}: {e}') from e
    state_dict = {k: (v.detach().float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in state_dict.items()}
    try:
        G.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f'{what}: tensors do not match a StyleGAN2 generator of the stated shape: {e}') from e
    return G


def _load_nvidia(path):
    try:
        with open(path, 'rb') as f:
            data = nvidia_pickle.load_pickle(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f'{path}: refused or unreadable pickle ({e}); expected {EXPECTED}') from e
    if not isinstance(data, dict) or 'G_ema' not in data:
        keys = sorted(data)[:10] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: pickle has no 'G_ema' network (found {keys}); expected {EXPECTED}")
    G_ema = data['G_ema']
    if not isinstance(G_ema, nvidia_pickle.PersistentObject):
        raise CheckpointError(f"{path}: 'G_ema' is {type(G_ema).__name__}, expected a persistent network object")
    if G_ema.class_name not in _NVIDIA_G_CLASSES:
        hint = ' (StyleGAN3 alias-free generators are a different architecture)' if 'stylegan3' in G_ema.class_name else ''
        raise CheckpointError(f'{path}: G_ema is {G_ema.class_name}{hint}; expected one of {_NVIDIA_G_CLASSES}')
    cfg = _config_from_nvidia_kwargs(G_ema, path)
    state = nvidia_pickle.flatten_state(G_ema)
    return _build_and_fill(cfg, state, path), cfg


def _config_from_nvidia_kwargs(G_ema, path):
    kw = G_ema.init_kwargs
    for name, value in zip(('z_dim', 'c_dim', 'w_dim', 'img_resolution', 'img_channels'), G_ema.init_args):
        kw.setdefault(name, value)
    missing = [k for k in ('z_dim', 'w_dim', 'img_resolution', 'img_channels') if k not in kw]
    if missing:
        raise CheckpointError(f'{path}: G_ema constructor kwargs lack {missing}')
    mk = dict(kw.get('mapping_kwargs') or {})
    sk = dict(kw.get('synthesis_kwargs') or {})
    if sk.get('architecture', 'skip') != 'skip':
        raise CheckpointError(f"{path}: synthesis architecture {sk['architecture']!r}; only 'skip' (config-f) is supported")
    for key, default in (('layer_features', None), ('embed_features', None), ('activation', 'lrelu')):
        if mk.get(key, default) not in (default, kw['w_dim']):
            raise CheckpointError(f'{path}: mapping_kwargs {key}={mk[key]!r} is not supported')
    return GeneratorConfig(
        z_dim=int(kw['z_dim']), w_dim=int(kw['w_dim']), img_resolution=int(kw['img_resolution']),
        img_channels=int(kw['img_channels']), c_dim=int(kw.get('c_dim', 0)),
        mapping_layers=int(mk.get('num_layers', 8)), mapping_lr_multiplier=float(mk.get('lr_multiplier', 0.01)),
        w_avg_beta=float(mk.get('w_avg_beta', 0.998) if mk.get('w_avg_beta', 0.998) is not None else 0.998),
        channel_base=int(sk.get('channel_base', 32768)), channel_max=int(sk.get('channel_max', 512)),
        num_fp16_res=int(sk.get('num_fp16_res', 0)),
        conv_clamp=(None if sk.get('conv_clamp') is None else float(sk['conv_clamp'])),
        resample_filter=[float(v) for v in sk.get('resample_filter', [1, 3, 3, 1])],
    )


def _torch_load(path):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, AttributeError) as e:
        raise CheckpointError(f'{path}: refused or unreadable torch file ({e}); expected {EXPECTED}') from e


def _load_torch(path):
    data = _torch_load(path)
    if isinstance(data, dict) and 'g_ema' in data:
        return _load_rosinality(path, data)
    if isinstance(data, dict) and data.get('format') == FORMAT_NAME:
        cfg = _read_config(path, data.get('config'))
        return _build_and_fill(cfg, data['state_dict'], path), cfg
    keys = sorted(map(str, data))[:10] if isinstance(data, dict) else type(data).__name__
    raise CheckpointError(f"{path}: torch file holds {keys}, expected a dict with 'g_ema' (rosinality) "
                          f"or format={FORMAT_NAME!r} (Avatar Studio); expected {EXPECTED}")


def _load_rosinality(path, data):
    sd = data['g_ema']
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: 'g_ema' is {type(sd).__name__}, expected a state dict")
    try:
        cfg = rosinality.infer_config(sd)
        state = rosinality.convert_state_dict(sd, cfg, latent_avg=data.get('latent_avg'))
    except (KeyError, rosinality.RosinalityFormatError) as e:
        raise CheckpointError(f"{path}: 'g_ema' does not look like a rosinality stylegan2 generator ({e})") from e
    w_avg_missing = 'mapping.w_avg' not in state
    G = Generator.from_config(cfg)
    own = G.state_dict()
    for k in own:   # buffers the file may lack: resample filters (derived), noise, w_avg (computed below)
        if k not in state and (k.endswith('resample_filter') or k.endswith('noise_const') or k == 'mapping.w_avg'):
            state[k] = own[k]
    G = _build_and_fill(cfg, state, path)
    if w_avg_missing:
        G.mapping.w_avg.copy_(rosinality.mean_latent(G))
    return G, cfg


def _load_safetensors(path):
    try:
        from safetensors import safe_open
    except ImportError as e:
        raise CheckpointError(f'{path}: reading .safetensors needs the safetensors package') from e
    try:
        with safe_open(os.fspath(path), framework='pt', device='cpu') as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f'{path}: unreadable safetensors file ({e}); expected {EXPECTED}') from e
    embedded = json.loads(meta['config']) if 'config' in meta else None
    cfg = _read_config(path, embedded)
    return _build_and_fill(cfg, state, path), cfg


def _read_config(path, embedded):
    """The GeneratorConfig from the sidecar .json (preferred: it is what people edit/inspect) or the file."""
    cp = config_path(path)
    d = None
    if os.path.exists(cp):
        try:
            with open(cp, encoding='utf-8') as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(f'{cp}: unreadable generator config ({e})') from e
        d = d.get('generator', d)
    elif embedded is not None:
        d = embedded
    if d is None:
        raise CheckpointError(f'{path}: no generator config: expected {cp} beside it')
    try:
        return GeneratorConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f'{cp}: not a GeneratorConfig ({e})') from e


# ----------------------------------------------------------------------------------------------
# Saving (our own format).

def _atomic_write(path, write):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    mask = os.umask(0o022)  # mkstemp makes a 0600 file: give it a new file's permissions instead
    os.umask(mask)
    mode = 0o666 & ~mask
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_generator(G, cfg, path):
    """Write G's state dict to `path` (.safetensors or .pt) and cfg to the .json beside it, atomically.

    The config is also embedded in the file (safetensors metadata / the .pt dict), so a lone file
    still loads; the .json wins when both exist."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in ('.safetensors', '.pt'):
        raise ValueError(f'save_generator: path must end in .safetensors or .pt, got {path}')
    cfg_dict = cfg.to_dict()
    state = {k: v.detach().to('cpu').contiguous() for k, v in G.state_dict().items()}
    if ext == '.safetensors':
        from safetensors.torch import save as st_save
        blob = st_save(state, metadata={'format': FORMAT_NAME, 'version': str(FORMAT_VERSION), 'config': json.dumps(cfg_dict)})
        _atomic_write(path, lambda f: f.write(blob))
    else:
        payload = {'format': FORMAT_NAME, 'version': FORMAT_VERSION, 'config': cfg_dict, 'state_dict': state}
        buf = io.BytesIO()
        torch.save(payload, buf)
        _atomic_write(path, lambda f: f.write(buf.getvalue()))
    text = json.dumps({'format': FORMAT_NAME, 'version': FORMAT_VERSION, 'generator': cfg_dict}, indent=2) + '\n'
    _atomic_write(config_path(path), lambda f: f.write(text.encode('utf-8')))
