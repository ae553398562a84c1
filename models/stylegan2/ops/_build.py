"""Lazy build and load of the CUDA extensions beside this file.

Nothing here runs at import time. The first call that wants a kernel compiles the `.cpp`/`.cu`
sources with `torch.utils.cpp_extension.load` (ninja) into a cache folder named after the
sources' sha256, so an edited kernel never picks up a stale binary and an unchanged one is
built once per machine. Build failures are remembered for the process, so `impl='auto'` warns
once and falls back to the reference instead of retrying the compiler on every call.
"""

import contextlib
import hashlib
import os
import threading
import warnings

import torch

_SRC_DIR = os.path.dirname(os.path.abspath(__file__))
_lock = threading.Lock()
_plugins = {}       # name -> loaded module, or the exception that stopped its build
_warned = set()     # names whose fallback warning was already shown
_default_impl = 'auto'

IMPLS = ('auto', 'ref', 'cuda')


def cache_root():
    """Where built kernels live: $STYLEGAN2_EXTENSIONS_DIR, else ~/.cache/avatar_studio/stylegan2_ops."""
    root = os.environ.get('STYLEGAN2_EXTENSIONS_DIR')
    if not root:
        root = os.path.join(os.path.expanduser('~'), '.cache', 'avatar_studio', 'stylegan2_ops')
    return root


def source_digest(sources):
    """sha256 over the sources' (and shared headers') names and bytes plus the torch / CUDA versions."""
    h = hashlib.sha256()
    h.update(f'torch={torch.__version__};cuda={torch.version.cuda}'.encode())
    headers = sorted(n for n in os.listdir(_SRC_DIR) if n.endswith(('.h', '.cuh')))
    for name in list(sources) + headers:
        with open(os.path.join(_SRC_DIR, name), 'rb') as f:
            h.update(name.encode() + b'\0' + f.read() + b'\0')
    return h.hexdigest()


def _build(name, sources):
    if not torch.cuda.is_available():
        raise RuntimeError(f'CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda})')
    from torch.utils import cpp_extension
    cpp_extension.verify_ninja_availability()
    digest = source_digest(sources)
    build_dir = os.path.join(cache_root(), f'{name}-{digest[:16]}')
    os.makedirs(build_dir, exist_ok=True)
    return cpp_extension.load(
        name=f'{name}_{digest[:12]}',
        sources=[os.path.join(_SRC_DIR, s) for s in sources],
        build_directory=build_dir,
        extra_cflags=['-O3'],
        extra_cuda_cflags=['-O3', '--use_fast_math', '-lineinfo'],
        verbose=bool(os.environ.get('STYLEGAN2_VERBOSE_BUILD')),
    )


def get_plugin(name, sources):
    """The built extension `name`; raises RuntimeError (once per process, then cached) if it can't build."""
    with _lock:
        if name not in _plugins:
            try:
                _plugins[name] = _build(name, sources)
            except Exception as e:  # noqa: BLE001 - any build failure means "no kernel"
                _plugins[name] = e
        plugin = _plugins[name]
    if isinstance(plugin, Exception):
        raise RuntimeError(f'Could not build the CUDA kernels for {name!r}: {plugin}') from plugin
    return plugin


def select_plugin(op, impl, tensor, name, sources):
    """The extension to use for `tensor`, or None for the plain-PyTorch reference.

    impl='ref': always None. impl='cuda': the extension, or a clear error (CPU tensor, build failed).
    impl='auto': the extension for CUDA tensors when it builds; otherwise warn once and use None.
    """
    if impl is None:
        impl = _default_impl
    if impl not in IMPLS:
        raise ValueError(f'{op}: impl must be one of {IMPLS}, got {impl!r}')
    if impl == 'ref':
        return None
    if impl == 'cuda':
        if tensor.device.type != 'cuda':
            raise ValueError(f"{op}(impl='cuda') needs a CUDA tensor, got one on {tensor.device}")
        return get_plugin(name, sources)
    if tensor.device.type != 'cuda':
        return None
    try:
        return get_plugin(name, sources)
    except RuntimeError as e:
        if name not in _warned:
            _warned.add(name)
            warnings.warn(f'{op}: using the slower PyTorch reference. {e}', RuntimeWarning, stacklevel=3)
        return None


@contextlib.contextmanager
def default_impl(impl):
    """Within this block, ops called without an explicit impl use `impl` ('auto', 'ref' or 'cuda')."""
    global _default_impl
    if impl not in IMPLS:
        raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')
    old, _default_impl = _default_impl, impl
    try:
        yield
    finally:
        _default_impl = old


def current_stream(tensor):
    """Raw cudaStream_t (as int) of the current stream on the tensor's device (0 off the GPU)."""
    if tensor.device.type != 'cuda':
        return 0
    return torch.cuda.current_stream(tensor.device).cuda_stream
