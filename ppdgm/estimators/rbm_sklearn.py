"""``ppdgm.BernoulliRBM``: a drop-in for scikit-learn's ``BernoulliRBM``, trained by ppdgm.

Same constructor parameters, methods and fitted attributes as
:class:`sklearn.neural_network.BernoulliRBM`, so that a ``Pipeline`` using it works unchanged;
underneath it is the ``rbm`` family (:class:`ppdgm.estimators.RBM`) fitted by the one trainer.
It adds what scikit-learn lacks: the exact or AIS log partition function and log-likelihood,
CD-k or persistent CD, momentum and a decaying learning rate, a device, and ``sample(n)``.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._utils import check_choice
from ..data import validate_array
from ..errors import ConfigError
from .energy import RBM, check_unit_interval, pseudo_log_likelihood

__all__ = ["BernoulliRBM"]


class BernoulliRBM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Bernoulli restricted Boltzmann machine, scikit-learn's interface, ppdgm's training.

    X holds values in [0, 1] (binary, or probabilities of being on), shape (N, D).

    Args:
        n_components: hidden units.
        learning_rate: SGD learning rate (the starting one under ``lr_schedule="linear"``).
        batch_size: examples per minibatch.
        n_iter: passes over the training data (epochs); each has ``N // batch_size`` steps.
        verbose: show a progress bar and print the final pseudo-likelihood.
        random_state: None, an int or a ``numpy.random.RandomState``.
        persistent: persistent CD (scikit-learn's algorithm) or CD restarted at the data.
        cd_k: Gibbs sweeps per step.
        momentum: SGD momentum (scikit-learn: none).
        lr_schedule: ``linear`` decay to 0 over the run, or ``constant`` (scikit-learn's).
        visible_bias_init: ``data`` (the data's log-odds) or ``zero`` (scikit-learn's).
        ais_chains, ais_betas: annealed importance sampling settings for
            ``log_partition(method="ais")``.
        device: ``auto``, ``cpu`` or ``cuda``.

    Attributes:
        components_: (n_components, D) weights.  intercept_hidden_: (n_components,).
        intercept_visible_: (D,).  h_samples_: (chains, n_components) hidden samples of the
        persistent chains.  n_features_in_: D.  rbm_: the underlying ppdgm estimator.
    """

    def __init__(
        self,
        n_components: int = 256,
        *,
        learning_rate: float = 0.1,
        batch_size: int = 10,
        n_iter: int = 10,
        verbose: int = 0,
        random_state=None,
        persistent: bool = False,
        cd_k: int = 1,
        momentum: float = 0.9,
        lr_schedule: str = "linear",
        visible_bias_init: str = "data",
        ais_chains: int = 100,
        ais_betas: int = 10_000,
        device: str = "auto",
    ):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.verbose = verbose
        self.random_state = random_state
        self.persistent = persistent
        self.cd_k = cd_k
        self.momentum = momentum
        self.lr_schedule = lr_schedule
        self.visible_bias_init = visible_bias_init
        self.ais_chains = ais_chains
        self.ais_betas = ais_betas
        self.device = device

    # -- helpers -------------------------------------------------------------------------------
    def _seed(self) -> int:
        rs = self.random_state
        if rs is None:
            return int(np.random.randint(2**31 - 1))
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(2**31 - 1))
        if isinstance(rs, numbers.Integral):
            return int(rs)
        raise ConfigError(f"random_state must be None, an int or a RandomState, got {rs!r}")

    def _new_estimator(self) -> RBM:
        if not (isinstance(self.learning_rate, numbers.Real) and self.learning_rate > 0):
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate!r}")
        check_choice("lr_schedule", self.lr_schedule, ("linear", "constant"))
        for name in ("batch_size", "n_iter"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        return RBM(
            num_hidden=self.n_components,
            visible="bernoulli",
            cd_k=self.cd_k,
            persistent=self.persistent,
            momentum=self.momentum,
            visible_bias_init=self.visible_bias_init,
            ais_chains=self.ais_chains,
            ais_betas=self.ais_betas,
            seed=self._seed(),
            device=self.device,
        )

    @staticmethod
    def _array(X, source: str = "X") -> np.ndarray:
        if hasattr(X, "toarray"):  # a scipy sparse matrix
            X = X.toarray()
        x = validate_array(np.asarray(X, dtype=np.float64), source)
        if x.ndim != 2:
            raise ConfigError(f"{source}: expected a 2-D array (N, D), got shape {x.shape}")
        check_unit_interval(x, source)
        return x

    def _check(self, X) -> np.ndarray:
        check_is_fitted(self, "rbm_")
        return self.rbm_.check_data(self._array(X), "X")

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Fit to X (N, D) by ``n_iter`` epochs of minibatch CD; returns self."""
        x = self._array(X)
        est = self._new_estimator()
        batch = min(int(self.batch_size), len(x))
        est.fit(
            x,
            num_steps=int(self.n_iter) * max(1, len(x) // batch),
            batch_size=batch,
            lr=float(self.learning_rate),
            lr_schedule=self.lr_schedule,
            progress=bool(self.verbose),
        )
        self.rbm_ = est
        self.n_features_in_ = x.shape[1]
        self._gibbs_calls = 0
        if self.verbose:
            print(
                f"[BernoulliRBM] {self.n_iter} epochs, pseudo-likelihood = "
                f"{self.score_samples(x).mean():.2f}"
            )
        return self

    def partial_fit(self, X, y=None):
        """One CD update on X taken as a single batch (constant learning rate); returns self."""
        x = self._array(X)
        if not hasattr(self, "rbm_"):
            est = self._new_estimator()
            est._check_params()
            est._setup((x.shape[1],), {})
            xt = torch.as_tensor(x, dtype=torch.float32, device=est.device_)
            est._data_init(xt)
            est.trainer_ = est._make_trainer(
                lr=float(self.learning_rate), batch_size=len(x), lr_schedule="constant"
            )
            est.best_step_ = est.best_val_loss_ = None
            est.stopped_early_ = False
            self.rbm_ = est
            self.n_features_in_ = x.shape[1]
            self._gibbs_calls = 0
        est = self.rbm_
        x = est.check_data(x, "X")
        trainer = est.trainer_
        trainer.batch_size = len(x)
        est.history_ = trainer.run(x, trainer.step_count + 1, progress=False)
        est.last_step_ = est.selected_step_ = trainer.step_count
        est.__dict__.pop("log_z_", None)
        est._set_eval()
        return self

    # -- scikit-learn's queries ----------------------------------------------------------------
    def transform(self, X) -> np.ndarray:
        """Hidden-unit probabilities p(h = 1 | X), shape (N, n_components)."""
        x = self._check(X)
        return self.rbm_.transform(x)

    def gibbs(self, v) -> np.ndarray:
        """One block Gibbs sweep from v (N, D): sampled hiddens, then sampled visibles."""
        x = self._check(v)
        self._gibbs_calls += 1
        est = self.rbm_
        with est._seeded(est.seed + self._gibbs_calls):
            xt = torch.as_tensor(x, dtype=torch.float32, device=est.device_)
            return est.model_.gibbs(xt, 1).cpu().numpy()

    def score_samples(self, X) -> np.ndarray:
        """Pseudo-log-likelihood per example, as scikit-learn computes it: D times the log
        conditional probability of one randomly chosen bit (drawn from ``random_state``)."""
        x = self._check(X)
        rng = (
            self.random_state
            if isinstance(self.random_state, np.random.RandomState)
            else np.random.RandomState(self.random_state)
        )
        index = torch.as_tensor(rng.randint(0, x.shape[1], x.shape[0]))
        est = self.rbm_
        with torch.no_grad():
            xt = torch.as_tensor(x, dtype=torch.float32, device=est.device_)
            out = pseudo_log_likelihood(est.model_, xt, index.to(est.device_))
        return out.double().cpu().numpy()

    # -- what scikit-learn lacks ---------------------------------------------------------------
    def log_partition(self, method: str = "auto") -> float:
        """log Z: ``exact`` (enumeration of the smaller layer), ``ais``, or ``auto``."""
        check_is_fitted(self, "rbm_")
        return self.rbm_.log_partition(method)

    def log_likelihood(self, X, method: str = "auto") -> np.ndarray:
        """log p(x) = -F(x) - log Z per example, in nats, with log Z from ``method``."""
        x = self._check(X)
        est = self.rbm_
        log_z = est.log_partition(method)
        with torch.no_grad():
            xt = torch.as_tensor(x, dtype=torch.float32, device=est.device_)
            return est.model_.log_prob(xt, log_z).double().cpu().numpy()

    def sample(self, n_samples: int, *, seed: int | None = None) -> np.ndarray:
        """``n_samples`` draws by long block Gibbs runs, shape (n_samples, D)."""
        check_is_fitted(self, "rbm_")
        return self.rbm_.sample(n_samples, seed=seed)

    # -- fitted attributes, scikit-learn's names -----------------------------------------------
    @property
    def components_(self) -> np.ndarray:
        return self.rbm_.model_.weight.detach().cpu().numpy()

    @property
    def intercept_hidden_(self) -> np.ndarray:
        return self.rbm_.model_.hidden_bias.detach().cpu().numpy()

    @property
    def intercept_visible_(self) -> np.ndarray:
        return self.rbm_.model_.visible_bias.detach().cpu().numpy()

    @property
    def h_samples_(self) -> np.ndarray:
        chains = self.rbm_.trainer_.loss_module.chains
        if chains.numel() == 0:
            return np.zeros((0, self.n_components))
        est = self.rbm_
        with torch.no_grad(), est._seeded():
            return torch.bernoulli(est.model_.hidden_probs(chains)).cpu().numpy()

    @property
    def _n_features_out(self) -> int:
        return self.components_.shape[0]
