"""Models with improper priors (``ImproperUniform`` plus a ``factor``), as models translated
from Stan write constrained parameters: ppdgm traces them at the sampler's initial values,
never by drawing from the prior, on both backends."""

import numpy as np
import pytest
from pyroapi import distributions as dist
from pyroapi import ops, pyro

import ppdgm.inference as inf
from ppdgm.errors import ModelError
from ppdgm.models.classical import hmm_log_likelihood


def ordered_mixture(x):
    """Two unit-scale Gaussians with ordered means under an improper prior and a Normal
    factor, weights Dirichlet."""
    mu = pyro.sample("mu", dist.ImproperUniform(dist.constraints.ordered_vector, (), (2,)))
    pyro.factor("mu_prior", dist.Normal(0.0, 10.0).log_prob(mu).sum())
    w = pyro.sample("w", dist.Dirichlet(ops.ones(2)))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(mu, 1.0)), obs=x)


def poisson_hmm(y):
    """Two-state HMM with Poisson emissions whose rates are positive and ordered (improper
    prior plus a Gamma factor); the state path is summed out by the forward algorithm."""
    rates = pyro.sample(
        "rates", dist.ImproperUniform(dist.constraints.positive_ordered_vector, (), (2,))
    )
    pyro.factor("rates_prior", dist.Gamma(2.0, 0.2).log_prob(rates).sum())
    stay = pyro.sample("stay", dist.Beta(ops.full((2,), 4.0), ops.full((2,), 1.0)))
    trans = ops.stack([ops.stack([stay[0], 1 - stay[0]]), ops.stack([1 - stay[1], stay[1]])])
    log_emit = dist.Poisson(rates).log_prob(y[:, None])
    log_init = ops.log(ops.full((2,), 0.5))
    pyro.factor("y_loglik", hmm_log_likelihood(log_init, ops.log(trans), log_emit))


def _mixture_data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(-2.0, 1.0, 45), rng.normal(2.5, 1.0, 30)])


def _hmm_data():
    rng = np.random.default_rng(1)
    states = np.repeat([0, 1, 0, 1], 6)
    return rng.poisson(np.where(states == 0, 2.0, 9.0)).astype(float)


CASES = {
    "ordered_mixture": (ordered_mixture, _mixture_data, "mu"),
    "poisson_hmm": (poisson_hmm, _hmm_data, "rates"),
}
RUN = {"num_warmup": 300, "num_samples": 400, "num_chains": 1, "progress_bar": False}


def _plain_numpyro(model, data, seed):
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    with inf.use_backend("numpyro"):
        sampler = MCMC(NUTS(model), **{k: v for k, v in RUN.items() if k != "progress_bar"},
                       progress_bar=False)  # fmt: skip
        sampler.run(jax.random.PRNGKey(seed), jnp.asarray(data))
        return {k: np.asarray(v) for k, v in sampler.get_samples().items()}


def _mean_se(draws):
    import arviz as az

    draws = np.asarray(draws)
    ess = np.array([az.ess(draws[..., i].reshape(1, -1)) for i in range(draws.shape[-1])])
    assert (ess > 100).all(), f"too few effective draws for a comparison: {ess}"
    flat = draws.reshape(-1, draws.shape[-1])
    return flat.mean(0), flat.std(0) / np.sqrt(ess)


@pytest.fixture(scope="module")
def reference():
    return {name: _plain_numpyro(m, data(), seed=10) for name, (m, data, _) in CASES.items()}


@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
@pytest.mark.parametrize("name", list(CASES))
def test_improper_prior_models_match_plain_numpyro(name, backend, reference):
    model, data, site = CASES[name]
    x = data()
    kw = {"kernel_kwargs": {"jit_compile": True}} if backend == "pyro" else {}
    idata = inf.mcmc(model, x, backend=backend, seed=1, warn=False, **RUN, **kw)
    got, got_se = _mean_se(idata.posterior[site].values)
    ref, ref_se = _mean_se(reference[name][site])
    assert np.all(np.abs(got - ref) < 4 * np.hypot(got_se, ref_se)), (got, ref)
    assert np.all(np.diff(idata.posterior[site].values, axis=-1) > 0)  # ordered
    # pointwise log-likelihood (factor sites included) and predictions work for them too
    assert "log_likelihood" in idata.groups()
    ll = idata.log_likelihood
    if name == "ordered_mixture":
        assert ll["x"].shape == (1, RUN["num_samples"], len(x))
        assert np.isfinite(ll["x"].values).all()
        pp = idata.posterior_predictive["x"].values
        assert pp.shape == (1, RUN["num_samples"], len(x))
        # the replicated data are spread like the data (two modes 4.5 apart)
        assert abs(pp.std() - x.std()) < 0.3
        again = inf.posterior_predictive(model, idata, x[:5], backend=backend, seed=2)
        assert again.posterior_predictive["x"].shape == (1, RUN["num_samples"], 5)
    else:
        assert np.isfinite(ll["y_loglik"].values).all()


def test_tracing_failure_names_the_model_and_the_site():
    def broken(x):
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Normal(a, 1.0))
        raise ValueError("something inside the model")

    for backend in ("numpyro", "pyro"):
        with pytest.raises(ModelError, match=r"model .*broken failed at or after site 'b'.*"
                           r"ValueError: something inside"):  # fmt: skip
            inf.mcmc(broken, np.ones(3), backend=backend, num_warmup=5, num_samples=5,
                     num_chains=1, progress_bar=False)  # fmt: skip
