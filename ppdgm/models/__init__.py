"""Generative programs p(x, z), one module per family."""

from __future__ import annotations

from . import classical
from .autoregressive import (
    AutoregressiveBernoulli,
    MADENet,
    MaskedLinear,
    NADENet,
    fvsbn_net,
    made_masks,
    random_orders,
)
from .likelihoods import LIKELIHOODS, Likelihood, make_likelihood
from .vae import ConditionalVAEModel, M2Model, VAEModel

__all__ = [
    "classical",
    "AutoregressiveBernoulli",
    "MaskedLinear",
    "fvsbn_net",
    "MADENet",
    "NADENet",
    "made_masks",
    "random_orders",
    "VAEModel",
    "ConditionalVAEModel",
    "M2Model",
    "Likelihood",
    "make_likelihood",
    "LIKELIHOODS",
]
