"""Evaluation: ELBO, importance-weighted log-likelihood bounds in memory-bounded chunks, bits/dim."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..inference.traces import log_weights

__all__ = ["elbo", "iwae_bound", "bits_per_dim"]


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
