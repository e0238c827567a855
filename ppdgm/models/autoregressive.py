"""Autoregressive models of binary vectors as Pyro programs with an exact likelihood.

``p(x) = prod_d p(x_{o_d} | x_{o_1}, ..., x_{o_{d-1}})`` for an ordering ``o`` of the
dimensions, each conditional a Bernoulli whose logit is computed from the earlier dimensions
only. The program's observed site has an exact ``log_prob``, so the model is fitted by
:class:`~ppdgm.inference.ExactNLL` through the one trainer, and sampled by running the
conditionals forward one dimension at a time.

A model may also hold several orderings and be the uniform mixture over them (an ensemble
of orderings, as in MADE): its program then draws the ordering as a latent site and is fitted
by the ELBO with a uniform guide over orderings, which is the average over orderings of each
one's log-likelihood (order-agnostic training); its exact log-likelihood is the mixture's.

References: Frey (1998), "Graphical Models for Machine Learning and Digital Communication"
(the fully visible sigmoid belief network); Larochelle & Murray (2011), "The Neural
Autoregressive Distribution Estimator"; Germain, Gregor, Murray & Larochelle (2015), "MADE:
Masked Autoencoder for Distribution Estimation".
"""

from __future__ import annotations

import itertools
import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

__all__ = [
    "MaskedLinear",
    "AutoregressiveBernoulli",
    "fvsbn_net",
    "MADENet",
    "NADENet",
    "made_masks",
    "random_orders",
]


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


def random_orders(dim: int, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``num`` orderings of ``dim`` dimensions, (num, dim): the natural one first, then random
    permutations."""
    orders = [torch.arange(dim)]
    orders += [torch.randperm(dim, generator=generator) for _ in range(num - 1)]
    return torch.stack(orders)


def _ranks(order: torch.Tensor) -> torch.Tensor:
    """The position of each dimension in ``order``."""
    rank = torch.empty(len(order), dtype=torch.long)
    rank[order] = torch.arange(len(order))
    return rank


def made_masks(
    order: torch.Tensor, hidden_dims: tuple[int, ...], generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """MADE's masks for one ordering: each hidden unit gets a degree ``m`` (it may see the
    inputs at positions ``<= m`` in the ordering), drawn uniformly between the previous layer's
    smallest degree and D - 2; a unit sees the units of the layer below of degree ``<= m``,
    and output ``d`` sees the last hidden units of degree below ``d``'s position.

    Returns:
        one (out, in) 0/1 mask per layer, input to output (len(hidden_dims) + 1 of them).
    """
    dim = len(order)
    if dim < 2:
        raise ValueError(f"MADE needs at least 2 dimensions, got {dim}")
    degrees = [_ranks(order)]
    for h in hidden_dims:
        low = int(degrees[-1].min())
        degrees.append(torch.randint(low, dim - 1, (h,), generator=generator))
    masks = [
        (d_out[:, None] >= d_in[None, :]).float() for d_in, d_out in itertools.pairwise(degrees)
    ]
    masks.append((degrees[0][:, None] > degrees[-1][None, :]).float())
    return masks


class MADENet(nn.Module):
    """The masked autoencoder: an MLP whose weight masks make output ``d`` depend only on the
    inputs before ``d`` in the ordering, for each of several orderings (and connectivities)
    sharing the same weights, plus direct input-to-output connections.

    Args:
        orders: (K, D) orderings; mask set ``k`` follows ``orders[k]``.
        hidden_dims: the hidden layers' widths.
        dropout: dropout probability after each hidden layer while training.
        generator: draws the hidden units' degrees.
    """

    def __init__(
        self,
        orders: torch.Tensor,
        hidden_dims: tuple[int, ...] = (512,),
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        orders = torch.as_tensor(orders).long().reshape(-1, orders.shape[-1])
        dim = orders.shape[1]
        sets = [made_masks(o, tuple(hidden_dims), generator) for o in orders]
        sizes = [dim, *hidden_dims, dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        for i in range(len(self.layers)):
            self.register_buffer(f"mask{i}", torch.stack([s[i] for s in sets]))
        ranks = torch.stack([_ranks(o) for o in orders])
        self.register_buffer("direct_mask", (ranks[:, :, None] > ranks[:, None, :]).float())
        self.direct = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.direct.weight.zero_()
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor, k: torch.Tensor | int = 0) -> torch.Tensor:
        # the mask set picked by a tensor index stays a graph operation when traced
        k = k.reshape(1) if torch.is_tensor(k) else torch.tensor([k], device=x.device)
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            mask = getattr(self, f"mask{i}").index_select(0, k)[0]
            h = F.linear(h, layer.weight * mask, layer.bias)
            if i < last:
                h = F.dropout(F.relu(h), self.dropout, self.training)
        return h + F.linear(x, self.direct.weight * self.direct_mask.index_select(0, k)[0])

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of every ordering at once, (N, K, D): each layer applies the K masked
        weight matrices in one batched product (dropout drawn for each ordering apart)."""
        h = x.unsqueeze(1)  # (N, 1, D): the same input under every ordering
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            weight = layer.weight * getattr(self, f"mask{i}")  # (K, out, in)
            h = torch.einsum("nki,koi->nko", h.expand(-1, weight.shape[0], -1), weight)
            h = h + layer.bias
            if i < last:
                h = F.dropout(F.relu(h), self.dropout, self.training)
        return h + torch.einsum("ni,koi->nko", x, self.direct.weight * self.direct_mask)


class NADENet(nn.Module):
    """NADE's conditionals: ``h_d = sigmoid(c + W[:, <d] x_<d)`` and
    ``logit_d = b_d + V_d . h_d``, in the given ordering. Computing every ``h_d`` at once is a
    cumulative sum over the ordered inputs, O(D H) per example.

    Args:
        order: the ordering of the D dimensions.
        hidden: the number of hidden units.
    """

    def __init__(self, order: torch.Tensor, hidden: int = 64):
        super().__init__()
        dim = len(order)
        self.register_buffer("order", torch.as_tensor(order).long())
        self.W = nn.Parameter(torch.randn(hidden, dim) * dim**-0.5)
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.randn(dim, hidden) * hidden**-0.5)
        self.b = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xo = x[:, self.order]  # (N, D) in the model's order
        contrib = xo[:, :, None] * self.W[:, self.order].T[None]  # (N, D, H)
        # pre-activation of h_d: c plus the contributions of the dimensions before d
        a = self.c + torch.cumsum(contrib, 1) - contrib
        logits_o = self.b[self.order] + (torch.sigmoid(a) * self.V[self.order][None]).sum(-1)
        return torch.empty_like(logits_o).index_copy_(1, self.order, logits_o)


class AutoregressiveBernoulli(PyroModule):
    """x ~ prod_d Bernoulli(x_{o_d} | logit_{o_d}(x_{o_<d})): the program and its sampler.

    With several orderings, the model is their uniform mixture: the program draws the
    ordering (site ``"ordering"``) and :meth:`guide` draws it uniformly, so the ELBO is the
    mean over orderings of each one's log-likelihood; :meth:`log_prob` is the mixture's exact
    log-likelihood.

    Args:
        net: maps (N, D) inputs to (N, D) logits, output ``d`` depending only on the inputs
            before ``d`` in the ordering (e.g. :func:`fvsbn_net`); with several orderings it
            is called as ``net(x, k)`` for ordering ``k``.
        dim: D.
        order: the ordering of the D dimensions (default: 0..D-1), or (K, D) orderings.
    """

    def __init__(self, net: nn.Module, dim: int, order: torch.Tensor | None = None):
        super().__init__()
        self.net = net
        self.dim = int(dim)
        order = torch.arange(self.dim) if order is None else torch.as_tensor(order)
        self.register_buffer("orders", order.long().reshape(-1, self.dim))
        #: K (a plain int: the traced training step must not branch on a tensor's size)
        self.num_orderings = int(self.orders.shape[0])

    @property
    def order(self) -> torch.Tensor:
        """The first ordering."""
        return self.orders[0]

    def logits(self, x: torch.Tensor, k: torch.Tensor | int = 0) -> torch.Tensor:
        """(N, D) logits of the conditionals p(x_d = 1 | x_<d) in ordering ``k``."""
        return self.net(x) if self.num_orderings == 1 else self.net(x, k)

    def _ordering_prior(self):
        return dist.Categorical(logits=torch.zeros(self.num_orderings, device=self.orders.device))

    def model(self, x: torch.Tensor):
        """The generative program with ``x`` (N, D) observed (to draw, use :meth:`sample`)."""
        k = 0
        if self.num_orderings > 1:
            k = pyro.sample("ordering", self._ordering_prior())
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Bernoulli(logits=self.logits(x, k)).to_event(1), obs=x)

    def guide(self, x: torch.Tensor):
        """Uniform over the orderings (nothing to fit); used with several orderings."""
        if self.num_orderings > 1:
            pyro.sample("ordering", self._ordering_prior())

    def logits_all(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K, D) logits of every ordering (one batched pass where the net has
        ``forward_all``)."""
        if hasattr(self.net, "forward_all"):
            return self.net.forward_all(x)
        return torch.stack([self.logits(x, k) for k in range(self.num_orderings)], 1)

    def model_all_orderings(self, x: torch.Tensor):
        """The order-agnostic training program with the ordering summed out instead of drawn:
        ``x`` observed under each of the K orderings with weight 1/K, so that its log-density
        is the mean over orderings of their exact log-likelihoods, the expectation that
        :meth:`model` with :meth:`guide` estimates from one drawn ordering (a lower bound on
        the mixture's :meth:`log_prob`, by Jensen's inequality). Costs K passes per step and
        has no latent site (no guide)."""
        logits = self.logits_all(x).transpose(0, 1)  # (K, N, D)
        with (
            poutine.scale(scale=1.0 / self.num_orderings),
            pyro.plate("orderings", self.num_orderings, dim=-2),
            pyro.plate("data", x.shape[0], dim=-1),
        ):
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def log_prob_each(self, x: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
        """log p_k(x) under each ordering ``k``; (K, N). Rows go through in chunks, so that
        the (rows, K, hidden) activations of the batched pass stay bounded."""
        parts = []
        for xc in x.split(chunk_size):
            logits = self.logits_all(xc).transpose(0, 1)
            parts.append(dist.Bernoulli(logits=logits).log_prob(xc).sum(-1))
        return torch.cat(parts, 1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per example, in nats; (N,). With several orderings, the log of the
        mean of their likelihoods."""
        each = self.log_prob_each(x)
        return torch.logsumexp(each, 0) - math.log(self.num_orderings)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Draw (num_samples, D) examples one dimension at a time, in the model's order (with
        several orderings, each example's ordering drawn uniformly first)."""
        x = torch.zeros(num_samples, self.dim, device=self.orders.device)
        which = torch.zeros(num_samples, dtype=torch.long, device=x.device)
        if self.num_orderings > 1:
            which = torch.randint(self.num_orderings, (num_samples,), device=x.device)
        for k in range(self.num_orderings):
            rows = (which == k).nonzero().squeeze(1)
            if len(rows) == 0:
                continue
            xk = x[rows]
            for d in self.orders[k].tolist():
                p = torch.sigmoid(self.logits(xk, k)[:, d])
                xk[:, d] = torch.bernoulli(p)
            x[rows] = xk
        return x
