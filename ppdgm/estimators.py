"""The scikit-learn-style layer: hyperparameters in ``__init__``, ``fit(X) -> self``, learned
state with a trailing underscore. The command line uses this layer.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._utils import check_int, resolve_device, set_seed
from .data import check_likelihood_support, check_shape, validate_array
from .errors import CheckpointError, ConfigError
from .evaluation import elbo as elbo_per_example
from .evaluation import iwae_bound
from .guides import AmortizedNormalGuide
from .inference import ELBO, IWAE
from .models.likelihoods import LIKELIHOODS, make_likelihood
from .models.vae import VAEModel
from .nn import MLP, ConvDecoder, ConvEncoder
from .train import Trainer, load_checkpoint, save_checkpoint

__all__ = ["VAE"]

ARCHS = ("auto", "mlp", "conv")
OBJECTIVES = ("elbo", "iwae")


class VAE:
    """A variational autoencoder fitted by stochastic variational inference.

    The model is :class:`~ppdgm.models.VAEModel` (z ~ N(0, I), x ~ likelihood(decoder(z))) and the
    guide :class:`~ppdgm.guides.AmortizedNormalGuide`; :class:`~ppdgm.train.Trainer` fits them.

    Args:
        latent_dim: dimension of z.
        hidden_dims: hidden widths of the MLP encoder and decoder (and of the conv nets' heads).
        likelihood: ``bernoulli`` (binary data), ``gaussian`` or ``discretized_logistic``
            (integer data such as digits' 0..16).
        arch: ``mlp``, ``conv`` (image data (N, C, H, W)) or ``auto`` (conv for image data).
        beta: weight of the KL term (β-VAE).
        gaussian_scale: ``"learned"`` or a fixed positive scale, for the gaussian likelihood.
        num_bins: for ``discretized_logistic``: number of integer values; from the data if None.
        objective: ``elbo`` (closed-form KL) or ``iwae`` (importance weighted, ``num_particles``).
        num_particles: particles of the training objective.
        activation: hidden activation.
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
    """

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
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    # -- configuration ---------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as plain values."""
        return {
            k: getattr(self, k)
            for k in (
                "latent_dim",
                "hidden_dims",
                "likelihood",
                "arch",
                "beta",
                "gaussian_scale",
                "num_bins",
                "objective",
                "num_particles",
                "activation",
                "seed",
                "device",
                "compile",
            )
        }

    def _check_params(self):
        check_int("latent_dim", self.latent_dim)
        if not self.hidden_dims or any(not isinstance(h, int) or h < 1 for h in self.hidden_dims):
            raise ConfigError(f"hidden_dims must be positive integers, got {self.hidden_dims!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(
                f"unknown likelihood {self.likelihood!r}; choose one of {', '.join(LIKELIHOODS)}"
            )
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}"
            )
        if not self.beta > 0:
            raise ConfigError(f"beta must be positive, got {self.beta}")

    def _build(self, data_shape: tuple[int, ...], num_bins: int | None):
        set_seed(self.seed)
        lik = make_likelihood(self.likelihood, data_shape, self.gaussian_scale, num_bins)
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
        input_scale = 1.0 / (num_bins - 1) if self.likelihood == "discretized_logistic" else 1.0
        model = VAEModel(decoder, self.latent_dim, lik, data_shape, beta=self.beta)
        guide = AmortizedNormalGuide(
            encoder,
            self.latent_dim,
            input_scale=input_scale,
            beta=self.beta,
            flatten_dims=len(data_shape) if arch == "mlp" else 0,
        )
        self.device_ = resolve_device(self.device)
        self.model_, self.guide_ = model.to(self.device_), guide.to(self.device_)
        self.data_shape_, self.num_bins_, self.arch_ = tuple(data_shape), num_bins, arch

    def _objective(self):
        if self.objective == "iwae":
            return IWAE(num_particles=self.num_particles)
        return ELBO(num_particles=self.num_particles)

    # -- data ------------------------------------------------------------------------------
    def _tensor(self, X, source: str = "X", fitted: bool = True) -> torch.Tensor:
        x = X.detach().cpu().numpy() if torch.is_tensor(X) else X
        x = validate_array(x, source)
        if fitted:
            self._check_fitted()
            check_shape(x, self.data_shape_, source)
            check_likelihood_support(x, self.likelihood, source, self.num_bins_)
        return torch.as_tensor(x, dtype=torch.float32, device=getattr(self, "device_", "cpu"))

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise ConfigError("this VAE is not fitted yet; call fit(X) first")

    # -- fitting ---------------------------------------------------------------------------
    def fit(
        self,
        X,
        *,
        num_steps: int = 3000,
        batch_size: int = 128,
        lr: float = 1e-3,
        X_val=None,
        early_stopping: int | None = None,
        eval_every: int | None = None,
        restore_best: bool = True,
        progress: bool = False,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 500,
        best_path: str | Path | None = None,
        resume: bool = False,
        extra_state: dict[str, Any] | None = None,
        X_test=None,
    ) -> VAE:
        """Fit to X of shape (N, D) or (N, C, H, W) (array or tensor).

        Args:
            num_steps: optimizer steps in total (a resumed fit continues up to it).
            batch_size, lr: minibatch size and Adam learning rate.
            X_val: validation data, held out from X. Its negative ELBO per example is
                tracked every ``eval_every`` steps (default: 20 points over the run); the step
                with the lowest is the best (:attr:`best_step_`) and its parameters are the
                fitted ones when ``restore_best``. Keep the test data out of it.
            early_stopping: stop after this many evaluations without improvement (needs
                ``X_val``).
            restore_best: end with the parameters of the best validation step (else the last).
            progress: show a progress bar.
            checkpoint_path, checkpoint_every, resume: see :meth:`ppdgm.train.Trainer.run`.
            best_path: where to save the checkpoint of the best validation step.
            extra_state: more plain values stored with each checkpoint.
            X_test: deprecated name of ``X_val``.
        """
        check_int("num_steps", num_steps)
        if X_test is not None:
            if X_val is not None:
                raise ConfigError("give X_val only (X_test is its deprecated name)")
            warnings.warn(
                "fit(X_test=...) is deprecated: pass validation data as X_val and keep the "
                "test data for the final metrics",
                FutureWarning,
                stacklevel=2,
            )
            X_val = X_test
        if early_stopping is not None:
            check_int("early_stopping", early_stopping)
            if X_val is None:
                raise ConfigError("early_stopping needs validation data (X_val)")
        x = self._tensor(X, "X", fitted=False)
        num_bins = self.num_bins
        if self.likelihood == "discretized_logistic" and num_bins is None:
            num_bins = max(2, int(x.max().item()) + 1)
        check_likelihood_support(x.numpy(), self.likelihood, "X", num_bins)
        self._build(tuple(x.shape[1:]), num_bins)
        x = x.to(self.device_)
        x_val = self._tensor(X_val, "X_val") if X_val is not None else None
        trainer = Trainer(
            self.model_.model,
            self.guide_.guide,
            self._objective(),
            lr=lr,
            batch_size=batch_size,
            seed=self.seed,
            device=self.device_,
            compile=self.compile,
        )
        eval_fn = None
        if x_val is not None:

            def eval_fn():
                return {
                    "val_loss": -elbo_per_example(self.model_.model, self.guide_.guide, x_val)
                    .mean()
                    .item()
                }

        extra = {**self._extra(), **(extra_state or {})}
        self.history_ = trainer.run(
            x,
            num_steps,
            checkpoint_path=checkpoint_path,
            checkpoint_every=checkpoint_every,
            eval_fn=eval_fn,
            eval_every=eval_every or max(1, num_steps // 20),
            progress=progress,
            resume=resume,
            extra_state=lambda: extra,
            best_path=best_path,
            early_stopping=early_stopping,
        )
        self.trainer_ = trainer
        self.last_step_ = trainer.step_count
        self.stopped_early_ = bool(trainer.best["stopped"])
        self.best_step_ = trainer.best["step"]
        self.best_val_loss_ = trainer.best["value"] if self.best_step_ is not None else None
        self.selected_step_ = self.last_step_
        if restore_best and trainer.restore_best(best_path):
            self.selected_step_ = self.best_step_
        for m in (self.model_, self.guide_):
            m.eval()
        return self

    def _extra(self) -> dict[str, Any]:
        return {
            "estimator": "VAE",
            "params": self.get_params(),
            "data_shape": list(self.data_shape_),
            "num_bins": self.num_bins_,
        }

    # -- queries ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _seeded(self, seed: int | None = None):
        """Run with the estimator's seed, leaving the caller's random state as it was."""
        with torch.random.fork_rng(devices=[] if self.device_.type == "cpu" else [self.device_]):
            set_seed(self.seed if seed is None else seed)
            yield

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

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Save the fitted VAE (parameters and configuration) as a checkpoint."""
        self._check_fitted()
        save_checkpoint(
            path,
            {
                "step": int(getattr(self, "selected_step_", None) or 0),
                "modules": {"model": self.model_.state_dict(), "guide": self.guide_.state_dict()},
                "history": self.history_,
                "extra": self._extra(),
            },
        )

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> VAE:
        """Load a VAE saved by :meth:`save` or a training checkpoint."""
        state = load_checkpoint(path)
        extra = state.get("extra") or {}
        if extra.get("estimator") != "VAE":
            raise CheckpointError(f"{path}: not a VAE checkpoint")
        try:
            params = dict(extra["params"])
            params["hidden_dims"] = tuple(params["hidden_dims"])
            params["device"] = device
            vae = cls(**params)
            vae._build(tuple(extra["data_shape"]), extra["num_bins"])
            vae.model_.load_state_dict(state["modules"]["model"])
            vae.guide_.load_state_dict(state["modules"]["guide"])
        except (KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{path}: the checkpoint does not describe a VAE ({e})") from None
        vae.history_ = {k: list(v) for k, v in state.get("history", {}).items()}
        vae.selected_step_ = int(state.get("step", 0))
        vae.model_.eval()
        vae.guide_.eval()
        return vae
