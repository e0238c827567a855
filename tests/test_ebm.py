"""Deep energy models: the short-run Langevin chain, the replay buffer, the generic AIS path
and grid log Z, and a small fit checked against its own grid normalizer."""

import math
import warnings

import numpy as np
import pyro
import pytest
import torch

import ppdgm
from ppdgm.distributions import UnnormalizedDensity
from ppdgm.errors import ConfigError
from ppdgm.evaluation import EnergyAnnealingPath, ais, log_partition_grid
from ppdgm.inference import ContrastiveDivergence
from ppdgm.inference.dynamics import langevin_chain
from ppdgm.models.energy import DeepEBM


def quadratic(mean, std):
    mean, std = torch.as_tensor(mean), torch.as_tensor(std)

    def energy(x):
        return 0.5 * (((x - mean) / std) ** 2).sum(-1) + 1.5  # log Z gets -1.5

    log_z = float(torch.log(std).sum()) + 0.5 * len(mean) * math.log(2 * math.pi) - 1.5
    return energy, log_z


def test_grid_log_partition_matches_the_gaussian_normalizer():
    energy, log_z = quadratic([0.5, -1.0], [0.7, 1.3])
    value = log_partition_grid(energy, [-6.0, -9.0], [7.0, 7.0], num_points=300)
    assert value == pytest.approx(log_z, abs=1e-4)
    with pytest.raises(ValueError, match="2-D"):
        log_partition_grid(energy, [0.0], [1.0])


def test_energy_annealing_path_brackets_log_z():
    # a base far from the target: the path's MALA transitions must do real work
    energy, log_z = quadratic([2.0, -1.0, 0.5], [0.5, 2.0, 1.0])
    path = EnergyAnnealingPath(energy, torch.zeros(3), torch.ones(3), step_size=0.3, num_steps=2)
    exact = torch.tensor([2.0, -1.0, 0.5]) + torch.tensor([0.5, 2.0, 1.0]) * torch.randn(400, 3)
    result = ais(path, num_chains=200, num_betas=300, reverse_from=exact, seed=0)
    assert 0.5 < path.accept_rate < 1.0
    assert abs(result.log_z - log_z) < 0.05
    assert result.log_z <= log_z + 0.01 <= result.log_z_reverse + 0.02
    # without transitions between distributions AIS degrades to importance sampling from the
    # base, far worse on this target: the transitions are what the estimate rests on
    frozen = EnergyAnnealingPath(energy, torch.zeros(3), torch.ones(3), step_size=1e-12)
    poor = ais(frozen, num_chains=200, num_betas=300, seed=0)
    assert abs(poor.log_z - log_z) > 3 * abs(result.log_z - log_z)


def test_langevin_chain_is_preconditioned_ula_with_its_known_bias():
    # on N(0, s^2) with preconditioner S the step is h = eps S^2: var = s^2 / (1 - h / (2 s^2))
    s, scale, eps = 3.0, torch.tensor([3.0]), 0.1
    x = langevin_chain(
        lambda z: (z**2).sum(-1) / (2 * s**2), torch.zeros(20000, 1), 100, eps, scale=scale
    )
    expected = s**2 / (1 - eps * scale.item() ** 2 / (2 * s**2))
    assert float(x.var()) / expected == pytest.approx(1, abs=0.04)
    low, high = torch.tensor([-0.1]), torch.tensor([0.2])
    boxed = langevin_chain(
        lambda z: (z**2).sum(-1), torch.zeros(500, 1), 20, 0.5, low=low, high=high
    )
    assert bool((boxed >= low).all() and (boxed <= high).all())
    assert bool((boxed == low).any() and (boxed == high).any())  # the noise reaches both walls


class _Fixed:
    """A program whose chain does nothing and whose fresh states are all 99."""

    def __init__(self):
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def energy(self, x):
        return self.scale * x.sum(-1)

    def model(self, x):
        density = UnnormalizedDensity(
            self.energy, (2,), sampler=lambda v, k: v + 0.0, init=lambda n: torch.full((n, 2), 99.0)
        )
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", density, obs=x)


def test_replay_buffer_draws_reinitializes_and_writes_back():
    prog = _Fixed()
    module = ContrastiveDivergence(num_steps=3, replay=True, num_chains=50, reinit=0.25)(
        prog.model, None
    )
    x = torch.zeros(400, 2)
    neg = module.negatives(x)
    assert module.chains.shape == (50, 2)  # the buffer started from init
    assert neg.shape == (400, 2) and torch.all(neg == 99.0)
    module.chains.zero_()
    counts = []
    for _ in range(5):
        neg = module.negatives(x)
        counts.append(float((neg == 99.0).all(-1).float().mean()))
    # fresh states come back at the reinit rate, plus those the buffer now holds again
    assert 0.15 < counts[0] < 0.35
    assert "chains" in module.state_dict()
    with pytest.raises(ConfigError, match="reinit"):
        ContrastiveDivergence(replay=True, reinit=1.5)


def test_energy_penalty_enters_the_contrastive_loss():
    prog = _Fixed()
    cd = ContrastiveDivergence(replay=True, num_chains=8, reinit=0.0, energy_l2=0.5)
    module = cd(prog.model, None)
    x = torch.ones(4, 2)
    module.negatives(x)
    module.chains.fill_(3.0)
    loss = module(x)
    e_data, e_neg = 2.0 * 2.0, 2.0 * 6.0  # scale * sum of each row
    expected = 4 * e_data - 4 * e_neg + 0.5 * (4 * e_data**2 + 4 * e_neg**2)
    assert float(loss.detach()) == pytest.approx(expected)


@pytest.fixture(scope="module")
def blob_ebm():
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -0.5], [0.5, 0.3], size=(2000, 2)).astype(np.float32)
    est = ppdgm.DeepEBM(
        hidden_dims=(32, 32),
        langevin_steps=10,
        step_size=0.02,
        buffer_size=1000,
        sample_steps=100,
        ais_chains=100,
        ais_betas=300,
        seed=0,
        device="cpu",
    )
    est.fit(x[:1600], num_steps=300, X_val=x[1600:1800], lr=3e-3)
    return est, x


def test_deep_ebm_learns_a_blob_and_its_ais_log_z_meets_the_grid(blob_ebm):
    est, x = blob_ebm
    grid = est.log_partition("grid")
    ais_value = est.log_partition("ais")
    assert abs(ais_value - grid) < 0.1
    assert est.log_z_method_ == "ais" and 0.3 < est.ais_accept_rate_ <= 1.0
    # scoring uses AIS's log Z, whichever was computed last
    np.testing.assert_allclose(est.score_samples(x[:3]), -est.energy(x[:3]) - ais_value, rtol=1e-6)
    assert est.log_partition("grid") == grid and est.log_z_grid_ == grid
    # the fitted density is close to the data's: its test NLL near the Gaussian's entropy
    gauss_nll = float(np.log(0.5 * 0.3) + np.log(2 * np.pi) + 1.0)
    nll = -est.score(x[1800:])
    assert nll < gauss_nll + 0.5
    samples = est.sample(500, seed=1)
    np.testing.assert_allclose(samples.mean(0), [1.0, -0.5], atol=0.15)
    np.testing.assert_allclose(samples.std(0), [0.5, 0.3], rtol=0.35)


def test_deep_ebm_model_program_and_errors():
    model = DeepEBM(3, hidden_dims=(4,))
    with pytest.raises(ConfigError, match="scores data"):
        model.model(None)
    with pytest.raises(ConfigError, match="step_size must be positive"):
        ppdgm.DeepEBM(step_size=0.0)
    with pytest.raises(ConfigError, match="reinit"):
        ppdgm.DeepEBM(reinit=2.0)
    est = ppdgm.DeepEBM(hidden_dims=(4,), langevin_steps=1, buffer_size=8, device="cpu")
    x = np.random.default_rng(0).normal(size=(60, 3))
    est.fit(x[:40], num_steps=2, batch_size=8, X_val=x[40:])
    assert est.history_["eval"] and np.isnan(est.history_["eval"]).all()  # none tracked in 3-D
    assert est.selected_step_ == est.last_step_
    with pytest.raises(ConfigError, match="2-D"):
        est.log_partition("grid")
    with pytest.raises(ConfigError, match="unknown method"):
        est.log_partition("exact")


def test_deep_ebm_is_equivariant_to_rescaling_the_data():
    # the energy reads standardized data and the chains are preconditioned by the data's
    # scale, so a fit on 100 x + 7 is the fit on x, moved: same energies at matching points
    x = np.random.default_rng(1).normal([1.0, -0.5], [0.5, 0.3], size=(300, 2))
    kw = dict(hidden_dims=(8,), langevin_steps=5, buffer_size=64, seed=0, device="cpu")
    a = ppdgm.DeepEBM(**kw).fit(x, num_steps=20, batch_size=32)
    b = ppdgm.DeepEBM(**kw).fit(100 * x + 7, num_steps=20, batch_size=32)
    np.testing.assert_allclose(a.energy(x[:50]), b.energy(100 * x[:50] + 7), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(
        100 * a.sample(20, seed=2) + 7, b.sample(20, seed=2), rtol=1e-3, atol=0.05
    )


def test_annealing_path_and_log_partition_refuse_bad_options():
    energy, _ = quadratic([0.0], [1.0])
    with pytest.raises(ValueError, match="std must be positive"):
        EnergyAnnealingPath(energy, torch.zeros(1), torch.zeros(1))
    from ppdgm.evaluation import log_partition

    with pytest.raises(ConfigError, match=r"exact log Z takes no options, got \['num_chains'\]"):
        log_partition(DeepEBM(2, hidden_dims=(4,)), "exact", num_chains=3)
    with pytest.raises(ConfigError, match="unknown method 'grid'"):
        log_partition(DeepEBM(2, hidden_dims=(4,)), "grid")


def test_langevin_chain_with_decoupled_noise_samples_the_tempered_chain():
    # on E = x^2 / (2 s^2) with preconditioner S, step h = eps S^2 and noise sd sigma S the
    # chain is AR(1), x' = (1 - h / s^2) x + sigma S xi: variance (sigma S)^2 / (1 - a^2)
    s, scale, eps, sigma = 2.0, torch.tensor([3.0]), 0.05, 0.1
    x = langevin_chain(
        lambda z: (z**2).sum(-1) / (2 * s**2),
        torch.zeros(20000, 1),
        200,
        eps,
        scale=scale,
        noise=sigma,
    )
    a = 1 - eps * 9.0 / s**2
    assert float(x.var()) == pytest.approx((sigma * 3.0) ** 2 / (1 - a**2), rel=0.04)
    assert abs(float(x.mean())) < 0.02


def test_deep_ebm_gaussian_chain_init_follows_the_data():
    model = DeepEBM(2, hidden_dims=(4,), init="gaussian")
    x = torch.tensor([[0.0, 10.0], [2.0, 30.0], [1.0, 20.0], [1.0, 20.0]])
    model.set_data_range(x)
    fresh = model.init_chains(20000)
    torch.testing.assert_close(fresh.mean(0), x.mean(0), atol=0.05 * x.std(0).max(), rtol=0)
    assert bool((fresh >= model.low).all() and (fresh <= model.high).all())
    inner = fresh[(fresh > model.low).all(1) & (fresh < model.high).all(1)]
    assert float(inner[:, 1].std()) > 0.5 * float(x[:, 1].std())  # spread, clamped at the box
    with pytest.raises(ConfigError, match="unknown init 'normal'"):
        DeepEBM(2, init="normal")


def test_deep_ebm_sampler_presets_follow_the_dimension_and_yield_to_explicit_values():
    rng = np.random.default_rng(0)
    kw = dict(hidden_dims=(4,), langevin_steps=1, buffer_size=8, device="cpu")
    low = ppdgm.DeepEBM(**kw).fit(rng.normal(size=(20, 2)), num_steps=1, batch_size=8)
    assert (low.sampler_, low.step_size_, low.energy_l2_) == ("langevin", 0.01, 0.1)
    assert low.noise_ == pytest.approx(math.sqrt(0.02))
    assert low.model_.init == "uniform" and low.model_.noise == pytest.approx(math.sqrt(0.02))
    high = ppdgm.DeepEBM(**kw).fit(rng.normal(size=(20, 5)), num_steps=1, batch_size=8)
    assert (high.sampler_, high.step_size_, high.noise_, high.energy_l2_) == (
        "short-run",
        1.0,
        0.01,
        1.0,
    )
    assert high.model_.init == "gaussian" and high.model_.step_size == 1.0
    mixed = ppdgm.DeepEBM(sampler="langevin", step_size=0.5, energy_l2=0.0, **kw)
    mixed.fit(rng.normal(size=(20, 5)), num_steps=1, batch_size=8)
    assert (mixed.sampler_, mixed.step_size_, mixed.energy_l2_) == ("langevin", 0.5, 0.0)
    assert mixed.noise_ == pytest.approx(1.0)  # sqrt(2 step_size): the model's temperature
    with pytest.raises(ConfigError, match="unknown sampler 'mcmc'"):
        ppdgm.DeepEBM(sampler="mcmc")
    with pytest.raises(ConfigError, match="noise must be positive"):
        ppdgm.DeepEBM(noise=0.0)


def test_short_run_sampler_gives_digits_where_langevin_gives_noise(digits):
    # the 64-pixel digits: Langevin at the model's temperature from uniform noise does not
    # reach the data in short runs; the cold short-run sampler from the data's Gaussian does
    scores = {}
    for sampler in ("langevin", "short-run"):
        est = ppdgm.DeepEBM(
            hidden_dims=(64, 64), sampler=sampler, buffer_size=2000, sample_steps=100, seed=0
        )
        est.set_params(device="cpu").fit(digits.x_train, num_steps=400)
        scores[sampler] = est.sample_metrics(
            digits.x_test, "test", features="digits", max_samples=200, seed=0
        )
    short, lang = scores["short-run"], scores["langevin"]
    assert short["test_frechet_distance"] < 0.75 * lang["test_frechet_distance"]
    assert short["test_frechet_distance"] < 15
    assert short["test_precision"] > 0.5 > lang["test_precision"]


def test_deep_ebm_standardization_floors_a_constant_coordinate():
    # a blank border pixel in the training data: other data may be nonzero there, which a
    # ~0 scale would turn into an astronomic energy (a test NLL of 1e6 nats on the digits)
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor(
        [1.0, 3.0, 0]
    )
    model = DeepEBM(3, hidden_dims=(4,))
    model.set_data_range(x)
    std = x.std(0)
    torch.testing.assert_close(model.scale[:2], std[:2])
    assert float(model.scale[2]) == pytest.approx(0.01 * float(std.mean()))
    moved = x[:5].clone()
    moved[:, 2] = 1.0
    with torch.no_grad():
        gap = (model.energy(moved) - model.energy(x[:5])).abs().max()
    assert float(gap) < 1e3


def test_a_settled_or_unsettled_ais_estimate_is_reported(monkeypatch):
    from ppdgm.evaluation import AISResult

    x = np.random.default_rng(0).normal(size=(40, 3))
    kw = dict(hidden_dims=(4,), langevin_steps=1, buffer_size=8, ais_chains=50, device="cpu")
    for ess, warns in ((1.5, True), (40.0, False)):
        est = ppdgm.DeepEBM(**kw).fit(x, num_steps=1, batch_size=8)
        fake = AISResult(
            log_z=3.0, log_z_reverse=None, log_weights=torch.zeros(50), ess=ess, num_betas=2
        )
        monkeypatch.setattr(
            est, "_ais", lambda *a, fake=fake: (fake, type("P", (), {"accept_rate": 0.9})())
        )
        if warns:
            with pytest.warns(RuntimeWarning, match=r"effective sample size is 1.5 of 50 chains"):
                metrics = est.metrics(x[:10], "test")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                metrics = est.metrics(x[:10], "test")
        assert metrics["log_z"] == 3.0 and metrics["log_z_ess"] == ess


def test_deep_ebm_checkpoint_keeps_its_sampler(tmp_path):
    from ppdgm.train import load_checkpoint

    x = np.random.default_rng(0).normal(size=(40, 5))
    kw = dict(hidden_dims=(4,), langevin_steps=1, buffer_size=8, device="cpu")
    est = ppdgm.DeepEBM(**kw).fit(x, num_steps=1, batch_size=8)
    est.save(tmp_path / "e.pt")
    back = ppdgm.DeepEBM.load(tmp_path / "e.pt")
    assert (back.sampler_, back.noise_, back.model_.init) == ("short-run", 0.01, "gaussian")
    np.testing.assert_allclose(back.sample(5, seed=2), est.sample(5, seed=2), rtol=1e-5)
    # a checkpoint from before the samplers (no sampler saved) was trained at T = 1
    state = load_checkpoint(tmp_path / "e.pt")
    del state["extra"]["params"]["sampler"]
    state["extra"]["params"].update(step_size=0.01, noise=None, energy_l2=0.1)
    old = ppdgm.DeepEBM.load(tmp_path / "e.pt", _state=state)
    assert (old.sampler_, old.model_.init) == ("langevin", "uniform")
    assert old.noise_ == pytest.approx(math.sqrt(0.02))
