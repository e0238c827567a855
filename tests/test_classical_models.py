"""The classical latent-variable models: the same log density on both backends, exact
references for the helpers, and parameter recovery from data simulated from each model."""

import itertools
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import ppdgm.inference as inf
from ppdgm.errors import ConvergenceWarning
from ppdgm.models import classical


def _mcmc(model, *args, **kwargs):
    opts = dict(num_warmup=300, num_samples=300, num_chains=1, seed=0, progress_bar=False)
    opts.update(kwargs.pop("opts", {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return inf.mcmc(model, *args, **opts, **kwargs)


def _mean(idata, name):
    return idata.posterior[name].values.reshape((-1,) + idata.posterior[name].shape[2:]).mean(0)


# ---------------------------------------------------------------- both backends


def _log_joint(model, args, kwargs, values, backend):
    from ppdgm.inference.backend import as_backend_args, use_backend

    bargs, bkwargs = as_backend_args(args, kwargs, backend)
    with use_backend(backend):
        if backend == "numpyro":
            import jax.numpy as jnp
            from numpyro.infer.util import log_density

            params = {k: jnp.asarray(v) for k, v in values.items()}
            return float(log_density(model, bargs, bkwargs, params)[0])
        import pyro.poutine as poutine
        import torch

        data = {k: torch.as_tensor(np.array(v)) for k, v in values.items()}
        tr = poutine.trace(poutine.condition(model, data=data)).get_trace(*bargs, **bkwargs)
        return float(tr.log_prob_sum())


def _prior_draw(model, args, kwargs):
    from numpyro import handlers

    from ppdgm.inference.backend import as_backend_args, use_backend

    bargs, bkwargs = as_backend_args(args, kwargs, "numpyro")
    import jax

    with use_backend("numpyro"):
        tr = handlers.trace(handlers.seed(model, jax.random.PRNGKey(3))).get_trace(
            *bargs, **bkwargs
        )
    return {
        k: np.asarray(s["value"])
        for k, s in tr.items()
        if s["type"] == "sample" and not s["is_observed"]
    }


def _cases():
    rng = np.random.default_rng(0)
    x2 = rng.normal(size=(12, 2))
    x4 = rng.normal(size=(15, 4))
    return {
        "gaussian_mixture": (classical.gaussian_mixture, (x2,), {"num_components": 3}),
        "ppca": (classical.ppca, (x4,), {"latent_dim": 2}),
        "factor_analysis": (classical.factor_analysis, (x4,), {"latent_dim": 2}),
        "hmm": (classical.hmm, (rng.normal(size=9),), {"num_states": 3}),
        "linear_regression": (classical.linear_regression, (x2, rng.normal(size=12)), {}),
        "logistic_regression": (
            classical.logistic_regression,
            (x2, (rng.random(12) < 0.5).astype(float)),
            {},
        ),
        "hierarchical_normal": (
            classical.hierarchical_normal,
            (np.arange(10) % 3, rng.normal(size=10)),
            {"num_groups": 3},
        ),
        "eight_schools": (classical.eight_schools, (np.full(8, 10.0), rng.normal(size=8)), {}),
        "lda": (
            classical.lda,
            (rng.integers(0, 6, size=(4, 5)), rng.random((4, 5)) < 0.8),
            # moderate concentrations: torch clamps probabilities below float32 eps
            {
                "num_topics": 2,
                "vocab_size": 6,
                "word_concentration": 2.0,
                "topic_concentration": 2.0,
            },
        ),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_same_log_density_on_both_backends(name):
    model, args, kwargs = _cases()[name]
    values = _prior_draw(model, args, kwargs)
    if name == "hmm":
        # fixed, well-separated states and an asymmetric transition matrix: a prior draw can
        # make states indistinguishable, and then a transposed matrix would pass
        init, trans, locs, _ = _hmm_params()
        values = {"init": init, "trans": trans, "locs": locs, "scale": np.array(0.8)}
    a = _log_joint(model, args, kwargs, values, "numpyro")
    b = _log_joint(model, args, kwargs, values, "pyro")
    # float32 on both sides: agreement to a few units in the last place of the sum
    assert np.isfinite(a) and abs(a - b) < 2e-5 * max(1.0, abs(a)), (a, b)


# ---------------------------------------------------------------- exact references


def _hmm_params():
    init = np.array([0.6, 0.3, 0.1])
    trans = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    locs = np.array([-1.0, 0.5, 2.0])
    return init, trans, locs, 0.8


def _enumerate_paths(y, init, trans, locs, scale):
    k = len(init)
    out = {}
    for path in itertools.product(range(k), repeat=len(y)):
        lp = np.log(init[path[0]]) + sum(
            np.log(trans[a, b]) for a, b in zip(path[:-1], path[1:], strict=True)
        )
        lp += stats.norm(locs[list(path)], scale).logpdf(y).sum()
        out[path] = lp
    return out


def test_hmm_forward_viterbi_and_marginals_match_enumeration():
    import jax.numpy as jnp
    import torch
    from scipy.special import logsumexp

    y = np.array([-1.2, 0.3, 2.5, 1.9, -0.4])
    init, trans, locs, scale = _hmm_params()
    paths = _enumerate_paths(y, init, trans, locs, scale)
    exact = logsumexp(list(paths.values()))
    log_emit = stats.norm(locs[None], scale).logpdf(y[:, None])
    args = (np.log(init), np.log(trans), log_emit)
    got_torch = classical.hmm_log_likelihood(*(torch.as_tensor(a) for a in args))
    got_jax = classical.hmm_log_likelihood(*(jnp.asarray(a, dtype=jnp.float32) for a in args))
    assert abs(float(got_torch) - exact) < 1e-8
    assert abs(float(got_jax) - exact) < 1e-4
    best = max(paths, key=paths.get)
    np.testing.assert_array_equal(classical.viterbi(y, init, trans, locs, scale), best)
    marg = np.zeros((len(y), 3))
    for path, lp in paths.items():
        marg[np.arange(len(y)), list(path)] += np.exp(lp - exact)
    np.testing.assert_allclose(
        classical.hmm_posterior_marginals(y, init, trans, locs, scale), marg, atol=1e-10
    )


def test_ppca_ml_matches_sklearn_probabilistic_pca():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 5)) + 0.3 * rng.normal(size=(200, 5))
    ml = classical.ppca_ml(x, 2)
    pca = PCA(n_components=2).fit(x)
    n = len(x)
    # scikit-learn estimates the covariance with n - 1 in the denominator
    np.testing.assert_allclose(ml["covariance"] * n / (n - 1), pca.get_covariance(), atol=1e-10)
    np.testing.assert_allclose(ml["sigma"] ** 2 * n / (n - 1), pca.noise_variance_, rtol=1e-10)


def test_mixture_responsibilities_match_bayes_rule():
    x = np.array([[0.0, 0.0], [3.0, 1.0], [1.5, -2.0]])
    # unequal scales, per component and per dimension: their normalizers matter
    w, locs = np.array([0.3, 0.7]), np.array([[0.0, 0.0], [3.0, 0.0]])
    scales = np.array([[0.5, 2.0], [1.5, 0.7]])
    dens = np.stack([w[k] * stats.norm(locs[k], scales[k]).pdf(x).prod(-1) for k in range(2)], 1)
    np.testing.assert_allclose(
        classical.mixture_responsibilities(x, w, locs, scales),
        dens / dens.sum(1, keepdims=True),
        rtol=1e-10,
    )
    # several draws: the label posterior averaged over them
    w2, locs2, scales2 = np.array([0.5, 0.5]), locs + 1.0, 2 * scales
    dens2 = np.stack(
        [w2[k] * stats.norm(locs2[k], scales2[k]).pdf(x).prod(-1) for k in range(2)], 1
    )
    np.testing.assert_allclose(
        classical.mixture_responsibilities(
            x, np.stack([w, w2]), np.stack([locs, locs2]), np.stack([scales, scales2])
        ),
        0.5 * (dens / dens.sum(1, keepdims=True) + dens2 / dens2.sum(1, keepdims=True)),
        rtol=1e-10,
    )


# ---------------------------------------------------------------- recovery


def test_gaussian_mixture_recovers_components_and_labels():
    rng = np.random.default_rng(2)
    locs = np.array([[-4.0, 0.0], [0.0, 3.0], [4.0, -1.0]])
    scales = np.array([[0.6, 0.8], [0.5, 0.5], [0.9, 0.4]])
    weights = np.array([0.5, 0.3, 0.2])
    z = rng.choice(3, size=300, p=weights)
    x = locs[z] + scales[z] * rng.normal(size=(300, 2))
    init = classical.mixture_init(x, 3)
    idata = _mcmc(classical.gaussian_mixture, x, num_components=3, opts={"init_values": init})
    np.testing.assert_allclose(_mean(idata, "locs"), locs, atol=0.25)
    np.testing.assert_allclose(_mean(idata, "scales"), scales, atol=0.15)
    np.testing.assert_allclose(_mean(idata, "weights"), weights, atol=0.06)
    post = idata.posterior
    resp = classical.mixture_responsibilities(
        x,
        post["weights"].values[0],
        post["locs"].values[0],
        post["scales"].values[0],
    )
    assert (resp.argmax(1) == z).mean() > 0.97


def test_hmm_recovers_parameters_and_state_path():
    rng = np.random.default_rng(3)
    # asymmetric, so that a transposed transition matrix would be far off (0.2 per entry)
    trans = np.array([[0.9, 0.1], [0.3, 0.7]])
    locs, scale = np.array([-1.5, 1.5]), 0.7
    states = [0]
    for _ in range(599):
        states.append(rng.choice(2, p=trans[states[-1]]))
    states = np.array(states)
    y = locs[states] + scale * rng.normal(size=600)
    idata = _mcmc(classical.hmm, y, num_states=2)
    np.testing.assert_allclose(_mean(idata, "locs"), locs, atol=0.2)
    # against the transition frequencies of the simulated path (what the data can tell)
    counts = np.zeros((2, 2))
    np.add.at(counts, (states[:-1], states[1:]), 1)
    empirical = counts / counts.sum(1, keepdims=True)
    np.testing.assert_allclose(_mean(idata, "trans"), empirical, atol=0.05)
    assert np.abs(empirical - empirical.T).max() > 0.15  # a transposed matrix would show
    assert abs(_mean(idata, "scale") - scale) < 0.08
    params = [_mean(idata, n) for n in ("init", "trans", "locs", "scale")]
    assert (classical.viterbi(y, *params) == states).mean() > 0.93
    marg = classical.hmm_posterior_marginals(y, *params)
    assert (marg.argmax(1) == states).mean() > 0.93


def test_ppca_recovers_covariance_and_agrees_with_closed_form():
    rng = np.random.default_rng(4)
    w_true = rng.normal(size=(5, 2))
    sigma = 0.5
    x = rng.normal(size=(250, 2)) @ w_true.T + 1.0 + sigma * rng.normal(size=(250, 5))
    idata = _mcmc(classical.ppca, x, latent_dim=2)
    w = idata.posterior["W"].values[0]
    s = idata.posterior["sigma"].values[0]
    cov = (np.einsum("sdl,sel->sde", w, w) + (s**2)[:, None, None] * np.eye(5)).mean(0)
    true_cov = w_true @ w_true.T + sigma**2 * np.eye(5)
    ml = classical.ppca_ml(x, 2)
    scale = np.abs(true_cov).max()
    assert np.abs(cov - true_cov).max() < 0.15 * scale
    assert np.abs(cov - ml["covariance"]).max() < 0.05 * scale
    assert abs(s.mean() - sigma) < 0.05
    np.testing.assert_allclose(_mean(idata, "loc"), x.mean(0), atol=0.05)


def test_linear_regression_with_known_noise_matches_conjugate_posterior():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 2))
    y = x @ np.array([0.7, -1.2]) + 0.4 + 0.5 * rng.normal(size=40)
    idata = _mcmc(classical.linear_regression, x, y, noise=0.5, opts={"num_samples": 1000})
    design = np.column_stack([x, np.ones(40)])
    prior_prec = np.diag([1.0, 1.0, 1 / 100.0])
    cov = np.linalg.inv(prior_prec + design.T @ design / 0.25)
    mean = cov @ design.T @ y / 0.25
    draws = np.column_stack(
        [idata.posterior["w"].values.reshape(-1, 2), idata.posterior["b"].values.ravel()]
    )
    se = np.sqrt(np.diag(cov) / 400)  # at least 400 effective draws
    assert (np.abs(draws.mean(0) - mean) < 4 * se).all(), (draws.mean(0), mean)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.25 * np.abs(cov).max())


def test_logistic_regression_and_hierarchical_fit_sensibly():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 3))
    y = (rng.random(200) < 1 / (1 + np.exp(-(x @ np.array([2.0, -1.0, 0.0]))))).astype(float)
    idata = _mcmc(classical.logistic_regression, x, y)
    w = _mean(idata, "w")
    assert w[0] > 1.0 and w[1] < -0.4 and abs(w[2]) < 0.5
    # against the MAP of the same posterior (N(0, 1) prior = L2 penalty with C = 1; the
    # intercept's N(0, 5) prior is weak): a posterior mean from 200 points lies close to it, so
    # a scale error in the logits (halved: weights doubled) shows
    from sklearn.linear_model import LogisticRegression

    map_w = LogisticRegression(C=1.0).fit(x, y).coef_[0]
    np.testing.assert_allclose(w, map_w, rtol=0.15, atol=0.12)
    # partial pooling: each group's posterior mean lies between its raw mean and the grand mean
    group = np.repeat(np.arange(4), [3, 5, 8, 20])
    y = rng.normal(np.array([-2.0, 0.0, 1.0, 3.0])[group], 1.0)
    idata = _mcmc(classical.hierarchical_normal, group, y, num_groups=4)
    theta = _mean(idata, "theta")
    raw = np.array([y[group == g].mean() for g in range(4)])
    grand = _mean(idata, "mu")
    assert theta.shape == (4,)
    assert (np.abs(theta - grand) <= np.abs(raw - grand) + 0.05).all()
    # partial, not complete, pooling: the groups stay apart, in the data's order, and the
    # largest group (20 points) stays near its own mean
    assert np.all(np.diff(theta) > 0.5)
    assert abs(theta[3] - raw[3]) < 0.4


def test_lda_by_svi_recovers_topics():
    rng = np.random.default_rng(7)
    k, v, docs, length = 3, 12, 80, 40
    topics = np.zeros((k, v))
    for t in range(k):
        topics[t, 4 * t : 4 * t + 4] = 0.25  # disjoint vocabularies
    theta = rng.dirichlet(0.3 * np.ones(k), size=docs)
    words = np.stack([rng.choice(v, size=length, p=theta[d] @ topics) for d in range(docs)])
    idata = inf.svi(
        classical.lda,
        words,
        num_topics=k,
        vocab_size=v,
        num_steps=1500,
        learning_rate=0.1,
        num_samples=200,
        seed=0,
        progress_bar=False,
    )
    est = _mean(idata, "topics")
    # match each true topic to its closest estimate: total variation distance
    tv = 0.5 * np.abs(topics[:, None, :] - est[None, :, :]).sum(-1)
    assert sorted(tv.argmin(1).tolist()) == [0, 1, 2]
    assert tv.min(1).max() < 0.2, tv


# ---------------------------------------------------------------- log joint against scipy


def _ordered_logpdf(v, scale):
    """log density of an increasing vector made by OrderedTransform from N(0, scale) values:
    u_0 = v_0, u_i = log(v_i - v_(i-1)), and the Jacobian of that inverse."""
    gaps = np.diff(v)
    u = np.concatenate([v[:1], np.log(gaps)])
    return stats.norm(0, scale).logpdf(u).sum() - np.log(gaps).sum()


def _dirichlet(x, alpha):
    """Dirichlet log density written out (scipy's insists on a simplex to 1e-9, and float32
    draws are off by 1e-8)."""
    from scipy.special import gammaln

    alpha = np.broadcast_to(alpha, x.shape)
    return gammaln(alpha.sum()) - gammaln(alpha).sum() + ((alpha - 1) * np.log(x)).sum()


def _halfnormal(x, scale):
    return stats.halfnorm(scale=scale).logpdf(x).sum()


def _reference_log_joint(name, args, kwargs, v):
    if name == "gaussian_mixture":
        (x,) = args
        lp = _dirichlet(v["weights"], np.ones(3))
        lp += _ordered_logpdf(v["locs_first"], 10.0)
        lp += stats.lognorm(s=1.0).logpdf(v["scales"]).sum()
        locs = v["locs_first"][:, None]
        if x.shape[1] > 1:
            lp += stats.norm(0, 10.0).logpdf(v["locs_rest"]).sum()
            locs = np.column_stack([v["locs_first"], v["locs_rest"]])
        comp = stats.norm(locs[None], v["scales"][None]).logpdf(x[:, None, :]).sum(-1)
        return lp + logsumexp(np.log(v["weights"]) + comp, axis=1).sum()
    if name in ("ppca", "factor_analysis"):
        (x,) = args
        if name == "ppca":
            lp, noise = _halfnormal(v["sigma"], 1.0), v["sigma"] ** 2 * np.ones(x.shape[1])
        else:
            lp, noise = _halfnormal(v["psi"], 1.0), v["psi"]
        lp += stats.norm(0, 10.0).logpdf(v["loc"]).sum() + stats.norm(0, 1).logpdf(v["W"]).sum()
        cov = v["W"] @ v["W"].T + np.diag(noise)
        return lp + stats.multivariate_normal(v["loc"], cov).logpdf(x).sum()
    if name == "hmm":
        (y,) = args
        lp = _dirichlet(v["init"], np.ones(3))
        lp += sum(_dirichlet(row, np.ones(3)) for row in v["trans"])
        lp += _ordered_logpdf(v["locs"], 10.0) + _halfnormal(v["scale"], 10.0)
        # every state path at once (3^9 of them): its log joint with the observations
        paths = np.array(list(itertools.product(range(3), repeat=len(y))))
        path_lp = np.log(v["init"][paths[:, 0]])
        path_lp += np.log(v["trans"][paths[:, :-1], paths[:, 1:]]).sum(1)
        path_lp += stats.norm(v["locs"][paths], v["scale"]).logpdf(y).sum(1)
        return lp + logsumexp(path_lp)
    if name == "linear_regression":
        x, y = args
        lp = stats.norm(0, 1.0).logpdf(v["w"]).sum() + stats.norm(0, 10.0).logpdf(v["b"])
        if "noise" in kwargs:
            sigma = kwargs["noise"]
        else:
            sigma = v["sigma"]
            lp += _halfnormal(sigma, 1.0)
        return lp + stats.norm(x @ v["w"] + v["b"], sigma).logpdf(y).sum()
    if name == "logistic_regression":
        x, y = args
        lp = stats.norm(0, 1.0).logpdf(v["w"]).sum() + stats.norm(0, 5.0).logpdf(v["b"])
        logits = x @ v["w"] + v["b"]
        return lp + (y * logits - np.logaddexp(0, logits)).sum()
    if name == "hierarchical_normal":
        group, y = args
        lp = stats.norm(0, 10.0).logpdf(v["mu"]) + _halfnormal(v["tau"], 5.0)
        lp += _halfnormal(v["sigma"], 5.0) + stats.norm(0, 1).logpdf(v["eta"]).sum()
        theta = v["mu"] + v["tau"] * v["eta"]
        return lp + stats.norm(theta[group], v["sigma"]).logpdf(y).sum()
    if name == "eight_schools":
        sigma, y = args
        lp = stats.norm(0, 5.0).logpdf(v["mu"]) + stats.halfcauchy(scale=5.0).logpdf(v["tau"])
        lp += stats.norm(0, 1).logpdf(v["theta_raw"]).sum()
        return lp + stats.norm(v["mu"] + v["tau"] * v["theta_raw"], sigma).logpdf(y).sum()
    if name == "lda":
        words, mask = args
        k, vocab = kwargs["num_topics"], kwargs["vocab_size"]
        wc, tc = kwargs["word_concentration"], kwargs["topic_concentration"]
        lp = sum(_dirichlet(t, wc * np.ones(vocab)) for t in v["topics"])
        theta = v["doc_topics"].reshape(len(words), k)
        lp += sum(_dirichlet(t, tc * np.ones(k)) for t in theta)
        probs = theta @ v["topics"]
        word_lp = np.log(np.take_along_axis(probs, words, axis=1))
        return lp + (word_lp * mask).sum()
    raise AssertionError(name)


def _pyro_sites(model, args, kwargs):
    """The model's sites as the posterior sees them, traced on the Pyro backend."""
    from ppdgm.inference.backend import as_backend_args
    from ppdgm.inference.posterior import model_sites

    bargs, bkwargs = as_backend_args(args, kwargs, "pyro")
    return model_sites(model, bargs, bkwargs, "pyro")[0]


def _prior_draw_pyro(model, args, kwargs):
    import pyro.poutine as poutine
    import torch

    from ppdgm.inference.backend import as_backend_args, use_backend

    bargs, bkwargs = as_backend_args(args, kwargs, "pyro")
    torch.manual_seed(3)
    with use_backend("pyro"):
        tr = poutine.trace(model).get_trace(*bargs, **bkwargs)
    return {
        k: s["value"].numpy()
        for k, s in tr.nodes.items()
        if s["type"] == "sample" and not s["is_observed"]
    }


@pytest.mark.parametrize(
    "name",
    list(_cases()) + ["linear_regression_known_noise", "gaussian_mixture_1d", "lda_defaults"],
)
def test_log_joint_matches_scipy(name, float64):
    """Every prior, its default hyperparameters and the likelihood, site by site: the log joint
    at a prior draw against scipy's densities, both in float64 so that the tolerance is tight
    (a prior scale of 11 instead of 10 moves the sum by about 0.1)."""
    key = {"linear_regression_known_noise": "linear_regression"}.get(name, name)
    key = {"gaussian_mixture_1d": "gaussian_mixture", "lda_defaults": "lda"}.get(key, key)
    model, args, kwargs = _cases()[key]
    if name.endswith("known_noise"):
        kwargs = {"noise": 0.7}
    if name.endswith("1d"):
        args = (args[0][:, :1],)
    if name == "lda_defaults":
        kwargs = {"vocab_size": 6}  # 3 topics, concentrations 0.5 and 0.1
    values = _prior_draw_pyro(model, args, kwargs)
    if key == "hmm":
        init, trans, locs, _ = _hmm_params()
        values = {"init": init, "trans": trans, "locs": locs, "scale": np.array(0.8)}
    if name.endswith("1d"):
        assert "locs_rest" not in values  # one dimension: the ordered first coordinate only
    if name == "lda_defaults":
        assert values["topics"].shape == (3, 6)
    got = _log_joint(model, args, kwargs, values, "pyro")
    full = {**{"num_topics": 3, "word_concentration": 0.1, "topic_concentration": 0.5}, **kwargs}
    expected = _reference_log_joint(key, args, full if key == "lda" else kwargs, values)
    assert np.isfinite(expected)
    assert abs(got - expected) < 1e-9 * max(1.0, abs(expected)), (got, expected)


def test_default_sizes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4))
    cases = [
        (classical.gaussian_mixture, (x,), {}, "weights", (2,)),
        (classical.ppca, (x,), {}, "W", (4, 2)),
        (classical.factor_analysis, (x,), {}, "W", (4, 2)),
        (classical.hmm, (x[:, 0],), {}, "trans", (2, 2)),
        (classical.lda, (rng.integers(0, 5, (3, 4)),), {"vocab_size": 5}, "topics", (3, 5)),
    ]
    for model, args, kwargs, site, shape in cases:
        assert _pyro_sites(model, args, kwargs)[site].shape == shape, model.__name__


def test_viterbi_is_the_best_path_on_random_problems():
    rng = np.random.default_rng(11)
    for _ in range(20):
        k, t = 3, 6
        init = rng.dirichlet(np.ones(k))
        trans = rng.dirichlet(np.ones(k), size=k)
        locs = np.sort(rng.normal(0, 1.5, k))
        scale = rng.uniform(0.5, 1.5)
        y = rng.normal(0, 2, t)
        paths = np.array(list(itertools.product(range(k), repeat=t)))
        lp = np.log(init[paths[:, 0]]) + np.log(trans[paths[:, :-1], paths[:, 1:]]).sum(1)
        lp += stats.norm(locs[paths], scale).logpdf(y).sum(1)
        best = paths[np.argmax(lp)]
        np.testing.assert_array_equal(classical.viterbi(y, init, trans, locs, scale), best)


def test_mixture_init_is_the_k_means_clusters_in_order():
    rng = np.random.default_rng(8)
    centers = np.array([[5.0, 0.0], [-5.0, 1.0], [0.0, -4.0]])
    sizes = [30, 2, 1]
    z = np.repeat(np.arange(3), sizes)
    x = centers[z] + 0.3 * rng.normal(size=(33, 2))
    init = classical.mixture_init(x, 3)
    order = [1, 2, 0]  # by the first coordinate
    counts = np.array(sizes)[order]
    np.testing.assert_allclose(init["weights"], (counts + 1) / (counts + 1).sum())
    means = np.stack([x[z == k].mean(0) for k in order])
    np.testing.assert_allclose(init["locs_first"], means[:, 0] + 1e-3 * np.arange(3), atol=1e-9)
    np.testing.assert_allclose(init["locs_rest"], means[:, 1:], atol=1e-9)
    # a one-point cluster takes the data's spread; the others (two points or more) their own
    expected = np.stack([x[z == k].std(0) if sizes[k] > 1 else x.std(0) for k in order])
    np.testing.assert_allclose(init["scales"], expected, atol=1e-9)
    assert set(init) == {"weights", "locs_first", "locs_rest", "scales"}
    one_d = classical.mixture_init(x[:, :1], 3)
    assert "locs_rest" not in one_d and one_d["scales"].shape == (3, 1)
    # the same seed, the same start, on data with no clear clusters too (seed 0 by default)
    blob = rng.uniform(size=(200, 2))
    first = classical.mixture_init(blob, 4)
    for again in (classical.mixture_init(blob, 4, seed=0), classical.mixture_init(blob, 4)):
        for key in first:
            np.testing.assert_array_equal(again[key], first[key])
    twins = classical.mixture_init(np.array([[1.0], [1.0], [1.0], [9.0]]), 2)
    assert (twins["scales"] >= 1e-3).all() and twins["scales"].min() == 1e-3


def test_ppca_ml_refuses_a_latent_dimension_out_of_range():
    x = np.random.default_rng(0).normal(size=(10, 3))
    for bad in (0, 3):
        with pytest.raises(ValueError, match=rf"latent_dim must be in 1\.\.2, got {bad}"):
            classical.ppca_ml(x, bad)
    assert classical.ppca_ml(x, 2)["W"].shape == (3, 2)
    one = classical.ppca_ml(x + 5.0, 1)
    np.testing.assert_allclose(one["loc"], x.mean(0) + 5.0)
    assert set(one) == {"loc", "W", "sigma", "covariance"} and one["W"].shape == (3, 1)


def test_ppca_ml_with_small_eigenvalues_matches_sklearn():
    """Data on a small scale (eigenvalues well below 1): W's scale is sqrt(lambda - sigma^2)."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    x = 0.05 * (rng.normal(size=(300, 2)) @ rng.normal(size=(2, 4))) + 0.01 * rng.normal(
        size=(300, 4)
    )
    ml = classical.ppca_ml(x, 2)
    n = len(x)
    pca = PCA(n_components=2).fit(x)
    np.testing.assert_allclose(ml["covariance"] * n / (n - 1), pca.get_covariance(), atol=1e-12)
    np.testing.assert_allclose(ml["W"] @ ml["W"].T + ml["sigma"] ** 2 * np.eye(4), ml["covariance"])


# the sites of each model as the posterior sees them: kind, shape, event dims and the names of
# their axes (plate names become InferenceData dimensions)
SITES = {
    "gaussian_mixture": [
        ("weights", "latent", (3,), 1, ["weights_dim_0"]),
        ("locs_first", "latent", (3,), 1, ["locs_first_dim_0"]),
        ("locs_rest", "latent", (3, 1), 2, ["locs_rest_dim_0", "locs_rest_dim_1"]),
        ("locs", "deterministic", (3, 2), 0, ["locs_dim_0", "locs_dim_1"]),
        ("scales", "latent", (3, 2), 2, ["scales_dim_0", "scales_dim_1"]),
        ("x", "observed", (12, 2), 1, ["data", "x_dim_1"]),
    ],
    "ppca": [
        ("sigma", "latent", (), 0, []),
        ("loc", "latent", (4,), 1, ["loc_dim_0"]),
        ("W", "latent", (4, 2), 2, ["W_dim_0", "W_dim_1"]),
        ("x", "observed", (15, 4), 1, ["data", "x_dim_1"]),
    ],
    "factor_analysis": [
        ("psi", "latent", (4,), 1, ["psi_dim_0"]),
        ("loc", "latent", (4,), 1, ["loc_dim_0"]),
        ("W", "latent", (4, 2), 2, ["W_dim_0", "W_dim_1"]),
        ("x", "observed", (15, 4), 1, ["data", "x_dim_1"]),
    ],
    "hmm": [
        ("init", "latent", (3,), 1, ["init_dim_0"]),
        ("trans", "latent", (3, 3), 1, ["from_state", "trans_dim_1"]),
        ("locs", "latent", (3,), 1, ["locs_dim_0"]),
        ("scale", "latent", (), 0, []),
        ("y_loglik", "factor", (), 0, []),
    ],
    "linear_regression": [
        ("w", "latent", (2,), 1, ["w_dim_0"]),
        ("b", "latent", (), 0, []),
        ("sigma", "latent", (), 0, []),
        ("y", "observed", (12,), 0, ["data"]),
    ],
    "logistic_regression": [
        ("w", "latent", (2,), 1, ["w_dim_0"]),
        ("b", "latent", (), 0, []),
        ("y", "observed", (12,), 0, ["data"]),
    ],
    "hierarchical_normal": [
        ("mu", "latent", (), 0, []),
        ("tau", "latent", (), 0, []),
        ("sigma", "latent", (), 0, []),
        ("eta", "latent", (3,), 0, ["groups"]),
        ("theta", "deterministic", (3,), 0, ["theta_dim_0"]),
        ("y", "observed", (10,), 0, ["data"]),
    ],
    "eight_schools": [
        ("mu", "latent", (), 0, []),
        ("tau", "latent", (), 0, []),
        ("theta_raw", "latent", (8,), 0, ["school"]),
        ("theta", "deterministic", (8,), 0, ["school"]),
        ("y", "observed", (8,), 0, ["school"]),
    ],
    "lda": [
        ("topics", "latent", (2, 6), 1, ["topic", "topics_dim_1"]),
        (
            "doc_topics",
            "latent",
            (4, 1, 2),
            1,
            ["documents", "doc_topics_dim_1", "doc_topics_dim_2"],
        ),
        ("words", "observed", (4, 5), 0, ["documents", "positions"]),
    ],
}


@pytest.mark.parametrize("name", list(_cases()))
def test_sites_shapes_and_plate_dimensions(name):
    sites = _pyro_sites(*_cases()[name])
    got = [(s.name, s.kind, s.shape, s.event_dim, s.dims) for s in sites.values()]
    assert got == [tuple(row) for row in SITES[name]]
