"""Autoregressive models: connectivity by gradients, the exact likelihood against the product of
its conditionals and against enumeration, sampling against the enumerated distribution."""

import itertools

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy.stats import chisquare

from ppdgm import FVSBN
from ppdgm.data import load_data
from ppdgm.errors import ConfigError
from ppdgm.inference import ExactNLL
from ppdgm.models import AutoregressiveBernoulli, MaskedLinear, fvsbn_net


def _model(dim, order, seed=0):
    torch.manual_seed(seed)
    net = fvsbn_net(order)
    with torch.no_grad():
        net.weight.normal_(0, 1.5)
        net.bias.normal_(0, 1.0)
    return AutoregressiveBernoulli(net, dim, order)


ORDERS = [torch.arange(5), torch.tensor([3, 0, 4, 1, 2])]


@pytest.mark.parametrize("order", ORDERS, ids=["natural", "permuted"])
def test_each_output_depends_only_on_the_inputs_before_it(order):
    model = _model(5, order)
    rank = {int(d): i for i, d in enumerate(order)}
    x = torch.rand(3, 5, requires_grad=True)
    for d in range(5):
        (grad,) = torch.autograd.grad(model.logits(x)[:, d].sum(), x)
        seen = {j for j in range(5) if grad[:, j].abs().sum() > 0}
        assert seen == {j for j in range(5) if rank[j] < rank[d]}, (d, seen)


@pytest.mark.parametrize("order", ORDERS, ids=["natural", "permuted"])
def test_exact_likelihood_is_the_product_of_its_conditionals_and_normalizes(order):
    model = _model(5, order)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    log_p = model.log_prob(xs)
    torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0), rtol=0, atol=1e-5)
    # one conditional at a time, from the model's own weights, with only the earlier
    # dimensions visible
    w, b = model.net.weight.detach(), model.net.bias.detach()
    by_hand = torch.zeros(len(xs))
    seen = []
    for d in order.tolist():
        logit = b[d] + xs[:, seen] @ w[d, seen] if seen else b[d].expand(len(xs))
        by_hand += dist.Bernoulli(logits=logit).log_prob(xs[:, d])
        seen.append(d)
    torch.testing.assert_close(log_p, by_hand, rtol=1e-5, atol=1e-5)
    # the program's observed site carries the same log density
    tr = pyro.poutine.trace(model.model).get_trace(xs)
    torch.testing.assert_close(tr.log_prob_sum(), log_p.sum(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(
        ExactNLL()(model.model, None)(xs), -log_p.sum(), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("order", ORDERS, ids=["natural", "permuted"])
def test_samples_follow_the_enumerated_distribution(order):
    model = _model(5, order, seed=1)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    probs = model.log_prob(xs).exp().detach().numpy().astype(np.float64)
    torch.manual_seed(0)
    s = model.sample(20000)
    index = (s.numpy() @ (2 ** np.arange(4, -1, -1))).astype(int)
    counts = np.bincount(index, minlength=32)
    expected = probs * len(s)
    keep = expected > 5
    _, p = chisquare(counts[keep], expected[keep] / expected[keep].sum() * counts[keep].sum())
    assert p > 1e-3, p


def test_exact_nll_refuses_a_model_with_latent_sites():
    def latent(x):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0).expand(x.shape).to_event(1), obs=x)

    with pytest.raises(ConfigError, match=r"ExactNLL needs a model without latent sites, but 'z'"):
        ExactNLL()(latent, None)(torch.zeros(3))


def test_masked_linear_checks_its_mask():
    with pytest.raises(ValueError, match=r"mask of shape \(3, 3\) for a layer of shape \(2, 3\)"):
        MaskedLinear(3, 2, torch.ones(3, 3))


def test_fvsbn_learns_the_binary_digits():
    d = load_data("digits-binary")
    untrained = FVSBN(seed=0, device="cpu").fit(d.x_train, num_steps=1)
    fitted = FVSBN(seed=0, device="cpu").fit(d.x_train, num_steps=300)
    # exact NLL in nats: 44.2 untrained, 26.7 after 300 steps (19.5 after 2,000)
    assert -fitted.score(d.x_test) < -untrained.score(d.x_test) - 10
    samples = fitted.sample(200, seed=0)
    assert set(np.unique(samples)) <= {0.0, 1.0}
    assert np.corrcoef(samples.mean(0), d.x_train.mean(0))[0, 1] > 0.8
    with pytest.raises(ConfigError, match=r"FVSBN models vectors \(N, D\)"):
        FVSBN(seed=0).fit(d.x_train.reshape(-1, 1, 8, 8), num_steps=1)
