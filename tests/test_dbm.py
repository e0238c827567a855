"""Deep Boltzmann machines: exact quantities against brute force, mean field, Gibbs sampling's
stationary law, AIS, and the PCD gradient against the enumerated one."""

import math

import numpy as np
import pytest
import torch

from ppdgm.errors import ConfigError, DataValueError
from ppdgm.evaluation import ais
from ppdgm.inference import ContrastiveDivergence
from ppdgm.models.energy import DBM, binary_states
from ppdgm.train import Trainer

D, H1, H2 = 4, 3, 2


def tiny(seed=0, std=1.0, w2=True):
    torch.manual_seed(seed)
    dbm = DBM(D, (H1, H2), mean_field_steps=50, init_std=std)
    with torch.no_grad():
        dbm.visible_bias.normal_(0, 0.5)
        dbm.hidden_bias1.normal_(0, 0.5)
        dbm.hidden_bias2.normal_(0, 0.5)
        if not w2:
            dbm.weight2.zero_()
    return dbm


def all_states():
    s = binary_states(D + H1 + H2)
    return s[:, :D], s[:, D : D + H1], s[:, D + H1 :]


def brute_log_z(dbm):
    v, h1, h2 = all_states()
    return torch.logsumexp(-dbm.energy(v, h1, h2), 0)


@torch.no_grad()
def brute_free_energy(dbm, x):
    v, h1, h2 = all_states()
    e = dbm.energy(v, h1, h2)
    out = []
    for row in x:
        match = (v == row).all(1)
        out.append(-torch.logsumexp(-e[match], 0))
    return torch.stack(out)


def test_exact_log_z_and_free_energy_match_brute_force(float64):
    dbm = tiny()
    brute = float(brute_log_z(dbm).detach())
    assert float(dbm.log_partition_exact()) == pytest.approx(brute, abs=1e-9)
    x = binary_states(D)
    np.testing.assert_allclose(dbm.free_energy_exact(x), brute_free_energy(dbm, x), atol=1e-9)
    with pytest.raises(ConfigError, match="2\\*\\*3 first-layer states"):
        dbm.log_partition_exact(max_units=2)


def test_mean_field_is_a_fixed_point_and_its_free_energy_a_bound(float64):
    dbm = tiny(std=1.5)
    x = binary_states(D)
    mu1, mu2 = dbm.mean_field(x)
    w1, w2, b, c1, c2 = dbm._params()
    torch.testing.assert_close(mu1, torch.sigmoid(c1 + x @ w1.t() + mu2 @ w2), atol=1e-6, rtol=0)
    torch.testing.assert_close(mu2, torch.sigmoid(c2 + mu1 @ w2.t()), atol=1e-6, rtol=0)
    exact = dbm.free_energy_exact(x)
    bound = dbm.variational_free_energy(x)
    assert torch.all(bound >= exact - 1e-9) and torch.any(bound > exact + 1e-3)
    # with no second-layer weights the posterior factorizes: mean field is exact
    flat = tiny(std=1.5, w2=False)
    torch.testing.assert_close(
        flat.variational_free_energy(x), flat.free_energy_exact(x), atol=1e-6, rtol=0
    )


def test_gibbs_chains_reach_the_exact_visible_distribution():
    dbm = tiny(seed=1)
    torch.manual_seed(0)
    states = dbm.gibbs(dbm.init_chains(20000), 60)
    v = dbm.split(states)[0]
    codes = (v * 2 ** torch.arange(D)).sum(1).long()
    counts = torch.bincount(codes, minlength=2**D).double()
    with torch.no_grad():
        exact = torch.exp(-dbm.free_energy_exact(binary_states(D)) - dbm.log_partition_exact())
    expected = exact * counts.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    from scipy import stats

    assert stats.chi2(2**D - 1).sf(chi2) > 0.01


def test_ais_for_a_dbm_meets_the_exact_log_z():
    dbm = tiny(seed=2)
    exact = float(dbm.log_partition_exact())
    torch.manual_seed(0)
    samples = dbm.gibbs(dbm.init_chains(200), 200)
    result = ais(dbm.annealing_path(), num_chains=200, num_betas=500, reverse_from=samples)
    assert abs(result.log_z - exact) < 0.05
    assert result.log_z - 0.05 < exact < result.log_z_reverse + 0.05


def test_pcd_gradient_approaches_the_gradient_of_the_mean_field_bound(float64):
    # the closed-form gradient estimates grad [sum_x F_q(x) + N log Z]: mean field's
    # statistics of the data (q at its fixed point, where F_q is stationary in q) minus the
    # model's, which long chains estimate; compared with autograd through brute force
    dbm = tiny(seed=3)
    x = binary_states(D)[torch.tensor([1, 6, 7, 12, 15])]
    torch.manual_seed(0)
    chains = dbm.gibbs(dbm.init_chains(50000), 100)
    _, grads = dbm.contrastive_gradients(x, chains, scale=1.0)
    mu1, mu2 = dbm.mean_field(x)
    from ppdgm.models.energy import _entropy

    target = (dbm.energy(x, mu1, mu2) - _entropy(mu1) - _entropy(mu2)).sum() + len(x) * (
        brute_log_z(dbm)
    )
    params = list(dbm._params())
    exact = torch.autograd.grad(target, params)
    for p, g in zip(params, exact, strict=True):
        torch.testing.assert_close(grads[p], g, atol=0.08, rtol=0.05)


def test_pcd_trains_a_dbm_through_the_one_trainer():
    dbm = tiny(seed=4, std=0.01)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.random((200, D)) < [0.9, 0.1, 0.8, 0.2], dtype=torch.float32)
    objective = ContrastiveDivergence(num_steps=1, persistent=True, num_chains=50)
    trainer = Trainer(dbm.model, None, objective, optimizer="sgd", lr=0.05, batch_size=20, seed=0)
    before = float(-dbm.free_energy_exact(x).mean() - dbm.log_partition_exact())
    trainer.run(x, 300)
    after = float(-dbm.free_energy_exact(x).mean() - dbm.log_partition_exact())
    assert trainer.loss_module.chains.shape == (50, D + H1 + H2)  # full states, not data rows
    assert after > before + 0.5
    entropy = -sum(p * math.log(p) + (1 - p) * math.log(1 - p) for p in (0.9, 0.1, 0.8, 0.2))
    assert after > -entropy - 0.3  # close to the independent-pixel optimum


def test_dbm_family_scores_exactly_for_a_small_first_layer_and_checks_its_options():
    import ppdgm

    rng = np.random.default_rng(0)
    x = (rng.random((120, 6)) < [0.9, 0.1, 0.8, 0.2, 0.5, 0.7]).astype(float)
    est = ppdgm.DBM(hidden=(4, 3), num_chains=20, sample_steps=20, seed=0, device="cpu")
    est.fit(x[:100], num_steps=200, X_val=x[100:])
    assert est.log_partition() == pytest.approx(float(est.model_.log_partition_exact()))
    assert est.log_z_method_ == "exact"
    with torch.no_grad():
        xt = torch.as_tensor(x[100:], dtype=torch.float32)
        exact = -est.model_.free_energy_exact(xt) - est.model_.log_partition_exact()
    np.testing.assert_allclose(est.score_samples(x[100:]), exact.numpy(), rtol=1e-5)
    assert est.transform(x[:5]).shape == (5, 7)
    assert est.sample(3).shape == (3, 6)
    assert np.isfinite(est.history_["eval"]).all()  # the exact NLL is tracked
    with pytest.raises(ConfigError, match="two layer widths"):
        ppdgm.DBM(hidden=(4,))
    with pytest.raises(DataValueError, match=r"values in \[0, 1\], found 2.0 .*MinMaxScaler\)$"):
        ppdgm.DBM(hidden=(2, 2)).fit(x * 2, num_steps=1)
