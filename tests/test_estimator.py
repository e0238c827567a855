import numpy as np
import pytest

from ppdgm import VAE
from ppdgm.data import load_data
from ppdgm.errors import CheckpointError, ConfigError, DataValueError, ShapeMismatchError


@pytest.fixture(scope="module")
def binary_digits():
    return load_data("digits-binary")


@pytest.fixture(scope="module")
def fitted(binary_digits):
    return VAE(latent_dim=4, hidden_dims=(64,), seed=0).fit(binary_digits.x_train, num_steps=400)


def test_fit_sample_score_transform_shapes(fitted, binary_digits):
    x = binary_digits.x_test[:20]
    assert fitted.sample(7).shape == (7, 64)
    s = fitted.sample(7)
    assert set(np.unique(s)) <= {0.0, 1.0}
    assert fitted.score_samples(x, num_particles=50).shape == (20,)
    assert fitted.transform(x).shape == (20, 4)
    assert fitted.reconstruct(x).shape == (20, 64)
    assert fitted.elbo_samples(x).shape == (20,)


def test_training_learns_the_digits(fitted, binary_digits):
    nll = -fitted.score(binary_digits.x_test, num_particles=200)
    untrained = VAE(latent_dim=4, hidden_dims=(64,), seed=0).fit(binary_digits.x_train, num_steps=1)
    assert nll < 26.0 and nll < -untrained.score(binary_digits.x_test, num_particles=200) - 10
    # the IWAE bound is above the ELBO on average
    assert (
        fitted.score_samples(binary_digits.x_test, 200).mean()
        > fitted.elbo_samples(binary_digits.x_test, 5).mean()
    )


def test_same_seed_same_result(binary_digits):
    a = VAE(latent_dim=2, hidden_dims=(32,), seed=3).fit(binary_digits.x_train, num_steps=30)
    b = VAE(latent_dim=2, hidden_dims=(32,), seed=3).fit(binary_digits.x_train, num_steps=30)
    np.testing.assert_array_equal(
        a.transform(binary_digits.x_test), b.transform(binary_digits.x_test)
    )
    np.testing.assert_array_equal(a.sample(5), b.sample(5))


def test_save_load_round_trip(fitted, binary_digits, tmp_path):
    fitted.save(tmp_path / "v.pt")
    back = VAE.load(tmp_path / "v.pt")
    x = binary_digits.x_test[:10]
    np.testing.assert_array_equal(fitted.transform(x), back.transform(x))
    np.testing.assert_array_equal(fitted.sample(4, seed=1), back.sample(4, seed=1))


@pytest.mark.parametrize(
    "likelihood,data,gain",
    [("discretized_logistic", "digits", 30.0), ("gaussian", "digits-unit", 10.0)],
)
def test_other_likelihoods_learn_the_data(likelihood, data, gain):
    d = load_data(data)
    x = d.x_test[:100]

    def fit(steps):
        vae = VAE(latent_dim=3, hidden_dims=(32,), likelihood=likelihood, seed=0)
        return vae.fit(d.x_train, num_steps=steps)

    untrained, vae = fit(1), fit(150)
    s = vae.score_samples(x, num_particles=20)
    assert s.shape == (100,) and np.isfinite(s).all()
    # 150 steps raise the held-out log-likelihood by many nats (measured: 53 and 16)
    assert s.mean() > untrained.score_samples(x, num_particles=20).mean() + gain
    samples = vae.sample(500, seed=0)
    # the samples' pixel means follow the data's (measured correlation 0.96 and 0.98)
    assert np.corrcoef(samples.mean(0), d.x_train.mean(0))[0, 1] > 0.9
    assert samples.std(0).max() > 0  # draws, not the decoder's mean
    if likelihood == "discretized_logistic":
        assert vae.num_bins_ == 17
        assert samples.min() >= 0 and samples.max() <= 16 and (samples == np.round(samples)).all()


def test_image_data_uses_conv_nets():
    d = load_data("digits-binary")
    x = d.x_train.reshape(-1, 1, 8, 8)
    vae = VAE(latent_dim=3, hidden_dims=(32,), seed=0).fit(x, num_steps=20)
    assert vae.arch_ == "conv"
    assert vae.sample(4).shape == (4, 1, 8, 8)
    assert vae.score_samples(x[:6], num_particles=10).shape == (6,)
    mlp = VAE(latent_dim=3, hidden_dims=(32,), arch="mlp", seed=0).fit(x, num_steps=20)
    assert mlp.sample(2).shape == (2, 1, 8, 8) and mlp.transform(x[:3]).shape == (3, 3)


def test_iwae_objective_trains():
    d = load_data("digits-binary")
    vae = VAE(latent_dim=3, hidden_dims=(32,), objective="iwae", num_particles=4, seed=0)
    vae.fit(d.x_train, num_steps=40)
    assert np.isfinite(vae.history_["loss"]).all()


def test_bad_input_errors(fitted):
    with pytest.raises(DataValueError, match="bernoulli"):
        VAE(seed=0).fit(load_data("digits").x_train, num_steps=1)
    with pytest.raises(ShapeMismatchError, match=r"shape \(10,\).*shape \(64,\)"):
        fitted.score_samples(np.zeros((3, 10)))
    with pytest.raises(DataValueError, match="non-finite"):
        fitted.transform(np.full((2, 64), np.nan))
    with pytest.raises(ConfigError, match="not fitted"):
        VAE().sample(3)
    with pytest.raises(ConfigError, match="likelihood"):
        VAE(likelihood="poisson")
    with pytest.raises(ConfigError, match="latent_dim"):
        VAE(latent_dim=0)


def test_load_refuses_other_checkpoints(tmp_path):
    from ppdgm.train import save_checkpoint

    save_checkpoint(tmp_path / "x.pt", {"step": 1, "extra": {"estimator": "GAN"}})
    with pytest.raises(CheckpointError, match="not a VAE"):
        VAE.load(tmp_path / "x.pt")


def test_checkpoints_written_before_the_estimator_contract_still_load(tmp_path):
    from ppdgm.train import load_checkpoint, save_checkpoint

    d = load_data("digits")
    vae = VAE(latent_dim=2, hidden_dims=(16,), likelihood="discretized_logistic", seed=0)
    vae.fit(d.x_train[:100], num_steps=3)
    vae.save(tmp_path / "new.pt")
    state = load_checkpoint(tmp_path / "new.pt")
    extra = state["extra"]
    # the layout of a VAE checkpoint before the contract: num_bins at the top, no settings
    old = {k: v for k, v in extra.items() if k not in ("settings", "family")}
    old["num_bins"] = extra["settings"]["num_bins"]
    save_checkpoint(
        tmp_path / "old.pt", {**{k: v for k, v in state.items() if k != "format"}, "extra": old}
    )
    back = VAE.load(tmp_path / "old.pt")
    assert back.num_bins_ == 17 and back.likelihood_ == "discretized_logistic"
    np.testing.assert_array_equal(back.sample(3, seed=1), vae.sample(3, seed=1))
