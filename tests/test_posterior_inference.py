"""Posterior inference on write-once models: conjugate references on both backends,
cross-backend agreement, SVI against closed-form posteriors, diagnostics and bad input."""

import os
import warnings

import numpy as np
import pytest
from pyroapi import distributions as dist
from pyroapi import pyro
from scipy import stats

import ppdgm.inference as inf
from ppdgm.errors import ConfigError, ConvergenceWarning, DataValueError
from ppdgm.inference.posterior import check_diagnostics

BACKENDS = ["numpyro", "pyro"]


def normal_known_var(x=None, n=None, prior_loc=1.0, prior_scale=2.0, noise=1.5):
    mu = pyro.sample("mu", dist.Normal(prior_loc, prior_scale))
    with pyro.plate("data", n if x is None else len(x)):
        pyro.sample("x", dist.Normal(mu, noise), obs=x)


def beta_binomial(trials, k=None):
    p = pyro.sample("p", dist.Beta(2.0, 3.0))
    with pyro.plate("groups", len(trials)):
        pyro.sample("k", dist.Binomial(trials, p), obs=k)


def eight_schools(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("school", len(sigma)):
        theta_raw = pyro.sample("theta_raw", dist.Normal(0.0, 1.0))
        theta = pyro.deterministic("theta", mu + tau * theta_raw)
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


SCHOOLS_Y = np.array([28, 8, -3, 7, -1, 1, 18, 12], dtype=float)
SCHOOLS_SIGMA = np.array([15, 10, 16, 11, 9, 11, 10, 18], dtype=float)


def _normal_data():
    rng = np.random.default_rng(1)
    return rng.normal(3.0, 1.5, size=20)


def _normal_posterior(x, prior_loc=1.0, prior_scale=2.0, noise=1.5):
    precision = 1 / prior_scale**2 + len(x) / noise**2
    mean = (prior_loc / prior_scale**2 + x.sum() / noise**2) / precision
    return mean, 1 / precision


def _check_moments(draws, mean, var, ess):
    """Posterior mean within 4 Monte Carlo SE; variance within 4 SE of its estimator."""
    draws = np.asarray(draws).ravel()
    se_mean = np.sqrt(var / ess)
    assert abs(draws.mean() - mean) < 4 * se_mean, (draws.mean(), mean, se_mean)
    se_var = var * np.sqrt(2.0 / ess)
    assert abs(draws.var() - var) < 4 * se_var + 1e-9, (draws.var(), var)


def _ess(idata, name, min_fraction=0.2, min_ess=100):
    """Bulk ESS of ``name``, after checking the run mixed: ESS at least ``min_fraction`` of
    the draws (and ``min_ess``), R-hat below 1.02 with several chains. Without these floors a
    badly mixing sampler would widen the tolerance that the ESS sets. (Measured on the 1-D
    normal posterior: NumPyro gives about one effective draw per draw, Pyro's NUTS 0.27 to
    0.47 depending on the seed, at 200 and at 500 warmup steps alike.)"""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = float(az.ess(idata, var_names=[name], method="bulk")[name].values.min())
        draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
        assert ess >= max(min_ess, min_fraction * draws), (name, ess, draws)
        if idata.posterior.sizes["chain"] > 1:
            rhat = float(az.rhat(idata, var_names=[name])[name].values.max())
            assert rhat < 1.02, (name, rhat)
    return ess


@pytest.mark.parametrize("backend", BACKENDS)
def test_normal_normal_matches_analytic_posterior(backend):
    x = _normal_data()
    idata = inf.mcmc(
        normal_known_var,
        x=x,
        backend=backend,
        num_warmup=200,
        num_samples=400 if backend == "numpyro" else 600,
        num_chains=2,
        seed=1,
        progress_bar=False,
    )
    mean, var = _normal_posterior(x)
    _check_moments(idata.posterior["mu"], mean, var, _ess(idata, "mu"))
    # groups an ArviZ user expects
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert group in idata.groups()
    assert idata.posterior["mu"].shape == (2, 400 if backend == "numpyro" else 600)
    np.testing.assert_allclose(idata.observed_data["x"].values, x, rtol=1e-6)
    # pointwise log-likelihood equals scipy's at the posterior draws
    mu = idata.posterior["mu"].values[..., None]
    expected = stats.norm(mu, 1.5).logpdf(x)
    np.testing.assert_allclose(idata.log_likelihood["x"].values, expected, rtol=1e-4, atol=1e-4)
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "data")
    stats_vars = set(idata.sample_stats.data_vars)
    assert {
        "diverging",
        "acceptance_rate",
        "step_size",
        "lp",
        "n_steps",
        "tree_depth",
    } <= stats_vars
    n_steps = idata.sample_stats["n_steps"].values
    assert n_steps.min() >= 1 and idata.sample_stats["tree_depth"].values.max() <= 10
    assert (idata.sample_stats["acceptance_rate"].values <= 1).all()
    if backend == "numpyro":
        assert "energy" in stats_vars


@pytest.mark.parametrize("backend", BACKENDS)
def test_beta_binomial_matches_analytic_posterior(backend):
    trials = np.array([10, 12, 8, 15])
    k = np.array([3, 5, 2, 6])
    idata = inf.mcmc(
        beta_binomial,
        trials,
        k=k,
        backend=backend,
        num_warmup=200,
        num_samples=300,
        num_chains=2,
        seed=2,
        progress_bar=False,
        kernel_kwargs={"jit_compile": True, "ignore_jit_warnings": True}
        if backend == "pyro"
        else None,
    )
    post = stats.beta(2.0 + k.sum(), 3.0 + trials.sum() - k.sum())
    _check_moments(idata.posterior["p"], post.mean(), post.var(), _ess(idata, "p"))
    assert idata.posterior_predictive["k"].shape == (2, 300, 4)
    ppc = idata.posterior_predictive["k"].values
    assert (ppc >= 0).all() and (ppc <= trials).all()


@pytest.fixture(scope="module")
def schools_runs():
    runs = {}
    for backend in BACKENDS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            runs[backend] = inf.mcmc(
                eight_schools,
                SCHOOLS_SIGMA,
                y=SCHOOLS_Y,
                backend=backend,
                num_warmup=300,
                num_samples=500 if backend == "numpyro" else 300,
                num_chains=2,
                seed=3,
                progress_bar=False,
                # Pyro's compiled potential (torch.jit) halves its time
                kernel_kwargs={"jit_compile": True, "ignore_jit_warnings": True}
                if backend == "pyro"
                else None,
            )
    return runs


def test_write_once_model_agrees_across_backends(schools_runs):
    a, b = schools_runs["numpyro"], schools_runs["pyro"]
    for name in ("mu", "tau"):
        da, db = a.posterior[name].values.ravel(), b.posterior[name].values.ravel()
        # the funnel's tau mixes slower than a conjugate posterior: the absolute floor only
        ea, eb = _ess(a, name, min_fraction=0), _ess(b, name, min_fraction=0)
        se = np.sqrt(da.var() / ea + db.var() / eb)
        assert abs(da.mean() - db.mean()) < 4 * se, (name, da.mean(), db.mean(), se)
    # deterministic sites are recorded, with the plate as their dimension
    for idata in (a, b):
        theta = idata.posterior["theta"]
        assert theta.dims == ("chain", "draw", "school")
        expected = idata.posterior["mu"] + idata.posterior["tau"] * idata.posterior["theta_raw"]
        np.testing.assert_allclose(theta.values, expected.values, rtol=1e-4, atol=1e-4)
        assert idata.constant_data["sigma"].shape == (8,)


def test_numpyro_backend_runs_deterministic_and_factor():
    """pyroapi's stock NumPyro backend lacks these two; ppdgm's has them."""

    def model(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        pyro.deterministic("mu2", mu**2)
        # a factor that is exactly the Gaussian log-likelihood of the data
        pyro.factor("lik", dist.Normal(mu, 1.0).log_prob(x).sum())

    x = np.array([1.0, 2.0, 3.0, 2.5])
    idata = inf.mcmc(
        model, x=x, num_warmup=200, num_samples=400, num_chains=1, seed=0, progress_bar=False
    )
    mean, var = _normal_posterior(x, prior_loc=0.0, prior_scale=10.0, noise=1.0)
    _check_moments(idata.posterior["mu"], mean, var, _ess(idata, "mu"))
    np.testing.assert_allclose(idata.posterior["mu2"], idata.posterior["mu"] ** 2, rtol=1e-5)
    assert "lik" in idata.log_likelihood

    import pyroapi

    with pyroapi.pyro_backend("numpy"):
        assert callable(pyroapi.pyro.deterministic) and callable(pyroapi.pyro.factor)


def test_reused_sampler_sees_data_changed_in_place():
    x = _normal_data()
    sampler = inf.MCMC(
        normal_known_var,
        num_warmup=50,
        num_samples=50,
        num_chains=1,
        progress_bar=False,
        warn=False,
    )
    first = sampler.run(x=x, seed=0)
    x += 10.0  # the same array object, new values
    second = sampler.run(x=x, seed=0)
    np.testing.assert_allclose(second.observed_data["x"].values, x, rtol=1e-6)
    assert float(second.posterior["mu"].mean()) > float(first.posterior["mu"].mean()) + 5


def test_divergences_warn_with_count_and_hint():
    def centered(sigma, y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("school", len(sigma)):
            theta = pyro.sample("theta", dist.Normal(mu, tau))
            pyro.sample("y", dist.Normal(theta, sigma), obs=y)

    with pytest.warns(ConvergenceWarning, match=r"(\d+) of 1000 transitions diverged.*reparam"):
        inf.mcmc(
            centered,
            SCHOOLS_SIGMA,
            y=SCHOOLS_Y,
            num_warmup=300,
            num_samples=1000,
            num_chains=1,
            seed=0,
            progress_bar=False,
        )


def test_diagnostics_flag_rhat_and_low_ess():
    import arviz as az

    rng = np.random.default_rng(0)
    apart = np.stack([rng.normal(0, 1, 500), rng.normal(3, 1, 500)])
    with pytest.warns(ConvergenceWarning, match=r"R-hat above 1.01 for a \("):
        check_diagnostics(az.from_dict(posterior={"a": apart}))
    # an AR(1) chain with rho 0.995 has a bulk ESS far below 100 per chain
    ar = np.zeros((2, 500))
    for c in range(2):
        for t in range(1, 500):
            ar[c, t] = 0.995 * ar[c, t - 1] + rng.normal()
    with pytest.warns(ConvergenceWarning, match="bulk ESS below 200"):
        check_diagnostics(az.from_dict(posterior={"b": ar}))
    # a constant (a deterministic site that does not vary) has no R-hat or ESS: not flagged
    good = az.from_dict(posterior={"c": rng.normal(size=(2, 500)), "k": np.ones((2, 500))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_diagnostics(good) == []


def bayes_linreg(x, y=None, noise=0.5):
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with pyro.plate("obs", x.shape[0]):
        pyro.sample("y", dist.Normal((x * w).sum(-1), noise), obs=y)


def _linreg_data():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 2))
    x[:, 1] = 0.8 * x[:, 0] + 0.6 * x[:, 1]  # correlated inputs, correlated posterior
    y = x @ np.array([1.0, -2.0]) + 0.5 * rng.normal(size=30)
    cov = np.linalg.inv(np.eye(2) + x.T @ x / 0.25)
    mean = cov @ (x.T @ y / 0.25)
    return x, y, mean, cov


@pytest.mark.parametrize("backend", BACKENDS)
def test_svi_full_rank_guide_recovers_gaussian_posterior(backend):
    x, y, mean, cov = _linreg_data()
    idata = inf.svi(
        bayes_linreg,
        x,
        y=y,
        guide="multivariate_normal",
        backend=backend,
        num_steps=2000,
        learning_rate=0.02 if backend == "numpyro" else 0.05,
        num_particles=4 if backend == "numpyro" else 1,
        num_samples=2000,
        seed=0,
        progress_bar=False,
    )
    w = idata.posterior["w"].values.reshape(-1, 2)
    np.testing.assert_allclose(w.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(w.T), cov, atol=0.1 * np.abs(cov).max())
    assert idata.loss["loss"].shape[0] == 2000
    assert idata.loss["loss"].values[-100:].mean() < idata.loss["loss"].values[:10].mean()
    assert idata.posterior_predictive["y"].shape == (1, 2000, 30)


def test_svi_custom_guide_and_posterior_predictive_for_new_inputs():
    from pyroapi import ops

    def guide(x=None, n=None):
        loc = pyro.param("loc", ops.tensor(0.0))
        scale = pyro.param("scale", ops.tensor(1.0), constraint=dist.constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    x = _normal_data()
    mean, var = _normal_posterior(x)
    for backend in BACKENDS:
        idata = inf.svi(
            normal_known_var,
            x=x,
            guide=guide,
            backend=backend,
            num_steps=1500,
            learning_rate=0.05,
            num_samples=2000,
            seed=1,
            progress_bar=False,
        )
        mu = idata.posterior["mu"].values.ravel()
        assert abs(mu.mean() - mean) < 0.05, backend
        assert abs(mu.std() - np.sqrt(var)) < 0.05, backend
        # predict 5 new observations: draws of x with mean mu and variance var + noise^2
        idata = inf.posterior_predictive(normal_known_var, idata, n=5, backend=backend, seed=2)
        pred = idata.posterior_predictive["x"].values
        assert pred.shape == (1, 2000, 5)
        assert abs(pred.mean() - mean) < 0.1, backend
        assert abs(pred.var() - (var + 1.5**2)) < 0.25, backend


def test_bad_input_gets_clear_errors():
    x = _normal_data()
    with pytest.raises(DataValueError, match=r"argument 'x' holds a non-finite value \(nan\)"):
        bad = x.copy()
        bad[3] = np.nan
        inf.mcmc(normal_known_var, x=bad, num_samples=10, num_warmup=10, progress_bar=False)
    with pytest.raises(ConfigError, match="unknown backend 'stan'"):
        inf.mcmc(normal_known_var, x=x, backend="stan")
    with pytest.raises(ConfigError, match="unknown kernel 'gibbs'"):
        inf.mcmc(normal_known_var, x=x, kernel="gibbs")
    with pytest.raises(ConfigError, match="num_chains must be a positive integer, got 0"):
        inf.mcmc(normal_known_var, x=x, num_chains=0)
    with pytest.raises(ConfigError, match="unknown guide 'laplace'"):
        inf.svi(normal_known_var, x=x, guide="laplace")
    with pytest.raises(ConfigError, match="no latent sample sites"):
        inf.mcmc(lambda x: pyro.sample("x", dist.Normal(0.0, 1.0), obs=x), x, progress_bar=False)


def test_python_mcmc_runs_chains_in_parallel_in_a_new_process():
    """Importing ppdgm.inference before JAX starts gives JAX a CPU device per chain, so that
    `mcmc(num_chains=4)` in Python runs the chains in parallel as the CLI does."""
    import subprocess
    import sys

    code = (
        "import numpy as np, ppdgm.inference as inf, jax\n"
        "from ppdgm.models.classical import eight_schools\n"
        "s = inf.MCMC(eight_schools, num_warmup=20, num_samples=20, num_chains=4,"
        " progress_bar=False, warn=False)\n"
        "idata = s.run(np.full(8, 10.0), y=np.zeros(8), seed=0)\n"
        "print(jax.local_device_count(), s._sampler.chain_method, idata.posterior.sizes['chain'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PPDGM_HOST_DEVICES")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    devices, method, chains = out.stdout.split()[-3:]
    assert int(devices) >= 4 and method == "parallel" and chains == "4"


@pytest.mark.parametrize("chain_method", [None, "vectorized"])
def test_progress_bar_leaves_the_draws_unchanged(capsys, chain_method):
    x = _normal_data()
    runs = {}
    for progress in (False, True):
        runs[progress] = inf.mcmc(
            normal_known_var,
            x=x,
            num_warmup=60,
            num_samples=40,
            num_chains=2,
            chain_method=chain_method,
            seed=4,
            progress_bar=progress,
            warn=False,
        )
    np.testing.assert_array_equal(runs[True].posterior["mu"], runs[False].posterior["mu"])
    err = capsys.readouterr().err
    if chain_method is None:  # ppdgm's bar; vectorized chains show NumPyro's own, which
        # NumPyro itself turns off under CI and pytest-xdist
        assert "100%" in err and "200/200" in err


def test_compiled_samplers_are_cached_on_disk_where_asked(tmp_path):
    """PPDGM_CACHE_DIR moves JAX's persistent compilation cache; PPDGM_JAX_CACHE=0 turns it
    off."""
    import subprocess
    import sys

    code = (
        "import numpy as np, ppdgm.inference as inf\n"
        "from ppdgm.models.classical import eight_schools\n"
        "inf.mcmc(eight_schools, np.full(8, 10.0), y=np.zeros(8), num_warmup=10,"
        " num_samples=10, num_chains=1, progress_bar=False, warn=False)\n"
    )
    for name, switch in (("on", "1"), ("off", "0")):
        env = {**os.environ, "PPDGM_CACHE_DIR": str(tmp_path / name), "PPDGM_JAX_CACHE": switch}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
    cached = list((tmp_path / "on" / "jax").iterdir())
    assert len(cached) > 0
    assert not (tmp_path / "off").exists()
