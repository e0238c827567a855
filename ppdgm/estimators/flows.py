"""Normalizing-flow families over vectors (and images, for Glow): exact likelihood, fitted by the exact negative
log-likelihood through the one trainer, sampled by pushing base draws through the layers."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._utils import check_int
from ..data.dataset import check_likelihood_support
from ..errors import ConfigError
from ..models.cnf import ADAPTIVE_SOLVERS, FIXED_SOLVERS, ContinuousFlow
from ..models.dequantize import Dequantized
from ..models.flows import (
    Flow,
    maf_layers,
    nice_layers,
    nsf_layers,
    planar_layers,
    radial_layers,
    realnvp_layers,
)
from ..models.glow import GlowModel, GlowNet
from .base import ExactLikelihoodEstimator, check_hidden_dims, register

__all__ = ["NICE", "RealNVP", "MAF", "NSF", "Glow", "CNF", "PlanarFlow", "RadialFlow"]

_COMMON_ARGS = """
        dequantize: for integer data (pixels at K levels): ``uniform`` or ``variational``
            dequantization (the flow models x + u, u in [0, 1)^D; scores are then a lower
            bound on log P(x)), ``none``, or ``auto`` (uniform for integer data, none else).
        seed: seeds initialization, training and sampling.
        device: ``auto``, ``cpu`` or ``cuda``.
        compile: trace the training step into a graph (see :class:`~ppdgm.train.Trainer`).

    Attributes:
        model_: the fitted :class:`~ppdgm.models.flows.Flow` (inside a
            :class:`~ppdgm.models.dequantize.Dequantized` for dequantized data).
"""


class _VectorFlow(ExactLikelihoodEstimator):
    """Shared parts of the flows over vectors (N, D)."""

    default_data = "8gaussians"
    choices = {"dequantize": ("auto", "none", "uniform", "variational")}

    def _check_params(self) -> None:
        super()._check_params()
        check_int("num_transforms", self.num_transforms)
        if self.has_networks:
            check_hidden_dims(self.hidden_dims)

    #: whether the layers hold networks (``hidden_dims``); the planar and radial ones do not
    has_networks = True

    # -- dequantization of integer data ----------------------------------------------------------
    def _settings(self, x: np.ndarray) -> dict[str, Any]:
        """``num_levels`` (K = the largest value + 1) and the ``dequantize`` kind when the
        flow dequantizes these data (integer data unless ``dequantize="none"``)."""
        integer = bool(np.all(x >= 0) and np.all(x == np.round(x)))
        kind = self.dequantize
        if kind == "auto":
            kind = "uniform" if integer else "none"
        if kind == "none":
            if integer:
                warnings.warn(
                    f"{type(self).__name__}: the data are integers and dequantize='none': a "
                    "density on a grid of points is unbounded (use dequantize='uniform')",
                    stacklevel=3,
                )
            return {}
        return {"num_levels": max(2, int(x.max()) + 1), "dequantize": kind}

    def _check_support(self, x: np.ndarray, source: str, settings: dict[str, Any]) -> None:
        if settings.get("num_levels"):
            check_likelihood_support(x, "dequantized", source, settings["num_levels"])

    def _build(self, data_shape: tuple[int, ...], num_levels=None, dequantize=None) -> None:
        flow = self._flow(tuple(data_shape))
        if num_levels:
            self.model_ = Dequantized(flow, num_levels, data_shape, kind=dequantize)
        else:
            self.model_ = flow

    def _programs(self):
        if isinstance(self.model_, Dequantized):
            return self.model_.model, self.model_.guide
        return super()._programs()

    def _objective(self):
        if isinstance(self.model_, Dequantized):
            from ..inference import ELBO

            return ELBO()
        return super()._objective()

    def _flow(self, data_shape: tuple[int, ...]) -> torch.nn.Module:
        dim = self._vector_dim(data_shape)
        layers, inverted = self._layers(dim)
        return Flow(layers, dim, inverted)

    def _layers(self, dim: int):
        raise NotImplementedError

    def plot_figures(self, data, folder: Path, seed: int = 0) -> None:
        """Samples and curves; for 2-D data also the learned density next to the data
        (``density.png``)."""
        super().plot_figures(data, folder, seed)
        if self.data_shape_ == (2,) and not self.settings_.get("num_levels"):
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
        dequantize: str = "auto",
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.num_transforms = num_transforms
        self.hidden_dims = hidden_dims
        self.dequantize = dequantize
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
        dequantize: str = "auto",
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.num_transforms = num_transforms
        self.hidden_dims = hidden_dims
        self.dequantize = dequantize
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
        dequantize: str = "auto",
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.num_transforms = num_transforms
        self.hidden_dims = hidden_dims
        self.dequantize = dequantize
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _layers(self, dim: int):
        return maf_layers(dim, int(self.num_transforms), tuple(self.hidden_dims))


@register
class NSF(_VectorFlow):
    __doc__ = f"""Neural spline flow (Durkan et al., 2019): monotonic rational-quadratic splines.

    Each layer maps each dimension through a spline on [-bound, bound] (the identity outside)
    whose knots come from an autoregressive MADE network (``kind="autoregressive"``, the
    default: the density takes one pass per layer, sampling D) or a coupling network
    (``"coupling"``: half of the dimensions per layer, one pass either way). The splines are
    ppdgm's own (:mod:`ppdgm.models.splines`): they branch on no tensor value, so the
    training step is compiled, and each layer starts as the identity. ``fit`` decays the
    learning rate along a cosine by default (``lr_schedule``), which halves the gap to the
    true density on the eight Gaussians at a fixed budget.

    Args:
        kind: ``autoregressive`` or ``coupling``.
        num_transforms: spline layers.
        hidden_dims: widths of each network's hidden layers.
        count_bins: the spline's segments.
        bound: the half-width of the interval the splines act on.{_COMMON_ARGS}"""

    family = "nsf"
    summary = "neural spline flow: rational-quadratic spline layers, exact likelihood"
    choices = {**_VectorFlow.choices, "kind": ("autoregressive", "coupling")}
    default_lr_schedule = "cosine"

    def __init__(
        self,
        *,
        kind: str = "autoregressive",
        num_transforms: int = 6,
        hidden_dims: tuple[int, ...] = (128, 128),
        count_bins: int = 16,
        bound: float = 4.0,
        dequantize: str = "auto",
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.kind = kind
        self.num_transforms = num_transforms
        self.hidden_dims = hidden_dims
        self.count_bins = count_bins
        self.bound = bound
        self.dequantize = dequantize
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


class _PlanarOrRadial(_VectorFlow):
    """Planar and radial flows: layers with a handful of parameters each, no network."""

    has_networks = False

    def __init__(
        self,
        *,
        num_transforms: int = 32,
        dequantize: str = "auto",
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.num_transforms = num_transforms
        self.dequantize = dequantize
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()


_TEACHING = """
    Rezende & Mohamed (2015) brought these layers in as flows of variational posteriors,
    where only the forward direction and its log-determinant are needed; each layer bends
    the density along one direction (planar) or around one point (radial), so many layers
    are needed for a complex density, and they are here for teaching. As a density
    estimator the layers are used inverted: the density takes their closed-form direction,
    sampling their inverse, which Pyro leaves out and ppdgm adds
    (:class:`~ppdgm.models.flows.InvertiblePlanar`, :class:`~ppdgm.models.flows.InvertibleRadial`).
"""


@register
class PlanarFlow(_PlanarOrRadial):
    __doc__ = f"""Planar flow (Rezende & Mohamed, 2015): layers ``x + u tanh(w.x + b)``.
{_TEACHING}
    Args:
        num_transforms: planar layers.{_COMMON_ARGS}"""

    family = "planar"
    summary = "planar flow: layers x + u tanh(w.x + b), exact likelihood (for teaching)"

    def _layers(self, dim: int):
        return planar_layers(dim, int(self.num_transforms))


@register
class RadialFlow(_PlanarOrRadial):
    __doc__ = f"""Radial flow (Rezende & Mohamed, 2015): layers ``x + beta (x - x0) /
    (alpha + |x - x0|)``.
{_TEACHING}
    Args:
        num_transforms: radial layers.{_COMMON_ARGS}"""

    family = "radial"
    summary = "radial flow: layers contracting or expanding around a point (for teaching)"

    def _layers(self, dim: int):
        return radial_layers(dim, int(self.num_transforms))


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
        dequantize: str = "auto",
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.num_levels = num_levels
        self.steps_per_level = steps_per_level
        self.hidden = hidden
        self.dequantize = dequantize
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _check_params(self) -> None:
        ExactLikelihoodEstimator._check_params(self)
        for name in ("num_levels", "steps_per_level", "hidden"):
            check_int(name, getattr(self, name))

    def _flow(self, data_shape: tuple[int, ...]) -> torch.nn.Module:
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
        return GlowModel(net, flat=flat)

    def _data_init(self, x: torch.Tensor) -> None:
        with self._seeded():
            rows = torch.randperm(len(x), device=x.device)[:512]
        self.model_.initialize(x[rows])


@register
class CNF(_VectorFlow):
    """Continuous normalizing flow (FFJORD; Grathwohl et al., 2019): the data flow along an
    ODE ``dx/dt = f(x, t)`` to a standard normal, and the log-density changes by the integral
    of ``tr(df/dx)`` on the way.

    The ODE is solved by torchdiffeq (backpropagation through the solver's steps). While
    training, the trace is exact for 2-D data and Hutchinson's unbiased one-pass estimate
    above that (``trace``); validation, ``score_samples`` and the metrics always use the exact
    trace, so the scores are the exact log-likelihood up to the solver's tolerance. A fresh
    flow is the identity (``f``'s last layer starts at zero). See :mod:`ppdgm.models.cnf`.

    Args:
        hidden_dims: widths of the network ``f(x, t)`` (time appended to every layer).
        activation: ``tanh`` or ``softplus``.
        trace: ``auto`` (exact in 2-D, Hutchinson above), ``exact`` or ``hutchinson``: the
            trace while training.
        solver: a torchdiffeq method, adaptive (``dopri5``, ``bosh3``, ``adaptive_heun``,
            ``dopri8``) or fixed-step (``rk4``, ``midpoint``, ``euler``).
        tol: relative and absolute tolerance of an adaptive solver.
        step_size: the step of a fixed-step solver, as a fraction of the unit time.
        dequantize: for integer data (pixels at K levels): ``uniform`` or ``variational``
            dequantization (the flow models x + u, u in [0, 1)^D; scores are then a lower
            bound on log P(x)), ``none``, or ``auto`` (uniform for integer data, none else).
        seed: seeds initialization, training and sampling.
        device: ``auto``, ``cpu`` or ``cuda``.
        compile: off by default: an adaptive solver's step count depends on the values, so the
            step cannot be traced into a graph.

    Attributes:
        model_: the fitted :class:`~ppdgm.models.cnf.ContinuousFlow`.
    """

    family = "cnf"
    summary = "continuous normalizing flow (FFJORD): an ODE, exact or Hutchinson trace"
    choices = {
        **_VectorFlow.choices,
        "activation": ("tanh", "softplus"),
        "trace": ("auto", "exact", "hutchinson"),
        "solver": ADAPTIVE_SOLVERS + FIXED_SOLVERS,
    }

    def __init__(
        self,
        *,
        hidden_dims: tuple[int, ...] = (64, 64, 64),
        activation: str = "tanh",
        trace: str = "auto",
        solver: str = "dopri5",
        tol: float = 1e-5,
        step_size: float = 0.1,
        dequantize: str = "auto",
        seed: int = 0,
        device: str = "auto",
        compile: bool = False,
    ):
        self.hidden_dims = hidden_dims
        self.activation = activation
        self.trace = trace
        self.solver = solver
        self.tol = tol
        self.step_size = step_size
        self.dequantize = dequantize
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _check_params(self) -> None:
        ExactLikelihoodEstimator._check_params(self)
        check_hidden_dims(self.hidden_dims)
        for name in ("tol", "step_size"):
            value = getattr(self, name)
            if not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1
            ):
                raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}")

    def _flow(self, data_shape: tuple[int, ...]) -> torch.nn.Module:
        return ContinuousFlow(
            self._vector_dim(data_shape),
            tuple(self.hidden_dims),
            activation=self.activation,
            trace=self.trace,
            solver=self.solver,
            tol=float(self.tol),
            step_size=float(self.step_size),
        )
