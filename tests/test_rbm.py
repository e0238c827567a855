"""Restricted Boltzmann machines: free energy and log Z against brute force, AIS and its
bracket, Gibbs sampling against the enumerated distribution, contrastive-divergence gradients
against the exact gradient, the trainer's closed-form step, and scikit-learn compatibility."""

import copy
import itertools
import json

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import ppdgm
from ppdgm import cli
from ppdgm.errors import ConfigError, DataValueError
from ppdgm.evaluation import ais, log_partition
from ppdgm.inference import ContrastiveDivergence
from ppdgm.models.energy import RBM, binary_states
from ppdgm.train import SGD, Trainer


def _rbm(d, h, visible="bernoulli", scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = RBM(d, h, visible)
    with torch.no_grad():
        m.weight.copy_(torch.randn(h, d, generator=g) * scale)
        m.visible_bias.copy_(torch.randn(d, generator=g) * scale)
        m.hidden_bias.copy_(torch.randn(h, generator=g) * scale)
    return m


def _brute_log_z(m):
    v, h = binary_states(m.num_visible), binary_states(m.num_hidden)
    vv = v.repeat_interleave(len(h), 0)
    hh = h.repeat(len(v), 1)
    return torch.logsumexp(-m.energy(vv, hh), 0)


def test_binary_states_are_every_code_once():
    s = binary_states(4)
    assert s.shape == (16, 4)
    codes = (s * 2 ** torch.arange(4)).sum(1)
    assert torch.equal(codes, torch.arange(16).float())
    assert torch.equal(binary_states(4, 5, 9), s[5:9])


@pytest.mark.parametrize("d,h", [(5, 3), (3, 6)])
def test_free_energy_and_exact_log_z_match_brute_force(d, h):
    m = _rbm(d, h)
    with torch.no_grad():
        v = binary_states(d)
        hs = binary_states(h)
        joint = -m.energy(v.repeat_interleave(len(hs), 0), hs.repeat(len(v), 1))
        brute_f = -torch.logsumexp(joint.reshape(len(v), len(hs)), 1)
        torch.testing.assert_close(m.free_energy(v), brute_f, rtol=1e-5, atol=1e-5)
        # both sides: d > h enumerates the hidden layer, d < h the visible one
        torch.testing.assert_close(m.log_partition_exact(), _brute_log_z(m), rtol=1e-6, atol=1e-5)
        # normalized: the probabilities of every visible state sum to one
        p = m.log_prob(v, m.log_partition_exact()).exp().sum()
        torch.testing.assert_close(p, torch.tensor(1.0), rtol=1e-5, atol=1e-5)


def test_gaussian_rbm_log_z_matches_numerical_integration():
    m = _rbm(1, 3, visible="gaussian", scale=0.8, seed=2)
    with torch.no_grad():

        def density(v):
            return float(torch.exp(-m.free_energy(torch.tensor([[v]], dtype=torch.float32))))

        value, _ = integrate.quad(density, -30, 30, limit=200)
        assert float(m.log_partition_exact()) == pytest.approx(np.log(value), abs=1e-4)


def test_exact_log_z_refuses_too_many_states():
    with pytest.raises(ConfigError, match="annealed importance sampling"):
        RBM(30, 30).log_partition_exact()
    with pytest.raises(ConfigError, match="unknown method 'bogus'"):
        log_partition(RBM(3, 2), "bogus")


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("base", ["model", "other"])
def test_ais_converges_to_the_exact_log_z(visible, base):
    """From the default base (the model's visible biases, where the visible terms of the path
    do not change with beta) and from another one (where they do)."""
    m = _rbm(6, 4, visible, scale=0.7, seed=1)
    exact = float(m.log_partition_exact())
    base_bias = None if base == "model" else m.visible_bias.detach() + torch.linspace(-1, 1, 6)
    result = log_partition(m, "ais", num_chains=200, num_betas=500, seed=0, base_bias=base_bias)
    assert result.log_z == pytest.approx(exact, abs=0.03)
    assert float(result) == result.log_z and result.ess > 100


def test_forward_and_reverse_ais_bracket_log_z():
    """Each chain's estimate errs in the documented direction on average: forward below log Z,
    reverse (from exact samples) above it. Few distributions make the gap far larger than the
    Monte Carlo noise of the mean over 2,000 chains."""
    m = _rbm(8, 4, scale=1.5, seed=3)
    exact = float(m.log_partition_exact())
    with torch.no_grad():
        v = binary_states(8)
        p = m.log_prob(v, exact).exp()
    g = torch.Generator().manual_seed(0)
    start = v[torch.multinomial(p, 2000, replacement=True, generator=g)]
    r = ais(m.annealing_path(), num_chains=2000, num_betas=5, reverse_from=start, seed=0)
    forward = r.log_z_base + r.log_weights
    reverse = r.log_z_base - r.log_weights_reverse
    assert forward.mean() < exact - 0.2 and forward.std() / 2000**0.5 < 0.05
    assert reverse.mean() > exact + 0.2 and reverse.std() / 2000**0.5 < 0.05
    # pooled over the chains, both are close (the bias shrinks with the number of chains)
    assert abs(r.log_z - exact) < 0.1 and abs(r.log_z_reverse - exact) < 0.1


def test_ais_refuses_bad_settings():
    path = RBM(3, 2).annealing_path()
    with pytest.raises(ConfigError, match="num_betas"):
        ais(path, num_betas=1)
    with pytest.raises(ConfigError, match="base_bias must have shape"):
        RBM(3, 2).annealing_path(torch.zeros(4))


def test_ais_is_seeded_and_leaves_the_callers_random_state():
    path = _rbm(5, 3).annealing_path()
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    a = ais(path, num_chains=10, num_betas=20, seed=4)
    assert torch.equal(torch.rand(1), before)
    b = ais(path, num_chains=10, num_betas=20, seed=4)
    assert a.log_z == b.log_z


def test_gibbs_samples_follow_the_enumerated_distribution():
    m = _rbm(4, 3, scale=1.0, seed=5)
    torch.manual_seed(0)
    with torch.no_grad():
        samples = m.sample(20000, num_steps=30)
        states = binary_states(4)
        p = m.log_prob(states, m.log_partition_exact()).exp().double().numpy()
    codes = (samples * 2 ** torch.arange(4)).sum(1).long().numpy()
    counts = np.bincount(codes, minlength=16)
    _, pvalue = stats.chisquare(counts, p / p.sum() * counts.sum())
    assert pvalue > 1e-3
    # a wrong conditional (the visible biases dropped) is caught by the same test
    with torch.no_grad():
        wrong = RBM(4, 3)
        wrong.weight.copy_(m.weight)
        wrong.hidden_bias.copy_(m.hidden_bias)
        codes = (wrong.sample(20000, num_steps=30) * 2 ** torch.arange(4)).sum(1).long()
    counts = np.bincount(codes.numpy(), minlength=16)
    assert stats.chisquare(counts, p / p.sum() * counts.sum())[1] < 1e-6


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_closed_form_gradients_equal_autograd_of_the_cd_loss(visible):
    m = _rbm(6, 5, visible, scale=0.5, seed=6)
    g = torch.Generator().manual_seed(1)
    if visible == "bernoulli":
        x = torch.bernoulli(torch.full((7, 6), 0.4), generator=g)
        neg = torch.bernoulli(torch.full((4, 6), 0.6), generator=g)
    else:
        x, neg = torch.randn(7, 6, generator=g), torch.randn(4, 6, generator=g)
    loss, grads = m.contrastive_gradients(x, neg, scale=0.3)
    surrogate = 0.3 * (m.free_energy(x).sum() - 7 / 4 * m.free_energy(neg).sum())
    surrogate.backward()
    torch.testing.assert_close(loss, surrogate.detach(), rtol=1e-5, atol=1e-5)
    for p in m.parameters():
        torch.testing.assert_close(grads[p], p.grad, rtol=1e-5, atol=1e-5)
    # the same shapes again in double precision (the row weights follow the dtype)
    m.double()
    loss64, _ = m.contrastive_gradients(x.double(), neg.double(), scale=0.3)
    assert loss64.dtype == torch.float64
    torch.testing.assert_close(loss64.float(), loss, rtol=1e-5, atol=1e-5)


def _exact_nll_gradient(m, x):
    states = binary_states(m.num_visible)
    loss = m.free_energy(x).mean() + torch.logsumexp(-m.free_energy(states), 0)
    return torch.autograd.grad(loss, list(m.parameters()))


@pytest.mark.parametrize("persistent", [False, True])
def test_cd_with_long_chains_approaches_the_exact_gradient(persistent):
    m = _rbm(5, 3, scale=0.8, seed=7)
    data = torch.bernoulli(torch.full((4000, 5), 0.3), generator=torch.Generator().manual_seed(2))
    exact = _exact_nll_gradient(m, data)
    torch.manual_seed(0)

    def cd_gradient(k):
        module = ContrastiveDivergence(num_steps=k, persistent=persistent)(m.model, None)
        _, grads = module.loss_and_gradients(data, scale=1 / len(data))
        return [grads[p] for p in m.parameters()]

    def error(grads):
        return sum((a - b).pow(2).sum() for a, b in zip(grads, exact, strict=True)).sqrt()

    norm = sum(e.pow(2).sum() for e in exact).sqrt()
    long_chains = error(cd_gradient(100))
    assert long_chains < 0.05 * norm
    # one Gibbs sweep from the data is biased toward the data: visibly further off
    assert error(cd_gradient(1)) > 3 * long_chains


def test_persistent_chains_continue_and_travel_in_the_state_dict():
    m = _rbm(5, 3, seed=8)
    module = ContrastiveDivergence(num_steps=1, persistent=True, num_chains=6)(m.model, None)
    x = torch.bernoulli(torch.full((10, 5), 0.5))
    module.loss_and_gradients(x)
    assert module.chains.shape == (6, 5)
    first = module.chains.clone()
    other = ContrastiveDivergence(num_steps=1, persistent=True, num_chains=6)(m.model, None)
    other.load_state_dict(module.state_dict())
    assert torch.equal(other.chains, first)
    torch.manual_seed(3)
    module.loss_and_gradients(x)
    torch.manual_seed(3)
    expected = m.gibbs(first, 1)
    assert torch.equal(module.chains, expected)


def test_contrastive_divergence_refuses_programs_it_cannot_run():
    m = RBM(3, 2)
    with pytest.raises(ConfigError, match="guide=None"):
        ContrastiveDivergence()(m.model, m.model)
    with pytest.raises(ConfigError, match="num_steps"):
        ContrastiveDivergence(num_steps=0)

    def normal_model(x):
        import pyro
        import pyro.distributions as dist

        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1), obs=x)

    with pytest.raises(ConfigError, match="one observed UnnormalizedDensity"):
        ContrastiveDivergence()(normal_model, None)(torch.zeros(2, 3))


def test_the_rbm_program_needs_data():
    with pytest.raises(ConfigError, match="scores data; draw samples with sample"):
        RBM(3, 2).model()


def test_the_unnormalized_density_is_the_programs_site():
    import pyro

    m = _rbm(4, 2)
    x = torch.bernoulli(torch.full((3, 4), 0.5))
    trace = pyro.poutine.trace(m.model).get_trace(x)
    site = trace.nodes["x"]
    torch.testing.assert_close(site["fn"].log_prob(x), -m.free_energy(x))
    with pytest.raises(NotImplementedError, match="Markov chain"):
        site["fn"].sample()


@pytest.mark.parametrize(
    "momentum,weight_decay", [(0.7, 0.01), (0.7, 0.0), (0.0, 0.01), (0.0, 0.0)]
)
def test_ppdgm_sgd_is_torch_sgd(momentum, weight_decay):
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(3, 2)) for _ in range(2)] + [
        torch.nn.Parameter(torch.randn(4))
    ]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ours = SGD(a, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    ref = torch.optim.SGD(b, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for step in range(6):
        g = [torch.randn_like(p) for p in a]
        for p, q, gi in zip(a, b, g, strict=True):
            p.grad, q.grad = gi.clone(), gi.clone()
        if step < 2:  # the last parameter's first gradient comes after the others' (a mix of
            a[2].grad = b[2].grad = None  # momentum buffers and none)
        if step == 3:  # a parameter without a gradient is left alone, as torch does
            a[1].grad = b[1].grad = None
        if step == 4:
            for group in (*ours.param_groups, *ref.param_groups):
                group["lr"] = 0.05  # a schedule's new rate is used
        ours.step()
        ref.step()
        for p, q in zip(a, b, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    if momentum:
        for p, q in zip(a, b, strict=True):
            torch.testing.assert_close(
                ours.state[p]["momentum_buffer"], ref.state[q]["momentum_buffer"]
            )
    fresh = SGD([torch.nn.Parameter(torch.zeros_like(p)) for p in a], lr=0.1, momentum=0.5)
    fresh.load_state_dict(ours.state_dict())  # the same state layout


def test_ppdgm_sgd_continues_from_a_loaded_state():
    # the fused steps keep their momentum buffers between steps: a loaded state replaces them
    torch.manual_seed(2)
    a = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ours, ref = SGD(a, lr=0.1, momentum=0.9), torch.optim.SGD(b, lr=0.1, momentum=0.9)
    for step in range(5):
        g = [torch.randn_like(p) for p in a]
        for p, q, gi in zip(a, b, g, strict=True):
            p.grad, q.grad = gi.clone(), gi.clone()
        if step == 2:  # both continue from other momentum buffers
            for q in b:
                ref.state[q]["momentum_buffer"] = torch.randn_like(q)
            ours.load_state_dict(copy.deepcopy(ref.state_dict()))
        ours.step()
        ref.step()
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q)
        torch.testing.assert_close(
            ours.state[p]["momentum_buffer"], ref.state[q]["momentum_buffer"]
        )


def test_ppdgm_sgd_takes_mixed_dtypes_and_torch_state():
    # parameters torch's fused kernel cannot take together (two dtypes) step the unfused way;
    # a state dict from torch's SGD continues identically
    torch.manual_seed(1)
    a = [torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2).double())]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ref = torch.optim.SGD(b, lr=0.1, momentum=0.9)
    ours = SGD(a, lr=0.1, momentum=0.9)
    for step in range(3):
        g = [torch.randn_like(p) for p in a]
        for p, q, gi in zip(a, b, g, strict=True):
            p.grad, q.grad = gi.clone(), gi.clone()
        if step == 1:
            ours.load_state_dict(copy.deepcopy(ref.state_dict()))  # (no shared buffers)
            with torch.no_grad():
                for p, q in zip(a, b, strict=True):
                    p.copy_(q)
        ours.step()
        ref.step()
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q)


def test_small_machines_train_on_one_thread_and_large_ones_on_torchs_setting():
    x = np.random.default_rng(0).integers(0, 2, (40, 64)).astype(np.float32)
    small = ppdgm.RBM(num_hidden=16, seed=0, device="cpu").fit(x, num_steps=2, batch_size=20)
    assert small.trainer_.num_threads == 1
    big = ppdgm.RBM(num_hidden=1100, seed=0, device="cpu").fit(x, num_steps=1, batch_size=20)
    assert big.trainer_.num_threads is None  # 64 x 1100 weights: over 2**16 parameters


def test_no_grad_decorator_switches_gradients_off_and_back():
    from ppdgm._utils import no_grad

    seen = []

    @no_grad
    def f(fail=False):
        seen.append(torch.is_grad_enabled())
        if fail:
            raise ValueError("boom")
        return 1

    assert f() == 1 and torch.is_grad_enabled()
    with pytest.raises(ValueError, match="boom"):
        f(fail=True)
    assert torch.is_grad_enabled()  # restored after an exception
    with torch.no_grad():
        f()
        assert not torch.is_grad_enabled()
    assert seen == [False, False, False] and f.__name__ == "f"


def test_linear_schedule_and_momentum_options():
    m = RBM(3, 2)
    t = Trainer(
        m.model,
        None,
        ContrastiveDivergence(),
        optimizer="sgd",
        lr=0.1,
        lr_schedule="linear",
        momentum=0.5,
        batch_size=2,
        device="cpu",
    )
    x = torch.bernoulli(torch.full((8, 3), 0.5))
    t.run(x, 4, progress=False)
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 3 / 4))
    assert t.optimizer.param_groups[0]["momentum"] == 0.5
    with pytest.raises(ConfigError, match="momentum applies to sgd and rmsprop"):
        Trainer(m.model, None, ContrastiveDivergence(), optimizer="adam", momentum=0.5)
    with pytest.raises(ConfigError, match=r"momentum must be in \[0, 1\)"):
        Trainer(m.model, None, ContrastiveDivergence(), optimizer="sgd", momentum=1.0)


# -- the estimators --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits01():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data[:400] / 16.0, d.target[:400]


def test_rbm_family_learns_the_digits_better_than_independent_pixels():
    from ppdgm.data import load_data

    data = load_data("digits-binary")
    x, xt = data.x_train, data.x_test
    est = ppdgm.RBM(num_hidden=8, seed=0, device="cpu").fit(x, num_steps=600)
    p = (x.sum(0) + 1) / (len(x) + 2)
    independent = float(np.mean(xt @ np.log(p) + (1 - xt) @ np.log1p(-p)))
    ll = est.score(xt)
    assert est.log_z_method_ == "exact" and ll > independent + 1.5
    # the exact log-likelihood and the AIS one agree on this model
    assert est.log_partition("ais") == pytest.approx(est.log_partition("exact"), abs=0.05)
    assert est.transform(xt[:3]).shape == (3, 8)


def test_rbm_family_refuses_values_outside_the_unit_interval():
    with pytest.raises(DataValueError, match=r"values in \[0, 1\], found 2.0 at row 1"):
        ppdgm.RBM(num_hidden=2).fit(np.array([[0.0, 1.0], [2.0, 0.0]]), num_steps=1)
    # Gaussian units take any real data
    ppdgm.RBM(num_hidden=2, visible="gaussian", device="cpu").fit(
        np.random.default_rng(0).normal(size=(20, 3)), num_steps=2
    )


def test_bernoulli_rbm_in_a_pipeline_with_a_classifier(digits01):
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    x, y = digits01
    rbm = ppdgm.BernoulliRBM(
        n_components=16, learning_rate=0.05, batch_size=20, n_iter=20, random_state=0, device="cpu"
    )
    pipe = Pipeline([("rbm", rbm), ("clf", LogisticRegression(max_iter=500))])
    pipe.fit(x, y)
    assert pipe.score(x, y) > 0.7
    assert pipe.named_steps["rbm"].transform(x[:5]).shape == (5, 16)
    params = rbm.get_params()
    copy = clone(rbm)
    assert copy.get_params() == params and not hasattr(copy, "rbm_")
    assert copy.set_params(n_components=8).n_components == 8
    assert "learning_rate" in params and "persistent" in params and "cd_k" in params
    assert list(rbm.get_feature_names_out())[:2] == ["bernoullirbm0", "bernoullirbm1"]


def test_bernoulli_rbm_keeps_scikit_learns_meanings(digits01):
    from sklearn.neural_network import BernoulliRBM as SkRBM

    x, _ = digits01
    ours = ppdgm.BernoulliRBM(n_components=10, n_iter=2, random_state=3, device="cpu").fit(x)
    assert ours.components_.shape == (10, 64)
    assert ours.intercept_hidden_.shape == (10,) and ours.intercept_visible_.shape == (64,)
    assert ours.n_features_in_ == 64
    # score_samples is scikit-learn's pseudo-log-likelihood: the same numbers from its own
    # code with our parameters and the same random_state
    sk = SkRBM(n_components=10, random_state=3)
    sk.components_ = ours.components_.astype(np.float64)
    sk.intercept_hidden_ = ours.intercept_hidden_.astype(np.float64)
    sk.intercept_visible_ = ours.intercept_visible_.astype(np.float64)
    sk.n_features_in_ = 64
    xb = (x[:50] > 0.5).astype(np.float64)
    np.testing.assert_allclose(ours.score_samples(xb), sk.score_samples(xb), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.transform(x[:5]), sk.transform(x[:5]), rtol=1e-5, atol=1e-6)
    v = ours.gibbs(xb[:4])
    assert v.shape == (4, 64) and set(np.unique(v)) <= {0.0, 1.0}
    assert ours.sample(3, seed=1).shape == (3, 64)


def test_bernoulli_rbm_partial_fit_and_log_likelihood(digits01):
    x, _ = digits01
    xb = (x > 0.5).astype(float)
    rbm = ppdgm.BernoulliRBM(n_components=6, learning_rate=0.05, random_state=0, device="cpu")
    rbm.partial_fit(xb[:20])
    before = rbm.components_.copy()
    rbm.partial_fit(xb[20:40])
    assert not np.allclose(before, rbm.components_)
    assert rbm.rbm_.last_step_ == 2
    ll = rbm.log_likelihood(xb[:30], method="exact")
    z = rbm.log_partition("exact")
    assert ll.shape == (30,) and np.all(ll < 0)
    assert rbm.log_partition("ais") == pytest.approx(z, abs=0.05)
    with pytest.raises(ConfigError, match="unknown method"):
        rbm.log_partition("bogus")
    with pytest.raises(DataValueError, match=r"values in \[0, 1\]"):
        rbm.partial_fit(xb[:5] * 3)


def test_bernoulli_rbm_refuses_bad_settings_by_name(digits01):
    x, _ = digits01
    with pytest.raises(ConfigError, match="learning_rate must be positive"):
        ppdgm.BernoulliRBM(learning_rate=0).fit(x)
    with pytest.raises(ConfigError, match="n_iter must be a positive integer"):
        ppdgm.BernoulliRBM(n_iter=0).fit(x)
    with pytest.raises(ConfigError, match="random_state"):
        ppdgm.BernoulliRBM(random_state="x").fit(x)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ppdgm.BernoulliRBM().transform(x)


def test_cli_trains_an_rbm_and_writes_its_figures(tmp_path, capsys):
    out = tmp_path / "rbm"
    argv = [
        "train",
        "rbm",
        "--num-hidden",
        "6",
        "--steps",
        "30",
        "--out",
        str(out),
        "--no-progress",
        "--sample-steps",
        "20",
        "--weight-decay",
        "0",
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    for name in ("samples.png", "filters.png", "curves.png", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["log_z_method"] == "exact" and np.isfinite(metrics["test_nll"])
    assert "test_pseudo_nll" in metrics
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == 0.05 and config["batch_size"] == 20 and config["lr_schedule"] == "linear"


def test_itertools_is_used_for_the_brute_force_reference():
    # the brute-force reference enumerates (v, h) pairs independently of binary_states
    m = _rbm(3, 2, seed=9)
    total = torch.logsumexp(
        torch.stack(
            [
                -m.energy(
                    torch.tensor([v], dtype=torch.float32), torch.tensor([h], dtype=torch.float32)
                )[0]
                for v in itertools.product([0.0, 1.0], repeat=3)
                for h in itertools.product([0.0, 1.0], repeat=2)
            ]
        ),
        0,
    )
    torch.testing.assert_close(m.log_partition_exact(), total.detach(), rtol=1e-6, atol=1e-5)
