"""Dequantization: a continuous density over discrete data, as a latent-variable program.

Integer data ``x`` in ``{0, ..., K-1}^D`` (pixels at K grey levels) have no density; a flow
fitted to them directly can pile unbounded density on the grid points. Dequantization models
``v = x + u`` with ``u`` in ``[0, 1)^D``: a continuous density ``p(v)`` gives each ``x`` the
probability ``P(x) = integral over [0, 1)^D of p(x + u) du``, and for any ``q(u | x)`` on the
unit cube

    log P(x) >= E_q[log p(x + u) - log q(u | x)],

an evidence lower bound with ``u`` the latent variable. Uniform dequantization takes
``q = U[0, 1)^D`` (Theis, van den Oord & Bethge, 2016; Real NVP, Glow); variational
dequantization learns ``q(u | x)`` (Flow++: Ho et al., 2019), here a logistic-normal
``u = sigmoid(mu(x) + sigma(x) * eps)`` from a small network.

:class:`Dequantized` wraps any flow that has ``log_prob`` and ``sample`` (a
:class:`~ppdgm.models.flows.Flow`, a Glow model, a continuous flow): the flow models
``v / K`` (values in ``[0, 1)``), so ``log p(v) = log p_flow(v / K) - D log K``. Its ``model``
and ``guide`` are fitted by the ELBO; its ``log_prob`` is the importance-weighted bound with
``num_particles`` draws from the guide (a lower bound on ``log P(x)`` that tightens with more
particles); ``sample`` rounds the flow's draws down to the grid.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import constraints

from .._utils import check_choice

__all__ = ["Dequantized"]


class _Density(dist.TorchDistribution):
    """A distribution over ``event_shape`` whose ``log_prob`` is a given function (the
    observed site of :class:`Dequantized`; it is never sampled)."""

    arg_constraints: dict = {}

    def __init__(self, log_prob, event_shape, batch_shape=torch.Size()):
        self._fn = log_prob
        super().__init__(batch_shape, torch.Size(event_shape), validate_args=False)

    @property
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    def expand(self, batch_shape, _instance=None):
        return _Density(self._fn, self.event_shape, torch.Size(batch_shape))

    def log_prob(self, value):
        return self._fn(value)


class Dequantized(PyroModule):
    """Integer data modeled by a continuous flow over ``x + u`` (see the module docstring).

    Args:
        flow: a module with ``log_prob(v)`` per example and ``sample(n)``, over values in
            ``[0, 1)`` of the data's shape.
        num_levels: K; the data take the values 0, ..., K-1.
        shape: the shape of one example.
        kind: ``uniform`` (``q(u | x) = U[0, 1)``) or ``variational`` (a logistic-normal
            ``q(u | x)`` from an MLP of ``x``).
        num_particles: draws from ``q`` in :meth:`log_prob`'s importance-weighted bound.
        hidden: width of the variational guide's network.
    """

    def __init__(
        self,
        flow: nn.Module,
        num_levels: int,
        shape: tuple[int, ...],
        kind: str = "uniform",
        num_particles: int = 8,
        hidden: int = 64,
    ):
        super().__init__()
        check_choice("dequantization", kind, ("uniform", "variational"))
        if int(num_levels) < 2:
            raise ValueError(f"num_levels must be at least 2, got {num_levels}")
        self.flow = flow
        self.num_levels = int(num_levels)
        self.shape = tuple(int(s) for s in shape)
        self.dim = math.prod(self.shape)
        self.kind = kind
        self.num_particles = int(num_particles)
        self.register_buffer("_zeros", torch.zeros(self.shape))
        if kind == "variational":
            self.encoder = nn.Sequential(
                nn.Linear(self.dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * self.dim)
            )
            nn.init.zeros_(self.encoder[-1].weight)  # starts at sigmoid(N(0, 1)): near uniform
            nn.init.zeros_(self.encoder[-1].bias)

    # -- the program -------------------------------------------------------------------------
    def log_density(self, v: torch.Tensor) -> torch.Tensor:
        """log p(v) of the continuous values v = x + u, per example."""
        return self.flow.log_prob(v / self.num_levels) - self.dim * math.log(self.num_levels)

    def _prior(self):
        return dist.Uniform(self._zeros, self._zeros + 1).to_event(len(self.shape))

    def _posterior(self, x: torch.Tensor):
        """q(u | x) as a distribution over the unit cube, batch (N,)."""
        if self.kind == "uniform":
            return self._prior().expand([x.shape[0]])
        h = self.encoder((x / (self.num_levels - 1) - 0.5).reshape(x.shape[0], -1))
        loc, log_scale = h.chunk(2, -1)
        base = dist.Normal(loc.reshape(x.shape), log_scale.exp().reshape(x.shape))
        return dist.TransformedDistribution(base, [dist.transforms.SigmoidTransform()]).to_event(
            len(self.shape)
        )

    def model(self, x: torch.Tensor):
        """``u ~ U[0, 1)^D`` and ``x + u`` observed under the flow (``x`` integer-valued)."""
        with pyro.plate("data", x.shape[0]):
            u = pyro.sample("u", self._prior())
            pyro.sample("x", _Density(self.log_density, self.shape), obs=x + u)

    def guide(self, x: torch.Tensor):
        """``u ~ q(u | x)``: uniform, or the learned logistic-normal."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("u", self._posterior(x))

    # -- queries -------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, num_particles: int | None = None) -> torch.Tensor:
        """The importance-weighted lower bound on log P(x) per example, in nats, with
        ``num_particles`` draws from ``q(u | x)`` (default: the module's)."""
        k = int(num_particles or self.num_particles)
        q = self._posterior(x)
        # keep u strictly inside the cube: a float32 sigmoid can round to 1
        u = q.sample((k,)).clamp(0.0, 1.0 - 1e-6)  # (k, N, *shape)
        v = (x + u).reshape(-1, *self.shape)
        weights = self.log_density(v).reshape(k, -1) - q.log_prob(u)
        return torch.logsumexp(weights, 0) - math.log(k)

    def initialize(self, x: torch.Tensor) -> None:
        """Data-dependent initialization of the flow (Glow's ActNorm) from dequantized data."""
        with torch.no_grad():
            v = x + self._posterior(x).sample()
        self.flow.initialize(v / self.num_levels)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Draw integer examples: the flow's continuous draws rounded down onto the grid."""
        v = self.flow.sample(num_samples) * self.num_levels
        return v.floor().clamp(0, self.num_levels - 1)
