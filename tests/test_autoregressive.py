"""Autoregressive models: connectivity by gradients, the exact likelihood against the product of
its conditionals and against enumeration, sampling against the enumerated distribution."""

import itertools

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy.stats import chisquare

from ppdgm import FVSBN, MADE, NADE
from ppdgm.data import load_data
from ppdgm.errors import ConfigError
from ppdgm.inference import ELBO, ExactNLL
from ppdgm.inference.traces import sample_sites
from ppdgm.models import (
    AutoregressiveBernoulli,
    MADENet,
    MaskedLinear,
    NADENet,
    fvsbn_net,
    made_masks,
    random_orders,
)


def _model(dim, order, seed=0):
    torch.manual_seed(seed)
    net = fvsbn_net(order)
    with torch.no_grad():
        net.weight.normal_(0, 1.5)
        net.bias.normal_(0, 1.0)
    return AutoregressiveBernoulli(net, dim, order)


ORDERS = [torch.arange(5), torch.tensor([3, 0, 4, 1, 2])]


@pytest.mark.parametrize("order", ORDERS, ids=["natural", "permuted"])
def test_each_output_depends_only_on_the_inputs_before_it(order):
    model = _model(5, order)
    rank = {int(d): i for i, d in enumerate(order)}
    x = torch.rand(3, 5, requires_grad=True)
    for d in range(5):
        (grad,) = torch.autograd.grad(model.logits(x)[:, d].sum(), x)
        seen = {j for j in range(5) if grad[:, j].abs().sum() > 0}
        assert seen == {j for j in range(5) if rank[j] < rank[d]}, (d, seen)


@pytest.mark.parametrize("order", ORDERS, ids=["natural", "permuted"])
def test_exact_likelihood_is_the_product_of_its_conditionals_and_normalizes(order):
    model = _model(5, order)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    log_p = model.log_prob(xs)
    torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0), rtol=0, atol=1e-5)
    # one conditional at a time, from the model's own weights, with only the earlier
    # dimensions visible
    w, b = model.net.weight.detach(), model.net.bias.detach()
    by_hand = torch.zeros(len(xs))
    seen = []
    for d in order.tolist():
        logit = b[d] + xs[:, seen] @ w[d, seen] if seen else b[d].expand(len(xs))
        by_hand += dist.Bernoulli(logits=logit).log_prob(xs[:, d])
        seen.append(d)
    torch.testing.assert_close(log_p, by_hand, rtol=1e-5, atol=1e-5)
    # the program's observed site carries the same log density
    tr = pyro.poutine.trace(model.model).get_trace(xs)
    torch.testing.assert_close(tr.log_prob_sum(), log_p.sum(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(
        ExactNLL()(model.model, None)(xs), -log_p.sum(), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("order", ORDERS, ids=["natural", "permuted"])
def test_samples_follow_the_enumerated_distribution(order):
    model = _model(5, order, seed=1)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    probs = model.log_prob(xs).exp().detach().numpy().astype(np.float64)
    torch.manual_seed(0)
    s = model.sample(20000)
    index = (s.numpy() @ (2 ** np.arange(4, -1, -1))).astype(int)
    counts = np.bincount(index, minlength=32)
    expected = probs * len(s)
    keep = expected > 5
    _, p = chisquare(counts[keep], expected[keep] / expected[keep].sum() * counts[keep].sum())
    assert p > 1e-3, p


def test_exact_nll_refuses_a_model_with_latent_sites():
    def latent(x):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0).expand(x.shape).to_event(1), obs=x)

    with pytest.raises(ConfigError, match=r"ExactNLL needs a model without latent sites, but 'z'"):
        ExactNLL()(latent, None)(torch.zeros(3))


def test_masked_linear_checks_its_mask():
    with pytest.raises(ValueError, match=r"mask of shape \(3, 3\) for a layer of shape \(2, 3\)"):
        MaskedLinear(3, 2, torch.ones(3, 3))


def test_fvsbn_learns_the_binary_digits():
    d = load_data("digits-binary")
    untrained = FVSBN(seed=0, device="cpu").fit(d.x_train, num_steps=1)
    fitted = FVSBN(seed=0, device="cpu").fit(d.x_train, num_steps=300)
    # exact NLL in nats: 44.2 untrained, 26.7 after 300 steps (19.5 after 2,000)
    assert -fitted.score(d.x_test) < -untrained.score(d.x_test) - 10
    samples = fitted.sample(200, seed=0)
    assert set(np.unique(samples)) <= {0.0, 1.0}
    assert np.corrcoef(samples.mean(0), d.x_train.mean(0))[0, 1] > 0.8
    with pytest.raises(ConfigError, match=r"FVSBN models vectors \(N, D\)"):
        FVSBN(seed=0).fit(d.x_train.reshape(-1, 1, 8, 8), num_steps=1)


# -- NADE and MADE ------------------------------------------------------------------------------

PERMUTED = torch.tensor([3, 0, 4, 1, 2])


def _nade(order=PERMUTED, seed=0):
    torch.manual_seed(seed)
    net = NADENet(order, hidden=4)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 1.0)
    return AutoregressiveBernoulli(net, 5, order)


def _made(orders, hidden=(6, 6), seed=0):
    torch.manual_seed(seed)
    net = MADENet(orders, hidden, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 1.0)
    return AutoregressiveBernoulli(net, orders.shape[-1], orders)


def _seen_inputs(logits_fn, d, dim=5):
    x = torch.rand(4, dim, requires_grad=True)
    (grad,) = torch.autograd.grad(logits_fn(x)[:, d].sum(), x)
    return {j for j in range(dim) if grad[:, j].abs().sum() > 0}


def test_nade_and_made_outputs_depend_only_on_earlier_inputs_in_every_ordering():
    nade = _nade()
    rank = {int(d): i for i, d in enumerate(PERMUTED)}
    for d in range(5):  # NADE's shared hidden layer sees every earlier input
        assert _seen_inputs(nade.logits, d) == {j for j in range(5) if rank[j] < rank[d]}
    orders = random_orders(5, 4, torch.Generator().manual_seed(1))
    assert orders[0].tolist() == list(range(5)) and len({tuple(o.tolist()) for o in orders}) > 1
    made = _made(orders)
    for k in range(4):
        rank = {int(d): i for i, d in enumerate(orders[k])}
        for d in range(5):
            # with the direct connections, exactly the earlier inputs; through the hidden
            # layers alone, a subset of them
            earlier = {j for j in range(5) if rank[j] < rank[d]}
            assert _seen_inputs(lambda x, k=k: made.logits(x, k), d) == earlier, (k, d)
            with torch.no_grad():
                saved = made.net.direct.weight.clone()
                made.net.direct.weight.zero_()
            hidden_only = _seen_inputs(lambda x, k=k: made.logits(x, k), d)
            with torch.no_grad():
                made.net.direct.weight.copy_(saved)
            assert hidden_only <= earlier


def test_made_masks_follow_the_degrees():
    order = torch.tensor([2, 0, 1, 3])
    gen = torch.Generator().manual_seed(0)
    masks = made_masks(order, (7, 5), gen)
    assert [tuple(m.shape) for m in masks] == [(7, 4), (5, 7), (4, 5)]
    # the product of the masks connects output d to input j only if j comes before d
    path = masks[2] @ masks[1] @ masks[0]
    rank = torch.empty(4, dtype=torch.long)
    rank[order] = torch.arange(4)
    assert ((path > 0) <= (rank[None, :] < rank[:, None])).all()
    # the last position's output sees no hidden unit only if no unit has degree D-2, and the
    # first position's input connects to every hidden unit of the first layer
    assert masks[0][:, 2].all()
    assert not masks[2][2].any()  # the first in the ordering has no inputs before it
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        made_masks(torch.arange(1), (3,))


@pytest.mark.parametrize("hidden", [(200,), (200, 200)], ids=["one_layer", "two_layers"])
def test_made_masks_connect_every_earlier_input_and_leave_no_unit_idle(hidden):
    order = torch.tensor([2, 0, 4, 1, 3])
    masks = made_masks(order, hidden, torch.Generator().manual_seed(0))
    rank = torch.empty(5, dtype=torch.long)
    rank[order] = torch.arange(5)
    path = masks[0]
    for m in masks[1:]:
        path = m @ path
    # with many hidden units, output d reaches exactly the inputs before it through them
    assert torch.equal(path > 0, rank[None, :] < rank[:, None])
    # degrees stay in [0, D - 2]: every last-layer unit feeds some output, and the input last
    # in the ordering (which no output may see) feeds no unit
    assert masks[-1].any(0).all()
    assert not masks[0][:, int(order[-1])].any()
    assert masks[0][:, int(order[-2])].any()
    two = made_masks(torch.tensor([1, 0]), (3,))  # the smallest MADE: D = 2
    assert torch.equal(two[1], torch.tensor([[1.0] * 3, [0.0] * 3]))  # dim 0 comes second


def test_orderings_and_masks_come_from_the_given_generator_alone():
    def draw(global_seed):
        torch.manual_seed(global_seed)
        orders = random_orders(6, 3, torch.Generator().manual_seed(4))
        net = MADENet(orders, (9,), generator=torch.Generator().manual_seed(4))
        return orders, [getattr(net, f"mask{i}") for i in range(2)]

    (o1, m1), (o2, m2) = draw(0), draw(1)
    assert torch.equal(o1, o2)
    assert all(torch.equal(a, b) for a, b in zip(m1, m2, strict=True))
    assert not torch.equal(m1[0][1], m1[0][2])  # each ordering has its own connectivity


def test_made_dropout_acts_only_while_training():
    orders = random_orders(5, 2, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = MADENet(orders, (64,), dropout=0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.direct.weight.normal_()
    x = torch.rand(8, 5)
    net.eval()
    plain = MADENet(orders, (64,), generator=torch.Generator().manual_seed(0))
    plain.load_state_dict(net.state_dict())
    plain.eval()
    for k in range(2):
        torch.testing.assert_close(net(x, k), plain(x, k))
        torch.testing.assert_close(net(x, k), net(x, k))
    torch.testing.assert_close(net.forward_all(x), plain.forward_all(x))
    net.train()
    assert not torch.allclose(net(x, 0), plain(x, 0))
    assert not torch.allclose(net.forward_all(x), plain.forward_all(x))


def test_programs_draw_the_ordering_only_when_there_are_several():
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))[:4]
    two = _made(random_orders(5, 2, torch.Generator().manual_seed(0)))
    one = _made(torch.arange(5)[None])
    for model, sites in ((two, {"ordering", "x"}), (one, {"x"})):
        trace = pyro.poutine.trace(model.model).get_trace(xs)
        assert {s["name"] for s in sample_sites(trace)} == sites
        guide = pyro.poutine.trace(model.guide).get_trace(xs)
        assert {s["name"] for s in sample_sites(guide)} == sites - {"x"}
    # without an ordering given, the model follows the natural one
    natural = AutoregressiveBernoulli(fvsbn_net(torch.arange(4)), 4)
    assert natural.orders.tolist() == [[0, 1, 2, 3]] and natural.num_orderings == 1


def test_logits_of_every_ordering_for_a_net_without_a_batched_pass():
    orders = random_orders(5, 3, torch.Generator().manual_seed(2))
    made = _made(orders)

    class PerOrdering(torch.nn.Module):  # MADE's net seen through its per-ordering pass only
        def __init__(self, net):
            super().__init__()
            self.inner = net

        def forward(self, x, k=0):
            return self.inner(x, k)

    model = AutoregressiveBernoulli(PerOrdering(made.net), 5, orders)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    torch.testing.assert_close(model.logits_all(xs), made.logits_all(xs))
    torch.testing.assert_close(model.log_prob(xs), made.log_prob(xs))


def test_nade_likelihood_is_its_conditionals_computed_one_position_at_a_time():
    model = _nade()
    net = model.net
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    log_p = model.log_prob(xs)
    torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0), rtol=0, atol=1e-5)
    by_hand = torch.zeros(len(xs))
    seen = []
    for d in PERMUTED.tolist():
        a = net.c + xs[:, seen] @ net.W[:, seen].T if seen else net.c.expand(len(xs), -1)
        logit = net.b[d] + torch.sigmoid(a) @ net.V[d]
        by_hand += dist.Bernoulli(logits=logit).log_prob(xs[:, d])
        seen.append(d)
    torch.testing.assert_close(log_p, by_hand.detach(), rtol=1e-5, atol=1e-5)


def test_made_ensemble_is_the_mixture_of_its_orderings():
    orders = random_orders(5, 3, torch.Generator().manual_seed(2))
    model = _made(orders)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    each = model.log_prob_each(xs)
    assert each.shape == (3, 32)
    # each ordering is a normalized distribution: its conditionals one position at a time,
    # with the positions at and after d hidden from output d
    for k in range(3):
        torch.testing.assert_close(each[k].exp().sum(), torch.tensor(1.0), rtol=0, atol=1e-5)
        by_hand = torch.zeros(len(xs))
        for i, d in enumerate(orders[k].tolist()):
            visible = torch.zeros(5)
            visible[orders[k][:i]] = 1.0
            logit = model.logits(xs * visible, k)[:, d]
            by_hand += dist.Bernoulli(logits=logit).log_prob(xs[:, d])
        torch.testing.assert_close(each[k], by_hand, rtol=1e-5, atol=1e-5)
    mixture = torch.log(each.exp().mean(0))
    torch.testing.assert_close(model.log_prob(xs), mixture, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # the orderings differ


def test_made_ensemble_samples_follow_the_enumerated_mixture():
    orders = random_orders(5, 3, torch.Generator().manual_seed(2))
    model = _made(orders, seed=3)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    with torch.no_grad():
        probs = model.log_prob(xs).exp().numpy().astype(np.float64)
        first = model.log_prob_each(xs)[0].exp().numpy().astype(np.float64)
    assert np.abs(probs - first).max() > 0.02  # the mixture differs from one ordering
    torch.manual_seed(0)
    s = model.sample(20000)
    index = (s.numpy() @ (2 ** np.arange(4, -1, -1))).astype(int)
    counts = np.bincount(index, minlength=32)
    keep = probs * len(s) > 5
    expected = probs[keep] / probs[keep].sum() * counts[keep].sum()
    assert chisquare(counts[keep], expected)[1] > 1e-3
    # against the first ordering alone the same samples fail the test
    wrong = first[keep] / first[keep].sum() * counts[keep].sum()
    assert chisquare(counts[keep], wrong)[1] < 1e-6


def test_order_agnostic_elbo_is_one_orderings_exact_likelihood_at_a_time():
    orders = random_orders(5, 3, torch.Generator().manual_seed(2))
    model = _made(orders)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))[::3]
    with torch.no_grad():
        nll_k = {round(float(v), 3) for v in -model.log_prob_each(xs).sum(1)}
    loss = ELBO()(model.model, model.guide)
    seen = set()
    for seed in range(40):
        pyro.set_rng_seed(seed)
        seen.add(round(loss(xs).item(), 3))
    assert seen == nll_k  # a uniformly drawn ordering; the KL term of the ordering is zero
    # the fixed uniform draw is allowed, a draw from a distribution with parameters is not
    logits = torch.zeros(3, requires_grad=True)

    def learned_guide(x):
        pyro.sample("ordering", dist.Categorical(logits=logits))

    with pytest.raises(ConfigError, match="ELBO needs reparameterizable guide sites"):
        ELBO()(model.model, learned_guide)(xs)


def test_all_orderings_per_step_is_the_exact_mean_that_one_ordering_estimates():
    orders = random_orders(5, 3, torch.Generator().manual_seed(2))
    model = _made(orders)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))[::3]
    # the batched pass gives each ordering's logits, as the one-ordering pass does
    every = model.logits_all(xs)
    assert every.shape == (len(xs), 3, 5)
    for k in range(3):
        torch.testing.assert_close(every[:, k], model.logits(xs, k))
    each = model.log_prob_each(xs)
    torch.testing.assert_close(model.log_prob_each(xs, chunk_size=4), each)  # chunks agree
    # the program's loss is the mean over orderings of their NLLs, the same at every seed,
    # and the mean of what the one-ordering ELBO gives at each draw
    loss = ExactNLL()(model.model_all_orderings, None)
    values = set()
    for seed in range(3):
        pyro.set_rng_seed(seed)
        values.add(round(loss(xs).item(), 4))
    expected = -each.sum(1).mean()
    assert values == {round(expected.item(), 4)}
    assert expected > -model.log_prob(xs).sum()  # below the mixture (Jensen), not equal to it
    # the estimator picks the program: all orderings with ExactNLL, one with the ELBO
    d = load_data("digits-binary")
    for per_step, objective, guided in (("all", ExactNLL, False), ("one", ELBO, True)):
        est = MADE(hidden_dims=(8,), num_orderings=2, orderings_per_step=per_step, seed=0)
        est.set_params(device="cpu").fit(d.x_train[:64], num_steps=1)
        assert isinstance(est._objective(), objective)
        assert (est._programs()[1] is not None) == guided
    with pytest.raises(ConfigError, match="unknown orderings_per_step 'some'"):
        MADE(orderings_per_step="some")


@pytest.mark.parametrize("cls", [NADE, MADE], ids=["nade", "made"])
def test_nade_and_made_learn_the_binary_digits(cls):
    d = load_data("digits-binary")
    tiny = {"hidden": 32} if cls is NADE else {"hidden_dims": (64,), "num_orderings": 2}
    untrained = cls(**tiny, seed=0, device="cpu").fit(d.x_train, num_steps=1)
    fitted = cls(**tiny, seed=0, device="cpu").fit(d.x_train, num_steps=150, lr=3e-3)
    assert -fitted.score(d.x_test) < -untrained.score(d.x_test) - 10
    samples = fitted.sample(200, seed=0)
    assert set(np.unique(samples)) <= {0.0, 1.0}
    assert np.corrcoef(samples.mean(0), d.x_train.mean(0))[0, 1] > 0.8


def test_made_and_nade_refuse_bad_hyperparameters():
    with pytest.raises(ConfigError, match="hidden_dims must be positive integers"):
        MADE(hidden_dims=(0,))
    with pytest.raises(ConfigError, match="hidden_dims must be positive integers"):
        MADE(hidden_dims=())
    with pytest.raises(ConfigError, match="num_orderings must be a positive integer"):
        MADE(num_orderings=0)
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\)"):
        MADE(dropout=1.0)
    with pytest.raises(ConfigError, match="weight_decay must be >= 0"):
        NADE(weight_decay=-1.0)
    with pytest.raises(ConfigError, match="hidden must be a positive integer"):
        NADE(hidden=0)
    with pytest.raises(ConfigError, match="needs at least 2 dimensions"):
        MADE(seed=0, device="cpu").fit(np.zeros((4, 1)), num_steps=1)


def test_made_weight_decay_and_dropout_reach_the_trainer_and_the_net():
    d = load_data("digits-binary")
    est = MADE(hidden_dims=(8,), num_orderings=2, dropout=0.25, weight_decay=0.5, seed=0)
    est.set_params(device="cpu").fit(d.x_train[:64], num_steps=1)
    group = est.trainer_.optimizer.param_groups[0]
    assert type(est.trainer_.optimizer).__name__ == "AdamW" and group["weight_decay"] == 0.5
    assert est.model_.net.dropout == 0.25 and not est.model_.net.training
    # evaluation is deterministic (dropout off)
    x = d.x_test[:5]
    np.testing.assert_array_equal(est.score_samples(x), est.score_samples(x))
    plain = NADE(hidden=4, seed=0, device="cpu").fit(d.x_train[:64], num_steps=1)
    assert type(plain.trainer_.optimizer).__name__ == "Adam"
