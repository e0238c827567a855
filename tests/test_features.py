"""The digits classifier's features, the Inception-score analogue, feature extraction, and the
sample-quality report every family gives."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import ppdgm
from ppdgm import cli
from ppdgm.data import load_data
from ppdgm.errors import ConfigError
from ppdgm.evaluation import (
    digits_classifier,
    digits_features,
    extract_features,
    frechet_distance,
    inception_score,
    sample_quality,
)
from ppdgm.evaluation import features as F


def test_the_classifier_is_trained_well_and_cached(digits, tmp_path, monkeypatch):
    net = digits_classifier()
    assert net.test_accuracy >= 0.95
    # its own predictions on the test split agree with the recorded accuracy
    with torch.no_grad():
        pred = net(torch.as_tensor(digits.x_test / 16.0)).argmax(1).numpy()
    assert (pred == digits.y_test).mean() == pytest.approx(net.test_accuracy)
    # a fresh cache (with a two-epoch recipe, for speed): trained once, written, then read
    # back without training
    monkeypatch.setenv("PPDGM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(F, "_RECIPE", {**F._RECIPE, "epochs": 2})
    trained = []
    real_train = F._train_classifier

    def counting():
        trained.append(1)
        return real_train()

    monkeypatch.setattr(F, "_train_classifier", counting)
    monkeypatch.setattr(F, "_LOADED", {})
    first = digits_classifier()
    (path,) = tmp_path.glob("digits_classifier-*.pt")
    monkeypatch.setattr(F, "_LOADED", {})
    second = digits_classifier()
    assert len(trained) == 1
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a deterministic recipe: trained again in memory, the same weights
    again = digits_classifier(cache=False)
    torch.testing.assert_close(first.out.weight, again.out.weight, rtol=1e-4, atol=1e-5)
    assert len(list(tmp_path.glob("*.pt"))) == 1 and len(trained) == 2
    # a corrupt file is replaced by a fresh training run, not unpickled
    path.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(F, "_LOADED", {})
    third = digits_classifier()
    assert len(trained) == 3 and third.test_accuracy == first.test_accuracy
    assert torch.load(path, weights_only=True)["test_accuracy"] == first.test_accuracy


def test_features_separate_digits_from_noise(digits):
    train = digits_features(digits.x_train)
    assert train.shape == (len(digits.x_train), 64) and train.dtype == np.float64
    # scaled to unit root-mean variance on the training split
    assert train.var(0).mean() == pytest.approx(1.0, rel=1e-3)
    # the features of images (N, 1, 8, 8) are those of the flat rows
    np.testing.assert_allclose(
        digits_features(digits.x_test.reshape(-1, 1, 8, 8)), digits_features(digits.x_test)
    )
    floor = frechet_distance(digits_features(digits.x_test), train)
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 16, digits.x_test.shape)
    blurred = 0.5 * digits.x_test + 0.5 * digits.x_test[rng.permutation(len(digits.x_test))]
    assert floor < frechet_distance(digits_features(blurred), train)
    assert frechet_distance(digits_features(blurred), train) < frechet_distance(
        digits_features(noise), train
    )
    # binary digits read with scale 1 stay near the data
    binary = load_data("digits-binary")
    assert frechet_distance(digits_features(binary.x_test, scale=1.0), train) < 0.5 * (
        frechet_distance(digits_features(noise), train)
    )
    with pytest.raises(ConfigError, match="8x8 images"):
        digits_features(np.zeros((3, 10)))
    with pytest.raises(ConfigError, match="NaN"):
        digits_features(np.full((2, 64), np.nan))


class _Logits(nn.Module):
    """A 'classifier' whose logits are its input."""

    def forward(self, x):
        return x


def _hand_inception_score(p):
    marginal = p.mean(0)
    kl = (p * (np.log(p) - np.log(marginal))).sum(1)
    return math.exp(kl.mean())


def test_inception_score_equals_the_hand_computation():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(60, 4)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    mean, std = inception_score(logits, classifier=_Logits())
    assert mean == pytest.approx(_hand_inception_score(p), rel=1e-6) and std == 0
    # confident and balanced: the number of classes; one class only, or undecided: 1
    sure = np.eye(4)[np.arange(40) % 4] * 50
    assert inception_score(sure, classifier=_Logits())[0] == pytest.approx(4, rel=1e-6)
    assert inception_score(np.tile(sure[:1], (40, 1)), classifier=_Logits())[0] == pytest.approx(1)
    assert inception_score(np.zeros((40, 4)), classifier=_Logits())[0] == pytest.approx(1)
    # splits: the score of each part, then mean and standard deviation
    parts = [_hand_inception_score(q) for q in np.array_split(p, 3)]
    mean, std = inception_score(logits, classifier=_Logits(), splits=3)
    assert mean == pytest.approx(np.mean(parts)) and std == pytest.approx(np.std(parts))
    with pytest.raises(ConfigError, match="splits"):
        inception_score(logits, classifier=_Logits(), splits=0)


def test_inception_score_of_digits(digits):
    real, _ = inception_score(digits.x_test)
    noise, _ = inception_score(np.random.default_rng(0).uniform(0, 16, (300, 64)))
    ones, _ = inception_score(np.tile(digits.x_test[:1], (300, 1)))
    # (noise is not scored 1: the classifier calls it confidently, the score's known weakness)
    assert real > 8.5 and noise < 0.6 * real and ones < 1.1


def test_extract_features_by_any_module():
    x = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    np.testing.assert_array_equal(extract_features(x), x.reshape(3, 8))
    lin = nn.Linear(8, 2)
    net = nn.Sequential(nn.Flatten(), lin)
    with torch.no_grad():
        expected = net(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(extract_features(x, net, batch_size=2), expected, rtol=1e-6)
    with pytest.raises(ConfigError, match="torch module"):
        extract_features(x, lambda t: t)


def test_every_family_reports_sample_quality(digits):
    vae = ppdgm.VAE(latent_dim=2, hidden_dims=(16,), likelihood="auto", device="cpu").fit(
        digits.x_train[:200], num_steps=5
    )
    out = vae.sample_metrics(digits.x_test, "test", features="digits", max_samples=100)
    assert out["test_quality_samples"] == 100
    assert {
        "test_frechet_distance",
        "test_kernel_distance",
        "test_precision",
        "test_recall",
    } <= set(out)
    assert 1 <= out["test_inception_score"] <= 10
    # raw features, a module, a function: each its own feature space
    raw = vae.sample_metrics(digits.x_test, "test", max_samples=100, seed=4)
    assert "test_inception_score" not in raw
    # raw: both sets standardized by the data's mean and standard deviation, the latter
    # floored at 1% of its mean (the digits' blank border pixels would otherwise dominate)
    real = digits.x_test[:100].astype(np.float64)
    sd = real.std(0)
    assert (sd == 0).any()
    mean, std = real.mean(0), np.maximum(sd, 1e-2 * sd.mean())
    fake = vae.sample(100, seed=4)
    hand = sample_quality((fake - mean) / std, (real - mean) / std, seed=4)
    assert raw == pytest.approx(
        {f"test_{k}": v for k, v in hand.items()} | {"test_quality_samples": 100}
    )
    by_module = vae.sample_metrics(
        digits.x_test, "test", features=nn.Flatten(), max_samples=100, seed=0
    )
    by_function = vae.sample_metrics(
        digits.x_test, "test", features=lambda a: a.reshape(len(a), -1), max_samples=100, seed=0
    )
    assert by_module["test_frechet_distance"] == pytest.approx(by_function["test_frechet_distance"])
    with pytest.raises(ConfigError, match="unknown features 'inception'"):
        vae.sample_metrics(digits.x_test, "test", features="inception")
    with pytest.raises(ConfigError, match="features must be"):
        vae.sample_metrics(digits.x_test, "test", features=3)


def test_cli_reports_sample_quality_for_a_density_family(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "maf", "--data", "8gaussians", "--steps", "3", "--num-transforms", "1"]
    argv += ["--hidden-dims", "8", "--quality-samples", "300", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "NLL" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_quality_samples"] == 300 and metrics["test_frechet_distance"] > 0
    assert "test_nll" in metrics and "test_modes" in metrics
    assert cli.main(["evaluate", str(out), "--quality-samples", "0"]) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert "test_frechet_distance" not in evaluation and "test_nll" in evaluation
    assert cli.main(["evaluate", str(out)]) == 0  # the run's own setting
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["test_quality_samples"] == 300
