"""Monotonic rational-quadratic splines (Durkan, Bekasov, Murray & Papamakarios, 2019,
"Neural Spline Flows") and the flow layers built on them.

:func:`rq_spline` maps each coordinate through a monotonic piecewise rational-quadratic
function on ``[-bound, bound]`` with ``K`` bins, the identity outside (linear tails, the
derivative 1 at both ends). It is written without any branch on tensor values (the bin is
found by counting the knots below the point, the tails are selected by ``torch.where``), so a
flow built from it can be traced into a graph, and its forward and inverse each take a handful
of element-wise operations.

:class:`SplineAutoregressive` is the autoregressive layer (a MADE network outputs the knots of
dimension ``d`` from the dimensions before it); :class:`SplineCoupling` the coupling layer (an
MLP of the first ``split`` dimensions outputs the knots of the rest). Both follow Pyro's
transform interface, so they sit in a :class:`~ppdgm.models.flows.Flow` like Pyro's own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions.torch_transform import TransformModule
from pyro.nn import AutoRegressiveNN, DenseNN
from torch.distributions import constraints

from ..errors import ConfigError

__all__ = ["rq_spline", "SplineAutoregressive", "SplineCoupling"]

# the unconstrained derivative whose softplus, plus the minimum, is 1 (the identity's slope)
_MIN_BIN = 1e-3
_MIN_DERIVATIVE = 1e-3


def rq_spline(
    x: torch.Tensor,
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    bound: float,
    inverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a monotonic rational-quadratic spline element-wise.

    Args:
        x: the points, (...).
        widths, heights: unnormalized bin widths and heights, (..., K) (softmax-normalized,
            each bin at least a small share of the interval).
        derivatives: unconstrained derivatives at the K - 1 inner knots, (..., K - 1)
            (a scaled softplus plus a small minimum, so that 0 means slope 1); the derivative
            at both ends is 1, matching the identity outside.
        bound: the spline acts on ``[-bound, bound]``; the identity outside.
        inverse: apply the inverse map instead.

    Returns:
        ``(y, log_det)``: the image and ``log |dy/dx|`` of the map applied (for the inverse,
        the log-derivative of the inverse map), both shaped like ``x``.

    Raises:
        ConfigError: the knot parameters disagree on K.
    """
    k = widths.shape[-1]
    if not torch.jit.is_tracing() and (heights.shape[-1] != k or derivatives.shape[-1] != k - 1):
        raise ConfigError(
            f"a spline of {k} bins takes {k} heights and {k - 1} inner derivatives; got "
            f"{heights.shape[-1]} and {derivatives.shape[-1]}"
        )
    # (element-wise kernels on strided slices of a network's output are several times slower)
    widths, heights, derivatives = (t.contiguous() for t in (widths, heights, derivatives))
    # bins and knots on the unit interval (the map is computed there, then scaled back)
    w = _MIN_BIN + (1 - _MIN_BIN * k) * torch.softmax(widths, -1)
    h = _MIN_BIN + (1 - _MIN_BIN * k) * torch.softmax(heights, -1)
    xk, yk = torch.cumsum(w, -1) - w, torch.cumsum(h, -1) - h  # left knots of the bins
    slope = _MIN_DERIVATIVE + (1 - _MIN_DERIVATIVE) / math.log(2.0) * F.softplus(derivatives)
    d = F.pad(slope, (1, 1), value=1.0)
    inside = (x > -bound) & (x < bound)
    u = (x.clamp(-bound, bound) + bound) / (2 * bound)
    # the bin: how many inner knots lie at or below the point (0 .. K-1)
    idx = (u[..., None] >= (yk if inverse else xk)[..., 1:]).sum(-1, keepdim=True)
    x0, y0, wk, hk, d0, d1 = (
        torch.gather(t, -1, i).squeeze(-1)
        for t, i in ((xk, idx), (yk, idx), (w, idx), (h, idx), (d, idx), (d, idx + 1))
    )
    s = hk / wk
    c = d0 + d1 - 2 * s
    if inverse:
        dy = u - y0
        a = hk * (s - d0) + dy * c
        b = hk * d0 - dy * c
        q = -s * dy
        theta = (2 * q) / (-b - (b.square() - 4 * a * q).clamp_min(0).sqrt())
        out = x0 + theta * wk
        tt = theta * (1 - theta)
    else:
        theta = (u - x0) / wk
        tt = theta * (1 - theta)
        out = y0 + hk * (s * theta.square() + d0 * tt) / (s + c * tt)
    one_minus = 1 - theta
    log_det = (
        s.square()
        * (d1 * theta.square() + 2 * s * tt + d0 * one_minus.square())
        / (s + c * tt).square()
    ).log()
    if inverse:
        log_det = -log_det
    y = torch.where(inside, out * (2 * bound) - bound, x)
    return y, torch.where(inside, log_det, torch.zeros_like(log_det))


def _zero_last(layer: torch.nn.Linear) -> None:
    """Start a knot network's output layer at zero: equal bins and slope 1, so that a fresh
    layer is the identity (fitting then starts from the base distribution, and converges in
    fewer steps than from random splines)."""
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)


def _cached_log_det(layer, x, y):
    """The log-determinant the layer computed with ``y`` from ``x`` (or ``x`` from ``y``) in its
    last call, if these are those very tensors."""
    if layer._log_det is not None and x is layer._log_det[0] and y is layer._log_det[1]:
        return layer._log_det[2]
    return None


class SplineAutoregressive(TransformModule):
    """An autoregressive rational-quadratic spline layer: ``y_d = g(x_d; theta_d(x_{<d}))`` with
    the knots ``theta_d`` output by a MADE network (Pyro's :class:`~pyro.nn.AutoRegressiveNN`)
    in the ordering ``permutation``.

    The forward direction (x to y) takes one network pass; the inverse takes D, one dimension
    at a time. A flow uses it inverted (the density on the fast side), like MAF.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    autoregressive = True

    def __init__(
        self,
        dim: int,
        hidden_dims: tuple[int, ...],
        count_bins: int = 8,
        bound: float = 4.0,
        permutation: torch.Tensor | None = None,
    ):
        super().__init__(cache_size=1)
        self.dim, self.count_bins, self.bound = int(dim), int(count_bins), float(bound)
        k = self.count_bins
        self.arn = AutoRegressiveNN(
            self.dim, list(hidden_dims), param_dims=[k, k, k - 1], permutation=permutation
        )
        _zero_last(self.arn.layers[-1])
        self._log_det = None

    def _params(self, x: torch.Tensor):
        w, h, d = self.arn(x)  # each (..., P, D)
        return w.transpose(-1, -2), h.transpose(-1, -2), d.transpose(-1, -2)

    def _call(self, x):
        y, log_det = rq_spline(x, *self._params(x), self.bound)
        self._log_det = (x, y, log_det.sum(-1))
        return y

    def _inverse(self, y):
        x = torch.zeros_like(y)
        # dimension by dimension in the network's ordering: pass i fixes the i-th dimension
        for _ in range(self.dim):
            x, log_det = rq_spline(y, *self._params(x), self.bound, inverse=True)
        self._log_det = (x, y, -log_det.sum(-1))
        return x

    def log_abs_det_jacobian(self, x, y):
        cached = _cached_log_det(self, x, y)
        if cached is not None:
            return cached
        _, log_det = rq_spline(x, *self._params(x), self.bound)
        return log_det.sum(-1)


class SplineCoupling(TransformModule):
    """A rational-quadratic spline coupling layer: ``y_1 = x_1``, ``y_2 = g(x_2; theta(x_1))``
    with ``x_1`` the first ``split`` dimensions and the knots ``theta`` from an MLP of them.
    Density and sampling both take one network pass."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(
        self,
        dim: int,
        split: int,
        hidden_dims: tuple[int, ...],
        count_bins: int = 8,
        bound: float = 4.0,
    ):
        super().__init__(cache_size=1)
        self.dim, self.split = int(dim), int(split)
        self.count_bins, self.bound = int(count_bins), float(bound)
        rest, k = self.dim - self.split, self.count_bins
        self.net = DenseNN(self.split, list(hidden_dims), param_dims=[rest * (3 * k - 1)])
        _zero_last(self.net.layers[-1])
        self._log_det = None

    def _params(self, x1: torch.Tensor):
        k = self.count_bins
        p = self.net(x1).reshape(*x1.shape[:-1], self.dim - self.split, 3 * k - 1)
        return p[..., :k], p[..., k : 2 * k], p[..., 2 * k :]

    def _spline(self, x, inverse: bool):
        x1, x2 = x[..., : self.split], x[..., self.split :]
        y2, log_det = rq_spline(x2, *self._params(x1), self.bound, inverse=inverse)
        return torch.cat([x1, y2], -1), log_det.sum(-1)

    def _call(self, x):
        y, log_det = self._spline(x, inverse=False)
        self._log_det = (x, y, log_det)
        return y

    def _inverse(self, y):
        x, log_det = self._spline(y, inverse=True)
        self._log_det = (x, y, -log_det)
        return x

    def log_abs_det_jacobian(self, x, y):
        cached = _cached_log_det(self, x, y)
        if cached is not None:
            return cached
        return self._spline(x, inverse=False)[1]
