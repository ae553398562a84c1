"""CUDA kernels against the reference, forward and backward, fp32 and fp16, several shapes.
Skipped without a CUDA GPU."""

import pytest
import torch

from models.stylegan2.ops import default_impl
from models.stylegan2.ops.bias_act import activation_funcs, bias_act
from models.stylegan2.ops.upfirdn2d import setup_filter, upfirdn2d

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float16: dict(rtol=1e-2, atol=1e-2)}

UPFIRDN = [
    # shape, up, down, padding, flip, taps
    ((2, 3, 16, 16), 1, 1, [1, 2, 1, 2], False, [1, 3, 3, 1]),
    ((1, 64, 33, 33), 2, 1, [2, 1, 2, 1], False, [1, 3, 3, 1]),
    ((4, 8, 32, 32), 1, 2, [1, 1, 1, 1], True, [1, 3, 3, 1]),
    ((1, 3, 17, 9), [2, 1], [1, 2], [0, 1, -1, 2], False, [1, 2, 1]),
    ((2, 5, 12, 20), 4, 2, [3, 3, 3, 3], False, [1, 4, 6, 4, 1, 2, 3, 1]),
    ((1, 512, 8, 8), 2, 2, 0, True, [[1, 2], [3, 4], [5, 6]]),
]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('shape,up,down,padding,flip,taps', UPFIRDN)
def test_upfirdn2d_cuda_matches_ref(dtype, shape, up, down, padding, flip, taps):
    torch.manual_seed(0)
    x = torch.randn(shape, device='cuda', dtype=dtype, requires_grad=True)
    f = setup_filter(taps, device='cuda') if isinstance(taps[0], int) else torch.tensor(taps, dtype=torch.float32, device='cuda')
    y_cuda = upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=1.5, impl='cuda')
    y_ref = upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=1.5, impl='ref')
    torch.testing.assert_close(y_cuda, y_ref, **TOL[dtype])
    dy = torch.randn_like(y_ref)
    (dx_cuda,) = torch.autograd.grad(y_cuda, x, dy)
    (dx_ref,) = torch.autograd.grad(y_ref, x, dy)
    torch.testing.assert_close(dx_cuda, dx_ref, **TOL[dtype])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('act', sorted(activation_funcs))
@pytest.mark.parametrize('shape,dim,clamp', [((4, 16, 8, 8), 1, None), ((3, 7), 1, 0.5), ((2, 5, 9), 2, 256), ((1000,), 0, None)])
def test_bias_act_cuda_matches_ref(dtype, act, shape, dim, clamp):
    torch.manual_seed(1)
    x = (torch.randn(shape, device='cuda', dtype=dtype) * 2).requires_grad_(True)
    b = torch.randn(shape[dim], device='cuda', dtype=dtype, requires_grad=True)
    y_cuda = bias_act(x, b, dim=dim, act=act, clamp=clamp, impl='cuda')
    y_ref = bias_act(x, b, dim=dim, act=act, clamp=clamp, impl='ref')
    torch.testing.assert_close(y_cuda, y_ref, **TOL[dtype])
    dy = torch.randn_like(y_ref)
    g_cuda = torch.autograd.grad(y_cuda, [x, b], dy, create_graph=True)
    g_ref = torch.autograd.grad(y_ref, [x, b], dy, create_graph=True)
    for a, r in zip(g_cuda, g_ref):
        torch.testing.assert_close(a, r, **TOL[dtype])
    if dtype == torch.float32:   # second order (R1 regularization goes through it)
        gg_cuda = torch.autograd.grad(g_cuda[0].square().sum(), [x, b], allow_unused=True)
        # the reference's dx has no graph where the activation is linear in x (y'' = 0 there)
        gg_ref = (torch.autograd.grad(g_ref[0].square().sum(), [x, b], allow_unused=True)
                  if g_ref[0].requires_grad else (None, None))
        for a, r in zip(gg_cuda, gg_ref):
            if a is None and r is None:
                continue
            torch.testing.assert_close(a if a is not None else torch.zeros_like(r), r if r is not None else torch.zeros_like(a), rtol=1e-3, atol=1e-3)


@pytest.fixture
def no_tf32():
    """Full fp32 in cuDNN and cuBLAS: by default PyTorch lets convolutions use TF32 (10-bit mantissa)
    on Ampere and later, and the reference path's convolutions then differ from the kernels by ~1e-3
    (seen on an H200: 2 of 49152 pixels 0.0016 apart)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize('num_fp16_res', [0, 2])
def test_generator_forward_backward_cuda_matches_ref(num_fp16_res, no_tf32):
    from models.stylegan2.networks import GeneratorConfig
    torch.manual_seed(2)
    cfg = GeneratorConfig(z_dim=64, w_dim=64, img_resolution=64, mapping_layers=2, channel_base=2048, channel_max=64,
                          num_fp16_res=num_fp16_res, conv_clamp=256 if num_fp16_res else None)
    G = cfg.build().cuda()
    z = torch.randn(4, 64, device='cuda')
    outs = {}
    for impl in ('ref', 'cuda'):
        G.zero_grad()
        with default_impl(impl):
            img = G(z, noise_mode='const')
            img.square().mean().backward()
        outs[impl] = (img.detach(), {n: p.grad.clone() for n, p in G.named_parameters()})
    tol = dict(rtol=1e-3, atol=1e-3) if num_fp16_res == 0 else dict(rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(outs['cuda'][0], outs['ref'][0], **tol)
    for n in outs['ref'][1]:
        torch.testing.assert_close(outs['cuda'][1][n], outs['ref'][1][n], **tol, msg=n)


def test_auto_uses_kernels_on_gpu():
    from models.stylegan2.ops import _build
    x = torch.randn(1, 2, 8, 8, device='cuda')
    assert _build.select_plugin('upfirdn2d', 'auto', x, 'stylegan2_upfirdn2d', ['upfirdn2d.cpp', 'upfirdn2d.cu']) is not None
