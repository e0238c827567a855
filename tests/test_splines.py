"""The rational-quadratic spline and its layers: against Pyro's spline, against autograd,
invertible, monotonic, the identity outside its interval and at a fresh start, traceable, and
autoregressive where it says so."""

import importlib
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ppdgm import NSF
from ppdgm.data import load_data
from ppdgm.errors import ConfigError
from ppdgm.models.splines import SplineAutoregressive, SplineCoupling, rq_spline

_pyro_spline = importlib.import_module("pyro.distributions.transforms.spline")

K, BOUND = 6, 3.0


def _params(n, k=K, scale=1.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(n, m, generator=g, dtype=torch.float64) for m in (k, k, k - 1))


def _bins(x, widths):
    """The bin of each point (0 .. K-1) from the widths alone (cumulated softmax)."""
    w = 1e-3 + (1 - 1e-3 * widths.shape[-1]) * torch.softmax(widths, -1)
    inner = torch.cumsum(w, -1)[..., :-1] * 2 * BOUND - BOUND
    return (x[:, None] >= inner).sum(-1)


def test_spline_matches_pyros_where_both_use_the_same_knot_derivatives(float64):
    # Pyro's spline takes normalized bins and positive inner derivatives, and pins the end
    # derivatives at 1 - 1e-3 (ppdgm: exactly 1, the identity's slope): the two agree to
    # rounding in the inner bins, and within the 1e-3 difference in the end bins
    n = 4000
    w, h, d = _params(n)
    x = torch.linspace(-3.5, 3.5, n, dtype=torch.float64)
    slope = 1e-3 + (1 - 1e-3) / math.log(2.0) * F.softplus(d)
    y_ref, ld_ref = _pyro_spline._monotonic_rational_spline(
        x[:, None],
        torch.softmax(w, -1)[:, None],
        torch.softmax(h, -1)[:, None],
        (slope - 1e-3)[:, None],
        bound=BOUND,
    )
    y, ld = rq_spline(x, w, h, d, BOUND)
    inner = (_bins(x, w) > 0) & (_bins(x, w) < K - 1) & (x.abs() < BOUND)
    assert inner.sum() > n // 2
    torch.testing.assert_close(y[inner], y_ref[:, 0][inner], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ld[inner], ld_ref[:, 0][inner], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(y, y_ref[:, 0], rtol=0, atol=1e-2)
    # and the inverse, located by the heights
    x_back, _ = rq_spline(y, w, h, d, BOUND, inverse=True)
    torch.testing.assert_close(x_back, x, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_log_det_is_autograds_derivative_and_the_two_directions_agree(inverse, float64):
    w, h, d = _params(500, seed=1)
    x = (torch.rand(500, dtype=torch.float64) * 2 - 1) * 3.4  # some outside the interval
    x.requires_grad_(True)
    y, ld = rq_spline(x, w, h, d, BOUND, inverse=inverse)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(ld, grad.log(), rtol=1e-9, atol=1e-9)
    back, ld_back = rq_spline(y.detach(), w, h, d, BOUND, inverse=not inverse)
    torch.testing.assert_close(back, x.detach(), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(ld_back, -ld.detach(), rtol=1e-7, atol=1e-7)


def test_spline_is_increasing_continuous_and_the_identity_outside(float64):
    w, h, d = (t[:1].expand(20001, -1) for t in _params(1, seed=2, scale=2.0))
    x = torch.linspace(-4, 4, 20001, dtype=torch.float64)
    y, ld = rq_spline(x, w, h, d, BOUND)
    assert (y.diff() > 0).all()
    outside = x.abs() >= BOUND
    assert torch.equal(y[outside], x[outside]) and (ld[outside] == 0).all()
    # continuous across the knots and the ends: no jump larger than the slope allows
    assert (y.diff() <= ld.exp().max() * 4e-4 + 1e-12).all()
    # the interval maps onto itself
    ends, _ = rq_spline(torch.tensor([-BOUND, BOUND]), w[:2], h[:2], d[:2], BOUND)
    torch.testing.assert_close(ends, torch.tensor([-BOUND, BOUND]), rtol=0, atol=1e-12)


def test_spline_with_zero_parameters_is_the_identity(float64):
    zero = tuple(torch.zeros(100, m, dtype=torch.float64) for m in (K, K, K - 1))
    x = torch.linspace(-5, 5, 100, dtype=torch.float64)
    y, ld = rq_spline(x, *zero, BOUND)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(ld, torch.zeros_like(ld), rtol=0, atol=1e-12)


def test_spline_traces_without_value_dependent_branches():
    w, h, d = (t.float() for t in _params(64, seed=3))
    x = torch.randn(64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(lambda *a: rq_spline(*a, BOUND), (x, w, h, d))
    # other points land in other bins and outside the interval: the graph still holds
    x2 = torch.linspace(-4, 4, 64)
    w2, h2, d2 = (t.float() for t in _params(64, seed=4))
    for got, want in zip(traced(x2, w2, h2, d2), rq_spline(x2, w2, h2, d2, BOUND), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("layer", ["autoregressive", "coupling"])
def test_fresh_layers_are_the_identity_and_keep_their_dependency_structure(layer, float64):
    torch.manual_seed(0)
    dim = 5
    order = torch.tensor([3, 0, 4, 1, 2])
    t = (
        SplineAutoregressive(dim, (16, 16), 4, BOUND, permutation=order)
        if layer == "autoregressive"
        else SplineCoupling(dim, 2, (16, 16), 4, BOUND)
    )
    x = torch.randn(7, dim, dtype=torch.float64)
    torch.testing.assert_close(t(x), x, rtol=0, atol=1e-12)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.5 * torch.randn_like(p))
    jac = torch.autograd.functional.jacobian(lambda v: t._call(v[None])[0], x[0])
    if layer == "autoregressive":
        # y at position i of the ordering depends on x at positions <= i only
        rank = torch.empty(dim, dtype=torch.long)
        rank[order] = torch.arange(dim)
        allowed = rank[:, None] >= rank[None, :]
    else:
        allowed = torch.ones(dim, dim, dtype=torch.bool)
        allowed[:2] = torch.eye(dim, dtype=torch.bool)[:2]  # the first half passes through
        allowed[2:, 2:] = torch.eye(3, dtype=torch.bool)  # each spline sees its own x only
    assert (jac[~allowed] == 0).all()
    assert (jac[allowed].abs() > 0).float().mean() > 0.8  # not trivially zero
    expected = torch.linalg.slogdet(jac)[1]
    y = t(x[:1]).detach()
    torch.testing.assert_close(t.log_abs_det_jacobian(x[:1].clone(), y.clone())[0], expected)
    # the log-determinant the inverse pass leaves for the same pair
    y = y.clone()
    x_back = t.inv(y)
    torch.testing.assert_close(x_back, x[:1])
    torch.testing.assert_close(t.log_abs_det_jacobian(x_back, y)[0], expected)


def test_nsf_trains_compiled_by_default_with_a_decaying_rate():
    d = load_data("8gaussians")
    est = NSF(num_transforms=2, hidden_dims=(16,), count_bins=4, seed=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "runs uncompiled" fallback
        est.fit(d.x_train, num_steps=6, batch_size=64)
    assert est.trainer_._loss.fallback_reason is None
    assert any(v is not False for v in est.trainer_._loss.cache.values())
    assert est.trainer_.lr_schedule == "cosine"
    assert np.isfinite(est.score_samples(d.x_test[:50])).all()


def _perturbed(layer, dim=5):
    torch.manual_seed(1)
    t = (
        SplineAutoregressive(dim, (16, 16), 4, BOUND)
        if layer == "autoregressive"
        else SplineCoupling(dim, 2, (16, 16), 4, BOUND)
    )
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return t


def _jacobian_log_det(t, x):
    return torch.stack(
        [
            torch.linalg.slogdet(torch.autograd.functional.jacobian(lambda v: t._call(v), row))[1]
            for row in x
        ]
    )


@pytest.mark.parametrize("layer", ["autoregressive", "coupling"])
def test_the_last_passs_log_det_is_reused_for_its_own_pair_only(layer, float64):
    t = _perturbed(layer)
    net = t.arn if layer == "autoregressive" else t.net
    calls = []
    net.register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(6, 5, dtype=torch.float64)
    expected = _jacobian_log_det(t, x).detach()
    x2 = torch.randn(6, 5, dtype=torch.float64)
    expected2 = _jacobian_log_det(t, x2).detach()
    fresh = _perturbed(layer)  # no pass yet: the log-det is computed, not looked up
    torch.testing.assert_close(fresh.log_abs_det_jacobian(x, t._call(x)), expected)
    calls.clear()
    y = t._call(x)
    torch.testing.assert_close(t.log_abs_det_jacobian(x, y), expected)
    assert len(calls) == 1  # the forward pass's own log-det, no second network pass
    # another x (with the same y, or its own) is computed afresh
    torch.testing.assert_close(t.log_abs_det_jacobian(x2, y), expected2)
    torch.testing.assert_close(t.log_abs_det_jacobian(x2.clone(), t._call(x2)), expected2)
    # the inverse pass leaves the log-det of its pair too
    y = y.detach().clone()
    x_back = t._inverse(y)
    calls.clear()
    torch.testing.assert_close(t.log_abs_det_jacobian(x_back, y), expected)
    assert not calls


def test_knot_parameters_must_agree_on_the_number_of_bins():
    w, h, d = _params(3)
    x = torch.zeros(3, dtype=torch.float64)
    cases = [((w, h[:, 1:], d), "5 and 5"), ((w, h, d[:, 1:]), "6 and 4"), ((w, h, w), "6 and 6")]
    for bad, got in cases:
        message = f"a spline of 6 bins takes 6 heights and 5 inner derivatives; got {got}$"
        with pytest.raises(ConfigError, match=message):
            rq_spline(x, *bad, BOUND)


@pytest.mark.parametrize("layer", ["autoregressive", "coupling"])
def test_layers_take_batch_dimensions(layer, float64):
    t = _perturbed(layer)
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    y = t._call(x)
    flat = t._call(x.reshape(6, 5))
    torch.testing.assert_close(y, flat.reshape(2, 3, 5))
    ld = t.log_abs_det_jacobian(x, y)
    assert ld.shape == (2, 3)
    torch.testing.assert_close(
        ld, t.log_abs_det_jacobian(x.reshape(6, 5).clone(), flat).reshape(2, 3)
    )
    y = y.detach().clone()
    x_back = t._inverse(y)
    torch.testing.assert_close(x_back, x)
    net = t.arn if layer == "autoregressive" else t.net
    net.register_forward_hook(lambda *args: pytest.fail("the inverse pass's log-det is cached"))
    torch.testing.assert_close(t.log_abs_det_jacobian(x_back, y), ld)
