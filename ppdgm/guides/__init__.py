"""Amortized guides q(z | x): an encoder network gives each example's posterior parameters.

Each guide is a :class:`~pyro.nn.PyroModule` whose ``guide`` method has the signature of its
model's ``model`` method. As with the models, the methods are plain methods so parameters stay
in the module, never in Pyro's global parameter store.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from ..nn import broadcast_cat

__all__ = ["AmortizedNormalGuide", "AmortizedIAFGuide", "ConditionalNormalGuide", "M2Guide"]

_MIN_LOG_SCALE, _MAX_LOG_SCALE = -9.0, 5.0


class _NormalEncoderGuide(PyroModule):
    def __init__(
        self,
        encoder: nn.Module,
        latent_dim: int,
        input_scale: float = 1.0,
        beta: float = 1.0,
        flatten_dims: int = 0,
    ):
        super().__init__()
        self.encoder = encoder
        self.latent_dim = int(latent_dim)
        self.input_scale = float(input_scale)
        self.beta = float(beta)
        self.flatten_dims = int(flatten_dims)

    def _input(self, x):
        x = x * self.input_scale if self.input_scale != 1.0 else x
        return x.flatten(-self.flatten_dims) if self.flatten_dims > 1 else x

    def _normal(self, h):
        return self._loc_scale(self.encoder(h))

    def _loc_scale(self, out):
        """loc and scale from the encoder's output (N, 2 * latent_dim)."""
        loc, log_scale = out[..., : self.latent_dim], out[..., self.latent_dim :]
        return loc, log_scale.clamp(_MIN_LOG_SCALE, _MAX_LOG_SCALE).exp()

    def _sample_z(self, loc, scale):
        with poutine.scale(scale=self.beta):
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))


class AmortizedNormalGuide(_NormalEncoderGuide):
    """q(z | x) = N(loc(x), diag(scale(x)^2)) from one encoder.

    Args:
        encoder: maps the (scaled) data (N, *data_shape) to (N, 2 * latent_dim): the loc and
            the log-scale.
        latent_dim: dimension of z.
        input_scale: data are multiplied by it before the encoder (e.g. 1/16 for digits' 0..16).
        beta: must equal the model's β (the latent site is scaled by it in both programs).
        flatten_dims: when > 1, the last ``flatten_dims`` data dimensions are flattened first
            (an MLP encoder on image-shaped data).
    """

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """loc and scale of q(z | x), each (N, latent_dim)."""
        return self._normal(self._input(x))

    def guide(self, x: torch.Tensor | None = None, batch_size: int | None = None):
        if x is None:
            raise ValueError("the amortized guide needs the data x")
        with pyro.plate("data", x.shape[0]):
            return self._sample_z(*self.posterior(x))


class AmortizedIAFGuide(AmortizedNormalGuide):
    """q(z | x): the amortized Normal pushed through inverse autoregressive flow layers
    (Kingma et al., 2016), each conditioned on the encoder's output for x.

    Each layer maps ``z`` to ``z * sigma + mu`` with ``(mu, log sigma)`` from a MADE network of
    ``z`` and the context (the encoder's output); drawing from q takes one pass per layer, and
    the log-density of a draw is known in the same pass, which is what the ELBO needs. The
    ordering is reversed from one layer to the next.

    Args:
        encoder, latent_dim, input_scale, beta, flatten_dims: as for
            :class:`AmortizedNormalGuide`.
        num_flows: IAF layers.
        hidden_dims: widths of each layer's MADE network.
    """

    def __init__(
        self,
        encoder: nn.Module,
        latent_dim: int,
        input_scale: float = 1.0,
        beta: float = 1.0,
        flatten_dims: int = 0,
        num_flows: int = 2,
        hidden_dims: tuple[int, ...] = (64, 64),
    ):
        super().__init__(encoder, latent_dim, input_scale, beta, flatten_dims)
        import pyro.distributions.transforms as T
        from pyro.nn import ConditionalAutoRegressiveNN

        d = self.latent_dim
        layers = []
        for i in range(int(num_flows)):
            order = torch.arange(d) if i % 2 == 0 else torch.arange(d - 1, -1, -1)
            net = ConditionalAutoRegressiveNN(d, 2 * d, list(hidden_dims), permutation=order)
            layers.append(T.ConditionalAffineAutoregressive(net))
        self.flows = nn.ModuleList(layers)

    def distribution(self, x: torch.Tensor) -> dist.Distribution:
        """q(z | x) for a batch (N, *data_shape): batch (N,), event (latent_dim,)."""
        out = self.encoder(self._input(x))
        base = dist.Normal(*self._loc_scale(out)).to_event(1)
        return dist.TransformedDistribution(base, [t.condition(out) for t in self.flows])

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A summary of q(z | x), each (N, latent_dim): the layers applied to the base loc
        (the flow's image of the base mode), and the base scale."""
        d = self.distribution(x)
        loc = d.base_dist.base_dist.loc
        for t in d.transforms:
            loc = t(loc)
        return loc, d.base_dist.base_dist.scale

    def guide(self, x: torch.Tensor | None = None, batch_size: int | None = None):
        if x is None:
            raise ValueError("the amortized guide needs the data x")
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.beta):
                return pyro.sample("z", self.distribution(x))


class ConditionalNormalGuide(_NormalEncoderGuide):
    """q(z | x, y) for the conditional VAE: the encoder sees the data and the one-hot label."""

    def __init__(
        self, encoder, latent_dim, num_classes: int, input_scale=1.0, beta=1.0, flatten_dims=0
    ):
        super().__init__(encoder, latent_dim, input_scale, beta, flatten_dims)
        self.num_classes = int(num_classes)

    def posterior(self, x, y):
        h = self._input(x)
        return self._normal(broadcast_cat(h, F.one_hot(y, self.num_classes).to(h.dtype)))

    def guide(self, x=None, y=None, batch_size=None):
        if x is None or y is None:
            raise ValueError("the conditional guide needs the data x and labels y")
        with pyro.plate("data", x.shape[0]):
            return self._sample_z(*self.posterior(x, y))


class M2Guide(_NormalEncoderGuide):
    """q(y | x) q(z | x, y) for M2: a classifier for the label and an encoder for z.

    Where ``y`` is not given, it is a latent site marked for parallel enumeration, so that
    ``TraceEnum_ELBO`` sums over the classes exactly.

    Args:
        classifier: maps (N, *data_shape) to (N, num_classes) logits.
        encoder: maps (N, D + num_classes) to (N, 2 * latent_dim).
    """

    def __init__(
        self,
        classifier: nn.Module,
        encoder: nn.Module,
        latent_dim: int,
        num_classes: int,
        input_scale=1.0,
        beta=1.0,
        flatten_dims=0,
    ):
        super().__init__(encoder, latent_dim, input_scale, beta, flatten_dims)
        self.classifier = classifier
        self.num_classes = int(num_classes)

    def class_logits(self, x):
        """Logits of q(y | x), (N, num_classes)."""
        return self.classifier(self._input(x))

    def classifier_log_prob(self, x, y):
        """log q(y | x) for observed labels, (N,): the auxiliary classification term."""
        return dist.Categorical(logits=self.class_logits(x)).log_prob(y)

    def guide(self, x=None, y=None, batch_size=None):
        if x is None:
            raise ValueError("the M2 guide needs the data x")
        h = self._input(x)
        with pyro.plate("data", x.shape[0]):
            if y is None:
                y = pyro.sample(
                    "y",
                    dist.Categorical(logits=self.classifier(h)),
                    infer={"enumerate": "parallel"},
                )
            z_in = broadcast_cat(h, F.one_hot(y, self.num_classes).to(h.dtype))
            return self._sample_z(*self._normal(z_in))
