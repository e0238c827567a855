"""The classical latent-variable models as write-once programs.

Every model here is written with :mod:`pyroapi`'s names, so it runs on NumPyro (fast
NUTS) and on Pyro, with :func:`ppdgm.inference.mcmc` or :func:`ppdgm.inference.svi`:

    >>> from ppdgm.models import classical
    >>> idata = ppdgm.inference.mcmc(classical.gaussian_mixture, x, num_components=3)

The arguments follow one convention: data first (``x`` inputs, ``y`` observations
defaulting to ``None`` so that the same program draws from the prior predictive),
then sizes and hyperparameters as keyword arguments. Alongside the programs are NumPy
functions for what one computes from a posterior: mixture responsibilities, HMM
state marginals and the Viterbi path, and the closed-form maximum-likelihood PPCA.
"""

from __future__ import annotations

import numpy as np
from pyroapi import distributions as dist
from pyroapi import ops, pyro

__all__ = [
    "gaussian_mixture",
    "mixture_init",
    "mixture_responsibilities",
    "ppca",
    "factor_analysis",
    "ppca_ml",
    "hmm",
    "hmm_log_likelihood",
    "hmm_posterior_marginals",
    "viterbi",
    "linear_regression",
    "logistic_regression",
    "hierarchical_normal",
    "eight_schools",
    "lda",
]


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _ordered(name: str, size: int, scale: float):
    """``size`` increasing values: a Normal(0, scale) vector pushed through an ordering
    transform. Ordering removes the label switching of mixtures and HMMs."""
    base = dist.Normal(0.0, scale).expand([size]).to_event(1)
    return pyro.sample(name, dist.TransformedDistribution(base, dist.transforms.OrderedTransform()))


# ---------------------------------------------------------------- Gaussian mixture


def gaussian_mixture(x, *, num_components: int = 2, prior_scale: float = 10.0):
    """Gaussian mixture with diagonal covariances, the component labels marginalized.

    The labels are summed out (``MixtureSameFamily``) so that NUTS sees a smooth
    posterior; the first coordinate of the component means is ordered, which removes
    label switching. Recover the labels' posterior with :func:`mixture_responsibilities`;
    start NUTS from :func:`mixture_init` (``init_values=``) to avoid poor local modes.

    Args:
        x: data, shape ``(N, D)``; observed.
        num_components: K.
        prior_scale: prior scale of the component means.

    Sites: ``weights`` (K,), ``locs`` (K, D), ``scales`` (K, D), ``x``.
    """
    n, d = x.shape
    weights = pyro.sample("weights", dist.Dirichlet(ops.ones(num_components)))
    first = _ordered("locs_first", num_components, prior_scale)
    if d > 1:
        rest = pyro.sample(
            "locs_rest", dist.Normal(0.0, prior_scale).expand([num_components, d - 1]).to_event(2)
        )
        locs = ops.concatenate([first[:, None], rest], axis=-1)
    else:
        locs = first[:, None]
    locs = pyro.deterministic("locs", locs)
    scales = pyro.sample("scales", dist.LogNormal(0.0, 1.0).expand([num_components, d]).to_event(2))
    components = dist.Normal(locs, scales).to_event(1)
    with pyro.plate("data", n):
        pyro.sample("x", dist.MixtureSameFamily(dist.Categorical(weights), components), obs=x)


def mixture_init(x: np.ndarray, num_components: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Starting values for :func:`gaussian_mixture` from k-means, for ``init_values``.

    A mixture posterior has poor local modes (two components sharing one cluster); NUTS
    started from k-means avoids them.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(x, dtype=float)
    km = KMeans(num_components, n_init=10, random_state=seed).fit(x)
    order = np.argsort(km.cluster_centers_[:, 0])
    centers = km.cluster_centers_[order]
    labels = np.argsort(order)[km.labels_]
    counts = np.bincount(labels, minlength=num_components)
    scales = np.stack(
        [x[labels == k].std(0) if counts[k] > 1 else x.std(0) for k in range(num_components)]
    )
    # distinct first coordinates, as the ordering requires
    first = centers[:, 0] + 1e-3 * np.arange(num_components)
    values = {
        "weights": (counts + 1) / (counts + 1).sum(),
        "locs_first": first,
        "scales": np.maximum(scales, 1e-3),
    }
    if x.shape[1] > 1:
        values["locs_rest"] = centers[:, 1:]
    return values


def mixture_responsibilities(x: np.ndarray, weights, locs, scales) -> np.ndarray:
    """Posterior probability of each component for each point, averaged over draws.

    Args:
        x: ``(N, D)``.
        weights: ``(S, K)`` posterior draws (or ``(K,)``); ``locs``, ``scales``:
            ``(S, K, D)`` (or ``(K, D)``).

    Returns:
        ``(N, K)``, rows summing to 1: the label posterior p(z_n = k | x, data).
    """
    from scipy.special import logsumexp

    weights = np.atleast_2d(np.asarray(weights))
    locs = np.asarray(locs).reshape(weights.shape + (-1,))
    scales = np.asarray(scales).reshape(locs.shape)
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    # (S, N, K); the Normal's log(2 pi) term is the same for every component and cancels
    log_comp = -0.5 * (((x[None, :, None, :] - locs[:, None]) / scales[:, None]) ** 2).sum(-1)
    log_comp -= np.log(scales).sum(-1)[:, None]
    log_joint = np.log(weights)[:, None, :] + log_comp
    resp = np.exp(log_joint - logsumexp(log_joint, axis=-1, keepdims=True))
    return resp.mean(0)


# ---------------------------------------------------------------- PPCA and factor analysis


def _linear_gaussian(x, latent_dim, noise, prior_scale):
    n, d = x.shape
    loc = pyro.sample("loc", dist.Normal(0.0, prior_scale).expand([d]).to_event(1))
    w = pyro.sample("W", dist.Normal(0.0, 1.0).expand([d, latent_dim]).to_event(2))
    with pyro.plate("data", n):
        pyro.sample("x", dist.LowRankMultivariateNormal(loc, w, noise), obs=x)


def ppca(x, *, latent_dim: int = 2, prior_scale: float = 10.0):
    """Probabilistic PCA (Tipping & Bishop, 1999), the latent z marginalized:
    x ~ N(loc, W Wᵀ + σ² I).

    W is identified only up to a rotation; compare W Wᵀ (or its column space) with
    :func:`ppca_ml`. Sites: ``loc`` (D,), ``W`` (D, L), ``sigma``, ``x``.

    Args:
        x: ``(N, D)`` data.
        latent_dim: L.
    """
    d = x.shape[1]
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    _linear_gaussian(x, latent_dim, (sigma**2) * ops.ones(d), prior_scale)


def factor_analysis(x, *, latent_dim: int = 2, prior_scale: float = 10.0):
    """Factor analysis: PPCA with a separate noise variance per dimension,
    x ~ N(loc, W Wᵀ + diag(ψ)). Sites: ``loc``, ``W``, ``psi`` (D,), ``x``."""
    d = x.shape[1]
    psi = pyro.sample("psi", dist.HalfNormal(1.0).expand([d]).to_event(1))
    _linear_gaussian(x, latent_dim, psi, prior_scale)


def ppca_ml(x: np.ndarray, latent_dim: int) -> dict[str, np.ndarray]:
    """Closed-form maximum-likelihood PPCA (Tipping & Bishop, 1999, eq. 7-8).

    Returns:
        ``{"loc", "W", "sigma", "covariance"}``: W = U_L (Λ_L − σ² I)^½ (up to rotation),
        σ² the mean of the discarded eigenvalues of the sample covariance, and the model
        covariance W Wᵀ + σ² I.
    """
    x = np.asarray(x, dtype=float)
    n, d = x.shape
    if not 0 < latent_dim < d:
        raise ValueError(f"latent_dim must be in 1..{d - 1}, got {latent_dim}")
    loc = x.mean(0)
    cov = (x - loc).T @ (x - loc) / n
    evals, evecs = np.linalg.eigh(cov)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    sigma2 = evals[latent_dim:].mean()
    w = evecs[:, :latent_dim] * np.sqrt(np.maximum(evals[:latent_dim] - sigma2, 0.0))
    return {
        "loc": loc,
        "W": w,
        "sigma": np.sqrt(sigma2),
        "covariance": w @ w.T + sigma2 * np.eye(d),
    }


# ---------------------------------------------------------------- hidden Markov model


def hmm_log_likelihood(log_init, log_trans, log_emit):
    """log p(x_1..T) by the forward algorithm, on torch or JAX arrays.

    Args:
        log_init: ``(K,)`` log initial state probabilities.
        log_trans: ``(K, K)`` log transition matrix, rows = from-state.
        log_emit: ``(T, K)`` log p(x_t | state k).
    """
    if _is_torch(log_emit):
        import torch

        alpha = log_init + log_emit[0]
        for t in range(1, log_emit.shape[0]):
            alpha = torch.logsumexp(alpha[:, None] + log_trans, dim=0) + log_emit[t]
        return torch.logsumexp(alpha, dim=0)
    import jax

    def step(alpha, emit):
        alpha = jax.nn.logsumexp(alpha[:, None] + log_trans, axis=0) + emit
        return alpha, None

    alpha, _ = jax.lax.scan(step, log_init + log_emit[0], log_emit[1:])
    return jax.nn.logsumexp(alpha, axis=0)


def hmm(y, *, num_states: int = 2, prior_scale: float = 10.0):
    """Hidden Markov model with Gaussian emissions, the state path summed out by the
    forward algorithm (a ``factor`` site), so NUTS samples only the parameters.

    State means are ordered (no label switching). Recover the states with
    :func:`hmm_posterior_marginals` and :func:`viterbi`.

    Args:
        y: ``(T,)`` observed sequence.
        num_states: K.

    Sites: ``init`` (K,), ``trans`` (K, K), ``locs`` (K,), ``scale``, and the factor
    ``y_loglik``.
    """
    k = num_states
    init = pyro.sample("init", dist.Dirichlet(ops.ones(k)))
    with pyro.plate("from_state", k):
        trans = pyro.sample("trans", dist.Dirichlet(ops.ones(k)))
    locs = _ordered("locs", k, prior_scale)
    scale = pyro.sample("scale", dist.HalfNormal(prior_scale))
    log_emit = dist.Normal(locs, scale).log_prob(y[:, None])
    pyro.factor("y_loglik", hmm_log_likelihood(ops.log(init), ops.log(trans), log_emit))


def _hmm_arrays(y, init, trans, locs, scale):
    from scipy import stats

    y = np.asarray(y, dtype=float)
    log_emit = stats.norm(np.asarray(locs)[None, :], float(scale)).logpdf(y[:, None])
    return np.log(np.asarray(init)), np.log(np.asarray(trans)), log_emit


def hmm_posterior_marginals(y, init, trans, locs, scale) -> np.ndarray:
    """p(state_t = k | y) by forward-backward, for one set of parameters.

    Returns:
        ``(T, K)``, rows summing to 1.
    """
    from scipy.special import logsumexp

    log_init, log_trans, log_emit = _hmm_arrays(y, init, trans, locs, scale)
    t_len, k = log_emit.shape
    alpha, beta = np.zeros((t_len, k)), np.zeros((t_len, k))
    alpha[0] = log_init + log_emit[0]
    for t in range(1, t_len):
        alpha[t] = logsumexp(alpha[t - 1][:, None] + log_trans, axis=0) + log_emit[t]
    for t in range(t_len - 2, -1, -1):
        beta[t] = logsumexp(log_trans + (log_emit[t + 1] + beta[t + 1])[None, :], axis=1)
    log_post = alpha + beta
    return np.exp(log_post - logsumexp(log_post, axis=1, keepdims=True))


def viterbi(y, init, trans, locs, scale) -> np.ndarray:
    """The most probable state path (Viterbi, 1967) for one set of parameters; ``(T,)``."""
    log_init, log_trans, log_emit = _hmm_arrays(y, init, trans, locs, scale)
    t_len, k = log_emit.shape
    score = log_init + log_emit[0]
    back = np.zeros((t_len, k), dtype=int)
    for t in range(1, t_len):
        cand = score[:, None] + log_trans
        back[t] = cand.argmax(0)
        score = cand.max(0) + log_emit[t]
    path = np.zeros(t_len, dtype=int)
    path[-1] = score.argmax()
    for t in range(t_len - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


# ---------------------------------------------------------------- regression


def linear_regression(x, y=None, *, prior_scale: float = 1.0, noise: float | None = None):
    """Bayesian linear regression y ~ N(x w + b, σ²), w ~ N(0, prior_scale² I).

    Args:
        x: ``(N, D)`` inputs; ``y``: ``(N,)`` targets (None to predict).
        noise: a known σ; by default σ ~ HalfNormal(1) is inferred.

    Sites: ``w`` (D,), ``b``, ``sigma`` (unless ``noise``), ``y``.
    """
    n, d = x.shape
    w = pyro.sample("w", dist.Normal(0.0, prior_scale).expand([d]).to_event(1))
    b = pyro.sample("b", dist.Normal(0.0, 10.0))
    sigma = noise if noise is not None else pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("data", n):
        pyro.sample("y", dist.Normal(x @ w + b, sigma), obs=y)


def logistic_regression(x, y=None, *, prior_scale: float = 1.0):
    """Bayesian logistic regression y ~ Bernoulli(sigmoid(x w + b)), w ~ N(0, prior_scale²).

    Sites: ``w`` (D,), ``b``, ``y``.
    """
    n, d = x.shape
    w = pyro.sample("w", dist.Normal(0.0, prior_scale).expand([d]).to_event(1))
    b = pyro.sample("b", dist.Normal(0.0, 5.0))
    with pyro.plate("data", n):
        pyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


# ---------------------------------------------------------------- partial pooling


def hierarchical_normal(group, y=None, *, num_groups: int):
    """Partial pooling of group means, non-centered:
    θ_g = μ + τ η_g, η_g ~ N(0, 1), y_n ~ N(θ_{group_n}, σ).

    Args:
        group: ``(N,)`` integer group index of each observation, 0..G-1.
        y: ``(N,)`` observations.
        num_groups: G (a Python int: a traced sampler cannot read it off ``group``).

    Sites: ``mu``, ``tau``, ``sigma``, ``eta`` (G,), ``theta`` (G,), ``y``.
    """
    g = int(num_groups)
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    tau = pyro.sample("tau", dist.HalfNormal(5.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(5.0))
    with pyro.plate("groups", g):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
    theta = pyro.deterministic("theta", mu + tau * eta)
    with pyro.plate("data", group.shape[0]):
        pyro.sample("y", dist.Normal(theta[group], sigma), obs=y)


def eight_schools(sigma, y=None):
    """The eight schools model (Rubin, 1981), non-centered: known per-school standard
    errors ``sigma`` (J,), effects ``y`` (J,). Sites: ``mu``, ``tau``, ``theta_raw``,
    ``theta``, ``y``."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("school", sigma.shape[0]):
        theta_raw = pyro.sample("theta_raw", dist.Normal(0.0, 1.0))
        theta = pyro.deterministic("theta", mu + tau * theta_raw)
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


# ---------------------------------------------------------------- topic model


def lda(
    words,
    mask=None,
    *,
    num_topics: int = 3,
    vocab_size: int,
    topic_concentration: float = 0.5,
    word_concentration: float = 0.1,
):
    """Latent Dirichlet allocation (Blei, Ng & Jordan, 2003), the per-word topic
    assignments summed out: word ~ Categorical(θ_d Φ). Fit it with SVI.

    Args:
        words: ``(D, L)`` integer word ids per document, padded to a common length.
        mask: ``(D, L)`` booleans, False on padding (default: all True).
        num_topics: K.
        vocab_size: V (a Python int, as a traced sampler cannot read it off ``words``).

    Sites: ``topics`` (K, V) word distributions Φ, ``doc_topics`` (D, K) θ, ``words``.
    """
    v = int(vocab_size)
    num_docs, length = words.shape
    with pyro.plate("topic", num_topics):
        topics = pyro.sample("topics", dist.Dirichlet(word_concentration * ops.ones(v)))
    with pyro.plate("documents", num_docs, dim=-2):
        doc_topics = pyro.sample(
            "doc_topics", dist.Dirichlet(topic_concentration * ops.ones(num_topics))
        )
        probs = doc_topics @ topics  # (D, 1, V): broadcast over the positions plate
        with pyro.plate("positions", length, dim=-1):
            word_dist = dist.Categorical(probs)
            if mask is not None:
                word_dist = word_dist.mask(mask)
            pyro.sample("words", word_dist, obs=words)
