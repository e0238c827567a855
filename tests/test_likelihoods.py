"""The decoder likelihoods against scipy densities, and their configuration errors."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import bernoulli, logistic, norm

from ppdgm.distributions import DiscretizedLogistic
from ppdgm.errors import ConfigError
from ppdgm.models import make_likelihood
from ppdgm.models.likelihoods import (
    LIKELIHOODS,
    Bernoulli,
    DiscretizedLogisticLikelihood,
    Gaussian,
)


def _discretized_logistic_pmf(k, loc, scale, bins):
    mass = logistic.cdf(k + 0.5, loc, scale) - logistic.cdf(k - 0.5, loc, scale)
    mass = np.where(k == 0, logistic.cdf(0.5, loc, scale), mass)
    return np.where(k == bins - 1, logistic.sf(bins - 1.5, loc, scale), mass)


def test_bernoulli_is_the_logit_bernoulli():
    lik = make_likelihood("bernoulli", (3,))
    assert isinstance(lik, Bernoulli) and lik.num_params == 1
    logits = torch.tensor([-2.0, 0.3, 1.5], dtype=torch.float64)
    x = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    p = 1 / (1 + np.exp(-logits.numpy()))
    np.testing.assert_allclose(lik(logits).log_prob(x).numpy(), bernoulli.logpmf(x.numpy(), p))
    np.testing.assert_allclose(lik.mean(logits).numpy(), p)


def test_gaussian_fixed_scale_is_that_normal():
    lik = make_likelihood("gaussian", (2, 3), gaussian_scale=0.25)
    assert isinstance(lik, Gaussian) and lik.num_params == 1
    assert "log_scale" not in dict(lik.named_parameters())  # a fixed scale is not trained
    loc = torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(2, 3)
    x = torch.linspace(-0.5, 2.0, 6, dtype=torch.float64).reshape(2, 3)
    np.testing.assert_allclose(
        lik(loc).log_prob(x).numpy(), norm.logpdf(x.numpy(), loc.numpy(), 0.25), rtol=1e-6
    )
    torch.testing.assert_close(lik.mean(loc), loc)
    assert (
        make_likelihood("gaussian", (3,), gaussian_scale="2")(torch.zeros(3)).scale.tolist()
        == [pytest.approx(2.0)] * 3
    )


def test_gaussian_learned_scale_starts_at_one_per_dimension_and_is_trained():
    lik = make_likelihood("gaussian", (4,))
    params = dict(lik.named_parameters())
    assert set(params) == {"log_scale"} and params["log_scale"].shape == (4,)
    torch.testing.assert_close(lik(torch.zeros(4)).scale, torch.ones(4))
    assert isinstance(Gaussian((4,)).log_scale, torch.nn.Parameter)  # learned by default
    with torch.no_grad():
        lik.log_scale.copy_(torch.tensor([0.0, math.log(2.0), math.log(0.5), 1.0]))
    x = torch.tensor([0.3, -1.0, 0.2, 2.0])
    np.testing.assert_allclose(
        lik(torch.zeros(4)).log_prob(x).detach().numpy(),
        norm.logpdf(x.numpy(), 0.0, [1.0, 2.0, 0.5, math.e]),
        rtol=1e-5,
    )


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "wide", None])
def test_gaussian_scale_must_be_learned_or_a_positive_number(bad):
    with pytest.raises(ConfigError, match="gaussian scale"):
        make_likelihood("gaussian", (3,), gaussian_scale=bad)


def test_discretized_logistic_stretches_the_decoder_output_onto_the_bins():
    bins = 17
    lik = make_likelihood("discretized_logistic", (5,), num_bins=bins)
    assert isinstance(lik, DiscretizedLogisticLikelihood) and lik.num_params == 2
    loc = torch.tensor([-0.5, 0.0, 0.25, 0.5, 0.1], dtype=torch.float64)
    log_scale = torch.tensor([0.0, -1.0, 0.5, -2.0, -9.0], dtype=torch.float64)
    d = lik(loc, log_scale)
    assert isinstance(d, DiscretizedLogistic) and d.num_bins == bins
    k = 16
    # location: decoder 0 is the middle bin, -0.5 the first, 0.5 the last
    np.testing.assert_allclose(d.loc.numpy(), (loc.numpy() + 0.5) * k)
    # scale: decoder 0 is a quarter of the range; the log-scale is floored at -7
    expected_log_scale = np.maximum(log_scale.numpy(), -7.0) + math.log(k / 4)
    np.testing.assert_allclose(d.log_scale.numpy(), expected_log_scale)
    x = torch.tensor([0.0, 8.0, 13.0, 16.0, 10.0], dtype=torch.float64)
    np.testing.assert_allclose(
        d.log_prob(x).exp().numpy(),
        _discretized_logistic_pmf(x.numpy(), d.loc.numpy(), np.exp(expected_log_scale), bins),
        rtol=1e-6,
        atol=1e-12,
    )
    torch.testing.assert_close(lik.mean(loc, log_scale), d.mean)


@pytest.mark.parametrize("bins", [2, 256])
def test_discretized_logistic_likelihood_normalizes_over_its_bins(bins):
    lik = make_likelihood("discretized_logistic", (3,), num_bins=bins)
    d = lik(torch.tensor([-0.2, 0.0, 0.4]), torch.tensor([-1.0, 0.0, -3.0]))
    k = torch.arange(bins, dtype=torch.float32)[:, None].expand(bins, 3)
    np.testing.assert_allclose(d.log_prob(k).exp().sum(0).numpy(), np.ones(3), atol=1e-5)


def test_likelihood_configuration_errors_name_the_problem():
    with pytest.raises(ConfigError, match="num_bins >= 2, got 1"):
        make_likelihood("discretized_logistic", (3,), num_bins=1)
    with pytest.raises(
        ConfigError, match=r"^discretized_logistic needs num_bins \(the number of integer values\)$"
    ):
        make_likelihood("discretized_logistic", (3,))
    with pytest.raises(ConfigError, match="unknown likelihood 'poisson'.*bernoulli, gaussian"):
        make_likelihood("poisson", (3,))
    assert LIKELIHOODS == ("bernoulli", "gaussian", "discretized_logistic")
