"""The one training loop: any (model, guide, objective) over a data set.

The trainer knows nothing about the family it trains. It owns the optimizer, the order of the
data, the random state and the checkpoints, all as explicit state (no Pyro parameter store),
so a run can be resumed exactly and later spread over processes.

Checkpoints are ``state_dict``s written atomically (temporary file, then rename) with
``torch.save`` and read back with ``torch.load(weights_only=True)``: tensors and plain Python
values only, never arbitrary pickled objects.
"""

from __future__ import annotations

import functools
import math
import pickle
import signal
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch

from ._utils import (
    LR_SCHEDULES,
    atomic_write,
    caller_stacklevel,
    check_choice,
    check_int,
    get_rng_state,
    no_grad,
    owner_module,
    resolve_device,
    set_rng_state,
    set_seed,
)
from .errors import CheckpointError, ConfigError, TrainingDivergedError

__all__ = ["Trainer", "save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "ppdgm.checkpoint/1"
#: data up to this size is gathered once per pass over it, not once per step
_SHUFFLE_COPY_BYTES = 256 * 2**20
_NO_BEST = {"step": None, "value": math.inf, "bad_evals": 0, "stopped": False}


class SGD(torch.optim.SGD):
    """:class:`torch.optim.SGD` (momentum, L2 weight decay) with a leaner step: torch's fused
    kernel when there is momentum (one operation), a ``foreach`` update otherwise, and no
    profiling wrapper. A small model's step (an RBM's, some 20 tensor operations) spends more
    time in ``torch.optim``'s per-step Python than in its arithmetic; the update is the same,
    ``buf = momentum * buf + grad; p -= lr * buf`` (the buffer starts at the first gradient),
    and so is the state dict."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    @no_grad
    def step(self, closure=None):
        if closure is not None:
            raise ConfigError("ppdgm's SGD takes no closure")
        for group in self.param_groups:
            params, grads = [], []
            for p in group["params"]:
                g = p.grad
                if g is not None:
                    params.append(p)
                    grads.append(g)
            if not params:
                continue
            momentum = group["momentum"]
            if momentum:
                # the buffers of the last fused step, while the parameters with gradients and
                # the optimizer's state (load_state_dict replaces it) are the same
                ids = tuple(map(id, params))
                last = self._last_fused.get(id(group))
                if last is not None and last[0] == ids and last[1] is self.state:
                    self._fused_step(group, params, grads, last[2], first=False)
                    continue
            states = [self.state[p] for p in params] if momentum else []
            bufs = [st.get("momentum_buffer") for st in states]
            first = bool(bufs) and all(buf is None for buf in bufs)
            if (
                momentum
                and (first or not any(buf is None for buf in bufs))
                and self._fusable(params, grads)
            ):
                # torch's fused kernel: decay, momentum and update in one operation
                if first:
                    bufs = [torch.empty_like(g) for g in grads]
                    for st, buf in zip(states, bufs, strict=True):
                        st["momentum_buffer"] = buf
                self._fused_step(group, params, grads, bufs, first)
                self._last_fused[id(group)] = (tuple(map(id, params)), self.state, bufs)
                continue
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            if momentum:  # buffers start at the gradient
                bufs = [
                    g.detach().clone() if buf is None else buf.mul_(momentum).add_(g)
                    for buf, g in zip(bufs, grads, strict=True)
                ]
                for st, buf in zip(states, bufs, strict=True):
                    st["momentum_buffer"] = buf
                grads = bufs
            torch._foreach_add_(params, grads, alpha=-group["lr"])
        return None

    # torch.optim wraps each optimizer class's step with profiling hooks unless marked
    step.hooked = True

    @property
    def _last_fused(self) -> dict:
        return self.__dict__.setdefault("_last_fused_cache", {})

    @staticmethod
    def _fused_step(group, params, grads, bufs, first: bool) -> None:
        torch._fused_sgd_(
            params,
            grads,
            bufs,
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            lr=group["lr"],
            dampening=0.0,
            nesterov=False,
            maximize=False,
            is_first_step=first,
        )

    @staticmethod
    def _fusable(params: list[torch.Tensor], grads: list[torch.Tensor]) -> bool:
        """Whether torch's fused SGD kernel takes these: dense floating tensors on one CPU or
        CUDA device, of one dtype (asked only when no fused step's buffers are remembered)."""
        device, dtype = params[0].device, params[0].dtype
        return (
            device.type in ("cpu", "cuda")
            and dtype.is_floating_point
            and all(
                t.device == device and t.dtype == dtype and t.layout == torch.strided
                for t in (*params, *grads)
            )
        )


OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": SGD,
    "rmsprop": torch.optim.RMSprop,
}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a checkpoint dict atomically; a previous file at ``path`` survives any failure."""
    state = {"format": CHECKPOINT_FORMAT, **state}
    with atomic_write(path, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; refuse anything else with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file there")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, which would run the file's code
        raise CheckpointError(
            f"{path}: not a ppdgm checkpoint: it holds pickled objects other than tensors and "
            "plain values, and loading those could run code, so it was refused"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({str(e).splitlines()[0][:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a ppdgm checkpoint (expected format {CHECKPOINT_FORMAT!r})"
        )
    return state


class _DeferredInterrupt:
    """Hold SIGINT/SIGTERM until the current step is complete, then raise KeyboardInterrupt."""

    def __init__(self):
        self.pending: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.pending is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.pending = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


class _CompiledLoss:
    """The loss traced once per input signature into a graph, parameters passed as inputs.

    Tracing removes the per-step cost of running the Pyro programs in Python. A program whose
    Python control flow depends on tensor values cannot be traced faithfully. Two guards keep
    such programs correct: a tracer warning raised outside torch's own code (where shape
    checks are harmless, the cache being keyed on shapes) means the signature runs eagerly;
    and the traced loss must equal the eager loss, at the same random state, on the batch it
    was traced on and on the next batch of that signature, or it runs eagerly from then on.
    """

    _TORCH_DIR = str(Path(torch.__file__).parent)

    def __init__(self, loss_fn: Callable, tensors: Sequence[torch.Tensor]):
        self.loss_fn = loss_fn
        self.tensors = list(tensors)
        self.cache: dict[tuple, Any] = {}
        self.unverified: set[tuple] = set()
        self.fallback_reason: str | None = None

    def __call__(self, *batch: torch.Tensor) -> torch.Tensor:
        key = tuple((tuple(b.shape), b.dtype, b.device) for b in batch)
        fn = self.cache.get(key)
        if fn is None:
            fn = self.cache[key] = self._trace(batch)
            if fn is not False:
                self.unverified.add(key)
        elif key in self.unverified:
            self.unverified.discard(key)
            if not self._agrees(fn, batch):
                fn = self.cache[key] = False
        if fn is False:
            return self.loss_fn(*batch)
        return fn(*batch, *self.tensors)

    def _trace(self, batch):
        nb = len(batch)
        loss_fn = self.loss_fn
        rng = get_rng_state()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                traced = torch.jit.trace(
                    lambda *a: loss_fn(*a[:nb]),
                    (*batch, *self.tensors),
                    check_trace=False,
                    strict=False,
                )
            for w in caught:
                if issubclass(w.category, torch.jit.TracerWarning) and not str(
                    w.filename
                ).startswith(self._TORCH_DIR):
                    return self._fail(
                        f"its control flow depends on tensor values at {Path(w.filename).name}:"
                        f"{w.lineno}"
                    )
            set_rng_state(rng)
            return traced if self._agrees(traced, batch) else False
        except Exception as e:  # noqa: BLE001 - any tracing failure means: run eagerly
            return self._fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        finally:
            set_rng_state(rng)

    def _agrees(self, traced, batch) -> bool:
        rng = get_rng_state()
        try:
            with torch.no_grad():
                eager = self.loss_fn(*batch)
                set_rng_state(rng)
                compiled = traced(*batch, *self.tensors)
        finally:
            set_rng_state(rng)
        if torch.allclose(eager, compiled, rtol=1e-4, atol=1e-5, equal_nan=True):
            return True
        self._fail(
            f"its traced loss {compiled.item():.6g} differs from the eager loss {eager.item():.6g}"
        )
        return False

    def _fail(self, reason: str):
        self.fallback_reason = reason
        warnings.warn(
            f"ppdgm: the training step runs uncompiled: {reason}", stacklevel=caller_stacklevel()
        )
        return False


class Trainer:
    """Fits the parameters of a (model, guide) pair by stochastic optimization of an objective.

    The inference-object protocol: :meth:`step` does one update from a batch, :meth:`run` loops
    over a data set with progress, evaluation and checkpoints, :meth:`state_dict` /
    :meth:`load_state_dict` expose every piece of state.

    Args:
        model, guide: the programs (bound methods of modules, or modules); the parameters are
            those of their modules.
        objective: called as ``objective(model, guide)`` to give a module whose forward is the
            loss summed over the batch (Pyro's ELBO classes qualify). The trainer minimizes the
            loss divided by the batch size.
        optimizer: ``adam``, ``adamw``, ``sgd`` or ``rmsprop`` (Adam and AdamW fused where
            PyTorch supports it for the parameters' device).
        lr: learning rate.
        batch_size: examples per step; the data are reshuffled every epoch and the last
            incomplete batch of an epoch is dropped.
        seed: seeds every generator (and the data order).
        device: ``auto``, ``cpu``, ``cuda`` or a :class:`torch.device`.
        compile: trace the loss into a graph per input shape (see :class:`_CompiledLoss`).
        clip_grad_norm: clip the gradient norm to this value if given.
        validate: keep Pyro's distribution argument checks on during steps (off by default:
            the data are validated once when loaded).
        weight_decay: the optimizer's weight decay (decoupled, as in AdamW, for ``adamw``; an
            L2 penalty's gradient for the others).
        lr_schedule: ``constant``; ``cosine``: within :meth:`run`, the learning rate at step
            ``t`` of ``T`` is ``lr * (1 + cos(pi * t / T)) / 2``; ``linear``: ``lr * (1 - t / T)``.
            Both decay to 0 at the last step, as functions of the step count alone, so a
            resumed run keeps the schedule.
        momentum: the momentum of ``sgd`` and ``rmsprop`` (refused for the others).
        num_threads: CPU threads torch's operations use during :meth:`run` (torch's setting is
            restored afterwards; it is process-wide meanwhile); None leaves torch's setting. On
            a small model (an RBM's tensors of a few thousand numbers) one thread is faster:
            its operations are too small for threads to pay, and they wait on any other busy
            core.

    An objective whose module gives its gradient in closed form
    (:meth:`~ppdgm.inference.ObjectiveModule.loss_and_gradients`, e.g. contrastive divergence
    on an RBM) is stepped without an autograd graph; the optimizer, schedule, checkpoints and
    history are the same.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        objective: Callable,
        *,
        optimizer: str = "adam",
        lr: float = 1e-3,
        batch_size: int = 128,
        seed: int = 0,
        device: str | torch.device = "auto",
        compile: bool = True,
        clip_grad_norm: float | None = None,
        validate: bool = False,
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        momentum: float = 0.0,
        num_threads: int | None = None,
    ):
        if num_threads is not None:
            check_int("num_threads", num_threads)
        check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        check_choice("optimizer", optimizer, OPTIMIZERS)
        if not lr > 0:
            raise ConfigError(f"lr must be positive, got {lr}")
        if not weight_decay >= 0:
            raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
        if momentum and optimizer not in ("sgd", "rmsprop"):
            raise ConfigError(f"momentum applies to sgd and rmsprop, not {optimizer}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.guide = model, guide
        self.device = resolve_device(device)
        self.seed = int(seed)
        set_seed(self.seed)
        self.loss_module = objective(model, guide)
        modules = {}
        for name, fn in (("model", model), ("guide", guide), ("objective", self.loss_module)):
            m = owner_module(fn)
            if m is not None and all(m is not other for other in modules.values()):
                modules[name] = m
        self.modules = modules
        for m in modules.values():
            m.to(self.device)
        self.params = _unique(
            p for m in modules.values() for p in m.parameters() if p.requires_grad
        )
        if not self.params:
            raise ConfigError("the model, guide and objective have no trainable parameters")
        self.lr = float(lr)
        self.num_threads = None if num_threads is None else int(num_threads)
        self.lr_schedule = lr_schedule
        self.weight_decay = float(weight_decay)
        self.batch_size = int(batch_size)
        self.clip_grad_norm = clip_grad_norm
        self.validate = validate
        tensors = _unique([*self.params, *(b for m in modules.values() for b in m.buffers())])
        players = getattr(self.loss_module, "players", None)
        #: the players of a several-player objective, in its order (None: one player)
        self.players: dict[str, _Player] | None = None
        if callable(players):
            defaults = {
                "optimizer": optimizer,
                "lr": self.lr,
                "weight_decay": self.weight_decay,
                "momentum": momentum,
            }
            self.players = _make_players(self.loss_module, self.params, defaults, tensors, compile)
            self._plan = list(self.loss_module.schedule())
            unknown = sorted(set(self._plan) - set(self.players))
            if not self._plan or unknown:
                raise ConfigError(
                    f"the objective's schedule {self._plan} must name its players "
                    f"({', '.join(self.players)})"
                )
            #: the player whose loss is the run's ``loss`` curve (the last one scheduled)
            self.main_player = self._plan[-1]
            self._after_update = getattr(self.loss_module, "after_update", None)
            self.optimizer = None
        else:
            self.optimizer = _make_optimizer(
                optimizer, self.params, lr, self.weight_decay, momentum
            )
            self._plan = None
        self._loss = _CompiledLoss(self.loss_module, tensors) if compile else self.loss_module
        self._closed_form = (
            self.loss_module.loss_and_gradients
            if getattr(self.loss_module, "closed_form", False)
            else None
        )
        self.step_count = 0
        self.history: dict[str, list] = {"step": [], "loss": [], "eval_step": [], "eval": []}
        self._data_gen = torch.Generator().manual_seed(self.seed)
        self._perm: torch.Tensor | None = None
        self._pos = 0
        self._shuffled: tuple | None = None  # (perm, data, data in perm's order)
        # The trainer's own random state: installed while run() runs, kept here in between, so
        # that several trainers (or other code) using the global generators do not interfere.
        self._rng = get_rng_state()
        self._in_run = False
        self._log_sum, self._log_count = 0.0, 0
        self._log_sums: dict[str, float] = {}
        #: the best evaluation: its step (None before any), validation loss, the evaluations
        #: since without improvement, and whether early stopping ended the run
        self.best: dict[str, Any] = dict(_NO_BEST)
        self._best_modules: dict[str, dict[str, torch.Tensor]] | None = None

    # -- one update ------------------------------------------------------------------------
    def loss(self, *batch: torch.Tensor) -> torch.Tensor:
        """The objective's loss on a batch, divided by the batch size."""
        with pyro.validation_enabled(self.validate):
            return self._loss(*batch) / batch[0].shape[0]

    @property
    def batches_per_step(self) -> int:
        """Batches one step consumes: one, or one per update in a several-player schedule."""
        return 1 if self._plan is None else len(self._plan)

    def _optimizers(self) -> list[tuple[torch.optim.Optimizer, float]]:
        """Every optimizer with its base learning rate."""
        if self.players is None:
            return [(self.optimizer, self.lr)]
        return [(p.optimizer, p.lr) for p in self.players.values()]

    def step(self, *batch: torch.Tensor) -> dict[str, float]:
        """One optimizer update on ``batch``; returns ``{"loss": value}``. The modules should be
        in training mode (:meth:`run` sees to it).

        With a several-player objective, one step is the objective's schedule (say five
        critic updates, then one generator update): ``batch`` is split into
        :attr:`batches_per_step` equal parts, one per update in order, and each update steps
        only that player's parameters with that player's optimizer. The result then also holds
        ``loss_<player>``, each player's mean loss over the step; ``loss`` is the last player's.

        Raises:
            TrainingDivergedError: the loss is NaN or infinite (the parameters of the update
                that saw it are left unchanged).
        """
        if self.players is not None:
            return self._players_step(batch)
        if self._closed_form is not None:
            done = self._closed_step(batch)
            if done is not None:
                return done
        loss = self.loss(*batch)
        value = self._checked(loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return self._update(value)

    @no_grad
    def _closed_step(self, batch) -> dict[str, float] | None:
        """The step from the objective's closed-form gradient, gradient and update with no
        autograd; None where the objective has none for these programs."""
        closed = self._closed_form(*batch, scale=1.0 / batch[0].shape[0])
        if closed is None:
            return None
        loss, grads = closed
        value = self._checked(loss)
        for p in self.params:
            p.grad = grads.get(p)
        return self._update(value)

    def _checked(self, loss: torch.Tensor) -> float:
        """The loss's value, refused if it is NaN or infinite."""
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"the loss became {value} at step {self.step_count + 1}; try a smaller learning "
                "rate or check the data",
                step=self.step_count + 1,
            )
        return value

    def _update(self, value: float) -> dict[str, float]:
        """The optimizer's update from the parameters' gradients."""
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad_norm)
        self.optimizer.step()
        self.step_count += 1
        return {"loss": value}

    def _players_step(self, batch: Sequence[torch.Tensor]) -> dict[str, float]:
        parts = [torch.tensor_split(b, len(self._plan)) for b in batch]
        sums: dict[str, list[float]] = {}
        with pyro.validation_enabled(self.validate):
            for i, name in enumerate(self._plan):
                chunk = [p[i] for p in parts]
                player = self.players[name]
                loss = player.loss(*chunk) / chunk[0].shape[0]
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingDivergedError(
                        f"the {name}'s loss became {value} at step {self.step_count + 1}; try a "
                        "smaller learning rate or check the data",
                        step=self.step_count + 1,
                    )
                player.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(player.params, self.clip_grad_norm)
                player.optimizer.step()
                if self._after_update is not None:
                    self._after_update(name)
                sums.setdefault(name, []).append(value)
        self.step_count += 1
        out = {f"loss_{k}": sum(v) / len(v) for k, v in sums.items()}
        return {"loss": out[f"loss_{self.main_player}"], **out}

    # -- data order ------------------------------------------------------------------------
    def _advance(self, n: int) -> tuple[int, int]:
        """Move the data order one batch on (a new random order when a pass ends); the batch's
        [start, stop) positions in the current order."""
        size = self.batch_size * self.batches_per_step
        size = n if size > n else size
        perm, pos = self._perm, self._pos
        if perm is None or perm.shape[0] != n or pos + size > n:
            self._perm = torch.randperm(n, generator=self._data_gen)
            pos = 0
        self._pos = pos + size
        return pos, pos + size

    def _next_batch(self, data: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The next batch of ``data`` in this pass's random order. Data up to
        ``_SHUFFLE_COPY_BYTES`` is gathered once per pass into a shuffled copy and each batch is
        a slice of it (one gather per pass instead of one per step, which is most of a small
        model's per-step data cost); larger data is gathered batch by batch. The batches are
        the same either way."""
        start, stop = self._advance(data[0].shape[0])
        cached = self._shuffled
        if cached is None or cached[0] is not self._perm or cached[1] is not data:
            copy = None
            if sum(d.numel() * d.element_size() for d in data) <= _SHUFFLE_COPY_BYTES:
                perm = self._perm.to(self.device)
                copy = tuple(d[perm] for d in data)
            cached = self._shuffled = (self._perm, data, copy)
        if cached[2] is None:
            idx = self._perm[start:stop].to(self.device)
            return tuple(d[idx] for d in data)
        return tuple(d[start:stop] for d in cached[2])

    # -- the loop --------------------------------------------------------------------------
    def run(
        self,
        data: torch.Tensor | Sequence[torch.Tensor],
        num_steps: int,
        *,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 500,
        eval_fn: Callable[[], dict[str, float]] | None = None,
        eval_every: int | None = None,
        log_every: int = 10,
        progress: bool = True,
        resume: bool = False,
        extra_state: Callable[[], dict[str, Any]] | None = None,
        best_path: str | Path | None = None,
        early_stopping: int | None = None,
    ) -> dict[str, list]:
        """Train until ``num_steps`` steps in total have been taken (or early stopping).

        Args:
            data: a tensor or NumPy array (N, ...) or a tuple of them sharing N (e.g.
                ``(x, y)``); batches are passed to the loss as ``loss(*batch)``.
            num_steps: the total number of steps (a resumed run continues up to it).
            checkpoint_path: where to save (atomically) every ``checkpoint_every`` steps, at the
                end, on Ctrl-C/SIGTERM and when the loss diverges (the last good state);
                required for ``resume``.
            eval_fn: called every ``eval_every`` steps with the random state set aside, so
                evaluation does not change the training trajectory; returns a dict of metrics
                whose first value is the validation loss (lower is better): it is the eval
                curve, it selects the best step and it drives early stopping.
            log_every: steps averaged into one point of the loss history (points at multiples
                of ``log_every``, and at the end of the run).
            resume: continue from ``checkpoint_path`` if it exists (the learning rate given to
                this trainer replaces the checkpoint's).
            extra_state: returns more plain values to store in each checkpoint (e.g. a config).
            best_path: where to save (atomically) the checkpoint of the best evaluation so far;
                :meth:`restore_best` also finds the best parameters in memory without it.
            early_stopping: stop after this many evaluations in a row without improvement of
                the validation loss (None: never).

        Returns:
            the history: ``step``/``loss`` (train loss per example) and ``eval_step``/``eval``.
            :attr:`best` says which step was best and whether the run stopped early.
        """
        if early_stopping is not None:
            check_int("early_stopping", early_stopping)
            if eval_fn is None or not eval_every:
                raise ConfigError("early_stopping needs an eval_fn and eval_every")
        data = _as_tensors(data)
        n = data[0].shape[0]
        if any(d.shape[0] != n for d in data):
            raise ConfigError(
                f"data tensors disagree on the number of examples: {[d.shape[0] for d in data]}"
            )
        data = tuple(d.to(self.device) for d in data)
        if resume:
            if checkpoint_path is None:
                raise ConfigError("resume needs a checkpoint path")
            if Path(checkpoint_path).exists():
                self.load_state_dict(load_checkpoint(checkpoint_path, self.device))
                for opt, lr in self._optimizers():
                    for group in opt.param_groups:
                        group["lr"] = lr
        extra = extra_state or (dict)

        def save(path=checkpoint_path):
            if path is not None:
                save_checkpoint(path, {**self.state_dict(), "extra": extra()})

        def stop() -> bool:
            if early_stopping is not None and self.best["bad_evals"] >= early_stopping:
                self.best["stopped"] = True
            return self.best["stopped"] and early_stopping is not None

        bar = _progress(progress, self.step_count, num_steps)
        t0 = t_last = time.perf_counter()
        step0 = self.step_count
        set_rng_state(self._rng)
        self._in_run = True
        self._set_training(True)
        threads = torch.get_num_threads()
        try:
            if self.num_threads is not None and self.device.type == "cpu":
                torch.set_num_threads(self.num_threads)
            with _DeferredInterrupt() as interrupt:
                while self.step_count < num_steps and not stop():
                    batch = self._next_batch(data)
                    self._schedule(num_steps)
                    try:
                        metrics = self.step(*batch)
                    except TrainingDivergedError:
                        save()  # the parameters are those of the last good step
                        raise
                    self._log(metrics, log_every, num_steps)
                    evaluated = None
                    if eval_fn is not None and eval_every and self.step_count % eval_every == 0:
                        evaluated = self._evaluate(eval_fn)
                        if evaluated and self.best["step"] == self.step_count:
                            save(best_path)
                    if bar is not None:
                        now = time.perf_counter()
                        if now - t_last > 0.2 or self.step_count == num_steps or evaluated:
                            post = {
                                "loss": f"{metrics['loss']:.3f}",
                                "step/s": f"{(self.step_count - step0) / (now - t0):.0f}",
                            }
                            if self.history["eval"]:
                                post["val"] = f"{self.history['eval'][-1]:.3f}"
                            bar.set_postfix(post, refresh=False)
                            bar.update(self.step_count - bar.n)
                            t_last = now
                    if checkpoint_path is not None and self.step_count % checkpoint_every == 0:
                        save()
                    if interrupt.pending is not None:
                        save()
                        raise KeyboardInterrupt
                save()
        finally:
            self._rng = get_rng_state()
            self._in_run = False
            self._shuffled = None  # the shuffled copy of the data is not kept past the run
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            if bar is not None:
                bar.close()
        return self.history

    def _schedule(self, num_steps: int) -> None:
        """Set the learning rate of the coming step from the schedule."""
        if self.lr_schedule == "constant":
            return
        if self.lr_schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * self.step_count / num_steps))
        else:
            factor = 1 - self.step_count / num_steps
        for opt, lr in self._optimizers():
            for group in opt.param_groups:
                group["lr"] = lr * factor

    def restore_best(self, best_path: str | Path | None = None) -> bool:
        """Load the parameters and buffers of the best evaluation into the modules.

        They come from memory when this trainer saw that evaluation, else from ``best_path``
        (a resumed run). Returns False, changing nothing, when there was no evaluation.
        """
        if self.best["step"] is None:
            return False
        states = self._best_modules
        if states is None:
            if best_path is None or not Path(best_path).is_file():
                return False
            states = load_checkpoint(best_path, self.device)["modules"]
        for k, m in self.modules.items():
            m.load_state_dict(states[k])
        return True

    def _log(self, metrics: dict[str, float], log_every: int, num_steps: int) -> None:
        """Average the losses over windows of ``log_every`` steps aligned on the step number;
        the last window of a run is recorded early if unaligned (and replaced if the run
        resumes). Each player's loss of a several-player objective has a curve of its own."""
        keys = ("loss",) if len(metrics) == 1 else [k for k in metrics if k.startswith("loss")]
        if not self._log_count:
            self._log_sums = dict.fromkeys(keys, 0.0)
        for k in keys:
            self._log_sums[k] = self._log_sums.get(k, 0.0) + metrics[k]
        self._log_sum = self._log_sums["loss"]
        self._log_count += 1
        aligned = self.step_count % log_every == 0
        if aligned or self.step_count == num_steps:
            self.history["step"].append(self.step_count)
            for k in keys:
                self.history.setdefault(k, []).append(self._log_sums[k] / self._log_count)
            if aligned:
                self._log_sum, self._log_count = 0.0, 0

    def _set_training(self, mode: bool) -> None:
        for m in self.modules.values():
            m.train(mode)

    def _evaluate(self, eval_fn):
        self._set_training(False)
        rng = get_rng_state()
        try:
            set_seed(self.seed + 1)
            out = eval_fn()
        finally:
            set_rng_state(rng)
            self._set_training(True)
        if out:
            value = float(next(iter(out.values())))
            self.history["eval_step"].append(self.step_count)
            self.history["eval"].append(value)
            if math.isfinite(value) and (self.best["step"] is None or value < self.best["value"]):
                self.best.update(step=self.step_count, value=value, bad_evals=0)
                self._best_modules = {
                    k: {n: t.detach().clone() for n, t in m.state_dict().items()}
                    for k, m in self.modules.items()
                }
            else:
                self.best["bad_evals"] += 1
        return out

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Parameters, buffers, optimizer, random states, data order, step and history."""
        return {
            "step": self.step_count,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizer": (
                self.optimizer.state_dict()
                if self.players is None
                else {k: p.optimizer.state_dict() for k, p in self.players.items()}
            ),
            "rng": get_rng_state() if self._in_run else self._rng,
            "log_window": [self._log_sum, self._log_count],
            "log_sums": dict(self._log_sums),
            "data_rng": self._data_gen.get_state(),
            "data_perm": self._perm,
            "data_pos": self._pos,
            "history": self.history,
            "best": dict(self.best),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (e.g. from :func:`load_checkpoint`)."""
        try:
            for k, m in self.modules.items():
                m.load_state_dict(state["modules"][k])
            if self.players is None:
                self.optimizer.load_state_dict(state["optimizer"])
            else:
                for k, p in self.players.items():
                    p.optimizer.load_state_dict(state["optimizer"][k])
            self._rng = state["rng"]
            if self._in_run:
                set_rng_state(self._rng)
            self._data_gen.set_state(state["data_rng"])
            self._perm, self._pos = state["data_perm"], int(state["data_pos"])
            self.step_count = int(state["step"])
            self.history = {k: list(v) for k, v in state["history"].items()}
            self.best = {**_NO_BEST, **state.get("best", {})}
            self._best_modules = None
            self._log_sum, self._log_count = (
                float(state["log_window"][0]),
                int(state["log_window"][1]),
            )
            self._log_sums = {
                k: float(v) for k, v in state.get("log_sums", {"loss": self._log_sum}).items()
            }
            if (
                self._log_count
                and self.history["step"]
                and self.history["step"][-1] == self.step_count
            ):
                # an unaligned last window, recorded early: the resumed run completes it
                self.history["step"].pop()
                for k in self._log_sums:
                    self.history[k].pop()
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(
                f"the checkpoint does not fit this model and trainer ({str(e).splitlines()[0][:200]})"
            ) from None


def _make_optimizer(
    name: str,
    params: list[torch.Tensor],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    betas: Sequence[float] | None = None,
) -> torch.optim.Optimizer:
    """The optimizer; Adam and AdamW use PyTorch's fused kernels where the parameters allow
    (a quarter of a small model's step time on CPU goes to the optimizer otherwise)."""
    cls = OPTIMIZERS[name]
    if name in ("sgd", "rmsprop"):
        if betas is not None:
            raise ConfigError(f"betas apply to adam and adamw, not {name}")
        return cls(params, lr=lr, weight_decay=weight_decay, momentum=momentum)
    if momentum:
        raise ConfigError(f"momentum applies to sgd and rmsprop, not {name}")
    extra = {} if betas is None else {"betas": tuple(float(b) for b in betas)}
    if name in ("adam", "adamw") and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    ):
        try:
            return cls(params, lr=lr, weight_decay=weight_decay, fused=True, **extra)
        except (RuntimeError, TypeError, ValueError):
            pass
    return cls(params, lr=lr, weight_decay=weight_decay, **extra)


class _Player:
    """One player of a several-player objective: its parameters, optimizer and loss."""

    def __init__(self, name, params, optimizer, lr, loss):
        self.name, self.params, self.optimizer, self.lr, self.loss = (
            name,
            params,
            optimizer,
            lr,
            loss,
        )


_PLAYER_KEYS = {"params", "optimizer", "lr", "betas", "weight_decay", "momentum", "compile"}


def _make_players(module, params, defaults, tensors, compile) -> dict[str, _Player]:
    """The players that an objective module's ``players()`` describes: each a dict with its
    ``params`` and optionally its own ``optimizer``, ``lr``, ``betas`` (Adam's),
    ``weight_decay``, ``momentum`` and ``compile`` (False: its loss cannot be traced, e.g. a
    gradient penalty's); the trainer's settings fill in the rest. Every trainable parameter
    belongs to exactly one player, and ``module.player_loss(name, *batch)`` is its loss."""
    specs = module.players()
    if not isinstance(specs, dict) or not specs:
        raise ConfigError("an objective's players() must give a non-empty dict of players")
    owner: dict[int, str] = {}
    players = {}
    for name, spec in specs.items():
        unknown = sorted(set(spec) - _PLAYER_KEYS)
        if unknown:
            raise ConfigError(f"player {name!r}: unknown settings {unknown}")
        own = _unique(p for p in spec["params"] if p.requires_grad)
        if not own:
            raise ConfigError(f"player {name!r} has no trainable parameters")
        for p in own:
            if id(p) in owner:
                raise ConfigError(
                    f"a parameter belongs to two players, {owner[id(p)]!r} and {name!r}"
                )
            owner[id(p)] = name
        settings = {**defaults, **{k: v for k, v in spec.items() if k in defaults}}
        check_choice(f"optimizer for player {name!r}:", settings["optimizer"], OPTIMIZERS)
        lr = float(settings["lr"])
        opt = _make_optimizer(
            settings["optimizer"],
            own,
            lr,
            float(settings["weight_decay"]),
            float(settings["momentum"]),
            betas=spec.get("betas"),
        )
        loss = functools.partial(module.player_loss, name)
        if compile and spec.get("compile", True):
            loss = _CompiledLoss(loss, tensors)
        players[name] = _Player(name, own, opt, lr, loss)
    if any(id(p) not in owner for p in params):
        missing = sum(id(p) not in owner for p in params)
        raise ConfigError(f"{missing} trainable parameter(s) belong to no player of the objective")
    return players


def _as_tensors(data) -> tuple[torch.Tensor, ...]:
    """The training data as a tuple of tensors: a tensor or array, or a tuple/list of them."""
    parts = (data,) if torch.is_tensor(data) or isinstance(data, np.ndarray) else data
    if not isinstance(parts, (tuple, list)) or not parts:
        raise ConfigError(
            "data must be a tensor or NumPy array (N, ...), or a non-empty tuple of them, got "
            f"{type(data).__name__}"
        )
    out = []
    for i, d in enumerate(parts):
        if isinstance(d, np.ndarray):
            if d.dtype.kind not in "biuf":
                raise ConfigError(f"data[{i}]: expected a numeric array, got dtype {d.dtype}")
            d = torch.from_numpy(np.ascontiguousarray(d))
            if d.is_floating_point():
                d = d.to(torch.get_default_dtype())
        if not torch.is_tensor(d):
            raise ConfigError(
                f"data[{i}]: expected a tensor or NumPy array, got {type(d).__name__}"
            )
        if d.ndim == 0:
            raise ConfigError(f"data[{i}]: expected an array of examples (N, ...), got a scalar")
        out.append(d)
    return tuple(out)


def _unique(tensors) -> list[torch.Tensor]:
    seen, out = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _progress(enabled: bool, start: int, total: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=start,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        leave=True,
        mininterval=0.2,
    )
