"""Variational autoencoders as Pyro programs: the VAE, the conditional VAE and M2.

Each class is a :class:`~pyro.nn.PyroModule` holding the decoder; its ``model`` method is the
generative program (prior, ``pyro.plate`` over the data, neural likelihood). The methods are
plain methods, so the networks' parameters stay in the module (``state_dict``) and never enter
Pyro's global parameter store. β-VAE is the VAE with ``beta != 1``: the latent site is scaled by
β in the model and in the guide, which scales the KL term of the ELBO.

References: Kingma & Welling (2014), "Auto-Encoding Variational Bayes"; Higgins et al. (2017),
"β-VAE"; Sohn et al. (2015), "Learning Structured Output Representation using Deep Conditional
Generative Models"; Kingma et al. (2014), "Semi-Supervised Learning with Deep Generative Models".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from ..nn import broadcast_cat
from .likelihoods import Likelihood

__all__ = ["VAEModel", "ConditionalVAEModel", "M2Model"]


class _DecoderModel(PyroModule):
    """Shared parts: a standard normal prior on z and a decoder into a likelihood."""

    def __init__(
        self,
        decoder: nn.Module,
        latent_dim: int,
        likelihood: Likelihood,
        data_shape: Sequence[int],
        beta: float = 1.0,
    ):
        super().__init__()
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = int(latent_dim)
        self.data_shape = tuple(int(s) for s in data_shape)
        self.beta = float(beta)
        self.register_buffer("prior_loc", torch.zeros(self.latent_dim))
        self.register_buffer("prior_scale", torch.ones(self.latent_dim))

    @property
    def num_dims(self) -> int:
        """Number of data dimensions of one example."""
        return math.prod(self.data_shape)

    def prior(self) -> dist.Distribution:
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    def _num(self, x, batch_size):
        if x is not None:
            return x.shape[0]
        if batch_size is None:
            raise ValueError("give x or batch_size")
        return int(batch_size)

    def decode_params(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the decoder on (*batch, in_dim) and split into the likelihood's parameters."""
        out = self.decoder(h)
        k = self.likelihood.num_params
        out = out.reshape(*h.shape[:-1], k, *self.data_shape)
        return tuple(out.unbind(-len(self.data_shape) - 1))

    def _sample_z(self):
        with poutine.scale(scale=self.beta):
            return pyro.sample("z", self.prior())

    def _observe(self, params, x):
        fn = self.likelihood(*params).to_event(len(self.data_shape))
        return pyro.sample("x", fn, obs=x)


class VAEModel(_DecoderModel):
    """p(z) p(x | z): z ~ N(0, I) of ``latent_dim`` (or a flow prior), x from
    ``likelihood(decoder(z))``.

    Args:
        decoder: maps (*batch, latent_dim) to the likelihood's parameters,
            (*batch, num_params * D) for vectors or (*batch, num_params * C, H, W) for images.
        latent_dim: dimension of z.
        likelihood: a :class:`~ppdgm.models.likelihoods.Likelihood`.
        data_shape: shape of one example, (D,) or (C, H, W).
        beta: weight of the KL term (β-VAE); 1 is the plain VAE.
        prior_flow: a :class:`~ppdgm.models.flows.Flow` over z: the prior is its density (a
            learned prior, e.g. MAF layers on a standard normal) instead of N(0, I).
    """

    def __init__(self, decoder, latent_dim, likelihood, data_shape, beta=1.0, prior_flow=None):
        super().__init__(decoder, latent_dim, likelihood, data_shape, beta)
        self.prior_flow = prior_flow

    def prior(self) -> dist.Distribution:
        if self.prior_flow is None:
            return super().prior()
        return self.prior_flow.distribution()

    def model(self, x: torch.Tensor | None = None, batch_size: int | None = None):
        """The generative program; ``x`` of shape (N, *data_shape) is observed when given."""
        n = self._num(x, batch_size)
        with pyro.plate("data", n):
            z = self._sample_z()
            return self._observe(self.decode_params(z), x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean given z of shape (*batch, latent_dim)."""
        return self.likelihood.mean(*self.decode_params(z))


class ConditionalVAEModel(_DecoderModel):
    """p(z) p(x | z, y) with the label y an observed input (one-hot into the decoder).

    The decoder maps (*batch, latent_dim + num_classes) to the likelihood's parameters.
    """

    def __init__(self, decoder, latent_dim, likelihood, data_shape, num_classes: int, beta=1.0):
        super().__init__(decoder, latent_dim, likelihood, data_shape, beta)
        self.num_classes = int(num_classes)

    def model(self, x=None, y: torch.Tensor | None = None, batch_size=None):
        """``y`` of shape (N,) holds integer labels; it is required (it conditions generation)."""
        if y is None:
            raise ValueError("the conditional VAE needs labels y")
        n = y.shape[0]
        with pyro.plate("data", n):
            z = self._sample_z()
            h = broadcast_cat(z, F.one_hot(y, self.num_classes).to(z.dtype))
            return self._observe(self.decode_params(h), x)

    def decode(self, z, y):
        h = broadcast_cat(z, F.one_hot(y, self.num_classes).to(z.dtype))
        return self.likelihood.mean(*self.decode_params(h))


class M2Model(_DecoderModel):
    """The semi-supervised M2 model: y ~ Uniform{0..K-1}, z ~ N(0, I), x ~ p(x | z, y).

    ``y`` is observed where labels are known and latent otherwise; its guide enumerates it.
    The decoder maps (*batch, latent_dim + num_classes) to the likelihood's parameters.
    """

    def __init__(self, decoder, latent_dim, likelihood, data_shape, num_classes: int, beta=1.0):
        super().__init__(decoder, latent_dim, likelihood, data_shape, beta)
        self.num_classes = int(num_classes)
        self.register_buffer("class_logits", torch.zeros(self.num_classes))

    def model(self, x=None, y=None, batch_size=None):
        n = self._num(x, batch_size) if y is None else y.shape[0]
        with pyro.plate("data", n):
            y = pyro.sample("y", dist.Categorical(logits=self.class_logits), obs=y)
            z = self._sample_z()
            h = broadcast_cat(z, F.one_hot(y, self.num_classes).to(z.dtype))
            return self._observe(self.decode_params(h), x)
