"""Autoregressive models of binary vectors as Pyro programs with an exact likelihood.

``p(x) = prod_d p(x_{o_d} | x_{o_1}, ..., x_{o_{d-1}})`` for an ordering ``o`` of the
dimensions, each conditional a Bernoulli whose logit is computed from the earlier dimensions
only. The program's observed site has an exact ``log_prob``, so the model is fitted by
:class:`~ppdgm.inference.ExactNLL` through the one trainer, and sampled by running the
conditionals forward one dimension at a time.

Reference: Frey (1998), "Graphical Models for Machine Learning and Digital Communication"
(the fully visible sigmoid belief network).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

__all__ = ["MaskedLinear", "AutoregressiveBernoulli", "fvsbn_net"]


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        if mask.shape != (out_features, in_features):
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} for a layer of shape "
                f"({out_features}, {in_features})"
            )
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def fvsbn_net(order: torch.Tensor) -> MaskedLinear:
    """The FVSBN's conditionals: logit_d = b_d + sum_{j before d} W_dj x_j, one masked layer
    whose mask lets dimension ``d`` see exactly the dimensions earlier in ``order``."""
    dim = len(order)
    rank = torch.empty(dim, dtype=torch.long)
    rank[order] = torch.arange(dim)
    mask = (rank[None, :] < rank[:, None]).float()  # out d sees in j when j comes first
    layer = MaskedLinear(dim, dim, mask)
    with torch.no_grad():
        layer.weight.mul_(0.1)
    return layer


class AutoregressiveBernoulli(PyroModule):
    """x ~ prod_d Bernoulli(x_{o_d} | logit_{o_d}(x_{o_<d})): the program and its sampler.

    Args:
        net: maps (N, D) inputs to (N, D) logits, output ``d`` depending only on the inputs
            before ``d`` in ``order`` (e.g. :func:`fvsbn_net`).
        order: the ordering of the D dimensions (default: 0..D-1).
    """

    def __init__(self, net: nn.Module, dim: int, order: torch.Tensor | None = None):
        super().__init__()
        self.net = net
        self.dim = int(dim)
        order = torch.arange(self.dim) if order is None else torch.as_tensor(order)
        self.register_buffer("order", order.long())

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) logits of the conditionals p(x_d = 1 | x_<d)."""
        return self.net(x)

    def model(self, x: torch.Tensor):
        """The generative program with ``x`` (N, D) observed (to draw, use :meth:`sample`)."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Bernoulli(logits=self.logits(x)).to_event(1), obs=x)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per example, in nats; (N,)."""
        return dist.Bernoulli(logits=self.logits(x)).log_prob(x).sum(-1)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Draw (num_samples, D) examples one dimension at a time, in the model's order."""
        x = torch.zeros(num_samples, self.dim, device=self.order.device)
        for d in self.order.tolist():
            p = torch.sigmoid(self.logits(x)[:, d])
            x[:, d] = torch.bernoulli(p)
        return x
