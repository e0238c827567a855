"""Autoregressive families: exact likelihood, fitted by the exact negative log-likelihood
through the one trainer, sampled one dimension at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._utils import check_int
from ..data import check_likelihood_support
from ..inference import ELBO
from ..models.autoregressive import (
    AutoregressiveBernoulli,
    MADENet,
    NADENet,
    fvsbn_net,
    random_orders,
)
from .base import ExactLikelihoodEstimator, check_hidden_dims, register

__all__ = ["FVSBN", "NADE", "MADE"]


class _BinaryAutoregressive(ExactLikelihoodEstimator):
    """Shared parts of the autoregressive families over binary vectors (N, D)."""

    default_data = "digits-binary"

    def _check_support(self, x: np.ndarray, source: str, settings: dict[str, Any]) -> None:
        check_likelihood_support(x, "bernoulli", source)

    def _build(self, data_shape: tuple[int, ...]) -> None:
        dim = self._vector_dim(data_shape)
        generator = torch.Generator().manual_seed(int(self.seed))
        orders = random_orders(dim, getattr(self, "num_orderings", 1), generator)
        self.model_ = AutoregressiveBernoulli(self._net(orders, generator), dim, orders)

    def _net(self, orders: torch.Tensor, generator: torch.Generator) -> torch.nn.Module:
        raise NotImplementedError

    def _programs(self):
        if self.model_.num_orderings > 1:
            return self.model_.model, self.model_.guide
        return super()._programs()

    def _objective(self):
        if self.model_.num_orderings > 1:
            # the ordering is the only latent site, drawn uniformly by the guide as by the
            # prior: the ELBO is the mean over orderings of their exact log-likelihoods
            return ELBO()
        return super()._objective()

    def _check_params(self) -> None:
        super()._check_params()
        for name in ("num_orderings", "hidden"):
            if hasattr(self, name):
                check_int(name, getattr(self, name))
        if hasattr(self, "hidden_dims"):
            check_hidden_dims(self.hidden_dims)


@register
class FVSBN(_BinaryAutoregressive):
    """Fully visible sigmoid belief network: p(x_d = 1 | x_<d) = sigmoid(b_d + w_d . x_<d).

    The simplest autoregressive model of binary vectors (Frey, 1998): one logistic regression
    per dimension on the dimensions before it, D(D+1)/2 parameters, an exact likelihood.

    Args:
        seed: seeds initialization, training and sampling.
        device: ``auto``, ``cpu`` or ``cuda``.
        compile: trace the training step into a graph (see :class:`~ppdgm.train.Trainer`).

    Attributes:
        model_: the fitted :class:`~ppdgm.models.AutoregressiveBernoulli`.
    """

    family = "fvsbn"
    summary = "fully visible sigmoid belief network: logistic conditionals, exact likelihood"

    def __init__(self, *, seed: int = 0, device: str = "auto", compile: bool = True):
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _net(self, orders: torch.Tensor, generator: torch.Generator) -> torch.nn.Module:
        return fvsbn_net(orders[0])


@register
class NADE(_BinaryAutoregressive):
    """Neural autoregressive distribution estimator (Larochelle & Murray, 2011).

    p(x_d = 1 | x_<d) = sigmoid(b_d + V_d . h_d) with h_d = sigmoid(c + W[:, <d] x_<d): one
    hidden layer whose weights are shared by all D conditionals, so all of them cost O(D H).

    Args:
        hidden: the number of hidden units.
        weight_decay: AdamW's decoupled weight decay (0: plain Adam).
        seed: seeds initialization, training and sampling.
        device: ``auto``, ``cpu`` or ``cuda``.
        compile: trace the training step into a graph (see :class:`~ppdgm.train.Trainer`).

    Attributes:
        model_: the fitted :class:`~ppdgm.models.AutoregressiveBernoulli`.
    """

    family = "nade"
    summary = "neural autoregressive distribution estimator: shared hidden layer, exact likelihood"

    def __init__(
        self,
        *,
        hidden: int = 100,
        weight_decay: float = 0.0,
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.hidden = hidden
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _net(self, orders: torch.Tensor, generator: torch.Generator) -> torch.nn.Module:
        return NADENet(orders[0], int(self.hidden))


@register
class MADE(_BinaryAutoregressive):
    """Masked autoencoder for distribution estimation (Germain et al., 2015), as an ensemble
    of orderings.

    An MLP whose weight masks make output ``d`` see only the inputs before ``d`` in an
    ordering; with ``num_orderings`` > 1 one set of weights serves several orderings (each
    with its own hidden connectivity), trained order-agnostically, and the model is the
    uniform mixture over them: ``score_samples`` is the exact log-likelihood of that mixture.
    The order-agnostic objective is the mean over orderings of their log-likelihoods; each
    step computes it over every ordering in one batched pass (``orderings_per_step="all"``,
    the default: no sampling noise, K times the arithmetic) or estimates it from one ordering
    drawn by the guide (``"one"``, the classic order-agnostic training). Dropout, weight
    decay and the ensemble regularize: the defaults are set for small data such as the 1,500
    binarized digits. Two hidden layers of 1,024 with dropout 0.5 reach a test NLL of 15.75,
    15.78 and 15.82 nats there on seeds 0, 1 and 2 (5,000 steps of batch 128 at lr 1e-3, the
    best validation step kept), against 15.98, 16.06 and 16.05 for one layer of 2,048 with
    dropout 0.6, at about four times the arithmetic per step.

    Args:
        hidden_dims: widths of the hidden layers.
        num_orderings: orderings in the ensemble (the first is the natural one).
        orderings_per_step: ``all`` or ``one`` (see above).
        dropout: dropout probability on the hidden units while training.
        weight_decay: AdamW's decoupled weight decay (0: plain Adam).
        seed: seeds the orderings, initialization, training and sampling.
        device: ``auto``, ``cpu`` or ``cuda``.
        compile: trace the training step into a graph (see :class:`~ppdgm.train.Trainer`).

    Attributes:
        model_: the fitted :class:`~ppdgm.models.AutoregressiveBernoulli` (its ``orders``
            hold the orderings).
    """

    family = "made"
    summary = "masked autoencoder (MADE): an ensemble of orderings, exact likelihood"
    choices = {"orderings_per_step": ("all", "one")}

    def __init__(
        self,
        *,
        hidden_dims: tuple[int, ...] = (1024, 1024),
        num_orderings: int = 8,
        orderings_per_step: str = "all",
        dropout: float = 0.5,
        weight_decay: float = 1e-2,
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.hidden_dims = hidden_dims
        self.num_orderings = num_orderings
        self.orderings_per_step = orderings_per_step
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _net(self, orders: torch.Tensor, generator: torch.Generator) -> torch.nn.Module:
        return MADENet(orders, tuple(self.hidden_dims), float(self.dropout), generator)

    def _all_orderings_per_step(self) -> bool:
        return self.model_.num_orderings > 1 and self.orderings_per_step == "all"

    def _programs(self):
        if self._all_orderings_per_step():  # no latent site: the exact NLL, no guide
            return self.model_.model_all_orderings, None
        return super()._programs()

    def _objective(self):
        if self._all_orderings_per_step():
            return ExactLikelihoodEstimator._objective(self)
        return super()._objective()
