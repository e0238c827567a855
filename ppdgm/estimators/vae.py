"""The variational autoencoder family: a Pyro program with an amortized Normal guide, fitted
by stochastic variational inference through the one trainer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._utils import check_int
from ..data import check_likelihood_support
from ..errors import ConfigError
from ..evaluation import elbo as elbo_per_example
from ..evaluation import iwae_bound
from ..guides import AmortizedIAFGuide, AmortizedNormalGuide
from ..inference import ELBO, IWAE
from ..models.flows import Flow, maf_layers
from ..models.likelihoods import LIKELIHOODS, make_likelihood
from ..models.vae import VAEModel
from ..nn import MLP, ConvDecoder, ConvEncoder
from .base import Estimator, check_hidden_dims, register

__all__ = ["VAE"]

ARCHS = ("auto", "mlp", "conv")
OBJECTIVES = ("elbo", "iwae")
#: the likelihood ``likelihood="auto"`` picks for each kind of data
AUTO_LIKELIHOOD = {
    "binary": "bernoulli",
    "integer": "discretized_logistic",
    "continuous": "gaussian",
}


@register
class VAE(Estimator):
    """A variational autoencoder fitted by stochastic variational inference.

    The model is :class:`~ppdgm.models.VAEModel` (z ~ N(0, I), x ~ likelihood(decoder(z))) and the
    guide :class:`~ppdgm.guides.AmortizedNormalGuide`; :class:`~ppdgm.train.Trainer` fits them.

    Args:
        latent_dim: dimension of z.
        hidden_dims: hidden widths of the MLP encoder and decoder (and of the conv nets' heads).
        likelihood: ``bernoulli`` (binary data), ``gaussian``, ``discretized_logistic``
            (integer data such as digits' 0..16) or ``auto`` (from the data: bernoulli for
            binary, discretized_logistic for integers, else gaussian).
        arch: ``mlp``, ``conv`` (image data (N, C, H, W)) or ``auto`` (conv for image data).
        beta: weight of the KL term (β-VAE).
        gaussian_scale: ``"learned"`` or a fixed positive scale, for the gaussian likelihood.
        num_bins: for ``discretized_logistic``: number of integer values; from the data if None.
        objective: ``elbo`` (closed-form KL) or ``iwae`` (importance weighted, ``num_particles``).
        num_particles: particles of the training objective.
        activation: hidden activation.
        prior: ``normal`` (N(0, I)) or ``flow`` (a learned MAF prior over z: ``num_flows``
            layers on a standard normal).
        guide_flow: ``none`` or None (a diagonal Normal q(z | x)) or ``iaf`` (that Normal pushed
            through ``num_flows`` inverse autoregressive layers conditioned on x).
        num_flows: layers of the flow prior and of the IAF guide.
        seed: seeds initialization, training and sampling.
        device: ``auto``, ``cpu`` or ``cuda``.
        compile: trace the training step into a graph (see :class:`~ppdgm.train.Trainer`).

    Attributes:
        model_, guide_: the fitted programs.
        history_: training and validation curves.
        best_step_, best_val_loss_: the step with the lowest validation loss, and that loss
            (None without validation data).
        selected_step_: the step whose parameters the estimator holds (the best, or the last).
        last_step_: the number of steps trained; stopped_early_: whether early stopping ended
            the fit.
        data_shape_: shape of one example.
        num_bins_: number of integer values (discretized_logistic) or None.
        likelihood_: the likelihood in use (``auto`` resolved).
    """

    family = "vae"
    summary = "variational autoencoder: Pyro program with an amortized Normal guide, fitted by SVI"
    default_data = "digits"
    choices = {
        "likelihood": (*LIKELIHOODS, "auto"),
        "arch": ARCHS,
        "objective": OBJECTIVES,
        "prior": ("normal", "flow"),
        "guide_flow": ("none", "iaf", None),
    }
    cli_defaults = {"likelihood": "auto"}

    def __init__(
        self,
        latent_dim: int = 8,
        hidden_dims: tuple[int, ...] = (256, 256),
        likelihood: str = "bernoulli",
        *,
        arch: str = "auto",
        beta: float = 1.0,
        gaussian_scale: str | float = "learned",
        num_bins: int | None = None,
        objective: str = "elbo",
        num_particles: int = 1,
        activation: str = "relu",
        prior: str = "normal",
        guide_flow: str = "none",
        num_flows: int = 2,
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.latent_dim = latent_dim
        self.hidden_dims = tuple(hidden_dims)
        self.likelihood = likelihood
        self.arch = arch
        self.beta = beta
        self.gaussian_scale = gaussian_scale
        self.num_bins = num_bins
        self.objective = objective
        self.num_particles = num_particles
        self.activation = activation
        self.prior = prior
        self.guide_flow = guide_flow
        self.num_flows = num_flows
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _check_params(self):
        check_int("latent_dim", self.latent_dim)
        check_hidden_dims(self.hidden_dims)
        super()._check_params()
        if not self.beta > 0:
            raise ConfigError(f"beta must be positive, got {self.beta}")
        check_int("num_particles", self.num_particles)
        if self.num_bins is not None:
            check_int("num_bins", self.num_bins)
        check_int("num_flows", self.num_flows)
        if self.prior == "flow" and self.latent_dim < 2:
            raise ConfigError("prior='flow' needs latent_dim >= 2 (an autoregressive flow)")

    # -- the family's part -----------------------------------------------------------------
    def _settings(self, x: np.ndarray) -> dict[str, Any]:
        from ..data import value_kind

        likelihood = self.likelihood
        if likelihood == "auto":
            likelihood = AUTO_LIKELIHOOD[value_kind(x)[0]]
        num_bins = self.num_bins
        if likelihood == "discretized_logistic" and num_bins is None:
            num_bins = max(2, int(x.max()) + 1)
        return {"likelihood": likelihood, "num_bins": num_bins}

    @classmethod
    def _settings_from_extra(cls, extra: dict[str, Any]) -> dict[str, Any]:
        if "settings" in extra:
            return dict(extra["settings"])
        # checkpoints written before the estimator contract
        return {"likelihood": extra["params"]["likelihood"], "num_bins": extra.get("num_bins")}

    def _check_support(self, x: np.ndarray, source: str, settings: dict[str, Any]) -> None:
        check_likelihood_support(x, settings["likelihood"], source, settings["num_bins"])

    def _build(self, data_shape: tuple[int, ...], likelihood: str, num_bins: int | None):
        lik = make_likelihood(likelihood, data_shape, self.gaussian_scale, num_bins)
        image = len(data_shape) == 3
        arch = ("conv" if image else "mlp") if self.arch == "auto" else self.arch
        if arch == "conv" and not image:
            raise ConfigError(
                f"arch 'conv' needs image data (N, C, H, W), got examples of shape {data_shape}"
            )
        if len(data_shape) not in (1, 3):
            raise ConfigError(
                f"examples must be vectors (D,) or images (C, H, W), got shape {data_shape}"
            )
        dims = math.prod(data_shape)
        k = lik.num_params
        if arch == "conv":
            encoder = ConvEncoder(
                data_shape,
                2 * self.latent_dim,
                hidden_dims=self.hidden_dims[:1],
                activation=self.activation,
            )
            decoder = ConvDecoder(
                self.latent_dim,
                data_shape,
                k,
                hidden_dims=self.hidden_dims[:1],
                activation=self.activation,
            )
        else:
            encoder = MLP(dims, self.hidden_dims, 2 * self.latent_dim, self.activation)
            decoder = MLP(
                self.latent_dim, tuple(reversed(self.hidden_dims)), k * dims, self.activation
            )
        input_scale = 1.0 / (num_bins - 1) if likelihood == "discretized_logistic" else 1.0
        prior_flow = None
        if self.prior == "flow":
            layers, inverted = maf_layers(self.latent_dim, int(self.num_flows), (64, 64))
            prior_flow = Flow(layers, self.latent_dim, inverted)
        self.model_ = VAEModel(
            decoder, self.latent_dim, lik, data_shape, beta=self.beta, prior_flow=prior_flow
        )
        guide_options = {
            "input_scale": input_scale,
            "beta": self.beta,
            "flatten_dims": len(data_shape) if arch == "mlp" else 0,
        }
        if self.guide_flow == "iaf":
            self.guide_ = AmortizedIAFGuide(
                encoder, self.latent_dim, num_flows=int(self.num_flows), **guide_options
            )
        else:
            self.guide_ = AmortizedNormalGuide(encoder, self.latent_dim, **guide_options)
        self.likelihood_, self.num_bins_, self.arch_ = likelihood, num_bins, arch

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model_, "guide": self.guide_}

    def _programs(self):
        return self.model_.model, self.guide_.guide

    def _objective(self):
        if self.objective == "iwae":
            return IWAE(num_particles=self.num_particles)
        return ELBO(num_particles=self.num_particles)

    def _val_loss(self, x: torch.Tensor) -> float:
        """The negative ELBO per example."""
        return -elbo_per_example(self.model_.model, self.guide_.guide, x).mean().item()

    # -- queries ---------------------------------------------------------------------------
    def score_samples(self, X, num_particles: int = 1000, batch_size: int = 128) -> np.ndarray:
        """Importance-weighted lower bound on log p(x) per example, in nats; shape (N,)."""
        x = self._tensor(X)
        with self._seeded():
            out = iwae_bound(
                self.model_.model,
                self.guide_.guide,
                x,
                num_particles=num_particles,
                batch_size=batch_size,
            )
        return out.cpu().numpy()

    def elbo_samples(self, X, num_particles: int = 1) -> np.ndarray:
        """Monte Carlo ELBO per example, in nats; shape (N,)."""
        x = self._tensor(X)
        with self._seeded():
            out = elbo_per_example(
                self.model_.model, self.guide_.guide, x, num_particles=num_particles
            )
        return out.cpu().numpy()

    def score(self, X, num_particles: int = 1000) -> float:
        """Mean of :meth:`score_samples`."""
        return float(self.score_samples(X, num_particles).mean())

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, return_mean: bool = False, seed: int | None = None
    ) -> np.ndarray:
        """Draw examples by running the model forward; shape (num_samples, *data_shape).

        With ``return_mean`` the likelihood's mean at each sampled z is returned instead of a
        draw from the likelihood (e.g. pixel probabilities for a Bernoulli).
        """
        self._check_fitted()
        check_int("num_samples", num_samples)
        with self._seeded(seed):
            z = self.model_.prior().sample((int(num_samples),))
            params = self.model_.decode_params(z)
            lik = self.model_.likelihood
            out = lik.mean(*params) if return_mean else lik(*params).sample()
        return out.cpu().numpy()

    @torch.no_grad()
    def transform(self, X) -> np.ndarray:
        """Posterior means E[z | x]; shape (N, latent_dim)."""
        loc, _ = self.guide_.posterior(self._tensor(X))
        return loc.cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, X) -> np.ndarray:
        """The likelihood's mean at the posterior mean of z; shape (N, *data_shape)."""
        loc, _ = self.guide_.posterior(self._tensor(X))
        return self.model_.decode(loc).cpu().numpy()

    # -- what the command line reports -------------------------------------------------------
    def metrics(self, X, prefix: str, iwae_k: int = 1000, **options) -> dict[str, Any]:
        """ELBO (10 particles) and IWAE bound (``iwae_k`` particles) on ``X``, in nats."""
        from ..evaluation import bits_per_dim

        elbo = float(np.mean(self.elbo_samples(X, num_particles=10)))
        iwae = float(np.mean(self.score_samples(X, num_particles=iwae_k)))
        dims = int(np.prod(self.data_shape_))
        return {
            f"{prefix}_elbo": elbo,
            f"{prefix}_nll_elbo": -elbo,
            f"{prefix}_nll_iwae": -iwae,
            f"{prefix}_bits_per_dim": float(bits_per_dim(-iwae, dims)),
            f"num_{prefix}": int(len(X)),
        }

    def plot_figures(self, data, folder: Path, seed: int = 0) -> None:
        """Samples (the likelihood's mean), reconstructions, latents and curves."""
        from .. import viz

        shape = data.image_shape if self.arch_ == "mlp" else None
        viz.plot_samples(
            self.sample(64, return_mean=True, seed=seed),
            shape,
            path=folder / "samples.png",
            title="samples (likelihood mean at z ~ p(z))",
            reference=data.x_test if data.x_test.shape[1:] == (2,) else None,
        )
        n = min(32, len(data.x_test))
        viz.plot_reconstructions(
            data.x_test[:n],
            self.reconstruct(data.x_test[:n]),
            shape,
            path=folder / "reconstructions.png",
        )
        viz.plot_latents(self.transform(data.x_test), data.y_test, path=folder / "latents.png")
        viz.plot_curves(
            self.history_,
            path=folder / "curves.png",
            best_step=self.selected_step_ if self.best_step_ is not None else None,
        )
