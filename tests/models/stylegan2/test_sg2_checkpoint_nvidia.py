"""NVIDIA .pkl import: a pickle built like the real ones (persistent objects carrying their module
source, tensors pickled by plain pickle) loads into an equal network, and nothing in it runs.
Pickles reaching for os.system, eval, subprocess or a booby-trapped storage are refused."""

import builtins
import collections
import os
import pickle
import subprocess
import sys
import types

import pytest
import torch

from models.stylegan2.checkpoint import CheckpointError, load_generator
from models.stylegan2.networks import GeneratorConfig


def _payload_src(marker):
    return f'import pathlib\npathlib.Path({str(marker)!r}).write_text("pwned")\n'


@pytest.fixture
def fake_nvidia_modules(monkeypatch):
    """Stand-ins for torch_utils.persistence and dnnlib.util so pickle can write references to them.
    Like the real persistence module, `_reconstruct_persistent_obj` execs `module_src`."""
    persistence = types.ModuleType('torch_utils.persistence')
    torch_utils = types.ModuleType('torch_utils')
    torch_utils.persistence = persistence
    dnnlib = types.ModuleType('dnnlib')
    dnnlib_util = types.ModuleType('dnnlib.util')
    dnnlib.util = dnnlib_util

    def _reconstruct_persistent_obj(meta):
        exec(compile(meta['module_src'], '<module_src>', 'exec'), {})   # what the real loader does
        return meta

    _reconstruct_persistent_obj.__module__ = 'torch_utils.persistence'
    _reconstruct_persistent_obj.__qualname__ = '_reconstruct_persistent_obj'
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__ = 'dnnlib.util'
    EasyDict.__qualname__ = 'EasyDict'
    dnnlib_util.EasyDict = EasyDict
    for name, mod in [('torch_utils', torch_utils), ('torch_utils.persistence', persistence),
                      ('dnnlib', dnnlib), ('dnnlib.util', dnnlib_util)]:
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict)


class Persistent:
    """Pickles exactly like a torch_utils.persistence object: reconstruct(meta) with the source inside."""

    def __init__(self, fake, class_name, state, module_src):
        self.fake, self.class_name, self.state, self.module_src = fake, class_name, state, module_src

    def __reduce__(self):
        meta = dict(type='class', version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (self.fake.reconstruct, (meta,))


def as_persistent(fake, module, module_src, init_kwargs=None):
    """The nn.Module's __dict__ as stylegan2-ada's pickles hold it, children converted recursively."""
    state = dict(module.__dict__)
    state['_modules'] = collections.OrderedDict(
        (name, as_persistent(fake, child, module_src)) for name, child in module._modules.items())
    state['_parameters'] = collections.OrderedDict((k, v) for k, v in module._parameters.items())
    state['_buffers'] = collections.OrderedDict((k, v) for k, v in module._buffers.items())
    state['_non_persistent_buffers_set'] = set(module._non_persistent_buffers_set)
    for k in list(state):
        if 'hooks' in k or k in ('init_kwargs',):
            state[k] = collections.OrderedDict()
    state.pop('_state_dict_hooks', None)
    state['_init_args'] = ()
    state['_init_kwargs'] = init_kwargs or fake.EasyDict()
    return Persistent(fake, f'training.networks.{type(module).__name__}', state, module_src)


def nvidia_kwargs(fake, cfg):
    E = fake.EasyDict
    return E(z_dim=cfg.z_dim, w_dim=cfg.w_dim, c_dim=0, img_resolution=cfg.img_resolution, img_channels=3,
             mapping_kwargs=E(num_layers=cfg.mapping_layers),
             synthesis_kwargs=E(channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_fp16_res=2, conv_clamp=256))


@pytest.fixture(scope='module')
def G_src():
    torch.manual_seed(0)
    cfg = GeneratorConfig(z_dim=32, w_dim=32, img_resolution=32, mapping_layers=3, channel_base=512, channel_max=32,
                          num_fp16_res=2, conv_clamp=256)
    G = cfg.build().eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(('noise_strength', '.bias')):
                p.copy_(torch.randn_like(p) * 0.2)
        G.mapping.w_avg.copy_(torch.randn(32))
    return G, cfg


def write_fake_pkl(path, fake, G, cfg, marker, G_ema_class=None):
    src = _payload_src(marker)
    G_ema = as_persistent(fake, G, src, init_kwargs=nvidia_kwargs(fake, cfg))
    if G_ema_class:
        G_ema.class_name = G_ema_class
    data = dict(G=G_ema, D=None, G_ema=G_ema, augment_pipe=None,
                training_set_kwargs=fake.EasyDict(path='ffhq.zip', resolution=cfg.img_resolution, max_size=70000, xflip=True))
    with open(path, 'wb') as f:
        pickle.dump(data, f)


def test_nvidia_pkl_imports_equal_network_without_running_source(tmp_path, fake_nvidia_modules, G_src):
    G, cfg = G_src
    marker = tmp_path / 'pwned.txt'
    pkl = tmp_path / 'network-snapshot.pkl'
    write_fake_pkl(pkl, fake_nvidia_modules, G, cfg, marker)
    assert b'pwned' in pkl.read_bytes(), 'the pickle carries the module source'

    G2, cfg2 = load_generator(pkl)
    assert not marker.exists(), 'module_src must never run'
    assert cfg2.num_fp16_res == 2 and cfg2.conv_clamp == 256 and cfg2.mapping_layers == 3
    z = torch.randn(2, cfg.z_dim)
    with torch.no_grad():
        torch.testing.assert_close(G2(z, truncation_psi=0.7), G(z, truncation_psi=0.7), rtol=0, atol=0)
    assert {k: v for k, v in G2.state_dict().items()}.keys() == G.state_dict().keys()

    # Control: the same file through plain pickle (with the real-style persistence module) does run the payload.
    with open(pkl, 'rb') as f:
        pickle.load(f)
    assert marker.exists()


def test_stylegan3_generator_is_named_in_the_error(tmp_path, fake_nvidia_modules, G_src):
    G, cfg = G_src
    pkl = tmp_path / 'sg3.pkl'
    write_fake_pkl(pkl, fake_nvidia_modules, G, cfg, tmp_path / 'm', G_ema_class='training.networks_stylegan3.Generator')
    with pytest.raises(CheckpointError, match='stylegan3'):
        load_generator(pkl)


def test_stylegan3_repo_stylegan2_class_loads(tmp_path, fake_nvidia_modules, G_src):
    G, cfg = G_src
    pkl = tmp_path / 'sg3repo.pkl'
    write_fake_pkl(pkl, fake_nvidia_modules, G, cfg, tmp_path / 'm', G_ema_class='training.networks_stylegan2.Generator')
    G2, _ = load_generator(pkl)
    z = torch.randn(1, cfg.z_dim)
    torch.testing.assert_close(G2(z), G(z).detach())


class _Evil:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _evil_payloads(marker):
    cmd = f'echo pwned > {marker}'
    return {
        'os.system': _Evil(os.system, (cmd,)),
        'builtins.eval': _Evil(builtins.eval, (f'open({str(marker)!r}, "w").write("x")',)),
        'builtins.exec': _Evil(builtins.exec, (f'open({str(marker)!r}, "w").write("x")',)),
        'subprocess.Popen': _Evil(subprocess.Popen, (['sh', '-c', cmd],)),
        'builtins.getattr': _Evil(getattr, (str(marker), 'upper')),
    }


@pytest.mark.parametrize('name', ['os.system', 'builtins.eval', 'builtins.exec', 'subprocess.Popen', 'builtins.getattr'])
@pytest.mark.parametrize('where', ['top', 'inside_G_ema'])
def test_malicious_globals_are_refused(tmp_path, fake_nvidia_modules, G_src, name, where):
    marker = tmp_path / 'pwned.txt'
    evil = _evil_payloads(marker)[name]
    if where == 'top':
        data = evil
    else:
        G, cfg = G_src
        G_ema = as_persistent(fake_nvidia_modules, G.mapping, 'pass', init_kwargs=nvidia_kwargs(fake_nvidia_modules, cfg))
        G_ema.state['z_dim'] = evil
        data = dict(G_ema=G_ema)
    pkl = tmp_path / 'evil.pkl'
    pkl.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(CheckpointError, match='refus'):
        load_generator(pkl)
    assert not marker.exists()


def test_booby_trapped_storage_payload_is_refused(tmp_path):
    """`torch.storage._load_from_bytes` is allowed, but its bytes are read with weights_only=True."""
    import io
    marker = tmp_path / 'pwned.txt'
    inner = io.BytesIO()
    torch.save(_Evil(os.system, (f'echo pwned > {marker}',)), inner, _use_new_zipfile_serialization=False)

    class Storage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (inner.getvalue(),))

    class T:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (Storage(), 0, (1,), (1,), False, collections.OrderedDict()))

    pkl = tmp_path / 'evil_storage.pkl'
    pkl.write_bytes(pickle.dumps({'G_ema': T()}, protocol=4))
    with pytest.raises(CheckpointError, match='refus'):
        load_generator(pkl)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / 'notes.pkl'
    junk.write_text('hello, not a network')
    with pytest.raises(CheckpointError, match='NVIDIA stylegan2-ada-pytorch.*rosinality.*Avatar Studio'):
        load_generator(junk)
    other = tmp_path / 'other.pkl'
    other.write_bytes(pickle.dumps({'weights': [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="G_ema"):
        load_generator(other)
