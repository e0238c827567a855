"""Sample-quality metrics against references: closed forms, the level and power of the
two-sample tests, and known answers for precision/recall, Parzen windows and mode coverage."""

import math

import numpy as np
import pytest
import torch
from scipy import linalg, stats

from ppdgm.errors import ConfigError, DataValueError
from ppdgm.evaluation import (
    classifier_two_sample_test,
    frechet_distance,
    kernel_distance,
    mmd_test,
    mode_coverage,
    parzen_log_likelihood,
    precision_recall,
    sample_quality,
)


def _frechet_closed_form(m1, s1, m2, s2):
    root = linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_frechet_distance_is_the_closed_form_of_the_fitted_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4))
    b = rng.normal(size=(250, 4)) * [1.0, 2.0, 0.5, 1.0] + 0.3
    expected = _frechet_closed_form(
        a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    )
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(torch.as_tensor(a), b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_estimates_the_population_distance():
    rng = np.random.default_rng(1)
    m1, m2 = np.zeros(3), np.array([1.0, 0.0, -0.5])
    s1 = np.diag([1.0, 2.0, 0.5])
    s2 = np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.5]])
    a = rng.multivariate_normal(m1, s1, 200_000)
    b = rng.multivariate_normal(m2, s2, 200_000)
    assert frechet_distance(a, b) == pytest.approx(_frechet_closed_form(m1, s1, m2, s2), rel=0.01)


def _gaussian_rbf_mmd2(mu, s1, s2, h, d):
    """MMD² with the kernel exp(-|a-b|²/2h²) between N(0, s1² I) and N(mu, s2² I)."""

    def e(var, shift2):
        return (h**2 / (h**2 + var)) ** (d / 2) * math.exp(-shift2 / (2 * (h**2 + var)))

    return e(2 * s1**2, 0.0) + e(2 * s2**2, 0.0) - 2 * e(s1**2 + s2**2, float(mu @ mu))


def test_the_mmd2_estimate_is_unbiased():
    rng = np.random.default_rng(2)
    d, h = 2, 1.0
    mu = np.array([0.5, 0.0])
    est_alt, est_null = [], []
    for _ in range(300):
        x = rng.normal(size=(20, d))
        est_alt.append(
            kernel_distance(x, rng.normal(size=(20, d)) * 1.2 + mu, kernel="rbf", bandwidth=h)
        )
        est_null.append(kernel_distance(x, rng.normal(size=(20, d)), kernel="rbf", bandwidth=h))
    truth = _gaussian_rbf_mmd2(mu, 1.0, 1.2, h, d)
    for values, expected in ((est_alt, truth), (est_null, 0.0)):
        se = np.std(values) / math.sqrt(len(values))
        assert np.mean(values) == pytest.approx(expected, abs=4 * se)
    # the biased (V-statistic) estimate would sit well above 0 under the null
    assert np.mean(est_null) < 0.5 * np.std(est_null)


def test_kernel_distance_in_subsets_agrees_with_the_full_estimate():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(1500, 5)), rng.normal(size=(1500, 5)) + 0.2
    full = kernel_distance(a, b, subset_size=2000)
    parts = kernel_distance(a, b, subset_size=500, num_subsets=40)
    assert parts == pytest.approx(full, rel=0.1)
    assert kernel_distance(a, rng.normal(size=(1500, 5)), subset_size=2000) < 0.1 * full


def test_the_permutation_test_holds_its_level_and_rejects_a_clear_difference():
    rng = np.random.default_rng(4)
    rejections = 0
    trials = 200
    for seed in range(trials):
        x, y = rng.normal(size=(25, 2)), rng.normal(size=(30, 2))
        _, p = mmd_test(x, y, num_permutations=199, seed=seed)
        rejections += p <= 0.05
    # about 5% under the null: 3 standard errors of a binomial proportion over 200 trials
    assert 0.05 - 3 * 0.0154 <= rejections / trials <= 0.05 + 3 * 0.0154
    stat, p = mmd_test(rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 1.0)
    assert stat > 0 and p < 0.01


def test_the_classifier_two_sample_test_holds_its_level_and_has_power():
    rng = np.random.default_rng(5)
    rejections = sum(
        classifier_two_sample_test(rng.normal(size=(40, 2)), rng.normal(size=(40, 2)), seed=s)[1]
        <= 0.05
        for s in range(200)
    )
    # the exact binomial test is conservative: at most about 5% (plus 3 standard errors)
    assert rejections / 200 <= 0.05 + 3 * 0.0154
    # two interleaved rings are told apart though their means and covariances agree
    t = rng.uniform(0, 2 * np.pi, 400)
    ring = lambda r: np.stack([r * np.cos(t), r * np.sin(t)], 1) + 0.05 * rng.normal(size=(400, 2))  # noqa: E731
    acc, p = classifier_two_sample_test(ring(1.0), ring(1.5), seed=0)
    assert acc > 0.9 and p < 1e-6


def test_precision_and_recall_on_identical_and_truncated_sets():
    rng = np.random.default_rng(6)
    centers = np.array([[0, 0], [5, 0], [0, 5], [5, 5]], dtype=float)
    real = centers[rng.integers(4, size=800)] + 0.3 * rng.normal(size=(800, 2))
    assert precision_recall(real, real) == (1.0, 1.0)
    # a generator that covers half of the modes: precise, but recall about a half
    half = centers[rng.integers(2, size=800)] + 0.3 * rng.normal(size=(800, 2))
    precision, recall = precision_recall(real, half)
    assert precision > 0.95 and 0.35 < recall < 0.65
    # one that is off the data: precision drops
    off = half + 2.0
    assert precision_recall(real, off)[0] < 0.2


def test_parzen_log_likelihood_matches_scipy_and_picks_a_sensible_bandwidth():
    rng = np.random.default_rng(7)
    samples, x = rng.normal(size=(300, 2)), rng.normal(size=(50, 2))
    sigma = 0.4
    densities = [stats.multivariate_normal(s, sigma**2 * np.eye(2)).pdf(x) for s in samples]
    expected = np.log(np.mean(densities, axis=0))
    np.testing.assert_allclose(parzen_log_likelihood(samples, x, bandwidth=sigma), expected)
    # chosen on held-out data: close to the true log-density of a standard normal
    samples = rng.normal(size=(5000, 2))
    truth = stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(x).mean()
    chosen = parzen_log_likelihood(samples, x, x_val=rng.normal(size=(500, 2))).mean()
    assert chosen == pytest.approx(truth, abs=0.15)
    assert parzen_log_likelihood(samples, x).mean() == pytest.approx(truth, abs=0.15)
    tiny = parzen_log_likelihood(samples, x, bandwidth=0.01).mean()
    assert tiny < truth - 1.0


def test_mode_coverage_counts_modes_and_high_quality_samples():
    centers = np.array([[np.cos(a), np.sin(a)] for a in np.arange(8) * np.pi / 4]) * 2
    rng = np.random.default_rng(8)
    near = centers[rng.integers(5, size=900)] + 0.05 * rng.normal(size=(900, 2))
    far = rng.uniform(-0.3, 0.3, size=(100, 2))  # the middle: 2 away from every mode
    out = mode_coverage(np.concatenate([near, far]), centers, 0.1)
    assert out == {"modes": 5, "num_modes": 8, "high_quality": pytest.approx(0.9)}
    # a mode with fewer than 1% of the samples does not count
    few = np.concatenate([near, centers[[7]].repeat(5, 0)])
    assert mode_coverage(few, centers, 0.1)["modes"] == 5


def test_bad_inputs_are_refused_by_name():
    good = np.zeros((10, 2))
    with pytest.raises(ConfigError, match="different feature sizes: 2 and 3"):
        frechet_distance(good, np.zeros((10, 3)))
    with pytest.raises(DataValueError, match="y: holds NaN"):
        kernel_distance(good, np.full((10, 2), np.nan))
    with pytest.raises(ConfigError, match="x: expected features"):
        mmd_test(np.zeros(5), good)
    with pytest.raises(ConfigError, match="unknown kernel 'cubic'"):
        kernel_distance(good, good, kernel="cubic")
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        precision_recall(good, good, k=0)


def test_sample_quality_reports_every_figure():
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
    out = sample_quality(a, b)
    assert set(out) == {"frechet_distance", "kernel_distance", "mmd2_rbf", "precision", "recall"}
    assert out["frechet_distance"] == frechet_distance(a, b)
    assert (out["precision"], out["recall"]) == precision_recall(b, a)


def test_precision_and_recall_use_the_kth_neighbour_radius_by_hand():
    real = np.array([[0.0], [1.0], [3.0]])
    fake = np.array([[1.9], [4.6], [10.0]])
    # k=1: real radii 1, 1, 2; fake radii 2.7, 2.7, 5.4
    assert precision_recall(real, fake, k=1) == (pytest.approx(2 / 3), 1.0)
    # k=2: real radii 3, 2, 3: 4.6 is 1.6 from 3, 10 is 7 away from every ball
    assert precision_recall(real, np.array([[10.0], [4.6], [-3.5]]), k=2)[0] == pytest.approx(1 / 3)


def test_the_mmd_test_statistic_is_the_unbiased_estimate():
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(45, 2)) + 0.3
    stat, _ = mmd_test(x, y, num_permutations=10, bandwidth=0.8)
    assert stat == pytest.approx(kernel_distance(x, y, kernel="rbf", bandwidth=0.8), rel=1e-10)


def test_the_classifier_test_p_value_is_the_binomial_tail_at_the_count():
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(50, 2)), rng.normal(size=(50, 2)) + 0.8
    acc, p = classifier_two_sample_test(x, y, seed=3)
    n_test = 100 - 50
    correct = round(acc * n_test)
    # P(Binomial(n, 1/2) >= correct), summed by hand
    tail = sum(math.comb(n_test, j) for j in range(correct, n_test + 1)) / 2**n_test
    assert p == pytest.approx(tail, rel=1e-9)
