"""Sample quality: distances and two-sample tests between a model's samples and data, for any
family that can sample.

Every function takes NumPy arrays or tensors of features (N, D) (images are flattened) and
computes in float64 on the CPU. Features are what the caller chooses: raw values for vectors,
or a classifier's features for images (:mod:`ppdgm.evaluation.features`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .._utils import check_choice
from ..errors import ConfigError, DataValueError

__all__ = [
    "frechet_distance",
    "kernel_distance",
    "mmd_test",
    "classifier_two_sample_test",
    "precision_recall",
    "parzen_log_likelihood",
    "mode_coverage",
    "median_bandwidth",
    "sample_quality",
]


def _features(x, name: str, min_rows: int = 2) -> np.ndarray:
    """(N, D) float64 features; images (N, ...) are flattened; NaN and too few rows refused."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        raise ConfigError(f"{name}: expected features (N, D), got a vector of shape {x.shape}")
    if x.ndim > 2:
        x = x.reshape(len(x), -1)
    if x.ndim != 2 or len(x) < min_rows:
        raise ConfigError(f"{name}: expected at least {min_rows} rows of features, got {x.shape}")
    if not np.isfinite(x).all():
        raise DataValueError(f"{name}: holds NaN or infinite values")
    return x


def _pair(x, y, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features(x, "x", min_rows), _features(y, "y", min_rows)
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"x and y have different feature sizes: {a.shape[1]} and {b.shape[1]}")
    return a, b


def frechet_distance(x, y) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (Heusel et al., 2017):
    ``|mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x S_y)^(1/2))``. With a classifier's features this
    is FID's analogue; it is biased upward for small N, so compare at equal sample sizes.

    Args:
        x, y: (N, D) and (M, D) features.
    """
    a, b = _pair(x, y)
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    # tr((S_a S_b)^(1/2)) = sum of the square roots of the eigenvalues of the symmetric
    # S_a^(1/2) S_b S_a^(1/2), which eigh computes stably
    w, v = np.linalg.eigh(sa)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    cross = np.linalg.eigvalsh(root @ sb @ root)
    value = mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * np.sqrt(np.clip(cross, 0.0, None)).sum()
    return float(max(value, 0.0))


def median_bandwidth(x, max_rows: int = 2000, seed: int = 0) -> float:
    """The median heuristic: the median distance between distinct rows (of at most
    ``max_rows`` rows drawn at random)."""
    a = _features(x, "x")
    if len(a) > max_rows:
        a = a[np.random.default_rng(seed).choice(len(a), max_rows, replace=False)]
    d2 = _sq_dists(a, a)
    iu = np.triu_indices(len(a), 1)
    med = float(np.sqrt(np.median(d2[iu])))
    return med if med > 0 else 1.0


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.clip(d2, 0.0, None)


def _kernel(a, b, kernel: str, bandwidth: float | None) -> np.ndarray:
    if kernel == "polynomial":
        return (a @ b.T / a.shape[1] + 1.0) ** 3
    return np.exp(-_sq_dists(a, b) / (2.0 * bandwidth**2))


def _mmd2_unbiased(kxx, kyy, kxy) -> float:
    m, n = len(kxx), len(kyy)
    sx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    sy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sx + sy - 2.0 * kxy.mean())


_KERNELS = ("polynomial", "rbf")


def kernel_distance(
    x,
    y,
    *,
    kernel: str = "polynomial",
    bandwidth: float | None = None,
    subset_size: int = 1000,
    num_subsets: int = 50,
    seed: int = 0,
) -> float:
    """The unbiased estimate of MMD² between two feature sets (KID's, Bińkowski et al. 2018).

    With the default cubic polynomial kernel ``k(a, b) = (a.b / D + 1)^3`` this is the kernel
    (KID-style) distance; ``kernel="rbf"`` uses a Gaussian kernel of the given bandwidth (the
    median heuristic on the pooled sets when None). The estimate is unbiased, so it can be
    slightly negative when the sets come from the same distribution. Sets larger than
    ``subset_size`` are compared in ``num_subsets`` random subsets of that size, averaged.

    Args:
        x, y: (N, D) and (M, D) features.
    """
    a, b = _pair(x, y)
    check_choice("kernel", kernel, _KERNELS)
    if kernel == "rbf" and bandwidth is None:
        bandwidth = median_bandwidth(np.concatenate([a, b]), seed=seed)
    if bandwidth is not None and not bandwidth > 0:
        raise ConfigError(f"bandwidth must be positive, got {bandwidth}")
    if max(len(a), len(b)) <= subset_size:
        return _mmd2_unbiased(
            _kernel(a, a, kernel, bandwidth),
            _kernel(b, b, kernel, bandwidth),
            _kernel(a, b, kernel, bandwidth),
        )
    rng = np.random.default_rng(seed)
    size = min(subset_size, len(a), len(b))
    values = []
    for _ in range(num_subsets):
        sa = a[rng.choice(len(a), size, replace=False)]
        sb = b[rng.choice(len(b), size, replace=False)]
        values.append(
            _mmd2_unbiased(
                _kernel(sa, sa, kernel, bandwidth),
                _kernel(sb, sb, kernel, bandwidth),
                _kernel(sa, sb, kernel, bandwidth),
            )
        )
    return float(np.mean(values))


def mmd_test(
    x,
    y,
    num_permutations: int = 1000,
    seed: int = 0,
    *,
    bandwidth: float | None = None,
) -> tuple[float, float]:
    """Kernel two-sample test (Gretton et al., 2012): the unbiased MMD² with a Gaussian kernel
    (median-heuristic bandwidth on the pooled sets unless given) and its permutation p-value.

    The p-value is ``(1 + #{permuted >= observed}) / (1 + num_permutations)``, a valid level
    for any sample size.

    Args:
        x, y: (N, D) and (M, D) features.

    Returns:
        (statistic, p_value).
    """
    a, b = _pair(x, y)
    if isinstance(num_permutations, bool) or int(num_permutations) < 1:
        raise ConfigError(f"num_permutations must be a positive integer, got {num_permutations}")
    pooled = np.concatenate([a, b])
    if bandwidth is None:
        bandwidth = median_bandwidth(pooled, seed=seed)
    k = _kernel(pooled, pooled, "rbf", bandwidth)
    np.fill_diagonal(k, 0.0)
    m, n = len(a), len(b)
    rng = np.random.default_rng(seed)

    def statistics(sx: np.ndarray) -> np.ndarray:
        # sx: (m + n, P) indicators of the first set, one column per labelling
        sy = 1.0 - sx
        ksx, ksy = k @ sx, k @ sy
        xx = (sx * ksx).sum(0) / (m * (m - 1))
        yy = (sy * ksy).sum(0) / (n * (n - 1))
        xy = (sx * ksy).sum(0) / (m * n)
        return xx + yy - 2.0 * xy

    first = np.zeros((m + n, 1))
    first[:m] = 1.0
    observed = float(statistics(first)[0])
    exceed, done = 0, 0
    while done < num_permutations:
        p = min(256, num_permutations - done)
        cols = np.zeros((m + n, p))
        for j in range(p):
            cols[rng.permutation(m + n)[:m], j] = 1.0
        exceed += int((statistics(cols) >= observed).sum())
        done += p
    return observed, (1 + exceed) / (1 + num_permutations)


def classifier_two_sample_test(x, y, seed: int = 0, *, classifier=None) -> tuple[float, float]:
    """Classifier two-sample test (Lopez-Paz & Oquab, 2017): a classifier learns to tell the
    sets apart on a random half of each; its accuracy on the other half is the statistic, and
    the p-value is the binomial tail P(Binomial(n_test, 1/2) >= correct), exact under the null
    that the sets share a distribution.

    Args:
        x, y: (N, D) and (M, D) features (at least 4 rows each).
        classifier: a scikit-learn classifier; default k-nearest neighbours (k = sqrt of the
            training size) on standardized features.

    Returns:
        (accuracy, p_value).
    """
    from scipy import stats
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = _pair(x, y, min_rows=4)
    data = np.concatenate([a, b])
    labels = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(data))
    half = len(data) // 2
    train, test = perm[:half], perm[half:]
    if classifier is None:
        k = max(1, int(round(math.sqrt(half))))
        classifier = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k))
    classifier.fit(data[train], labels[train])
    correct = int((classifier.predict(data[test]) == labels[test]).sum())
    p_value = float(stats.binom.sf(correct - 1, len(test), 0.5))
    return correct / len(test), p_value


def _kth_radius(a: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    out = np.empty(len(a))
    for start in range(0, len(a), chunk):
        d2 = _sq_dists(a[start : start + chunk], a)
        # the row itself is at distance 0: the k-th neighbour is at sorted position k
        out[start : start + chunk] = np.sqrt(np.partition(d2, k, axis=1)[:, k])
    return out


def _covered(points: np.ndarray, centers: np.ndarray, radii: np.ndarray, chunk=2048):
    inside = np.zeros(len(points), dtype=bool)
    for start in range(0, len(points), chunk):
        d = np.sqrt(_sq_dists(points[start : start + chunk], centers))
        inside[start : start + chunk] = (d <= radii[None, :]).any(1)
    return inside


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019): each set's manifold is the
    union of balls around its points reaching their k-th nearest neighbour; precision is the
    share of generated points inside the data's manifold (quality), recall the share of data
    points inside the generated manifold (coverage).

    Args:
        real, fake: (N, D) and (M, D) features, each with more than k rows.

    Returns:
        (precision, recall).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    a, b = _pair(real, fake, min_rows=k + 1)
    precision = _covered(b, a, _kth_radius(a, k)).mean()
    recall = _covered(a, b, _kth_radius(b, k)).mean()
    return float(precision), float(recall)


def _parzen(samples: np.ndarray, x: np.ndarray, sigma: float, chunk: int = 1024) -> np.ndarray:
    from scipy.special import logsumexp

    d = x.shape[1]
    out = np.empty(len(x))
    const = math.log(len(samples)) + 0.5 * d * math.log(2.0 * math.pi * sigma**2)
    for start in range(0, len(x), chunk):
        d2 = _sq_dists(x[start : start + chunk], samples)
        out[start : start + chunk] = logsumexp(-d2 / (2.0 * sigma**2), axis=1) - const
    return out


def parzen_log_likelihood(
    samples,
    x,
    bandwidth: float | None = None,
    *,
    x_val=None,
    bandwidths: Sequence[float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Log-density of each row of ``x`` under a Gaussian Parzen window on the model's samples
    (Breuleux et al., 2011; the GAN paper's Table 1), in nats.

    The bandwidth, unless given, is the one of ``bandwidths`` (default: 30 values on a log
    scale around the samples' spread) that maximizes the mean log-likelihood of a validation
    split: ``x_val`` when given (held-out data, never the test set), else a random tenth of the
    samples, scored under the window of the other nine tenths.

    Caveat (Theis et al., 2016): in more than a few dimensions the Parzen estimate is far from
    the model's true log-likelihood and can rank models in the opposite order; it is reported
    for comparison with the literature, not as a likelihood.

    Args:
        samples: (S, D) model samples; x: (N, D) data.

    Returns:
        (N,) log-densities.
    """
    s, xx = _pair(samples, x, min_rows=1)
    if len(s) < 10 and bandwidth is None:
        raise ConfigError("choosing a bandwidth needs at least 10 samples; give bandwidth=")
    if bandwidth is None:
        if x_val is not None:
            val, fit = _features(x_val, "x_val", 1), s
            if val.shape[1] != s.shape[1]:
                raise ConfigError(f"x_val has {val.shape[1]} features, the samples {s.shape[1]}")
        else:
            perm = np.random.default_rng(seed).permutation(len(s))
            cut = max(1, len(s) // 10)
            val, fit = s[perm[:cut]], s[perm[cut:]]
        if bandwidths is None:
            spread = float(np.sqrt(s.var(0).mean())) or 1.0
            bandwidths = spread * np.logspace(-2.5, 0.5, 30)
        scores = [_parzen(fit, val, float(b)).mean() for b in bandwidths]
        bandwidth = float(bandwidths[int(np.argmax(scores))])
    if not bandwidth > 0:
        raise ConfigError(f"bandwidth must be positive, got {bandwidth}")
    return _parzen(s, xx, float(bandwidth))


def mode_coverage(
    samples,
    centers,
    std: float,
    *,
    num_std: float = 3.0,
    min_fraction: float = 0.01,
) -> dict[str, float]:
    """Mode collapse on a mixture with known modes (Srivastava et al., 2017): a sample is of
    high quality when it lies within ``num_std`` standard deviations of its nearest mode, and a
    mode is covered when at least ``min_fraction`` of the samples are high-quality samples
    near it.

    Args:
        samples: (N, D); centers: (K, D) mode locations; std: the modes' standard deviation.

    Returns:
        ``{"modes": covered modes, "num_modes": K, "high_quality": fraction}``.
    """
    s = _features(samples, "samples", 1)
    c = _features(centers, "centers", 1)
    if s.shape[1] != c.shape[1]:
        raise ConfigError(f"samples have {s.shape[1]} features, the centers {c.shape[1]}")
    if not std > 0:
        raise ConfigError(f"std must be positive, got {std}")
    d = np.sqrt(_sq_dists(s, c))
    nearest = d.argmin(1)
    good = d[np.arange(len(s)), nearest] <= num_std * std
    counts = np.bincount(nearest[good], minlength=len(c))
    return {
        "modes": int((counts >= min_fraction * len(s)).sum()),
        "num_modes": int(len(c)),
        "high_quality": float(good.mean()),
    }


def sample_quality(fake, real, *, k: int = 3, seed: int = 0) -> dict[str, float]:
    """The sample-quality figures ppdgm reports for a model's samples against data, in the
    features given (at equal sample sizes, for comparable Fréchet distances):
    ``frechet_distance``, ``kernel_distance`` (cubic-kernel unbiased MMD², KID-style),
    ``mmd2_rbf`` (Gaussian kernel, median-heuristic bandwidth), ``precision`` and
    ``recall`` (k-nearest-neighbour manifolds)."""
    a, b = _pair(fake, real, min_rows=k + 1)
    precision, recall = precision_recall(b, a, k=k)
    return {
        "frechet_distance": frechet_distance(a, b),
        "kernel_distance": kernel_distance(a, b, seed=seed),
        "mmd2_rbf": kernel_distance(a, b, kernel="rbf", seed=seed),
        "precision": precision,
        "recall": recall,
    }
