"""Features for sample quality: a small digits classifier that ppdgm trains itself, and the
classifier-based scores computed with it.

FID and KID compare samples in the feature space of an ImageNet Inception network; nothing can
be downloaded here, and 8x8 digits are not ImageNet. ppdgm's analogue is a small convolutional
classifier trained deterministically (fixed seed, fixed recipe, CPU) on the training split of
scikit-learn's bundled digits on first use and cached as plain tensors (loaded with
``weights_only``, never unpickled as code). Its penultimate layer gives the features for
:func:`~ppdgm.evaluation.frechet_distance` and :func:`~ppdgm.evaluation.kernel_distance`; its
class probabilities give :func:`inception_score`. Any torch module can be passed instead as the
feature extractor (:func:`extract_features`).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .._utils import atomic_write, cache_dir, get_rng_state, set_rng_state
from ..errors import ConfigError

__all__ = [
    "DigitsClassifier",
    "digits_classifier",
    "digits_features",
    "extract_features",
    "inception_score",
]

#: the training recipe; any change gives a new cache file
_RECIPE = {"version": 3, "epochs": 40, "batch": 64, "lr": 2e-3, "seed": 0, "width": 16}


class DigitsClassifier(nn.Module):
    """A small CNN for 8x8 digits with values in [0, 1]: two 3x3 convolutions (the second of
    stride 2), a 64-unit feature layer, ten logits.

    Shapes: ``forward`` (N, 1, 8, 8) or (N, 64) -> (N, 10) logits; ``features`` -> (N, 64),
    the feature layer divided by ``feature_scale`` (the root mean variance of the features on
    the training split, set after training), so that distances in it are of order one.
    """

    feature_dim = 64

    def __init__(self, width: int = 16):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 16, self.feature_dim),
            nn.ReLU(),
        )
        self.out = nn.Linear(self.feature_dim, 10)
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.reshape(-1, 1, 8, 8)) / self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x.reshape(-1, 1, 8, 8)))

    def model(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The training program: labels y ~ Categorical(softmax(forward(x))), observed for
        the images x and for the same images binarized at 1/2."""
        xb = torch.cat([x, (x > 0.5).to(x.dtype)])
        with pyro.plate("data", xb.shape[0]):
            pyro.sample("y", dist.Categorical(logits=self(xb)), obs=torch.cat([y, y]))


def _train_classifier() -> tuple[DigitsClassifier, float]:
    """The recipe: the classifier as a program whose labels are observed, fitted by maximum
    likelihood (:class:`~ppdgm.inference.ExactNLL`, the cross-entropy) with Adam in the one
    :class:`~ppdgm.train.Trainer`, on the training split of the bundled digits in [0, 1], each
    batch also seen binarized (so that binary models' samples are in the classifier's domain).
    The caller's random state is left as it was. Returns the network and its accuracy on the
    test split."""
    from ..data import load_digits_data
    from ..inference import ExactNLL
    from ..train import Trainer

    data = load_digits_data("unit")
    r = _RECIPE
    x = torch.as_tensor(data.x_train).reshape(-1, 1, 8, 8)
    y = torch.as_tensor(data.y_train)
    state = get_rng_state()
    try:
        torch.manual_seed(r["seed"])
        net = DigitsClassifier(r["width"])
        trainer = Trainer(
            net.model,
            None,
            ExactNLL(),
            lr=r["lr"],
            batch_size=r["batch"],
            seed=r["seed"],
            device="cpu",
        )
        trainer.run((x, y), r["epochs"] * math.ceil(len(x) / r["batch"]), progress=False)
    finally:
        set_rng_state(state)
    net.eval()
    with torch.no_grad():
        net.feature_scale.copy_(net.conv(x).var(0).mean().sqrt())
        pred = net(torch.as_tensor(data.x_test)).argmax(1).numpy()
    return net, float((pred == data.y_test).mean())


def _cache_path() -> Path:
    tag = hashlib.sha256(repr(sorted(_RECIPE.items())).encode()).hexdigest()[:12]
    return cache_dir() / f"digits_classifier-{tag}.pt"


_LOADED: dict[str, DigitsClassifier] = {}


def digits_classifier(cache: bool = True) -> DigitsClassifier:
    """The digits classifier, trained on first use (a few seconds) and cached.

    The cache file holds tensors only and is read with ``weights_only=True``; a file that does
    not load or does not fit the network is replaced by a fresh training run. The network's
    test accuracy is its attribute ``test_accuracy``.

    Args:
        cache: read and write the cache file (False: train in memory).
    """
    path = _cache_path()
    if cache and str(path) in _LOADED:
        return _LOADED[str(path)]
    net = None
    if cache and path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = DigitsClassifier(_RECIPE["width"])
            net.load_state_dict(state["weights"])
            net.test_accuracy = float(state["test_accuracy"])
        except Exception:  # a corrupt or foreign file: train again and replace it
            net = None
    if net is None:
        net, accuracy = _train_classifier()
        net.test_accuracy = accuracy
        if cache:
            _write_atomically(path, {"weights": net.state_dict(), "test_accuracy": accuracy})
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if cache:
        _LOADED[str(path)] = net
    return net


def _write_atomically(path: Path, obj) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            torch.save(obj, fh)
    except OSError:  # a read-only cache folder: the classifier still works, uncached
        pass


def _as_tensor(x, name: str) -> torch.Tensor:
    if torch.is_tensor(x):
        t = x.detach().cpu().float()
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{name} must be a numeric array: {e}") from None
    if t.ndim < 2 or len(t) == 0:
        raise ConfigError(f"{name} must be (N, ...) with N >= 1, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ConfigError(f"{name} contains NaN or infinite values")
    return t


@torch.no_grad()
def extract_features(x, extractor: nn.Module | None = None, batch_size: int = 512) -> np.ndarray:
    """Features (N, F) of ``x`` by a torch module (its ``features`` method when it has one,
    else its output, flattened), in batches, on the module's device. ``None`` gives x
    flattened (raw features, for vectors)."""
    t = _as_tensor(x, "x")
    if extractor is None:
        return t.reshape(len(t), -1).double().numpy()
    if not isinstance(extractor, nn.Module):
        raise ConfigError(
            f"a feature extractor must be a torch module, got {type(extractor).__name__}"
        )
    fn = getattr(extractor, "features", extractor)
    device = next((p.device for p in extractor.parameters()), torch.device("cpu"))
    out = [
        fn(t[s : s + batch_size].to(device)).reshape(len(t[s : s + batch_size]), -1).cpu()
        for s in range(0, len(t), batch_size)
    ]
    return torch.cat(out).double().numpy()


def _digits_unit(x, scale: float) -> torch.Tensor:
    t = _as_tensor(x, "x")
    if t[0].numel() != 64:
        raise ConfigError(
            f"the digits classifier takes 8x8 images (64 values each), got examples of shape "
            f"{tuple(t.shape[1:])}"
        )
    if not scale > 0:
        raise ConfigError(f"scale must be positive, got {scale}")
    return (t.reshape(-1, 1, 8, 8) / float(scale)).clamp(0.0, 1.0)


def digits_features(x, scale: float = 16.0) -> np.ndarray:
    """The digits classifier's 64 penultimate features of 8x8 images ``x`` (N, 64) or
    (N, 1, 8, 8) whose values run from 0 to ``scale`` (16 for raw digits, 1 for the binary
    and unit views); (N, 64) float64."""
    return extract_features(_digits_unit(x, scale), digits_classifier())


@torch.no_grad()
def inception_score(
    x, *, classifier: nn.Module | None = None, scale: float = 16.0, splits: int = 1
) -> tuple[float, float]:
    """The classifier-based Inception score (Salimans et al., 2016):
    ``exp(E_x KL(p(y | x) || p(y)))``, between 1 (every sample looks alike, or none looks like
    a class) and the number of classes (confident and balanced).

    Args:
        x: images for the classifier: 8x8 digits with values 0..``scale`` by default.
        classifier: a torch module giving class logits (default: the digits classifier).
        splits: the score over this many disjoint parts of x (the usual 10 for large sets).

    Returns:
        (mean, standard deviation) of the score over the splits (std 0 for one split).
    """
    if classifier is None:
        t, classifier = _digits_unit(x, scale), digits_classifier()
    else:
        t = _as_tensor(x, "x")
    if isinstance(splits, bool) or not isinstance(splits, int) or not 1 <= splits <= len(t):
        raise ConfigError(f"splits must be an integer from 1 to len(x) = {len(t)}, got {splits!r}")
    device = next((p.device for p in classifier.parameters()), torch.device("cpu"))
    logp = torch.cat(
        [
            torch.log_softmax(classifier(t[s : s + 512].to(device)), -1).cpu()
            for s in range(0, len(t), 512)
        ]
    ).double()
    scores = []
    for part in torch.tensor_split(logp, splits):
        marginal = torch.logsumexp(part, 0) - np.log(len(part))
        kl = (part.exp() * (part - marginal)).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
