"""Normalizing-flow families over vectors (and images, for Glow): exact likelihood, fitted by the exact negative
log-likelihood through the one trainer, sampled by pushing base draws through the layers."""

from __future__ import annotations

from pathlib import Path

import torch

from .._utils import check_int
from ..errors import ConfigError
from ..models.flows import Flow, maf_layers, nice_layers, nsf_layers, realnvp_layers
from ..models.glow import GlowModel, GlowNet
from .base import ExactLikelihoodEstimator, check_hidden_dims, register

__all__ = ["NICE", "RealNVP", "MAF", "NSF", "Glow"]

_COMMON_ARGS = """
        seed: seeds initialization, training and sampling.
        device: ``auto``, ``cpu`` or ``cuda``.
        compile: trace the training step into a graph (see :class:`~ppdgm.train.Trainer`).

    Attributes:
        model_: the fitted :class:`~ppdgm.models.flows.Flow`.
"""


class _VectorFlow(ExactLikelihoodEstimator):
    """Shared parts of the flows over vectors (N, D)."""

    default_data = "8gaussians"

    def _check_params(self) -> None:
        super()._check_params()
        check_int("num_transforms", self.num_transforms)
        check_hidden_dims(self.hidden_dims)

    def _build(self, data_shape: tuple[int, ...]) -> None:
        dim = self._vector_dim(data_shape)
        layers, inverted = self._layers(dim)
        self.model_ = Flow(layers, dim, inverted)

    def _layers(self, dim: int):
        raise NotImplementedError

    def plot_figures(self, data, folder: Path, seed: int = 0) -> None:
        """Samples and curves; for 2-D data also the learned density next to the data
        (``density.png``)."""
        super().plot_figures(data, folder, seed)
        if self.data_shape_ == (2,):
            from .. import viz

            viz.plot_density_2d(
                lambda pts: self.score_samples(pts),
                data.x_test,
                path=folder / "density.png",
                title=f"{type(self).__name__} density",
            )


@register
class NICE(_VectorFlow):
    __doc__ = f"""NICE (Dinh et al., 2015): additive coupling layers and a diagonal scaling.

    Each coupling layer adds to half of the dimensions an MLP of the other half (the halves
    swap from one layer to the next); the couplings preserve volume, and a learned scale per
    dimension at the end changes it. The first flow of the course, kept for teaching: Real NVP
    adds the scale inside each coupling.

    Args:
        num_transforms: coupling layers.
        hidden_dims: widths of each coupling network's hidden layers.{_COMMON_ARGS}"""

    family = "nice"
    summary = "NICE: additive coupling layers and a diagonal scaling, exact likelihood"

    def __init__(
        self,
        *,
        num_transforms: int = 4,
        hidden_dims: tuple[int, ...] = (128, 128),
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.num_transforms = num_transforms
        self.hidden_dims = hidden_dims
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _layers(self, dim: int):
        return nice_layers(dim, int(self.num_transforms), tuple(self.hidden_dims))


@register
class RealNVP(_VectorFlow):
    __doc__ = f"""Real NVP (Dinh et al., 2017): affine coupling layers.

    Each layer leaves half of the dimensions unchanged and maps the other half affinely, with
    the shift and log-scale output by an MLP of the unchanged half; the halves swap from one
    layer to the next. Density and sampling both take one pass per layer.

    Args:
        num_transforms: coupling layers.
        hidden_dims: widths of each coupling network's hidden layers.{_COMMON_ARGS}"""

    family = "realnvp"
    summary = "Real NVP: affine coupling layers, exact likelihood, one-pass sampling"

    def __init__(
        self,
        *,
        num_transforms: int = 6,
        hidden_dims: tuple[int, ...] = (128, 128),
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.num_transforms = num_transforms
        self.hidden_dims = hidden_dims
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _layers(self, dim: int):
        return realnvp_layers(dim, int(self.num_transforms), tuple(self.hidden_dims))


@register
class MAF(_VectorFlow):
    __doc__ = f"""Masked autoregressive flow (Papamakarios et al., 2017).

    Each layer is an affine autoregressive map whose shift and log-scale come from a MADE
    network; the density takes one network pass per layer, sampling D passes. The ordering is
    reversed from one layer to the next.

    Args:
        num_transforms: autoregressive layers.
        hidden_dims: widths of each MADE network's hidden layers.{_COMMON_ARGS}"""

    family = "maf"
    summary = "masked autoregressive flow: affine autoregressive layers, exact likelihood"

    def __init__(
        self,
        *,
        num_transforms: int = 5,
        hidden_dims: tuple[int, ...] = (128, 128),
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.num_transforms = num_transforms
        self.hidden_dims = hidden_dims
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _layers(self, dim: int):
        return maf_layers(dim, int(self.num_transforms), tuple(self.hidden_dims))


@register
class NSF(_VectorFlow):
    """Neural spline flow (Durkan et al., 2019): monotonic rational-quadratic splines.

    Each layer maps each transformed dimension through a spline on [-bound, bound] (the
    identity outside) whose knots come from a coupling network (``kind="coupling"``) or an
    autoregressive one (``"autoregressive"``).

    Args:
        kind: ``coupling`` or ``autoregressive``.
        num_transforms: spline layers.
        hidden_dims: widths of each network's hidden layers.
        count_bins: the spline's segments.
        bound: the half-width of the interval the splines act on.
        seed: seeds initialization, training and sampling.
        device: ``auto``, ``cpu`` or ``cuda``.
        compile: trace the training step into a graph; off by default, as Pyro's spline
            branches on tensor values and cannot be traced.

    Attributes:
        model_: the fitted :class:`~ppdgm.models.flows.Flow`.
    """

    family = "nsf"
    summary = "neural spline flow: rational-quadratic spline layers, exact likelihood"
    choices = {"kind": ("coupling", "autoregressive")}

    def __init__(
        self,
        *,
        kind: str = "coupling",
        num_transforms: int = 6,
        hidden_dims: tuple[int, ...] = (128, 128),
        count_bins: int = 16,
        bound: float = 4.0,
        seed: int = 0,
        device: str = "auto",
        compile: bool = False,
    ):
        self.kind = kind
        self.num_transforms = num_transforms
        self.hidden_dims = hidden_dims
        self.count_bins = count_bins
        self.bound = bound
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        check_int("count_bins", self.count_bins, low=2)
        if not (isinstance(self.bound, (int, float)) and self.bound > 0):
            raise ConfigError(f"bound must be a positive number, got {self.bound!r}")

    def _layers(self, dim: int):
        return nsf_layers(
            dim,
            int(self.num_transforms),
            tuple(self.hidden_dims),
            int(self.count_bins),
            float(self.bound),
            self.kind,
        )


@register
class Glow(_VectorFlow):
    __doc__ = f"""Glow (Kingma & Dhariwal, 2018): ActNorm, invertible 1x1 convolutions and
    affine couplings, multi-scale, over images (N, C, H, W) or vectors (N, D).

    Each level squeezes 2x2 blocks of pixels into channels, runs ``steps_per_level`` steps of flow
    (ActNorm, 1x1 convolution, affine coupling with a conv net), and factors half of the
    channels out to the base distribution (all but the last level). Vectors are 1x1 images
    with D channels: one level, no squeeze, the 1x1 convolution a learned invertible linear
    map. ActNorm is initialized from the first 512 training examples. See
    :mod:`ppdgm.models.glow`.

    Args:
        num_levels: levels for images (H and W divisible by 2**num_levels).
        steps_per_level: steps of flow per level.
        hidden: channels (units) of each coupling net.{_COMMON_ARGS}"""

    family = "glow"
    summary = "Glow: ActNorm, invertible 1x1 convolutions, affine couplings, multi-scale"

    def __init__(
        self,
        *,
        num_levels: int = 2,
        steps_per_level: int = 4,
        hidden: int = 128,
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.num_levels = num_levels
        self.steps_per_level = steps_per_level
        self.hidden = hidden
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _check_params(self) -> None:
        ExactLikelihoodEstimator._check_params(self)
        for name in ("num_levels", "steps_per_level", "hidden"):
            check_int(name, getattr(self, name))

    def _build(self, data_shape: tuple[int, ...]) -> None:
        generator = torch.Generator().manual_seed(int(self.seed))
        if len(data_shape) == 3:
            shape, flat = tuple(data_shape), False
        else:
            shape, flat = (self._vector_dim(data_shape), 1, 1), True
        try:
            net = GlowNet(
                shape, int(self.num_levels), int(self.steps_per_level), int(self.hidden), generator
            )
        except ValueError as e:
            raise ConfigError(f"Glow: {e}") from None
        self.model_ = GlowModel(net, flat=flat)

    def _data_init(self, x: torch.Tensor) -> None:
        with self._seeded():
            rows = torch.randperm(len(x), device=x.device)[:512]
        self.model_.initialize(x[rows])
