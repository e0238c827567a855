"""Adversarial objectives: a generator program and a second player, the discriminator (or
critic), fitted by the one trainer as a two-player game.

The generator is a Pyro program whose likelihood is implicit: ``model(x=None, *labels,
num_samples=n)`` draws z from its explicit prior and returns x, a deterministic function of
z (and of the labels, for a conditional model). The discriminator is a module
``D(x, *labels) -> (N,)`` of raw outputs (logits; critic values). With a guide (ALI/BiGAN,
Donahue et al. 2017; Dumoulin et al. 2017) the game is played over joint pairs: the
discriminator is called as ``D(x, *labels, z=z)`` on (x, z ~ q(z | x)) for data and
(G(z), z ~ p(z)) for the model, and the guide is fitted with the generator, so that the
encoder learns to invert it without a likelihood.

Losses (``v`` the discriminator's raw output on real (r) and generated (f) examples):

==================  ===========================================  ======================
loss                discriminator minimizes                      generator minimizes
==================  ===========================================  ======================
minimax             softplus(-v_r) + softplus(v_f)               -softplus(v_f)
non_saturating      softplus(-v_r) + softplus(v_f)               softplus(-v_f)
wasserstein         v_f - v_r, weights clipped to [-c, c]        -v_f
wgan_gp             v_f - v_r + λ (‖∇D(x̂)‖ - 1)²                -v_f
least_squares       ((v_r - 1)² + v_f²) / 2                      (v_f - 1)² / 2
hinge               relu(1 - v_r) + relu(1 + v_f)                -v_f
f:<divergence>      -(g(v_r) - f*(g(v_f)))                       -g(v_f)
==================  ===========================================  ======================

(Goodfellow et al. 2014; Arjovsky et al. 2017; Gulrajani et al. 2017; Mao et al. 2017;
Lim & Ye 2017; Nowozin et al. 2016.) For f-GAN, ``g`` is the divergence's output
activation and ``f*`` its convex conjugate (Table 2 of the paper); the generator's loss is the
paper's practical alternative to the saddle point, maximizing E_Q[g(V(x))].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from .._utils import check_choice, owner_module
from ..errors import ConfigError
from .objectives import Objective, ObjectiveModule
from .traces import sample_sites

__all__ = [
    "Adversarial",
    "ADVERSARIAL_LOSSES",
    "FDivergence",
    "F_DIVERGENCES",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "generate",
]

_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class FDivergence:
    """One f-divergence D_f(P ‖ Q) = ∫ q f(p / q) in f-GAN's variational form.

    Attributes:
        f: the generator function, on NumPy arrays of ratios u > 0.
        activation: g, from the discriminator's raw output v to the domain of ``f*``.
        conjugate: f*(t) = sup_u t u - f(u), on tensors.
        inverse_activation: g⁻¹, so that ``inverse_activation(f'(u))`` is the raw output of
            the optimal discriminator at density ratio u.
        derivative: f'(u), on NumPy arrays.
        fake_term: f*(g(v)) written in a form that is stable for large |v|.
    """

    name: str
    f: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]
    activation: Callable[[torch.Tensor], torch.Tensor]
    conjugate: Callable[[torch.Tensor], torch.Tensor]
    inverse_activation: Callable[[np.ndarray], np.ndarray]
    fake_term: Callable[[torch.Tensor], torch.Tensor]


#: ``f:reverse_kl``'s raw discriminator output is clamped at this value from below (the
#: density ratio q/p it estimates, exp(-v), at most e^5): see F_DIVERGENCES["reverse_kl"]
REVERSE_KL_MIN_OUTPUT = -5.0

F_DIVERGENCES: dict[str, FDivergence] = {
    "kl": FDivergence(
        "kl",
        f=lambda u: u * np.log(u),
        derivative=lambda u: 1.0 + np.log(u),
        activation=lambda v: v,
        conjugate=lambda t: torch.exp(t - 1.0),
        inverse_activation=lambda t: t,
        fake_term=lambda v: torch.exp(v - 1.0),
    ),
    # the raw output is bounded below (T = g(v) >= -e^5): unbounded, the critic drives v on
    # generated examples to -inf (its term v - 1 has no minimum) and the generator's exp(-v)
    # overflows; a narrower class of T still gives a lower bound on the divergence
    "reverse_kl": FDivergence(
        "reverse_kl",
        f=lambda u: -np.log(u),
        derivative=lambda u: -1.0 / u,
        activation=lambda v: -torch.exp(-v.clamp(min=REVERSE_KL_MIN_OUTPUT)),
        conjugate=lambda t: -1.0 - torch.log(-t),
        inverse_activation=lambda t: -np.log(-t),
        fake_term=lambda v: v.clamp(min=REVERSE_KL_MIN_OUTPUT) - 1.0,
    ),
    # D_f here is 2 JS(P, Q) (the f of the f-GAN paper's Table 1 without its factor 1/2)
    "js": FDivergence(
        "js",
        f=lambda u: u * np.log(u) - (u + 1.0) * np.log((u + 1.0) / 2.0),
        derivative=lambda u: np.log(2.0 * u / (u + 1.0)),
        activation=lambda v: _LOG2 - F.softplus(-v),
        conjugate=lambda t: -torch.log(2.0 - torch.exp(t)),
        inverse_activation=lambda t: -np.log(np.expm1(_LOG2 - t)),
        fake_term=lambda v: F.softplus(v) - _LOG2,
    ),
    "pearson": FDivergence(
        "pearson",
        f=lambda u: (u - 1.0) ** 2,
        derivative=lambda u: 2.0 * (u - 1.0),
        activation=lambda v: v,
        conjugate=lambda t: 0.25 * t**2 + t,
        inverse_activation=lambda t: t,
        fake_term=lambda v: 0.25 * v**2 + v,
    ),
    "hellinger": FDivergence(
        "hellinger",
        f=lambda u: (np.sqrt(u) - 1.0) ** 2,
        derivative=lambda u: 1.0 - 1.0 / np.sqrt(u),
        activation=lambda v: 1.0 - torch.exp(-v),
        conjugate=lambda t: t / (1.0 - t),
        inverse_activation=lambda t: -np.log(1.0 - t),
        fake_term=torch.expm1,
    ),
}

#: every loss name :class:`Adversarial` takes
ADVERSARIAL_LOSSES = (
    "non_saturating",
    "minimax",
    "wasserstein",
    "wgan_gp",
    "least_squares",
    "hinge",
    *(f"f:{k}" for k in F_DIVERGENCES),
)


def _check_loss(loss: str) -> None:
    check_choice("loss", loss, ADVERSARIAL_LOSSES)


def discriminator_loss(loss: str, v_real: torch.Tensor, v_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss per example pair, shape of ``v_real`` (no gradient penalty).

    Minus this, averaged, is the variational lower bound the loss maximizes: 2 JS(P, Q) - log 4
    for ``minimax``/``non_saturating`` at the optimal discriminator, D_f(P ‖ Q) for
    ``f:<divergence>``, W1 for the Wasserstein losses with the optimal 1-Lipschitz critic.

    Args:
        v_real, v_fake: raw discriminator outputs on data and on generated examples.
    """
    _check_loss(loss)
    if loss in ("minimax", "non_saturating"):
        return F.softplus(-v_real) + F.softplus(v_fake)
    if loss in ("wasserstein", "wgan_gp"):
        return v_fake - v_real
    if loss == "least_squares":
        return 0.5 * ((v_real - 1.0) ** 2 + v_fake**2)
    if loss == "hinge":
        return F.relu(1.0 - v_real) + F.relu(1.0 + v_fake)
    div = F_DIVERGENCES[loss[2:]]
    return div.fake_term(v_fake) - div.activation(v_real)


def generator_loss(loss: str, v_fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss per generated example (see the module's table)."""
    _check_loss(loss)
    if loss == "minimax":
        return -F.softplus(v_fake)
    if loss == "non_saturating":
        return F.softplus(-v_fake)
    if loss in ("wasserstein", "wgan_gp", "hinge"):
        return -v_fake
    if loss == "least_squares":
        return 0.5 * (v_fake - 1.0) ** 2
    return -F_DIVERGENCES[loss[2:]].activation(v_fake)


def gradient_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *labels: torch.Tensor,
    eps: torch.Tensor | None = None,
    z_real: torch.Tensor | None = None,
    z_fake: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP's penalty (‖∇ D(x̂)‖₂ - 1)² per example at x̂ = ε x + (1 - ε) x̃ (Gulrajani et
    al., 2017), differentiable in the critic's parameters.

    Args:
        critic: called as ``critic(x, *labels)`` (or with ``z=`` for joint pairs).
        real, fake: (N, ...) data and generated examples.
        eps: (N,) interpolation weights; uniform on [0, 1) when None.
        z_real, z_fake: (N, L) latents of joint (x, z) pairs; the gradient is then taken with
            respect to both x and z.

    Returns:
        (N,) penalties (without the weight λ).
    """
    n = real.shape[0]
    if eps is None:
        eps = torch.rand(n, device=real.device, dtype=real.dtype)

    def mix(a, b):
        e = eps.reshape(n, *([1] * (a.ndim - 1)))
        return (e * a + (1.0 - e) * b).detach().requires_grad_(True)

    inputs = [mix(real, fake)]
    kwargs = {}
    if z_real is not None:
        inputs.append(mix(z_real, z_fake))
        kwargs["z"] = inputs[1]
    out = critic(inputs[0], *labels, **kwargs)
    grads = torch.autograd.grad(out.sum(), inputs, create_graph=True)
    sq = sum(g.reshape(n, -1).pow(2).sum(1) for g in grads)
    # the epsilon keeps the gradient of the norm finite where the critic is flat
    return (torch.sqrt(sq + 1e-12) - 1.0) ** 2


def generate(model: Callable, num_samples: int, *labels: torch.Tensor):
    """Run a generator program forward: ``(x, z)`` with x its return value (N, ...) and z its
    latent sites' values flattened and concatenated in program order, (N, L)."""
    trace = poutine.trace(model).get_trace(None, *labels, num_samples=num_samples)
    x = trace.nodes["_RETURN"]["value"]
    return x, _latents(trace, num_samples)


def _latents(trace, n: int) -> torch.Tensor:
    zs = [s["value"].reshape(n, -1) for s in sample_sites(trace) if not s["is_observed"]]
    if not zs:
        raise ConfigError("the program has no latent sample sites")
    return zs[0] if len(zs) == 1 else torch.cat(zs, dim=1)


class Adversarial(Objective):
    """A two-player objective: the generator program (and guide, for joint pairs) against a
    discriminator, each with its own optimizer, run by :class:`~ppdgm.train.Trainer`.

    One trainer step is ``n_critic`` discriminator updates, then one generator update, each
    on its own batch of data.

    Args:
        discriminator: the second player, ``D(x, *labels[, z=z]) -> (N,)`` raw outputs.
        loss: one of :data:`ADVERSARIAL_LOSSES`.
        n_critic: discriminator updates per generator update.
        gp_weight: λ of ``wgan_gp``'s gradient penalty.
        clip_value: c of ``wasserstein``'s weight clipping.
        discriminator_options, generator_options: each player's optimizer settings
            (``optimizer``, ``lr``, ``betas``, ``weight_decay``, ``momentum``); the trainer's
            fill in the rest.
        generator_average: a copy of the generator program's module (same parameters and
            buffers) that follows an exponential moving average of its parameters, updated
            after each generator update: ``avg <- decay * avg + (1 - decay) * theta``, buffers
            (e.g. batch-norm statistics) copied (Yazıcı et al., 2019). It is part of the
            objective's module, so the trainer's checkpoints hold it.
        average_decay: the moving average's decay, in [0, 1).
    """

    def __init__(
        self,
        discriminator: nn.Module,
        loss: str = "non_saturating",
        *,
        n_critic: int = 1,
        gp_weight: float = 10.0,
        clip_value: float = 0.01,
        discriminator_options: dict[str, Any] | None = None,
        generator_options: dict[str, Any] | None = None,
        generator_average: nn.Module | None = None,
        average_decay: float = 0.99,
    ):
        _check_loss(loss)
        if not isinstance(discriminator, nn.Module):
            raise ConfigError(
                f"the discriminator must be a torch module, got {type(discriminator).__name__}"
            )
        if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
            raise ConfigError(f"n_critic must be a positive integer, got {n_critic!r}")
        if not gp_weight >= 0:
            raise ConfigError(f"gp_weight must be >= 0, got {gp_weight}")
        if not clip_value > 0:
            raise ConfigError(f"clip_value must be positive, got {clip_value}")
        if generator_average is not None and not isinstance(generator_average, nn.Module):
            raise ConfigError(
                "generator_average must be a torch module (a copy of the generator's), got "
                f"{type(generator_average).__name__}"
            )
        if not 0.0 <= float(average_decay) < 1.0:
            raise ConfigError(f"average_decay must lie in [0, 1), got {average_decay}")
        self.discriminator = discriminator
        self.generator_average = generator_average
        if generator_average is not None:
            generator_average.requires_grad_(False)
        self.average_decay = float(average_decay)
        self.loss_name = loss
        self.n_critic = int(n_critic)
        self.gp_weight = float(gp_weight)
        self.clip_value = float(clip_value)
        self.discriminator_options = dict(discriminator_options or {})
        self.generator_options = dict(generator_options or {})

    def __call__(self, model: Callable, guide: Callable | None) -> ObjectiveModule:
        return _AdversarialModule(self, model, guide)

    def loss(self, model, guide, *batch):
        """The generator's loss summed over the batch (the game's value for the generator)."""
        return _AdversarialModule(self, model, guide).player_loss("generator", *batch)


class _AdversarialModule(ObjectiveModule):
    """The game bound to its programs; the discriminator is this module's submodule, so that
    the trainer's checkpoints hold it."""

    def __init__(self, objective: Adversarial, model: Callable, guide: Callable | None):
        super().__init__(objective, model, guide)
        self.discriminator = objective.discriminator
        self.generator_average = objective.generator_average
        # the live generator's module, not registered as a submodule (the trainer holds it)
        self.__dict__["_averaged"] = None
        if self.generator_average is not None:
            live = owner_module(model)
            names = [n for n, _ in live.named_parameters()] if live is not None else None
            if names != [n for n, _ in self.generator_average.named_parameters()]:
                raise ConfigError(
                    "generator_average must be a copy of the generator program's module (the "
                    "same parameters, in the same order)"
                )
            self.__dict__["_averaged"] = live

    def players(self) -> dict[str, dict[str, Any]]:
        obj = self.objective
        generator = [
            p for fn in (self.model, self.guide) if (m := owner_module(fn)) for p in m.parameters()
        ]
        return {
            "discriminator": {
                "params": list(self.discriminator.parameters()),
                # autograd.grad inside the loss cannot be traced into a graph
                "compile": obj.loss_name != "wgan_gp",
                **obj.discriminator_options,
            },
            "generator": {"params": generator, **obj.generator_options},
        }

    def schedule(self) -> list[str]:
        return ["discriminator"] * self.objective.n_critic + ["generator"]

    def after_update(self, name: str) -> None:
        if name == "discriminator" and self.objective.loss_name == "wasserstein":
            c = self.objective.clip_value
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-c, c)
        if name == "generator" and self._averaged is not None:
            avg, live = self.generator_average, self._averaged
            with torch.no_grad():
                torch._foreach_lerp_(
                    list(avg.parameters()),
                    list(live.parameters()),
                    1.0 - self.objective.average_decay,
                )
                for a, b in zip(avg.buffers(), live.buffers(), strict=True):
                    a.copy_(b)

    def _pairs(self, x: torch.Tensor, labels, detach: bool):
        """Discriminator outputs on data and on as many generated examples."""
        n = x.shape[0]
        # the discriminator's update needs no graph through the generator (and encoder)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach):
            fake, z_fake = generate(self.model, n, *labels)
            z_real = None
            if self.guide is not None:
                trace = poutine.trace(self.guide).get_trace(x, *labels)
                z_real = _latents(trace, n)
        if detach:
            fake, z_fake = fake.detach(), z_fake.detach()
            z_real = None if z_real is None else z_real.detach()
        if self.guide is None:
            return self.discriminator(x, *labels), self.discriminator(fake, *labels), fake, None
        v_real = self.discriminator(x, *labels, z=z_real)
        v_fake = self.discriminator(fake, *labels, z=z_fake)
        return v_real, v_fake, fake, (z_real, z_fake)

    def player_loss(self, name: str, x: torch.Tensor, *labels: torch.Tensor) -> torch.Tensor:
        """The loss of player ``name`` summed over the batch ``(x, *labels)``."""
        obj = self.objective
        if name == "discriminator":
            v_real, v_fake, fake, zs = self._pairs(x, labels, detach=True)
            loss = discriminator_loss(obj.loss_name, v_real, v_fake).sum()
            if obj.loss_name == "wgan_gp" and obj.gp_weight:
                z_real, z_fake = zs if zs is not None else (None, None)
                gp = gradient_penalty(
                    self.discriminator, x, fake, *labels, z_real=z_real, z_fake=z_fake
                )
                loss = loss + obj.gp_weight * gp.sum()
            return loss
        if name != "generator":
            raise ConfigError(f"no player {name!r} in this game (discriminator, generator)")
        if self.guide is None:  # the data play no part in the generator's loss
            fake, _ = generate(self.model, x.shape[0], *labels)
            return generator_loss(obj.loss_name, self.discriminator(fake, *labels)).sum()
        v_real, v_fake, _, _ = self._pairs(x, labels, detach=False)
        # joint pairs: the generator and the encoder both play against the discriminator,
        # the encoder's pairs with the labels swapped (the minimax form: minus its loss)
        if obj.loss_name == "minimax":
            return -discriminator_loss(obj.loss_name, v_real, v_fake).sum()
        return discriminator_loss(obj.loss_name, v_fake, v_real).sum()

    def forward(self, x: torch.Tensor, *labels: torch.Tensor) -> torch.Tensor:
        return self.player_loss("generator", x, *labels)
