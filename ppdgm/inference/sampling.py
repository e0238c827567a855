"""NUTS and HMC on NumPyro or Pyro, returning ArviZ ``InferenceData``.

One model source (written with :mod:`pyroapi`'s names) runs on either backend. NumPyro
compiles the sampler with JAX and runs chains in parallel, one CPU device each (this
module asks JAX for them when it is imported before JAX starts), else vectorized; Pyro runs
the chains one after another in this process.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._utils import check_choice, check_int
from ..errors import ConfigError
from .backend import as_backend_args, check_backend, use_backend
from .posterior import (
    _to_numpy,
    build_inference_data,
    check_diagnostics,
    constant_arguments,
    init_strategy,
    model_sites,
    pointwise,
)

__all__ = ["MCMC", "mcmc", "KERNELS"]

KERNELS = ("nuts", "hmc")

_NUMPYRO_FIELDS = (
    "diverging",
    "energy",
    "num_steps",
    "accept_prob",
    "adapt_state.step_size",
    "potential_energy",
)


def _positional_names(model: Callable) -> list[str]:
    try:
        params = inspect.signature(model).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _snapshot(x):
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, (tuple, list)):
        return type(x)(_snapshot(v) for v in x)
    if isinstance(x, dict):
        return {k: _snapshot(v) for k, v in x.items()}
    return x


def _same_inputs(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same_inputs(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_inputs(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return False


class MCMC:
    """A NUTS or HMC sampler over a write-once model, reusable across runs.

    Reusing one ``MCMC`` object on the same data skips NumPyro's recompilation.

    Args:
        model: a Pyro program written with ``pyroapi``'s ``pyro`` and ``distributions``.
        kernel: "nuts" or "hmc".
        backend: "numpyro" (JAX) or "pyro" (PyTorch).
        num_warmup: adaptation steps per chain (discarded).
        num_samples: draws kept per chain.
        num_chains: independent chains.
        kernel_kwargs: passed to the backend's kernel (``target_accept_prob``,
            ``max_tree_depth``, ``jit_compile`` for Pyro, ...).
        init_values: starting values of latent sites by name (NumPy arrays); the other
            sites start as the backend's default (uniform in [-2, 2] unconstrained).
            Multimodal posteriors (mixtures) need a sensible start; see
            :func:`ppdgm.models.classical.mixture_init`.
        chain_method: NumPyro only: "parallel", "sequential" or "vectorized"; by default
            parallel when JAX has a device per chain, else vectorized (all chains in one
            program). Importing this module before JAX starts gives JAX max(4, cores) CPU
            devices (``PPDGM_HOST_DEVICES=N`` to choose, ``0`` to leave JAX alone), so
            chains run in parallel in Python as in the CLI.
        progress_bar: show progress bars during warmup and sampling.
        posterior_predictive: also draw the observed sites given each posterior draw.
        warn: issue :class:`ppdgm.errors.ConvergenceWarning` for R-hat, ESS, divergences.
    """

    def __init__(
        self,
        model: Callable,
        *,
        kernel: str = "nuts",
        backend: str = "numpyro",
        num_warmup: int = 1000,
        num_samples: int = 1000,
        num_chains: int = 4,
        kernel_kwargs: Mapping[str, Any] | None = None,
        init_values: Mapping[str, Any] | None = None,
        chain_method: str | None = None,
        progress_bar: bool = True,
        posterior_predictive: bool = True,
        warn: bool = True,
    ):
        if not callable(model):
            raise ConfigError(f"model must be callable, got {type(model).__name__}")
        check_choice("kernel", kernel, KERNELS)
        check_backend(backend)
        check_int("num_warmup", num_warmup, low=0)
        check_int("num_samples", num_samples)
        check_int("num_chains", num_chains)
        check_choice("chain_method", chain_method, (None, "parallel", "sequential", "vectorized"))
        self.model = model
        self.kernel = kernel
        self.backend = backend
        self.num_warmup = int(num_warmup)
        self.num_samples = int(num_samples)
        self.num_chains = int(num_chains)
        self.kernel_kwargs = dict(kernel_kwargs or {})
        self.init_values = {k: np.asarray(v) for k, v in (init_values or {}).items()}
        self.chain_method = chain_method
        self.progress_bar = progress_bar
        self.posterior_predictive = posterior_predictive
        self.warn = warn
        self._sampler = None
        self._inputs = None
        self._converted = None
        self.timings_: dict[str, float] = {}

    def _convert(self, args, kwargs):
        if self._inputs is not None and _same_inputs(self._inputs, (args, kwargs)):
            return self._converted
        converted = as_backend_args(args, kwargs, self.backend, _positional_names(self.model))
        # a snapshot, so that data changed in place is not mistaken for the same data
        self._inputs, self._converted = _snapshot((args, kwargs)), converted
        return converted

    def run(self, *args, seed: int = 0, **kwargs):
        """Sample the posterior of ``model(*args, **kwargs)``.

        NumPy arrays among the arguments are converted to the backend's arrays.

        Returns:
            ``arviz.InferenceData`` with groups ``posterior``, ``sample_stats``,
            ``log_likelihood``, ``posterior_predictive``, ``observed_data`` and
            ``constant_data``; ``posterior.attrs["sampling_time"]`` is the wall time of the
            sampler (compilation included on a first run).
        """
        bargs, bkwargs = self._convert(args, kwargs)
        sites, observed = model_sites(
            self.model, bargs, bkwargs, self.backend, seed, self.init_values
        )
        start = time.perf_counter()
        if self.backend == "numpyro":
            draws, stats = self._run_numpyro(bargs, bkwargs, seed)
        else:
            nesting = max((s.plate_nesting for s in sites.values()), default=0)
            draws, stats = self._run_pyro(bargs, bkwargs, seed, nesting)
        self.timings_ = {"sampling": time.perf_counter() - start}
        start = time.perf_counter()
        chains, num = self.num_chains, self.num_samples
        flat = {k: v.reshape((chains * num,) + v.shape[2:]) for k, v in draws.items()}
        det, loglik, ppc = pointwise(
            self.model,
            flat,
            bargs,
            bkwargs,
            sites,
            self.backend,
            seed=seed + 1,
            predict=None if self.posterior_predictive else [],
        )
        unflat = lambda d: {k: v.reshape((chains, num) + v.shape[1:]) for k, v in d.items()}  # noqa: E731
        posterior = {**draws, **unflat(det)}
        idata = build_inference_data(
            posterior,
            sites,
            sample_stats=stats,
            log_likelihood=unflat(loglik),
            posterior_predictive=unflat(ppc),
            observed_data=observed,
            constant_data=constant_arguments(self.model, args, kwargs, observed),
            attrs={
                "inference_library": self.backend,
                "sampling_time": self.timings_["sampling"],
                "kernel": self.kernel,
            },
        )
        self.timings_["postprocess"] = time.perf_counter() - start
        if self.warn:
            check_diagnostics(idata)
        return idata

    def _run_numpyro(self, args, kwargs, seed):
        import jax
        from numpyro.infer import HMC, MCMC, NUTS

        from ._jax import enable_compilation_cache, progress_kernel

        enable_compilation_cache()
        with use_backend("numpyro"):
            if self._sampler is None:
                method = self.chain_method or (
                    "parallel" if jax.local_device_count() >= self.num_chains else "vectorized"
                )
                cls = NUTS if self.kernel == "nuts" else HMC
                kernel_kwargs = dict(self.kernel_kwargs)
                if self.init_values:
                    kernel_kwargs["init_strategy"] = init_strategy("numpyro", self.init_values)
                kernel = cls(self.model, **kernel_kwargs)
                # compiled whole, with a host callback 20 times per chain: NumPyro's own
                # single-chain bar steps the sampler from Python, at a cost per draw. Not for
                # vectorized chains, where the callback's condition would be batched and run
                # at every step: those keep NumPyro's bar.
                own_bar = self.progress_bar and method != "vectorized"
                if own_bar:
                    steps = self.num_warmup + self.num_samples
                    kernel = progress_kernel(kernel, self.num_chains * steps, max(1, steps // 20))
                self._sampler = MCMC(
                    kernel,
                    num_warmup=self.num_warmup,
                    num_samples=self.num_samples,
                    num_chains=self.num_chains,
                    chain_method=method,
                    progress_bar=self.progress_bar and not own_bar,
                )
            sampler = self._sampler
            bar = sampler.sampler if hasattr(sampler.sampler, "open") else None
            if bar is not None:
                bar.open()
            completed = False
            try:
                sampler.run(jax.random.PRNGKey(seed), *args, extra_fields=_NUMPYRO_FIELDS, **kwargs)
                draws = {
                    k: np.asarray(v)
                    for k, v in sampler.get_samples(group_by_chain=True).items()
                    if not k.startswith("_")
                }
                completed = True
            finally:
                if bar is not None:
                    bar.close(completed)
            extra = {k: np.asarray(v) for k, v in sampler.get_extra_fields(True).items()}
        n_steps = extra["num_steps"]
        stats = {
            "diverging": extra["diverging"].astype(bool),
            "energy": extra["energy"],
            "n_steps": n_steps,
            "tree_depth": np.floor(np.log2(np.maximum(n_steps, 1))).astype(int) + 1,
            "acceptance_rate": extra["accept_prob"],
            "step_size": extra["adapt_state.step_size"],
            "lp": -extra["potential_energy"],
        }
        return draws, stats

    def _run_pyro(self, args, kwargs, seed, max_plate_nesting: int):
        import torch
        from pyro.infer.mcmc import HMC, MCMC, NUTS

        cls = NUTS if self.kernel == "nuts" else HMC
        kernel_kwargs = dict(self.kernel_kwargs)
        # Pyro's default init, and its guess of the plate nesting, draw from the prior, which
        # an improper prior cannot do; the nesting is known from the model's trace
        kernel_kwargs.setdefault("init_strategy", init_strategy("pyro", self.init_values))
        kernel_kwargs.setdefault("max_plate_nesting", max_plate_nesting)
        per_chain, stats = [], []
        with use_backend("pyro"):
            for chain in range(self.num_chains):
                rows: list[tuple[float, float, float, int, int]] = []
                state = {"mean": 0.0, "div": 0, "calls": 0, "last_calls": 0, "wrapped": False}

                def hook(kernel, samples, stage, i, rows=rows, state=state):
                    if not state["wrapped"]:
                        # count potential-energy evaluations: one per leapfrog step
                        potential = kernel.potential_fn

                        def counted(z, potential=potential):
                            state["calls"] += 1
                            return potential(z)

                        kernel.potential_fn = counted
                        state["wrapped"] = True
                    steps = state["calls"] - state["last_calls"]
                    state["last_calls"] = state["calls"]
                    if stage != "Sample":
                        state["div"] = len(kernel._divergences)
                        return
                    n = len(rows) + 1
                    mean = kernel._mean_accept_prob
                    accept = n * mean - (n - 1) * state["mean"]
                    state["mean"] = mean
                    diverged = len(kernel._divergences) > state["div"]
                    state["div"] = len(kernel._divergences)
                    rows.append(
                        (
                            float(np.clip(accept, 0.0, 1.0)),
                            float(kernel.step_size),
                            -float(kernel._potential_energy_last),
                            int(diverged),
                            steps,
                        )
                    )

                kern = cls(self.model, **kernel_kwargs)
                sampler = MCMC(
                    kern,
                    num_samples=self.num_samples,
                    warmup_steps=self.num_warmup,
                    num_chains=1,
                    disable_progbar=not self.progress_bar,
                    hook_fn=hook,
                )
                with torch.random.fork_rng():
                    torch.manual_seed(seed * 1000 + chain)
                    sampler.run(*args, **kwargs)
                per_chain.append({k: _to_numpy(v) for k, v in sampler.get_samples().items()})
                stats.append(np.asarray(rows, dtype=float).reshape(-1, 5))
        draws = {k: np.stack([c[k] for c in per_chain]) for k in per_chain[0]}
        table = np.stack(stats)
        sample_stats = {
            "acceptance_rate": table[..., 0],
            "step_size": table[..., 1],
            "lp": table[..., 2],
            "diverging": table[..., 3].astype(bool),
            "n_steps": table[..., 4].astype(int),
            "tree_depth": np.floor(np.log2(np.maximum(table[..., 4], 1))).astype(int) + 1,
        }
        return draws, sample_stats


def mcmc(
    model: Callable,
    *args,
    kernel: str = "nuts",
    backend: str = "numpyro",
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    seed: int = 0,
    kernel_kwargs: Mapping[str, Any] | None = None,
    init_values: Mapping[str, Any] | None = None,
    chain_method: str | None = None,
    progress_bar: bool = True,
    posterior_predictive: bool = True,
    warn: bool = True,
    **kwargs,
):
    """Sample the posterior of ``model(*args, **kwargs)`` with NUTS or HMC.

    Example::

        from pyroapi import pyro, distributions as dist

        def eight_schools(sigma, y=None):
            mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
            tau = pyro.sample("tau", dist.HalfCauchy(5.0))
            with pyro.plate("school", len(sigma)):
                theta_raw = pyro.sample("theta_raw", dist.Normal(0.0, 1.0))
                pyro.sample("y", dist.Normal(mu + tau * theta_raw, sigma), obs=y)

        idata = ppdgm.inference.mcmc(eight_schools, sigma, y=y, num_chains=4, seed=0)

    Args:
        model: a write-once model (``from pyroapi import pyro, distributions as dist``).
        *args, **kwargs: the model's arguments; NumPy arrays are converted.
        See :class:`MCMC` for the others.

    Returns:
        ``arviz.InferenceData`` (posterior, sample_stats, log_likelihood,
        posterior_predictive, observed_data, constant_data).
    """
    sampler = MCMC(
        model,
        kernel=kernel,
        backend=backend,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        kernel_kwargs=kernel_kwargs,
        init_values=init_values,
        chain_method=chain_method,
        progress_bar=progress_bar,
        posterior_predictive=posterior_predictive,
        warn=warn,
    )
    return sampler.run(*args, seed=seed, **kwargs)
