"""bias_act: add a per-channel bias, apply an activation, scale by a gain, clamp.

    y = clamp(act(x + b[dim]) * gain, -clamp, clamp)

`bias_act` is the public function; `_BiasActCuda` wraps the kernel in `bias_act.cu` for autograd
(first and second order, so R1 penalties differentiate through it); `_bias_act_ref` is the
plain-PyTorch twin and the specification.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import _build

_SOURCES = ['bias_act.cpp', 'bias_act.cu']


@dataclass(frozen=True)
class Activation:
    id: int             # kernel id, see bias_act.cu
    fn: object          # (v, alpha) -> f(v), plain PyTorch
    def_alpha: float    # default alpha (negative slope for lrelu, scale for elu)
    def_gain: float     # default gain, keeps the signal's second moment


activation_funcs = {
    'linear':   Activation(0, lambda v, a: v, 0, 1),
    'relu':     Activation(1, lambda v, a: F.relu(v), 0, math.sqrt(2)),
    'lrelu':    Activation(2, lambda v, a: F.leaky_relu(v, a), 0.2, math.sqrt(2)),
    'tanh':     Activation(3, lambda v, a: torch.tanh(v), 0, 1),
    'sigmoid':  Activation(4, lambda v, a: torch.sigmoid(v), 0, 1),
    'elu':      Activation(5, lambda v, a: F.elu(v, a), 1, 1),
    'selu':     Activation(6, lambda v, a: F.selu(v), 0, 1),
    'softplus': Activation(7, lambda v, a: F.softplus(v), 0, 1),
    'swish':    Activation(8, lambda v, a: torch.sigmoid(v) * v, 0, math.sqrt(2)),
}


def _resolve(act, alpha, gain, clamp):
    if act not in activation_funcs:
        raise ValueError(f'bias_act: unknown activation {act!r}; expected one of {sorted(activation_funcs)}')
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    return spec, alpha, gain, clamp


def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl=None):
    """Fused bias + activation + gain + clamp.

    Args:
        x: tensor of any shape, e.g. (B, C, H, W) or (B, C).
        b: (x.shape[dim],) bias, or None.
        dim: the dimension of x that b runs along.
        act: 'linear', 'relu', 'lrelu', 'tanh', 'sigmoid', 'elu', 'selu', 'softplus' or 'swish'.
        alpha: activation parameter (lrelu slope, elu scale); None for its default.
        gain: output scale; None for the activation's default (sqrt(2) for relu/lrelu/swish).
        clamp: clamp the output to [-clamp, clamp]; None or -1 for no clamping.
        impl: 'auto' | 'ref' | 'cuda' (None: the current default, see ops.default_impl).
    Returns:
        tensor shaped like x.
    """
    assert isinstance(x, torch.Tensor)
    assert clamp is None or clamp == -1 or clamp >= 0
    spec, alpha, gain, clamp = _resolve(act, alpha, gain, clamp)
    if b is not None:
        assert b.ndim == 1 and b.shape[0] == x.shape[dim], f'bias of shape {tuple(b.shape)} does not fit x {tuple(x.shape)} along dim {dim}'
    plugin = _plugin(impl, x)
    if plugin is not None and x.numel() > 0:
        if b is not None:
            b = b.to(x.dtype)
        return _BiasActCuda.apply(x, b, dim % max(x.ndim, 1), spec.id, alpha, gain, clamp, plugin)
    return _bias_act_ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)


def _plugin(impl, x):
    return _build.select_plugin('bias_act', impl, x, 'stylegan2_bias_act', _SOURCES)


def _bias_act_ref(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None):
    """Plain-PyTorch bias_act; differentiable to any order by autograd."""
    spec, alpha, gain, clamp = _resolve(act, alpha, gain, clamp)
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
        if act == 'lrelu' and not (torch.is_grad_enabled() and x.requires_grad):
            # Inference fast path: work in place on the fresh tensor from the bias add.
            x = F.leaky_relu_(x, alpha)
            if gain != 1:
                x = x.mul_(gain)
            return x.clamp_(-clamp, clamp) if clamp >= 0 else x
    x = spec.fn(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _sum_except(t: torch.Tensor, dim: int) -> torch.Tensor:
    """`t` summed over every dimension but `dim` (the bias gradient). A 1-D `t` is returned as it is:
    `sum([])` would sum over every dimension (found on an H200: a (1000,) input's bias gradient came
    back as a scalar)."""
    dims = [d for d in range(t.ndim) if d != dim]
    return t.sum(dims) if dims else t


class _BiasActCuda(torch.autograd.Function):
    """y = kernel mode 0. Backward: dx = kernel mode 1 (through _BiasActGrad, so a second
    backward works), db = dx summed over every dimension but `dim`."""

    @staticmethod
    def forward(ctx, x, b, dim, act_id, alpha, gain, clamp, plugin):
        x = x.contiguous()
        bb = b.contiguous() if b is not None else x.new_empty([0])
        y = plugin.bias_act(x, bb, x.new_empty([0]), 0, act_id, alpha, gain, clamp, dim, _build.current_stream(x))
        ctx.save_for_backward(x, bb)
        ctx.conf = (dim, act_id, alpha, gain, clamp, plugin, b is not None)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, bb = ctx.saved_tensors
        dim, act_id, alpha, gain, clamp, plugin, has_b = ctx.conf
        dx = _BiasActGrad.apply(dy, x, bb, dim, act_id, alpha, gain, clamp, plugin)
        db = None
        if has_b and ctx.needs_input_grad[1]:
            db = _sum_except(dx, dim)
        return dx, db, None, None, None, None, None, None


class _BiasActGrad(torch.autograd.Function):
    """dx = dy * y'(x + b). Its own gradient: d/d(dy) = mode 1 again; d/dx = dy * y''(x + b)."""

    @staticmethod
    def forward(ctx, dy, x, bb, dim, act_id, alpha, gain, clamp, plugin):
        dx = plugin.bias_act(x, bb, dy.contiguous(), 1, act_id, alpha, gain, clamp, dim, _build.current_stream(x))
        ctx.save_for_backward(dy, x, bb)
        ctx.conf = (dim, act_id, alpha, gain, clamp, plugin)
        return dx

    @staticmethod
    def backward(ctx, d_dx):
        dy, x, bb = ctx.saved_tensors
        dim, act_id, alpha, gain, clamp, plugin = ctx.conf
        d_dx = d_dx.contiguous()
        stream = _build.current_stream(x)
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            d_dy = plugin.bias_act(x, bb, d_dx, 1, act_id, alpha, gain, clamp, dim, stream)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            d_x = plugin.bias_act(x, bb, (dy * d_dx).contiguous(), 2, act_id, alpha, gain, clamp, dim, stream)
            if bb.numel() > 0 and ctx.needs_input_grad[2]:
                d_b = _sum_except(d_x, dim)
        return d_dy, d_x, d_b, None, None, None, None, None, None


class EmulatedPlugin:
    """The kernel contract of bias_act.cpp implemented in PyTorch (used by CPU tests to check the
    autograd wrapper; never used for speed)."""

    @staticmethod
    def bias_act(x, b, dy, mode, act_id, alpha, gain, clamp, dim, stream):
        assert x.is_contiguous()
        act = next(name for name, s in activation_funcs.items() if s.id == act_id)
        with torch.enable_grad():
            v = x.detach().requires_grad_(True)
            if b.numel() > 0:
                shape = [1] * x.ndim
                shape[dim] = -1
                v_b = v + b.detach().reshape(shape)
            else:
                v_b = v
            y = activation_funcs[act].fn(v_b, alpha) * gain
            if mode == 0:
                out = y.clamp(-clamp, clamp) if clamp >= 0 else y
                return out.detach()
            (d1,) = torch.autograd.grad(activation_funcs[act].fn(v_b, alpha).sum(), v, create_graph=True)
            deriv = d1
            if mode == 2:
                if not d1.requires_grad:
                    deriv = torch.zeros_like(v)
                else:
                    (deriv,) = torch.autograd.grad(d1.sum(), v, allow_unused=True)
                    deriv = torch.zeros_like(v) if deriv is None else deriv
            mask = torch.ones_like(y, dtype=torch.bool) if clamp < 0 else (y >= -clamp) & (y <= clamp)
            return (dy * deriv.detach() * gain * mask).detach()
