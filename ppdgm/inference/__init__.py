"""Inference: objectives over (model, guide, data), tools over traces, and posterior
inference (NUTS/HMC, SVI) for write-once models on NumPyro or Pyro.

The posterior-inference names are imported lazily so that ``import ppdgm`` does not
import JAX.
"""

from __future__ import annotations

import importlib

from .adversarial import ADVERSARIAL_LOSSES, Adversarial
from .objectives import (
    ELBO,
    IWAE,
    ContrastiveDivergence,
    ExactNLL,
    Objective,
    ObjectiveModule,
    SemiSupervisedELBO,
)
from .traces import log_weights, run_pair

__all__ = [
    "ADVERSARIAL_LOSSES",
    "Adversarial",
    "ContrastiveDivergence",
    "ELBO",
    "ExactNLL",
    "IWAE",
    "MCMC",
    "Objective",
    "ObjectiveModule",
    "SemiSupervisedELBO",
    "SVI",
    "langevin",
    "log_weights",
    "mcmc",
    "posterior_predictive",
    "run_pair",
    "svi",
    "use_backend",
]

_LAZY = {
    "MCMC": ".sampling",
    "mcmc": ".sampling",
    "langevin": ".dynamics",
    "SVI": ".variational",
    "svi": ".variational",
    "posterior_predictive": ".posterior",
    "use_backend": ".backend",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
