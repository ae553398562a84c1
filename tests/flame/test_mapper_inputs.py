"""The StyleGAN expression mapper standardises its inputs, so a FLAME jaw in radians counts.

FLAME controls mix units: the jaw opening in radians (std ~0.05 on a talking clip) beside expression
coefficients of std ~1, and on real clips the jaw is strongly correlated with a coefficient that
also opens the mouth (r = −0.93 with flame_00 on d3). Fed raw, the mapper learned the mouth from the
coefficient and ignored the jaw: the jaw slider of the d3 avatar changed its render by 0.16 grey
levels over the whole sweep (flame_00: 2.1) and its FLAME r was 0.11.
"""
from __future__ import annotations

import torch

from models.pvp_mappers import ExpressionMapper


def _collinear_controls(seed: int, n: int = 256):
    """(n, 6) controls [jaw (radians), flame_00, 4 unrelated] and the mouth opening behind them."""
    g = torch.Generator().manual_seed(seed)
    mouth = torch.randn(n, generator=g)
    jaw = 0.05 * mouth + 0.02 * torch.randn(n, generator=g)   # radians, std ~0.05
    e0 = -mouth + 0.4 * torch.randn(n, generator=g)           # std ~1, r(jaw, e0) ~ −0.9
    return torch.cat([jaw[:, None], e0[:, None], torch.randn(n, 4, generator=g)], 1), mouth


def _jaw_vs_coefficient_response(standardise: bool, seed: int) -> float:
    """Train a small mapper to show the mouth opening (as the mappers stage does: input noise of
    5 % of each control's std), then compare its response to +2 std of the jaw alone with +2 std of
    flame_00 alone."""
    X, mouth = _collinear_controls(seed)
    target = mouth[:, None] * torch.linspace(-1, 1, 8)[None]   # (n, D) one direction in w
    mean, std = X.mean(0), X.std(0)
    torch.manual_seed(seed)
    m = ExpressionMapper(6, 8, 2, n_layers=1, hidden=32,
                         expr_mean=mean if standardise else None, expr_std=std if standardise else None)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    for _ in range(300):
        idx = torch.randint(0, len(X), (16,))
        x = X[idx] + 0.05 * std * torch.randn(16, 6)
        loss = ((m(x)[:, 0] - target[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        base = m(mean[None])[0, 0]
        resp = []
        for k in (0, 1):
            x = mean.clone()
            x[k] += 2 * std[k]
            resp.append(float((m(x[None])[0, 0] - base).norm()))
    return resp[0] / resp[1]


def test_jaw_in_radians_moves_the_render_as_much_as_a_coefficient():
    torch.set_num_threads(1)
    ratios = [_jaw_vs_coefficient_response(True, s) for s in range(2)]
    assert min(ratios) > 0.5, ratios
    # what it was without the standardisation (the cause): the jaw's response an order smaller
    raw = _jaw_vs_coefficient_response(False, 0)
    assert raw < 0.25, raw


def test_mapper_saved_before_the_standardisation_loads_unchanged():
    torch.manual_seed(0)
    old = ExpressionMapper(5, 8, 3, n_layers=2, hidden=16)
    with torch.no_grad():
        for p in old.parameters():
            p.normal_()
    state = {k: v for k, v in old.state_dict().items() if k not in ("expr_mean", "expr_std")}
    new = ExpressionMapper(5, 8, 3, n_layers=2, hidden=16, expr_mean=torch.full((5,), 3.0),
                           expr_std=torch.full((5,), 0.1))
    new.load_state_dict(state)
    x = torch.randn(4, 5)
    assert torch.equal(new.expr_mean, torch.zeros(5)) and torch.equal(new.expr_std, torch.ones(5))
    assert torch.allclose(new(x), old(x))
    # and one saved with them keeps them
    again = ExpressionMapper(5, 8, 3, n_layers=2, hidden=16)
    saved = ExpressionMapper(5, 8, 3, n_layers=2, hidden=16, expr_mean=torch.full((5,), 3.0),
                             expr_std=torch.full((5,), 0.1))
    again.load_state_dict(saved.state_dict())
    assert torch.equal(again.expr_std, torch.full((5,), 0.1))


def test_nerf_expression_mapper_standardises_and_loads_old_files():
    """The NeRF engine's mapper (controls → θ) gets the same standardisation: after `set_stats` a
    jaw of std 0.05 moves the code as much as a coefficient of std 1 does before training, and a
    state dict saved without the buffers loads as it was trained (mean 0, std 1)."""
    from models.latentavatar.networks import ExpressionMapper as NerfMapper

    X, _ = _collinear_controls(0)
    torch.manual_seed(0)
    m = NerfMapper(6, 16, hidden=32)
    old_state = {k: v.clone() for k, v in m.state_dict().items() if k not in ("expr_mean", "expr_std")}
    m.set_stats(X)
    assert torch.allclose(m.expr_std, X.std(0)) and torch.allclose(m.expr_mean, X.mean(0))
    with torch.no_grad():
        base = m(X.mean(0)[None])
        moves = []
        for k in (0, 1):
            x = X.mean(0).clone()
            x[k] += 2 * X.std(0)[k]
            moves.append(float((m(x[None]) - base).norm()))
    assert moves[0] > 0.2 * moves[1], moves          # unscaled, the jaw's move is ~20x smaller
    fresh = NerfMapper(6, 16, hidden=32)
    fresh.load_state_dict(old_state)
    assert torch.equal(fresh.expr_std, torch.ones(6)) and torch.equal(fresh.expr_mean, torch.zeros(6))
    x = torch.randn(3, 6)
    ref = NerfMapper(6, 16, hidden=32)
    ref.load_state_dict({**old_state, "expr_mean": torch.zeros(6), "expr_std": torch.ones(6)})
    assert torch.allclose(fresh(x), ref(x))
