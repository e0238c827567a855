"""Contract tests for the VAE family's programs, objectives and evaluation."""

import math

import numpy as np
import pyro
import pytest
import torch
from scipy.stats import multivariate_normal
from torch import nn

from ppdgm.evaluation import bits_per_dim, elbo, iwae_bound
from ppdgm.guides import AmortizedNormalGuide, ConditionalNormalGuide, M2Guide
from ppdgm.inference import ELBO, IWAE, SemiSupervisedELBO
from ppdgm.models import ConditionalVAEModel, M2Model, VAEModel, make_likelihood
from ppdgm.nn import MLP, ConvDecoder, ConvEncoder

D, L, SIGMA = 4, 2, 0.5


def _linear_gaussian(exact_guide: bool):
    """z ~ N(0, I_2), x ~ N(W z + b, 0.5^2 I_4) with orthogonal columns of W, so that the exact
    posterior is diagonal; the guide is linear, set to the exact posterior or perturbed."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, L))
    w = q * torch.tensor([1.5, 0.7])
    b = torch.tensor([0.3, -0.2, 0.1, 0.5])
    dec = nn.Linear(L, D)
    dec.weight.data, dec.bias.data = w.clone(), b.clone()
    model = VAEModel(dec, L, make_likelihood("gaussian", (D,), gaussian_scale=SIGMA), (D,))
    # exact posterior: cov = (I + W'W / s^2)^-1 (diagonal), mean = cov W' (x - b) / s^2
    prec = 1 + (w**2).sum(0) / SIGMA**2
    cov = 1 / prec
    a = (cov[:, None] * w.T) / SIGMA**2
    enc = nn.Linear(D, 2 * L)
    enc.weight.data = torch.cat([a, torch.zeros(L, D)])
    enc.bias.data = torch.cat([-a @ b, 0.5 * torch.log(cov)])
    if not exact_guide:
        enc.weight.data[:L] *= 0.6
        enc.bias.data[L:] += 0.8
    guide = AmortizedNormalGuide(enc, L)
    marginal = multivariate_normal(b.numpy(), (w @ w.T).numpy() + SIGMA**2 * np.eye(D))
    x = torch.tensor(marginal.rvs(size=64, random_state=1), dtype=torch.float32)
    return model, guide, x, marginal.logpdf(x.numpy())


def test_linear_gaussian_exact_guide_gives_the_exact_marginal():
    model, guide, x, exact = _linear_gaussian(exact_guide=True)
    # with the exact posterior every importance weight equals p(x): both bounds are tight
    np.testing.assert_allclose(
        elbo(model.model, guide.guide, x, num_particles=3).numpy(), exact, atol=2e-4
    )
    np.testing.assert_allclose(
        iwae_bound(model.model, guide.guide, x, num_particles=50, max_elements=64).numpy(),
        exact,
        atol=2e-4,
    )
    # the analytic-KL objective is a sum over the batch, exact in expectation (its reconstruction
    # term is a one-draw estimate)
    torch.manual_seed(0)
    losses = [ELBO()(model.model, guide.guide)(x).item() for _ in range(300)]
    assert abs(-np.mean(losses) - exact.sum()) < 4 * np.std(losses) / np.sqrt(300) + 1e-3


def test_linear_gaussian_elbo_below_and_iwae_rises_toward_the_marginal():
    model, guide, x, exact = _linear_gaussian(exact_guide=False)
    torch.manual_seed(0)
    e = elbo(model.model, guide.guide, x, num_particles=2000).numpy()
    gaps, bounds = [], {}
    for k in (1, 10, 100, 1000):
        torch.manual_seed(k)
        bounds[k] = iwae_bound(
            model.model, guide.guide, x, num_particles=k, max_elements=4096
        ).numpy()
        gaps.append(float(exact.mean() - bounds[k].mean()))
    assert (e < exact).all() and exact.mean() - e.mean() > 0.05
    assert all(g > -0.01 for g in gaps)  # a lower bound, up to Monte Carlo error
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3]  # rising toward log p(x) as K grows
    assert gaps[3] < 0.25 * gaps[0]
    se = np.std(bounds[1] - e) / np.sqrt(len(e))
    assert abs(gaps[0] - (exact.mean() - e.mean())) < 4 * se  # K=1 is a one-draw ELBO


def test_analytic_kl_elbo_matches_monte_carlo_in_expectation():
    model, guide, x, _ = _linear_gaussian(exact_guide=False)
    # common random numbers: each pair sees the same z, so the reconstruction terms cancel and
    # the difference is the KL term's Monte Carlo error alone, mean zero
    diffs = []
    for i in range(400):
        torch.manual_seed(i)
        analytic = ELBO(analytic_kl=True)(model.model, guide.guide)(x).item()
        torch.manual_seed(i)
        mc = ELBO(analytic_kl=False)(model.model, guide.guide)(x).item()
        diffs.append(analytic - mc)
    loc, scale = guide.posterior(x)
    q, p = torch.distributions.Normal(loc, scale), torch.distributions.Normal(0.0, 1.0)
    kl = torch.distributions.kl_divergence(q, p).sum().item()
    reverse = torch.distributions.kl_divergence(p, q).sum().item()
    se = np.std(diffs) / np.sqrt(len(diffs))
    assert abs(np.mean(diffs)) < 4 * se
    assert abs(kl - reverse) > 10 * se  # the test can tell KL(q||p) from KL(p||q)


def test_iwae_objective_is_the_importance_weighted_bound():
    from ppdgm.inference import log_weights

    model, guide, x, _ = _linear_gaussian(exact_guide=False)
    k = 7
    torch.manual_seed(5)
    loss = IWAE(num_particles=k)(model.model, guide.guide)(x)
    torch.manual_seed(5)
    lw = log_weights(model.model, guide.guide, x, num_particles=k)
    expected = -(torch.logsumexp(lw, 0) - np.log(k)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # strictly tighter than the ELBO of the same draws (Jensen), by a visible margin here
    assert loss.item() < -lw.mean(0).sum().item() - 0.1


def test_beta_scales_the_kl_term():
    model, guide, x, _ = _linear_gaussian(exact_guide=False)
    base = ELBO()(model.model, guide.guide)(x).item()
    loc, scale = guide.posterior(x)
    kl = (
        torch.distributions.kl_divergence(
            torch.distributions.Normal(loc, scale), torch.distributions.Normal(0.0, 1.0)
        )
        .sum()
        .item()
    )
    model.beta = guide.beta = 3.0
    torch.manual_seed(0)
    scaled = ELBO()(model.model, guide.guide)(x).item()
    # the reconstruction term is random; compare with the same draw of z
    model.beta = guide.beta = 1.0
    torch.manual_seed(0)
    same_draw = ELBO()(model.model, guide.guide)(x).item()
    assert scaled - same_draw == pytest.approx(2 * kl, rel=1e-4)
    assert np.isfinite(base)


def _vector_pair():
    lik = make_likelihood("bernoulli", (12,))
    model = VAEModel(MLP(3, [16], 12), 3, lik, (12,))
    guide = AmortizedNormalGuide(MLP(12, [16], 6), 3)
    return model, guide, torch.bernoulli(torch.full((9, 12), 0.4))


def _image_pair(likelihood):
    shape = (2, 6, 5)
    lik = make_likelihood(likelihood, shape, num_bins=17)
    model = VAEModel(ConvDecoder(3, shape, lik.num_params, hidden_dims=(16,)), 3, lik, shape)
    guide = AmortizedNormalGuide(ConvEncoder(shape, 6, hidden_dims=(16,)), 3, input_scale=1 / 16)
    x = torch.randint(0, 17, (5, *shape)).float()
    return model, guide, x


def _assert_all_params_get_gradients(modules, loss):
    loss.backward()
    for m in modules:
        for name, p in m.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "objective", [ELBO(), ELBO(analytic_kl=False), IWAE(4), pyro.infer.Trace_ELBO()]
)
def test_every_parameter_gets_a_gradient_vector(objective):
    model, guide, x = _vector_pair()
    _assert_all_params_get_gradients([model, guide], objective(model.model, guide.guide)(x))
    assert len(pyro.get_param_store()) == 0  # no global state


@pytest.mark.parametrize("likelihood", ["discretized_logistic", "gaussian", "bernoulli"])
def test_image_programs_shapes_and_gradients(likelihood):
    model, guide, x = _image_pair(likelihood)
    if likelihood == "bernoulli":
        x = (x > 8).float()
    _assert_all_params_get_gradients([model, guide], ELBO()(model.model, guide.guide)(x))
    with torch.no_grad():
        sample = model.model(batch_size=7)
        assert sample.shape == (7, 2, 6, 5)
        assert iwae_bound(model.model, guide.guide, x, num_particles=9).shape == (5,)


def test_conditional_vae_program():
    lik = make_likelihood("bernoulli", (12,))
    model = ConditionalVAEModel(MLP(3 + 4, [16], 12), 3, lik, (12,), num_classes=4)
    guide = ConditionalNormalGuide(MLP(12 + 4, [16], 6), 3, num_classes=4)
    x, y = torch.bernoulli(torch.full((9, 12), 0.4)), torch.randint(0, 4, (9,))
    _assert_all_params_get_gradients([model, guide], ELBO()(model.model, guide.guide)(x, y))
    assert model.model(y=torch.tensor([0, 1, 2])).shape == (3, 12)
    assert iwae_bound(model.model, guide.guide, x, y, num_particles=7).shape == (9,)


def _m2():
    lik = make_likelihood("bernoulli", (12,))
    model = M2Model(MLP(3 + 4, [16], 12), 3, lik, (12,), num_classes=4)
    guide = M2Guide(MLP(12, [16], 4), MLP(12 + 4, [16], 6), 3, num_classes=4)
    return model, guide


def test_m2_semi_supervised_objective_enumerates_and_trains():
    model, guide = _m2()
    x = torch.bernoulli(torch.full((10, 12), 0.4))
    y = torch.tensor([0, 1, -1, 2, -1, 3, -1, 0, -1, 1])
    loss = SemiSupervisedELBO(aux_weight=0.5)(model.model, guide.guide)(x, y)
    _assert_all_params_get_gradients([model, guide], loss)


def test_m2_enumeration_equals_the_explicit_sum_over_labels():
    """For unlabelled x, the enumerated ELBO is sum_y q(y|x) ELBO(x, y) + H(q(y|x)); both sides
    are Monte Carlo averages (z is drawn), compared within their standard errors."""
    torch.manual_seed(0)
    model, guide = _m2()
    x = torch.bernoulli(torch.full((6, 12), 0.4))
    enum = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)
    lhs = [-enum.differentiable_loss(model.model, guide.guide, x).item() for _ in range(300)]
    probs = torch.softmax(guide.class_logits(x), -1).detach()
    rhs, var = -(probs * probs.log()).sum().item(), 0.0
    for c in range(4):
        per = np.array(
            [
                [
                    -ELBO(analytic_kl=False)
                    .loss(model.model, guide.guide, x[i : i + 1], torch.tensor([c]))
                    .item()
                    for i in range(6)
                ]
                for _ in range(100)
            ]
        )
        rhs += (probs[:, c].numpy() * per.mean(0)).sum()
        var += ((probs[:, c].numpy() ** 2) * per.var(0) / 100).sum()
    se = np.sqrt(np.var(lhs) / 300 + var)
    assert abs(np.mean(lhs) - rhs) < 4 * se + 1e-3


def test_bits_per_dim():
    assert bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)


# -- the objectives' contract, each part pinned (found by mutation testing) ------------------------
def _shift_pair():
    """x_i ~ N(z + shift, 1), z ~ N(0, 1); guide q(z) = N(0.3, 1); ``shift`` a keyword."""
    import pyro.distributions as dist

    def model(x, shift=0.0):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(z + shift, 1.0), obs=x)

    def guide(x, shift=0.0):
        pyro.sample("z", dist.Normal(torch.tensor(0.3), torch.tensor(1.0)))

    return model, guide, torch.linspace(-1.0, 1.0, 6)


@pytest.mark.parametrize("objective", [ELBO(), ELBO(analytic_kl=False), IWAE(num_particles=3)])
def test_objectives_pass_keyword_arguments_to_the_programs(objective):
    model, guide, x = _shift_pair()
    losses = {}
    for shift in (0.0, 4.0):
        torch.manual_seed(0)
        losses[shift] = objective(model, guide)(x, shift=shift).item()
        torch.manual_seed(0)
        assert objective.differentiable_loss(model, guide, x, shift=shift).item() == losses[shift]
    # the same draws of z: the data term moves by sum_i [(x_i - z - 4)^2 - (x_i - z)^2] / 2,
    # 48 + 24 z here; dropped keywords would leave the loss unchanged
    assert losses[4.0] > losses[0.0] + 10


def test_elbo_averages_its_particles():
    model, guide, x = _shift_pair()
    torch.manual_seed(0)
    three = ELBO(num_particles=3, analytic_kl=False)(model, guide)(x).item()
    torch.manual_seed(0)
    ones = [ELBO(analytic_kl=False)(model, guide)(x).item() for _ in range(3)]
    assert three == pytest.approx(np.mean(ones), rel=1e-6)


def test_iwae_with_one_particle_is_the_one_draw_elbo():
    from ppdgm.inference import log_weights

    model, guide, x = _shift_pair()
    torch.manual_seed(0)
    one = IWAE(num_particles=1)(model, guide)(x).item()
    torch.manual_seed(0)
    assert one == pytest.approx(-log_weights(model, guide, x).sum().item(), rel=1e-6)


@pytest.mark.parametrize("cls", [ELBO, IWAE])
@pytest.mark.parametrize("bad", [0, -2])
def test_bad_particle_counts_are_refused_by_name(cls, bad):
    from ppdgm.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"num_particles must be >= 1, got {bad}"):
        cls(num_particles=bad)


def test_a_guide_that_cannot_be_reparameterized_is_refused_with_advice():
    import pyro.distributions as dist

    from ppdgm.errors import ConfigError

    def model(x):
        z = pyro.sample("coin", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(z, 1.0).expand([x.shape[0]]).to_event(1), obs=x)

    p = torch.tensor(0.3, requires_grad=True)  # a trainable guide parameter

    def guide(x):
        pyro.sample("coin", dist.Bernoulli(p))

    x = torch.zeros(3)
    with pytest.raises(
        ConfigError,
        match=r"^ELBO needs reparameterizable guide sites, but site 'coin' \(Bernoulli\) is not; "
        r"use pyro\.infer\.TraceEnum_ELBO to enumerate discrete sites or pyro\.infer\.Trace_ELBO "
        r"for score-function gradients$",
    ):
        ELBO()(model, guide)(x)
    # a draw from a fixed distribution needs no score-function term: allowed, and the loss is
    # the ELBO at the drawn value (the KL term in closed form)
    pyro.set_rng_seed(0)
    loss = ELBO()(model, lambda x: pyro.sample("coin", dist.Bernoulli(0.3)))(x)
    pyro.set_rng_seed(0)
    z = float(dist.Bernoulli(0.3).sample())
    kl = 0.3 * np.log(0.3 / 0.5) + 0.7 * np.log(0.7 / 0.5)
    expected = -(dist.Normal(z, 1.0).log_prob(x).sum() - kl)
    torch.testing.assert_close(loss, expected.float())
    # observed sites are no concern of the check: a Bernoulli likelihood is fine
    model2, guide2, x2 = _shift_pair()
    assert np.isfinite(ELBO()(model2, guide2)(x2).item())


def test_kl_without_a_closed_form_falls_back_to_the_sampled_terms():
    import pyro.distributions as dist

    def model(x):
        z = pyro.sample("z", dist.StudentT(3.0, 0.0, 1.0))  # KL(Normal || StudentT): none
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(torch.tensor(0.2), torch.tensor(0.7)))

    x = torch.tensor(0.5)
    torch.manual_seed(0)
    analytic = ELBO(analytic_kl=True)(model, guide)(x).item()
    torch.manual_seed(0)
    sampled = ELBO(analytic_kl=False)(model, guide)(x).item()
    assert analytic == sampled


def test_masked_latents_drop_out_of_the_closed_form_kl():
    import pyro.distributions as dist
    from pyro import poutine

    mask = torch.tensor([True, False, True, False])
    loc, scale = torch.tensor([0.5, -1.0, 2.0, 0.3]), torch.tensor([0.5, 0.8, 1.2, 0.4])

    def model(x, masked):
        with pyro.plate("data", 4), poutine.mask(mask=mask if masked else True):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x, masked):
        with pyro.plate("data", 4):
            pyro.sample("z", dist.Normal(loc, scale))

    x = torch.zeros(4)
    kl = torch.distributions.kl_divergence(dist.Normal(loc, scale), dist.Normal(0.0, 1.0))
    out = {}
    for masked in (False, True):
        torch.manual_seed(0)
        out[masked] = ELBO()(model, guide)(x, masked).item()
    # masking a site removes its KL term and its data term (the same z on both sides)
    torch.manual_seed(0)
    z = dist.Normal(loc, scale).sample()
    data_term = dist.Normal(z, 1.0).log_prob(x)
    expected = (kl[~mask] - data_term[~mask]).sum().item()
    assert out[False] - out[True] == pytest.approx(expected, rel=1e-5)


def test_semi_supervised_objective_is_the_sum_of_its_parts():
    """Labelled ELBO, minus aux_weight times the classifier's log-likelihood of the known
    labels (0 is a label), plus the enumerated ELBO of the unlabelled rows."""
    model, guide = _m2()
    x = torch.bernoulli(torch.full((8, 12), 0.4))
    y = torch.tensor([0, -1, 2, 0, -1, 3, -1, 1])
    known = y >= 0
    torch.manual_seed(0)
    total = SemiSupervisedELBO(aux_weight=0.3)(model.model, guide.guide)(x, y).item()
    torch.manual_seed(0)
    labelled = ELBO().differentiable_loss(model.model, guide.guide, x[known], y[known])
    enum = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)
    unlabelled = enum.differentiable_loss(model.model, guide.guide, x[~known])
    classifier = guide.classifier_log_prob(x[known], y[known]).sum()
    expected = (labelled - 0.3 * classifier + unlabelled).item()
    assert total == pytest.approx(expected, rel=1e-5)
    # the given objectives are used, and a module given as guide works like its method
    torch.manual_seed(0)
    custom = SemiSupervisedELBO(labelled=ELBO(analytic_kl=False), unlabelled=enum, aux_weight=0.3)
    torch.manual_seed(0)
    a = custom(model.model, guide.guide)(x, y).item()
    torch.manual_seed(0)
    lab2 = ELBO(analytic_kl=False).differentiable_loss(model.model, guide.guide, x[known], y[known])
    unl2 = enum.differentiable_loss(model.model, guide.guide, x[~known])
    assert a == pytest.approx((lab2 - 0.3 * classifier + unl2).item(), rel=1e-5)
    # all labelled, or none: only the matching part
    torch.manual_seed(0)
    only_l = SemiSupervisedELBO(aux_weight=0.0)(model.model, guide.guide)(x[known], y[known])
    torch.manual_seed(0)
    assert only_l.item() == pytest.approx(
        ELBO().differentiable_loss(model.model, guide.guide, x[known], y[known]).item(), rel=1e-6
    )


def test_objective_defaults_are_the_documented_ones():
    assert IWAE().num_particles == 5 and IWAE().max_plate_nesting == 1
    assert SemiSupervisedELBO().aux_weight == 0.1 and ELBO().num_particles == 1


def test_iwae_with_nested_plates_uses_its_plate_nesting():
    """Two nested plates (dims -1 and -2): the particles go left of both only if the
    objective passes its max_plate_nesting on."""
    import pyro.distributions as dist

    from ppdgm.inference import log_weights

    def model(x):
        with pyro.plate("rows", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with pyro.plate("cols", x.shape[1], dim=-2):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x.T)

    def guide(x):
        with pyro.plate("rows", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(torch.full((x.shape[0],), 0.2), 1.0))

    x = torch.randn(5, 3)
    torch.manual_seed(0)
    loss = IWAE(num_particles=4, max_plate_nesting=2)(model, guide)(x).item()
    torch.manual_seed(0)
    lw = log_weights(model, guide, x, num_particles=4, max_plate_nesting=2)
    assert lw.shape == (4, 5)
    assert loss == pytest.approx(-(torch.logsumexp(lw, 0) - np.log(4)).sum().item(), rel=1e-6)


def test_semi_supervised_objective_uses_the_objectives_and_guide_object_it_is_given():
    model, guide = _m2()
    x = torch.bernoulli(torch.full((6, 12), 0.4))
    y = torch.tensor([0, -1, 2, -1, 3, 1])
    known = y >= 0
    unlabelled = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1, num_particles=3)

    class GuideObject:  # a callable guide without __self__, offering the classifier itself
        classifier_log_prob = staticmethod(guide.classifier_log_prob)

        def __call__(self, *args, **kwargs):
            return guide.guide(*args, **kwargs)

    g = GuideObject()
    torch.manual_seed(0)
    got = SemiSupervisedELBO(unlabelled=unlabelled, aux_weight=0.2)(model.model, g)(x, y).item()
    torch.manual_seed(0)
    lab = ELBO().differentiable_loss(model.model, g, x[known], y[known])
    unl = unlabelled.differentiable_loss(model.model, g, x[~known])
    cls = guide.classifier_log_prob(x[known], y[known]).sum()
    assert got == pytest.approx((lab - 0.2 * cls + unl).item(), rel=1e-5)


@pytest.mark.parametrize(
    "shape,max_elements,num_particles,expected",
    [
        ((3, 4), 24, 5, [2, 2, 1]),  # 24 values hold two particles of 3 x 4
        ((3, 4), 5, 3, [1, 1, 1]),  # fewer values than one particle needs: one at a time
        ((1, 1), 2, 4, [2, 2]),
        ((3, 4), 10**6, 7, [7]),
    ],
)
def test_iwae_bound_holds_at_most_max_elements_at_once(
    monkeypatch, shape, max_elements, num_particles, expected
):
    import ppdgm.evaluation as evaluation

    lik = make_likelihood("gaussian", shape[1:], gaussian_scale=1.0)
    model = VAEModel(nn.Linear(L, shape[1]), L, lik, shape[1:])
    guide = AmortizedNormalGuide(nn.Linear(shape[1], 2 * L), L)
    sizes, log_weights = [], evaluation.log_weights

    def recording(*args, num_particles, **kwargs):
        sizes.append(num_particles)
        return log_weights(*args, num_particles=num_particles, **kwargs)

    monkeypatch.setattr(evaluation, "log_weights", recording)
    x = torch.randn(shape)
    out = iwae_bound(
        model.model, guide.guide, x, num_particles=num_particles, max_elements=max_elements
    )
    assert sizes == expected and out.shape == (shape[0],)
