"""The Y-shaped network and its training step (CPU, tiny shapes, a second or two).

The images are two synthetic "people" (a disc of a different colour and size each) whose mouth
opens with an expression value, so a step that lowers the loss is learning something real.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.yshape import CodeMapper, YShapeConfig, YShapeNet, cycle_loss, other, reconstruction_loss
from studio.driving.data import augment
from studio.driving.training import LossWeights, mapper_step, yshape_step

R = 16


def faces(person: str, n: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, R, R) in [0, 1]: a disc per person, mouth opening random per image."""
    import cv2

    rng = np.random.default_rng(seed)
    colour, radius = ((200, 150, 120), 6) if person == "ava" else ((120, 170, 210), 7)
    out = []
    for k in range(n):
        img = np.full((R, R, 3), 128, np.uint8)
        cv2.circle(img, (R // 2, R // 2), radius, colour, -1)
        cv2.ellipse(img, (R // 2, R // 2 + 3), (3, max(1, int(1 + 2 * rng.random()))), 0, 0, 360, (90, 20, 30), -1)
        out.append(img)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture
def net():
    torch.manual_seed(0)
    return YShapeNet(YShapeConfig(resolution=R, code_dim=8, channels=8, max_channels=16))


def test_shapes_and_bad_input(net):
    x = faces("ava", 3)
    code = net.encode(x)
    assert code.shape == (3, 8)
    for s in ("ava", "act"):
        y = net.decode(code, s).detach()
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    with pytest.raises(AssertionError):
        net.encode(torch.rand(2, 3, R * 2, R * 2))
    with pytest.raises(ValueError):
        YShapeConfig(resolution=24)
    assert other("ava") == "act" and other("act") == "ava"
    with pytest.raises(ValueError):
        other("someone")


def test_a_training_step_lowers_the_loss(net):
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x = faces("act", 8)
    w = LossWeights()
    before = yshape_step(net, opt, "act", x, x, w)["total"]
    for _ in range(25):
        after = yshape_step(net, opt, "act", x, x, w)["total"]
    assert math.isfinite(after) and after < 0.8 * before, (before, after)
    # one step on a batch measurably lowers that batch's loss (not only over many steps)
    with torch.no_grad():
        l0 = reconstruction_loss(net(x, "act"), x)[0].item()
    yshape_step(net, opt, "act", x, x, LossWeights(cycle=False))
    with torch.no_grad():
        l1 = reconstruction_loss(net(x, "act"), x)[0].item()
    assert l1 < l0, (l0, l1)


@pytest.mark.parametrize("subject", ["ava", "act"])
def test_the_frozen_decoder_does_not_change_in_a_step(net, subject):
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = faces(subject, 6)
    for _ in range(2):  # the second step has Adam moments for every trained parameter
        yshape_step(net, opt, subject, x, x, LossWeights(cycle=True))
    frozen = {k: v.clone() for k, v in net.decoders[other(subject)].state_dict().items()}
    trained = {k: v.clone() for k, v in net.decoders[subject].state_dict().items()}
    enc = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    yshape_step(net, opt, subject, x, x, LossWeights(cycle=True))
    for k, v in net.decoders[other(subject)].state_dict().items():
        assert torch.equal(v, frozen[k]), f"the frozen decoder's {k} changed"
    assert any(not torch.equal(v, trained[k]) for k, v in net.decoders[subject].state_dict().items())
    assert any(not torch.equal(v, enc[k]) for k, v in net.encoder.state_dict().items())
    # gradients flowed through the frozen decoder (cycle) but its parameters got none and stay trainable
    assert all(p.grad is None for p in net.decoders[other(subject)].parameters())
    assert all(p.requires_grad for p in net.parameters())


def test_the_cycle_path_gradient_reaches_the_shared_encoder(net):
    x = faces("act", 4)
    code = net.encode(x).detach()  # cut the direct path: only the cycle's second encoding is left
    loss, parts = cycle_loss(net, code, x, "act", ssim_weight=0.1, code_weight=1e-4)
    assert set(parts) == {"cycle_l1", "cycle_ssim", "cycle_code"}
    net.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in net.encoder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0, "no gradient reached E_shared through the cycle"
    # both decoders lie on the cycle: D_ava on the way out, D_act on the way back
    for s in ("ava", "act"):
        assert sum(float(p.grad.abs().sum()) for p in net.decoders[s].parameters()) > 0


def test_without_the_cycle_the_other_decoder_gets_no_gradient_path(net):
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = faces("ava", 4)
    logs = yshape_step(net, opt, "ava", x, x, LossWeights(cycle=False))
    assert "cycle_l1" not in logs and {"l1", "ssim", "total"} <= set(logs)
    logs = yshape_step(net, opt, "ava", x, x, LossWeights(cycle=True))
    assert {"cycle_l1", "cycle_ssim", "cycle_code"} <= set(logs)


def test_mapper_fits_codes_to_targets():
    torch.manual_seed(0)
    codes = torch.randn(64, 8)
    targets = codes[:, :3] @ torch.randn(3, 5) * 4 + 10  # a target in other units than the codes
    m = CodeMapper(8, 5, hidden=32)
    m.set_stats(codes, targets)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = mapper_step(m, opt, codes, targets)
    for _ in range(200):
        last = mapper_step(m, opt, codes, targets)
    assert last < 0.1 * first
    with torch.no_grad():
        err = (m(codes) - targets).abs().mean() / targets.std()
    assert err < 0.2


def test_augment_is_reproducible_from_the_generator():
    x = faces("ava", 5)
    a = augment(x, np.random.default_rng(3))
    b = augment(x, np.random.default_rng(3))
    c = augment(x, np.random.default_rng(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1


def test_weighted_l1():
    x = faces("ava", 2)
    y = x.clone()
    y[..., :4, :] = 0.0                                        # the error sits in the top rows only
    plain, p = reconstruction_loss(y, x)
    ones, q = reconstruction_loss(y, x, weight=torch.ones(1, 1, R, R))
    assert torch.isclose(p["l1"], q["l1"]) and torch.isclose(plain, ones)
    w = torch.ones(1, 1, R, R)
    w[..., :4, :] = 3.0                                        # those rows count three times
    _, top = reconstruction_loss(y, x, weight=w)
    w2 = torch.ones(1, 1, R, R)
    w2[..., 8:, :] = 3.0                                       # rows without error count three times
    _, bottom = reconstruction_loss(y, x, weight=w2)
    assert top["l1"] > p["l1"] > bottom["l1"]


# ----------------------------------------------------------------------------- sharing the code
def test_pose_conditioned_decoders_take_the_pose_and_old_configs_do_not():
    torch.manual_seed(0)
    pnet = YShapeNet(YShapeConfig(resolution=R, code_dim=8, channels=8, max_channels=16, pose_dim=2))
    x = faces("ava", 3)
    code = pnet.encode(x)
    with pytest.raises(AssertionError):
        pnet.decode(code, "ava")                                           # a pose is required
    a = pnet.decode(code, "ava", torch.zeros(3, 2))
    b = pnet.decode(code, "ava", torch.full((3, 2), 1.5))
    assert a.shape == x.shape and float((a - b).detach().abs().mean()) > 1e-4  # the pose reaches the image
    # a network saved before the pose existed reads as pose_dim 0 and loads into the old layout
    old = YShapeConfig.from_dict({"resolution": R, "code_dim": 8, "channels": 8, "max_channels": 16})
    assert old.pose_dim == 0
    YShapeNet(old).load_state_dict(YShapeNet(old).state_dict())


def test_the_critic_pushes_the_encoder_away_from_what_tells_people_apart():
    """The reversed gradient: the critic's own parameters descend its loss while E_shared gets
    the opposite of the gradient that would help the critic."""
    from models.yshape import SubjectCritic, adversarial_loss

    torch.manual_seed(0)
    net = YShapeNet(YShapeConfig(resolution=R, code_dim=8, channels=8, max_channels=16))
    critic = SubjectCritic(8, hidden=16)
    xa, xb = faces("ava", 6), faces("act", 6, seed=1)

    def enc_grad(reverse: bool):
        net.zero_grad(set_to_none=True)
        critic.zero_grad(set_to_none=True)
        codes = {"ava": net.encode(xa), "act": net.encode(xb)}
        if reverse:
            loss, acc = adversarial_loss(critic, codes)
        else:  # the same loss with a plain gradient
            logits = torch.cat([critic(codes["ava"]), critic(codes["act"])])
            labels = torch.cat([torch.zeros(6), torch.ones(6)])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            acc = None
        loss.backward()
        return torch.cat([p.grad.flatten() for p in net.encoder.parameters()]), \
            torch.cat([p.grad.flatten() for p in critic.parameters()]), acc

    ge_rev, gc_rev, acc = enc_grad(True)
    ge, gc, _ = enc_grad(False)
    assert 0.0 <= acc <= 1.0
    assert torch.allclose(ge_rev, -ge, atol=1e-7) and float(ge.abs().sum()) > 0
    assert torch.allclose(gc_rev, gc, atol=1e-7)


def test_step_with_critic_and_anchor_trains_them_and_keeps_the_frozen_decoder():
    from models.yshape import ExpressionAnchor, SubjectCritic
    from studio.driving.training import OtherBatch

    torch.manual_seed(0)
    net = YShapeNet(YShapeConfig(resolution=R, code_dim=8, channels=8, max_channels=16, pose_dim=2))
    critic, anchor = SubjectCritic(8, hidden=16), ExpressionAnchor(8, 3)
    opt = torch.optim.Adam([*net.parameters(), *critic.parameters(), *anchor.parameters()], lr=5e-3)
    xa, xb = faces("ava", 8), faces("act", 4, seed=1)
    ea, eb = torch.randn(8, 3), torch.randn(4, 3)
    w = LossWeights(adversarial=0.5, anchor=1.0)
    frozen = {k: v.clone() for k, v in net.decoders["act"].state_dict().items()}
    a0 = anchor.head.weight.detach().clone()
    c0 = [p.detach().clone() for p in critic.parameters()]
    logs = [yshape_step(net, opt, "ava", xa, xa, w, pose=torch.zeros(8, 2), critic=critic, anchor=anchor, expr=ea,
                        other_batch=OtherBatch(xb, eb)) for _ in range(30)]
    assert {"critic", "critic_acc", "anchor"} <= set(logs[0])
    assert logs[-1]["anchor"] < logs[0]["anchor"], (logs[0]["anchor"], logs[-1]["anchor"])
    assert not torch.equal(anchor.head.weight, a0)
    assert any(not torch.equal(p, q) for p, q in zip(critic.parameters(), c0))
    for k, v in net.decoders["act"].state_dict().items():
        assert torch.equal(v, frozen[k]), f"the frozen decoder's {k} changed"
