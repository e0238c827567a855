"""Normalizing flows as Pyro programs: ``z ~ N(0, I)``, ``x = T(z)`` for an invertible ``T``
built from layers, so ``log p(x) = log N(T^{-1}(x)) + log |det dT^{-1}/dx|`` exactly.

The layers are Pyro's transforms (``pyro.distributions.transforms``) where Pyro has them:
affine coupling (RealNVP), affine autoregressive (MAF), rational-quadratic spline coupling and
autoregressive (neural spline flows). A :class:`Flow` holds them in sampling order (base to
data) and marks each autoregressive layer as used in its inverse direction, so that the
density is the fast direction (one network pass per layer, as in MAF) and sampling the
sequential one.

NICE's additive coupling and its diagonal scaling are written here (Pyro's couplings are
affine). Pyro's planar and radial layers have no inverse; :class:`InvertiblePlanar` and
:class:`InvertibleRadial` add one (a bisection along ``w`` and a closed-form radius).

References: Dinh, Krueger & Bengio (2015), "NICE: Non-linear Independent Components
Estimation"; Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP";
Papamakarios, Pavlakou & Murray (2017), "Masked Autoregressive Flow for Density Estimation";
Durkan, Bekasov, Murray & Papamakarios (2019), "Neural Spline Flows"; Rezende & Mohamed
(2015), "Variational Inference with Normalizing Flows".
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.distributions.torch_transform import TransformModule
from pyro.nn import AutoRegressiveNN, DenseNN, PyroModule
from torch import nn
from torch.distributions import constraints

from .._utils import check_choice
from .splines import SplineAutoregressive, SplineCoupling

__all__ = [
    "Flow",
    "PermuteLayer",
    "AdditiveCoupling",
    "DiagonalScale",
    "nice_layers",
    "realnvp_layers",
    "SoftClampedScale",
    "maf_layers",
    "nsf_layers",
    "InvertiblePlanar",
    "InvertibleRadial",
    "planar_layers",
    "radial_layers",
]


class PermuteLayer(TransformModule):
    """A fixed permutation of the last axis (a buffer, so it moves with the module);
    ``log |det J| = 0``."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    volume_preserving = True

    def __init__(self, permutation: torch.Tensor):
        super().__init__(cache_size=1)
        permutation = torch.as_tensor(permutation).long()
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    def _call(self, x):
        return x[..., self.permutation]

    def _inverse(self, y):
        return y[..., self.inverse_permutation]

    def log_abs_det_jacobian(self, x, y):
        return x.new_zeros(x.shape[:-1])


class AdditiveCoupling(TransformModule):
    """NICE's coupling: ``y_1 = x_1``, ``y_2 = x_2 + t(x_1)`` with ``x_1`` the first ``split``
    dimensions and ``t`` any network; volume preserving (``log |det J| = 0``)."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    volume_preserving = True

    def __init__(self, split: int, net: nn.Module):
        super().__init__(cache_size=1)
        self.split = int(split)
        self.net = net

    def _call(self, x):
        x1, x2 = x[..., : self.split], x[..., self.split :]
        return torch.cat([x1, x2 + self.net(x1)], -1)

    def _inverse(self, y):
        y1, y2 = y[..., : self.split], y[..., self.split :]
        return torch.cat([y1, y2 - self.net(y1)], -1)

    def log_abs_det_jacobian(self, x, y):
        return x.new_zeros(x.shape[:-1])


class DiagonalScale(TransformModule):
    """``y = exp(s) * x`` with a learned log-scale ``s`` per dimension (NICE's last layer, which
    gives the volume-preserving couplings their change of volume); ``log |det J| = sum(s)``."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, dim: int):
        super().__init__(cache_size=1)
        self.log_scale = nn.Parameter(torch.zeros(int(dim)))

    def _call(self, x):
        return x * self.log_scale.exp()

    def _inverse(self, y):
        return y * (-self.log_scale).exp()

    def log_abs_det_jacobian(self, x, y):
        return self.log_scale.sum().expand(x.shape[:-1])


class _UncachedTransformed(dist.TransformedDistribution):
    """A transformed distribution whose ``log_prob`` never takes a layer's cached pass.

    Pyro's transforms keep their last ``(x, y)`` pair and hand back the cached image when
    called with the very same tensor, even after the parameters have changed (so scoring one
    validation tensor after every few updates would repeat the first score). A fresh view of
    the value is a new tensor to the first layer, so every layer computes afresh; the cache
    still serves the log-determinant of the pass just taken.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return super().log_prob(value.view_as(value))


class Flow(PyroModule):
    """``x = T_K(... T_1(z))``, ``z ~ N(0, I_D)``: the program, its exact density and sampler.

    Args:
        layers: the transforms in sampling order (base to data), each a module.
        dim: D.
        inverted: for each layer, True where the flow uses it in its inverse direction (an
            autoregressive layer whose forward pass is the fast one, put on the density side).
    """

    def __init__(self, layers: list[nn.Module], dim: int, inverted: list[bool] | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dim = int(dim)
        self.inverted = list(inverted) if inverted is not None else [False] * len(layers)
        if len(self.inverted) != len(self.layers):
            raise ValueError(f"{len(self.inverted)} inverted flags for {len(self.layers)} layers")
        self.register_buffer("_zero", torch.zeros(()))

    def transforms(self) -> list:
        """The layers as transforms in sampling order (an inverted layer as its ``.inv``)."""
        return [t.inv if inv else t for t, inv in zip(self.layers, self.inverted, strict=True)]

    def base(self):
        return dist.Normal(self._zero, 1.0).expand([self.dim]).to_event(1)

    def distribution(self) -> dist.TransformedDistribution:
        """p(x) as a distribution with an exact ``log_prob``."""
        return _UncachedTransformed(self.base(), self.transforms())

    def model(self, x: torch.Tensor):
        """The generative program with ``x`` (N, D) observed (to draw, use :meth:`sample`)."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.distribution(), obs=x)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per example, in nats; (N,)."""
        return self.distribution().log_prob(x)

    def forward_map(self, z: torch.Tensor) -> torch.Tensor:
        """x = T(z)."""
        for t in self.transforms():
            z = t(z)
        return z

    def inverse_map(self, x: torch.Tensor) -> torch.Tensor:
        """z = T^{-1}(x)."""
        for t in reversed(self.transforms()):
            x = t.inv(x)
        return x

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Draw (num_samples, D) examples: z from the base, pushed through the layers."""
        return self.forward_map(self.base().sample((num_samples,)))


def _order(dim: int, i: int) -> torch.Tensor:
    """Layer ``i``'s ordering of the dimensions: natural for even ``i``, reversed for odd, so
    that consecutive layers alternate (the reversal is also the permutation between coupling
    layers: the half a layer leaves unchanged is the half the next one transforms)."""
    return torch.arange(dim) if i % 2 == 0 else torch.arange(dim - 1, -1, -1)


def nice_layers(dim: int, num_transforms: int, hidden_dims: tuple[int, ...]):
    """NICE: additive coupling layers (halves swapped between layers), then a diagonal
    scaling. Returns (layers, inverted)."""
    layers = []
    split = dim // 2
    for i in range(num_transforms):
        layers.append(AdditiveCoupling(split, DenseNN(split, list(hidden_dims), [dim - split])))
        if i < num_transforms - 1:
            layers.append(PermuteLayer(_order(dim, 1)))
    layers.append(DiagonalScale(dim))
    return layers, [False] * len(layers)


class SoftClampedScale(nn.Module):
    """Wraps a network that outputs ``(shift, log_scale)`` so that the log-scale is softly
    limited to ``(-limit, limit)`` by ``limit * tanh(log_scale / limit)``, and starts the
    network's output layer at zero (a fresh coupling is the identity).

    Pyro's affine coupling clamps the log-scale hard to [-5, 3]; chained over several layers,
    a hard clamp lets points off the training data map to enormous values (a test NLL of
    1e10 on the eight Gaussians) and gives no gradient at the limits. The smooth bound keeps
    each layer's scale within ``exp(+-limit)`` with a gradient everywhere.
    """

    def __init__(self, net: DenseNN, limit: float = 2.0):
        super().__init__()
        self.net = net
        self.limit = float(limit)
        nn.init.zeros_(net.layers[-1].weight)
        nn.init.zeros_(net.layers[-1].bias)

    def forward(self, x: torch.Tensor):
        shift, log_scale = self.net(x)
        return shift, self.limit * torch.tanh(log_scale / self.limit)


def realnvp_layers(dim: int, num_transforms: int, hidden_dims: tuple[int, ...]):
    """RealNVP: affine coupling layers (the first half of the dimensions conditions the affine
    map of the second half; Pyro's :class:`~pyro.distributions.transforms.AffineCoupling` with
    a softly bounded log-scale, :class:`SoftClampedScale`), the halves swapped between layers.
    Returns (layers, inverted)."""
    layers, inverted = [], []
    split = dim // 2
    for i in range(num_transforms):
        net = SoftClampedScale(DenseNN(split, list(hidden_dims), [dim - split, dim - split]))
        layers.append(T.AffineCoupling(split, net))
        inverted.append(False)
        if i < num_transforms - 1:
            layers.append(PermuteLayer(_order(dim, 1)))
            inverted.append(False)
    return layers, inverted


def maf_layers(dim: int, num_transforms: int, hidden_dims: tuple[int, ...]):
    """MAF: affine autoregressive layers (MADE networks), used inverted so the density takes
    one pass per layer; the ordering reversed from one layer to the next."""
    layers = []
    for i in range(num_transforms):
        order = _order(dim, i)
        net = AutoRegressiveNN(dim, list(hidden_dims), permutation=order)
        layers.append(T.AffineAutoregressive(net))
    return layers, [True] * len(layers)


def nsf_layers(
    dim: int,
    num_transforms: int,
    hidden_dims: tuple[int, ...],
    count_bins: int,
    bound: float,
    kind: str = "coupling",
):
    """Neural spline flow: monotonic rational-quadratic splines on [-bound, bound] (identity
    outside; :mod:`ppdgm.models.splines`), their knots output by a coupling network
    (``kind="coupling"``, halves swapped between layers) or an autoregressive one
    (``"autoregressive"``, used inverted like MAF, the ordering reversed between layers)."""
    check_choice("spline flow kind", kind, ("coupling", "autoregressive"))
    layers, inverted = [], []
    for i in range(num_transforms):
        if kind == "autoregressive":
            order = _order(dim, i)
            layers.append(SplineAutoregressive(dim, hidden_dims, count_bins, bound, order))
            inverted.append(True)
            continue
        layers.append(SplineCoupling(dim, dim // 2, hidden_dims, count_bins, bound))
        inverted.append(False)
        if i < num_transforms - 1:
            layers.append(PermuteLayer(_order(dim, 1)))
            inverted.append(False)
    return layers, inverted


class InvertiblePlanar(T.Planar):
    """Pyro's planar layer ``y = x + u_hat tanh(w.x + b)`` (``w.u_hat > -1``, so invertible),
    with the inverse that Pyro leaves out and a log-determinant computed from ``x`` alone.

    The inverse solves the scalar equation ``a + (w.u_hat) tanh(a) = w.y + b`` for
    ``a = w.x + b`` (strictly increasing in ``a``, and ``a`` lies within ``|w.u_hat|`` of the
    right-hand side) by ``bisection_steps`` halvings of that bracket, then ``x = y - u_hat
    tanh(a)``. Pyro's layer reads its log-determinant from the last forward pass, which is
    stale after an inverse; here it is recomputed from ``x``.
    """

    def __init__(self, input_dim: int, bisection_steps: int = 60):
        super().__init__(int(input_dim))
        self.bisection_steps = int(bisection_steps)

    def _inverse(self, y):
        bias, u, w = self._params()
        u_hat = self.u_hat(u, w)
        k = (w * u_hat).sum(-1)
        c = y @ w + bias
        lo, hi = c - k.abs(), c + k.abs()
        for _ in range(self.bisection_steps):
            mid = 0.5 * (lo + hi)
            above = mid + k * torch.tanh(mid) > c
            lo, hi = torch.where(above, lo, mid), torch.where(above, mid, hi)
        a = 0.5 * (lo + hi)
        return y - u_hat * torch.tanh(a).unsqueeze(-1)

    def log_abs_det_jacobian(self, x, y):
        bias, u, w = self._params()
        u_hat = self.u_hat(u, w)
        act = torch.tanh(x @ w + bias)
        return torch.log(torch.abs(1 + (1 - act.pow(2)) * (w * u_hat).sum(-1)))


class InvertibleRadial(T.Radial):
    """Pyro's radial layer ``y = x + beta h(r) (x - x0)``, ``h = 1 / (alpha + r)``,
    ``r = |x - x0|`` (``beta > -alpha``, so invertible), with the inverse that Pyro leaves out
    and a log-determinant computed from ``x`` alone.

    The map keeps the direction of ``x - x0`` and scales its length: ``|y - x0| = r (1 + beta
    / (alpha + r))``, a quadratic in ``r`` whose positive root is the inverse radius.
    """

    def _alpha_beta(self):
        x0, alpha_prime, beta_prime = self._params()
        alpha = torch.nn.functional.softplus(alpha_prime)
        return x0, alpha, -alpha + torch.nn.functional.softplus(beta_prime)

    def _inverse(self, y):
        x0, alpha, beta = self._alpha_beta()
        diff = y - x0
        r_y = diff.norm(dim=-1, keepdim=True)
        b = alpha + beta - r_y
        r = 0.5 * (-b + torch.sqrt(b * b + 4 * alpha * r_y))
        return x0 + diff / (1 + beta / (alpha + r))

    def log_abs_det_jacobian(self, x, y):
        x0, alpha, beta = self._alpha_beta()
        r = (x - x0).norm(dim=-1, keepdim=True)
        h = 1 / (alpha + r)
        beta_h = beta * h
        log_det = (x.shape[-1] - 1) * torch.log1p(beta_h) + torch.log1p(beta_h - beta * h * h * r)
        return log_det.squeeze(-1)


def planar_layers(dim: int, num_transforms: int):
    """Planar layers (:class:`InvertiblePlanar`), used inverted: the density side takes the
    closed-form direction and sampling the bisection."""
    layers = [InvertiblePlanar(dim) for _ in range(num_transforms)]
    return layers, [True] * len(layers)


def radial_layers(dim: int, num_transforms: int):
    """Radial layers (:class:`InvertibleRadial`), used inverted like the planar ones."""
    layers = [InvertibleRadial(dim) for _ in range(num_transforms)]
    return layers, [True] * len(layers)
