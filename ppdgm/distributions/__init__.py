"""Likelihoods and densities Pyro lacks."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import broadcast_all

__all__ = ["DiscretizedLogistic", "UnnormalizedDensity"]


class DiscretizedLogistic(TorchDistribution):
    """A logistic density discretized onto the integers ``0 .. num_bins - 1``.

    The value ``k`` gets the logistic mass of ``[k - 0.5, k + 0.5]``; the end bins take the
    tails (``(-inf, 0.5]`` and ``[num_bins - 1.5, inf)``), so the masses sum to one.
    Salimans et al. (2017), "PixelCNN++", with the bins on the integer grid.

    Args:
        loc: location on the integer scale, any shape.
        log_scale: log of the logistic scale, broadcastable with ``loc``.
        num_bins: number of integer values (e.g. 17 for digits' 0..16, 256 for 8-bit pixels).
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    has_rsample = False

    def __init__(self, loc, log_scale, num_bins: int, validate_args=None):
        self.loc, self.log_scale = broadcast_all(loc, log_scale)
        if int(num_bins) < 2:
            raise ValueError(f"num_bins must be at least 2, got {num_bins}")
        self.num_bins = int(num_bins)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.num_bins - 1)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.log_scale = self.log_scale.expand(batch_shape)
        new.num_bins = self.num_bins
        super(DiscretizedLogistic, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        k = torch.arange(self.num_bins, dtype=self.loc.dtype, device=self.loc.device)
        return (self._log_mass_all().exp() * k).sum(-1)

    def _log_mass(self, value):
        inv_s = torch.exp(-self.log_scale)
        upper = (value + 0.5 - self.loc) * inv_s
        lower = (value - 0.5 - self.loc) * inv_s
        # log CDF(upper) and log(1 - CDF(lower)) for the end bins, a stable difference inside.
        log_cdf_upper = F.logsigmoid(upper)
        log_sf_lower = F.logsigmoid(-lower)
        # log(sigmoid(u) - sigmoid(l)) = log(sigmoid(u)) + log(1 - exp(l - u)) + log(sigmoid(-l))
        mid = (
            log_cdf_upper
            + log_sf_lower
            + torch.log(torch.clamp(-torch.expm1(lower - upper), min=1e-12))
        )
        first = value <= 0
        last = value >= self.num_bins - 1
        return torch.where(first, log_cdf_upper, torch.where(last, log_sf_lower, mid))

    def _log_mass_all(self):
        """log P(value = k) for every bin k, shape (*batch, num_bins)."""
        k = torch.arange(self.num_bins, dtype=self.loc.dtype, device=self.loc.device)
        return DiscretizedLogistic(
            self.loc.unsqueeze(-1), self.log_scale.unsqueeze(-1), self.num_bins
        )._log_mass(k)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return self._log_mass(value)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(
                1e-6, 1 - 1e-6
            )
            x = self.loc.expand(shape) + torch.exp(self.log_scale.expand(shape)) * (
                torch.log(u) - torch.log1p(-u)
            )
            return torch.round(x).clamp(0, self.num_bins - 1)


class UnnormalizedDensity(TorchDistribution):
    """A density known up to its normalizer: ``log_prob(x) = -energy(x)`` (+ an unknown const).

    This is how an energy-based model declares its data site in a Pyro program::

        pyro.sample("x", UnnormalizedDensity(self.energy, event_shape=(D,)), obs=x)

    so that the program's trace carries the unnormalized log-density, and an objective that
    needs more than the density (contrastive divergence needs the model's own samples) finds the
    energy and the sampler through the site. It has no normalized ``log_prob``: a sum of these
    log-densities is not a log-likelihood, and maximizing it alone diverges.

    Args:
        energy: maps (N, *event_shape) to (N,) energies.
        event_shape: the shape of one example.
        sampler: ``sampler(x, num_steps)`` runs ``num_steps`` of a Markov chain that leaves the
            model's distribution invariant, from states ``x`` (e.g. block Gibbs for an RBM).
        support: the support of ``x`` (default: the reals).
        init: ``init(n)`` gives ``n`` fresh starting points for the chain (e.g. uniform noise
            over the data's range), for samplers that restart chains away from the data (a
            replay buffer's reinitialized chains).
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        energy: Callable,
        event_shape,
        sampler: Callable | None = None,
        support=constraints.real,
        batch_shape=torch.Size(),
        validate_args=None,
        init: Callable | None = None,
    ):
        self.energy = energy
        self.sampler = sampler
        self.init = init
        self._support = support
        super().__init__(torch.Size(batch_shape), torch.Size(event_shape), validate_args=False)

    @property
    def support(self):
        return constraints.independent(self._support, len(self.event_shape))

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(UnnormalizedDensity, _instance)
        new.energy, new.sampler, new._support = self.energy, self.sampler, self._support
        new.init = self.init
        super(UnnormalizedDensity, new).__init__(
            torch.Size(batch_shape), self.event_shape, validate_args=False
        )
        return new

    def log_prob(self, value):
        """The unnormalized log-density ``-energy(value)``."""
        flat = value.reshape(-1, *self.event_shape)
        return -self.energy(flat).reshape(value.shape[: value.dim() - len(self.event_shape)])

    def sample(self, sample_shape=torch.Size()):
        raise NotImplementedError(
            "an unnormalized density has no direct sampler; run its Markov chain (the model's "
            "sample method, Gibbs or Langevin) instead"
        )
