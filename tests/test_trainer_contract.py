"""The trainer's contract on a deterministic objective: data order, the loss per example, the
history's averaging, evaluation, checkpoints, clipping, optimizers and every refusal."""

import math
import re
import warnings

import numpy as np
import pytest
import torch
from pyro.infer.util import is_validation_enabled
from torch import nn

import ppdgm.train as train_module
from ppdgm.errors import CheckpointError, ConfigError, TrainingDivergedError
from ppdgm.train import OPTIMIZERS, Trainer, load_checkpoint


class Quadratic(nn.Module):
    """loss(x) = sum_n (x_n - theta)^2: deterministic, its gradient known."""

    def __init__(self, record=True):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(()))
        self.record = record
        self.batches = []
        self.training_flags = []

    def forward(self, x, *rest):
        if self.record:
            self.batches.append(x.detach().clone())
            self.training_flags.append(self.training)
        return ((x - self.theta) ** 2).sum()


def _model(*args):
    pass


def _trainer(quad=None, **kwargs):
    quad = quad if quad is not None else Quadratic()
    opts = dict(batch_size=4, seed=0, device="cpu", compile=False, optimizer="sgd", lr=0.1)
    opts.update(kwargs)
    return Trainer(_model, _model, lambda model, guide: quad, **opts), quad


DATA = torch.arange(10, dtype=torch.float32)


def test_each_epoch_is_a_permutation_in_full_batches():
    tr, quad = _trainer()
    tr.run(DATA, 6, progress=False)
    batches = [b.long().tolist() for b in quad.batches]
    assert all(len(b) == 4 for b in batches)
    assert quad.training_flags == [True] * 6  # the modules train in training mode
    for epoch in (batches[0:2], batches[2:4], batches[4:6]):
        seen = epoch[0] + epoch[1]
        assert len(set(seen)) == 8  # no example twice in an epoch; the last 2 are dropped
    assert batches[0:2] != batches[2:4]  # reshuffled every epoch
    # the data order is the trainer's seed's, whatever the global generator does
    torch.manual_seed(99)
    again, quad2 = _trainer()
    again.run(DATA, 6, progress=False)
    assert [b.long().tolist() for b in quad2.batches] == batches
    other, quad3 = _trainer(seed=1)
    other.run(DATA, 2, progress=False)
    assert [b.long().tolist() for b in quad3.batches] != batches[:2]


@pytest.mark.parametrize("copy_limit", [0, 2**30])
def test_gathering_per_pass_or_per_step_gives_the_same_batches(monkeypatch, tmp_path, copy_limit):
    # small data is shuffled once per pass and sliced; data over the limit is gathered per
    # step: the batches, across passes and across a resume, are the same either way
    pairs = (DATA, torch.arange(10, 20, dtype=torch.float32))
    ref, quad_ref = _trainer()
    ref.run(pairs, 9, progress=False)
    monkeypatch.setattr(train_module, "_SHUFFLE_COPY_BYTES", copy_limit)
    part, quad_part = _trainer()
    part.run(pairs, 4, progress=False, checkpoint_path=tmp_path / "c.pt")
    assert part._shuffled is None  # the shuffled copy is not kept past a run
    rest, quad_rest = _trainer(quad=ViewRecorder())
    rest.run(pairs, 9, progress=False, checkpoint_path=tmp_path / "c.pt", resume=True)
    got = [b.tolist() for b in quad_part.batches + quad_rest.batches]
    assert got == [b.tolist() for b in quad_ref.batches]
    # a slice of the shuffled copy is a view; a gathered batch is not
    assert quad_rest.views == [bool(copy_limit)] * 5


class ViewRecorder(Quadratic):
    def __init__(self):
        super().__init__()
        self.views = []

    def forward(self, x, *rest):
        self.views.append(x._base is not None)
        return super().forward(x, *rest)


def test_a_batch_larger_than_the_data_is_the_whole_data():
    tr, quad = _trainer(batch_size=64)
    tr.run(DATA, 2, progress=False)
    assert [sorted(b.long().tolist()) for b in quad.batches] == [list(range(10))] * 2


def test_loss_is_per_example_and_the_step_is_plain_sgd():
    tr, quad = _trainer(lr=0.1, batch_size=4)
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    assert tr.loss(x).item() == pytest.approx((x**2).sum().item() / 4)
    out = tr.step(x)
    assert out == {"loss": pytest.approx(50 / 4)}
    # gradient of mean (x - theta)^2 at 0 is -2 mean(x) = -6: theta = 0.6
    assert quad.theta.item() == pytest.approx(0.6)
    assert tr.step_count == 1


def test_num_threads_holds_during_the_run_and_is_restored():
    class ThreadRecorder(Quadratic):
        def __init__(self, fail_at=None):
            super().__init__(record=False)
            self.threads, self.fail_at = [], fail_at

        def forward(self, x, *rest):
            self.threads.append(torch.get_num_threads())
            loss = super().forward(x)
            return loss * float("nan") if len(self.threads) == self.fail_at else loss

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tr, quad = _trainer(ThreadRecorder(), num_threads=1)
        tr.run(DATA, 3, progress=False)
        assert quad.threads == [1, 1, 1] and torch.get_num_threads() == 2
        tr, quad = _trainer(ThreadRecorder(fail_at=2), num_threads=1)
        with pytest.raises(TrainingDivergedError):
            tr.run(DATA, 3, progress=False)
        assert quad.threads == [1, 1] and torch.get_num_threads() == 2  # restored on error
        tr, quad = _trainer(ThreadRecorder())  # None: torch's own setting
        tr.run(DATA, 2, progress=False)
        assert quad.threads == [2, 2]
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="num_threads"):
        _trainer(num_threads=0)


def test_weight_decay_reaches_the_optimizer():
    # SGD: theta -= lr * (grad + wd * theta); from theta = 1 on data all 1 the gradient is 0
    quad = Quadratic()
    with torch.no_grad():
        quad.theta.fill_(1.0)
    tr, _ = _trainer(quad, weight_decay=0.5, lr=0.1)
    tr.step(torch.ones(4))
    assert quad.theta.item() == pytest.approx(1 - 0.1 * 0.5)
    assert tr.weight_decay == 0.5
    # AdamW decays decoupled from the (zero) gradient: theta *= 1 - lr * wd
    quad = Quadratic()
    with torch.no_grad():
        quad.theta.fill_(1.0)
    tr, _ = _trainer(quad, optimizer="adamw", weight_decay=0.5, lr=0.1)
    tr.step(torch.ones(4))
    assert quad.theta.item() == pytest.approx(1 - 0.1 * 0.5)
    assert _trainer()[0].optimizer.param_groups[0]["weight_decay"] == 0.0


def test_history_averages_windows_aligned_on_the_step():
    tr, quad = _trainer()
    losses = []
    orig = tr.step

    def step(*batch):
        out = orig(*batch)
        losses.append(out["loss"])
        return out

    tr.step = step
    hist = tr.run(DATA, 7, progress=False, log_every=3)
    assert hist["step"] == [3, 6, 7]
    np.testing.assert_allclose(
        hist["loss"], [np.mean(losses[0:3]), np.mean(losses[3:6]), losses[6]], rtol=1e-6
    )
    # run on: the window of steps 7-9 is completed (the early point at 7 stays in memory; a
    # run resumed from a checkpoint replaces it, see test_train)
    tr.run(DATA, 9, progress=False, log_every=3)
    assert tr.history["step"] == [3, 6, 7, 9]
    assert tr.history["loss"][-1] == pytest.approx(np.mean(losses[6:9]), rel=1e-6)


def test_evaluation_is_periodic_in_eval_mode_and_leaves_the_trajectory_alone():
    def run(with_eval):
        quad = Quadratic(record=False)
        modes = []

        def eval_fn():
            modes.append(quad.training)
            torch.rand(1000)  # uses the global generator: must not change training
            return {"val": float(quad.theta.detach()) ** 2, "other": 1.0}

        tr, _ = _trainer(quad, optimizer="adam", lr=0.05)
        tr.run(
            torch.randn(50, generator=torch.Generator().manual_seed(0)) + 2,
            12,
            progress=False,
            eval_fn=eval_fn if with_eval else None,
            eval_every=5,
        )
        return tr, quad, modes

    tr, quad, modes = run(True)
    _, quad_plain, _ = run(False)
    assert tr.history["eval_step"] == [5, 10]
    assert modes == [False, False] and quad.training  # eval mode only while evaluating
    # the first value returned is the validation loss: the curve and the best step follow it
    assert len(tr.history["eval"]) == 2 and tr.history["eval"][1] != 1.0
    assert tr.best["step"] == tr.history["eval_step"][int(np.argmin(tr.history["eval"]))]
    assert quad.theta.item() == quad_plain.theta.item()


def test_checkpoints_are_written_every_n_steps_and_at_the_end(tmp_path, monkeypatch):
    saved = []
    real = train_module.save_checkpoint

    def recording(path, state):
        saved.append((path.name, state["step"]))
        return real(path, state)

    monkeypatch.setattr(train_module, "save_checkpoint", recording)
    tr, _ = _trainer()
    tr.run(
        DATA,
        7,
        progress=False,
        checkpoint_path=tmp_path / "c.pt",
        checkpoint_every=3,
        extra_state=lambda: {"config": {"a": 1}},
    )
    assert saved == [("c.pt", 3), ("c.pt", 6), ("c.pt", 7)]
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["extra"] == {"config": {"a": 1}} and state["format"] == "ppdgm.checkpoint/1"


def test_resume_continues_to_the_total_and_takes_the_new_learning_rate(tmp_path):
    tr, _ = _trainer(optimizer="adam", lr=0.01)
    tr.run(DATA, 4, progress=False, checkpoint_path=tmp_path / "c.pt")
    again, quad = _trainer(optimizer="adam", lr=0.5)
    again.run(DATA, 6, progress=False, checkpoint_path=tmp_path / "c.pt", resume=True)
    assert again.step_count == 6 and len(quad.batches) == 2
    assert [g["lr"] for g in again.optimizer.param_groups] == [0.5]
    # no checkpoint yet: a fresh start
    fresh, quad = _trainer()
    fresh.run(DATA, 2, progress=False, checkpoint_path=tmp_path / "none.pt", resume=True)
    assert fresh.step_count == 2 and (tmp_path / "none.pt").exists()
    with pytest.raises(ConfigError, match="^resume needs a checkpoint path$"):
        fresh.run(DATA, 3, progress=False, resume=True)


def test_clip_grad_norm_bounds_each_update():
    tr, quad = _trainer(lr=1.0, clip_grad_norm=1e-3)
    tr.step(torch.full((4,), 100.0))
    assert abs(quad.theta.item()) == pytest.approx(1e-3, rel=1e-5)
    free, quad = _trainer(lr=1.0)
    free.step(torch.full((4,), 100.0))
    assert quad.theta.item() == pytest.approx(200.0)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_by_name(name):
    tr, _ = _trainer(optimizer=name, lr=0.03)
    assert type(tr.optimizer) is OPTIMIZERS[name]
    assert tr.optimizer.param_groups[0]["lr"] == 0.03
    if name in ("adam", "adamw"):
        assert tr.optimizer.param_groups[0]["fused"] is True  # on the CPU, fused kernels
    assert set(OPTIMIZERS) == {"adam", "adamw", "sgd", "rmsprop"}


def test_validation_of_distribution_arguments_is_the_callers_choice():
    seen = []

    class Check(Quadratic):
        def forward(self, x, *rest):
            seen.append(is_validation_enabled())
            return super().forward(x)

    for validate in (False, True):
        tr, _ = _trainer(Check(), validate=validate)
        tr.step(DATA[:4])
    assert seen == [False, True]


def test_diverged_loss_names_the_step_and_leaves_the_parameters():
    tr, quad = _trainer()
    tr.step(DATA[:4])
    before = quad.theta.item()
    with pytest.raises(
        TrainingDivergedError,
        match=r"^the loss became nan at step 2; try a smaller learning rate or check the data$",
    ):
        tr.step(torch.tensor([1.0, float("nan"), 0.0, 0.0]))
    assert quad.theta.item() == before and tr.step_count == 1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"optimizer": "lbfgs"},
            r"^unknown optimizer 'lbfgs'; choose one of adam, adamw, sgd, rms",
        ),
        ({"lr": 0.0}, r"^lr must be positive, got 0\.0$"),
        ({"lr": float("nan")}, r"^lr must be positive, got nan$"),
        ({"batch_size": 0}, r"^batch_size must be >= 1, got 0$"),
        ({"weight_decay": -0.1}, r"^weight_decay must be >= 0, got -0\.1$"),
        ({"weight_decay": float("nan")}, r"^weight_decay must be >= 0, got nan$"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        _trainer(**kwargs)


def test_check_choice_returns_a_known_value_and_names_an_unknown_one():
    from ppdgm._utils import check_choice

    assert check_choice("mode", "b", ("a", "b")) == "b"
    assert check_choice("centre", None, ("A", None)) is None
    with pytest.raises(ConfigError, match=r"^unknown mode 'c'; choose one of a, b$"):
        check_choice("mode", "c", iter(("a", "b")))
    with pytest.raises(ValueError, match=r"^unknown guide 'x'; choose one of a or a callable$"):
        check_choice("guide", "x", ["a"], more=" or a callable")


def test_a_pair_without_parameters_is_refused():
    with pytest.raises(
        ConfigError, match=r"^the model, guide and objective have no trainable parameters$"
    ):
        Trainer(_model, _model, lambda m, g: lambda x: x.sum(), device="cpu")


@pytest.mark.parametrize(
    "data,message",
    [
        (
            [],
            r"^data must be a tensor or NumPy array \(N, \.\.\.\), or a non-empty tuple of "
            r"them, got list$",
        ),  # fmt: skip
        ("abc", r"got str$"),
        (torch.tensor(3.0), r"^data\[0\]: expected an array of examples \(N, \.\.\.\), got a "),
        (np.array(["a", "b"]), r"^data\[0\]: expected a numeric array, got dtype <U1$"),
        ((DATA, [1, 2]), r"^data\[1\]: expected a tensor or NumPy array, got list$"),
        ((DATA, DATA[:3]), r"^data tensors disagree on the number of examples: \[10, 3\]$"),
    ],
)
def test_bad_data_is_refused_by_name(data, message):
    tr, _ = _trainer()
    with pytest.raises(ConfigError, match=message):
        tr.run(data, 1, progress=False)


def test_numpy_data_becomes_tensors_of_the_default_dtype():
    tr, quad = _trainer(batch_size=10)
    labels = np.arange(10)
    tr.run((np.arange(10, dtype=np.float64), labels), 1, progress=False)
    assert quad.batches[0].dtype == torch.get_default_dtype()
    got = []

    class Both(Quadratic):
        def forward(self, x, y):
            got.append(y)
            return super().forward(x)

    tr, _ = _trainer(Both(), batch_size=10)
    tr.run((np.arange(10.0), labels), 1, progress=False)
    assert got[0].dtype == torch.int64  # integer labels stay integers


class _Scaled(Quadratic):
    scale = 1.0

    def forward(self, x, *rest):
        return super().forward(x) * self.scale  # a Python float baked into the trace


def test_a_stale_trace_falls_back_to_eager():
    quad = _Scaled(record=False)
    tr, _ = _trainer(quad, compile=True)
    tr.step(DATA[:4])
    quad.scale = 3.0
    with pytest.warns(UserWarning, match=r"runs uncompiled: its traced loss .* differs from the "):
        tr.step(DATA[4:8])
    expected = 3.0 * (DATA[:4] - quad.theta.detach()).pow(2).mean().item()
    assert tr.loss(DATA[:4]).item() == pytest.approx(expected)


def test_restore_best_without_an_evaluation_changes_nothing(tmp_path):
    tr, quad = _trainer()
    tr.run(DATA, 3, progress=False)
    before = quad.theta.item()
    assert tr.restore_best() is False and tr.restore_best(tmp_path / "none.pt") is False
    assert quad.theta.item() == before


def test_progress_bar_shows_the_steps_loss_and_validation(capsys):
    tr, _ = _trainer()
    tr.run(DATA, 6, eval_fn=lambda: {"v": 0.25}, eval_every=3)
    err = capsys.readouterr().err
    assert "train" in err and "6/6" in err and "loss=" in err and "val=0.250" in err
    rates = [int(r) for r in re.findall(r"step/s=(\d+)", err)]
    assert rates and min(rates) > 0  # steps per second since the run started
    tr.run(DATA, 8, progress=False)
    assert capsys.readouterr().err == ""


def test_early_stopping_must_be_a_positive_integer():
    tr, _ = _trainer()
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="early_stopping"):
            tr.run(DATA, 3, progress=False, eval_fn=lambda: {"v": 0.0}, eval_every=1,
                   early_stopping=bad)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr.run(DATA, 3, progress=False, eval_fn=lambda: {"v": math.pi}, eval_every=1,
               early_stopping=1)  # fmt: skip
    assert tr.best["stopped"] and tr.step_count == 2


# -- what mutation testing showed unpinned -----------------------------------------------------
def test_a_fallback_warning_points_at_the_users_line():
    quad = _Scaled(record=False)
    tr, _ = _trainer(quad, compile=True)
    tr.step(DATA[:4])
    quad.scale = 3.0
    with pytest.warns(UserWarning, match="runs uncompiled") as caught:
        tr.step(DATA[4:8])
    assert caught[0].filename == __file__


def test_a_nan_loss_at_the_first_traced_step_is_no_reason_to_run_eagerly():
    class NaNLoss(Quadratic):
        def forward(self, x, *rest):
            return super().forward(x) * float("nan")

    tr, _ = _trainer(NaNLoss(record=False), compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "runs uncompiled": traced and eager NaN agree
        with pytest.raises(TrainingDivergedError, match="became nan at step 1"):
            tr.step(DATA[:4])
    assert tr._loss.fallback_reason is None


def test_one_trace_per_batch_shape():
    tr, _ = _trainer(Quadratic(record=False), compile=True)
    for x in (DATA[:4], DATA[:4] + 1, DATA[:6], DATA[:4, None]):
        tr.loss(x.reshape(x.shape[0], *x.shape[1:]))
    assert len(tr._loss.cache) == 3


def test_state_outside_a_run_is_the_trainers_own_random_state():
    tr, _ = _trainer()
    tr.run(DATA, 2, progress=False)
    own = tr.state_dict()["rng"]
    torch.manual_seed(123)  # other code uses the global generators between runs
    after = tr.state_dict()["rng"]
    assert torch.equal(own["torch"], after["torch"]) and own["python"] == after["python"]
    assert not torch.equal(after["torch"], torch.get_rng_state())


def test_restore_best_after_a_resume_reads_the_file_or_changes_nothing(tmp_path):
    def eval_fn():
        return {"v": 1.0}

    tr, _ = _trainer()
    tr.run(DATA, 4, progress=False, checkpoint_path=tmp_path / "c.pt", eval_fn=eval_fn,
           eval_every=2, best_path=tmp_path / "b.pt")  # fmt: skip
    resumed, quad = _trainer()
    resumed.run(DATA, 4, progress=False, checkpoint_path=tmp_path / "c.pt", resume=True)
    assert resumed.best["step"] == 2  # from the checkpoint; the parameters are not in memory
    before = quad.theta.item()
    assert resumed.restore_best(None) is False and resumed.restore_best(tmp_path / "no.pt") is False
    assert quad.theta.item() == before
    assert resumed.restore_best(tmp_path / "b.pt") is True
    assert quad.theta.item() == pytest.approx(
        load_checkpoint(tmp_path / "b.pt")["modules"]["objective"]["theta"].item()
    )


def test_checkpoints_from_before_best_was_saved_still_load(tmp_path):
    tr, _ = _trainer()
    tr.run(DATA, 2, progress=False, checkpoint_path=tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt")
    del state["best"]
    other, _ = _trainer()
    other.load_state_dict(state)
    assert other.best == {"step": None, "value": math.inf, "bad_evals": 0, "stopped": False}
    state["modules"]["objective"] = {"nope": torch.zeros(1)}
    with pytest.raises(
        CheckpointError,
        match=r"^the checkpoint does not fit this model and trainer \(Error\(s\) in loading "
        r"state_dict for Quadratic:\)$",
    ):
        other.load_state_dict(state)


def test_corrupt_checkpoint_message_carries_the_reason(tmp_path):
    (tmp_path / "c.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(
        CheckpointError, match=r"c\.pt: truncated or corrupt checkpoint \((?!None\)).+\)$"
    ):
        load_checkpoint(tmp_path / "c.pt")


def test_default_cadences_checkpoint_every_500_and_log_every_10(tmp_path, monkeypatch):
    saved = []
    real = train_module.save_checkpoint
    monkeypatch.setattr(
        train_module,
        "save_checkpoint",
        lambda path, state: (saved.append(state["step"]), real(path, state)),
    )
    tr, _ = _trainer(Quadratic(record=False))
    hist = tr.run(DATA, 1000, progress=False, checkpoint_path=tmp_path / "c.pt")
    assert saved == [500, 1000, 1000]  # the periodic ones, then the final save
    assert hist["step"] == list(range(10, 1001, 10))


def test_an_epoch_of_exactly_whole_batches_uses_every_batch():
    tr, quad = _trainer(batch_size=4)
    tr.run(DATA[:8], 4, progress=False)
    batches = [sorted(b.long().tolist()) for b in quad.batches]
    assert sorted(batches[0] + batches[1]) == list(range(8))
    assert sorted(batches[2] + batches[3]) == list(range(8))


def test_restore_best_from_memory_gives_the_best_parameters():
    values = iter([3.0, 1.0, 2.0])
    tr, quad = _trainer(Quadratic(record=False))
    at_eval = []

    def eval_fn():
        at_eval.append(quad.theta.item())
        return {"v": next(values)}

    tr.run(DATA, 6, progress=False, eval_fn=eval_fn, eval_every=2)
    assert tr.best["step"] == 4 and quad.theta.item() != at_eval[1]
    assert tr.restore_best() is True
    assert quad.theta.item() == at_eval[1]


def test_early_stopping_needs_both_an_eval_fn_and_eval_every():
    tr, _ = _trainer()
    with pytest.raises(ConfigError, match=r"^early_stopping must be a positive integer, got 0$"):
        tr.run(DATA, 3, progress=False, eval_fn=lambda: {"v": 0.0}, eval_every=1,
               early_stopping=0)  # fmt: skip
    for eval_fn, eval_every in ((lambda: {"v": 0.0}, None), (None, 2)):
        with pytest.raises(ConfigError, match=r"^early_stopping needs an eval_fn and eval_every$"):
            tr.run(DATA, 3, progress=False, eval_fn=eval_fn, eval_every=eval_every,
                   early_stopping=2)  # fmt: skip


class _Exact(nn.Module):
    """A loss module whose forward takes exactly the batch: the trace must pass it nothing else."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return ((x - self.theta) ** 2).sum()


def test_the_traced_step_passes_the_loss_only_the_batch():
    tr, _ = _trainer(_Exact(), compile=True)
    for _ in range(3):
        tr.step(DATA[:4])
    assert tr._loss.fallback_reason is None
    assert [fn is not False for fn in tr._loss.cache.values()] == [True]


def test_a_loss_that_cannot_be_traced_runs_eagerly_every_step_after():
    class ValueDependent(Quadratic):
        def forward(self, x, *rest):
            loss = super().forward(x)
            return loss * 2 if bool(x.sum() > 10) else loss

    tr, _ = _trainer(ValueDependent(record=False), compile=True)
    with pytest.warns(UserWarning, match="control flow depends on tensor values"):
        tr.step(DATA[:4])
    for _ in range(3):  # the same shape again: eager, no new trace and no new warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tr.step(DATA[4:8])
    assert list(tr._loss.cache.values()) == [False]


@pytest.mark.parametrize(
    "error,reason",
    [
        (ValueError("cannot trace this\nsecond line"), "ValueError: cannot trace this"),
        (RuntimeError(), "RuntimeError: "),
    ],  # fmt: skip
)
def test_a_tracing_failure_is_the_reason_given(error, reason):
    class Fails(Quadratic):
        def forward(self, x, *rest):
            if torch.jit.is_tracing():
                raise error
            return super().forward(x)

    tr, _ = _trainer(Fails(record=False), compile=True)
    with pytest.warns(UserWarning, match="runs uncompiled"):
        tr.step(DATA[:4])
    assert tr._loss.fallback_reason == reason


def test_progress_bar_is_named_counts_steps_and_resumes_where_it_was(tmp_path, capsys):
    tr, _ = _trainer()
    tr.run(DATA, 4, checkpoint_path=tmp_path / "c.pt")
    err = capsys.readouterr().err.replace("\r", "\n")
    # tqdm's own rate ("511.38step/s,"), not the "step/s=" of the postfix
    assert re.search(r"^train: 100%.*\| 4/4 \[.*[0-9]step/s[,\]]", err, re.MULTILINE)
    again, _ = _trainer()
    again.run(DATA, 6, checkpoint_path=tmp_path / "c.pt", resume=True)
    err = capsys.readouterr().err.replace("\r", "\n")
    first = next(line for line in err.splitlines() if line.startswith("train:"))
    assert "4/6" in first  # starts at the resumed step, not at 0


def test_defaults_modules_and_parameters_of_a_model_guide_pair():
    from ppdgm._utils import resolve_device
    from ppdgm.guides import AmortizedNormalGuide
    from ppdgm.inference import ELBO
    from ppdgm.models import VAEModel, make_likelihood
    from ppdgm.nn import MLP

    model = VAEModel(MLP(2, [4], 3), 2, make_likelihood("bernoulli", (3,)), (3,))
    guide = AmortizedNormalGuide(MLP(3, [4], 4), 2)
    tr = Trainer(model.model, guide.guide, ELBO())
    assert (tr.lr, tr.batch_size, tr.seed, tr.validate) == (1e-3, 128, 0, False)
    assert tr.device == resolve_device("auto") and isinstance(tr._loss, train_module._CompiledLoss)
    assert list(tr.modules) == ["model", "guide", "objective"]
    expected = list(model.parameters()) + list(guide.parameters())
    assert len(tr.params) == len(expected) and all(
        a is b for a, b in zip(tr.params, expected, strict=True)
    )
    # one module serving as both model and guide is one module, its parameters counted once
    both = Trainer(model.model, model.model, ELBO(), device="cpu", batch_size=1)
    assert list(both.modules) == ["model", "objective"] and len(both.params) == len(
        list(model.parameters())
    )
    for name in ("sgd", "rmsprop"):
        opt = Trainer(model.model, guide.guide, ELBO(), optimizer=name).optimizer
        assert not opt.param_groups[0].get("fused")  # fused kernels only for Adam and AdamW


def test_a_program_bound_to_a_plain_object_has_no_module():
    class Holder:
        def model(self, x):
            pass

    quad = Quadratic(record=False)
    tr = Trainer(Holder().model, _model, lambda m, g: quad, device="cpu", compile=False)
    assert list(tr.modules) == ["objective"]


def test_state_before_any_run_is_the_trainers_own():
    tr, _ = _trainer()
    own = tr.state_dict()["rng"]["torch"]
    torch.manual_seed(5)
    assert torch.equal(tr.state_dict()["rng"]["torch"], own)
    assert not torch.equal(own, torch.get_rng_state())


def test_a_module_shared_by_model_and_guide_is_trained_once():
    quad = Quadratic(record=False)

    class Guide(nn.Module):
        def __init__(self, shared):
            super().__init__()
            self.shared = shared  # the same parameters as the objective's
            self.own = nn.Parameter(torch.zeros(2))

        def guide(self, *args):
            pass

    g = Guide(quad)
    tr = Trainer(_model, g.guide, lambda m, gd: quad, device="cpu", compile=False)
    assert len(tr.params) == 2 and {id(p) for p in tr.params} == {id(quad.theta), id(g.own)}


def test_resume_at_an_aligned_step_keeps_the_whole_history(tmp_path):
    tr, _ = _trainer()
    tr.run(DATA, 20, progress=False, log_every=10, checkpoint_path=tmp_path / "c.pt")
    other, _ = _trainer()
    other.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    assert other.history["step"] == [10, 20] and other.history["loss"] == tr.history["loss"]


def test_a_trace_that_disagrees_with_the_eager_loss_at_once_is_dropped():
    class Counting(Quadratic):
        calls = 0

        def forward(self, x, *rest):
            self.calls += 1  # a Python value the trace bakes in: the traced loss goes stale
            return super().forward(x) * self.calls

    tr, _ = _trainer(Counting(record=False), compile=True)
    with pytest.warns(UserWarning, match=r"its traced loss .* differs from the eager loss"):
        tr.step(DATA[:4])
    assert list(tr._loss.cache.values()) == [False]
    tr.step(DATA[4:8])  # eager from now on
