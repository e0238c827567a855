"""The scikit-learn-style layer, one estimator per family: hyperparameters in ``__init__``,
``fit(X) -> self``, fitted state with a trailing underscore. The command line uses this layer
and builds each family's options from its constructor (see :mod:`ppdgm.estimators.base`)."""

from .autoregressive import FVSBN, MADE, NADE
from .base import REGISTRY, Estimator, get_family, load_estimator, register
from .energy import DBM, RBM, DeepEBM
from .flows import CNF, MAF, NICE, NSF, Glow, PlanarFlow, RadialFlow, RealNVP
from .gan import GAN, BiGAN
from .pixelcnn import PixelCNN
from .sequence import CharRNN, WaveNet
from .vae import VAE

__all__ = [
    "Estimator",
    "REGISTRY",
    "register",
    "get_family",
    "load_estimator",
    "VAE",
    "GAN",
    "BiGAN",
    "RBM",
    "DeepEBM",
    "DBM",
    "BernoulliRBM",
    "FVSBN",
    "NADE",
    "MADE",
    "PixelCNN",
    "NICE",
    "RealNVP",
    "MAF",
    "NSF",
    "Glow",
    "CNF",
    "PlanarFlow",
    "RadialFlow",
    "CharRNN",
    "WaveNet",
]


def __getattr__(name):
    # scikit-learn's base classes take a second to import: load the drop-in when asked for
    if name == "BernoulliRBM":
        from .rbm_sklearn import BernoulliRBM

        return BernoulliRBM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
