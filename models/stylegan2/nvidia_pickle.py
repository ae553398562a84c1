"""Read NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles without running them.

The real files are `pickle.dump`s of {'G', 'D', 'G_ema', 'training_set_kwargs', 'augment_pipe'}
whose networks reduce to `torch_utils.persistence._reconstruct_persistent_obj(meta)`, with
`meta['module_src']` the full Python source of the defining module (normally exec'd on load)
and `meta['state']` the object's __dict__ (`_modules`, `_parameters`, `_buffers`,
`_init_kwargs`, ...). Tensors reduce to `torch._utils._rebuild_tensor_v2` /
`_rebuild_parameter` over storages serialized with `torch.storage._load_from_bytes`.

`RestrictedUnpickler.find_class` hands out stand-ins for an allow-list of globals only:
persistent objects become inert `PersistentObject` records (the source is kept as a string and
never compiled), storages are read with `torch.load(..., weights_only=True)`, tensors are
rebuilt with bounds-checked `Tensor.set_`. Any other global raises `UnpicklingError`.
"""

import collections
import io
import pickle
import warnings

import torch


class PersistentObject:
    """What a `torch_utils.persistence` object is, minus its code: class name, version, state."""

    def __init__(self, meta):
        if not isinstance(meta, dict) or meta.get('type') != 'class':
            raise pickle.UnpicklingError('persistent object: expected meta dict with type="class"')
        self.class_name = str(meta.get('class_name'))
        self.version = meta.get('version')
        self.module_src = meta.get('module_src')     # kept for inspection only, never executed
        self.state = meta.get('state') or {}
        if not isinstance(self.state, dict):
            raise pickle.UnpicklingError(f'persistent object {self.class_name}: state is not a dict')

    @property
    def init_kwargs(self):
        kwargs = self.state.get('_init_kwargs', self.state.get('init_kwargs'))
        return dict(kwargs) if kwargs else {}

    @property
    def init_args(self):
        args = self.state.get('_init_args', self.state.get('init_args'))
        return tuple(args) if args else ()

    def __repr__(self):
        return f'PersistentObject({self.class_name})'


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict: a plain dict with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _reconstruct_persistent_obj(meta):
    return PersistentObject(meta)


def _load_from_bytes(b):
    if not isinstance(b, (bytes, bytearray)):
        raise pickle.UnpicklingError('storage payload is not bytes')
    try:
        storage = torch.load(io.BytesIO(b), weights_only=True, map_location='cpu')
    except Exception as e:
        raise pickle.UnpicklingError(f'refused a tensor storage payload: {e}') from e
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise pickle.UnpicklingError(f'storage payload decoded to {type(storage).__name__}, not a storage')
    return storage


def _check_ints(name, values):
    if not isinstance(values, (tuple, list, torch.Size)) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise pickle.UnpicklingError(f'tensor {name} must be a tuple of non-negative ints')
    return tuple(values)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise pickle.UnpicklingError('tensor rebuilt from something that is not a storage')
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError('bad tensor storage offset')
    size, stride = _check_ints('size', size), _check_ints('stride', stride)
    if isinstance(storage, torch.TypedStorage):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)   # "TypedStorage is deprecated"
            dtype, untyped = storage.dtype, storage.untyped()
    else:
        raise pickle.UnpicklingError('untyped storage without dtype')
    t = torch.empty(0, dtype=dtype)
    t.set_(untyped, storage_offset, size, stride)   # raises if the view runs past the storage
    return t


def _rebuild_parameter(data, requires_grad, backward_hooks, *state):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError('parameter rebuilt from a non-tensor')
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _codecs_encode(text, encoding='latin1'):
    """Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1')."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError('only _codecs.encode(str, "latin1") is allowed')
    return text.encode('latin1')


def _np_allowed():
    import numpy as np
    allowed = {
        ('numpy', 'ndarray'): np.ndarray,
        ('numpy', 'dtype'): np.dtype,
    }
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed[(mod, '_reconstruct')] = np.core.multiarray._reconstruct
        allowed[(mod, 'scalar')] = np.core.multiarray.scalar
    return allowed


_ALLOWED = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _reconstruct_persistent_obj,
    ('dnnlib.util', 'EasyDict'): EasyDict,
    ('dnnlib', 'EasyDict'): EasyDict,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('builtins', 'slice'): slice,
    ('__builtin__', 'set'): set,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch.storage', '_load_from_bytes'): _load_from_bytes,
    ('torch', 'Size'): torch.Size,
    ('_codecs', 'encode'): _codecs_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the allow-listed globals above, each to a harmless stand-in."""

    def find_class(self, module, name):
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if module.startswith('numpy'):
            allowed = _np_allowed()
            if key in allowed:
                return allowed[key]
        raise pickle.UnpicklingError(f'refusing to load global {module}.{name}: not on the allow-list for network pickles')

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('refusing persistent id in a network pickle')


def load_pickle(f):
    """Unpickle a network pickle from a binary file object with the restricted unpickler."""
    return RestrictedUnpickler(f).load()


def flatten_state(obj, prefix=''):
    """A state dict {'mapping.fc0.weight': tensor, ...} gathered from a PersistentObject tree
    (parameters and persistent buffers, like nn.Module.state_dict())."""
    out = collections.OrderedDict()
    state = obj.state
    non_persistent = set(state.get('_non_persistent_buffers_set') or ())
    for name, value in (state.get('_parameters') or {}).items():
        if value is not None:
            out[prefix + name] = value.detach()
    for name, value in (state.get('_buffers') or {}).items():
        if value is not None and name not in non_persistent:
            out[prefix + name] = value
    for name, child in (state.get('_modules') or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise pickle.UnpicklingError(f'submodule {prefix + name} is {type(child).__name__}, expected a persistent network object')
        out.update(flatten_state(child, prefix + name + '.'))
    return out
