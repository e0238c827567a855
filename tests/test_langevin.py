"""Langevin dynamics (ULA, MALA, SGLD, annealed) over programs, energies, densities and
scores, checked against analytic posteriors and exact stationary laws."""

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyroapi import distributions as wdist
from pyroapi import pyro as wpyro
from scipy import stats

import ppdgm
from ppdgm.errors import ConfigError, ModelError
from ppdgm.inference import langevin
from ppdgm.inference.dynamics import _DualAveraging

# -------------------------------------------------------------------- conjugate references

RNG = np.random.default_rng(1)
N, D, SIGMA = 100, 2, 0.5
X = RNG.normal(size=(N, D))
Y = X @ np.array([1.0, -0.5]) + SIGMA * RNG.normal(size=N)
PRECISION = np.eye(D) + X.T @ X / SIGMA**2
COV = np.linalg.inv(PRECISION)
MEAN = COV @ X.T @ Y / SIGMA**2


def regression(X, y, batch=None):
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with pyro.plate("data", X.shape[0], subsample_size=batch) as idx:
        pyro.sample("y", dist.Normal(X[idx] @ w, SIGMA), obs=y[idx])


COUNTS = RNG.poisson(3.0, size=15).astype(float)
GAMMA_A, GAMMA_B = 2.0 + COUNTS.sum(), 1.0 + len(COUNTS)  # posterior Gamma(a, b)


def gamma_poisson(y):
    rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
    with pyro.plate("obs", len(y)):
        pyro.sample("y", dist.Poisson(rate), obs=y)


def check_moments(draws, ess, mean, cov, bias=0.0):
    """Mean within 4 Monte Carlo standard errors; variance within 4 of its standard errors
    (sd of a variance estimate ~ var * sqrt(2 / ESS)) plus a relative allowance ``bias``."""
    draws = draws.reshape(-1, np.size(mean))
    var = np.diag(np.atleast_2d(cov))
    se = np.sqrt(var / ess)
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 4 * se)
    rel = np.abs(draws.var(0) / var - 1)
    np.testing.assert_array_less(rel, 4 * np.sqrt(2 / ess) + bias)


def run(target, *args, **kw):
    kw.setdefault("progress_bar", False)
    kw.setdefault("warn", False)
    return langevin(target, *args, **kw)


@pytest.fixture(scope="module")
def mala_regression():
    return run(regression, X, Y, method="mala", num_chains=4, num_warmup=400, num_steps=1200)


def test_mala_recovers_conjugate_regression_posterior(mala_regression):
    idata = mala_regression
    ess = az.ess(idata.posterior).w.values
    assert ess.min() > 300
    check_moments(idata.posterior.w.values, ess, MEAN, COV)
    # the acceptance rate is in sample_stats, and warmup steered it to MALA's target
    rate = idata.sample_stats["acceptance_rate"].values
    assert rate.shape == (4, 1200) and np.all((rate >= 0) & (rate <= 1))
    assert abs(rate.mean() - 0.574) < 0.08
    accepted = idata.sample_stats["accepted"].values
    assert abs(accepted.mean() - rate.mean()) < 0.05


def test_program_results_are_inference_data_like_mcmc(mala_regression):
    idata = mala_regression
    assert {"posterior", "sample_stats", "log_likelihood", "posterior_predictive"} <= set(
        idata.groups()
    )
    assert idata.log_likelihood.y.dims == ("chain", "draw", "data")
    assert idata.posterior_predictive.y.shape == (4, 1200, N)
    assert idata.posterior.w.dims == ("chain", "draw", "w_dim_0")
    assert idata.posterior.attrs["method"] == "mala"
    assert not idata.sample_stats.diverging.values.any()
    lp = idata.sample_stats.lp.values
    assert np.isfinite(lp).all()


def test_ula_matches_its_exact_stationary_law():
    # ULA on a Gaussian with precision P is a linear recursion whose stationary covariance
    # is (P (I - h P / 2))^-1: the step's bias, known exactly
    h = 2e-4
    idata = run(regression, X, Y, method="ula", step_size=h, num_warmup=300, num_steps=1500)
    ula_cov = np.linalg.inv(PRECISION @ (np.eye(D) - h * PRECISION / 2))
    assert np.all(np.diag(ula_cov) / np.diag(COV) > 1.02)  # the bias the test can see
    ess = az.ess(idata.posterior).w.values
    check_moments(idata.posterior.w.values, ess, MEAN, ula_cov)
    assert "acceptance_rate" not in idata.sample_stats
    np.testing.assert_allclose(idata.sample_stats.step_size.values, h)


def test_ula_bias_on_a_gaussian_energy_is_the_predicted_one():
    # one dimension, many independent chains: var = s^2 / (1 - h / (2 s^2))
    s2, h = 1.0, 0.4
    idata = run(
        lambda x: (x**2).sum(-1) / (2 * s2),
        kind="energy",
        method="ula",
        event_shape=(1,),
        num_chains=4000,
        step_size=h,
        num_warmup=100,
        num_steps=20,
        seed=3,
    )
    last = idata.posterior.x.values[:, -1, 0]
    expected = s2 / (1 - h / (2 * s2))
    assert abs(last.var() / expected - 1) < 4 * np.sqrt(2 / 4000)
    assert abs(last.mean()) < 4 * np.sqrt(expected / 4000)


def test_sgld_with_a_subsampled_plate_recovers_the_posterior():
    idata = run(
        regression,
        X,
        Y,
        batch=20,
        method="sgld",
        step_size=1e-3,
        num_warmup=300,
        num_steps=1500,
    )
    # a subsampling program has no pointwise groups: its minibatch is random
    assert "log_likelihood" not in idata.groups()
    steps = idata.sample_stats.step_size.values[0]
    assert steps[0] > steps[-1]  # the step decays
    ess = az.ess(idata.posterior).w.values
    # gradient noise and the step add a bias of their own: a looser variance allowance
    check_moments(idata.posterior.w.values, ess, MEAN, COV, bias=0.3)


def test_constrained_site_is_sampled_with_its_jacobian():
    # a positive rate: the sampler moves log(rate), whose potential needs the log-Jacobian
    idata = run(gamma_poisson, COUNTS, num_warmup=300, num_steps=1000)
    rate = idata.posterior.rate.values
    assert rate.min() > 0
    ess = az.ess(idata.posterior).rate.values
    check_moments(rate, ess, GAMMA_A / GAMMA_B, GAMMA_A / GAMMA_B**2)
    # a program without subsampling gets the pointwise groups like mcmc's
    assert {"log_likelihood", "posterior_predictive", "observed_data"} <= set(idata.groups())
    assert idata.log_likelihood.y.shape == (4, 1000, len(COUNTS))
    assert idata.log_likelihood.y.dims[-1] == "obs"


def test_numpyro_backend_runs_a_write_once_program():
    def normal_mean(y):
        mu = wpyro.sample("mu", wdist.Normal(0.0, 3.0))
        with wpyro.plate("data", len(y)):
            wpyro.sample("y", wdist.Normal(mu, 2.0), obs=y)

    y = RNG.normal(1.5, 2.0, size=20)
    prec = 1 / 9 + len(y) / 4
    idata = run(normal_mean, y, backend="numpyro", num_warmup=300, num_steps=1000)
    assert idata.posterior.attrs["inference_library"] == "numpyro"
    ess = az.ess(idata.posterior).mu.values
    check_moments(idata.posterior.mu.values, ess, (y.sum() / 4) / prec, 1 / prec)
    assert "acceptance_rate" in idata.sample_stats


# --------------------------------------------------------------------- function targets

COV2 = np.array([[1.0, 0.8], [0.8, 1.0]])
PREC2 = torch.tensor(np.linalg.inv(COV2), dtype=torch.float32)


def gaussian_energy(x):
    return 0.5 * ((x @ PREC2) * x).sum(-1)


def test_mala_goodness_of_fit_on_a_correlated_gaussian():
    # the last draw of 1500 independent chains: Mahalanobis distances follow chi2(2), and
    # each coordinate N(0, 1)
    idata = run(
        gaussian_energy,
        kind="energy",
        event_shape=(2,),
        num_chains=1500,
        num_warmup=150,
        num_steps=60,
        seed=1,
    )
    x = idata.posterior.x.values[:, -1]
    d2 = np.einsum("ni,ij,nj->n", x, np.linalg.inv(COV2), x)
    assert stats.kstest(d2, stats.chi2(2).cdf).pvalue > 0.01
    for i in range(2):
        assert stats.kstest(x[:, i], stats.norm.cdf).pvalue > 0.01
    assert np.corrcoef(x.T)[0, 1] == pytest.approx(0.8, abs=0.04)


def test_a_distribution_is_a_log_density_target():
    target = dist.MultivariateNormal(torch.zeros(2), torch.tensor(COV2, dtype=torch.float32))
    idata = run(target, num_chains=1000, num_warmup=150, num_steps=40, seed=2)
    x = idata.posterior.x.values[:, -1]
    d2 = np.einsum("ni,ij,nj->n", x, np.linalg.inv(COV2), x)
    assert stats.kstest(d2, stats.chi2(2).cdf).pvalue > 0.01
    assert idata.posterior.attrs["kind"] == "log_prob"


def test_score_and_energy_targets_give_the_same_ula_chains():
    def score(x):
        return -(x @ PREC2)

    common = dict(method="ula", step_size=0.05, num_chains=8, num_warmup=5, num_steps=30, seed=4)
    a = run(score, kind="score", event_shape=(2,), **common)
    b = run(gaussian_energy, kind="energy", event_shape=(2,), **common)
    np.testing.assert_allclose(a.posterior.x.values, b.posterior.x.values, rtol=1e-4, atol=1e-5)
    assert "lp" not in a.sample_stats and "lp" in b.sample_stats


def test_annealed_langevin_ends_at_the_last_noise_level():
    # a noise-conditional score of N(0, s2) perturbed by N(0, sigma^2): exact,
    # s(x, sigma) = -x / (s2 + sigma^2); the draws at the last level follow N(0, s2 + sigma_L^2)
    s2 = 0.25
    levels = np.geomspace(3.0, 0.3, 6)
    last = s2 + levels[-1] ** 2
    seen = []

    def score(x, sigma):
        seen.append(float(sigma))
        return -x / (s2 + sigma**2)

    eps = 0.05 * last
    idata = run(
        score,
        kind="score",
        method="annealed",
        noise_levels=levels,
        step_size=eps,
        init=np.full((3000, 2), 5.0),
        num_steps=80,
        seed=5,
    )
    assert sorted(set(np.round(seen, 6)), reverse=True) == list(np.round(levels, 6))
    x = idata.posterior.x.values[:, -1]
    expected = last / (1 - eps / (2 * last))  # ULA's own bias at the last step size
    np.testing.assert_allclose(x.var(0) / expected, 1, atol=4 * np.sqrt(2 / 3000))
    # the step at level sigma_i is eps (sigma_i / sigma_L)^2; draws come from the last level
    np.testing.assert_allclose(idata.sample_stats.step_size.values, eps)
    assert idata.posterior.x.shape == (3000, 80, 2)


def test_init_sets_the_starting_points_and_the_chain_count():
    idata = run(
        gaussian_energy,
        kind="energy",
        method="ula",
        step_size=1e-6,
        init=np.full((3, 2), 7.0),
        num_warmup=0,
        num_steps=2,
    )
    assert idata.posterior.sizes["chain"] == 3
    np.testing.assert_allclose(idata.posterior.x.values, 7.0, atol=0.05)


def test_dual_averaging_steers_the_acceptance_toward_the_target():
    averager = _DualAveraging(np.array([1.0]), target=0.6)
    eps = np.array([1.0])
    for _ in range(300):  # acceptance falls with the step: exp(-eps)
        eps = averager.update(np.exp(-eps))
    assert np.exp(-averager.final) == pytest.approx(0.6, abs=0.02)


def test_a_program_vmap_cannot_batch_runs_chain_by_chain():
    def scalar_control_flow(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
        if mu.item() > 1e9:  # data-dependent Python control flow: vmap refuses it
            raise AssertionError
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 2.0), obs=y)

    y = RNG.normal(1.5, 2.0, size=20)
    idata = run(scalar_control_flow, y, num_warmup=200, num_steps=600)
    prec = 1 / 9 + len(y) / 4
    ess = az.ess(idata.posterior).mu.values
    check_moments(idata.posterior.mu.values, ess, (y.sum() / 4) / prec, 1 / prec)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="hmc"), "unknown method 'hmc'"),
        (dict(kind="energy", method="mala"), "event_shape"),
        (dict(kind="score", event_shape=(2,)), "MALA needs a density"),
        (dict(kind="score", method="ula", event_shape=(2,)), "pass step_size"),
        (dict(kind="energy", method="annealed", event_shape=(2,), step_size=0.1), "noise_levels"),
        (
            dict(
                kind="energy",
                method="annealed",
                event_shape=(2,),
                step_size=0.1,
                noise_levels=[0.1, 1.0],
            ),
            "decrease",
        ),
        (dict(kind="energy", method="sgld", event_shape=(2,)), "needs a step_size"),
        (
            dict(kind="energy", event_shape=(2,), step_size=-1.0),
            "step_size must be a positive number",
        ),
        (dict(kind="energy", event_shape=(2,), backend="numpyro"), "backend='numpyro'"),
        (dict(kind="energy", init=np.zeros((3, 2)), num_chains=4), "3 chains"),
        (dict(kind="energy", init=np.array([[np.nan, 0.0]])), "NaN"),
        (dict(kind="energy", event_shape=(2,), thin=0), "thin must be"),
        (dict(kind="energy", event_shape=(2,), target_accept=1.5), "target_accept"),
        (dict(kind="wave"), "unknown kind"),
    ],
)
def test_bad_options_get_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        run(gaussian_energy, **kwargs)


def test_a_function_of_the_wrong_shape_is_named():
    with pytest.raises(ModelError, match=r"shape \(4,\)"):
        run(lambda x: x.sum(), kind="energy", event_shape=(2,), num_chains=4)
    with pytest.raises(ModelError, match="shaped like its input"):
        run(lambda x: x.sum(-1), kind="score", event_shape=(2,), method="ula", step_size=0.1)


def test_a_failing_program_and_a_discrete_latent_are_named():
    def broken(y):
        pyro.sample("mu", dist.Normal(0.0, 1.0))
        raise RuntimeError("boom")

    with pytest.raises(ModelError, match="broken.*boom"):
        run(broken, np.zeros(3))

    def discrete(y):
        pyro.sample("k", dist.Bernoulli(0.5))

    with pytest.raises(ConfigError, match="'k' is discrete"):
        run(discrete, np.zeros(3))


def test_a_start_outside_the_support_is_refused():
    with pytest.raises(ModelError, match="not finite at the starting points"):
        run(
            lambda x: torch.log(x).sum(-1),
            kind="log_prob",
            init=-np.ones((2, 1)),
            method="ula",
            step_size=0.1,
        )


def test_annealed_step_grows_with_the_square_of_the_noise_level():
    # with a zero score the chains only diffuse: each step adds variance 2 * step, and the
    # step at level sigma_i is eps * (sigma_i / sigma_L)^2
    levels = np.array([4.0, 2.0, 1.0])
    eps, steps, chains = 1e-3, 10, 4000
    idata = run(
        lambda x, sigma: torch.zeros_like(x),
        kind="score",
        method="annealed",
        noise_levels=levels,
        step_size=eps,
        init=np.zeros((chains, 1)),
        num_steps=steps,
        seed=6,
    )
    x = idata.posterior.x.values[:, -1, 0]
    expected = 2 * steps * eps * np.sum((levels / levels[-1]) ** 2)
    assert x.var() / expected == pytest.approx(1, abs=4 * np.sqrt(2 / chains))


def test_warmup_adapts_a_preconditioner_to_scales_far_apart():
    # sd 0.1 and 10: one step size cannot serve both; the diagonal preconditioner can
    scales = torch.tensor([0.1, 10.0])

    def energy(x):
        return 0.5 * ((x / scales) ** 2).sum(-1)

    common = dict(kind="energy", init=np.zeros((400, 2)), num_warmup=300, num_steps=100, seed=7)
    x = run(energy, **common).posterior.x.values[:, -1]
    np.testing.assert_allclose(x.std(0) / scales.numpy(), 1, atol=0.15)
    stuck = run(energy, adapt_mass=False, **common).posterior.x.values[:, -1]
    assert stuck[:, 1].std() < 5.0  # without it the wide coordinate barely moves


def test_thinning_and_seeds():
    common = dict(kind="energy", event_shape=(2,), num_chains=3, num_warmup=30, num_steps=20)
    full = run(gaussian_energy, seed=8, **common).posterior.x.values
    again = run(gaussian_energy, seed=8, **common).posterior.x.values
    thinned = run(gaussian_energy, seed=8, thin=2, **common).posterior.x.values
    other = run(gaussian_energy, seed=9, **common).posterior.x.values
    np.testing.assert_array_equal(full, again)
    np.testing.assert_array_equal(thinned, full[:, 1::2])
    assert not np.allclose(full, other)


@pytest.mark.gpu
def test_chains_and_an_energy_model_run_on_the_gpu():
    class Quadratic(torch.nn.Module):  # the chains go where the energy's parameters are
        def __init__(self):
            super().__init__()
            self.precision = torch.nn.Parameter(PREC2.clone(), requires_grad=False)

        def forward(self, x):
            assert x.is_cuda
            return 0.5 * ((x @ self.precision) * x).sum(-1)

    energy = Quadratic().cuda()
    idata = run(energy, kind="energy", event_shape=(2,), num_chains=500, num_steps=50)
    x = idata.posterior.x.values[:, -1]
    assert np.corrcoef(x.T)[0, 1] == pytest.approx(0.8, abs=0.08)
    est = ppdgm.DeepEBM(hidden_dims=(16,), langevin_steps=3, buffer_size=64, device="cuda")
    est.fit(RNG.normal(size=(200, 2)), num_steps=5, batch_size=32)
    assert est.model_.shift.is_cuda and np.isfinite(est.sample(10)).all()
