"""Observation likelihoods p(x | network output) shared by every decoder-based model."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn

from .._utils import check_choice
from ..distributions import DiscretizedLogistic
from ..errors import ConfigError

__all__ = [
    "Likelihood",
    "Bernoulli",
    "Gaussian",
    "DiscretizedLogisticLikelihood",
    "make_likelihood",
    "LIKELIHOODS",
]


class Likelihood(nn.Module):
    """Maps a decoder's raw outputs to a distribution over one example.

    ``num_params`` is how many values per data dimension the decoder must output;
    ``forward(*params)`` takes that many tensors of shape (*batch, *event_shape) and returns a
    distribution with batch shape (*batch, *event_shape) (the model applies ``to_event``).
    """

    name = "likelihood"
    num_params = 1

    def mean(self, *params: torch.Tensor) -> torch.Tensor:
        return self(*params).mean


class Bernoulli(Likelihood):
    """Bernoulli with logits from the decoder, for binary data."""

    name = "bernoulli"

    def forward(self, logits):
        return dist.Bernoulli(logits=logits)

    def mean(self, logits):
        return torch.sigmoid(logits)


class Gaussian(Likelihood):
    """Normal with its mean from the decoder and a scale per data dimension.

    Args:
        event_shape: shape of one example.
        scale: ``"learned"`` (a free log-scale parameter per dimension, initialised at 0)
            or a fixed positive float.
    """

    name = "gaussian"

    def __init__(self, event_shape, scale: str | float = "learned"):
        super().__init__()
        if scale == "learned":
            self.log_scale = nn.Parameter(torch.zeros(event_shape))
        else:
            try:
                value = float(scale)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"gaussian scale must be 'learned' or a positive number, got {scale!r}"
                ) from None
            if not value > 0:
                raise ConfigError(f"gaussian scale must be positive, got {value}")
            self.register_buffer("log_scale", torch.full(tuple(event_shape), float(value)).log())

    def forward(self, loc):
        return dist.Normal(loc, self.log_scale.exp())

    def mean(self, loc):
        return loc


class DiscretizedLogisticLikelihood(Likelihood):
    """Discretized logistic over the integers 0..num_bins-1; the decoder gives loc and log-scale.

    The decoder's location is on the [0, 1] scale and stretched to the bins, so that its
    initial outputs land in the middle of the range.
    """

    name = "discretized_logistic"
    num_params = 2

    def __init__(self, num_bins: int):
        super().__init__()
        if int(num_bins) < 2:
            raise ConfigError(f"discretized_logistic needs num_bins >= 2, got {num_bins}")
        self.num_bins = int(num_bins)

    def forward(self, loc, log_scale):
        k = self.num_bins - 1
        return DiscretizedLogistic(
            (loc + 0.5) * k, log_scale.clamp(min=-7.0) + math.log(k / 4.0), self.num_bins
        )


LIKELIHOODS = ("bernoulli", "gaussian", "discretized_logistic")


def make_likelihood(name: str, event_shape, gaussian_scale="learned", num_bins=None) -> Likelihood:
    """Build a likelihood by name (one of :data:`LIKELIHOODS`)."""
    check_choice("likelihood", name, LIKELIHOODS)
    if name == "bernoulli":
        return Bernoulli()
    if name == "gaussian":
        return Gaussian(event_shape, gaussian_scale)
    if num_bins is None:  # discretized_logistic
        raise ConfigError("discretized_logistic needs num_bins (the number of integer values)")
    return DiscretizedLogisticLikelihood(num_bins)
