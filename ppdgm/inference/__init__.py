"""Inference: objectives over (model, guide, data), and tools over traces."""

from __future__ import annotations

from .objectives import ELBO, IWAE, Objective, ObjectiveModule, SemiSupervisedELBO
from .traces import log_weights, run_pair

__all__ = [
    "ELBO",
    "IWAE",
    "Objective",
    "ObjectiveModule",
    "SemiSupervisedELBO",
    "log_weights",
    "run_pair",
]
