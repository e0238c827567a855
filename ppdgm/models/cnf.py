"""A continuous normalizing flow (FFJORD-style) as a Pyro program.

The data evolve under an ODE ``dx/dt = f(x, t)`` with ``f`` a small network of ``(x, t)``; the
data sit at ``t = 0`` and the standard-normal base at ``t = 1``. Along a trajectory the
log-density changes by the instantaneous change of variables,
``d log p(x(t)) / dt = -tr(df/dx)``, so

    log p(x) = log N(x(1); 0, I) + integral_0^1 tr(df/dx(x(t), t)) dt,

computed by solving the ODE for ``x`` and the integral together (torchdiffeq's solvers,
backpropagated through the solver steps). Sampling solves the same ODE backwards from a base
draw at ``t = 1`` to ``t = 0``.

The trace is exact (one autograd pass per dimension) or Hutchinson's unbiased estimate
``E[e^T (df/dx) e]`` with Rademacher noise ``e`` drawn once per solve (one pass in all), as
in FFJORD. :class:`ContinuousFlow` uses the estimate only while training (``trace`` says
when); its log-density in evaluation mode is always the exact one, up to the solver's
tolerance.

References: Chen, Rubanova, Bettencourt & Duvenaud (2018), "Neural Ordinary Differential
Equations"; Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud (2019), "FFJORD: Free-form
Continuous Dynamics for Scalable Reversible Generative Models".
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

__all__ = ["ODENet", "ContinuousFlow", "divergence"]

#: torchdiffeq's solvers that ContinuousFlow accepts: adaptive ones take ``tol``, fixed-step
#: ones ``step_size``
ADAPTIVE_SOLVERS = ("dopri5", "bosh3", "adaptive_heun", "dopri8")
FIXED_SOLVERS = ("rk4", "midpoint", "euler")


class ODENet(nn.Module):
    """``f(x, t)``: an MLP over ``x`` with the time ``t`` appended to every layer's input;
    smooth activations (an ODE's vector field should be), the last layer zero-initialized so
    a fresh flow is the identity."""

    def __init__(self, dim: int, hidden_dims: tuple[int, ...], activation: str):
        super().__init__()
        widths = [int(dim), *map(int, hidden_dims)]
        self.layers = nn.ModuleList(
            nn.Linear(w + 1, v) for w, v in zip(widths[:-1], widths[1:], strict=True)
        )
        self.out = nn.Linear(widths[-1] + 1, int(dim))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.act = {"tanh": torch.tanh, "softplus": nn.functional.softplus}[activation]

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.to(x).expand(*x.shape[:-1], 1)
        h = x
        for layer in self.layers:
            h = self.act(layer(torch.cat([h, tt], -1)))
        return self.out(torch.cat([h, tt], -1))


def divergence(f: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None, create_graph: bool):
    """``tr(df/dx)`` per row of ``x`` (N, D) with ``f = f(x)`` computed from ``x``: exact (D
    autograd passes) when ``noise`` is None, else Hutchinson's estimate ``e^T (df/dx) e`` with
    ``e = noise`` (one pass)."""
    if noise is not None:
        (vjp,) = torch.autograd.grad(f, x, noise, create_graph=create_graph)
        return (vjp * noise).sum(-1)
    total = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    last = x.shape[-1] - 1
    for i in range(x.shape[-1]):
        (g,) = torch.autograd.grad(
            f[..., i].sum(), x, create_graph=create_graph, retain_graph=create_graph or i < last
        )
        total = total + g[..., i]
    return total


class _Dynamics(nn.Module):
    """The augmented ODE ``d(x, a)/dt = (f(x, t), tr(df/dx))`` for torchdiffeq (``a`` stays 0
    when ``with_trace`` is off: a plain map, differentiable as the caller's mode allows)."""

    def __init__(
        self, net: ODENet, noise: torch.Tensor | None, create_graph: bool, with_trace: bool
    ):
        super().__init__()
        self.net, self.noise, self.create_graph = net, noise, create_graph
        self.with_trace = with_trace
        self.evaluations = 0

    def forward(self, t, state):
        x, a = state
        self.evaluations += 1
        if not self.with_trace:
            return self.net(t, x), torch.zeros_like(a)
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.requires_grad_(True)
            f = self.net(t, x)
            div = divergence(f, x, self.noise, self.create_graph)
        if not self.create_graph:
            f, div = f.detach(), div.detach()
        return f, div


class _CNFDistribution(dist.TorchDistribution):
    """p(x) of a :class:`ContinuousFlow` as a distribution over vectors (N, D) (its
    ``log_prob`` solves the ODE)."""

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, flow: ContinuousFlow, batch_shape=torch.Size()):
        self.flow = flow
        super().__init__(batch_shape, torch.Size([flow.dim]), validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return _CNFDistribution(self.flow, torch.Size(batch_shape))

    def log_prob(self, value):
        return self.flow.log_prob(value)

    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.batch_shape
        n = math.prod(shape)
        return self.flow.sample(n).reshape(*shape, self.flow.dim)


class ContinuousFlow(PyroModule):
    """``z ~ N(0, I_D)``, ``x`` the solution at ``t = 0`` of ``dx/dt = f(x, t)`` from ``z`` at
    ``t = 1``: the program, its log-density and its sampler.

    Args:
        dim: D.
        hidden_dims: widths of the network ``f``.
        activation: ``tanh`` or ``softplus``.
        trace: ``exact``, ``hutchinson`` or ``auto`` (Hutchinson while training when D > 2,
            the exact trace otherwise); evaluation mode always uses the exact trace.
        solver: a torchdiffeq method: adaptive (``dopri5``, ``bosh3``, ``adaptive_heun``,
            ``dopri8``) or fixed-step (``rk4``, ``midpoint``, ``euler``).
        tol: relative and absolute tolerance of an adaptive solver.
        step_size: the step of a fixed-step solver (a fraction of the unit time interval).
    """

    def __init__(
        self,
        dim: int,
        hidden_dims: tuple[int, ...] = (64, 64, 64),
        *,
        activation: str = "tanh",
        trace: str = "auto",
        solver: str = "dopri5",
        tol: float = 1e-5,
        step_size: float = 0.1,
    ):
        super().__init__()
        check_choice("trace", trace, ("auto", "exact", "hutchinson"))
        check_choice("solver", solver, ADAPTIVE_SOLVERS + FIXED_SOLVERS)
        self.dim = int(dim)
        self.net = ODENet(self.dim, tuple(hidden_dims), activation)
        self.trace, self.solver = trace, solver
        self.tol, self.step_size = float(tol), float(step_size)
        self.register_buffer("_zero", torch.zeros(()))
        #: function evaluations of the last solve (the cost an adaptive solver chose)
        self.last_evaluations = 0

    def _uses_hutchinson(self) -> bool:
        if not self.training:
            return False
        return self.trace == "hutchinson" or (self.trace == "auto" and self.dim > 2)

    def _solve(
        self, x: torch.Tensor, t0: float, t1: float, noise, create_graph: bool, with_trace=True
    ):
        from torchdiffeq import odeint

        dynamics = _Dynamics(self.net, noise, create_graph, with_trace)
        times = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
        if self.solver in ADAPTIVE_SOLVERS:
            kwargs = {"rtol": self.tol, "atol": self.tol}
        else:
            kwargs = {"options": {"step_size": self.step_size}}
        start = (x, torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device))
        xs, accumulated = odeint(dynamics, start, times, method=self.solver, **kwargs)
        self.last_evaluations = dynamics.evaluations
        return xs[-1], accumulated[-1]

    def base(self):
        return dist.Normal(self._zero, 1.0).expand([self.dim]).to_event(1)

    def distribution(self) -> _CNFDistribution:
        return _CNFDistribution(self)

    def model(self, x: torch.Tensor):
        """The generative program with ``x`` (N, D) observed (to draw, use :meth:`sample`)."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.distribution(), obs=x)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per row of ``x`` (N, D), in nats: exact up to the solver's tolerance in
        evaluation mode (Hutchinson's unbiased estimate while training, per ``trace``)."""
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"expected vectors of {self.dim} dimensions, got shape {tuple(x.shape)}"
            )
        batch = x.shape[:-1]
        x = x.reshape(-1, self.dim)
        noise = None
        if self._uses_hutchinson():
            noise = torch.randint(0, 2, x.shape, device=x.device).to(x.dtype) * 2 - 1
        z, accumulated = self._solve(x, 0.0, 1.0, noise, torch.is_grad_enabled())
        return (self.base().log_prob(z) + accumulated).reshape(batch)

    def inverse_map(self, x: torch.Tensor) -> torch.Tensor:
        """z: the solution at ``t = 1`` from ``x`` at ``t = 0``."""
        return self._solve(x, 0.0, 1.0, None, False, with_trace=False)[0]

    def forward_map(self, z: torch.Tensor) -> torch.Tensor:
        """x: the solution at ``t = 0`` from ``z`` at ``t = 1``."""
        return self._solve(z, 1.0, 0.0, None, False, with_trace=False)[0]

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Draw (num_samples, D) examples: base draws carried back to ``t = 0``."""
        return self.forward_map(self.base().sample((num_samples,)))
