"""Energy-based families: restricted Boltzmann machines trained by contrastive divergence
through the one trainer, scored with an exact or annealed-importance-sampling log Z."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._utils import check_choice, check_int
from ..errors import ConfigError, DataValueError
from ..models.energy import RBM as RBMModel
from ..models.energy import VISIBLE_UNITS
from .base import Estimator, register

__all__ = ["DBM", "DeepEBM", "RBM"]

#: enumerate log Z exactly when the smaller layer has at most this many units
EXACT_MAX_UNITS = 20
#: the validation loss is the exact NLL up to this many enumerated units (cheap each time)
_VAL_EXACT_MAX_UNITS = 16
#: Boltzmann machines with fewer parameters train on one CPU thread (Trainer's num_threads)
_ONE_THREAD_MAX_PARAMS = 2**16
#: below this fraction of its chains, AIS's effective sample size draws a warning
_AIS_MIN_ESS = 0.1


def _check_ais(result, num_chains: int) -> None:
    """Warn when AIS's importance weights rest on a few chains (its estimate is then far
    from settled: on the digits' deep EBM 1,000 -> 10,000 distributions moved it by 36)."""
    if result.ess < _AIS_MIN_ESS * num_chains:
        warnings.warn(
            f"AIS's effective sample size is {result.ess:.1f} of {num_chains} chains: log Z "
            f"({result.log_z:.2f}) and the log-likelihoods from it are unreliable; raise "
            "ais_betas (or ais_chains) and compare",
            RuntimeWarning,
            stacklevel=3,
        )


def check_unit_interval(
    x: np.ndarray,
    source: str,
    hint: str = "scale the data (e.g. MinMaxScaler) or use visible='gaussian'",
) -> None:
    """Refuse values outside [0, 1] (Bernoulli visible units read them as probabilities)."""
    bad = (x < 0) | (x > 1)
    if bad.any():
        i = np.argwhere(bad)[0]
        raise DataValueError(
            f"{source}: Bernoulli visible units need values in [0, 1], found {x[tuple(i)]} at "
            f"row {int(i[0])}; {hint}"
        )


def data_log_odds(x: torch.Tensor) -> torch.Tensor:
    """The Laplace-smoothed log-odds of each column of binary data (N, D): visible biases that
    make a model with no weights fit the pixels' marginals."""
    p = (x.sum(0) + 1.0) / (x.shape[0] + 2.0)
    return torch.log(p) - torch.log1p(-p)


class _BoltzmannMachine(Estimator):
    """What the RBM and DBM families share: SGD with momentum on contrastive divergence's
    closed-form gradient, log Z exact by enumeration or by AIS, block Gibbs samples, and the
    first layer's weights drawn as filters. A family gives :meth:`_enumerated_units` (how many
    units exact log Z enumerates), ``_filters_title`` and ``_curves_label``."""

    default_data = "digits-binary"
    default_lr = 0.05
    default_batch_size = 20
    default_lr_schedule = "linear"
    _filters_title = ""
    _curves_label = ""

    def _check_params(self) -> None:
        super()._check_params()
        for name in ("cd_k", "sample_steps", "ais_chains"):
            check_int(name, getattr(self, name))
        check_int("ais_betas", self.ais_betas, low=2)
        if not 0.0 <= float(self.momentum) < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not float(self.init_std) > 0.0:
            raise ConfigError(f"init_std must be positive, got {self.init_std}")

    def _forget_log_z(self) -> None:
        for stale in ("log_z_", "log_z_method_", "ais_result_"):  # of a previous fit
            self.__dict__.pop(stale, None)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model_}

    def _programs(self):
        return self.model_.model, None

    def _trainer_options(self) -> dict[str, Any]:
        small = sum(p.numel() for p in self.model_.parameters()) < _ONE_THREAD_MAX_PARAMS
        return {
            "optimizer": "sgd",
            "momentum": float(self.momentum),
            "weight_decay": float(self.weight_decay),
            # a small machine's step is some 20 operations on a few thousand numbers each
            "num_threads": 1 if small else None,
        }

    def _enumerated_units(self) -> int:
        raise NotImplementedError

    def _exact(self) -> bool:
        return self._enumerated_units() <= EXACT_MAX_UNITS

    # -- queries -------------------------------------------------------------------------------
    def log_partition(self, method: str = "auto") -> float:
        """log Z of the fitted model: ``exact`` (enumeration), ``ais``, or ``auto`` (exact when
        at most 20 units are enumerated). Cached in :attr:`log_z_` (with
        :attr:`log_z_method_`) for the method ``auto`` picks; AIS is seeded with ``seed``."""
        from ..evaluation import log_partition

        self._check_fitted()
        check_choice("method", method, ("auto", "exact", "ais"))
        chosen = method
        if method == "auto":
            chosen = "exact" if self._exact() else "ais"
        if getattr(self, "log_z_method_", None) == chosen and hasattr(self, "log_z_"):
            return self.log_z_
        if chosen == "exact":
            value = log_partition(self.model_, "exact")
        else:
            result = log_partition(
                self.model_,
                "ais",
                num_chains=int(self.ais_chains),
                num_betas=int(self.ais_betas),
                seed=int(self.seed),
            )
            value = result.log_z
            self.ais_result_ = result
            _check_ais(result, int(self.ais_chains))
        if method == "auto" or not hasattr(self, "log_z_"):
            self.log_z_, self.log_z_method_ = float(value), chosen
        return float(value)

    def sample(self, num_samples: int, *, seed: int | None = None) -> np.ndarray:
        """Draw ``num_samples`` by ``sample_steps`` sweeps of block Gibbs sampling (from the
        start the model's ``sample`` documents); shape (num_samples, D)."""
        self._check_fitted()
        check_int("num_samples", num_samples)
        with self._seeded(seed):
            return self.model_.sample(int(num_samples), int(self.sample_steps)).cpu().numpy()

    def metrics(self, X, prefix: str, **options) -> dict[str, Any]:
        out = super().metrics(X, prefix, **options)
        out["log_z"] = self.log_partition("auto")
        out["log_z_method"] = self.log_z_method_
        if self.log_z_method_ == "ais":
            out["log_z_ess"] = float(self.ais_result_.ess)
        return out

    def _filters(self) -> torch.Tensor:
        """The first hidden layer's weights, (H, D)."""
        raise NotImplementedError

    def plot_figures(self, data, folder: Path, seed: int = 0) -> None:
        """samples.png, filters.png (the first hidden layer's weights as images) and
        curves.png."""
        from .. import viz

        viz.plot_samples(self.sample(64, seed=seed), data.image_shape, path=folder / "samples.png")
        w = self._filters().detach().cpu().numpy()[:100]
        lo, hi = w.min(1, keepdims=True), w.max(1, keepdims=True)
        viz.image_grid(
            (w - lo) / np.maximum(hi - lo, 1e-12),
            data.image_shape,
            title=self._filters_title,
            path=folder / "filters.png",
        )
        viz.plot_curves(
            self.history_,
            path=folder / "curves.png",
            ylabel=self._curves_label,
            best_step=self.selected_step_ if self.best_step_ is not None else None,
        )


@register
class RBM(_BoltzmannMachine):
    """A restricted Boltzmann machine trained by contrastive divergence (Hinton, 2002).

    Binary hidden units over Bernoulli visible units (binary data, or values in [0, 1] read as
    probabilities, as scikit-learn does) or Gaussian visible units of unit variance
    (standardize the data first). Each step is one SGD update from CD-k or persistent CD
    (Tieleman, 2008), whose gradient the trainer takes in closed form. The defaults, CD-1 with
    momentum 0.9, a learning rate decaying linearly to zero and visible biases started at the
    data's log-odds (Hinton, 2010, "A practical guide to training RBMs"), gave the best exact
    test log-likelihood on the binarized digits among the CD/PCD, k and momentum settings tried
    (``benchmarks/rbm.py``).

    ``score_samples`` is log p(x) = -F(x) - log Z in nats: **exact** when the smaller layer has
    at most 20 units (log Z by enumeration), otherwise with log Z from **annealed importance
    sampling** (``ais_chains`` chains over ``ais_betas`` distributions), which underestimates
    log Z on average, so that those log-likelihoods err on the high side. ``log_partition``
    says which it used; :attr:`log_z_` holds it once computed.

    Args:
        num_hidden: the number of hidden units.
        visible: ``bernoulli`` or ``gaussian`` visible units.
        cd_k: Gibbs sweeps per step (CD-k, PCD-k).
        persistent: keep the negative chains between steps (PCD) rather than restart them at
            the data (CD).
        momentum: SGD momentum.
        weight_decay: L2 penalty on the parameters (in SGD's gradient).
        init_std: standard deviation of the initial weights.
        visible_bias_init: ``data``: the data's log-odds (Bernoulli) or mean (Gaussian);
            ``zero``: zeros (scikit-learn's choice).
        sample_steps: Gibbs sweeps ``sample`` runs from the biases-only model.
        ais_chains, ais_betas: chains and intermediate distributions of AIS.
        seed: seeds initialization, training, sampling and AIS.
        device: ``auto``, ``cpu`` or ``cuda``.
        compile: unused by the closed-form CD step (kept for the common contract).

    Attributes:
        model_: the fitted :class:`~ppdgm.models.RBM`.
        log_z_: log Z of the fitted model once computed (exact or AIS).
    """

    family = "rbm"
    summary = "restricted Boltzmann machine trained by contrastive divergence (CD-k, PCD)"
    _filters_title = "filters (weights of the hidden units)"
    _curves_label = "train: CD free-energy gap; validation: NLL"
    choices = {"visible": VISIBLE_UNITS, "visible_bias_init": ("data", "zero")}

    def __init__(
        self,
        *,
        num_hidden: int = 64,
        visible: str = "bernoulli",
        cd_k: int = 1,
        persistent: bool = False,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        init_std: float = 0.01,
        visible_bias_init: str = "data",
        sample_steps: int = 1000,
        ais_chains: int = 100,
        ais_betas: int = 10_000,
        seed: int = 0,
        device: str = "auto",
        compile: bool = False,
    ):
        self.num_hidden = num_hidden
        self.visible = visible
        self.cd_k = cd_k
        self.persistent = persistent
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.init_std = init_std
        self.visible_bias_init = visible_bias_init
        self.sample_steps = sample_steps
        self.ais_chains = ais_chains
        self.ais_betas = ais_betas
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _check_params(self) -> None:
        check_int("num_hidden", self.num_hidden)
        super()._check_params()

    # -- the family's part ---------------------------------------------------------------------
    def _check_support(self, x: np.ndarray, source: str, settings: dict[str, Any]) -> None:
        if x.ndim != 2:
            raise ConfigError(
                f"{source}: an RBM models vectors (N, D); got examples of shape {x.shape[1:]} "
                "(flatten images first)"
            )
        if self.visible == "bernoulli":
            check_unit_interval(x, source)

    def _build(self, data_shape: tuple[int, ...]) -> None:
        generator = torch.Generator().manual_seed(int(self.seed))
        self.model_ = RBMModel(
            data_shape[0], self.num_hidden, self.visible, self.init_std, generator
        )
        self._forget_log_z()

    def _data_init(self, x: torch.Tensor) -> None:
        self.model_.visible_bias.data.copy_(self._base_bias(x))

    def _base_bias(self, x: torch.Tensor) -> torch.Tensor:
        """The data's log-odds (Laplace-smoothed) or mean, or zeros (``visible_bias_init``)."""
        if self.visible_bias_init == "zero":
            return torch.zeros(x.shape[1], device=x.device)
        if self.visible == "gaussian":
            return x.mean(0)
        return data_log_odds(x)

    def _objective(self):
        from ..inference import ContrastiveDivergence

        return ContrastiveDivergence(num_steps=self.cd_k, persistent=self.persistent)

    def _enumerated_units(self) -> int:
        m = self.model_
        if m.visible == "gaussian":
            return m.num_hidden
        return min(m.num_hidden, m.num_visible)

    def _val_loss(self, x: torch.Tensor) -> float:
        """The exact NLL when log Z is cheap to enumerate (at most 2**16 states), else the
        negative pseudo-log-likelihood (Bernoulli) or the mean squared one-sweep
        reconstruction error (Gaussian)."""
        with torch.no_grad():
            if self._enumerated_units() <= _VAL_EXACT_MAX_UNITS:
                return -self.model_.log_prob(x, self.model_.log_partition_exact()).mean().item()
            if self.visible == "bernoulli":
                return -float(pseudo_log_likelihood(self.model_, x).mean())
            h = self.model_.hidden_probs(x)
            return float((self.model_.visible_mean(h) - x).pow(2).sum(-1).mean())

    @torch.no_grad()
    def score_samples(self, X) -> np.ndarray:
        """log p(x) per example in nats, shape (N,): exact when the smaller layer has at most
        20 units, else with the AIS estimate of log Z (see the class docstring)."""
        x = self._tensor(X)
        log_z = self.log_partition("auto")
        return self.model_.log_prob(x, log_z).double().cpu().numpy()

    @torch.no_grad()
    def transform(self, X) -> np.ndarray:
        """Hidden-unit probabilities p(h = 1 | x) as features, shape (N, num_hidden)."""
        return self.model_.hidden_probs(self._tensor(X)).cpu().numpy()

    def metrics(self, X, prefix: str, **options) -> dict[str, Any]:
        out = super().metrics(X, prefix, **options)
        if self.visible == "bernoulli":
            x = self._tensor(X)
            with torch.no_grad():
                out[f"{prefix}_pseudo_nll"] = -float(pseudo_log_likelihood(self.model_, x).mean())
        return out

    def _filters(self) -> torch.Tensor:
        return self.model_.weight


def pseudo_log_likelihood(
    model: RBMModel, x: torch.Tensor, index: torch.Tensor | None = None
) -> torch.Tensor:
    """(N,) pseudo-log-likelihood of binary rows: ``D log sigmoid(F(x~) - F(x))`` with x~ the
    row with bit ``index[n]`` flipped (scikit-learn's stochastic estimate); with
    ``index=None``, the full sum ``sum_d log p(x_d | x_-d)`` over every bit (exact, D free
    energies per row)."""
    n, d = x.shape
    fe = model.free_energy(x)
    if index is not None:
        flipped = x.clone()
        rows = torch.arange(n, device=x.device)
        flipped[rows, index] = 1 - flipped[rows, index]
        return d * F.logsigmoid(model.free_energy(flipped) - fe)
    total = torch.zeros(n, dtype=fe.dtype, device=x.device)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    for i in range(0, n, max(1, 4096 // d)):
        xb = x[i : i + max(1, 4096 // d)]
        flipped = (xb[:, None, :] + eye - 2 * xb[:, None, :] * eye).reshape(-1, d)
        fe_flip = model.free_energy(flipped).reshape(xb.shape[0], d)
        total[i : i + xb.shape[0]] = F.logsigmoid(fe_flip - fe[i : i + xb.shape[0], None]).sum(1)
    return total


#: the deep EBM's samplers: Langevin on exp(-E) from uniform noise, and the cold short-run
#: sampler from the data's Gaussian (noise None: sqrt(2 step_size))
SAMPLERS = {
    "langevin": {"step_size": 0.01, "noise": None, "energy_l2": 0.1, "init": "uniform"},
    "short-run": {"step_size": 1.0, "noise": 0.01, "energy_l2": 1.0, "init": "gaussian"},
}
#: ``sampler="auto"`` picks Langevin on data of at most this many dimensions
_LANGEVIN_MAX_DIM = 4


@register
class DeepEBM(Estimator):
    """A deep energy-based model, ``p(x) ~ exp(-E(x))`` with an MLP energy, trained by maximum
    likelihood with short-run Langevin negatives from a replay buffer (Du and Mordatch, 2019).

    Each step is one Adam update of the contrastive loss ``E(data) - E(negatives)`` (plus
    ``energy_l2`` times the squared energies), whose negatives are ``langevin_steps`` of
    Langevin dynamics from a random subset of a buffer of ``buffer_size`` chains, ``reinit`` of
    them restarted from fresh states (:class:`~ppdgm.inference.ContrastiveDivergence` with
    ``replay=True``: the one trainer, no loop of its own).

    Two samplers (``sampler``), both run by training and by :meth:`sample`:

    - ``langevin``: Langevin dynamics on exp(-E) itself (step 0.01, noise ``sqrt(2 step)``),
      fresh chains uniform over the data's box, ``energy_l2`` 0.1. The samples follow the
      model's density, which the grid and AIS then measure: the choice for low-dimensional
      data.
    - ``short-run``: the cold short-run sampler of Du and Mordatch (2019) and Nijkamp et al.
      (2019): a gradient step of 1 and noise 0.01 (standardized units), i.e. Langevin dynamics
      on exp(-E / T) with T = 5e-5, fresh chains from the data's per-coordinate Gaussian,
      ``energy_l2`` 1. On the 64-pixel digits it gives digit-like samples where ``langevin``
      gives noise; the samples are then the sampler's, not exp(-E)'s, and ``score_samples``
      still scores exp(-E).
    - ``auto`` (the default): ``langevin`` for data of at most 4 dimensions, ``short-run``
      above. The choice is in :attr:`sampler_` and the values used in :attr:`step_size_`,
      :attr:`noise_` and :attr:`energy_l2_`.

    ``score_samples`` is ``-E(x) - log Z`` in nats with log Z from **annealed importance
    sampling** (``ais_chains`` chains, ``ais_betas`` distributions from the Gaussian with the
    data's mean and standard deviation, one MALA step each), which underestimates log Z on
    average, so that the log-likelihoods err on the high side; on 2-D data
    ``log_partition("grid")`` integrates on a grid instead, a reference for the AIS figure.
    The validation loss is the NLL with log Z from the grid on 2-D data; none is tracked in
    more dimensions (see :meth:`_val_loss`), where AIS needs far more distributions than its
    defaults to be trusted: check ``ais_result_.ess`` and compare runs with more ``ais_betas``.

    Args:
        hidden_dims: widths of the energy network's hidden layers.
        langevin_steps: Langevin steps per training step's negatives.
        sampler: ``langevin`` (Langevin dynamics on exp(-E), for low-dimensional data),
            ``short-run`` (a cold short-run sampler, for images) or ``auto`` (langevin up
            to 4 dimensions).
        step_size: the Langevin step in standardized units (None: the sampler's, 0.01 or 1).
        noise: the noise's standard deviation per Langevin step in standardized units (None:
            the sampler's, sqrt(2 step_size) or 0.01).
        buffer_size: the replay buffer's chains.
        reinit: the fraction of each batch of chains restarted from fresh states.
        energy_l2: weight of the squared-energy penalty (None: the sampler's, 0.1 or 1).
        weight_decay: Adam's weight decay on the energy network's parameters (an L2 penalty
            added to the gradient).
        sample_steps: Langevin steps ``sample`` runs from noise.
        ais_chains, ais_betas, ais_step_size: AIS's chains, distributions and MALA step.
        seed, device, compile: as for every family.

    Attributes:
        model_: the fitted :class:`~ppdgm.models.energy.DeepEBM`.
        log_z_: AIS's log Z once computed (``log_z_method_`` is "ais"); ``log_z_grid_`` the
            grid's (2-D).
        sampler_, step_size_, noise_, energy_l2_: the sampler and the values fitting used.
    """

    family = "ebm"
    summary = "deep energy-based model trained with short-run Langevin and a replay buffer"
    default_data = "two-moons"
    default_lr = 1e-3
    default_batch_size = 128
    choices = {"sampler": ("auto", *SAMPLERS)}
    # a checkpoint from before the samplers was trained with Langevin at T = 1
    saved_defaults = {"sampler": "langevin"}

    def __init__(
        self,
        *,
        hidden_dims: tuple[int, ...] = (128, 128),
        langevin_steps: int = 20,
        sampler: str = "auto",
        step_size: float | None = None,
        noise: float | None = None,
        buffer_size: int = 10_000,
        reinit: float = 0.05,
        energy_l2: float | None = None,
        weight_decay: float = 0.0,
        sample_steps: int = 200,
        ais_chains: int = 200,
        ais_betas: int = 1000,
        ais_step_size: float = 0.05,
        seed: int = 0,
        device: str = "auto",
        compile: bool = False,
    ):
        self.hidden_dims = hidden_dims
        self.langevin_steps = langevin_steps
        self.sampler = sampler
        self.step_size = step_size
        self.noise = noise
        self.buffer_size = buffer_size
        self.reinit = reinit
        self.energy_l2 = energy_l2
        self.weight_decay = weight_decay
        self.sample_steps = sample_steps
        self.ais_chains = ais_chains
        self.ais_betas = ais_betas
        self.ais_step_size = ais_step_size
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _check_params(self) -> None:
        from .base import check_hidden_dims

        super()._check_params()
        check_hidden_dims(self.hidden_dims)
        for name in ("langevin_steps", "buffer_size", "sample_steps", "ais_chains"):
            check_int(name, getattr(self, name))
        check_int("ais_betas", self.ais_betas, low=2)
        for name in ("step_size", "noise", "ais_step_size"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0.0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if not 0.0 <= float(self.reinit) <= 1.0:
            raise ConfigError(f"reinit must lie in [0, 1], got {self.reinit}")
        if self.energy_l2 is not None and not float(self.energy_l2) >= 0.0:
            raise ConfigError(f"energy_l2 must be >= 0, got {self.energy_l2}")

    def _check_support(self, x: np.ndarray, source: str, settings: dict[str, Any]) -> None:
        if x.ndim != 2:
            raise ConfigError(
                f"{source}: the deep EBM models vectors (N, D); got examples of shape "
                f"{x.shape[1:]} (flatten images first)"
            )

    def _build(self, data_shape: tuple[int, ...]) -> None:
        from ..models.energy import DeepEBM as DeepEBMModel

        sampler = self.sampler
        if sampler == "auto":
            sampler = "langevin" if data_shape[0] <= _LANGEVIN_MAX_DIM else "short-run"
        preset = SAMPLERS[sampler]
        self.sampler_ = sampler
        self.step_size_ = float(preset["step_size"] if self.step_size is None else self.step_size)
        if self.noise is not None:
            self.noise_ = float(self.noise)
        else:
            self.noise_ = preset["noise"] or math.sqrt(2.0 * self.step_size_)
        self.energy_l2_ = float(preset["energy_l2"] if self.energy_l2 is None else self.energy_l2)
        self.model_ = DeepEBMModel(
            data_shape[0],
            tuple(self.hidden_dims),
            int(self.langevin_steps),
            self.step_size_,
            noise=self.noise_,
            init=preset["init"],
        )
        for stale in ("log_z_", "log_z_method_", "ais_result_", "ais_accept_rate_", "log_z_grid_"):
            self.__dict__.pop(stale, None)

    def _data_init(self, x: torch.Tensor) -> None:
        self.model_.set_data_range(x)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model_}

    def _programs(self):
        return self.model_.model, None

    def _objective(self):
        from ..inference import ContrastiveDivergence

        return ContrastiveDivergence(
            num_steps=int(self.langevin_steps),
            num_chains=int(self.buffer_size),
            replay=True,
            reinit=float(self.reinit),
            energy_l2=self.energy_l2_,
        )

    def _trainer_options(self) -> dict[str, Any]:
        return {"weight_decay": float(self.weight_decay)}

    def _grid_box(self):
        m = self.model_
        return m.low.double().cpu(), m.high.double().cpu()

    def _val_loss(self, x: torch.Tensor) -> float:
        """The validation NLL with log Z on a grid (2-D data). In more dimensions no estimate
        of log Z cheap enough to repeat is reliable (a short AIS run misjudges it by far more
        than training changes it), so none is tracked (NaN) and the last step is kept."""
        if self.model_.num_inputs != 2:
            return math.nan
        with torch.no_grad():
            return float(self.model_.energy(x).mean()) + self._log_z_grid(200)

    def _log_z_grid(self, num_points: int) -> float:
        from ..evaluation import log_partition_grid

        low, high = self._grid_box()
        energy = self.model_.energy
        return log_partition_grid(lambda p: energy(p.to(self.device_)).cpu(), low, high, num_points)

    def _ais(self, num_chains: int, num_betas: int):
        from ..evaluation import ais

        path = self.model_.annealing_path(float(self.ais_step_size))
        with self._seeded():
            return ais(path, num_chains, num_betas, seed=int(self.seed)), path

    def log_partition(self, method: str = "ais") -> float:
        """log Z of the fitted model: ``ais`` (the default, seeded with ``seed``), cached in
        :attr:`log_z_` (the one :meth:`score_samples` uses), with :attr:`ais_result_` and the
        MALA acceptance :attr:`ais_accept_rate_`; or ``grid`` (2-D data only: the midpoint rule
        on a 400-square grid over the chains' box), cached in :attr:`log_z_grid_`."""
        self._check_fitted()
        check_choice("method", method, ("ais", "grid"))
        if method == "grid":
            if self.model_.num_inputs != 2:
                raise ConfigError("log_partition('grid') integrates 2-D models only; use 'ais'")
            if not hasattr(self, "log_z_grid_"):
                self.log_z_grid_ = self._log_z_grid(400)
            return self.log_z_grid_
        if not hasattr(self, "log_z_"):
            result, path = self._ais(int(self.ais_chains), int(self.ais_betas))
            self.ais_result_, self.ais_accept_rate_ = result, path.accept_rate
            self.log_z_, self.log_z_method_ = float(result.log_z), "ais"
            _check_ais(result, int(self.ais_chains))
        return self.log_z_

    @torch.no_grad()
    def score_samples(self, X) -> np.ndarray:
        """log p(x) per example in nats, shape (N,), with log Z from AIS (see the class
        docstring: on average an overestimate of the log-likelihood)."""
        x = self._tensor(X)
        return (-self.model_.energy(x) - self.log_partition("ais")).double().cpu().numpy()

    def energy(self, X) -> np.ndarray:
        """E(x) per example, shape (N,)."""
        with torch.no_grad():
            return self.model_.energy(self._tensor(X)).cpu().numpy()

    def sample(self, num_samples: int, *, seed: int | None = None) -> np.ndarray:
        """Draw ``num_samples`` by ``sample_steps`` steps of the sampler from fresh chains
        (uniform over the data's box, or the data's Gaussian for ``short-run``); shape
        (num_samples, D)."""
        self._check_fitted()
        check_int("num_samples", num_samples)
        with self._seeded(seed):
            return self.model_.sample(int(num_samples), int(self.sample_steps)).cpu().numpy()

    def metrics(self, X, prefix: str, **options) -> dict[str, Any]:
        out = super().metrics(X, prefix, **options)
        out["log_z"] = self.log_partition("ais")
        out["log_z_method"] = self.log_z_method_
        out["log_z_ess"] = float(self.ais_result_.ess)
        if self.model_.num_inputs == 2:
            out["log_z_grid"] = self.log_partition("grid")
        return out

    def plot_figures(self, data, folder: Path, seed: int = 0) -> None:
        """energy.png (2-D: the data, exp(-E) on a grid and the samples), samples.png and
        curves.png."""
        from .. import viz

        samples = self.sample(1000 if self.model_.num_inputs == 2 else 64, seed=seed)
        if self.model_.num_inputs == 2:
            viz.plot_density_2d(
                lambda g: -self.energy(g),
                data.x_test,
                path=folder / "energy.png",
                title="exp(-E(x)) (unnormalized)",
                samples=samples,
            )
        image = data.image_shape if self.model_.num_inputs != 2 else None
        viz.plot_samples(
            samples[:64] if image else samples,
            image,
            path=folder / "samples.png",
            title="samples",
            reference=data.x_test if self.model_.num_inputs == 2 else None,
        )
        viz.plot_curves(
            self.history_,
            path=folder / "curves.png",
            ylabel="train: energy gap (data - negatives); validation: NLL",
            best_step=self.selected_step_ if self.best_step_ is not None else None,
        )


@register
class DBM(_BoltzmannMachine):
    """A deep Boltzmann machine with two binary hidden layers (Salakhutdinov & Hinton, 2009),
    trained by persistent contrastive divergence with mean-field inference for the data term.

    Each step is one SGD update whose gradient the trainer takes in closed form: the data's
    mean-field statistics minus those of ``num_chains`` persistent Gibbs chains over full
    states ``[v, h1, h2]``, which travel in checkpoints
    (:class:`~ppdgm.inference.ContrastiveDivergence` with ``persistent=True``).

    ``score_samples`` is in nats: **exact** (log Z and F(x) by enumerating the first hidden
    layer) when it has at most 20 units; otherwise the mean-field **lower bound**
    ``-F_q(x) - log Z`` with log Z from **annealed importance sampling** over full states, which
    underestimates log Z on average (the two errors pull in opposite directions: the figure is
    an estimate, not a bound). ``log_partition`` says which it used.

    Args:
        hidden: (H1, H2), the hidden layers' widths.
        mean_field_steps: fixed-point sweeps of the mean-field posterior.
        cd_k: Gibbs sweeps of the persistent chains per step.
        num_chains: persistent chains.
        momentum, weight_decay: of SGD.
        init_std: standard deviation of the initial weights.
        sample_steps: Gibbs sweeps ``sample`` runs from coin-flip states.
        ais_chains, ais_betas: chains and distributions of AIS.
        seed, device, compile: as for every family (compile is unused by the closed form).

    Attributes:
        model_: the fitted :class:`~ppdgm.models.energy.DBM`.
        log_z_: log Z once computed, with :attr:`log_z_method_`.
    """

    family = "dbm"
    summary = "deep Boltzmann machine (two hidden layers) trained by PCD with mean field"
    _filters_title = "filters (first hidden layer's weights)"
    _curves_label = "train: mean-field free-energy gap; validation: NLL"

    def __init__(
        self,
        *,
        hidden: tuple[int, int] = (64, 32),
        mean_field_steps: int = 10,
        cd_k: int = 1,
        num_chains: int = 100,
        momentum: float = 0.5,
        weight_decay: float = 0.0,
        init_std: float = 0.01,
        sample_steps: int = 1000,
        ais_chains: int = 100,
        ais_betas: int = 10_000,
        seed: int = 0,
        device: str = "auto",
        compile: bool = False,
    ):
        self.hidden = hidden
        self.mean_field_steps = mean_field_steps
        self.cd_k = cd_k
        self.num_chains = num_chains
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.init_std = init_std
        self.sample_steps = sample_steps
        self.ais_chains = ais_chains
        self.ais_betas = ais_betas
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _check_params(self) -> None:
        hidden = tuple(self.hidden) if isinstance(self.hidden, list | tuple) else ()
        if len(hidden) != 2:
            raise ConfigError(f"hidden must be two layer widths (H1, H2), got {self.hidden!r}")
        for i, h in enumerate(hidden):
            check_int(f"hidden[{i}]", h)
        for name in ("mean_field_steps", "num_chains"):
            check_int(name, getattr(self, name))
        super()._check_params()

    def _check_support(self, x: np.ndarray, source: str, settings: dict[str, Any]) -> None:
        if x.ndim != 2:
            raise ConfigError(
                f"{source}: a DBM models vectors (N, D); got examples of shape {x.shape[1:]} "
                "(flatten images first)"
            )
        check_unit_interval(x, source, hint="scale the data (e.g. MinMaxScaler)")

    def _build(self, data_shape: tuple[int, ...]) -> None:
        from ..models.energy import DBM as DBMModel

        generator = torch.Generator().manual_seed(int(self.seed))
        self.model_ = DBMModel(
            data_shape[0],
            tuple(int(h) for h in self.hidden),
            int(self.mean_field_steps),
            float(self.init_std),
            generator,
        )
        self._forget_log_z()

    def _data_init(self, x: torch.Tensor) -> None:
        self.model_.visible_bias.data.copy_(data_log_odds(x))

    def _objective(self):
        from ..inference import ContrastiveDivergence

        return ContrastiveDivergence(
            num_steps=int(self.cd_k), persistent=True, num_chains=int(self.num_chains)
        )

    def _enumerated_units(self) -> int:
        return self.model_.hidden[0]

    def _val_loss(self, x: torch.Tensor) -> float:
        """The exact NLL when the first hidden layer has at most 16 units; else none is tracked
        (NaN: log Z would need an AIS run at every evaluation) and the last step is kept."""
        with torch.no_grad():
            m = self.model_
            if self._enumerated_units() <= _VAL_EXACT_MAX_UNITS:
                return float(m.free_energy_exact(x).mean() + m.log_partition_exact())
            return math.nan

    @torch.no_grad()
    def score_samples(self, X) -> np.ndarray:
        """log p(x) per example in nats, shape (N,): exact for a first hidden layer of at most
        20 units, else the mean-field bound with AIS's log Z (see the class docstring)."""
        x = self._tensor(X)
        log_z = self.log_partition("auto")
        m = self.model_
        f = m.free_energy_exact(x) if self._exact() else m.variational_free_energy(x)
        return (-f - log_z).double().cpu().numpy()

    @torch.no_grad()
    def transform(self, X) -> np.ndarray:
        """The mean-field posterior of both hidden layers as features, (N, H1 + H2)."""
        mu1, mu2 = self.model_.mean_field(self._tensor(X))
        return torch.cat((mu1, mu2), 1).cpu().numpy()

    def _filters(self) -> torch.Tensor:
        return self.model_.weight1
