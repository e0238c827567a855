"""Network building blocks shared by models and guides."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import nn

from .._utils import check_choice

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "broadcast_cat", "ACTIVATIONS"]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    # the slope GANs use (Radford et al., 2016)
    "leaky_relu": functools.partial(nn.LeakyReLU, 0.2),
}


def _activation(name: str) -> type[nn.Module]:
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]


class MLP(nn.Sequential):
    """A multilayer perceptron: Linear layers with an activation between them.

    Args:
        in_dim: input features.
        hidden_dims: widths of the hidden layers.
        out_dim: output features (no activation on the output).
        activation: name in :data:`ACTIVATIONS`.

    Shapes: (..., in_dim) -> (..., out_dim).
    """

    def __init__(
        self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, activation: str = "relu"
    ):
        act = _activation(activation)
        layers: list[nn.Module] = []
        dims = [in_dim, *hidden_dims]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), act()]
        layers.append(nn.Linear(dims[-1], out_dim))
        super().__init__(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions, then an MLP head.

    Args:
        image_shape: (C, H, W) of the input.
        out_dim: output features.
        channels: channels of the two convolutions.
        hidden_dims: widths of the head's hidden layers.

    Shapes: (..., C, H, W) -> (..., out_dim).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        out_dim: int,
        channels: Sequence[int] = (32, 64),
        hidden_dims: Sequence[int] = (256,),
        activation: str = "relu",
    ):
        super().__init__()
        c, h, w = image_shape
        act = _activation(activation)
        layers: list[nn.Module] = []
        prev = c
        for ch in channels:
            layers += [nn.Conv2d(prev, ch, 3, stride=2, padding=1), act()]
            prev = ch
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.conv = nn.Sequential(*layers)
        self.image_shape = tuple(image_shape)
        self.head = MLP(prev * h * w, hidden_dims, out_dim, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-3]
        h = self.conv(x.reshape(-1, *self.image_shape))
        return self.head(h.flatten(1)).reshape(*batch, -1)


class ConvDecoder(nn.Module):
    """An MLP to a small feature map, two stride-2 transposed convolutions, cropped to size.

    Args:
        in_dim: input features (e.g. the latent dimension).
        image_shape: (C, H, W) of the output image.
        out_channels_per_channel: output maps per image channel (2 for loc and scale).
        channels: channels of the feature maps, coarsest first.

    Shapes: (..., in_dim) -> (..., C * out_channels_per_channel, H, W).
    """

    def __init__(
        self,
        in_dim: int,
        image_shape: Sequence[int],
        out_channels_per_channel: int = 1,
        channels: Sequence[int] = (64, 32),
        hidden_dims: Sequence[int] = (256,),
        activation: str = "relu",
    ):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        n_up = len(channels)
        self.h0, self.w0 = math.ceil(h / 2**n_up), math.ceil(w / 2**n_up)
        self.c0 = channels[0]
        self.head = MLP(in_dim, hidden_dims, self.c0 * self.h0 * self.w0, activation)
        act = _activation(activation)
        layers: list[nn.Module] = [act()]
        prev = channels[0]
        for ch in list(channels[1:]) + [channels[-1]]:
            layers += [nn.ConvTranspose2d(prev, ch, 4, stride=2, padding=1), act()]
            prev = ch
        layers.append(nn.Conv2d(prev, c * out_channels_per_channel, 3, padding=1))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        h = self.head(z.reshape(-1, z.shape[-1])).reshape(-1, self.c0, self.h0, self.w0)
        out = self.deconv(h)[..., : self.image_shape[1], : self.image_shape[2]]
        return out.reshape(*batch, *out.shape[1:])


def broadcast_cat(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate along the last dimension after broadcasting all other dimensions."""
    batch = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*batch, t.shape[-1]) for t in tensors], dim=-1)
