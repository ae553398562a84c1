"""The point decoder's softplus: the same function and gradient as PyTorch's, and a decoder whose
output does not change when it is swapped in (old checkpoints render as before)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.latentavatar import networks
from models.latentavatar.networks import PointDecoder, softplus


def test_softplus_matches_pytorch_in_value_and_gradient():
    x = torch.cat([torch.linspace(-40, 40, 4001), torch.randn(20000) * 6]).requires_grad_(True)
    y, ref = softplus(x), F.softplus(x)
    assert torch.allclose(y, ref, atol=2e-6, rtol=1e-6)
    big = x.detach() > 20                                  # PyTorch returns x itself there
    assert torch.equal(y.detach()[big], x.detach()[big])
    assert (y >= 0).all()
    g = torch.randn_like(x)
    got, = torch.autograd.grad(y, x, g)
    want, = torch.autograd.grad(ref, x, g)
    assert torch.allclose(got, want, atol=1e-6)
    xd = torch.randn(12, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(softplus, (xd,))


def test_decoder_renders_the_same_with_either_softplus(monkeypatch):
    torch.manual_seed(0)
    dec = PointDecoder(8, 6, hidden=16)
    feats = torch.randn(2, 500, 8, requires_grad=True)
    sigma, values = dec(feats)
    (sigma.sum() + values.sum()).backward()
    grad = feats.grad.clone()
    monkeypatch.setattr(networks, "softplus", F.softplus)
    feats.grad = None
    sigma2, values2 = dec(feats)
    (sigma2.sum() + values2.sum()).backward()
    assert torch.allclose(sigma, sigma2, atol=1e-5) and torch.allclose(values, values2, atol=1e-6)
    assert torch.allclose(grad, feats.grad, atol=1e-5)
    assert set(dec.state_dict()) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight",
                                     "net.4.bias"}
