"""Channels-last convolutions on a CPU (`studio.compute.channels_last`): the same functions, another layout."""
import pytest
import torch

from models.encoders import LatentEncoder
from models.stylegan2 import networks
from models.stylegan2.networks import GeneratorConfig
from studio.compute import channels_last


@pytest.fixture
def restore_switch():
    saved = networks.CPU_CHANNELS_LAST
    yield
    networks.CPU_CHANNELS_LAST = saved


def _assert_same_gradient(a: torch.Tensor, b: torch.Tensor) -> None:
    """Gradients summed in another order (the threads' split varies from run to run): within 2 % of the largest
    (up to 0.74 % seen in 20 runs; a wrong layout gives errors of the gradients' own size); element by element a
    small gradient's relative error can be large (CI once saw 1.2e-6 fail a 1e-3 relative tolerance)."""
    assert float((a - b).abs().max()) <= 2e-2 * float(a.abs().max()) + 1e-7, float((a - b).abs().max())


def _nets(seed=0):
    torch.manual_seed(seed)
    G = GeneratorConfig.small(32).build().train()
    E = LatentEncoder(32, G.w_dim, channel_max=32)
    return G, E


def _run(G, E, x):
    """Image, encoder latents and the gradients of both networks' weights after one reconstruction loss."""
    G.zero_grad(set_to_none=True)
    E.zero_grad(set_to_none=True)
    w = E(x)
    out = G.synthesis(w[:, None].expand(-1, G.num_ws, -1), noise_mode="const")
    (out - x).square().mean().backward()
    grads = [p.grad.clone() for p in list(G.synthesis.parameters()) + list(E.parameters())]
    return out.detach(), w.detach(), grads


def test_cpu_nets_become_channels_last_and_compute_the_same(monkeypatch, restore_switch):
    monkeypatch.delenv("AVATAR_STUDIO_CPU_LAYOUT", raising=False)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    G0, E0 = _nets()
    monkeypatch.setenv("AVATAR_STUDIO_CPU_LAYOUT", "nchw")
    channels_last(G0, E0, device="cpu")                     # turned off: nothing converted, blocks NCHW
    assert networks.CPU_CHANNELS_LAST is False
    assert G0.synthesis.b32.conv1.weight.is_contiguous()
    ref = _run(G0, E0, x)

    monkeypatch.delenv("AVATAR_STUDIO_CPU_LAYOUT")
    G1, E1 = _nets()
    channels_last(G1, E1, None, device="cpu")
    assert networks.CPU_CHANNELS_LAST is True
    for m in (G1.synthesis.b32.conv1, G1.synthesis.b16.conv0, E1.features[0]):
        assert m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()

    seen = []
    hook = G1.synthesis.b32.conv1.register_forward_hook(lambda m, i, o: seen.append(o))
    got = _run(G1, E1, x)
    hook.remove()
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    for a, b in zip(ref[:2], got[:2]):
        assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())
    for a, b in zip(ref[2], got[2]):
        _assert_same_gradient(a, b)


def test_one_sample_keeps_the_fused_path_and_its_layout(restore_switch):
    networks.CPU_CHANNELS_LAST = True
    G, _ = _nets()
    G.eval()
    seen = []
    G.synthesis.b32.conv1.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        G.synthesis(torch.randn(1, G.num_ws, G.w_dim), noise_mode="const")
    assert seen[0].is_contiguous()


def test_a_gpu_device_is_left_alone(restore_switch):
    G, E = _nets()
    channels_last(G, E, device="meta")     # any device that is not the CPU
    assert G.synthesis.b32.conv1.weight.is_contiguous() and E.features[0].weight.is_contiguous()


def test_the_driving_y_network_computes_the_same_channels_last(monkeypatch, restore_switch):
    """`drive` lays the Y-shaped network out channels-last on a CPU (a step 360 -> 262-288 ms on a 2-core Xeon):
    one full step (reconstruction, cycle through the other decoder, critic, anchor) gives the same losses and,
    to float rounding, the same gradients."""
    from models.yshape import ExpressionAnchor, SubjectCritic, YShapeConfig, YShapeNet
    from studio.driving.training import LossWeights, OtherBatch, yshape_step

    monkeypatch.delenv("AVATAR_STUDIO_CPU_LAYOUT", raising=False)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 32, 32, generator=g)
    ob = OtherBatch(torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 5, generator=g))
    pose, expr = torch.rand(4, 2, generator=g), torch.rand(4, 5, generator=g)
    weights = LossWeights(adversarial=0.1, anchor=1.0)

    def one(layout: bool):
        torch.manual_seed(0)
        net = YShapeNet(YShapeConfig(resolution=32, code_dim=16, channels=8, max_channels=32, pose_dim=2))
        critic, anchor = SubjectCritic(16), ExpressionAnchor(16, 5)
        if layout:
            channels_last(net, device="cpu")
            conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
            assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
        params = list(net.parameters()) + list(critic.parameters()) + list(anchor.parameters())
        opt = torch.optim.Adam(params, lr=1e-3)
        logs = yshape_step(net, opt, "ava", x, x, weights, pose=pose, critic=critic, anchor=anchor, expr=expr,
                           other_batch=ob)
        return logs, [p.grad.clone() for p in net.parameters() if p.grad is not None]

    (ref, g0), (got, g1) = one(False), one(True)
    assert ref.keys() == got.keys() and len(g0) == len(g1) > 0
    for k in ref:
        assert abs(ref[k] - got[k]) <= 1e-4 * max(1.0, abs(ref[k])), (k, ref[k], got[k])
    for a, b in zip(g0, g1):
        _assert_same_gradient(a, b)
