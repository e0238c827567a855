"""Stochastic variational inference for write-once models, on NumPyro or Pyro.

The guide is an autoguide named by a string ("normal", "multivariate_normal", "iaf") or a
guide program of the user's. The posterior is drawn from the fitted guide and returned as
ArviZ ``InferenceData`` with the ELBO trace kept in a ``loss`` group.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .._utils import check_choice, check_int
from ..errors import ConfigError
from .backend import as_backend_args, check_backend, use_backend
from .posterior import (
    _to_numpy,
    build_inference_data,
    constant_arguments,
    model_sites,
    pointwise,
)
from .sampling import _positional_names

__all__ = ["GUIDES", "SVI", "svi"]

GUIDES = ("normal", "multivariate_normal", "iaf")


def _autoguide(name: str, model: Callable, backend: str):
    if backend == "numpyro":
        from numpyro.infer import autoguide
    else:
        from pyro.infer import autoguide
    if name == "normal":
        return autoguide.AutoNormal(model)
    if name == "multivariate_normal":
        return autoguide.AutoMultivariateNormal(model)
    if backend == "numpyro":
        return autoguide.AutoIAFNormal(model, num_flows=2, hidden_dims=[32, 32])
    return autoguide.AutoIAFNormal(model, hidden_dim=[32, 32], num_transforms=2)


class SVI:
    """Variational inference over a write-once model with an autoguide or a user guide.

    Args:
        model: a Pyro program written with ``pyroapi``'s names.
        guide: "normal" (mean-field), "multivariate_normal" (full covariance), "iaf"
            (inverse autoregressive flow), or a guide program with the model's signature.
        backend: "numpyro" or "pyro".
        num_steps: optimization steps.
        learning_rate: Adam's initial step size.
        final_lr_fraction: the step size decays exponentially to this fraction of
            ``learning_rate`` by the last step, so that the final iterate is not dominated
            by gradient noise (1.0 keeps it constant).
        num_particles: ELBO samples per step.
        num_samples: posterior draws taken from the fitted guide.
        progress_bar: show a progress bar while fitting.
        posterior_predictive: also draw the observed sites given each posterior draw.

    Attributes:
        losses_: the negative ELBO at every step (after :meth:`run`).
        guide_: the backend's fitted guide object.
        params_: NumPyro only: the fitted variational parameters.
    """

    def __init__(
        self,
        model: Callable,
        *,
        guide: str | Callable = "normal",
        backend: str = "numpyro",
        num_steps: int = 2000,
        learning_rate: float = 0.01,
        final_lr_fraction: float = 0.1,
        num_particles: int = 1,
        num_samples: int = 1000,
        progress_bar: bool = True,
        posterior_predictive: bool = True,
    ):
        if not callable(model):
            raise ConfigError(f"model must be callable, got {type(model).__name__}")
        if not callable(guide):
            check_choice("guide", guide, GUIDES, more=" or a callable")
        check_backend(backend)
        for name, value in (
            ("num_steps", num_steps),
            ("num_particles", num_particles),
            ("num_samples", num_samples),
        ):
            check_int(name, value)
        if not learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {learning_rate!r}")
        if not 0 < final_lr_fraction <= 1:
            raise ConfigError(f"final_lr_fraction must be in (0, 1], got {final_lr_fraction!r}")
        self.model = model
        self.guide = guide
        self.backend = backend
        self.num_steps = int(num_steps)
        self.learning_rate = float(learning_rate)
        self.final_lr_fraction = float(final_lr_fraction)
        self.num_particles = int(num_particles)
        self.num_samples = int(num_samples)
        self.progress_bar = progress_bar
        self.posterior_predictive = posterior_predictive

    def run(self, *args, seed: int = 0, **kwargs):
        """Fit the guide to ``model(*args, **kwargs)`` and draw the posterior from it.

        Returns:
            ``arviz.InferenceData`` with ``posterior`` (one chain of ``num_samples``
            draws), ``log_likelihood``, ``posterior_predictive``, ``observed_data``,
            ``constant_data`` and ``loss`` (the negative ELBO per step).
        """
        bargs, bkwargs = as_backend_args(args, kwargs, self.backend, _positional_names(self.model))
        sites, observed = model_sites(self.model, bargs, bkwargs, self.backend, seed)
        latent = [n for n, s in sites.items() if s.kind == "latent"]
        start = time.perf_counter()
        with use_backend(self.backend):
            if self.backend == "numpyro":
                draws = self._run_numpyro(bargs, bkwargs, seed, latent)
            else:
                draws = self._run_pyro(bargs, bkwargs, seed, latent)
        fit_time = time.perf_counter() - start
        missing = [n for n in latent if n not in draws]
        if missing:
            raise ConfigError(
                f"the guide does not sample the model's latent sites {missing}; a guide must "
                "sample every latent site of the model"
            )
        det, loglik, ppc = pointwise(
            self.model,
            draws,
            bargs,
            bkwargs,
            sites,
            self.backend,
            seed=seed + 1,
            predict=None if self.posterior_predictive else [],
        )
        lead = lambda d: {k: v[None] for k, v in d.items()}  # noqa: E731
        idata = build_inference_data(
            lead({**{n: draws[n] for n in latent}, **det}),
            sites,
            log_likelihood=lead(loglik),
            posterior_predictive=lead(ppc),
            observed_data=observed,
            constant_data=constant_arguments(self.model, args, kwargs, observed),
            attrs={
                "inference_library": self.backend,
                "method": "svi",
                "guide": self.guide if isinstance(self.guide, str) else "custom",
                "sampling_time": fit_time,
            },
        )
        import warnings

        import xarray as xr

        loss = xr.Dataset({"loss": ("step", np.asarray(self.losses_))})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            idata.add_groups({"loss": loss})
        return idata

    def _guide(self):
        return (
            self.guide if callable(self.guide) else _autoguide(self.guide, self.model, self.backend)
        )

    def _run_numpyro(self, args, kwargs, seed, latent):
        import jax
        from numpyro.infer import SVI as _SVI
        from numpyro.infer import Predictive, Trace_ELBO
        from numpyro.optim import Adam

        from ._jax import enable_compilation_cache

        enable_compilation_cache()
        guide = self._guide()
        lr, decay, steps = self.learning_rate, self.final_lr_fraction, self.num_steps
        svi = _SVI(
            self.model,
            guide,
            Adam(lambda t: lr * decay ** (t / steps)),
            Trace_ELBO(self.num_particles),
        )
        key_fit, key_draw = jax.random.split(jax.random.PRNGKey(seed))
        result = svi.run(key_fit, self.num_steps, *args, progress_bar=self.progress_bar, **kwargs)
        self.losses_ = np.asarray(result.losses)
        self.params_ = jax.tree.map(np.asarray, result.params)
        self.guide_ = guide
        draws = Predictive(guide, params=result.params, num_samples=self.num_samples)(
            key_draw, *args, **kwargs
        )
        return {k: np.asarray(v) for k, v in draws.items() if k in latent}

    def _run_pyro(self, args, kwargs, seed, latent):
        import pyro
        import pyro.poutine as poutine
        import torch
        from pyro.infer import SVI as _SVI
        from pyro.infer import Trace_ELBO
        from pyro.optim import ClippedAdam
        from tqdm.auto import tqdm

        with pyro.get_param_store().scope(), torch.random.fork_rng():
            torch.manual_seed(seed)
            guide = self._guide()
            svi = _SVI(
                self.model,
                guide,
                ClippedAdam(
                    {
                        "lr": self.learning_rate,
                        "lrd": self.final_lr_fraction ** (1 / self.num_steps),
                        "clip_norm": 1e6,
                    }
                ),
                Trace_ELBO(num_particles=self.num_particles),
            )
            losses = []
            for _ in tqdm(range(self.num_steps), disable=not self.progress_bar, desc="svi"):
                losses.append(svi.step(*args, **kwargs))
            self.losses_ = np.asarray(losses)
            self.guide_ = guide
            draws: dict[str, list] = {n: [] for n in latent}
            with torch.no_grad():
                for _ in range(self.num_samples):
                    tr = poutine.trace(guide).get_trace(*args, **kwargs)
                    for n in latent:
                        if n in tr.nodes:
                            draws[n].append(_to_numpy(tr.nodes[n]["value"]))
        return {k: np.stack(v) for k, v in draws.items() if v}


def svi(
    model: Callable,
    *args,
    guide: str | Callable = "normal",
    backend: str = "numpyro",
    num_steps: int = 2000,
    seed: int = 0,
    num_samples: int = 1000,
    learning_rate: float = 0.01,
    final_lr_fraction: float = 0.1,
    num_particles: int = 1,
    progress_bar: bool = True,
    posterior_predictive: bool = True,
    **kwargs: Any,
):
    """Fit a guide to ``model(*args, **kwargs)`` by SVI and draw the posterior from it.

    See :class:`SVI` for the arguments. Returns ``arviz.InferenceData``.
    """
    return SVI(
        model,
        guide=guide,
        backend=backend,
        num_steps=num_steps,
        learning_rate=learning_rate,
        final_lr_fraction=final_lr_fraction,
        num_particles=num_particles,
        num_samples=num_samples,
        progress_bar=progress_bar,
        posterior_predictive=posterior_predictive,
    ).run(*args, seed=seed, **kwargs)
