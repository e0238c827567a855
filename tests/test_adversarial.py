"""Adversarial objectives against closed forms: each loss's value at the optimal discriminator
of a 1-D problem, the f-GAN conjugates, the gradient penalty, and the two-player trainer."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats
from torch import nn

from ppdgm.errors import ConfigError, TrainingDivergedError
from ppdgm.inference import Adversarial
from ppdgm.inference.adversarial import (
    ADVERSARIAL_LOSSES,
    F_DIVERGENCES,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
)
from ppdgm.train import Trainer, load_checkpoint

# P = N(0, 1) is the data, Q = N(MU, SD^2) the generator's distribution
MU, SD = 0.5, 1.2
N_MC = 400_000


def _p(x):
    return stats.norm.pdf(x, 0.0, 1.0)


def _q(x):
    return stats.norm.pdf(x, MU, SD)


def _quad(fn):
    return integrate.quad(fn, -12, 12, limit=200)[0]


@pytest.fixture(scope="module")
def draws():
    rng = np.random.default_rng(0)
    return rng.normal(0.0, 1.0, N_MC), rng.normal(MU, SD, N_MC)


def _log_ratio(x):
    return stats.norm.logpdf(x, 0.0, 1.0) - stats.norm.logpdf(x, MU, SD)


def _optimal_output(loss, x):
    """The optimal discriminator's raw output at x (closed form for each loss)."""
    r = np.exp(_log_ratio(x))
    if loss in ("minimax", "non_saturating"):
        return _log_ratio(x)  # logit of p / (p + q)
    if loss == "least_squares":
        return r / (1.0 + r)  # D* = p / (p + q)
    if loss == "hinge":
        return np.sign(r - 1.0)
    div = F_DIVERGENCES[loss[2:]]
    return div.inverse_activation(div.derivative(r))


def _value(loss, v_real, v_fake):
    """-E[discriminator loss]: the variational bound the discriminator maximizes, with its
    Monte Carlo standard error."""
    per = -discriminator_loss(loss, torch.as_tensor(v_real), torch.as_tensor(v_fake)).numpy()
    return per.mean(), per.std() / math.sqrt(len(per))


def _reference(loss):
    """What the bound equals at the optimum, by quadrature."""
    if loss in ("minimax", "non_saturating"):
        m = lambda x: 0.5 * (_p(x) + _q(x))  # noqa: E731
        js = 0.5 * _quad(lambda x: _p(x) * np.log(_p(x) / m(x))) + 0.5 * _quad(
            lambda x: _q(x) * np.log(_q(x) / m(x))
        )
        return 2.0 * js - math.log(4.0)
    if loss == "least_squares":
        return -0.5 * _quad(lambda x: _p(x) * _q(x) / (_p(x) + _q(x)))
    if loss == "hinge":
        tv = 0.5 * _quad(lambda x: abs(_p(x) - _q(x)))
        return -2.0 * (1.0 - tv)
    f = F_DIVERGENCES[loss[2:]].f
    return _quad(lambda x: _q(x) * f(_p(x) / _q(x)))


OPTIMUM_LOSSES = [
    "minimax",
    "non_saturating",
    "least_squares",
    "hinge",
    "f:kl",
    "f:reverse_kl",
    "f:js",
    "f:pearson",
    "f:hellinger",
]


@pytest.mark.parametrize("loss", OPTIMUM_LOSSES)
def test_the_bound_at_the_optimal_discriminator_is_the_divergence(loss, draws):
    xp, xq = draws
    value, se = _value(loss, _optimal_output(loss, xp), _optimal_output(loss, xq))
    assert value == pytest.approx(_reference(loss), abs=5 * se + 1e-3)
    # and it is the maximum: any other discriminator gives a smaller bound
    for perturb in (lambda v: v + 0.3, lambda v: v - 0.3, lambda v: 0.7 * v):
        vp, vq = (perturb(_optimal_output(loss, x)) for x in (xp, xq))
        if loss.startswith("f:"):
            # keep a perturbed output inside the activation's domain
            vp, vq = np.clip(vp, -20, 20), np.clip(vq, -20, 20)
        assert _value(loss, vp, vq)[0] < value


def test_the_named_f_divergences_match_their_closed_forms():
    # KL between Gaussians, and D_f of "f:js" is twice the Jensen-Shannon divergence
    kl = math.log(SD) + (1 + MU**2) / (2 * SD**2) - 0.5
    assert _reference("f:kl") == pytest.approx(kl, rel=1e-6)
    rkl = -math.log(SD) + (SD**2 + MU**2) / 2 - 0.5
    assert _reference("f:reverse_kl") == pytest.approx(rkl, rel=1e-6)
    assert _reference("f:js") == pytest.approx(_reference("minimax") + math.log(4), rel=1e-6)
    bc = math.sqrt(2 * SD / (1 + SD**2)) * math.exp(-(MU**2) / (4 * (1 + SD**2)))
    assert _reference("f:hellinger") == pytest.approx(2 * (1 - bc), rel=1e-6)


def test_wasserstein_critic_value_is_w1_for_a_shift(draws):
    # W1(N(0,1), N(MU,1)) = MU, attained by the 1-Lipschitz critic v(x) = -x
    rng = np.random.default_rng(1)
    xp, xq = rng.normal(0, 1, N_MC), rng.normal(MU, 1, N_MC)
    for loss in ("wasserstein", "wgan_gp"):
        value, se = _value(loss, -xp, -xq)
        assert value == pytest.approx(MU, abs=5 * se)


@pytest.mark.parametrize("name", sorted(F_DIVERGENCES))
def test_f_gan_conjugates_are_the_convex_conjugates(name):
    div = F_DIVERGENCES[name]
    for v in (-1.5, -0.3, 0.2, 1.0):
        t = float(div.activation(torch.tensor(v, dtype=torch.float64)))
        # f*(t) = sup_u t u - f(u), numerically over u > 0
        res = optimize.minimize_scalar(
            lambda log_u, t=t: -(t * math.exp(log_u) - div.f(math.exp(log_u))),
            bounds=(-20, 20),
            method="bounded",
            options={"xatol": 1e-10},
        )
        conj = float(div.conjugate(torch.tensor(t, dtype=torch.float64)))
        assert conj == pytest.approx(-res.fun, abs=1e-6)
        fake = float(div.fake_term(torch.tensor(v, dtype=torch.float64)))
        assert fake == pytest.approx(conj, rel=1e-9, abs=1e-12)
        # the optimal output's inverse activation undoes the activation
        assert div.inverse_activation(t) == pytest.approx(v, rel=1e-9)


@pytest.mark.parametrize("loss", ADVERSARIAL_LOSSES)
def test_the_generator_loss_pulls_the_samples_toward_the_data(loss):
    # With a discriminator that prefers the data (here at x < MU, the fakes' side being
    # x > MU), the generator's gradient moves its samples toward the data: dL/dx > 0
    v_of = {
        "minimax": lambda x: -x,
        "non_saturating": lambda x: -x,
        "least_squares": lambda x: torch.sigmoid(-x),
    }.get(loss, lambda x: -0.5 * x)
    x = torch.linspace(0.2, 2.0, 10, dtype=torch.float64, requires_grad=True)
    generator_loss(loss, v_of(x)).sum().backward()
    assert (x.grad > 0).all()


def test_minimax_and_non_saturating_generator_losses_are_the_papers():
    v = torch.linspace(-3, 3, 13, dtype=torch.float64)
    d = torch.sigmoid(v)
    assert torch.allclose(generator_loss("minimax", v), torch.log1p(-d))
    assert torch.allclose(generator_loss("non_saturating", v), -torch.log(d))
    assert torch.allclose(
        discriminator_loss("minimax", v, v.flip(0)),
        -(torch.log(d) + torch.log1p(-torch.sigmoid(v.flip(0)))),
    )


def test_losses_are_refused_by_name():
    with pytest.raises(ConfigError, match="unknown loss 'nope'; choose one of non_saturating"):
        discriminator_loss("nope", torch.zeros(1), torch.zeros(1))
    with pytest.raises(ConfigError, match="n_critic must be a positive integer"):
        Adversarial(nn.Linear(1, 1), n_critic=0)
    with pytest.raises(ConfigError, match="must be a torch module"):
        Adversarial(lambda x: x)


# -- the gradient penalty ---------------------------------------------------------------------
def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm():
    critic = nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 0.0, 4.0]]))
    real, fake = torch.randn(5, 3), torch.randn(5, 3)
    gp = gradient_penalty(lambda x: critic(x).squeeze(-1), real, fake)
    assert torch.allclose(gp, torch.full((5,), (5.0 - 1.0) ** 2), atol=1e-5)
    gp.sum().backward()
    # d/dw 5 (|w| - 1)^2 = 10 (|w| - 1) w / |w|
    expected = 10 * (5.0 - 1.0) * torch.tensor([[3.0, 0.0, 4.0]]) / 5.0
    assert torch.allclose(critic.weight.grad, expected, atol=1e-4)


def test_gradient_penalty_at_the_interpolates_by_hand():
    # D(x) = sum(x^2) / 2 has gradient x: the penalty is (|x_hat| - 1)^2 at the interpolate
    real, fake = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    eps = torch.tensor([0.0, 0.25, 0.5, 1.0])
    gp = gradient_penalty(lambda x: 0.5 * x.pow(2).flatten(1).sum(1), real, fake, eps=eps)
    x_hat = eps[:, None, None] * real + (1 - eps[:, None, None]) * fake
    assert torch.allclose(gp, (x_hat.flatten(1).norm(dim=1) - 1.0) ** 2, atol=1e-5)
    # joint pairs: the gradient with respect to z counts in the norm
    zr, zf = torch.randn(4, 2), torch.randn(4, 2)
    gp = gradient_penalty(
        lambda x, z: 0.5 * x.pow(2).flatten(1).sum(1) + 0.5 * z.pow(2).sum(1),
        real,
        fake,
        eps=eps,
        z_real=zr,
        z_fake=zf,
    )
    z_hat = eps[:, None] * zr + (1 - eps[:, None]) * zf
    norm = torch.sqrt(x_hat.flatten(1).pow(2).sum(1) + z_hat.pow(2).sum(1))
    assert torch.allclose(gp, (norm - 1.0) ** 2, atol=1e-5)


# -- the two-player trainer -------------------------------------------------------------------
class _Gen(nn.Module):
    """x = a z + b, a tiny implicit-likelihood program."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 2)

    def model(self, x=None, num_samples=None):
        import pyro
        import pyro.distributions as dist

        n = x.shape[0] if x is not None else num_samples
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            return self.net(z)


def _critic():
    net = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    return _Squeeze(net)


class _Squeeze(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).squeeze(-1)


def _game(loss="non_saturating", seed=0, **kw):
    torch.manual_seed(seed)
    gen, critic = _Gen(), _critic()
    objective = Adversarial(critic, loss, **kw)
    trainer = Trainer(gen.model, None, objective, lr=1e-2, batch_size=8, seed=seed)
    return gen, critic, trainer


DATA = torch.randn(64, 2) * 0.5 + 2.0


def test_one_step_runs_the_schedule_and_each_update_moves_one_player():
    gen, critic, trainer = _game(n_critic=3)
    assert trainer.batches_per_step == 4 and list(trainer.players) == ["discriminator", "generator"]
    seen = []
    for name, player in trainer.players.items():
        original = player.optimizer.step

        def step(*a, _name=name, _orig=original, **k):
            seen.append(_name)
            return _orig(*a, **k)

        player.optimizer.step = step
    g0 = [p.detach().clone() for p in gen.parameters()]
    d0 = [p.detach().clone() for p in critic.parameters()]
    out = trainer.step(DATA[:32])
    assert seen == ["discriminator"] * 3 + ["generator"]
    assert set(out) == {"loss", "loss_discriminator", "loss_generator"}
    assert out["loss"] == out["loss_generator"]
    assert all(not torch.equal(a, b) for a, b in zip(g0, gen.parameters(), strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(d0, critic.parameters(), strict=True))


def test_weight_clipping_keeps_the_critic_in_the_box():
    _, critic, trainer = _game("wasserstein", clip_value=0.05)
    trainer.step(DATA[:16])
    assert all(p.abs().max() <= 0.05 + 1e-7 for p in critic.parameters())


def test_resume_of_a_two_player_run_is_exact(tmp_path):
    gen, critic, trainer = _game("wgan_gp", n_critic=2)
    hist = trainer.run(DATA, 6, progress=False, log_every=2)
    straight = [p.detach().clone() for m in (gen, critic) for p in m.parameters()]

    ckpt = tmp_path / "c.pt"
    gen2, critic2, t2 = _game("wgan_gp", n_critic=2)
    t2.run(DATA, 3, progress=False, checkpoint_path=ckpt, log_every=2)
    state = load_checkpoint(ckpt)
    assert set(state["optimizer"]) == {"discriminator", "generator"}
    assert all(state["optimizer"][k]["state"] for k in state["optimizer"])
    gen3, critic3, t3 = _game("wgan_gp", n_critic=2, seed=5)  # a different start, overwritten
    h3 = t3.run(DATA, 6, progress=False, checkpoint_path=ckpt, resume=True, log_every=2)
    resumed = [p.detach() for m in (gen3, critic3) for p in m.parameters()]
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)
    for k in ("step", "loss", "loss_discriminator", "loss_generator"):
        assert h3[k] == hist[k]


def test_a_compiled_game_follows_the_eager_one():
    runs = []
    for compile in (True, False):
        torch.manual_seed(0)
        gen, critic = _Gen(), _critic()
        t = Trainer(gen.model, None, Adversarial(critic), lr=1e-2, batch_size=8, compile=compile)
        t.run(DATA, 5, progress=False)
        runs.append([p.detach() for m in (gen, critic) for p in m.parameters()])
    for a, b in zip(*runs, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_diverging_player_stops_the_run():
    gen, critic, trainer = _game()
    with torch.no_grad():
        critic.net[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="the discriminator's loss became nan"):
        trainer.step(DATA[:16])


def test_players_must_own_every_parameter_once():
    class Bad(Adversarial):
        def __call__(self, model, guide):
            module = super().__call__(model, guide)
            players = module.players

            def shared():
                out = players()
                out["generator"]["params"] = out["generator"]["params"] + list(
                    self.discriminator.parameters()
                )
                return out

            module.players = shared
            return module

    gen = _Gen()
    with pytest.raises(ConfigError, match="belongs to two players"):
        Trainer(gen.model, None, Bad(_critic()))

    class Lonely(nn.Module):
        def __init__(self):
            super().__init__()
            self.gen, self.extra = _Gen(), nn.Linear(1, 1)

        def model(self, x=None, num_samples=None):
            return self.gen.model(x, num_samples)

    lonely = Lonely()

    class Partial(Adversarial):
        def __call__(self, model, guide):
            module = super().__call__(model, guide)
            players = module.players
            module.players = lambda: {
                **players(),
                "generator": {"params": list(lonely.gen.parameters())},
            }
            return module

    with pytest.raises(ConfigError, match="2 trainable parameter.* belong to no player"):
        Trainer(lonely.model, None, Partial(_critic()))


def test_a_player_with_an_unknown_optimizer_is_refused_by_name():
    class Odd(Adversarial):
        def __call__(self, model, guide):
            module = super().__call__(model, guide)
            players = module.players
            module.players = lambda: {
                name: {**spec, "optimizer": "lbfgs"} if name == "discriminator" else spec
                for name, spec in players().items()
            }
            return module

    with pytest.raises(
        ConfigError,
        match=r"^unknown optimizer for player 'discriminator': 'lbfgs'; choose one of adam, ",
    ):
        Trainer(_Gen().model, None, Odd(_critic()))


def test_joint_pairs_fit_the_encoder_with_the_generator():
    # ALI/BiGAN: the discriminator judges (x, z) pairs, and the guide plays on the generator's
    # side, so one step moves the encoder too
    from ppdgm.models.gan import Discriminator, Encoder, Generator, mlp_head

    torch.manual_seed(0)
    gen = Generator(nn.Linear(2, 2), 2, (2,))
    enc = Encoder(nn.Linear(2, 4), 2, (2,))
    disc = Discriminator(nn.Flatten(), mlp_head(4, (8,)), (2,), latent_dim=2)
    for loss in ("non_saturating", "wgan_gp", "minimax"):
        trainer = Trainer(gen.model, enc.guide, Adversarial(disc, loss), lr=1e-2, batch_size=8)
        assert {id(p) for p in trainer.players["generator"].params} == {
            id(p) for m in (gen, enc) for p in m.parameters()
        }
        before = [p.detach().clone() for p in enc.parameters()]
        out = trainer.step(DATA[:16])
        assert math.isfinite(out["loss"])
        assert all(not torch.equal(a, b) for a, b in zip(before, enc.parameters(), strict=True))
    # the encoder's pairs count with the labels swapped: for the non-saturating loss, the
    # generator side's loss is the discriminator's with real and fake exchanged
    module = Adversarial(disc)(gen.model, enc.guide)
    torch.manual_seed(1)
    g = module.player_loss("generator", DATA[:8])
    torch.manual_seed(1)
    v_real, v_fake, _, _ = module._pairs(DATA[:8], (), detach=False)
    assert torch.allclose(g, discriminator_loss("non_saturating", v_fake, v_real).sum())


def test_reverse_kl_output_is_bounded_so_the_game_cannot_overflow():
    # unbounded, the critic's term on fakes (v - 1) has no minimum: v -> -inf and the
    # generator's exp(-v) overflows (8 Gaussians diverged at steps 1711 and 2078)
    from ppdgm.inference.adversarial import REVERSE_KL_MIN_OUTPUT

    v_fake = torch.tensor([-1e4, -100.0, -1.0], requires_grad=True)
    v_real = torch.zeros(3)
    d = discriminator_loss("f:reverse_kl", v_real, v_fake)
    g = generator_loss("f:reverse_kl", v_fake)
    assert torch.isfinite(d).all() and torch.isfinite(g).all()
    assert float(g.max()) == pytest.approx(math.exp(-REVERSE_KL_MIN_OUTPUT))
    (grad,) = torch.autograd.grad(d.sum(), v_fake)
    # below the bound the critic gets no push further down; above it, the paper's gradient
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 1.0]))
