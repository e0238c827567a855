"""ppdgm: deep generative models written as probabilistic programs."""

from __future__ import annotations

import warnings

# ArviZ 0.2x announces its coming refactor on every import; it says nothing about a result
warnings.filterwarnings(
    "ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning
)

from . import errors  # noqa: E402
from .estimators import (  # noqa: E402
    CNF,
    DBM,
    FVSBN,
    GAN,
    MADE,
    MAF,
    NADE,
    NICE,
    NSF,
    RBM,
    VAE,
    BiGAN,
    CharRNN,
    DeepEBM,
    Glow,
    PixelCNN,
    PlanarFlow,
    RadialFlow,
    RealNVP,
    WaveNet,
)
from .train import Trainer  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "FVSBN",
    "NADE",
    "MADE",
    "NICE",
    "RealNVP",
    "MAF",
    "NSF",
    "Glow",
    "CNF",
    "PlanarFlow",
    "RadialFlow",
    "PixelCNN",
    "CharRNN",
    "WaveNet",
    "RBM",
    "DeepEBM",
    "DBM",
    "GAN",
    "BiGAN",
    "BernoulliRBM",
    "Trainer",
    "errors",
    "__version__",
]


def __getattr__(name):
    if name == "BernoulliRBM":  # imports scikit-learn's base classes: only when asked for
        from .estimators.rbm_sklearn import BernoulliRBM

        return BernoulliRBM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
