"""LatentAvatar end to end on tiny data: shapes, a training step lowers the loss, mapper fit, the
mapper's control noise."""
from __future__ import annotations

import pytest
import torch

from models.latentavatar import LatentAvatar, LatentAvatarConfig, LossWeights, compute_losses, fit_mapper, \
    train_step
from models.latentavatar.training import jitter_controls, mapper_step
from models.perceptual import PerceptualLoss

TINY = LatentAvatarConfig(code_dim=8, encoder_res=16, n_expr=3, plane_res=16, plane_channels=4, gen_max_channels=32,
                          gen_min_channels=8, feature_dim=6, decoder_hidden=16, low_res=8, out_res=16,
                          sr_channels=16, n_samples=8)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest, and two spin badly on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(b: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    disc = ((xx ** 2 + yy ** 2) < 0.5).float()
    image = torch.stack([0.8 * disc + 0.1, 0.5 * disc + 0.2, 0.3 * disc + 0.3])[None].repeat(b, 1, 1, 1)
    image = (image + 0.05 * torch.rand(image.shape, generator=g)).clamp(0, 1)
    return {"image": image, "face": torch.nn.functional.interpolate(image, size=(16, 16)),
            "matte": torch.nn.functional.interpolate(disc[None, None], size=(8, 8), mode="area").repeat(b, 1, 1, 1),
            "yaw": torch.tensor([-10.0, 0.0, 15.0][:b]), "pitch": torch.tensor([0.0, 5.0, -5.0][:b]),
            "expr": torch.rand(b, 3, generator=g)}


def _eval_loss(model, batch, perceptual):
    torch.manual_seed(0)
    with torch.no_grad():
        return compute_losses(model, batch, perceptual, LossWeights(), mapper_share=0.0, stratified=False)[1]["total"]


def test_forward_shapes():
    torch.manual_seed(0)
    model = LatentAvatar(TINY)
    out = model(torch.randn(2, 8), torch.zeros(2), torch.tensor([0.0, 10.0]))
    assert out["image"].shape == (2, 3, 16, 16)
    assert out["low"].shape == (2, 3, 8, 8) and out["mask"].shape == (2, 1, 8, 8)
    assert float(out["mask"].min().detach()) >= 0 and float(out["mask"].max().detach()) <= 1


def test_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = LatentAvatar(TINY)
    batch = _batch()
    perceptual = PerceptualLoss()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    before = _eval_loss(model, batch, perceptual)
    # one deterministic step on exactly the evaluated objective
    train_step(model, opt, batch, perceptual, LossWeights(), mapper_share=0.0, stratified=False)
    after_one = _eval_loss(model, batch, perceptual)
    assert after_one < before
    for group in opt.param_groups:
        group["lr"] = 2e-3
    for _ in range(25):
        train_step(model, opt, batch, perceptual, LossWeights(), mapper_share=0.5)
    assert _eval_loss(model, batch, perceptual) < 0.8 * before


def test_a_step_whose_loss_is_not_a_number_is_skipped_and_leaves_the_weights_alone():
    torch.manual_seed(0)
    model = LatentAvatar(TINY)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    good = train_step(model, opt, _batch(), None, LossWeights(), mapper_share=0.0, stratified=False)[0]
    assert good["skipped"] == 0.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = _batch()
    bad["image"][0, :, 3, 3] = float("nan")   # one poisoned pixel: the loss and every gradient are NaN
    floats = train_step(model, opt, bad, None, LossWeights(), mapper_share=0.0, stratified=False)[0]
    assert floats["skipped"] == 1.0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)   # nothing moved, nothing became NaN
    again = train_step(model, opt, _batch(), None, LossWeights(), mapper_share=0.0, stratified=False)[0]
    assert again["skipped"] == 0.0 and all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_fit_mapper_regresses_codes():
    torch.manual_seed(0)
    model = LatentAvatar(TINY)
    expr = torch.rand(40, 3)
    codes = expr @ torch.randn(3, 8)
    before = float(torch.nn.functional.mse_loss(model.mapper(expr), codes))
    after = fit_mapper(model, expr, codes, steps=200, lr=3e-3)
    assert after < 0.2 * before


def test_jitter_controls_scales_with_each_controls_spread():
    model = LatentAvatar(TINY)
    train = torch.stack([torch.randn(500) * s for s in (0.05, 1.0, 4.0)], 1)    # controls in mixed units
    model.mapper.set_stats(train)
    expr = torch.zeros(20000, 3)
    assert jitter_controls(model, expr, 0.0) is expr
    torch.manual_seed(0)
    noise = jitter_controls(model, expr, 0.5)
    torch.testing.assert_close(noise.std(0), 0.5 * model.mapper.expr_std, rtol=0.03, atol=0)
    assert float(noise.mean(0).abs().max()) < 0.05


def test_expr_noise_reaches_the_mapper_only():
    """With noise the mapper's code moves (its `code` loss changes); the encoder's code does not (`code_reg`)."""
    torch.manual_seed(0)
    model = LatentAvatar(TINY).eval()
    batch = _batch()
    model.mapper.set_stats(batch["expr"])

    def parts(noise):
        torch.manual_seed(3)
        with torch.no_grad():
            return compute_losses(model, batch, None, LossWeights(perceptual=0.0), mapper_share=1.0,
                                  stratified=False, expr_noise=noise)[1]
    clean, again, noisy = parts(0.0), parts(0.0), parts(1.0)
    assert clean["code"] == again["code"] and clean["l1"] == again["l1"]
    assert noisy["code"] != clean["code"] and noisy["l1"] != clean["l1"]
    assert noisy["code_reg"] == clean["code_reg"]


def test_mapper_step_with_noise_learns_the_smoothed_map():
    """Fitted on two nearly equal control vectors with different codes, the noisy fit gives both about
    their mean code; the clean fit keeps them apart."""
    def fit(noise):
        torch.manual_seed(0)
        model = LatentAvatar(TINY)
        expr = torch.tensor([[0.0, 0.0, 0.0], [0.02, 0.0, 0.0]]).repeat(50, 1) + torch.randn(100, 3) * 0.5
        expr[:2] = torch.tensor([[0.0, 0.0, 0.0], [0.02, 0.0, 0.0]])
        model.mapper.set_stats(expr)
        codes = torch.nn.functional.normalize(torch.randn(100, 8), dim=1) * 8 ** 0.5
        opt = torch.optim.Adam(model.mapper.parameters(), lr=3e-3)
        for _ in range(400):
            mapper_step(model, opt, expr[:2], codes[:2], noise)
        with torch.no_grad():
            out = model.mapper(expr[:2])
        return float((out[0] - out[1]).norm()), float((codes[0] - codes[1]).norm())
    apart_clean, target = fit(0.0)
    apart_noisy, _ = fit(1.0)
    assert apart_clean > 0.5 * target
    assert apart_noisy < 0.5 * apart_clean


def test_on_the_bars_a_render_outside_the_colour_range_is_pulled_back():
    """Nothing but the clamped target holds the unbounded super-resolution output on a bar: in range it costs
    nothing there, out of range it costs, and the gradient points back into [0, 1]."""
    torch.manual_seed(0)
    model = LatentAvatar(TINY)
    batch = {**_batch(), "picture": torch.zeros(3, 1, 16, 16)}           # all bar

    def l1(shift: float) -> torch.Tensor:
        orig = model.forward

        def shifted(*a, **k):
            out = orig(*a, **k)
            return {**out, "image": out["image"] * 0 + shift + out["image"] * 0.01}
        model.forward = shifted
        try:
            torch.manual_seed(0)
            _, parts, _ = compute_losses(model, batch, None, LossWeights(), mapper_share=0.0, stratified=False)
            return torch.tensor(parts["l1"])
        finally:
            model.forward = orig

    assert float(l1(0.5)) == pytest.approx(0.0, abs=1e-7)               # in range: no loss on the bar
    assert float(l1(3.0)) > 1.5                                           # far out of range: about 2 per pixel
    assert float(l1(-2.0)) > 1.5


def test_no_loss_is_taken_on_the_videos_black_bars():
    """With `picture` 0 over the left half (a black bar of the video), changing the target there changes no
    loss term, and the image losses' gradient reaches the render only through the picture."""
    torch.manual_seed(0)
    model = LatentAvatar(TINY)
    batch = _batch()
    keep = torch.ones(3, 1, 16, 16)
    keep[..., :8] = 0.0
    barred = {**batch, "picture": keep}
    other = {**barred, "image": batch["image"].clone()}
    other["image"][..., :8] = 0.0                                        # the bar drawn in black
    other["matte"] = batch["matte"].clone()
    other["matte"][..., :4] = 0.0                                        # the segmenter sees no person on the bar

    def parts(b):
        torch.manual_seed(0)
        with torch.no_grad():
            return compute_losses(model, b, None, LossWeights(), mapper_share=0.0, stratified=False)[1]

    a, b, plain = parts(barred), parts(other), parts(other | {"picture": torch.ones(3, 1, 16, 16)})
    for k in ("l1", "low", "mask"):
        assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k
        assert plain[k] > b[k] + 1e-4, k                                 # without the mask the bar counts
