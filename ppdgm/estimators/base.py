"""The one estimator contract that every family follows.

A family is a subclass of :class:`Estimator` that supplies a model, a guide (or none) and an
objective; the base class owns everything else: hyperparameters (``get_params`` /
``set_params``, read off the constructor's signature as in scikit-learn), data checks,
fitting through the one :class:`~ppdgm.train.Trainer` with validation, best-step selection and
early stopping, seeded queries, and ``save``/``load`` through the safe checkpoint. The command
line builds each family's options from its constructor, so a new family needs no CLI code.

A family implements:

* ``_build(data_shape, **settings)``: create its modules (``self.model_``, ...) for data of
  that shape; ``settings`` are the data-dependent values from ``_settings(x)``.
* ``_modules()``: the fitted modules by name (what a checkpoint holds).
* ``_programs()``: the (model, guide) pair the trainer fits; ``_objective()``: its loss.
* ``_val_loss(x)``: the validation loss per example (lower is better).
* ``_trainer_options()`` (optional): more trainer arguments, e.g. ``weight_decay``.
* ``score_samples(X)`` and ``sample(n)``.

and may override ``_settings``, ``_check_support``, ``metrics`` and ``plot_figures``.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .._utils import check_choice, check_int, floored_std, resolve_device, set_seed
from ..data import check_shape, validate_array
from ..errors import CheckpointError, ConfigError
from ..train import Trainer, load_checkpoint, save_checkpoint

__all__ = [
    "Estimator",
    "ExactLikelihoodEstimator",
    "REGISTRY",
    "register",
    "get_family",
    "load_estimator",
    "check_hidden_dims",
]

#: every family by its command-line name
REGISTRY: dict[str, type[Estimator]] = {}


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: add a family to :data:`REGISTRY` under ``cls.family``."""
    if not cls.family or not cls.summary:
        raise TypeError(f"{cls.__name__} needs a family name and a one-line summary")
    if cls.family in REGISTRY and REGISTRY[cls.family] is not cls:
        raise TypeError(f"family {cls.family!r} is registered twice")
    REGISTRY[cls.family] = cls
    return cls


def get_family(name: str) -> type[Estimator]:
    """The estimator class of a family, by its command-line name."""
    return REGISTRY[check_choice("model family", name, sorted(REGISTRY))]


def load_estimator(path: str | Path, device: str = "auto") -> Estimator:
    """Load a fitted estimator of any family from its checkpoint."""
    state = load_checkpoint(path)
    name = (state.get("extra") or {}).get("estimator")
    for cls in REGISTRY.values():
        if cls.__name__ == name:
            return cls.load(path, device=device, _state=state)
    raise CheckpointError(f"{path}: not a checkpoint of a ppdgm model (estimator {name!r})")


class Estimator:
    """Base class of every family (see the module docstring for what a family supplies).

    Fitted state lives in attributes with a trailing underscore: ``model_`` and the other
    modules, ``history_``, ``data_shape_``, ``best_step_``, ``best_val_loss_``,
    ``selected_step_``, ``last_step_``, ``stopped_early_``, ``device_``.
    """

    #: the family's name on the command line (``ppdgm train FAMILY``)
    family: ClassVar[str] = ""
    #: one line for ``ppdgm list``
    summary: ClassVar[str] = ""
    #: the bundled data set ``ppdgm train FAMILY`` uses without ``--data``
    default_data: ClassVar[str] = "digits"
    #: allowed values of hyperparameters that take one of a few names
    choices: ClassVar[dict[str, tuple]] = {}
    #: command-line defaults that differ from the constructor's (e.g. "auto": from the data)
    cli_defaults: ClassVar[dict[str, Any]] = {}
    #: hyperparameters added after checkpoints were written, with the value the runs of an
    #: older checkpoint (which lacks them) used
    saved_defaults: ClassVar[dict[str, Any]] = {}
    #: the learning-rate schedule ``fit`` uses unless told (see :class:`~ppdgm.train.Trainer`)
    default_lr_schedule: ClassVar[str] = "constant"
    #: the learning rate and batch size ``fit`` and ``ppdgm train`` use unless told
    default_lr: ClassVar[float] = 1e-3
    default_batch_size: ClassVar[int] = 128
    #: whether the model gives a (bound on its) log-density; a GAN's generator does not, and
    #: its ``score_samples`` raises :class:`~ppdgm.errors.NoDensityError`
    has_density: ClassVar[bool] = True
    #: hyperparameters the command line sets through its own options, not the family's
    cli_managed: ClassVar[tuple[str, ...]] = ("seed", "device", "compile")

    # -- hyperparameters -----------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Each hyperparameter's default, from the constructor."""
        sig = inspect.signature(cls.__init__)
        return {n: sig.parameters[n].default for n in cls._param_names()}

    @classmethod
    def param_docs(cls) -> dict[str, str]:
        """Each hyperparameter's description, from the class docstring's ``Args:`` section."""
        doc = inspect.getdoc(cls) or ""
        match = re.search(r"^Args:\n((?:(?: {4}.*)?\n?)*)", doc, re.MULTILINE)
        out: dict[str, str] = {}
        if not match:
            return out
        current = None
        for line in match.group(1).splitlines():
            entry = re.match(r" {4}(\w+(?:, \w+)*): (.*)", line)
            if entry:
                names, text = entry.groups()
                current = [n.strip() for n in names.split(",")]
                for n in current:
                    out[n] = text.strip()
            elif current and line.startswith(" " * 8):
                for n in current:
                    out[n] += " " + line.strip()
            else:
                current = None
        return out

    @classmethod
    def params_from_saved(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments from hyperparameters saved as plain values (a checkpoint, a
        run's config.json): this family's names only, lists back to tuples, and
        :attr:`saved_defaults` for those an older file lacks."""
        names = cls._param_names()
        saved = {**cls.saved_defaults, **saved}
        return {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyperparameters, by the constructor's names."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> Estimator:
        """Set hyperparameters by name (for a later ``fit``); unknown names are refused."""
        names = self._param_names()
        for name in params:
            if name not in names:
                raise ConfigError(
                    f"unknown parameter {name!r} for {type(self).__name__}; its parameters are "
                    + ", ".join(names)
                )
        old = self.get_params()
        for name, value in params.items():
            setattr(self, name, value)
        try:
            self._check_params()
        except ConfigError:
            for name, value in old.items():
                setattr(self, name, value)
            raise
        return self

    def __repr__(self) -> str:
        defaults = self.param_defaults()
        shown = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if not (k in defaults and _same(v, defaults[k]))
        ]
        return f"{type(self).__name__}({', '.join(shown)})"

    def _check_params(self) -> None:
        """Refuse bad hyperparameters with a :class:`ConfigError` that names them."""
        for name, allowed in self.choices.items():
            check_choice(name, getattr(self, name), allowed)
        if not float(getattr(self, "weight_decay", 0.0)) >= 0.0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")

    # -- data ----------------------------------------------------------------------------------
    def _settings(self, x: np.ndarray) -> dict[str, Any]:
        """Values the model takes from the training data (plain values, saved with it)."""
        return {}

    def _check_support(self, x: np.ndarray, source: str, settings: dict[str, Any]) -> None:
        """Refuse values outside the support of the model with these settings (e.g. non-binary
        data for a Bernoulli likelihood)."""

    def data_settings(self, *arrays, source: str = "X") -> dict[str, Any]:
        """The data-dependent settings a fit would take from these arrays together (e.g. the
        likelihood that ``"auto"`` picks), after checking that each is valid data within
        their support. A caller that will show the model other data too (test and validation
        splits) passes all of it, so that the settings cover every split."""
        xs = [validate_array(_as_array(x), source) for x in arrays]
        if len({x.shape[1:] for x in xs}) == 1:
            together = np.concatenate(xs)
        else:  # splits of different shapes (load_data refuses them): their values only
            together = np.concatenate([x.reshape(-1, 1) for x in xs])
        settings = self._settings(together)
        for x in xs:
            self._check_support(x, source, settings)
        return settings

    def check_data(self, X, source: str = "X") -> np.ndarray:
        """Validate data for the fitted model: finite numbers of the fitted shape within the
        model's support; errors name ``source`` (e.g. the data file)."""
        x = validate_array(_as_array(X), source)
        self._check_fitted()
        check_shape(x, self.data_shape_, source)
        self._check_support(x, source, self.settings_)
        return x

    def _tensor(self, X, source: str = "X") -> torch.Tensor:
        x = self.check_data(X, source)
        return torch.as_tensor(x, dtype=torch.float32, device=self.device_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ConfigError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")

    # -- the family's part ---------------------------------------------------------------------
    def _build(self, data_shape: tuple[int, ...], **settings) -> None:
        raise NotImplementedError

    def _modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def _programs(self):
        raise NotImplementedError

    def _objective(self):
        raise NotImplementedError

    def _val_loss(self, x: torch.Tensor) -> float:
        raise NotImplementedError

    def _data_init(self, x: torch.Tensor) -> None:
        """Initialize from the training data before the first step (e.g. Glow's ActNorm); a
        fit that resumes from a checkpoint then loads the checkpoint's parameters over it."""

    def _trainer_options(self) -> dict[str, Any]:
        """More :class:`~ppdgm.train.Trainer` arguments from the hyperparameters (e.g. the
        optimizer and its weight decay)."""
        return {}

    def score_samples(self, X) -> np.ndarray:
        raise NotImplementedError

    def sample(self, num_samples: int, *, seed: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def score(self, X) -> float:
        """Mean of :meth:`score_samples` (nats per example)."""
        return float(np.mean(self.score_samples(X)))

    # -- fitting -------------------------------------------------------------------------------
    def _setup(self, data_shape: tuple[int, ...], settings: dict[str, Any]) -> None:
        set_seed(self.seed)
        self.device_ = resolve_device(self.device)
        self._build(tuple(data_shape), **settings)
        for m in self._modules().values():
            m.to(self.device_)
        self.data_shape_, self.settings_ = tuple(data_shape), dict(settings)

    def uses_labels(self) -> bool:
        """Whether this model is fitted on (x, y) pairs (a conditional model); ``fit`` then
        requires ``y`` (and ``y_val`` with ``X_val``), otherwise it ignores them."""
        return False

    def _labels(self, y, n: int, source: str) -> np.ndarray:
        from ..data import validate_labels

        if y is None:
            raise ConfigError(
                f"this {type(self).__name__} is conditional: give the labels {source}"
            )
        y = validate_labels(_as_array(y), n, source)
        limit = getattr(self, "settings_", {}).get("num_classes")
        if limit is not None and len(y) and int(y.max()) >= limit:
            raise ConfigError(
                f"{source}: label {int(y.max())} is outside the fitted classes 0..{limit - 1}"
            )
        return y

    def fit(
        self,
        X,
        y=None,
        *,
        num_steps: int = 3000,
        batch_size: int | None = None,
        lr: float | None = None,
        lr_schedule: str | None = None,
        X_val=None,
        early_stopping: int | None = None,
        eval_every: int | None = None,
        restore_best: bool = True,
        progress: bool = False,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 500,
        best_path: str | Path | None = None,
        resume: bool = False,
        extra_state: dict[str, Any] | None = None,
        X_test=None,
        y_val=None,
    ):
        """Fit to X of shape (N, D) or (N, C, H, W) (array or tensor); returns self.

        Args:
            y: (N,) integer labels for a conditional model (see :meth:`uses_labels`); ignored
                by the others, as in scikit-learn.
            num_steps: optimizer steps in total (a resumed fit continues up to it).
            batch_size, lr: minibatch size and learning rate (None: the family's
                :attr:`default_batch_size` and :attr:`default_lr`, 128 and 1e-3 for most).
            lr_schedule: ``constant``, or ``cosine`` or ``linear`` decay to 0 over
                ``num_steps``; None: the family's default (:attr:`default_lr_schedule`).
            X_val: validation data, held out from X. Its loss is tracked every
                ``eval_every`` steps (default: 20 points over the run); the step with the
                lowest is the best (:attr:`best_step_`) and its parameters are the fitted
                ones when ``restore_best``. Keep the test data out of it.
            early_stopping: stop after this many evaluations without improvement (needs
                ``X_val``).
            restore_best: end with the parameters of the best validation step (else the last).
            progress: show a progress bar.
            checkpoint_path, checkpoint_every, resume: see :meth:`ppdgm.train.Trainer.run`.
            best_path: where to save the checkpoint of the best validation step.
            extra_state: more plain values stored with each checkpoint.
            X_test: deprecated name of ``X_val``.
            y_val: the labels of ``X_val`` for a conditional model.
        """
        check_int("num_steps", num_steps)
        if X_test is not None:
            if X_val is not None:
                raise ConfigError("give X_val only (X_test is its deprecated name)")
            warnings.warn(
                "fit(X_test=...) is deprecated: pass validation data as X_val and keep the "
                "test data for the final metrics",
                FutureWarning,
                stacklevel=2,
            )
            X_val = X_test
        if early_stopping is not None:
            check_int("early_stopping", early_stopping)
            if X_val is None:
                raise ConfigError("early_stopping needs validation data (X_val)")
        self._check_params()
        x = validate_array(_as_array(X), "X")
        labelled = self.uses_labels()
        if labelled:
            self.__dict__.pop("settings_", None)
            y = self._labels(y, len(x), "y")
        settings = self._settings(x)
        if labelled:
            settings["num_classes"] = int(y.max()) + 1
        self._check_support(x, "X", settings)
        self._setup(tuple(x.shape[1:]), settings)
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device_)
        self._data_init(x)
        x_val = self._tensor(X_val, "X_val") if X_val is not None else None
        val_labels = ()
        if labelled and x_val is not None:
            y_val = self._labels(y_val, len(x_val), "y_val")
            val_labels = (torch.as_tensor(y_val, device=self.device_),)
        trainer = self._make_trainer(lr=lr, batch_size=batch_size, lr_schedule=lr_schedule)
        eval_fn = None
        if x_val is not None:

            def eval_fn():
                return {"val_loss": self._val_loss(x_val, *val_labels)}

        extra = {**self._extra(), **(extra_state or {})}
        self.history_ = trainer.run(
            (x, torch.as_tensor(y, device=self.device_)) if labelled else x,
            num_steps,
            checkpoint_path=checkpoint_path,
            checkpoint_every=checkpoint_every,
            eval_fn=eval_fn,
            eval_every=eval_every or max(1, num_steps // 20),
            progress=progress,
            resume=resume,
            extra_state=lambda: extra,
            best_path=best_path,
            early_stopping=early_stopping,
        )
        self.trainer_ = trainer
        self.last_step_ = trainer.step_count
        self.stopped_early_ = bool(trainer.best["stopped"])
        self.best_step_ = trainer.best["step"]
        self.best_val_loss_ = trainer.best["value"] if self.best_step_ is not None else None
        self.selected_step_ = self.last_step_
        if restore_best and trainer.restore_best(best_path):
            self.selected_step_ = self.best_step_
        self._set_eval()
        return self

    def _make_trainer(
        self,
        lr: float | None = None,
        batch_size: int | None = None,
        lr_schedule: str | None = None,
    ) -> Trainer:
        """The one trainer over this family's programs and objective (built modules needed)."""
        model, guide = self._programs()
        return Trainer(
            model,
            guide,
            self._objective(),
            lr=self.default_lr if lr is None else lr,
            batch_size=self.default_batch_size if batch_size is None else batch_size,
            seed=self.seed,
            device=self.device_,
            compile=self.compile,
            lr_schedule=lr_schedule or self.default_lr_schedule,
            **self._trainer_options(),
        )

    def _set_eval(self) -> None:
        for m in self._modules().values():
            m.eval()

    # -- queries -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _seeded(self, seed: int | None = None):
        """Run with the estimator's seed, leaving the caller's random state as it was."""
        devices = [] if self.device_.type == "cpu" else [self.device_]
        with torch.random.fork_rng(devices=devices):
            set_seed(self.seed if seed is None else seed)
            yield

    # -- what the command line reports ---------------------------------------------------------
    def metrics(self, X, prefix: str, **options) -> dict[str, Any]:
        """Figures of merit on ``X`` for ``ppdgm train`` and ``ppdgm evaluate``, with keys
        starting with ``prefix`` (``test``, ``val``); by default the log-likelihood."""
        from ..evaluation import bits_per_dim

        ll = float(np.mean(self.score_samples(X)))
        return {
            f"{prefix}_nll": -ll,
            f"{prefix}_bits_per_dim": float(bits_per_dim(-ll, int(np.prod(self.data_shape_)))),
            f"num_{prefix}": int(len(X)),
        }

    def sample_metrics(
        self,
        X,
        prefix: str,
        *,
        y=None,
        features=None,
        max_samples: int | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Sample quality against ``X``, for every family that samples: as many samples as
        rows of X (at most ``max_samples``, the first rows), compared by
        :func:`~ppdgm.evaluation.sample_quality` (Fréchet and kernel distances, Gaussian-kernel
        MMD², precision and recall), keys ``<prefix>_<figure>``, and the number compared as
        ``<prefix>_quality_samples``.

        Args:
            y: labels of X's rows, for a model that samples given labels (conditional).
            features: where to compare: None, the raw values standardized by X's mean and
                standard deviation (floored at 1% of the mean one, so that a blank
                coordinate does not dominate); ``"digits"``, the digits classifier's features
                (:func:`~ppdgm.evaluation.digits_features`, values read as 0..16 when X
                exceeds 1, else 0..1), which adds ``<prefix>_inception_score``; a torch module
                (:func:`~ppdgm.evaluation.extract_features`); or a function from arrays to
                (N, F) features.
            seed: the sampling seed (None: the estimator's).
        """
        from ..evaluation import extract_features, sample_quality
        from ..evaluation.features import digits_features, inception_score

        self._check_fitted()
        x = self.check_data(X, "X")
        if max_samples is not None:
            check_int("max_samples", max_samples)
            x = x[: int(max_samples)]
        options: dict[str, Any] = {}
        if self.uses_labels():
            options["y"] = None if y is None else self._labels(y, len(X), "y")[: len(x)]
        fake = np.asarray(self.sample(len(x), seed=seed, **options), dtype=np.float64)
        real = x.astype(np.float64)
        extra: dict[str, float] = {}
        if features is None:
            flat = real.reshape(len(real), -1)
            # the samples' small deviations on a blank coordinate of X must not dominate
            mean, std = flat.mean(0), floored_std(flat.std(0))
            a = (fake.reshape(len(fake), -1) - mean) / std
            b = (flat - mean) / std
        elif isinstance(features, str):
            if features != "digits":
                raise ConfigError(f"unknown features {features!r}; use 'digits', None or a module")
            scale = 16.0 if float(real.max()) > 1.0 else 1.0
            a, b = digits_features(fake, scale), digits_features(real, scale)
            extra["inception_score"] = inception_score(fake, scale=scale)[0]
        elif isinstance(features, torch.nn.Module):
            a, b = extract_features(fake, features), extract_features(real, features)
        elif callable(features):
            a, b = np.asarray(features(fake)), np.asarray(features(real))
        else:
            raise ConfigError(
                f"features must be None, 'digits', a torch module or a function, got "
                f"{type(features).__name__}"
            )
        quality = {**sample_quality(a, b, seed=int(self.seed if seed is None else seed)), **extra}
        return {
            **{f"{prefix}_{k}": float(v) for k, v in quality.items()},
            f"{prefix}_quality_samples": int(len(x)),
        }

    def plot_figures(self, data, folder: Path, seed: int = 0) -> None:
        """The figures ``ppdgm train`` writes into the run folder: samples and curves."""
        from .. import viz

        image = data.image_shape if len(self.data_shape_) == 1 else None
        viz.plot_samples(
            self.sample(64, seed=seed),
            image,
            path=folder / "samples.png",
            title="samples",
            reference=data.x_test if data.x_test.shape[1:] == (2,) else None,
        )
        viz.plot_curves(
            self.history_,
            path=folder / "curves.png",
            best_step=self.selected_step_ if self.best_step_ is not None else None,
        )

    # -- persistence ---------------------------------------------------------------------------
    def _extra(self) -> dict[str, Any]:
        params = self.get_params()
        params.pop("device", None)
        return {
            "estimator": type(self).__name__,
            "family": self.family,
            "params": params,
            "data_shape": list(self.data_shape_),
            "settings": dict(self.settings_),
        }

    def save(self, path: str | Path) -> None:
        """Save the fitted model (parameters and configuration) as a checkpoint."""
        self._check_fitted()
        save_checkpoint(
            path,
            {
                "step": int(self.selected_step_),
                "modules": {k: m.state_dict() for k, m in self._modules().items()},
                "history": self.history_,
                "extra": self._extra(),
            },
        )

    @classmethod
    def _settings_from_extra(cls, extra: dict[str, Any]) -> dict[str, Any]:
        return dict(extra.get("settings") or {})

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", _state: dict | None = None):
        """Load a model saved by :meth:`save` or a training checkpoint of this family."""
        state = _state if _state is not None else load_checkpoint(path)
        extra = state.get("extra") or {}
        if extra.get("estimator") != cls.__name__:
            raise CheckpointError(f"{path}: not a {cls.__name__} checkpoint")
        try:
            params = cls.params_from_saved(extra["params"])
            params["device"] = device
            est = cls(**params)
            est._setup(tuple(extra["data_shape"]), cls._settings_from_extra(extra))
            for k, m in est._modules().items():
                m.load_state_dict(state["modules"][k])
        except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as e:
            raise CheckpointError(
                f"{path}: the checkpoint does not describe a {cls.__name__} ({e})"
            ) from None
        est.history_ = {k: list(v) for k, v in state.get("history", {}).items()}
        est.selected_step_ = int(state.get("step", 0))
        est.best_step_ = None
        est._set_eval()
        return est


class ExactLikelihoodEstimator(Estimator):
    """Shared parts of the families whose ``model_`` has an exact ``log_prob(x)`` and a
    ``sample(n)`` (autoregressive models, flows): fitted by the exact negative log-likelihood
    (a family with latent sites overrides ``_programs`` and ``_objective``), validated and
    scored by ``log_prob``."""

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model_}

    def _check_params(self) -> None:
        super()._check_params()
        if not 0.0 <= float(getattr(self, "dropout", 0.0)) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def _trainer_options(self) -> dict[str, Any]:
        """AdamW with the family's ``weight_decay`` hyperparameter when it has a positive one."""
        decay = float(getattr(self, "weight_decay", 0.0))
        return {"optimizer": "adamw", "weight_decay": decay} if decay else {}

    def _vector_dim(self, data_shape: tuple[int, ...]) -> int:
        """D for a family that models vectors of D >= 2 dimensions; refuses other shapes."""
        if len(data_shape) != 1:
            raise ConfigError(
                f"{type(self).__name__} models vectors (N, D); got examples of shape "
                f"{data_shape} (flatten images first)"
            )
        if data_shape[0] < 2:
            raise ConfigError(
                f"{type(self).__name__} needs at least 2 dimensions, got {data_shape[0]}"
            )
        return int(data_shape[0])

    def _programs(self):
        return self.model_.model, None

    def _objective(self):
        from ..inference import ExactNLL

        return ExactNLL()

    def _val_loss(self, x: torch.Tensor) -> float:
        with torch.no_grad():
            return -self.model_.log_prob(x).mean().item()

    @torch.no_grad()
    def score_samples(self, X) -> np.ndarray:
        """Exact log p(x) per example, in nats; shape (N,). (A model with a latent variable,
        such as a dequantized flow, gives a seeded lower bound and says so.)"""
        x = self._tensor(X)
        with self._seeded():
            return self.model_.log_prob(x).cpu().numpy()

    def sample(self, num_samples: int, *, seed: int | None = None) -> np.ndarray:
        """Draw ``num_samples`` examples from the model; shape (num_samples, *data shape)."""
        self._check_fitted()
        check_int("num_samples", num_samples)
        with self._seeded(seed):
            return self.model_.sample(int(num_samples)).cpu().numpy()


def check_hidden_dims(dims) -> None:
    """Refuse hidden-layer widths that are not a non-empty sequence of positive integers."""
    if (
        not isinstance(dims, (tuple, list))
        or not dims
        or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in dims)
    ):
        raise ConfigError(f"hidden_dims must be positive integers, got {dims!r}")


def _as_array(X):
    """A tensor as a NumPy array (anything else unchanged, for validate_array to check)."""
    return X.detach().cpu().numpy() if torch.is_tensor(X) else X


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays and the like: show them
        return False
