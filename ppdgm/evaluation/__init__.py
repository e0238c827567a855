"""Evaluation: ELBO, importance-weighted log-likelihood bounds in memory-bounded chunks, bits/dim,
and the log partition function of energy models (exact by enumeration, annealed importance
sampling with a reverse run that brackets it)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from .._utils import check_choice
from ..inference.traces import log_weights
from .features import (
    DigitsClassifier,
    digits_classifier,
    digits_features,
    extract_features,
    inception_score,
)
from .quality import (
    classifier_two_sample_test,
    frechet_distance,
    kernel_distance,
    median_bandwidth,
    mmd_test,
    mode_coverage,
    parzen_log_likelihood,
    precision_recall,
    sample_quality,
)

__all__ = [
    "elbo",
    "iwae_bound",
    "bits_per_dim",
    "ais",
    "AISResult",
    "EnergyAnnealingPath",
    "log_partition",
    "log_partition_grid",
    "frechet_distance",
    "kernel_distance",
    "mmd_test",
    "classifier_two_sample_test",
    "precision_recall",
    "parzen_log_likelihood",
    "mode_coverage",
    "median_bandwidth",
    "sample_quality",
    "DigitsClassifier",
    "digits_classifier",
    "digits_features",
    "extract_features",
    "inception_score",
]


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _particle_chunk(num_particles: int, rows: int, dims: int, max_elements: int) -> int:
    return max(1, min(num_particles, max_elements // max(1, rows * dims)))


@torch.no_grad()
def iwae_bound(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    *args,
    num_particles: int = 1000,
    batch_size: int = 128,
    max_elements: int = 2**23,
    max_plate_nesting: int = 1,
    **kwargs,
) -> torch.Tensor:
    """Per-example importance-weighted bound on log p(x) (Burda et al., 2016), in nats.

    ``log (1/K) sum_k p(x, z_k) / q(z_k | x)`` with K = ``num_particles``. The particles are
    drawn in chunks, so that no more than about ``max_elements`` data values are held at once,
    and merged with a running log-sum-exp; the result does not depend on the chunking.

    Args:
        model, guide: the programs, called as ``fn(x_chunk, *args_chunk, **kwargs)``.
        x: (N, *data_shape) data.
        *args: further per-example tensors (e.g. labels), sliced with ``x``.

    Returns:
        (N,) tensor of bounds.
    """
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    dims = math.prod(x.shape[1:])
    out = []
    for rows in _chunks(x.shape[0], batch_size):
        xb, ab = x[rows], [a[rows] for a in args]
        n = xb.shape[0]
        step = _particle_chunk(num_particles, n, dims, max_elements)
        acc = None
        for parts in _chunks(num_particles, step):
            k = parts.stop - parts.start
            lw = log_weights(
                model,
                guide,
                xb,
                *ab,
                num_particles=k,
                max_plate_nesting=max_plate_nesting,
                **kwargs,
            )
            lse = torch.logsumexp(lw, dim=0)
            acc = lse if acc is None else torch.logaddexp(acc, lse)
        out.append(acc - math.log(num_particles))
    return torch.cat(out)


@torch.no_grad()
def elbo(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    *args,
    num_particles: int = 1,
    batch_size: int = 128,
    max_plate_nesting: int = 1,
    **kwargs,
) -> torch.Tensor:
    """Per-example Monte Carlo ELBO, averaged over ``num_particles`` draws, in nats; (N,)."""
    out = []
    for rows in _chunks(x.shape[0], batch_size):
        lw = log_weights(
            model,
            guide,
            x[rows],
            *[a[rows] for a in args],
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            **kwargs,
        )
        out.append(lw.mean(0))
    return torch.cat(out)


def bits_per_dim(nll_nats: float | torch.Tensor, num_dims: int) -> float | torch.Tensor:
    """Convert a negative log-likelihood in nats per example to bits per dimension."""
    return nll_nats / (num_dims * math.log(2.0))


@dataclasses.dataclass
class AISResult:
    """The result of :func:`ais`.

    Attributes:
        log_z: the forward estimate, log of the mean importance weight. Its exponential is
            unbiased for Z, so by Jensen's inequality log_z underestimates log Z on average (a
            stochastic lower bound): log-likelihoods computed with it err on the high side.
        log_z_reverse: the reverse estimate (chains run from the model's samples down to the
            base), or None. Its exponential is unbiased for 1/Z when the chains start at exact
            samples of the model, so it overestimates log Z on average (a stochastic upper
            bound); with approximate samples (long Gibbs runs) the bound is approximate too.
        log_weights: (num_chains,) forward log importance weights (each chain's own estimate
            of log Z is ``log_z_base + log_weights``).
        log_weights_reverse: (M,) reverse log weights, estimates of log(Z_base / Z), or None.
        log_z_base: log Z of the base distribution.
        ess: effective sample size of the forward weights (close to 1 means one chain
            dominates: use more intermediate distributions).
        num_betas: the number of intermediate distributions.
    """

    log_z: float
    log_z_reverse: float | None
    log_weights: torch.Tensor
    ess: float
    num_betas: int
    log_weights_reverse: torch.Tensor | None = None
    log_z_base: float = 0.0

    def __float__(self) -> float:
        return self.log_z


def _mean_log(lw: torch.Tensor) -> float:
    return float(torch.logsumexp(lw, 0) - math.log(lw.shape[0]))


@torch.no_grad()
def ais(
    path,
    num_chains: int = 100,
    num_betas: int = 10_000,
    *,
    reverse_from: torch.Tensor | None = None,
    seed: int | None = 0,
) -> AISResult:
    """Annealed importance sampling of log Z (Neal, 2001), for any model that gives a path.

    Chains start at exact samples of a base distribution whose normalizer is known and move
    through ``num_betas`` distributions p_beta, beta evenly spaced from 0 to 1, by transitions
    that leave each invariant; the log weights accumulate ``log p*_{k+1}(v) - log p*_k(v)``.
    With ``reverse_from`` (samples of the model, e.g. long Gibbs chains), the same path is run
    backwards from them, giving an estimate that errs the other way (Burda et al., 2015), so
    the two bracket log Z on average (see :class:`AISResult`).

    Args:
        path: the annealing path, e.g. :meth:`ppdgm.models.RBM.annealing_path`: it has
            ``log_z_base``, ``sample_base(n)``, ``log_unnormalized(v, beta)`` (shape (n,)) and
            ``transition(v, beta)``.
        num_chains: independent chains (the weights are averaged over them).
        num_betas: intermediate distributions, including both ends (at least 2).
        reverse_from: (M, ...) samples of the model to start the reverse run from.
        seed: seeds the chains (None: the current random state); the caller's random state is
            left as it was.
    """
    from .._utils import check_int

    check_int("num_chains", num_chains)
    check_int("num_betas", num_betas, low=2)
    betas = torch.linspace(0.0, 1.0, int(num_betas), dtype=torch.float64).tolist()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        v = path.sample_base(int(num_chains))
        lw = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
        for k in range(1, len(betas)):
            lw += (
                path.log_unnormalized(v, betas[k]) - path.log_unnormalized(v, betas[k - 1])
            ).double()
            if k < len(betas) - 1:
                v = path.transition(v, betas[k])
        reverse = lr = None
        if reverse_from is not None:
            v = reverse_from
            lr = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
            for k in range(len(betas) - 1, 0, -1):
                lr += (
                    path.log_unnormalized(v, betas[k - 1]) - path.log_unnormalized(v, betas[k])
                ).double()
                if k > 1:
                    v = path.transition(v, betas[k - 1])
            # the mean of exp(lr) estimates Z_base / Z
            reverse = path.log_z_base - _mean_log(lr)
    w = torch.softmax(lw, 0)
    return AISResult(
        log_z=path.log_z_base + _mean_log(lw),
        log_z_reverse=reverse,
        log_weights=lw.cpu(),
        ess=float(1.0 / (w**2).sum()),
        num_betas=int(num_betas),
        log_weights_reverse=None if lr is None else lr.cpu(),
        log_z_base=float(path.log_z_base),
    )


class EnergyAnnealingPath:
    """The AIS path of any continuous energy model, from a diagonal Gaussian base to
    ``exp(-E(x))``: ``log f_beta(x) = (1 - beta) log N(x; mean, std^2) - beta E(x)``, with
    ``num_steps`` Metropolis-adjusted Langevin steps (proposal scale ``step_size * std^2``)
    per distribution, which leave each ``f_beta`` exactly invariant.

    Attributes:
        accept_rate: the mean MALA acceptance over the last run (too low: lower step_size).
    """

    def __init__(self, energy: Callable, mean, std, step_size: float = 0.05, num_steps: int = 1):
        self.energy = energy
        self.mean, self.std = torch.as_tensor(mean), torch.as_tensor(std)
        if not (self.std > 0).all():
            raise ValueError("the base's std must be positive")
        self.step_size, self.num_steps = float(step_size), int(num_steps)
        self.log_z_base = 0.0
        self._accepted = self._proposed = 0

    @property
    def accept_rate(self) -> float:
        return self._accepted / max(self._proposed, 1)

    def _log_base(self, v):
        z = (v - self.mean) / self.std
        return (-0.5 * z**2 - torch.log(self.std) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample_base(self, n: int):
        return self.mean + self.std * torch.randn((n,) + tuple(self.mean.shape))

    def log_unnormalized(self, v, beta: float):
        return (1.0 - beta) * self._log_base(v) - beta * self.energy(v)

    def _potential(self, v, beta):
        with torch.enable_grad():
            point = v.detach().requires_grad_(True)
            u = -self.log_unnormalized(point, beta)
            (grad,) = torch.autograd.grad(u.sum(), point)
        return u.detach(), grad

    def transition(self, v, beta: float):
        from ..inference.dynamics import _mala_log_ratio, _proposal

        scale = self.step_size * self.std**2
        u, g = self._potential(v, beta)
        for _ in range(self.num_steps):
            noise = torch.randn_like(v)
            y = _proposal(v, g, scale, noise)
            u_y, g_y = self._potential(y, beta)
            log_ratio = _mala_log_ratio(v, u, y, u_y, g_y, scale, noise)
            ok = torch.rand_like(u).log() < log_ratio
            v = torch.where(ok[:, None], y, v)
            u, g = torch.where(ok, u_y, u), torch.where(ok[:, None], g_y, g)
            self._accepted += int(ok.sum())
            self._proposed += ok.numel()
        return v


@torch.no_grad()
def log_partition_grid(energy: Callable, low, high, num_points: int = 400) -> float:
    """log Z of a 2-D energy model by the midpoint rule on a ``num_points``-square grid over
    the box ``[low, high]`` (the model's mass outside the box is left out): a reference for
    AIS on the toy data sets."""
    low, high = (
        torch.as_tensor(low, dtype=torch.float64),
        torch.as_tensor(high, dtype=torch.float64),
    )
    if low.shape != (2,) or high.shape != (2,):
        raise ValueError("log_partition_grid integrates over 2-D boxes")
    width = (high - low) / num_points
    axes = [
        low[i] + width[i] * (torch.arange(num_points, dtype=torch.float64) + 0.5) for i in (0, 1)
    ]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    dtype = torch.get_default_dtype()
    e = torch.cat([energy(c.to(dtype)).double() for c in grid.split(65536)])
    return float(torch.logsumexp(-e, 0) + torch.log(width.prod()))


def log_partition(model, method: str = "exact", **options) -> float | AISResult:
    """log Z of an energy model: ``exact`` (its ``log_partition_exact``, by enumeration) or
    ``ais`` (:func:`ais` along its ``annealing_path()``; ``options`` go to :func:`ais`, with
    ``base_bias`` to the path)."""
    from ..errors import ConfigError

    check_choice("method", method, ("exact", "ais"))
    if method == "exact":
        if options:
            raise ConfigError(f"exact log Z takes no options, got {sorted(options)}")
        return float(model.log_partition_exact())
    path = model.annealing_path(options.pop("base_bias", None))
    return ais(path, **options)
