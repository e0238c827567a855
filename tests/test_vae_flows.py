"""Flows inside the VAE: the IAF guide's density of its own draws against an independent
inversion, the flow prior in the model, the ELBO they make, and the estimator's options."""

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from ppdgm import VAE
from ppdgm.errors import ConfigError
from ppdgm.guides import AmortizedIAFGuide
from ppdgm.inference import ELBO
from ppdgm.models.flows import Flow, maf_layers


def _perturb(module, noise=0.3):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(noise * torch.randn_like(p))


def _iaf_guide(latent=3, data=5, seed=0):
    torch.manual_seed(seed)
    encoder = torch.nn.Linear(data, 2 * latent)
    guide = AmortizedIAFGuide(encoder, latent, num_flows=2, hidden_dims=(8,))
    _perturb(guide)
    return guide


def test_iaf_guide_density_of_its_draws_matches_an_independent_inversion(float64):
    guide = _iaf_guide()
    x = torch.randn(4, 5)
    tr = poutine.trace(guide.guide).get_trace(x)
    site = tr.nodes["z"]
    z = site["value"]
    log_q = site["fn"].log_prob(z)  # what the ELBO uses (Pyro's transform cache may serve it)
    q = guide.distribution(x)
    base = q.base_dist
    for i in range(len(x)):
        # invert the layers afresh (new transforms, no cache) and take autograd's Jacobian
        def forward(v, i=i):
            for t in guide.distribution(x[i : i + 1]).transforms:
                v = t(v)
            return v

        eps = z[i : i + 1].clone()
        for t in reversed(guide.distribution(x[i : i + 1]).transforms):
            eps = t.inv(eps.clone())
        torch.testing.assert_close(forward(eps), z[i : i + 1])
        jac = torch.autograd.functional.jacobian(lambda v: forward(v[None])[0], eps[0])
        b = torch.distributions.Normal(base.base_dist.loc[i], base.base_dist.scale[i])
        expected = b.log_prob(eps[0]).sum() - torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(log_q[i], expected, rtol=1e-6, atol=1e-6)
    # the layers do something, and depend on x (the context): the same point moves
    # differently under the layers conditioned on two examples
    assert not torch.allclose(guide.posterior(x)[0], base.base_dist.loc, atol=1e-3)
    eps = torch.randn(1, 3)
    moved = []
    for i in (0, 1):
        v = eps
        for t in guide.distribution(x[i : i + 1]).transforms:
            v = t(v)
        moved.append(v)
    assert (moved[0] - moved[1]).abs().max() > 1e-3
    # the ordering alternates from one layer to the next
    assert guide.flows[0].nn.permutation.tolist() == [0, 1, 2]
    assert guide.flows[1].nn.permutation.tolist() == [2, 1, 0]


def test_elbo_with_a_flow_prior_and_an_iaf_guide():
    vae = VAE(latent_dim=3, hidden_dims=(8,), prior="flow", guide_flow="iaf", seed=0, device="cpu")
    x = (np.random.default_rng(0).random((6, 5)) < 0.5).astype(np.float32)
    vae.fit(x, num_steps=1)
    model, guide = vae.model_, vae.guide_
    assert isinstance(model.prior_flow, Flow) and isinstance(guide, AmortizedIAFGuide)
    _perturb(model.prior_flow)
    xt = torch.as_tensor(x)
    pyro.set_rng_seed(3)
    loss = ELBO().loss(model.model, guide.guide, xt)
    pyro.set_rng_seed(3)
    gtr = poutine.trace(guide.guide).get_trace(xt)
    z = gtr.nodes["z"]["value"]
    log_q = gtr.nodes["z"]["fn"].log_prob(z)
    log_prior = model.prior_flow.log_prob(z.clone())  # the flow's density, not N(0, I)
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert (log_prior - normal).abs().max() > 1e-2
    probs = model.decode(z)
    log_lik = torch.distributions.Bernoulli(probs=probs).log_prob(xt).sum(-1)
    torch.testing.assert_close(loss, -(log_lik + log_prior - log_q).sum(), rtol=1e-5, atol=1e-4)


def test_prior_samples_come_from_the_flow():
    vae = VAE(latent_dim=2, hidden_dims=(8,), prior="flow", seed=0, device="cpu")
    x = (np.random.default_rng(1).random((32, 4)) < 0.5).astype(np.float32)
    vae.fit(x, num_steps=2)
    torch.manual_seed(0)
    layers, inverted = maf_layers(2, 2, (64, 64))
    assert [type(t) for t in vae.model_.prior_flow.layers] == [type(t) for t in layers]
    _perturb(vae.model_.prior_flow, 0.5)
    torch.manual_seed(0)
    z = vae.model_.prior().sample((4000,))
    # the flow's own samples and its density agree (mean log-density = its negative entropy,
    # estimated through the prior and through the base draws pushed forward)
    torch.manual_seed(0)
    pushed = vae.model_.prior_flow.forward_map(torch.randn(4000, 2))
    torch.testing.assert_close(z, pushed)
    assert abs(z.mean(0)).max() > 0.05 or abs(z.std(0) - 1).max() > 0.05  # not N(0, I)


def test_vae_flow_options_fit_save_load_and_are_checked(tmp_path):
    x = (np.random.default_rng(2).random((64, 6)) < 0.5).astype(np.float32)
    vae = VAE(latent_dim=2, hidden_dims=(8,), prior="flow", guide_flow="iaf", seed=0, device="cpu")
    vae.fit(x, num_steps=3, batch_size=16)
    params = vae.trainer_.params
    ids = {id(p) for p in params}
    assert all(id(p) in ids for p in vae.model_.prior_flow.parameters())  # the prior is learned
    assert all(id(p) in ids for p in vae.guide_.flows.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert vae.transform(x[:5]).shape == (5, 2) and vae.sample(3).shape == (3, 6)
    vae.save(tmp_path / "v.pt")
    again = VAE.load(tmp_path / "v.pt")
    np.testing.assert_array_equal(
        again.score_samples(x[:4], num_particles=20), vae.score_samples(x[:4], num_particles=20)
    )
    assert VAE(guide_flow=None).guide_flow is None  # None and "none" both mean no flow
    with pytest.raises(ConfigError, match="unknown guide_flow 'maf'"):
        VAE(guide_flow="maf")
    with pytest.raises(ConfigError, match="unknown prior 'vamp'"):
        VAE(prior="vamp")
    with pytest.raises(ConfigError, match="prior='flow' needs latent_dim >= 2"):
        VAE(latent_dim=1, prior="flow")
    with pytest.raises(ConfigError, match="num_flows must be a positive integer"):
        VAE(num_flows=0)
