"""Generator / discriminator behaviour on CPU: shapes, config-f dimensions, noise modes,
truncation, fused vs unfused modulated convolution, a training step with R1."""

import pytest
import torch

from models.stylegan2.discriminator import Discriminator
from models.stylegan2.networks import Generator, GeneratorConfig


def tiny_config(resolution=32):
    return GeneratorConfig(z_dim=32, w_dim=32, img_resolution=resolution, mapping_layers=2, channel_base=512, channel_max=32)


@pytest.fixture(scope='module')
def G():
    torch.manual_seed(0)
    G = tiny_config().build().eval()
    with torch.no_grad():   # make noise matter
        for name, p in G.named_parameters():
            if name.endswith('noise_strength'):
                p.fill_(0.3)
    return G


def test_config_f_shapes():
    cfg = GeneratorConfig.ffhq_config_f(1024)
    with torch.device('meta'):
        G = cfg.build()
    assert G.num_ws == 18 and G.w_dim == 512 and G.img_resolution == 1024
    assert sum(p.numel() for p in G.parameters()) == 30_370_060   # NVIDIA's FFHQ config-f G
    names = dict(G.named_parameters()) | dict(G.named_buffers())
    assert names['synthesis.b4.const'].shape == (512, 4, 4)
    assert names['synthesis.b8.conv0.affine.weight'].shape == (512, 512)
    assert names['synthesis.b1024.torgb.weight'].shape == (3, 32, 1, 1)
    assert names['synthesis.b64.conv1.noise_const'].shape == (64, 64)
    assert names['mapping.fc7.weight'].shape == (512, 512) and names['mapping.w_avg'].shape == (512,)
    assert names['synthesis.b8.resample_filter'].shape == (4, 4)


@pytest.mark.parametrize('res', [64, 128, 256, 512])
def test_num_ws_for_each_resolution(res):
    with torch.device('meta'):
        G = GeneratorConfig.ffhq_config_f(res).build()
    import math
    assert G.num_ws == 2 * int(math.log2(res)) - 2


def test_forward_shapes_and_range(G):
    z = torch.randn(3, G.z_dim)
    with torch.no_grad():
        img = G(z)
    assert img.shape == (3, 3, 32, 32) and img.dtype == torch.float32
    assert torch.isfinite(img).all()


def test_const_noise_is_bit_identical_and_random_is_not(G):
    z = torch.randn(1, G.z_dim)
    with torch.no_grad():
        ws = G.mapping(z)
        a = G.synthesis(ws, noise_mode='const')
        b = G.synthesis(ws, noise_mode='const')
        r1 = G.synthesis(ws, noise_mode='random')
        r2 = G.synthesis(ws, noise_mode='random')
        n = G.synthesis(ws, noise_mode='none')
    assert torch.equal(a, b)
    assert not torch.equal(r1, r2) and not torch.equal(a, n)
    with pytest.raises(AssertionError):
        G.synthesis(ws, noise_mode='video')


def test_truncation(G):
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(G.w_dim))
        ws0 = G.mapping(z, truncation_psi=0)
        ws1 = G.mapping(z)
        half = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert ws0.shape == (2, G.num_ws, G.w_dim)
    torch.testing.assert_close(ws0, G.mapping.w_avg.expand_as(ws0))
    torch.testing.assert_close(half[:, :2], G.mapping.w_avg + 0.5 * (ws1[:, :2] - G.mapping.w_avg))
    torch.testing.assert_close(half[:, 2:], ws1[:, 2:])


def test_update_emas_moves_w_avg():
    G = tiny_config().build()
    before = G.mapping.w_avg.clone()
    G.mapping(torch.randn(4, G.z_dim), update_emas=True)
    assert not torch.equal(before, G.mapping.w_avg)


def test_fused_and_unfused_modconv_agree(G):
    ws = G.mapping(torch.randn(2, G.z_dim)).detach()
    with torch.no_grad():
        a = G.synthesis(ws, fused_modconv=True)
        b = G.synthesis(ws, fused_modconv=False)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_cpu_batches_take_the_unfused_path_and_single_renders_the_fused_one(G, monkeypatch):
    """On a CPU the shared-weight convolution is faster for a batch (README of networks.fused_modconv_default);
    one render, or any batch off the CPU in eval mode, keeps NVIDIA's fused path."""
    from models.stylegan2 import layers, networks

    seen = []
    real = layers.modulated_conv2d

    def spy(*a, **k):
        seen.append(k.get("fused_modconv"))
        return real(*a, **k)

    monkeypatch.setattr(networks, "modulated_conv2d", spy)
    ws = G.mapping(torch.randn(3, G.z_dim)).detach()
    with torch.no_grad():
        G.synthesis(ws[:1])
        single, seen[:] = list(seen), []
        G.synthesis(ws)
        batch = list(seen)
    assert single and all(single), single
    assert batch and not any(batch), batch
    meta = torch.empty(3, 2, 4, device="meta")
    assert networks.fused_modconv_default(False, torch.float32, meta)     # a GPU batch in eval: fused
    assert not networks.fused_modconv_default(True, torch.float32, meta)  # training: never fused


def test_shape_checks(G):
    with pytest.raises(ValueError, match='Wrong size'):
        G(torch.randn(1, G.z_dim + 1))
    with pytest.raises(ValueError):
        G.synthesis(torch.randn(1, G.num_ws - 1, G.w_dim))


def test_conditional_generator():
    G = Generator(z_dim=16, w_dim=16, img_resolution=8, c_dim=5, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=16))
    img = G(torch.randn(2, 16), torch.eye(5)[:2])
    assert img.shape == (2, 3, 8, 8)


def test_discriminator_and_one_training_step_with_r1():
    torch.manual_seed(1)
    G = tiny_config(16).build().train()
    D = Discriminator(16, channel_base=256, channel_max=32)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    real = torch.rand(4, 3, 16, 16) * 2 - 1

    fake = G(torch.randn(4, G.z_dim), noise_mode='random')
    assert D(fake).shape == (4, 1)
    loss_g = torch.nn.functional.softplus(-D(fake)).mean()
    opt_g.zero_grad()
    loss_g.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for n, p in G.named_parameters()), 'every G parameter gets a gradient'
    opt_g.step()

    real.requires_grad_(True)
    logits = D(real)
    (r1_grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)   # R1 needs double backward
    loss_d = torch.nn.functional.softplus(-logits).mean() + torch.nn.functional.softplus(D(fake.detach())).mean() + r1_grad.square().sum() * 0.5
    opt_d.zero_grad()
    loss_d.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())
    opt_d.step()
