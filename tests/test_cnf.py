"""The continuous normalizing flow: the integrated trace against autograd's Jacobian of the
solved map, inversion, Hutchinson's estimate unbiased, the 2-D density normalized, samples
from the same density, learning, bad input."""

import inspect

import numpy as np
import pytest
import torch

from ppdgm import CNF
from ppdgm.data import load_data
from ppdgm.errors import ConfigError
from ppdgm.models.cnf import ContinuousFlow, ODENet, divergence
from ppdgm.viz import density_grid


def _cnf(dim, seed=0, noise=0.5, **kw):
    torch.manual_seed(seed)
    flow = ContinuousFlow(dim, (16, 16), **{"tol": 1e-9, **kw})
    with torch.no_grad():  # off the identity a fresh flow starts at (zero last layer)
        for p in flow.parameters():
            p.add_(noise * torch.randn_like(p))
    return flow.eval()


def test_divergence_exact_and_hutchinson_against_the_jacobian(float64):
    torch.manual_seed(0)
    a = torch.randn(3, 3)
    x = torch.randn(5, 3, requires_grad=True)
    f = torch.sin(x) @ a.T  # Jacobian a @ diag(cos x): trace sum_i a_ii cos x_i
    expected = (torch.cos(x) * torch.diagonal(a)).sum(-1)
    torch.testing.assert_close(divergence(f, x, None, True), expected)
    e = torch.tensor([1.0, -1.0, 1.0]).expand(5, 3)
    jac = a[None] * torch.cos(x)[:, None, :]  # (5, 3, 3)
    quad = torch.einsum("ni,nij,nj->n", e, jac, e)
    torch.testing.assert_close(divergence(f, x, e, True), quad)


def test_exact_divergence_over_leading_dimensions_without_a_graph(float64):
    # more dimensions than rows, and a leading batch dimension: the loop runs over D
    torch.manual_seed(1)
    a = torch.randn(4, 4)
    x = torch.randn(3, 2, 4, requires_grad=True)
    f = torch.sin(x) @ a.T
    expected = (torch.cos(x) * torch.diagonal(a)).sum(-1)
    torch.testing.assert_close(divergence(f, x, None, False), expected)
    e = torch.randint(0, 2, x.shape).double() * 2 - 1
    jac = a[None, None] * torch.cos(x)[..., None, :]  # (3, 2, 4, 4)
    quad = torch.einsum("bni,bnij,bnj->bn", e, jac, e)
    torch.testing.assert_close(divergence(torch.sin(x) @ a.T, x, e, False), quad)


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_ode_net_against_a_written_out_reference(activation, float64):
    # the time is appended to every layer's input, the activation after each hidden layer
    torch.manual_seed(2)
    flow = ContinuousFlow(3, (5, 4), activation=activation)
    net = flow.net
    assert isinstance(net, ODENet)
    for p in net.parameters():
        torch.nn.init.normal_(p)
    act = {"tanh": torch.tanh, "softplus": torch.nn.functional.softplus}[activation]
    x, t = torch.randn(2, 6, 3), torch.tensor(0.3)
    tt = torch.full((2, 6, 1), 0.3)
    h = x
    for layer in net.layers:
        h = act(torch.cat([h, tt], -1) @ layer.weight.T + layer.bias)
    expected = torch.cat([h, tt], -1) @ net.out.weight.T + net.out.bias
    torch.testing.assert_close(net(t, x), expected)


def test_a_fixed_step_solver_takes_its_steps_and_counts_them(float64):
    flow = _cnf(2, seed=10, solver="rk4", step_size=0.25)
    assert flow.last_evaluations == 0  # nothing solved yet
    x = torch.randn(3, 2)
    with torch.no_grad():
        z = flow.inverse_map(x)
    assert flow.last_evaluations == 16  # 4 steps of 4 stages
    finer = _cnf(2, seed=10, solver="rk4", step_size=0.125)
    with torch.no_grad():
        finer.log_prob(x)
        assert finer.last_evaluations == 32
        assert not torch.allclose(finer.inverse_map(x), z, rtol=0, atol=1e-12)
    # an adaptive solver: the count is the number of calls of the network it chose to make
    flow.solver = "dopri5"
    calls = []
    flow.net.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        flow.inverse_map(x)
    assert flow.last_evaluations == len(calls) > 16


def test_log_prob_is_base_density_plus_log_det_of_the_solved_map(float64):
    flow = _cnf(3)
    base = torch.distributions.Normal(0.0, 1.0)
    xs = torch.randn(4, 3) * 1.5
    lp = flow.log_prob(xs)
    for x, value in zip(xs, lp, strict=True):
        jac = torch.autograd.functional.jacobian(lambda v: flow.inverse_map(v[None])[0], x)
        z = flow.inverse_map(x[None])[0]
        assert (z - x).abs().max() > 0.1  # not the identity
        expected = base.log_prob(z).sum() + torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)


def test_the_solved_maps_invert_each_other(float64):
    flow = _cnf(3, seed=1)
    z = torch.randn(20, 3)
    x = flow.forward_map(z)
    assert not torch.allclose(x, z, atol=0.1)
    torch.testing.assert_close(flow.inverse_map(x), z, rtol=1e-6, atol=1e-6)


def test_hutchinson_is_unbiased_and_used_only_while_training(float64):
    # a fixed-step solver: the trajectory does not depend on the noise, so the estimate is
    # unbiased for the same discretization (and an adaptive one would chase the noise)
    flow = _cnf(3, seed=2, trace="auto", solver="rk4", step_size=0.1)
    x = torch.randn(4, 3)
    with torch.no_grad():
        exact = flow.log_prob(x)
        flow.train()
        draws = flow.log_prob(x.repeat(500, 1)).reshape(500, 4)  # fresh noise on every row
        flow.eval()
        again = flow.log_prob(x)
    torch.testing.assert_close(again, exact)  # evaluation mode: the exact trace, no noise
    sd = draws.std(0)
    assert (sd > 1e-3).all()  # the estimate is noisy...
    err = (draws.mean(0) - exact).abs()
    assert (err < 4 * sd / np.sqrt(len(draws))).all(), (err, sd)  # ...and unbiased
    flow.trace = "exact"
    flow.train()
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(x), exact)
    # 2-D: auto means the exact trace while training too
    flow2 = _cnf(2, seed=3, trace="auto")
    x2 = torch.randn(4, 2)
    with torch.no_grad():
        exact2 = flow2.log_prob(x2)
        flow2.train()
        torch.testing.assert_close(flow2.log_prob(x2), exact2)


def test_two_dimensional_density_integrates_to_one(float64):
    flow = _cnf(2, seed=4, noise=0.3, tol=1e-6)
    torch.manual_seed(0)
    pts = flow.sample(1000).numpy()
    xs, ys, grid = density_grid(np.concatenate([pts, [[-7, -7], [7, 7]]]), size=300, margin=0.1)
    with torch.no_grad():
        p = flow.log_prob(torch.as_tensor(grid)).exp().numpy()
    total = p.sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert abs(total - 1) < 0.01, total


def test_samples_are_base_draws_carried_by_the_map_whose_density_is_scored(float64):
    # sampling runs the ODE from t = 1 to t = 0, and log_prob of a sample is the base density
    # less the log-determinant of that map's Jacobian (autograd through the solver)
    flow = _cnf(2, seed=5, tol=1e-8)
    torch.manual_seed(0)
    s = flow.sample(30)
    torch.manual_seed(0)
    z = torch.randn(30, 2)
    torch.testing.assert_close(s, flow.forward_map(z))
    base = torch.distributions.Normal(0.0, 1.0)
    lp = flow.log_prob(s)
    for zi, value in zip(z, lp, strict=True):
        jac = torch.autograd.functional.jacobian(lambda v: flow.forward_map(v[None])[0], zi)
        expected = base.log_prob(zi).sum() - torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)


def test_the_program_observes_rows_and_log_prob_keeps_leading_dimensions(float64, observed_rows):
    flow = _cnf(3, seed=8, solver="rk4", step_size=0.25)
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        lp = flow.log_prob(x)
        assert lp.shape == (2, 5)
        torch.testing.assert_close(lp, flow.log_prob(x.reshape(10, 3)).reshape(2, 5))
        trace = observed_rows(flow.model, x[0], event_shape=(3,))
    torch.testing.assert_close(trace.nodes["x"]["fn"].log_prob(x[0]), lp[0])
    torch.manual_seed(3)
    drawn = flow.distribution().sample((2, 4))
    torch.manual_seed(3)
    torch.testing.assert_close(drawn, flow.sample(8).reshape(2, 4, 3))


def test_hutchinson_when_asked_is_used_while_training_in_any_dimension(float64):
    flow = _cnf(2, seed=9, trace="hutchinson", solver="rk4", step_size=0.25).train()
    x = torch.randn(6, 2)
    with torch.no_grad():
        torch.manual_seed(0)
        first = flow.log_prob(x)
        torch.manual_seed(1)
        assert not torch.allclose(flow.log_prob(x), first)  # fresh noise, another estimate


def test_every_parameter_gets_a_gradient(float64):
    for trace in ("exact", "hutchinson"):
        flow = _cnf(3, seed=6, trace=trace, tol=1e-5).train()
        flow.log_prob(torch.randn(8, 3)).sum().backward()
        for name, p in flow.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (trace, name)


def test_cnf_learns_eight_gaussians():
    d = load_data("8gaussians")
    tiny = {"hidden_dims": (32, 32), "solver": "rk4", "step_size": 0.25}
    fitted = CNF(**tiny, seed=0, device="cpu").fit(
        d.x_train, num_steps=150, batch_size=256, lr=1e-2
    )
    cov = np.cov(d.x_train.T)
    gaussian = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * cov)[1]  # 3.5 nats; the truth 1.13
    nll = -fitted.score(d.x_test[:1000])
    assert nll < gaussian - 0.5, (nll, gaussian)


def test_cnf_checks_its_hyperparameters_and_input():
    with pytest.raises(ConfigError, match="unknown solver 'rk5'"):
        CNF(solver="rk5")
    with pytest.raises(ConfigError, match="unknown trace 'x'"):
        CNF(trace="x")
    with pytest.raises(ConfigError, match=r"tol must be a number in \(0, 1\]"):
        CNF(tol=0)
    with pytest.raises(ConfigError, match=r"step_size must be a number in \(0, 1\]"):
        CNF(step_size=2.0)
    with pytest.raises(ConfigError, match="hidden_dims must be positive integers"):
        CNF(hidden_dims=())
    with pytest.raises(ValueError, match="unknown solver"):
        ContinuousFlow(2, solver="rk5")
    with pytest.raises(ValueError, match="^unknown trace 'x'"):
        ContinuousFlow(2, trace="x")
    with pytest.raises(ValueError, match="expected vectors of 2 dimensions"):
        ContinuousFlow(2).log_prob(torch.zeros(3, 4))


def test_the_estimator_and_the_flow_default_alike():
    # two signatures hold the same settings (the estimator's gives the command line its
    # options): they must agree
    flow = inspect.signature(ContinuousFlow).parameters
    for name, value in CNF.param_defaults().items():
        if name in flow:
            assert flow[name].default == value, name
    assert {"hidden_dims", "activation", "trace", "solver", "tol", "step_size"} <= set(flow)


def test_validation_uses_the_exact_trace_in_any_dimension():
    # in 3-D the training steps use Hutchinson's estimate; the validation loss that picks the
    # best step is the exact one, the same figure that score_samples gives afterwards
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    est = CNF(hidden_dims=(8,), solver="rk4", step_size=0.5, seed=0, device="cpu")
    est.fit(x[:48], num_steps=4, batch_size=16, lr=1e-2, X_val=x[48:], eval_every=1)
    assert est.model_.trace == "auto" and not est.model_.training
    assert est.selected_step_ == est.best_step_
    assert est.best_val_loss_ == pytest.approx(-est.score(x[48:]), rel=1e-5)
