"""Running a (model, guide) pair and reading log-densities off the traces."""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

__all__ = ["run_pair", "sample_sites", "site_log_prob", "log_weights", "PARTICLE_PLATE"]

PARTICLE_PLATE = "_ppdgm_particles"


def run_pair(model: Callable, guide: Callable, *args, **kwargs):
    """Trace the guide, then the model replayed on the guide's latent values."""
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return model_trace, guide_trace


def sample_sites(trace):
    """The trace's sample sites, without the plates' subsample sites."""
    return [s for s in trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]


def site_log_prob(site) -> torch.Tensor:
    """The site's log-density with its scale and mask applied (event dims summed)."""
    return scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])


def log_weights(
    model: Callable,
    guide: Callable,
    *args,
    num_particles: int = 1,
    max_plate_nesting: int = 1,
    **kwargs,
) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) for ``num_particles`` draws z_k per example.

    The particles are drawn at once in an outer plate left of the model's plates.

    Args:
        model, guide: the programs; called with ``*args, **kwargs``.
        num_particles: draws per example, K.
        max_plate_nesting: how many plates the programs nest (the data plate is dim -1).

    Returns:
        (K, N) tensor where N is the data plate's size (or (K, 1) if there is none).
    """
    dim = -max_plate_nesting - 1

    def vectorized(fn):
        def wrapped(*a, **k):
            with pyro.plate(PARTICLE_PLATE, num_particles, dim=dim):
                return fn(*a, **k)

        return wrapped

    model_trace, guide_trace = run_pair(vectorized(model), vectorized(guide), *args, **kwargs)
    total = 0.0
    for site in sample_sites(model_trace):
        total = total + _to_particles(site_log_prob(site), max_plate_nesting, num_particles)
    for site in sample_sites(guide_trace):
        total = total - _to_particles(site_log_prob(site), max_plate_nesting, num_particles)
    if not torch.is_tensor(total):
        raise ValueError("the model and guide have no sample sites")
    return total


def _to_particles(lp: torch.Tensor, max_plate_nesting: int, k: int) -> torch.Tensor:
    """Reduce a site's log-prob to (K, N): sum every plate dim but the data plate (dim -1)."""
    while lp.dim() < max_plate_nesting + 1:
        lp = lp.unsqueeze(0)
    if lp.dim() > 2:
        lp = lp.sum(tuple(range(1, lp.dim() - 1)))
    return lp.expand(k, lp.shape[-1])
