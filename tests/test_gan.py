"""The GAN family: architectures for vectors and images, conditional GANs, every loss through
the estimator and the command line, and learning on a toy mixture."""

import json

import numpy as np
import pytest
import torch

import ppdgm
from ppdgm import cli
from ppdgm.data import load_data
from ppdgm.errors import ConfigError, NoDensityError
from ppdgm.evaluation import kernel_distance
from ppdgm.inference import ADVERSARIAL_LOSSES
from ppdgm.models.gan import DCGANDiscriminatorNet, DCGANGeneratorNet, dcgan_levels

TINY = {"hidden_dims": (16,), "latent_dim": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def toy():
    return load_data("8gaussians")


@pytest.mark.parametrize("loss", ADVERSARIAL_LOSSES)
def test_every_loss_trains_through_the_estimator(loss, toy):
    gan = ppdgm.GAN(loss, **TINY).fit(toy.x_train[:256], num_steps=3, batch_size=32)
    assert gan.sample(4).shape == (4, 2) and np.isfinite(gan.sample(4)).all()
    assert gan.last_step_ == 3
    assert len(gan.history_["loss_discriminator"]) == len(gan.history_["loss_generator"]) >= 1
    expected = 5 if loss in ("wasserstein", "wgan_gp") else 1
    assert gan.n_critic_ == expected and gan.trainer_.batches_per_step == expected + 1


def test_a_gan_learns_the_toy_mixture(toy):
    x = toy.x_train[:2000]
    gan = ppdgm.GAN(hidden_dims=(64, 64), device="cpu", seed=0)
    gan.fit(x, num_steps=1, batch_size=128)
    before = kernel_distance(gan.sample(500), toy.x_test[:500], kernel="rbf", bandwidth=0.5)
    gan.fit(x, num_steps=400, batch_size=128, lr=1e-3)
    after = kernel_distance(gan.sample(500), toy.x_test[:500], kernel="rbf", bandwidth=0.5)
    assert after < 0.3 * before


def test_validation_selects_a_step_by_mmd(toy):
    gan = ppdgm.GAN(**TINY).fit(
        toy.x_train[:512], num_steps=8, batch_size=32, X_val=toy.x_test[:64], eval_every=2
    )
    assert len(gan.history_["eval"]) == 4 and gan.best_step_ in (2, 4, 6, 8)
    assert gan.best_val_loss_ == min(gan.history_["eval"])


def test_dcgan_on_digit_images(digits):
    x = digits.x_train[:64].reshape(-1, 1, 8, 8)
    gan = ppdgm.GAN(channels=4, device="cpu").fit(x, num_steps=2, batch_size=16)
    assert gan.arch_ == "dcgan" and gan.latent_dim_ == 32
    s = gan.sample(5)
    assert s.shape == (5, 1, 8, 8)
    # the tanh output mapped onto the data's range
    assert s.min() >= x.min() - 1e-4 and s.max() <= x.max() + 1e-4
    flat = ppdgm.GAN(hidden_dims=(16,), device="cpu").fit(digits.x_train[:64], num_steps=2)
    assert flat.arch_ == "mlp" and flat.sample(3).shape == (3, 64)
    # the gradient penalty's default weight: 1 for the MLP, the paper's 10 for images
    assert flat.gp_weight_ == 1.0 and gan.gp_weight_ == 10.0
    assert ppdgm.GAN(gp_weight=3.0).gp_weight_ == 3.0
    with pytest.raises(ConfigError, match="arch='dcgan' needs images"):
        ppdgm.GAN(arch="dcgan").fit(digits.x_train[:64], num_steps=1)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 48)])
def test_dcgan_nets_fit_larger_images(shape):
    c, h, w = shape
    net = DCGANGeneratorNet(10, shape, channels=4)
    out = net(torch.randn(2, 10))
    assert out.shape == (2, *shape)
    disc = DCGANDiscriminatorNet(shape, channels=4)
    assert disc(out).shape == (2, disc.out_dim)
    assert 1 <= dcgan_levels(h, w) <= 3
    with pytest.raises(ConfigError, match="use arch='mlp'"):
        dcgan_levels(7, 7)


def test_conditional_gan_takes_labels(digits):
    x, y = digits.x_train[:128], digits.y_train[:128]
    gan = ppdgm.GAN(conditional=True, hidden_dims=(16,), device="cpu")
    gan.fit(x, y, num_steps=3, batch_size=32, X_val=digits.x_test[:40], y_val=digits.y_test[:40])
    assert gan.settings_["num_classes"] == 10 and len(gan.history_["eval"]) >= 1
    assert gan.sample(6, y=np.arange(6)).shape == (6, 64)
    np.testing.assert_array_equal(gan.sample(4, seed=2), gan.sample(4, seed=2))
    # the labels change the samples for the same noise
    a, b = gan.sample(4, y=np.zeros(4, int), seed=1), gan.sample(4, y=np.ones(4, int), seed=1)
    assert not np.allclose(a, b)
    assert gan.discriminate(x[:3], y[:3]).shape == (3,)
    with pytest.raises(ConfigError, match="conditional: give the labels y"):
        ppdgm.GAN(conditional=True).fit(x, num_steps=1)
    with pytest.raises(ConfigError, match="outside the fitted classes 0..9"):
        gan.sample(2, y=[3, 12])
    with pytest.raises(ConfigError, match="y_val"):
        ppdgm.GAN(conditional=True).fit(x, y, num_steps=1, X_val=x[:10])


def test_score_samples_says_there_is_no_density(toy):
    gan = ppdgm.GAN(**TINY).fit(toy.x_train[:64], num_steps=1)
    with pytest.raises(NoDensityError, match="implicit likelihood.*sample_metrics"):
        gan.score_samples(toy.x_test[:5])
    assert gan.metrics(toy.x_test[:100], "test") == {"num_test": 100}
    out = gan.sample_metrics(toy.x_test[:100], "test")
    assert {"test_frechet_distance", "test_kernel_distance", "test_precision"} <= set(out)


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ConfigError, match="loss='wasserstein' uses RMSprop"):
        ppdgm.GAN("wasserstein", betas=(0.5, 0.9))
    with pytest.raises(ConfigError, match="betas must be two numbers"):
        ppdgm.GAN(betas=(0.5,))
    with pytest.raises(ConfigError, match="latent_dim"):
        ppdgm.GAN(latent_dim=0)
    with pytest.raises(ConfigError, match="unknown loss 'f:tv'"):
        ppdgm.GAN("f:tv")


def test_cli_trains_a_wgan_gp_with_both_curves_and_the_landscape(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "gan", "--loss", "wgan_gp", "--data", "8gaussians", "--steps", "4"]
    argv += ["--hidden-dims", "16", "--betas", "0.5,0.9", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    line = capsys.readouterr().out
    assert "Fréchet distance" in line and "modes" in line
    for name in ("samples.png", "curves.png", "discriminator.png", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_modes"] <= 8 and 0 <= metrics["test_high_quality"] <= 1
    assert metrics["test_frechet_distance"] >= 0
    config = json.loads((out / "config.json").read_text())
    assert config["params"]["loss"] == "wgan_gp" and config["params"]["betas"] == [0.5, 0.9]
    back = ppdgm.estimators.load_estimator(out / "checkpoint.pt")
    assert back.get_params()["betas"] == (0.5, 0.9)
    assert back.sample(3).shape == (3, 2)


def test_cli_conditional_gan_needs_labels(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "gan", "--conditional", "--data", "two-moons", "--steps", "2", "--out"]
    assert cli.main([*argv, str(out), "--no-progress"]) == 1
    assert "conditional and needs labels" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written
    argv = ["train", "gan", "--conditional", "--data", "digits", "--steps", "2"]
    argv += ["--hidden-dims", "8", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["num_classes"] == 10


# -- ALI / BiGAN -------------------------------------------------------------------------------
def test_bigan_encodes_reconstructs_and_round_trips(digits, tmp_path):
    x = digits.x_train[:128]
    bigan = ppdgm.BiGAN(hidden_dims=(16,), latent_dim=3, device="cpu", seed=0)
    bigan.fit(x, num_steps=1)
    enc0 = {k: v.clone() for k, v in bigan.encoder_.state_dict().items()}
    bigan.fit(x, num_steps=3, batch_size=32)
    # the encoder is a guide on the generator's side: the generator's updates move it
    moved = [k for k, v in bigan.encoder_.state_dict().items() if not torch.equal(v, enc0[k])]
    assert moved and bigan.discriminator_.latent_dim == 3
    # the encoder standardizes its input with the data's mean and scale, as the others do
    for m in (bigan.model_, bigan.discriminator_):
        torch.testing.assert_close(bigan.encoder_.shift, m.shift)
        torch.testing.assert_close(bigan.encoder_.scale, m.scale)
    torch.testing.assert_close(bigan.encoder_.shift, torch.as_tensor(x.mean(0)))
    players = bigan.trainer_.loss_module.players()
    enc_ids = {id(p) for p in bigan.encoder_.parameters()}
    assert enc_ids <= {id(p) for p in players["generator"]["params"]}
    assert not enc_ids & {id(p) for p in players["discriminator"]["params"]}
    z = bigan.transform(x[:5])
    assert z.shape == (5, 3) and np.isfinite(z).all()
    assert bigan.reconstruct(x[:5]).shape == (5, 64) and bigan.sample(2).shape == (2, 64)
    out = bigan.metrics(digits.x_test[:50], "test")
    rec = bigan.reconstruct(digits.x_test[:50])
    rmse = np.sqrt(np.mean((rec - digits.x_test[:50]) ** 2))
    assert out["test_reconstruction_rmse"] == pytest.approx(rmse, rel=1e-5)
    bigan.save(tmp_path / "b.pt")
    back = ppdgm.estimators.load_estimator(tmp_path / "b.pt")
    assert isinstance(back, ppdgm.BiGAN)
    np.testing.assert_array_equal(back.transform(x[:5]), z)
    with pytest.raises(NoDensityError, match="implicit likelihood"):
        bigan.score_samples(x[:2])


def test_bigan_on_images_and_with_labels(digits):
    x = digits.x_train[:64].reshape(-1, 1, 8, 8)
    bigan = ppdgm.BiGAN("wgan_gp", channels=4, hidden_dims=(8,), device="cpu")
    bigan.fit(x, num_steps=2, batch_size=16)
    assert bigan.arch_ == "dcgan"
    assert bigan.transform(x[:4]).shape == (4, 32)
    assert bigan.reconstruct(x[:4]).shape == (4, 1, 8, 8)
    y = digits.y_train[:64]
    cond = ppdgm.BiGAN(conditional=True, hidden_dims=(8,), device="cpu")
    cond.fit(digits.x_train[:64], y, num_steps=2, batch_size=16)
    rec = cond.reconstruct(digits.x_train[:4], y[:4])
    assert rec.shape == (4, 64)
    # the labels go into the generator: other labels, other reconstructions
    assert not np.allclose(rec, cond.reconstruct(digits.x_train[:4], (y[:4] + 1) % 10))
    with pytest.raises(ConfigError, match="y"):
        cond.reconstruct(digits.x_train[:4])
    metrics = cond.metrics(digits.x_test[:40], "test", y=digits.y_test[:40])
    assert "test_reconstruction_rmse" in metrics


def test_bigan_encoder_learns_to_invert_the_generator():
    # a correlated 2-D Gaussian: the optimal generator and encoder are (close to) linear maps
    # inverse to each other, so E(G(z)) recovers z and G(E(x)) reconstructs x
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4000, 2)) @ np.array([[2.0, 0.5], [0.0, 0.6]]) + 1.0).astype(
        "float32"
    )
    xs = x[:1000]

    def inversion(bigan):
        z = torch.randn(1000, 2, generator=torch.Generator().manual_seed(3))
        e = np.c_[bigan.transform(bigan.model_(z).detach().numpy()), np.ones(1000)]
        coef, *_ = np.linalg.lstsq(e, z.numpy(), rcond=None)
        r2 = 1 - (z.numpy() - e @ coef).var(0).sum() / z.numpy().var(0).sum()
        mse = (((bigan.reconstruct(xs) - xs) / xs.std(0)) ** 2).mean()
        return r2, mse

    bigan = ppdgm.BiGAN(hidden_dims=(32, 32), latent_dim=2, device="cpu", seed=0)
    before = inversion(bigan.fit(x, num_steps=1, batch_size=128))
    after = inversion(bigan.fit(x, num_steps=2000, batch_size=128, lr=1e-3, restore_best=False))
    # R² of z from E(G(z)) by least squares; G(E(x))'s error in standardized units
    assert after[0] > 0.85 and after[0] > before[0] + 0.15, (before, after)
    assert after[1] < 0.5 < before[1], (before, after)


def test_cli_gan_without_sample_quality(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "gan", "--data", "two-moons", "--steps", "2", "--hidden-dims", "8"]
    argv += ["--quality-samples", "0", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "no density and no sample quality (--quality-samples 0)" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test_frechet_distance" not in metrics and metrics["num_test"] > 0


def test_dcgan_discriminator_normalization_follows_the_loss():
    def norms(est):
        return {type(m).__name__ for m in est.discriminator_.features.modules()}

    x = np.random.default_rng(0).uniform(0, 16, (32, 1, 8, 8)).astype("float32")
    ns = ppdgm.GAN(channels=4, device="cpu").fit(x, num_steps=1, batch_size=16)
    gp = ppdgm.GAN("wgan_gp", channels=4, device="cpu").fit(x, num_steps=1, batch_size=16)
    # DCGAN's batch norm (without it the generator collapses on the digits); per-example
    # layer norm under the gradient penalty, which is taken example by example
    assert "BatchNorm2d" in norms(ns) and "GroupNorm" not in norms(ns)
    assert "GroupNorm" in norms(gp) and "BatchNorm2d" not in norms(gp)
    bigan = ppdgm.BiGAN(channels=4, hidden_dims=(8,), device="cpu").fit(x, num_steps=1)
    enc = {type(m).__name__ for m in bigan.encoder_.modules()}
    assert not enc & {"BatchNorm2d", "GroupNorm"}  # an encoder gives z per example
    with pytest.raises(ConfigError, match="unknown norm 'instance'"):
        DCGANDiscriminatorNet((1, 8, 8), 4, norm="instance")


def test_generator_moving_average_follows_its_update_rule(toy):
    gan = ppdgm.GAN(**TINY, ema=0.9).fit(toy.x_train[:256], num_steps=2, batch_size=64)
    avg, live = gan.generator_average_, gan.model_
    assert all(not p.requires_grad for p in avg.parameters())
    assert gan.trainer_.params and not {id(p) for p in avg.parameters()} & {
        id(p) for p in gan.trainer_.params
    }
    # the data's standardization reached the copy too
    torch.testing.assert_close(avg.shift, live.shift)
    torch.testing.assert_close(avg.scale, live.scale)
    module = gan.trainer_.loss_module
    with torch.no_grad():
        for i, (a, p) in enumerate(zip(avg.parameters(), live.parameters(), strict=True)):
            a.fill_(1.0)
            p.fill_(float(i + 2))
        live.shift.fill_(5.0)
    module.after_update("discriminator")  # the discriminator's update leaves it alone
    assert all(bool((a == 1.0).all()) for a in avg.parameters())
    module.after_update("generator")
    for i, a in enumerate(avg.parameters()):
        torch.testing.assert_close(a, torch.full_like(a, 0.9 * 1.0 + 0.1 * (i + 2)))
    assert bool((avg.shift == 5.0).all())  # buffers are copied, not averaged
    # the average is what samples; the last weights are another generator
    a, b = gan.sample(50, seed=3), gan.sample(50, seed=3)
    np.testing.assert_array_equal(a, b)
    gan.ema = 0.0
    gan._make_average()
    assert gan.generator_average_ is None
    assert not np.allclose(gan.sample(50, seed=3), a)


def test_generator_moving_average_travels_in_checkpoints(toy, tmp_path):
    gan = ppdgm.GAN(**TINY).fit(toy.x_train[:256], num_steps=3, batch_size=64)
    assert gan.ema == 0.99 and gan.generator_average_ is not None
    gan.save(tmp_path / "g.pt")
    back = ppdgm.GAN.load(tmp_path / "g.pt")
    for a, b in zip(
        back.generator_average_.state_dict().values(),
        gan.generator_average_.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    np.testing.assert_allclose(back.sample(20, seed=1), gan.sample(20, seed=1), rtol=1e-6)
    # a checkpoint from before the average (no ema, no average's weights) still loads
    old = ppdgm.GAN(**TINY, ema=0.0).fit(toy.x_train[:256], num_steps=1, batch_size=64)
    old.save(tmp_path / "old.pt")
    from ppdgm.train import load_checkpoint

    state = load_checkpoint(tmp_path / "old.pt")
    del state["extra"]["params"]["ema"]
    loaded = ppdgm.GAN.load(tmp_path / "old.pt", _state=state)
    assert loaded.ema == 0.0 and loaded.generator_average_ is None


def test_generator_moving_average_refuses_bad_options():
    with pytest.raises(ConfigError, match=r"ema must lie in \[0, 1\), got 1.0"):
        ppdgm.GAN(ema=1.0)
    from ppdgm.inference import Adversarial

    d = torch.nn.Linear(2, 1)
    with pytest.raises(ConfigError, match="generator_average must be a torch module"):
        Adversarial(d, generator_average="copy")
    with pytest.raises(ConfigError, match=r"average_decay must lie in \[0, 1\)"):
        Adversarial(d, generator_average=torch.nn.Linear(2, 2), average_decay=1.5)
    gan = ppdgm.GAN(**TINY, ema=0.0).fit(np.random.default_rng(0).normal(size=(64, 2)), num_steps=1)
    with pytest.raises(ConfigError, match="a copy of the generator program's module"):
        Adversarial(d, generator_average=torch.nn.Linear(2, 2))(gan.model_.model, None)
