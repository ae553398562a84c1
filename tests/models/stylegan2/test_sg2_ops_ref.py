"""Reference ops against direct NumPy computations (values) and gradcheck (gradients), on CPU.
Also checks the autograd wrappers around the CUDA kernels by plugging in a PyTorch emulation
of the kernel contract, so their backward formulas are tested without a GPU."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.stylegan2.ops import conv2d_resample, default_impl
from models.stylegan2.ops.bias_act import EmulatedPlugin as BiasActEmulated
from models.stylegan2.ops.bias_act import _bias_act_ref, _BiasActCuda, activation_funcs, bias_act
from models.stylegan2.ops.upfirdn2d import EmulatedPlugin as UpfirdnEmulated
from models.stylegan2.ops.upfirdn2d import (_upfirdn2d_ref, _Upfirdn2dCuda, downsample2d, setup_filter,
                                            upfirdn2d, upsample2d)


# ----------------------------------------------------------------------------------------------
# NumPy definitions, written from the op's definition with loops.

def np_upfirdn2d(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip_filter=False, gain=1.0):
    """Insert up-1 zeros after each sample, pad (negative crops), convolve with f, keep every down-th."""
    x = np.asarray(x, np.float64)
    f = np.asarray(f, np.float64)
    if f.ndim == 1:
        f = np.outer(f, f)
    f = f * gain
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    B, C, H, W = x.shape
    u = np.zeros([B, C, H * upy, W * upx])
    u[:, :, ::upy, ::upx] = x
    p = np.zeros([B, C, H * upy + max(py0, 0) + max(py1, 0), W * upx + max(px0, 0) + max(px1, 0)])
    p[:, :, max(py0, 0): max(py0, 0) + H * upy, max(px0, 0): max(px0, 0) + W * upx] = u
    p = p[:, :, max(-py0, 0): p.shape[2] - max(-py1, 0), max(-px0, 0): p.shape[3] - max(-px1, 0)]
    fh, fw = f.shape
    g = f if flip_filter else f[::-1, ::-1]       # a true convolution correlates with the flipped filter
    oh, ow = p.shape[2] - fh + 1, p.shape[3] - fw + 1
    y = np.zeros([B, C, oh, ow])
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = np.einsum('bchw,hw->bc', p[:, :, i:i + fh, j:j + fw], g)
    return y[:, :, ::downy, ::downx]


def np_activation(v, act, alpha):
    if act == 'linear':
        return v
    if act == 'relu':
        return np.maximum(v, 0)
    if act == 'lrelu':
        return np.where(v > 0, v, v * alpha)
    if act == 'tanh':
        return np.tanh(v)
    if act == 'sigmoid':
        return 1 / (1 + np.exp(-v))
    if act == 'elu':
        return np.where(v > 0, v, alpha * (np.exp(v) - 1))
    if act == 'selu':
        return 1.0507009873554805 * np.where(v > 0, v, 1.6732632423543772 * (np.exp(v) - 1))
    if act == 'softplus':
        return np.log1p(np.exp(v))
    if act == 'swish':
        return v / (1 + np.exp(-v))
    raise KeyError(act)


UPFIRDN_CASES = [
    # up, down, padding, flip, gain, taps
    (1, 1, [1, 2, 0, 1], False, 1.0, [1, 3, 3, 1]),
    (2, 1, [2, 1, 2, 1], False, 4.0, [1, 3, 3, 1]),
    (1, 2, [1, 1, 1, 1], True, 1.0, [1, 3, 3, 1]),
    ([2, 1], [1, 2], [0, 1, 2, -1], False, 2.0, [1, 2, 1]),
    (3, 2, [-1, 2, 1, 0], True, 1.5, [[1, 2], [3, 5], [0, 1]]),
    (2, 2, 0, False, 1.0, [1, 4, 6, 4, 1]),
]


def _pairs(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad4(p):
    return (p, p, p, p) if isinstance(p, int) else tuple(p)


@pytest.mark.parametrize('up,down,padding,flip,gain,taps,separable',
                         [c + (False,) for c in UPFIRDN_CASES] + [c + (True,) for c in UPFIRDN_CASES if np.ndim(c[-1]) == 1])
def test_upfirdn2d_ref_matches_numpy(up, down, padding, flip, gain, taps, separable):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6)
    f = torch.tensor(taps, dtype=torch.float32)
    if not separable and f.ndim == 1:
        f = f.ger(f)
    y = upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain, impl='ref')
    ref = np_upfirdn2d(x.numpy(), f.numpy(), _pairs(up), _pairs(down), _pad4(padding), flip, gain)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('up,down,padding,flip,gain,taps', UPFIRDN_CASES[:5])
def test_upfirdn2d_ref_gradients(up, down, padding, flip, gain, taps):
    x = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    f = torch.tensor(taps, dtype=torch.float64)
    f = (f.ger(f) if f.ndim == 1 else f).requires_grad_(True)
    torch.autograd.gradcheck(lambda x, f: _upfirdn2d_ref(x, f, up, down, padding, flip, gain), (x, f), fast_mode=True)
    # d/dx of <y, r> is the adjoint applied to r: compare with the NumPy Jacobian column by column.
    with torch.no_grad():
        r = torch.randn_like(_upfirdn2d_ref(x, f, up, down, padding, flip, gain))
    (dx,) = torch.autograd.grad((_upfirdn2d_ref(x, f, up, down, padding, flip, gain) * r).sum(), x)
    J = np.zeros(x.numel())
    for k in range(x.numel()):
        e = np.zeros(x.numel())
        e[k] = 1
        yk = np_upfirdn2d(e.reshape(x.shape), f.detach().numpy(), _pairs(up), _pairs(down), _pad4(padding), flip, gain)
        J[k] = (yk * r.numpy()).sum()
    np.testing.assert_allclose(dx.numpy().ravel(), J, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('up,down,padding,flip,gain,taps', UPFIRDN_CASES)
def test_upfirdn2d_kernel_wrapper_backward(up, down, padding, flip, gain, taps):
    """The autograd wrapper's adjoint formula (used with the CUDA kernel), run on the emulated kernel."""
    x = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    f = torch.tensor(taps, dtype=torch.float32)
    fn = lambda x: _Upfirdn2dCuda.apply(x, f, _pairs(up), _pairs(down), _pad4(padding), flip, gain, UpfirdnEmulated)
    np.testing.assert_allclose(fn(x).detach().numpy(),
                               _upfirdn2d_ref(x, f, up, down, padding, flip, gain).detach().numpy(), rtol=1e-6, atol=1e-6)
    torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    if taps == UPFIRDN_CASES[1][-1]:
        torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def test_up_and_downsample_keep_a_constant_image():
    f = setup_filter([1, 3, 3, 1])
    x = torch.full([1, 2, 8, 8], 0.5)
    up = upsample2d(x, f, impl='ref')
    down = downsample2d(x, f, impl='ref')
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 0.5))
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.full_like(down[:, :, 1:-1, 1:-1], 0.5))


def test_upfirdn2d_bad_input():
    with pytest.raises(AssertionError):
        upfirdn2d(torch.zeros(3, 4, 4), None)
    with pytest.raises(ValueError, match='impl'):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, impl='fast')
    with pytest.raises(ValueError, match='CUDA tensor'):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, impl='cuda')


@pytest.mark.parametrize('act', sorted(activation_funcs))
@pytest.mark.parametrize('clamp', [None, 0.7])
def test_bias_act_ref_matches_numpy(act, clamp):
    torch.manual_seed(1)
    x = torch.randn(3, 5, 4, 2) * 2
    b = torch.randn(5)
    spec = activation_funcs[act]
    y = bias_act(x, b, dim=1, act=act, clamp=clamp, impl='ref')
    v = x.numpy().astype(np.float64) + b.numpy().reshape(1, 5, 1, 1)
    ref = np_activation(v, act, spec.def_alpha) * spec.def_gain
    if clamp is not None:
        ref = np.clip(ref, -clamp, clamp)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-5)
    # Other dim, explicit alpha/gain, no bias.
    y2 = bias_act(x, b[:4] if x.shape[2] == 4 else None, dim=2, act=act, alpha=0.3, gain=1.7, impl='ref')
    v2 = x.numpy().astype(np.float64) + b[:4].numpy().reshape(1, 1, 4, 1)
    np.testing.assert_allclose(y2.numpy(), np_activation(v2, act, 0.3) * 1.7, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('act', sorted(activation_funcs))
def test_bias_act_ref_gradients(act):
    torch.manual_seed(2)
    x = (torch.randn(2, 3, 4, dtype=torch.float64) * 2).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: _bias_act_ref(x, b, dim=1, act=act, clamp=1.5)
    torch.autograd.gradcheck(fn, (x, b))
    # dy/dx against a NumPy central difference of the NumPy definition.
    spec = activation_funcs[act]
    v = (x + b.reshape(1, 3, 1)).detach().numpy()
    h = 1e-6
    num = (np_activation(v + h, act, spec.def_alpha) - np_activation(v - h, act, spec.def_alpha)) / (2 * h) * spec.def_gain
    y = _bias_act_ref(x, b, dim=1, act=act)
    (dx,) = torch.autograd.grad(y.sum(), x)
    mask = np.abs(v) > 1e-4   # kinks of relu/lrelu
    np.testing.assert_allclose(dx.numpy()[mask], num[mask], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('act', sorted(activation_funcs))
def test_bias_act_kernel_wrapper_backward(act):
    """First- and second-order gradients of the kernel's autograd wrapper, on the emulated kernel."""
    torch.manual_seed(3)
    x = (torch.randn(2, 3, 5, dtype=torch.float64) * 2).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    spec = activation_funcs[act]
    fn = lambda x, b: _BiasActCuda.apply(x, b, 1, spec.id, float(spec.def_alpha), float(spec.def_gain), 2.0, BiasActEmulated)
    torch.testing.assert_close(fn(x, b), _bias_act_ref(x, b, act=act, clamp=2.0))
    torch.autograd.gradcheck(fn, (x, b), fast_mode=True)
    torch.autograd.gradgradcheck(fn, (x, b), fast_mode=True)


@pytest.mark.parametrize('act', ['linear', 'lrelu'])
def test_bias_act_kernel_wrapper_backward_1d(act):
    """A 1-D input with its bias along dim 0: the bias gradient keeps its shape (it came back as a
    scalar sum on a GPU: `sum([])` sums every dimension)."""
    torch.manual_seed(4)
    x = torch.randn(7, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)
    spec = activation_funcs[act]
    fn = lambda x, b: _BiasActCuda.apply(x, b, 0, spec.id, float(spec.def_alpha), float(spec.def_gain), -1.0, BiasActEmulated)
    torch.testing.assert_close(fn(x, b), _bias_act_ref(x, b, dim=0, act=act))
    dy = torch.randn(7, dtype=torch.float64)
    dx, db = torch.autograd.grad(fn(x, b), [x, b], dy)
    dx_ref, db_ref = torch.autograd.grad(_bias_act_ref(x, b, dim=0, act=act), [x, b], dy)
    assert db.shape == (7,)
    torch.testing.assert_close(db, db_ref)
    torch.testing.assert_close(dx, dx_ref)
    torch.autograd.gradgradcheck(fn, (x, b), fast_mode=True)


@pytest.mark.parametrize('up,down,k', [(1, 1, 3), (2, 1, 3), (1, 2, 3), (2, 1, 1), (1, 2, 1)])
@pytest.mark.parametrize('groups', [1, 2])
def test_conv2d_resample_matches_resample_then_conv(up, down, k, groups):
    torch.manual_seed(4)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 4 * groups, 8, 8, dtype=torch.float64)
    w = torch.randn(3 * groups, 4, k, k, dtype=torch.float64)
    y = conv2d_resample(x, w, f=f, up=up, down=down, padding=k // 2, groups=groups)
    ref = x
    if up > 1:
        # Upsample (blur footprint pads 2, 1) with the conv's own padding folded in, then a valid conv.
        p0, p1 = 2 + k // 2, 1 + k // 2
        ref = torch.from_numpy(np_upfirdn2d(ref.numpy(), f.numpy(), (2, 2), (1, 1), (p0, p1, p0, p1), False, 4.0))
        ref = F.conv2d(ref, w, groups=groups)
    elif down > 1:
        # Filtering and convolving commute; the blur's footprint (pad 2 each side) moves to the conv.
        ref = F.conv2d(ref, w, padding=k // 2 + 1, groups=groups)
        ref = torch.from_numpy(np_upfirdn2d(ref.numpy(), f.numpy(), (1, 1), (2, 2), (0, 0, 0, 0), False, 1.0))
    else:
        ref = F.conv2d(ref, w, padding=k // 2, groups=groups)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref)


def test_default_impl_context():
    with default_impl('ref'):
        y = upfirdn2d(torch.ones(1, 1, 4, 4), None)
    assert y.shape == (1, 1, 4, 4)
    with pytest.raises(ValueError):
        with default_impl('nope'):
            pass


def test_kernel_build_is_lazy_and_fails_clearly_without_cuda(monkeypatch):
    from models.stylegan2.ops import _build
    digest = _build.source_digest(['upfirdn2d.cpp', 'upfirdn2d.cu'])
    assert len(digest) == 64
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    monkeypatch.setattr(_build, '_plugins', {})
    with pytest.raises(RuntimeError, match='Could not build the CUDA kernels.*CUDA is not available'):
        _build.get_plugin('stylegan2_upfirdn2d', ['upfirdn2d.cpp', 'upfirdn2d.cu'])
    # impl='auto' on CPU tensors quietly uses the reference.
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert _build.select_plugin('upfirdn2d', 'auto', torch.zeros(1), 'stylegan2_upfirdn2d', []) is None
