"""Glow: a multi-scale flow of ActNorm, invertible 1x1 convolutions and affine couplings, for
images (N, C, H, W) and for vectors (N, D), as a Pyro program with an exact likelihood.

One *step of flow* is ActNorm (a per-channel affine map initialized from the data so that its
output has zero mean and unit variance), an invertible 1x1 convolution (a learned mixing of
the channels, parametrized by its LU decomposition so that its log-determinant is a sum), and
an affine coupling (half of the channels shift and scale the other half through a small
convolutional net, initialized to the identity). A *level* squeezes each 2x2 block of pixels
into channels, runs K steps, and factors half of the channels out to the base distribution;
the last level keeps all of them. Vectors are 1x1 images with D channels: one level, no
squeeze.

The layers are written here (Pyro has no ActNorm, 1x1 convolution or multi-scale
architecture). Each layer maps data to base (``encode``, the density's direction) and back
(``decode``), returning its log |det| in the encoding direction.

Reference: Kingma & Dhariwal (2018), "Glow: Generative Flow with Invertible 1x1 Convolutions";
Dinh, Sohl-Dickstein & Bengio (2017) for the multi-scale architecture and squeezing.
"""

from __future__ import annotations

import math

import pyro
import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import constraints

__all__ = [
    "ActNorm",
    "InvertibleConv1x1",
    "AffineCouplingConv",
    "squeeze",
    "unsqueeze",
    "GlowNet",
    "GlowModel",
]


def _spatial(x: torch.Tensor) -> int:
    return x.shape[2] * x.shape[3]


class ActNorm(nn.Module):
    """``z = (x - b) * exp(-s)`` per channel; ``b`` and ``s`` are set from the first batch it
    encodes (:meth:`initialize`) so that ``z`` has zero mean and unit variance per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        self.bias.copy_(x.mean((0, 2, 3), keepdim=True))
        std = (
            x.std((0, 2, 3), keepdim=True)
            if len(x) * _spatial(x) > 1
            else torch.ones_like(self.bias)
        )
        self.log_scale.copy_(std.clamp_min(1e-6).log())

    def encode(self, x):
        z = (x - self.bias) * torch.exp(-self.log_scale)
        return z, -self.log_scale.sum() * _spatial(x) * x.new_ones(x.shape[0])

    def decode(self, z):
        return z * torch.exp(self.log_scale) + self.bias


class InvertibleConv1x1(nn.Module):
    """``z = W x`` over the channels at every pixel, ``W = P L (U + diag(sign * exp(s)))``
    with ``P`` a fixed permutation, ``L`` unit lower and ``U`` strictly upper triangular:
    ``log |det W| = sum(s)`` per pixel. Starts at a random rotation."""

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign", torch.sign(diag))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(diag.abs().log())

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * self.log_s.exp())
        return self.perm @ lower @ upper

    def encode(self, x):
        w = self.weight()
        z = F.conv2d(x, w[:, :, None, None])
        return z, self.log_s.sum() * _spatial(x) * x.new_ones(x.shape[0])

    def decode(self, z):
        w_inv = torch.linalg.inv(self.weight())
        return F.conv2d(z, w_inv[:, :, None, None])


class AffineCouplingConv(nn.Module):
    """The first ``c1`` channels pass through; the others are shifted and scaled by a conv net
    of them: ``z_2 = (x_2 + t) * sigmoid(h + 2)`` with ``(h, t) = net(x_1)``. The net's last
    layer starts at zero, so the coupling starts near the identity. With ``kernel=1`` on 1x1
    images the net is an MLP (the vector case)."""

    def __init__(self, channels: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.c1 = channels // 2
        c2 = channels - self.c1
        pad = kernel // 2
        last = nn.Conv2d(hidden, 2 * c2, kernel, padding=pad)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            nn.Conv2d(self.c1, hidden, kernel, padding=pad),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            last,
        )

    def _scale_shift(self, x1):
        h, t = self.net(x1).chunk(2, dim=1)
        return F.logsigmoid(h + 2.0), t

    def encode(self, x):
        x1, x2 = x[:, : self.c1], x[:, self.c1 :]
        log_scale, t = self._scale_shift(x1)
        z2 = (x2 + t) * log_scale.exp()
        return torch.cat([x1, z2], 1), log_scale.flatten(1).sum(1)

    def decode(self, z):
        z1, z2 = z[:, : self.c1], z[:, self.c1 :]
        log_scale, t = self._scale_shift(z1)
        return torch.cat([z1, z2 * torch.exp(-log_scale) - t], 1)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 4C, H/2, W/2): each 2x2 block of pixels into channels."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze`."""
    n, c, h, w = x.shape
    x = x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


class GlowNet(nn.Module):
    """The multi-scale Glow map between data (N, C, H, W) and base variables.

    Args:
        shape: (C, H, W) of one example (vectors: (D, 1, 1)).
        num_levels: levels (each squeezes first; all but the last factor half the channels
            out); H and W must be divisible by 2**num_levels. Vectors take 1 level, no
            squeeze.
        steps: steps of flow per level.
        hidden: channels of the coupling nets.
        generator: draws the 1x1 convolutions' starting rotations.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        num_levels: int,
        steps: int,
        hidden: int,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        c, h, w = (int(s) for s in shape)
        self.shape = (c, h, w)
        self.squeezes = not (h == 1 and w == 1)
        if self.squeezes and (h % 2**num_levels or w % 2**num_levels):
            raise ValueError(
                f"{num_levels} levels need H and W divisible by {2**num_levels}, got {h}x{w}"
            )
        kernel = 3 if self.squeezes else 1
        self.levels = nn.ModuleList()
        #: the shape of each level's base variables, in the order :meth:`encode` returns them
        self.base_shapes: list[tuple[int, int, int]] = []
        for level in range(num_levels if self.squeezes else 1):
            if self.squeezes:
                c, h, w = 4 * c, h // 2, w // 2
            layers = nn.ModuleList()
            for _ in range(steps):
                layers.append(ActNorm(c))
                layers.append(InvertibleConv1x1(c, generator))
                layers.append(AffineCouplingConv(c, hidden, kernel))
            self.levels.append(layers)
            if level < num_levels - 1 and self.squeezes:
                self.base_shapes.append((c // 2, h, w))  # the factored-out half
                c = c - c // 2  # the kept half
        self.base_shapes.append((c, h, w))
        #: set by :meth:`GlowModel.initialize`: the next encoding initializes every ActNorm
        self.pending_init = False

    def _last(self, index: int) -> bool:
        return index == len(self.levels) - 1

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Data (N, C, H, W) to the base variables (one tensor per level) and log |det|."""
        logdet = x.new_zeros(x.shape[0])
        zs = []
        h = x
        for i, layers in enumerate(self.levels):
            if self.squeezes:
                h = squeeze(h)
            for layer in layers:
                if self.pending_init and isinstance(layer, ActNorm):
                    layer.initialize(h)
                h, ld = layer.encode(h)
                logdet = logdet + ld
            if not self._last(i):
                out = h.shape[1] // 2
                zs.append(h[:, :out])
                h = h[:, out:]
        zs.append(h)
        self.pending_init = False
        return zs, logdet

    def decode(self, zs: list[torch.Tensor]) -> torch.Tensor:
        """Base variables (as :meth:`encode` gives them) back to data."""
        h = zs[-1]
        for i in reversed(range(len(self.levels))):
            if not self._last(i):
                h = torch.cat([zs[i], h], 1)
            for layer in reversed(self.levels[i]):
                h = layer.decode(h)
            if self.squeezes:
                h = unsqueeze(h)
        return h

    def _device(self) -> torch.device:
        return next(self.parameters()).device


class _GlowDistribution(TorchDistribution):
    """p(x) of a :class:`GlowNet` with standard normal base variables."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 3)

    def __init__(self, net: GlowNet, batch_shape=torch.Size()):
        self.net = net
        super().__init__(batch_shape, torch.Size(net.shape), validate_args=False)

    def expand(self, batch_shape, _instance=None):
        # a plate's batch shape is the data's: log_prob needs no broadcasting (which would
        # compare traced sizes in Python)
        return _GlowDistribution(self.net, torch.Size(batch_shape))

    def log_prob(self, x):
        zs, logdet = self.net.encode(x)
        base = sum((-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1) for z in zs)
        return base + logdet

    def sample(self, sample_shape=torch.Size()):
        n = int(math.prod(sample_shape))
        device = self.net._device()
        zs = [torch.randn(n, *s, device=device) for s in self.net.base_shapes]
        with torch.no_grad():
            return self.net.decode(zs).reshape(*sample_shape, *self.net.shape)


class GlowModel(PyroModule):
    """x = decode(z), z ~ N(0, I) at every level: the program, its exact density and sampler.

    Args:
        net: the :class:`GlowNet`.
        flat: the data are vectors (N, D) (reshaped to (N, D, 1, 1) inside).
    """

    def __init__(self, net: GlowNet, flat: bool = False):
        super().__init__()
        self.net = net
        self.flat = bool(flat)

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.net.shape) if self.flat else x

    def model(self, x: torch.Tensor):
        """The generative program with ``x`` observed (to draw, use :meth:`sample`)."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", _GlowDistribution(self.net), obs=self._images(x))

    def initialize(self, x: torch.Tensor) -> None:
        """Set every ActNorm from a batch of data (the data-dependent initialization)."""
        self.net.pending_init = True
        with torch.no_grad():
            self.net.encode(self._images(x))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per example, in nats; (N,)."""
        return _GlowDistribution(self.net).log_prob(self._images(x))

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        x = _GlowDistribution(self.net).sample((num_samples,))
        return x.reshape(num_samples, -1) if self.flat else x
