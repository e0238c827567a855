"""Autoregressive families: exact likelihood, fitted by the exact negative log-likelihood
through the one trainer, sampled one dimension at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._utils import check_int
from ..data import check_likelihood_support
from ..errors import ConfigError
from ..inference import ExactNLL
from ..models.autoregressive import AutoregressiveBernoulli, fvsbn_net
from .base import Estimator, register

__all__ = ["FVSBN"]


class _BinaryAutoregressive(Estimator):
    """Shared parts of the autoregressive families over binary vectors (N, D)."""

    default_data = "digits-binary"

    def _check_support(self, x: np.ndarray, source: str, settings: dict[str, Any]) -> None:
        check_likelihood_support(x, "bernoulli", source)

    def _build(self, data_shape: tuple[int, ...]) -> None:
        if len(data_shape) != 1:
            raise ConfigError(
                f"{type(self).__name__} models vectors (N, D); got examples of shape "
                f"{data_shape} (flatten images first)"
            )
        self.model_ = AutoregressiveBernoulli(self._net(data_shape[0]), data_shape[0])

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model_}

    def _programs(self):
        return self.model_.model, None

    def _objective(self):
        return ExactNLL()

    def _val_loss(self, x: torch.Tensor) -> float:
        with torch.no_grad():
            return -self.model_.log_prob(x).mean().item()

    @torch.no_grad()
    def score_samples(self, X) -> np.ndarray:
        """Exact log p(x) per example, in nats; shape (N,)."""
        return self.model_.log_prob(self._tensor(X)).cpu().numpy()

    def sample(self, num_samples: int, *, seed: int | None = None) -> np.ndarray:
        """Draw examples dimension by dimension; shape (num_samples, D)."""
        self._check_fitted()
        check_int("num_samples", num_samples)
        with self._seeded(seed):
            return self.model_.sample(int(num_samples)).cpu().numpy()


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

    def _net(self, dim: int) -> torch.nn.Module:
        return fvsbn_net(torch.arange(dim))
