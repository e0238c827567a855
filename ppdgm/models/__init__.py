"""Generative programs p(x, z), one module per family."""

from __future__ import annotations

from . import classical
from .autoregressive import AutoregressiveBernoulli, MaskedLinear, fvsbn_net
from .likelihoods import LIKELIHOODS, Likelihood, make_likelihood
from .vae import ConditionalVAEModel, M2Model, VAEModel

__all__ = [
    "classical",
    "AutoregressiveBernoulli",
    "MaskedLinear",
    "fvsbn_net",
    "VAEModel",
    "ConditionalVAEModel",
    "M2Model",
    "Likelihood",
    "make_likelihood",
    "LIKELIHOODS",
]
