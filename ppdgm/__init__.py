"""ppdgm: deep generative models written as probabilistic programs."""

from __future__ import annotations

from . import errors
from .estimators import VAE
from .train import Trainer

__version__ = "0.1.0"

__all__ = ["VAE", "Trainer", "errors", "__version__"]
