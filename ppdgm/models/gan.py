"""Generators with an implicit likelihood and the discriminators that play against them.

A generator is a Pyro program: z ~ N(0, I) is an explicit prior and x = G(z) (with the labels,
for a conditional model) a deterministic site, so the program has no density for x; it is
fitted by an adversarial objective (:class:`~ppdgm.inference.Adversarial`). The networks work
on standardized data: the generator's output is mapped back to the data's units by the
buffers ``shift`` and ``scale``, and the discriminator standardizes its input with the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from .._utils import check_choice
from ..errors import ConfigError
from ..nn import MLP

__all__ = [
    "Generator",
    "Discriminator",
    "DCGANGeneratorNet",
    "DCGANDiscriminatorNet",
    "dcgan_levels",
    "Encoder",
    "mlp_generator_net",
    "mlp_head",
    "image_scale",
]


def _standardizers(module: nn.Module, data_shape, shift, scale) -> None:
    shape = tuple(data_shape)
    shift = torch.zeros(shape) if shift is None else torch.as_tensor(shift, dtype=torch.float32)
    scale = torch.ones(shape) if scale is None else torch.as_tensor(scale, dtype=torch.float32)
    module.register_buffer("shift", shift.expand(shape).clone())
    module.register_buffer("scale", scale.expand(shape).clone())


class Generator(nn.Module):
    """The generator program: z ~ N(0, I_latent_dim), x = shift + scale * net([z, onehot(y)]).

    Args:
        net: maps (N, latent_dim + num_classes) to (N, *data_shape) in standardized units.
        latent_dim: dimension of z.
        data_shape: shape of one example.
        num_classes: labels of a conditional generator (0: unconditional).
        shift, scale: the data's location and scale (broadcastable to ``data_shape``).
    """

    def __init__(
        self,
        net: nn.Module,
        latent_dim: int,
        data_shape: Sequence[int],
        num_classes: int = 0,
        shift=None,
        scale=None,
    ):
        super().__init__()
        self.net = net
        self.latent_dim, self.num_classes = int(latent_dim), int(num_classes)
        self.data_shape = tuple(data_shape)
        _standardizers(self, data_shape, shift, scale)

    def _labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        if y is None:
            raise ConfigError("this generator is conditional: give the labels y")
        # one_hot refuses labels outside 0..num_classes-1
        return F.one_hot(y.long(), self.num_classes).to(self.shift.dtype)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x for latents z (N, latent_dim) and labels y (N,); (N, *data_shape)."""
        h = z if y is None else torch.cat([z, y], dim=-1)
        out = self.net(h).reshape(z.shape[0], *self.data_shape)
        return self.shift + self.scale * out

    def model(self, x=None, y=None, num_samples: int | None = None) -> torch.Tensor:
        """The program: returns x (N, *data_shape); N from x, y or ``num_samples``."""
        # no int() or len(): under tracing, sizes are tensors
        if x is not None:
            n = x.shape[0]
        elif y is not None:
            n = y.shape[0]
        elif num_samples is not None:
            n = num_samples
        else:
            raise ConfigError("the generator needs x, y or num_samples to know how many to draw")
        onehot = self._labels(y)
        loc = self.shift.new_zeros(self.latent_dim)
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(loc, 1.0).expand([self.latent_dim]).to_event(1))
            x_gen = self.forward(z, onehot)
            return pyro.deterministic("x", x_gen, event_dim=len(self.data_shape))

    @torch.no_grad()
    def sample(self, num_samples: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """Draw (num_samples, *data_shape) examples."""
        return self.model(y=y, num_samples=num_samples)


class Discriminator(nn.Module):
    """A discriminator (or critic) D(x[, y][, z]) -> (N,) raw outputs.

    ``features`` maps standardized x to (N, F); the head maps [features, onehot(y), z] to one
    output. A joint (x, z) discriminator (ALI/BiGAN) has ``latent_dim`` > 0.

    Args:
        features: (N, *data_shape) -> (N, F) (``nn.Flatten()`` for an MLP discriminator).
        head: (N, F + num_classes + latent_dim) -> (N, 1).
        data_shape: shape of one example.
        num_classes: labels of a conditional discriminator (0: none).
        latent_dim: dimension of z for joint pairs (0: x only).
        shift, scale: the data's location and scale.
    """

    def __init__(
        self,
        features: nn.Module,
        head: nn.Module,
        data_shape: Sequence[int],
        num_classes: int = 0,
        latent_dim: int = 0,
        shift=None,
        scale=None,
    ):
        super().__init__()
        self.features, self.head = features, head
        self.num_classes, self.latent_dim = int(num_classes), int(latent_dim)
        self.data_shape = tuple(data_shape)
        _standardizers(self, data_shape, shift, scale)

    def forward(self, x: torch.Tensor, y=None, z=None) -> torch.Tensor:
        h = [self.features((x - self.shift) / self.scale).flatten(1)]
        if self.num_classes:
            if y is None:
                raise ConfigError("this discriminator is conditional: give the labels y")
            h.append(F.one_hot(y.long(), self.num_classes).to(h[0].dtype))
        if self.latent_dim:
            if z is None:
                raise ConfigError("this discriminator judges (x, z) pairs: give z")
            h.append(z.reshape(z.shape[0], -1))
        return self.head(h[0] if len(h) == 1 else torch.cat(h, dim=1)).squeeze(-1)


class Encoder(nn.Module):
    """ALI/BiGAN's amortized guide: z ~ N(mu(x), sigma(x)) by reparameterization, so that
    the adversarial game's gradient reaches the encoder through z."""

    def __init__(self, net: nn.Module, latent_dim: int, data_shape, shift=None, scale=None):
        super().__init__()
        self.net, self.latent_dim = net, int(latent_dim)
        self.data_shape = tuple(data_shape)
        _standardizers(self, data_shape, shift, scale)

    def params(self, x: torch.Tensor):
        out = self.net((x - self.shift) / self.scale)
        loc, raw = out[..., : self.latent_dim], out[..., self.latent_dim :]
        return loc, F.softplus(raw) + 1e-4

    def guide(self, x=None, y=None, num_samples: int | None = None):
        if x is None:
            raise ConfigError("the encoder needs data x")
        loc, scale = self.params(x)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def dcgan_levels(height: int, width: int, max_levels: int = 3) -> int:
    """How many stride-2 levels a DCGAN net has for images of this size: halve while both
    sides stay even and at least 2, at most ``max_levels`` times (8x8: 2 levels from 2x2;
    28x28: 2 from 7x7; 32x32: 3 from 4x4)."""
    levels = 0
    while (
        levels < max_levels
        and height % 2 == 0
        and width % 2 == 0
        and height // 2 >= 2
        and width // 2 >= 2
    ):
        height, width, levels = height // 2, width // 2, levels + 1
    if levels == 0:
        raise ConfigError(
            f"a DCGAN needs images whose sides halve at least once to 2 or more, got "
            f"{height}x{width}; use arch='mlp'"
        )
    return levels


class DCGANGeneratorNet(nn.Module):
    """DCGAN's generator (Radford et al., 2016): a linear map to a small feature map, then
    stride-2 transposed convolutions with batch normalization and ReLU, tanh output.

    Shapes: (N, in_dim) -> (N, C, H, W) in [-1, 1].
    """

    def __init__(self, in_dim: int, image_shape: Sequence[int], channels: int = 32):
        super().__init__()
        c, h, w = image_shape
        levels = dcgan_levels(h, w)
        self.h0, self.w0 = h // 2**levels, w // 2**levels
        widths = [channels * 2 ** (levels - i) for i in range(levels + 1)]
        self.c0 = widths[0]
        self.head = nn.Sequential(
            nn.Linear(in_dim, self.c0 * self.h0 * self.w0, bias=False),
            nn.BatchNorm1d(self.c0 * self.h0 * self.w0),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(),
            ]
        layers += [nn.Conv2d(widths[-1], c, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z).reshape(z.shape[0], self.c0, self.h0, self.w0)
        return self.body(h)


class DCGANDiscriminatorNet(nn.Module):
    """DCGAN's discriminator features: stride-2 convolutions with LeakyReLU(0.2), normalized
    after every convolution but the first.

    ``norm="batch"`` is DCGAN's batch normalization; without it the discriminator of a
    batch-normalized generator falls behind and the generator collapses (on the 8x8 digits:
    Fréchet distance 5.4 with it, about 100 without, after 1,500 steps). ``"layer"``
    normalizes each example on its own (a one-group :class:`~torch.nn.GroupNorm`), as
    WGAN-GP's per-example gradient penalty needs; ``"none"`` leaves the features as they are
    (an encoder's).

    Shapes: (N, C, H, W) -> (N, F) with :attr:`out_dim` = F.
    """

    NORMS = ("batch", "layer", "none")

    def __init__(self, image_shape: Sequence[int], channels: int = 32, norm: str = "batch"):
        super().__init__()
        check_choice("norm", norm, self.NORMS)
        c, h, w = image_shape
        levels = dcgan_levels(h, w)
        layers: list[nn.Module] = []
        prev = c
        for i in range(levels):
            width = channels * 2**i
            layers.append(nn.Conv2d(prev, width, 4, stride=2, padding=1))
            if i > 0 and norm == "batch":
                layers.append(nn.BatchNorm2d(width))
            elif i > 0 and norm == "layer":
                layers.append(nn.GroupNorm(1, width))
            layers.append(nn.LeakyReLU(0.2))
            prev = width
        self.body = nn.Sequential(*layers)
        self.out_dim = prev * (h // 2**levels) * (w // 2**levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)


def mlp_generator_net(in_dim: int, hidden_dims, out_dim: int) -> nn.Module:
    """A LeakyReLU(0.2) MLP with a linear output, for vectors."""
    return MLP(in_dim, hidden_dims, out_dim, activation="leaky_relu")


def mlp_head(in_dim: int, hidden_dims) -> nn.Module:
    """A LeakyReLU(0.2) MLP to one output."""
    return MLP(in_dim, hidden_dims, 1, activation="leaky_relu")


def image_scale(x_min: float, x_max: float) -> tuple[float, float]:
    """shift and scale mapping [x_min, x_max] to [-1, 1], tanh's range."""
    half = max((x_max - x_min) / 2.0, 1e-6)
    return (x_max + x_min) / 2.0, half
