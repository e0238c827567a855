"""Langevin dynamics over any target: a Pyro program, an energy, a log-density or a score.

Every method moves a batch of chains, a ``(num_chains, D)`` array of points on the real
line, with the gradient of the potential ``U = -log p``:

- ``"ula"``: the unadjusted Langevin algorithm, ``x' = x - eps * grad U(x) + sqrt(2 eps) xi``.
  Its draws are biased by O(eps); warmup tunes ``eps`` as MALA does, so the bias is that of
  a step MALA would accept about ``target_accept`` of the time.
- ``"mala"``: the same proposal with a Metropolis-Hastings correction, so the chains leave
  ``p`` exactly invariant. Warmup adapts a step size per chain toward ``target_accept``
  (dual averaging) and a diagonal preconditioner from the chain's own variance.
- ``"sgld"``: stochastic-gradient Langevin dynamics (Welling and Teh, 2011): ULA with a
  decaying step and a minibatch gradient, which a Pyro model declares the Pyro way, with a
  subsampled plate, ``pyro.plate("data", N, subsample_size=B)``.
- ``"annealed"``: annealed Langevin dynamics (Song and Ermon, 2019) over a decreasing list
  of noise levels, for a noise-conditional target ``score(x, sigma)`` or
  ``energy(x, sigma)``; the step at level ``sigma_i`` is ``eps * (sigma_i / sigma_L) ** 2``.

The results are ArviZ ``InferenceData`` like :func:`ppdgm.inference.mcmc`'s.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._utils import check_choice, check_int
from ..errors import ConfigError, ModelError
from .backend import as_backend_args, check_backend, use_backend

__all__ = ["KINDS", "METHODS", "langevin", "langevin_chain"]

METHODS = ("ula", "mala", "sgld", "annealed")
KINDS = ("model", "energy", "log_prob", "score")

_INIT_RADIUS = 2.0


# --------------------------------------------------------------------------------------
# the steps, written once for torch tensors and JAX arrays (operators and an array module)


def _proposal(x, grad, scale, noise):
    return x - scale * grad + (2.0 * scale) ** 0.5 * noise


def _mala_log_ratio(x, u, y, u_y, grad_y, scale, noise):
    """log of the Metropolis-Hastings ratio of the Langevin proposal ``y`` drawn from ``x``
    with standard normal ``noise`` (so that ``log q(y | x) = -|noise|^2 / 2 + const``)."""
    back = x - y + scale * grad_y
    return u - u_y - (back * back / (4.0 * scale)).sum(-1) + 0.5 * (noise * noise).sum(-1)


def langevin_chain(
    energy: Callable,
    x,
    num_steps: int,
    step_size: float,
    *,
    scale=None,
    low=None,
    high=None,
    noise=None,
):
    """``num_steps`` of unadjusted Langevin dynamics on ``exp(-energy)`` from the batch ``x``:
    ``x' = x - eps S^2 grad E(x) + sqrt(2 eps) S xi``, with ``S`` a per-coordinate ``scale``
    (a diagonal preconditioner, e.g. the data's standard deviation; default 1), the states
    clamped to ``[low, high]`` where given. The short-run sampler of energy-model training:
    no graph is kept and the energy's parameters get no gradient.

    ``noise`` decouples the noise from the step: ``x' = x - eps S^2 grad E(x) + noise S xi``,
    Langevin dynamics on ``exp(-E / T)`` at the temperature ``T = noise^2 / (2 eps)`` (None:
    ``sqrt(2 eps)``, T = 1). A cold chain (say eps 1, noise 0.01) is the short-run sampler of
    Du and Mordatch (2019) and Nijkamp et al. (2019) for high-dimensional data.

    Returns:
        the final states, detached.
    """
    import torch

    scale2 = step_size if scale is None else step_size * scale**2
    # the noise's standard deviation per coordinate: sqrt(2 eps) S, or noise S
    if noise is None:
        sd = (2.0 * scale2) ** 0.5
    else:
        sd = float(noise) if scale is None else float(noise) * scale
    x = x.detach()
    for _ in range(int(num_steps)):
        with torch.enable_grad():
            point = x.requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(point).sum(), point)
        x = x.detach() - scale2 * grad + sd * torch.randn_like(x)
        if low is not None:
            x = torch.maximum(torch.minimum(x, high), low)
    return x.detach()


class _DualAveraging:
    """Nesterov dual averaging of log step sizes (Hoffman and Gelman, 2014), per chain."""

    def __init__(self, eps: np.ndarray, target: float):
        self.mu = np.log(10.0 * eps)
        self.target = target
        self.hbar = np.zeros_like(eps)
        self.log_bar = np.log(eps)
        self.t = 0

    def update(self, accept: np.ndarray) -> np.ndarray:
        self.t += 1
        eta = 1.0 / (self.t + 10.0)
        self.hbar = (1.0 - eta) * self.hbar + eta * (self.target - accept)
        log_eps = self.mu - math.sqrt(self.t) / 0.05 * self.hbar
        weight = self.t**-0.75
        self.log_bar = weight * log_eps + (1.0 - weight) * self.log_bar
        return np.exp(log_eps)

    @property
    def final(self) -> np.ndarray:
        return np.exp(self.log_bar)


class _Welford:
    """Running per-chain mean and variance of the states."""

    def __init__(self, shape):
        self.n = 0
        self.mean = np.zeros(shape)
        self.m2 = np.zeros(shape)

    def add(self, x: np.ndarray) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def variance(self) -> np.ndarray:
        n = self.n
        var = self.m2 / max(n - 1, 1)
        # shrunk toward 1e-3 like Stan's, so a short window cannot give a zero scale
        return (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))


def _mass_windows(warm: int) -> list[tuple[int, int]]:
    """Stan's warmup plan: a fast first 15% (step size only), then windows doubling in length
    in which the chains' variance is measured for the preconditioner (each window's estimate
    lets the chains move further in the next), then a last 20% for the step size alone."""
    if warm < 20:
        return []
    start, stop = int(0.15 * warm), warm - int(0.2 * warm)
    size = max(10, min(25, (stop - start) // 7))
    windows = []
    while start < stop:
        end = start + size
        if end + 2 * size > stop:  # the next window would not fit: this one takes the rest
            end = stop
        windows.append((start, end))
        start, size = end, 2 * size
    return windows


# --------------------------------------------------------------------------------------
# array operations of the two backends


class _TorchOps:
    def __init__(self, device, dtype, seed: int):
        import torch

        self.torch = torch
        self.device, self.dtype = device, dtype
        self.gen = torch.Generator(device=device).manual_seed(int(seed))
        self.where = torch.where

    def normal(self, shape):
        return self.torch.randn(shape, generator=self.gen, device=self.device, dtype=self.dtype)

    def log_uniform(self, n: int):
        u = self.torch.rand(n, generator=self.gen, device=self.device, dtype=self.dtype)
        return u.clamp_min(1e-300).log()

    def array(self, a):
        return self.torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def mask(self, a):
        return self.torch.as_tensor(np.asarray(a, dtype=bool), device=self.device)

    @staticmethod
    def numpy(a) -> np.ndarray:
        return a.detach().cpu().numpy()

    @staticmethod
    def compile(fn):
        return fn


class _JaxOps:
    def __init__(self, seed: int):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.key = jax.random.PRNGKey(int(seed))
        self.where = jnp.where

    def _next(self):
        self.key, sub = self.jax.random.split(self.key)
        return sub

    def normal(self, shape):
        return self.jax.random.normal(self._next(), shape)

    def log_uniform(self, n: int):
        return self.jnp.log(self.jax.random.uniform(self._next(), (n,), minval=1e-38))

    def array(self, a):
        return self.jnp.asarray(np.asarray(a), dtype=self.jnp.result_type(float))

    def mask(self, a):
        return self.jnp.asarray(np.asarray(a, dtype=bool))

    @staticmethod
    def numpy(a) -> np.ndarray:
        return np.asarray(a)

    def compile(self, fn):
        return self.jax.jit(fn)


# --------------------------------------------------------------------------------------
# targets: each gives value_and_grad over flat (C, D) points


class _Target:
    """A target seen as flat points: ``value_and_grad(x, sigma)`` gives the potential
    ``U(x) = -log p(x)`` per chain (None for a score) and its gradient, both on the backend."""

    has_potential = True
    dim: int

    def value_and_grad(self, x, sigma=None):  # pragma: no cover - interface
        raise NotImplementedError

    def initial(self, num_chains: int, ops, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - interface

    def posterior(self, draws: np.ndarray) -> dict[str, np.ndarray]:
        """Draws ``(C, S, D)`` as named arrays ``(C, S, *shape)``."""
        raise NotImplementedError  # pragma: no cover - interface


class _FunctionTarget(_Target):
    """An energy, a log-density or a score over points of ``event_shape`` (torch)."""

    def __init__(self, fn, kind, event_shape, args, kwargs, init, noise_conditional):
        self.fn, self.kind = fn, kind
        self.event_shape = tuple(int(d) for d in event_shape)
        self.dim = int(np.prod(self.event_shape, dtype=np.int64))
        self.args, self.kwargs = args, kwargs
        self.init = init
        self.noise_conditional = noise_conditional
        self.has_potential = kind != "score"

    def _call(self, x, sigma):
        if self.noise_conditional:
            return self.fn(x, sigma, *self.args, **self.kwargs)
        return self.fn(x, *self.args, **self.kwargs)

    def value_and_grad(self, x, sigma=None):
        import torch

        n = x.shape[0]
        point = x.detach().reshape((n,) + self.event_shape)
        if self.kind == "score":
            with torch.no_grad():
                score = self._call(point, sigma)
            if not isinstance(score, torch.Tensor) or tuple(score.shape) != tuple(point.shape):
                got = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score)
                raise ModelError(
                    f"the score function must return a tensor shaped like its input "
                    f"{tuple(point.shape)}, got {got}"
                )
            return None, -score.reshape(n, -1).to(x.dtype)
        with torch.enable_grad():
            point.requires_grad_(True)
            value = self._call(point, sigma)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (n,):
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise ModelError(
                    f"the {self.kind} function must map a batch of {n} points to {n} values "
                    f"(shape ({n},)), got {got}"
                )
            potential = value if self.kind == "energy" else -value
            (grad,) = torch.autograd.grad(potential.sum(), point)
        return potential.detach().to(x.dtype), grad.reshape(n, -1).to(x.dtype)

    def initial(self, num_chains, ops, rng):
        if self.init is None:
            return rng.standard_normal((num_chains, self.dim))
        return self.init.reshape(num_chains, self.dim)

    def posterior(self, draws):
        c, s = draws.shape[:2]
        return {"x": draws.reshape((c, s) + self.event_shape)}


def _is_subsample(fn) -> bool:
    return type(fn).__name__ == "_Subsample"


class _PyroModelTarget(_Target):
    """The potential of a Pyro program's latent sites on the unconstrained scale, the chains
    batched with ``torch.func.vmap`` (one chain at a time where the program cannot be)."""

    def __init__(self, model, args, kwargs, init_values, seed):
        import pyro.poutine as poutine
        import torch
        from pyro.infer.autoguide.initialization import InitMessenger
        from torch.distributions import biject_to

        from .posterior import init_strategy

        self.model, self.args, self.kwargs = model, args, kwargs
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(seed)
            with poutine.trace() as tracer, InitMessenger(init_strategy("pyro", init_values)):
                model(*args, **kwargs)
        self.names, self.transforms, self.shapes, self.free_shapes = [], {}, {}, {}
        self.subsampled = False
        start = {}
        for name, site in tracer.trace.nodes.items():
            if site["type"] != "sample":
                continue
            if _is_subsample(site["fn"]):
                fn = site["fn"]
                self.subsampled |= fn.subsample_size is not None and fn.subsample_size < fn.size
                continue
            if site["is_observed"]:
                continue
            if site["fn"].support.is_discrete:
                raise ConfigError(
                    f"latent site {name!r} is discrete; Langevin dynamics moves continuous "
                    "latents only (marginalize it out, or use Gibbs)"
                )
            t = biject_to(site["fn"].support)
            value = site["value"].detach()
            self.names.append(name)
            self.transforms[name] = t
            self.shapes[name] = tuple(value.shape)
            free = t.inv(value)
            self.free_shapes[name] = tuple(free.shape)
            start[name] = free.reshape(-1)
        self.sizes = [int(np.prod(self.free_shapes[n], dtype=np.int64)) for n in self.names]
        self.dim = int(sum(self.sizes))
        self.given = {n: start[n] for n in self.names if n in dict(init_values or {})}
        self.start = start
        self._vmapped = None
        self._vectorize = True

    def _unflatten(self, flat):
        out, i = {}, 0
        for name, size in zip(self.names, self.sizes, strict=True):
            out[name] = flat[..., i : i + size].reshape(flat.shape[:-1] + self.free_shapes[name])
            i += size
        return out

    def _potential(self, flat):
        import pyro.poutine as poutine
        from pyro.distributions.util import scale_and_mask

        free = self._unflatten(flat)
        values = {n: self.transforms[n](u) for n, u in free.items()}
        trace = poutine.trace(poutine.condition(self.model, values)).get_trace(
            *self.args, **self.kwargs
        )
        log_p = 0.0
        for site in trace.nodes.values():
            if site["type"] != "sample" or _is_subsample(site["fn"]):
                continue
            lp = site["fn"].log_prob(site["value"])
            log_p = log_p + scale_and_mask(lp, site["scale"], site["mask"]).sum()
        for name, u in free.items():
            t = self.transforms[name]
            log_p = log_p + t.log_abs_det_jacobian(u, values[name]).sum()
        return -log_p

    def value_and_grad(self, x, sigma=None):
        import pyro
        import torch
        from torch.func import grad_and_value, vmap

        with pyro.validation_enabled(False):
            if self._vectorize:
                if self._vmapped is None:
                    self._vmapped = vmap(grad_and_value(self._potential), randomness="different")
                try:
                    grad, value = self._vmapped(x)
                    return value.detach(), grad.detach()
                except Exception:  # noqa: BLE001 - a program vmap cannot batch runs per chain
                    self._vectorize = False
            grads, values = [], []
            for row in x:
                with torch.enable_grad():
                    point = row.detach().requires_grad_(True)
                    value = self._potential(point)
                    (grad,) = torch.autograd.grad(value, point)
                grads.append(grad)
                values.append(value.detach())
            return torch.stack(values), torch.stack(grads)

    def initial(self, num_chains, ops, rng):
        x = rng.uniform(-_INIT_RADIUS, _INIT_RADIUS, size=(num_chains, self.dim))
        i = 0
        for name, size in zip(self.names, self.sizes, strict=True):
            if name in self.given:
                x[:, i : i + size] = self.given[name].cpu().numpy()
            i += size
        return x

    def posterior(self, draws):
        import torch

        c, s, d = draws.shape
        flat = torch.as_tensor(draws.reshape(c * s, d), dtype=torch.get_default_dtype())
        out = {}
        with torch.no_grad():
            for name, u in self._unflatten(flat).items():
                value = self.transforms[name](u)
                out[name] = value.reshape((c, s) + self.shapes[name]).cpu().numpy()
        return out


class _NumPyroModelTarget(_Target):
    """The potential of a NumPyro program, from :func:`numpyro.infer.util.initialize_model`,
    its gradient vectorized over chains and compiled by JAX."""

    def __init__(self, model, args, kwargs, init_values, seed):
        import jax
        from jax.flatten_util import ravel_pytree
        from numpyro.infer.util import initialize_model

        from .posterior import init_strategy

        info = initialize_model(
            jax.random.PRNGKey(seed),
            model,
            model_args=args,
            model_kwargs=kwargs,
            init_strategy=init_strategy("numpyro", init_values),
        )
        z = info.param_info.z
        flat, self.unravel = ravel_pytree(z)
        self.start = np.asarray(flat)
        self.dim = int(self.start.size)
        self.names = list(z)
        self.given = bool(init_values)
        potential = info.potential_fn
        post = info.postprocess_fn

        def value_and_grad(x):
            return jax.vmap(jax.value_and_grad(lambda f: potential(self.unravel(f))))(x)

        self._vg = jax.jit(value_and_grad)
        self._post = jax.jit(jax.vmap(lambda f: post(self.unravel(f))))
        self.subsampled = False

    def value_and_grad(self, x, sigma=None):
        return self._vg(x)

    def initial(self, num_chains, ops, rng):
        if self.given:
            return np.broadcast_to(self.start, (num_chains, self.dim)).copy()
        return rng.uniform(-_INIT_RADIUS, _INIT_RADIUS, size=(num_chains, self.dim))

    def posterior(self, draws):
        c, s, d = draws.shape
        values = self._post(draws.reshape(c * s, d))
        return {
            n: np.asarray(values[n]).reshape((c, s) + np.shape(values[n])[1:]) for n in self.names
        }


# --------------------------------------------------------------------------------------
# the sampler


def _step_schedule(step_size, method: str, name: str = "step_size") -> Callable[[int], float]:
    if callable(step_size):
        return step_size
    eps = float(step_size)
    if not math.isfinite(eps) or eps <= 0:
        raise ConfigError(f"{name} must be a positive number or a callable, got {step_size!r}")
    if method == "sgld":
        # a(1 + t/100)^-0.55: decays, with the sum of steps diverging and of squares finite
        return lambda t: eps * (1.0 + t / 100.0) ** -0.55
    return lambda t: eps


def _resolve_kind(target, kind):
    import torch

    if kind is None:
        return "log_prob" if isinstance(target, torch.distributions.Distribution) else "model"
    return check_choice("kind", kind, KINDS)


def _function_target(target, kind, method, args, kwargs, init, event_shape, num_chains):
    import torch

    is_dist = isinstance(target, torch.distributions.Distribution)
    fn = target.log_prob if is_dist else target
    if is_dist:
        if target.batch_shape:
            raise ConfigError(
                "a distribution target must have no batch shape (use .to_event() or "
                "pyro.distributions.Independent)"
            )
        event_shape = tuple(target.event_shape) if event_shape is None else event_shape
    if init is not None:
        init = np.array(init.detach().cpu() if hasattr(init, "detach") else init, dtype=float)
        if not np.all(np.isfinite(init)):
            raise ConfigError("init holds NaN or infinite values")
        if event_shape is None:
            if init.ndim < 1:
                raise ConfigError("init must be shaped (num_chains, *event_shape)")
            event_shape = init.shape[1:]
        event_shape = tuple(int(d) for d in event_shape)
        if init.shape == event_shape:  # one point for every chain
            init = np.broadcast_to(init, (num_chains or 4,) + event_shape).copy()
        if init.shape[1:] != event_shape:
            raise ConfigError(
                f"init has shape {init.shape}; expected (num_chains, *event_shape) with "
                f"event_shape {event_shape}"
            )
        if num_chains is not None and init.shape[0] != num_chains:
            raise ConfigError(f"init holds {init.shape[0]} chains but num_chains={num_chains}")
    if event_shape is None:
        raise ConfigError(
            f"a {kind} target needs the shape of a point: pass event_shape=... or init=..."
        )
    return _FunctionTarget(fn, kind, event_shape, args, kwargs, init, method == "annealed")


def _check_levels(noise_levels) -> np.ndarray:
    if noise_levels is None:
        raise ConfigError("annealed Langevin needs noise_levels (a decreasing list of sigmas)")
    levels = np.asarray(noise_levels, dtype=float).reshape(-1)
    if levels.size == 0 or not np.all(np.isfinite(levels)) or np.any(levels <= 0):
        raise ConfigError(f"noise_levels must be positive and finite, got {noise_levels!r}")
    if np.any(np.diff(levels) > 0):
        raise ConfigError("noise_levels must decrease (the largest noise first)")
    return levels


def langevin(
    target: Any,
    *args,
    method: str = "mala",
    step_size: float | Callable[[int], float] | None = None,
    num_steps: int = 1000,
    num_warmup: int | None = None,
    num_chains: int | None = None,
    seed: int = 0,
    backend: str = "pyro",
    kind: str | None = None,
    init: Any = None,
    init_values: Mapping[str, Any] | None = None,
    event_shape: Sequence[int] | None = None,
    noise_levels: Sequence[float] | None = None,
    target_accept: float | None = None,
    adapt_mass: bool = True,
    thin: int = 1,
    device: str | None = None,
    progress_bar: bool = True,
    posterior_predictive: bool = True,
    warn: bool = True,
    **kwargs,
):
    """Sample ``target`` with Langevin dynamics, many chains at once.

    Examples::

        # the posterior of a Pyro program (constrained sites on the real line)
        idata = langevin(model, x, y=y, method="mala", num_chains=4, seed=0)
        idata.sample_stats["acceptance_rate"].mean()

        # an energy over points of shape (2,), 1000 chains batched on the device
        idata = langevin(lambda x: (x**2).sum(-1) / 2, kind="energy", event_shape=(2,),
                         num_chains=1000, method="ula", step_size=0.05)

        # annealed Langevin with a noise-conditional score network s(x, sigma)
        idata = langevin(score_net, kind="score", method="annealed", step_size=2e-5,
                         noise_levels=np.geomspace(1.0, 0.01, 10), init=noise)

    Args:
        target: one of
            - a Pyro program (``kind="model"``, the default for a callable): the sampler
              moves its latent sites, each mapped to the real line by
              ``biject_to(support)``, under the potential of its trace (log-Jacobians
              included); ``*args, **kwargs`` are the program's arguments (NumPy arrays are
              converted). With ``backend="numpyro"`` a NumPyro (``pyroapi``) program.
            - an energy ``E(x, *args, **kwargs)`` (``kind="energy"``), mapping a batch of
              points ``(N, *event_shape)`` to ``(N,)`` energies, ``p(x) ~ exp(-E(x))``;
            - a log-density (``kind="log_prob"``, the default for a torch/Pyro
              ``Distribution``, whose ``log_prob`` is used);
            - a score ``s(x) = grad log p(x)`` (``kind="score"``), mapping ``(N, *shape)`` to
              the same shape: ULA and annealed Langevin only, having no density to accept
              with. For ``method="annealed"`` the function takes the noise level second,
              ``fn(x, sigma, *args, **kwargs)``, with ``sigma`` a 0-d tensor.
        method: "ula", "mala", "sgld" or "annealed" (see the module's documentation).
        step_size: the Langevin step ``eps`` (the variance of the noise is ``2 eps``), a
            float or a function of the step number (counting warmup). None (MALA, ULA on a
            density): start from a guess and adapt it during warmup toward
            ``target_accept``. SGLD needs one and decays it as ``eps (1 + t/100)^-0.55``
            (a callable sets another schedule); annealed Langevin needs one, the step at the
            smallest noise level.
        num_steps: steps kept after warmup, per chain (per noise level for annealed, whose
            draws are those at the last level).
        num_warmup: steps to discard first, with adaptation (default 500; annealed
            Langevin has none, its larger noise levels play that part).
        num_chains: chains, run as one batch (default 4, or the length of ``init``).
        seed: seeds the chains' starting points and noise.
        backend: "pyro" (PyTorch) or "numpyro" (JAX; a Pyro/NumPyro program only, ULA or
            MALA).
        kind: what ``target`` is: "model", "energy", "log_prob" or "score".
        init: starting points for an energy/log-density/score target, ``(num_chains,
            *event_shape)`` or one point for every chain (default: standard normal).
        init_values: starting values of a program's latent sites by name (constrained);
            the others start uniform in [-2, 2] on the real line.
        event_shape: the shape of one point of a function target (else from ``init``).
        noise_levels: annealed Langevin's sigmas, largest first.
        target_accept: the acceptance rate warmup aims at: by default 0.574 for MALA (optimal
            in high dimension) and 0.98 for ULA, whose draws carry a bias that grows with the
            step.
        adapt_mass: also adapt a diagonal preconditioner (the chain's variance) in warmup.
        thin: keep every ``thin``-th step.
        device: where the chains of a function target live (default: the target's
            parameters' device, else CPU).
        progress_bar: show a progress bar.
        posterior_predictive: for a program, also draw its observed sites at each draw.
        warn: issue :class:`ppdgm.errors.ConvergenceWarning` for R-hat, ESS, divergences.

    Returns:
        ``arviz.InferenceData``. ``posterior`` holds the program's latent sites (and its
        deterministic sites), or ``x`` for a function target; ``sample_stats`` holds
        ``step_size``, ``lp`` (``-U``, log-Jacobians included) where there is a density,
        ``diverging`` (a non-finite potential or gradient: the move was refused), and for
        MALA ``acceptance_rate`` (the Metropolis-Hastings probability of each step) and
        ``accepted``; for a program also ``log_likelihood``, ``posterior_predictive`` and
        ``observed_data`` (not when the program subsamples, whose pointwise values would be
        of a random minibatch).

    Raises:
        ConfigError: an unknown method, kind or backend, a bad step size, shape or option,
            or a method the target cannot support (MALA needs a density).
        ModelError: the program or function failed or returned the wrong shape.
    """
    import torch

    check_choice("method", method, METHODS)
    check_backend(backend)
    kind = _resolve_kind(target, kind)
    if kind == "model" and not callable(target):
        raise ConfigError(f"target must be callable, got {type(target).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    check_int("num_steps", num_steps)
    check_int("thin", thin)
    if num_chains is not None:
        check_int("num_chains", num_chains)
    if num_warmup is None:
        num_warmup = 0 if method == "annealed" else 500
    check_int("num_warmup", num_warmup, low=0)
    if method == "annealed" and num_warmup:
        raise ConfigError(
            "annealed Langevin has no warmup (its larger noise levels play that part); "
            "leave num_warmup unset"
        )
    if target_accept is None:
        target_accept = 0.98 if method == "ula" else 0.574
    if not 0.0 < float(target_accept) < 1.0:
        raise ConfigError(f"target_accept must lie in (0, 1), got {target_accept!r}")
    if num_steps // thin < 1:
        raise ConfigError(f"thin={thin} keeps no draw of num_steps={num_steps}")
    levels = _check_levels(noise_levels) if method == "annealed" else None
    if method != "annealed" and noise_levels is not None:
        raise ConfigError("noise_levels is for method='annealed'")
    if method in ("sgld", "annealed") and step_size is None:
        raise ConfigError(f"method {method!r} needs a step_size")
    if kind == "model":
        if init is not None or event_shape is not None:
            raise ConfigError(
                "init and event_shape are for function targets; a program takes init_values"
            )
        if method == "annealed":
            raise ConfigError(
                "annealed Langevin needs a noise-conditional target, energy(x, sigma) or "
                "score(x, sigma), not a program"
            )
    elif init_values:
        raise ConfigError("init_values names a program's sites; a function target takes init")
    if backend == "numpyro" and (kind != "model" or method not in ("ula", "mala")):
        raise ConfigError(
            "backend='numpyro' runs ULA and MALA on a program; energy, score, SGLD "
            "(minibatches from a subsampled plate) and annealed targets run on backend='pyro'"
        )
    if kind == "score" and method == "mala":
        raise ConfigError(
            "MALA needs a density to accept with; a score target runs ULA or annealed"
        )
    if kind == "score" and step_size is None:
        raise ConfigError("a score target has no density to adapt the step to: pass step_size")

    # the target
    if kind == "model":
        from .posterior import model_sites
        from .sampling import _positional_names

        bargs, bkwargs = as_backend_args(args, kwargs, backend, _positional_names(target))
        # the program's sites, traced once; a failing program is named with its last site
        sites, observed = model_sites(target, bargs, bkwargs, backend, seed, init_values)
        program = (bargs, bkwargs, sites, observed)
        with use_backend(backend):
            if backend == "numpyro":
                tgt = _NumPyroModelTarget(target, bargs, bkwargs, init_values, seed)
            else:
                tgt = _PyroModelTarget(target, bargs, bkwargs, init_values, seed)
        num_chains = 4 if num_chains is None else num_chains
        dev = torch.device("cpu")
    else:
        tgt = _function_target(target, kind, method, args, kwargs, init, event_shape, num_chains)
        num_chains = tgt.init.shape[0] if tgt.init is not None else (num_chains or 4)
        if device is not None:
            from .._utils import resolve_device

            dev = resolve_device(device)
        else:
            params = [p for p in getattr(target, "parameters", lambda: [])()]
            dev = params[0].device if params else torch.device("cpu")
    ops = _JaxOps(seed) if backend == "numpyro" else _TorchOps(dev, torch.get_default_dtype(), seed)
    rng = np.random.default_rng(seed)
    x0 = tgt.initial(num_chains, ops, rng)

    start = time.perf_counter()
    with use_backend(backend):
        draws, stats = _Run(
            tgt,
            ops,
            method=method,
            step_size=step_size,
            num_warmup=num_warmup,
            num_steps=num_steps,
            thin=thin,
            levels=levels,
            target_accept=float(target_accept),
            adapt_mass=adapt_mass,
            progress_bar=progress_bar,
        ).run(x0)
    elapsed = time.perf_counter() - start
    posterior = tgt.posterior(draws)
    attrs = {
        "inference_library": backend,
        "sampling_time": elapsed,
        "method": method,
        "kind": kind,
    }
    with warnings.catch_warnings():
        # many short chains (a batch of particles) are the usual shape here
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        if kind != "model":
            from .posterior import build_inference_data

            idata = build_inference_data(posterior, {}, sample_stats=stats, attrs=attrs)
        else:
            idata = _program_inference_data(
                target,
                args,
                kwargs,
                program,
                backend,
                seed,
                posterior,
                stats,
                attrs,
                tgt,
                posterior_predictive,
            )
    if warn:
        from .posterior import check_diagnostics

        check_diagnostics(idata)
    return idata


def _program_inference_data(
    model, args, kwargs, program, backend, seed, posterior, stats, attrs, tgt, predictive
):
    from .posterior import build_inference_data, constant_arguments, pointwise

    bargs, bkwargs, sites, observed = program
    c, s = next(iter(posterior.values())).shape[:2]
    groups: dict[str, Any] = {}
    if not tgt.subsampled:
        flat = {k: v.reshape((c * s,) + v.shape[2:]) for k, v in posterior.items()}
        det, loglik, ppc = pointwise(
            model,
            flat,
            bargs,
            bkwargs,
            sites,
            backend,
            seed=seed + 1,
            predict=None if predictive else [],
        )
        unflat = lambda d: {k: v.reshape((c, s) + v.shape[1:]) for k, v in d.items()}  # noqa: E731
        posterior = {**posterior, **unflat(det)}
        groups = {
            "log_likelihood": unflat(loglik),
            "posterior_predictive": unflat(ppc),
            "observed_data": observed,
        }
    return build_inference_data(
        posterior,
        sites,
        sample_stats=stats,
        constant_data=constant_arguments(model, args, kwargs, observed),
        attrs=attrs,
        **groups,
    )


class _Run:
    """One run of the chains: warmup with adaptation, then the kept steps."""

    def __init__(
        self,
        target,
        ops,
        *,
        method,
        step_size,
        num_warmup,
        num_steps,
        thin,
        levels,
        target_accept,
        adapt_mass,
        progress_bar,
    ):
        self.target, self.ops, self.method = target, ops, method
        self.num_warmup, self.num_steps, self.thin = num_warmup, num_steps, thin
        self.levels = levels
        self.target_accept = target_accept
        self.adapt = step_size is None
        self.adapt_mass = bool(adapt_mass) and self.adapt
        self.schedule = None if step_size is None else _step_schedule(step_size, method)
        self.progress_bar = progress_bar
        vg = target.value_and_grad
        where = ops.where

        def mala(x, u, g, scale, noise, log_unif):
            y = _proposal(x, g, scale, noise)
            u_y, g_y = vg(y)
            log_ratio = _mala_log_ratio(x, u, y, u_y, g_y, scale, noise)
            ok = (log_unif < log_ratio)[:, None]  # NaN compares false: refused
            return where(ok, y, x), where(ok[:, 0], u_y, u), where(ok, g_y, g), log_ratio

        def ula(x, g, scale, noise, sigma):
            y = _proposal(x, g, scale, noise)
            u_y, g_y = vg(y, sigma)
            return y, u_y, g_y

        self._mala = ops.compile(mala)
        self._ula = ula if method in ("sgld", "annealed") else ops.compile(ula)

    def _values(self, x, sigma=None):
        return self.target.value_and_grad(x, sigma)

    def _initial_step(self, x, u, g, precond) -> np.ndarray:
        """A first step size per chain: halve or double from 0.1 until the acceptance
        probability of one proposal crosses one half (Hoffman and Gelman's heuristic)."""
        ops = self.ops
        c = x.shape[0]
        eps = np.full(c, 0.1)
        direction = None
        for _ in range(40):
            scale = ops.array(eps[:, None] * precond)
            noise = ops.normal(x.shape)
            _, _, _, log_ratio = self._mala(x, u, g, scale, noise, ops.log_uniform(c))
            lr = np.nan_to_num(ops.numpy(log_ratio), nan=-np.inf)
            up = lr > math.log(0.5)
            if direction is None:
                direction = up
            crossed = up != direction
            if crossed.all():
                break
            eps = np.where(crossed, eps, np.where(direction, eps * 2.0, eps * 0.5))
            eps = np.clip(eps, 1e-8, 1e4)
        return eps

    def run(self, x0: np.ndarray):
        from tqdm.auto import tqdm

        ops, method = self.ops, self.method
        c, d = x0.shape
        x = ops.array(x0)
        sigma0 = None
        if method == "annealed":
            sigma0 = ops.array(self.levels[0]).reshape(())
        u, g = self._values(x, sigma0)
        if not bool(np.all(np.isfinite(ops.numpy(g)))) or (
            u is not None and not np.all(np.isfinite(ops.numpy(u)))
        ):
            raise ModelError(
                "the potential or its gradient is not finite at the starting points; pass "
                "init (or init_values) inside the support"
            )
        precond = np.ones((c, d))
        if self.adapt:
            eps = self._initial_step(x, u, g, precond)
            averager = _DualAveraging(eps, self.target_accept)
        else:
            eps = np.full(c, self.schedule(0))
        warm = self.num_warmup
        windows = _mass_windows(warm) if self.adapt_mass else []
        moments = _Welford((c, d))

        levels = self.levels if method == "annealed" else [None]
        per_level = self.num_steps if method == "annealed" else self.num_steps + warm
        total = per_level * len(levels)
        kept = self.num_steps // self.thin
        out = np.empty((c, kept, d))
        keys = ["step_size", "diverging"]
        if self.target.has_potential:
            keys.append("lp")
        if method == "mala":
            keys += ["acceptance_rate", "accepted"]
        stats = {k: np.empty((c, kept)) for k in keys}
        bar = tqdm(total=total, desc=f"langevin ({method})", disable=not self.progress_bar)
        t, scale, scale_of = 0, None, None
        try:
            for li, level in enumerate(levels):
                sigma = None if level is None else ops.array(level).reshape(())
                if level is not None and li > 0:
                    u, g = self._values(x, sigma)
                for i in range(per_level):
                    warming = t < warm
                    if level is not None:
                        eps = np.full(c, self.schedule(t) * (level / self.levels[-1]) ** 2)
                    elif not self.adapt:
                        eps = np.full(c, self.schedule(t))
                    if warming or scale_of is None or not np.array_equal(eps, scale_of):
                        # to the device only when the step changes (each step of warmup)
                        scale, scale_of = ops.array(eps[:, None] * precond), eps
                    noise = ops.normal((c, d))
                    if method == "mala" or (warming and self.adapt):
                        x_new, u_new, g_new, log_ratio = self._mala(
                            x, u, g, scale, noise, ops.log_uniform(c)
                        )
                        lr = ops.numpy(log_ratio)
                        accept_prob = np.exp(np.minimum(np.nan_to_num(lr, nan=-np.inf), 0.0))
                        accepted = None
                        diverging = ~np.isfinite(lr)
                        if method == "mala":
                            accepted = ops.numpy(x_new != x).any(-1)
                        x, u, g = x_new, u_new, g_new
                    else:
                        y, u_y, g_y = self._ula(x, g, scale, noise, sigma)
                        finite = np.isfinite(ops.numpy(g_y)).all(-1)
                        if u_y is not None:
                            finite &= np.isfinite(ops.numpy(u_y))
                        diverging = ~finite
                        if diverging.any():
                            keep = ops.mask(finite)
                            x = ops.where(keep[:, None], y, x)
                            g = ops.where(keep[:, None], g_y, g)
                            if u_y is not None:
                                u = ops.where(keep, u_y, u)
                        else:
                            x, u, g = y, u_y, g_y
                    if warming:
                        if self.adapt:
                            eps = averager.update(accept_prob)
                            if t == warm - 1:
                                eps = averager.final
                        if windows and windows[0][0] <= t < windows[0][1]:
                            moments.add(ops.numpy(x))
                        if windows and t == windows[0][1] - 1:
                            windows.pop(0)
                            precond = moments.variance()
                            moments = _Welford((c, d))
                            averager = _DualAveraging(eps, self.target_accept)
                    else:
                        step = (t - warm) if level is None else i
                        if level is not None and li < len(levels) - 1:
                            step = -1
                        if step >= 0 and (step + 1) % self.thin == 0:
                            j = step // self.thin
                            out[:, j] = ops.numpy(x)
                            stats["step_size"][:, j] = eps
                            stats["diverging"][:, j] = diverging
                            if "lp" in stats:
                                stats["lp"][:, j] = -ops.numpy(u)
                            if method == "mala":
                                stats["acceptance_rate"][:, j] = accept_prob
                                stats["accepted"][:, j] = accepted
                    t += 1
                    bar.update(1)
        finally:
            bar.close()
        stats["diverging"] = stats["diverging"].astype(bool)
        if "accepted" in stats:
            stats["accepted"] = stats["accepted"].astype(bool)
        return out, stats
