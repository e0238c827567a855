"""Dequantization: the bound and its importance-weighted estimate against P(x) integrated on a
grid, the program's sites, the sampler, and the flows' handling of integer data."""

import math

import numpy as np
import pytest
import torch
from pyro import poutine

from ppdgm import CNF, Glow, RealNVP
from ppdgm.errors import DataValueError
from ppdgm.models.dequantize import Dequantized
from ppdgm.models.flows import Flow, realnvp_layers

K = 3  # levels: x in {0, 1, 2}^2


def _flow(seed=0):
    torch.manual_seed(seed)
    layers, inverted = realnvp_layers(2, 2, (8,))
    flow = Flow(layers, 2, inverted)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.4 * torch.randn_like(p))
    return flow


def _cell_grid(x, n=200):
    """Midpoints of an n x n grid over the cell [x, x + 1)^2 (one row per point)."""
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    u = torch.cartesian_prod(t, t)
    return x + u


def _exact(deq, x):
    """log P(x) and the uniform ELBO E_u[log p(x + u)] by the midpoint rule on the cell."""
    with torch.no_grad():
        logp = deq.log_density(_cell_grid(x))
    return torch.logsumexp(logp, 0) - math.log(len(logp)), logp.mean()


GRID = torch.cartesian_prod(torch.arange(K), torch.arange(K)).double()


def test_uniform_bound_and_its_importance_weighted_estimate_against_the_integral(float64):
    deq = Dequantized(_flow(), K, (2,), kind="uniform")
    total = 0.0
    for x in GRID:
        log_p, elbo = _exact(deq, x)
        total += log_p.exp().item()
        torch.manual_seed(0)
        with torch.no_grad():
            single = deq.log_prob(x.expand(4000, 2), num_particles=1)
            tight = deq.log_prob(x[None], num_particles=20000)[0]
        # one particle: an unbiased estimate of the uniform ELBO; many: of log P(x)
        assert abs(single.mean() - elbo) < 4 * single.std() / math.sqrt(4000) + 1e-3, x
        assert abs(tight - log_p) < 0.01, (x, tight, log_p)
        assert elbo < log_p  # Jensen: the bound is below
    assert 0.02 < total <= 1.0  # the flow's mass inside [0, K)^2 (the rest lies outside)


def test_variational_bound_against_the_integral_under_q(float64):
    deq = Dequantized(_flow(1), K, (2,), kind="variational", hidden=8)
    fresh = deq._posterior(GRID).base_dist.base_dist  # sigmoid(N(0, 1)) for every x at first
    torch.testing.assert_close(fresh.loc, torch.zeros(9, 2))
    torch.testing.assert_close(fresh.scale, torch.ones(9, 2))
    torch.manual_seed(0)
    with torch.no_grad():  # a non-uniform q(u | x)
        for p in deq.encoder.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = GRID[4]
    q = deq._posterior(x[None])
    u = q.sample((2000,))
    assert ((u > 0) & (u < 1)).all()  # on the cube...
    assert (u.mean(0) - 0.5).abs().max() > 0.05 or u.std() < 0.25  # ...and not uniform
    log_p, _ = _exact(deq, x)
    # the ELBO under q on the grid: integral of q(u) [log p(x + u) - log q(u)] du
    cell = _cell_grid(x)
    with torch.no_grad():
        log_q = q.log_prob((cell - x)[:, None])[:, 0]
        integrand = log_q.exp() * (deq.log_density(cell) - log_q)
    elbo = integrand.mean()  # the cell has unit area
    torch.manual_seed(1)
    with torch.no_grad():
        single = deq.log_prob(x.expand(20000, 2), num_particles=1)
        several = deq.log_prob(x.expand(2000, 2), num_particles=50)
    assert abs(single.mean() - elbo) < 4 * single.std() / math.sqrt(20000), (single.mean(), elbo)
    # more particles tighten the bound toward log P(x) (never past it, on average)
    assert elbo + 0.01 < several.mean() < log_p, (elbo, several.mean(), log_p)


def test_the_program_observes_x_plus_u_with_the_scaled_density(float64):
    flow = _flow(2)
    deq = Dequantized(flow, K, (2,))
    x = GRID[[1, 5, 7]]
    guide = poutine.trace(deq.guide).get_trace(x)
    model = poutine.trace(poutine.replay(deq.model, trace=guide)).get_trace(x)
    u = guide.nodes["u"]["value"]
    assert ((u >= 0) & (u < 1)).all()
    site = model.nodes["x"]
    torch.testing.assert_close(site["value"], x + u)
    expected = flow.log_prob((x + u) / K) - 2 * math.log(K)  # p(v) = p_flow(v / K) / K^2
    torch.testing.assert_close(site["fn"].log_prob(site["value"]), expected)
    torch.testing.assert_close(model.nodes["u"]["fn"].log_prob(u), torch.zeros(3))
    # one plate over the examples in both programs; x's density has the example as its event
    for tr in (guide, model):
        for name in ("u", "x") if tr is model else ("u",):
            node = tr.nodes[name]
            (frame,) = node["cond_indep_stack"]
            assert (frame.name, frame.size, frame.full_size) == ("data", 3, 3), name
            assert node["fn"].batch_shape == (3,) and node["fn"].event_shape == (2,), name
    assert model.nodes["x"]["fn"].log_prob(site["value"]).shape == (3,)


def test_dequantized_checks_its_arguments():
    flow = _flow()
    Dequantized(flow, 2, (2,))  # two levels (binary data) is the least
    with pytest.raises(ValueError, match="num_levels must be at least 2, got 1"):
        Dequantized(flow, 1, (2,))
    with pytest.raises(
        ValueError, match="unknown dequantization 'argmax'; choose one of uniform, variational$"
    ):
        Dequantized(flow, 3, (2,), kind="argmax")


def test_samples_are_the_flows_draws_rounded_down_onto_the_grid(float64):
    flow = _flow(3)
    deq = Dequantized(flow, K, (2,))
    torch.manual_seed(5)
    s = deq.sample(500)
    torch.manual_seed(5)
    v = flow.sample(500) * K
    torch.testing.assert_close(s, v.floor().clamp(0, K - 1))
    assert set(s.unique().tolist()) == {0.0, 1.0, 2.0}


def test_flows_dequantize_integer_data_by_default():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(64, 3)).astype(np.float32)
    est = RealNVP(num_transforms=2, hidden_dims=(8,), seed=0, device="cpu").fit(x, num_steps=3)
    assert est.settings_ == {"num_levels": 5, "dequantize": "uniform"}
    assert isinstance(est.model_, Dequantized)
    s = est.sample(50)
    assert np.all(s == np.round(s)) and s.min() >= 0 and s.max() <= 4
    scores = est.score_samples(x[:5])
    np.testing.assert_array_equal(scores, est.score_samples(x[:5]))  # seeded
    assert np.all(scores < 0)  # log-probabilities of discrete values
    with pytest.raises(DataValueError, match=r"integer values in 0\.\.4, found 5\.0 at row 0"):
        est.score_samples(np.full((1, 3), 5.0))
    with pytest.raises(DataValueError, match=r"found 0\.5 at row 0"):
        est.score_samples(np.full((1, 3), 0.5))
    floats = rng.normal(size=(64, 3)).astype(np.float32)
    plain = RealNVP(num_transforms=2, hidden_dims=(8,), seed=0, device="cpu")
    assert plain.fit(floats, num_steps=1).settings_ == {}
    with pytest.raises(DataValueError, match="needs integer values"):
        RealNVP(dequantize="uniform", seed=0, device="cpu").fit(floats, num_steps=1)
    with pytest.warns(UserWarning, match="the data are integers and dequantize='none'"):
        RealNVP(dequantize="none", seed=0, device="cpu").fit(x, num_steps=1)


def test_dequantized_flows_fit_save_and_load(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 17, size=(48, 1, 4, 4)).astype(np.float32)
    glow = Glow(num_levels=1, steps_per_level=1, hidden=8, dequantize="variational", seed=0)
    glow.fit(images, num_steps=3, batch_size=16)
    assert glow.settings_ == {"num_levels": 17, "dequantize": "variational"}
    # ActNorm was initialized from the dequantized values scaled to [0, 1): their mean there
    # (x + u) / K, with u about 1/2 on average under the fresh q(u | x)
    first = glow.model_.flow.net.levels[0][0]
    expected = (images.mean() + 0.5) / 17
    assert abs(first.bias.mean().item() - expected) < 0.01, (first.bias.mean(), expected)
    params = glow.trainer_.params
    assert all(p.grad is not None for p in params)
    assert any(p is glow.model_.encoder[0].weight for p in params)  # q(u | x) is trained
    glow.save(tmp_path / "g.pt")
    again = Glow.load(tmp_path / "g.pt")
    np.testing.assert_array_equal(again.score_samples(images[:4]), glow.score_samples(images[:4]))
    cnf = CNF(hidden_dims=(8,), solver="rk4", step_size=0.5, seed=0, device="cpu")
    cnf.fit(images.reshape(48, -1)[:, :3], num_steps=2)
    assert cnf.settings_["num_levels"] == 17 and cnf.sample(3).shape == (3, 3)
