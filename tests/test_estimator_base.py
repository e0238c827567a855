"""The shared estimator base itself (``ppdgm/estimators/base.py``): the registry, the
hyperparameters read off the constructor and its docstring, data settings and checks, what
``fit`` records, the seeded queries, the metrics, and save/load refusals. The contract test
(tests/test_contract.py) runs the same base through every family; these pin its parts one
by one on the cheapest family (FVSBN) and on small stand-ins."""

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ppdgm import FVSBN, MADE, NADE, VAE, Glow, RealNVP
from ppdgm.data import load_data
from ppdgm.errors import CheckpointError, ConfigError, DataValueError, ShapeMismatchError
from ppdgm.estimators import base
from ppdgm.estimators.base import (
    Estimator,
    ExactLikelihoodEstimator,
    check_hidden_dims,
    load_estimator,
    register,
)
from ppdgm.train import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(0)
    x = load_data("digits-binary").x_train[:300].astype(np.float64)
    return x[rng.permutation(len(x))]


@pytest.fixture(scope="module")
def fvsbn(binary):
    return FVSBN(seed=0, device="cpu").fit(binary[:200], num_steps=6, batch_size=50)


# -- the registry ------------------------------------------------------------------------------
class _Stand(Estimator):
    """A stand-in family.

    Args:
        width, depth: the net's size; this description runs on
            to a second line.
        seed: the seed.
        A note at the entries' level ends the entry before it,
            and its own continuation goes nowhere.
    then text outside the section

    Returns:
        nothing: not an argument.
    """

    family = "stand-in"
    summary = "a stand-in"
    saved_defaults = {"depth": 1}

    def __init__(self, *, width: int = 4, depth: int = 2, seed: int = 0, **kwargs):
        self.width, self.depth, self.seed = width, depth, seed


def test_register_adds_a_family_once_and_refuses_a_nameless_or_doubled_one(monkeypatch):
    monkeypatch.setattr(base, "REGISTRY", {})
    assert register(_Stand) is _Stand and base.REGISTRY == {"stand-in": _Stand}
    assert register(_Stand) is _Stand and base.REGISTRY == {"stand-in": _Stand}

    class Other(_Stand):
        pass

    with pytest.raises(TypeError, match=r"^family 'stand-in' is registered twice$"):
        register(Other)
    for attrs in ({"family": ""}, {"summary": ""}):
        nameless = type("Nameless", (_Stand,), attrs)
        with pytest.raises(
            TypeError, match=r"^Nameless needs a family name and a one-line summary$"
        ):
            register(nameless)
    assert base.REGISTRY == {"stand-in": _Stand}


def test_load_estimator_refuses_a_checkpoint_of_no_known_estimator(fvsbn, tmp_path):
    fvsbn.save(tmp_path / "m.pt")
    state = load_checkpoint(tmp_path / "m.pt")
    reads = []
    real_load = base.load_checkpoint
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base, "load_checkpoint", lambda p: reads.append(p) or real_load(p))
        back = load_estimator(tmp_path / "m.pt", device="cpu")
    assert isinstance(back, FVSBN) and back.device == "cpu"
    assert reads == [tmp_path / "m.pt"]  # the file is read once
    broken = {**state, "modules": {}}
    save_checkpoint(tmp_path / "broken.pt", broken)
    with pytest.raises(
        CheckpointError, match=r"broken\.pt: the checkpoint does not describe a FVSBN"
    ):
        load_estimator(tmp_path / "broken.pt")
    state["extra"]["estimator"] = "Nope"
    save_checkpoint(tmp_path / "other.pt", state)
    with pytest.raises(
        CheckpointError, match=r"other\.pt: not a checkpoint of a ppdgm model \(estimator 'Nope'\)$"
    ):
        load_estimator(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "bare.pt", {"modules": {}})
    with pytest.raises(CheckpointError, match=r"\(estimator None\)$"):
        load_estimator(tmp_path / "bare.pt")


# -- hyperparameters ---------------------------------------------------------------------------
def test_parameters_are_the_constructors_named_arguments_and_their_docs():
    assert _Stand._param_names() == ["width", "depth", "seed"]  # not self, not **kwargs
    assert _Stand.param_defaults() == {"width": 4, "depth": 2, "seed": 0}
    assert _Stand.param_docs() == {
        "width": "the net's size; this description runs on to a second line.",
        "depth": "the net's size; this description runs on to a second line.",
        "seed": "the seed.",
    }

    class Undocumented(_Stand):
        pass

    Undocumented.__doc__ = "No argument section here."
    assert Undocumented.param_docs() == {}
    docs = FVSBN.param_docs()
    assert docs["seed"] == "seeds initialization, training and sampling."
    assert set(docs) == {"seed", "device", "compile"}  # not the Attributes section


def test_saved_parameters_become_constructor_arguments():
    got = _Stand.params_from_saved({"width": [3, 4], "seed": 2, "gone": 1})
    # lists back to tuples; names the constructor lacks dropped; an older file's missing
    # hyperparameter takes the value its runs used (saved_defaults), not today's default
    assert got == {"width": (3, 4), "seed": 2, "depth": 1}
    assert type(got["width"]) is tuple
    assert _Stand.params_from_saved({"depth": 5})["depth"] == 5


def test_a_refused_set_params_restores_every_value():
    est = MADE(dropout=0.1, weight_decay=0.0, seed=1)
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\), got 1\.0"):
        est.set_params(seed=7, weight_decay=0.5, dropout=1.0)
    assert (est.seed, est.weight_decay, est.dropout) == (1, 0.0, 0.1)
    with pytest.raises(ConfigError, match=r"^weight_decay must be >= 0, got -0\.1$"):
        est.set_params(weight_decay=-0.1)
    with pytest.raises(ConfigError, match=r"weight_decay must be >= 0, got nan"):
        est.set_params(weight_decay=float("nan"))
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\), got -0\.5"):
        est.set_params(dropout=-0.5)
    assert est.set_params(dropout=0.0, weight_decay=0.0).get_params()["dropout"] == 0.0
    with pytest.raises(ConfigError, match="unknown parameter 'nope'") as info:
        est.set_params(seed=3, nope=1)
    assert est.seed == 1 and str(info.value).endswith(", ".join(MADE._param_names()))


def test_repr_shows_the_parameters_that_differ_from_the_defaults():
    assert repr(MADE()) == "MADE()"
    assert repr(MADE(num_orderings=2, seed=3)) == "MADE(num_orderings=2, seed=3)"
    est = _Stand(width=np.array([1, 2]))  # an array has no single truth value: shown
    assert repr(est) == "_Stand(width=array([1, 2]))"


# -- data ----------------------------------------------------------------------------------------
def test_data_settings_cover_every_split_and_check_each_by_name():
    vae = VAE(likelihood="auto")
    binary, grey = np.zeros((4, 3)), np.full((2, 3), 7.0)
    assert vae.data_settings(binary)["likelihood"] == "bernoulli"
    together = vae.data_settings(binary, grey)
    assert together["likelihood"] != "bernoulli"
    # splits of different shapes: their values together
    assert vae.data_settings(binary, np.full((1, 1, 1, 3), 7.0)) == together
    strict = VAE(likelihood="bernoulli")
    with pytest.raises(DataValueError, match="^X: the bernoulli likelihood needs binary"):
        strict.data_settings(grey)
    with pytest.raises(DataValueError, match="^val.csv"):
        strict.data_settings(binary, grey, source="val.csv")
    with pytest.raises(DataValueError, match="^test.npz: .*non-finite"):
        vae.data_settings(binary, np.array([[np.nan, 0.0, 1.0]]), source="test.npz")


def test_queries_before_fit_say_so():
    for call in (
        lambda e: e.check_data(np.zeros((2, 64))),
        lambda e: e.score_samples(np.zeros((2, 64))),
        lambda e: e.save("never.pt"),
        lambda e: e.sample_metrics(np.zeros((2, 64)), "test"),
    ):
        with pytest.raises(
            ConfigError, match=r"^this FVSBN is not fitted yet; call fit\(X\) first$"
        ):
            call(FVSBN())


def test_vector_families_refuse_images_and_single_dimensions():
    est = ExactLikelihoodEstimator.__new__(FVSBN)
    assert est._vector_dim((5,)) == 5 and est._vector_dim((2,)) == 2
    with pytest.raises(ConfigError, match=r"FVSBN models vectors \(N, D\); got examples of shape"):
        est._vector_dim((1, 2, 2))
    with pytest.raises(ConfigError, match=r"^FVSBN needs at least 2 dimensions, got 1$"):
        est._vector_dim((1,))


@pytest.mark.parametrize("dims", [(), [], (0,), (8, -1), (True,), (8.0,), "8", 8, None])
def test_check_hidden_dims_refuses_anything_but_positive_integers(dims):
    with pytest.raises(ConfigError, match=r"^hidden_dims must be positive integers, got "):
        check_hidden_dims(dims)


def test_check_hidden_dims_takes_tuples_and_lists():
    assert check_hidden_dims((8, 4)) is None and check_hidden_dims([1]) is None


# -- fitting -------------------------------------------------------------------------------------
def test_fit_records_what_it_did(fvsbn, binary):
    est = fvsbn
    assert est.last_step_ == est.selected_step_ == 6 and est.stopped_early_ is False
    assert est.best_step_ is None and est.best_val_loss_ is None
    assert est.data_shape_ == (64,) and est.settings_ == {}
    assert est.device_ == torch.device("cpu")
    trainer = est.trainer_
    assert (trainer.lr, trainer.batch_size, trainer.lr_schedule) == (1e-3, 50, "constant")
    assert trainer.seed == 0 and trainer.weight_decay == 0.0
    assert trainer._loss is not trainer.loss_module  # compile=True: traced
    assert all(not m.training for m in est._modules().values())  # queries in eval mode
    assert list(est._modules()) == ["model"]


def test_fit_defaults_come_from_the_family(binary):
    class Tuned(FVSBN):
        default_lr, default_batch_size, default_lr_schedule = 0.25, 17, "cosine"

    est = Tuned(seed=2, device="cpu", compile=False).fit(binary[:40], num_steps=2)
    trainer = est.trainer_
    assert (trainer.lr, trainer.batch_size, trainer.lr_schedule) == (0.25, 17, "cosine")
    assert trainer.seed == 2 and trainer._loss is trainer.loss_module  # not traced
    assert (
        Tuned(seed=2).fit(binary[:40], num_steps=2, lr_schedule="linear").trainer_.lr_schedule
        == "linear"
    )


def test_positive_weight_decay_means_adamw():
    assert FVSBN()._trainer_options() == {}  # a family without weight decay: plain Adam
    x = (np.arange(40)[:, None] % np.arange(2, 10)[None, :] == 0).astype(float)
    trainer = MADE(weight_decay=0.01, hidden_dims=(8,), device="cpu").fit(x, num_steps=1).trainer_
    assert trainer.weight_decay == 0.01 and type(trainer.optimizer).__name__ == "AdamW"
    assert MADE(weight_decay=0.0)._trainer_options() == {}
    assert MADE(weight_decay=0.01)._trainer_options() == {
        "optimizer": "adamw",
        "weight_decay": 0.01,
    }


def test_validation_every_twentieth_of_the_run_and_the_best_step(binary):
    est = FVSBN(seed=0, device="cpu").fit(
        binary[:200], num_steps=40, batch_size=50, lr=0.3, X_val=binary[200:]
    )
    steps = est.history_["eval_step"]
    assert est.best_step_ < 40  # at this learning rate the best is not the last
    assert steps == list(range(2, 41, 2))  # 40 // 20
    losses = est.history_["eval"]
    best = int(np.argmin(losses))
    assert est.best_step_ == steps[best] and est.best_val_loss_ == pytest.approx(losses[best])
    assert est.selected_step_ == est.best_step_ and est.last_step_ == 40
    # the restored parameters are the best step's
    assert -est.score(binary[200:]) == pytest.approx(losses[best], rel=1e-5)
    last = FVSBN(seed=0, device="cpu").fit(
        binary[:200],
        num_steps=40,
        batch_size=50,
        lr=0.3,
        X_val=binary[200:],
        restore_best=False,
        eval_every=8,
    )
    assert last.selected_step_ == 40 and last.best_step_ in (8, 16, 24, 32, 40)
    assert last.history_["eval_step"] == [8, 16, 24, 32, 40]
    assert -last.score(binary[200:]) == pytest.approx(last.history_["eval"][-1], rel=1e-5)
    short = FVSBN(seed=0, device="cpu").fit(binary[:50], num_steps=30, X_val=binary[200:])
    assert short.history_["eval_step"] == list(range(1, 31))  # 30 // 20: every step


def test_early_stopping_is_recorded(binary):
    # at a huge learning rate the validation loss only gets worse after the first steps
    est = FVSBN(seed=0, device="cpu").fit(
        binary[:200], num_steps=100, lr=50.0, X_val=binary[200:], eval_every=1, early_stopping=3
    )
    assert est.stopped_early_ is True and est.last_step_ == est.best_step_ + 3
    assert est.selected_step_ == est.best_step_


def test_x_test_is_the_deprecated_name_of_x_val(binary):
    message = (
        r"^fit\(X_test=\.\.\.\) is deprecated: pass validation data as X_val and keep the "
        r"test data for the final metrics$"
    )
    with pytest.warns(FutureWarning, match=message) as record:
        est = FVSBN(seed=0, device="cpu").fit(binary[:100], num_steps=4, X_test=binary[200:])
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert est.best_step_ is not None and len(est.history_["eval"]) == 4
    with pytest.raises(ConfigError, match=r"^give X_val only \(X_test is its deprecated name\)$"):
        FVSBN().fit(binary[:10], num_steps=2, X_val=binary[:5], X_test=binary[:5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FVSBN(seed=0, device="cpu").fit(binary[:50], num_steps=2, X_val=binary[200:])


def test_fit_refuses_bad_data_and_settings_by_name(binary):
    with pytest.raises(ConfigError, match=r"^early_stopping must be a positive integer, got 0$"):
        FVSBN().fit(binary[:10], num_steps=2, X_val=binary[:5], early_stopping=0)
    with pytest.raises(ConfigError, match=r"^early_stopping needs validation data \(X_val\)$"):
        FVSBN().fit(binary[:10], num_steps=2, early_stopping=3)
    with pytest.raises(ConfigError, match=r"^num_steps must be a positive integer, got 0$"):
        FVSBN().fit(binary[:10], num_steps=0)
    with pytest.raises(DataValueError, match="^X_val: the bernoulli likelihood needs binary"):
        FVSBN(device="cpu").fit(binary[:10], num_steps=2, X_val=np.full((3, 64), 0.5))
    with pytest.raises(DataValueError, match="^X: the bernoulli likelihood needs binary"):
        FVSBN(device="cpu").fit(np.full((3, 64), 2.0), num_steps=2)
    with pytest.raises(DataValueError, match="^X: non-finite value nan"):
        FVSBN(device="cpu").fit(np.full((3, 64), np.nan), num_steps=2)


def test_fits_defaults_reach_the_trainer(binary, monkeypatch):
    from ppdgm.train import Trainer

    seen = {}

    class Stop(Exception):
        pass

    def run(self, data, num_steps, **options):
        seen.update(options, num_steps=num_steps, data=data)
        raise Stop

    monkeypatch.setattr(Trainer, "run", run)
    with pytest.raises(Stop):
        FVSBN(device="cpu").fit(binary[:10])
    assert seen.pop("extra_state")()["estimator"] == "FVSBN"
    data = seen.pop("data")
    assert data.dtype == torch.float32 and data.shape == (10, 64)
    assert seen == {
        "num_steps": 3000,
        "checkpoint_path": None,
        "checkpoint_every": 500,
        "eval_fn": None,
        "eval_every": 150,  # 3000 // 20
        "progress": False,
        "resume": False,
        "best_path": None,
        "early_stopping": None,
    }
    seen.clear()
    est = FVSBN(device="cpu")
    with pytest.raises(Stop):
        est.fit(
            binary[:10],
            num_steps=7,
            X_val=binary[10:20],
            progress=True,
            resume=True,
            checkpoint_path="c.pt",
            checkpoint_every=3,
            best_path="b.pt",
            early_stopping=2,
            extra_state={"note": 1},
        )
    assert seen.pop("extra_state")() == {**est._extra(), "note": 1}
    val = est._val_loss(torch.as_tensor(binary[10:20], dtype=torch.float32))
    assert seen.pop("eval_fn")() == {"val_loss": pytest.approx(val)}
    del seen["data"]
    assert seen == {
        "num_steps": 7,
        "checkpoint_path": "c.pt",
        "checkpoint_every": 3,
        "eval_every": 1,  # at least every step
        "progress": True,
        "resume": True,
        "best_path": "b.pt",
        "early_stopping": 2,
    }


def test_fit_takes_tensors(binary):
    # even tensors that require a gradient (NumPy cannot convert those itself)
    a = FVSBN(seed=0, device="cpu").fit(torch.tensor(binary[:60], requires_grad=True), num_steps=3)
    b = FVSBN(seed=0, device="cpu").fit(binary[:60], num_steps=3)
    x = torch.tensor(binary[200:210], dtype=torch.float64, requires_grad=True)
    np.testing.assert_array_equal(a.score_samples(x), b.score_samples(binary[200:210]))
    np.testing.assert_array_equal(a.check_data(x), binary[200:210])


def test_check_data_names_its_source(fvsbn):
    bad = np.full((2, 64), np.nan)
    with pytest.raises(DataValueError, match=r"^data\.csv: non-finite value nan"):
        fvsbn.check_data(bad, "data.csv")
    with pytest.raises(DataValueError, match=r"^X: non-finite value nan"):
        fvsbn.check_data(bad)
    with pytest.raises(DataValueError, match=r"^X: the bernoulli likelihood"):
        fvsbn.score_samples(np.full((2, 64), 3.0))


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
def test_fit_refuses_cuda_where_there_is_none(binary):
    with pytest.raises(
        ConfigError, match=r"^device 'cuda' was asked for but CUDA is not available"
    ):
        FVSBN(device="cuda").fit(binary[:10], num_steps=1)


def test_a_resumed_fit_restores_the_best_step_of_the_earlier_run(binary, tmp_path):
    files = {"checkpoint_path": tmp_path / "c.pt", "best_path": tmp_path / "b.pt"}
    val = binary[200:]
    first = FVSBN(seed=0, device="cpu", compile=False).fit(
        binary[:200], num_steps=20, lr=0.05, X_val=val, eval_every=5, **files
    )
    best = first.best_step_
    # the resumed steps at a huge learning rate only make the validation loss worse
    est = FVSBN(seed=0, device="cpu", compile=False).fit(
        binary[:200], num_steps=30, lr=50.0, X_val=val, eval_every=5, resume=True, **files
    )
    assert est.last_step_ == 30 and est.best_step_ == best <= 20
    assert est.selected_step_ == best  # from the best checkpoint: this run never held it
    assert -est.score(val) == pytest.approx(est.best_val_loss_, rel=1e-5)


# -- queries ---------------------------------------------------------------------------------------
def test_queries_are_seeded_and_leave_the_callers_random_state(fvsbn):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = fvsbn.sample(5)
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(first, fvsbn.sample(5, seed=0))  # the estimator's seed
    assert not np.array_equal(first, fvsbn.sample(5, seed=1))
    fvsbn.score_samples(np.zeros((2, 64)))
    assert torch.equal(torch.get_rng_state(), before)
    with pytest.raises(ConfigError, match=r"^num_samples must be a positive integer, got 0$"):
        fvsbn.sample(0)


def test_default_metrics_are_the_likelihood(fvsbn, binary):
    x = binary[200:230]
    got = fvsbn.metrics(x, "test")
    nll = -float(np.mean(fvsbn.score_samples(x)))
    assert got == {
        "test_nll": pytest.approx(nll),
        "test_bits_per_dim": pytest.approx(nll / (64 * math.log(2))),
        "num_test": 30,
    }
    assert type(got["num_test"]) is int
    assert set(fvsbn.metrics(x, "val")) == {"val_nll", "val_bits_per_dim", "num_val"}


def test_sample_metrics_compare_as_many_samples_as_rows(fvsbn, binary):
    x = binary[200:240]
    got = fvsbn.sample_metrics(x, "test", max_samples=25, seed=2)
    assert got["test_quality_samples"] == 25
    assert all(
        k.startswith("test_") and isinstance(v, float)
        for k, v in got.items()
        if k != "test_quality_samples"
    )
    assert got == fvsbn.sample_metrics(x[:25], "test", seed=2)
    assert got != fvsbn.sample_metrics(x[:25], "test", seed=3)
    with pytest.raises(ConfigError, match="max_samples"):
        fvsbn.sample_metrics(x, "test", max_samples=0)


# -- persistence -----------------------------------------------------------------------------------
def test_a_checkpoint_holds_the_selected_step_and_the_configuration(binary, tmp_path):
    est = FVSBN(seed=5, device="cpu").fit(
        binary[:100], num_steps=10, X_val=binary[200:], eval_every=5
    )
    est.save(tmp_path / "m.pt")
    state = load_checkpoint(tmp_path / "m.pt")
    assert state["step"] == est.selected_step_ and list(state["modules"]) == ["model"]
    assert state["extra"] == {
        "estimator": "FVSBN",
        "family": "fvsbn",
        "params": {"seed": 5, "compile": True},  # the device is the loader's choice
        "data_shape": [64],
        "settings": {},
    }
    back = FVSBN.load(tmp_path / "m.pt", device="cpu")
    assert back.selected_step_ == est.selected_step_ and back.best_step_ is None
    assert back.history_ == {k: list(v) for k, v in est.history_.items()}
    assert back.seed == 5 and back.device == "cpu" and back.data_shape_ == (64,)
    assert all(not m.training for m in back._modules().values())


def test_load_refuses_a_checkpoint_that_does_not_describe_the_family(fvsbn, tmp_path):
    fvsbn.save(tmp_path / "m.pt")
    state = load_checkpoint(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"m\.pt: not a NADE checkpoint$"):
        NADE.load(tmp_path / "m.pt")
    for broken in (
        {**state, "modules": {}},
        {**state, "extra": {**state["extra"], "data_shape": [63]}},
        {**state, "extra": {**state["extra"], "params": {"seed": "x", "compile": True}}},
    ):
        save_checkpoint(tmp_path / "b.pt", broken)
        with pytest.raises(
            CheckpointError, match=r"b\.pt: the checkpoint does not describe a FVSBN \("
        ):
            FVSBN.load(tmp_path / "b.pt", device="cpu")


def test_labels_are_checked_against_the_fitted_classes():
    est = _Stand()
    with pytest.raises(ConfigError, match=r"^this _Stand is conditional: give the labels y_val$"):
        est._labels(None, 3, "y_val")
    np.testing.assert_array_equal(est._labels([0, 5, 2], 3, "y"), [0, 5, 2])  # not fitted
    with pytest.raises(ShapeMismatchError, match=r"^y: 2 labels for 3 examples$"):
        est._labels([0, 1], 3, "y")
    est.settings_ = {"num_classes": 3}
    np.testing.assert_array_equal(est._labels(torch.tensor([2, 0]), 2, "y"), [2, 0])
    with pytest.raises(ConfigError, match=r"^y: label 3 is outside the fitted classes 0\.\.2$"):
        est._labels([0, 3], 2, "y")
    assert len(est._labels(np.zeros(0, dtype=int), 0, "y")) == 0


def test_figures_are_the_samples_and_the_curves(fvsbn, monkeypatch, tmp_path):
    from ppdgm import viz

    calls = {}
    monkeypatch.setattr(viz, "plot_samples", lambda *a, **k: calls.setdefault("samples", (a, k)))
    monkeypatch.setattr(viz, "plot_curves", lambda *a, **k: calls.setdefault("curves", (a, k)))
    data = SimpleNamespace(image_shape=(8, 8), x_test=np.zeros((3, 64)))
    fvsbn.plot_figures(data, tmp_path)
    (x, image), options = calls["samples"]
    np.testing.assert_array_equal(x, fvsbn.sample(64, seed=0))  # the default seed
    assert image == (8, 8)
    assert options == {"path": tmp_path / "samples.png", "title": "samples", "reference": None}
    (history,), options = calls["curves"]
    assert history is fvsbn.history_
    assert options == {"path": tmp_path / "curves.png", "best_step": None}  # no validation

    calls.clear()
    plane = SimpleNamespace(
        x_train=np.random.default_rng(0).normal(size=(64, 2)),
        x_test=np.random.default_rng(1).normal(size=(5, 2)),
    )
    flow = RealNVP(num_transforms=2, hidden_dims=(8,), device="cpu").fit(
        plane.x_train, num_steps=4, X_val=plane.x_test, eval_every=2
    )
    plane.image_shape = None
    flow.plot_figures(plane, tmp_path, seed=4)
    (x, image), options = calls["samples"]
    assert image is None and options["reference"] is plane.x_test
    np.testing.assert_array_equal(x, flow.sample(64, seed=4))
    assert calls["curves"][1]["best_step"] == flow.selected_step_ == flow.best_step_
    images = SimpleNamespace(image_shape=(1, 2, 4), x_test=np.zeros((3, 1, 2, 4)))
    calls.clear()
    glow = Glow(num_levels=1, steps_per_level=1, hidden=4, device="cpu")
    glow.fit(np.random.default_rng(0).integers(0, 4, (16, 1, 2, 4)), num_steps=2)
    glow.plot_figures(images, tmp_path)
    assert calls["samples"][0][1] is None  # image samples are already images


def test_a_checkpoint_keeps_the_settings_the_data_gave(tmp_path):
    x = np.random.default_rng(0).integers(0, 5, size=(40, 3)).astype(float)
    flow = RealNVP(num_transforms=2, hidden_dims=(8,), device="cpu").fit(x, num_steps=2)
    assert flow.settings_ == {"dequantize": "uniform", "num_levels": 5}
    flow.save(tmp_path / "f.pt")
    back = RealNVP.load(tmp_path / "f.pt", device="cpu")
    assert back.settings_ == flow.settings_
    np.testing.assert_array_equal(back.score_samples(x), flow.score_samples(x))


def test_a_checkpoint_without_settings_step_or_history_loads_with_none(fvsbn, tmp_path):
    fvsbn.save(tmp_path / "m.pt")
    state = load_checkpoint(tmp_path / "m.pt")
    del state["extra"]["settings"], state["step"], state["history"]
    save_checkpoint(tmp_path / "old.pt", state)
    old = FVSBN.load(tmp_path / "old.pt", device="cpu")
    assert old.settings_ == {} and old.selected_step_ == 0 and old.history_ == {}


# -- a conditional family (fitted on (x, y) pairs) ---------------------------------------------
class _ClassGaussians(torch.nn.Module):
    """x | y ~ Normal(mean_y, 1) in D dimensions, one learned mean per class."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.means = torch.nn.Parameter(torch.zeros(num_classes, dim))

    def log_prob(self, x, y):
        return torch.distributions.Normal(self.means[y], 1.0).log_prob(x).sum(-1)

    def model(self, x, y):
        import pyro
        import pyro.distributions as dist

        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(self.means[y], 1.0).to_event(1), obs=x)


class _Conditional(ExactLikelihoodEstimator):
    """Class-conditional Gaussians: a conditional family on the shared base."""

    family, summary = "conditional", "class-conditional Gaussians"

    def __init__(self, *, seed: int = 0, device: str = "cpu", compile: bool = False):
        self.seed, self.device, self.compile = seed, device, compile

    def uses_labels(self) -> bool:
        return True

    def _build(self, data_shape, num_classes):
        self.model_ = _ClassGaussians(num_classes, data_shape[0])

    def _val_loss(self, x, y):
        with torch.no_grad():
            return -self.model_.log_prob(x, y).mean().item()

    def sample(self, num_samples, *, seed=None, y=None):
        with self._seeded(seed):
            y = torch.randint(len(self.model_.means), (num_samples,)) if y is None else y
            means = self.model_.means.detach()[torch.as_tensor(y)]
            return (means + torch.randn_like(means)).numpy()


@pytest.fixture
def pairs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=90)
    centres = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    return centres[y] + rng.normal(size=(90, 2)), y, centres


def test_a_conditional_family_is_fitted_on_pairs_and_validated_with_their_labels(pairs):
    x, y, centres = pairs
    est = _Conditional().fit(
        x[:60], y[:60], num_steps=300, lr=0.05, batch_size=30, X_val=x[60:], y_val=y[60:]
    )
    assert est.settings_ == {"num_classes": 3} and est.model_.means.shape == (3, 2)
    means = est.model_.means.detach().numpy()
    np.testing.assert_allclose(means, centres, atol=0.6)  # each mean learned from its class
    val = est._val_loss(torch.as_tensor(x[60:], dtype=torch.float32), torch.as_tensor(y[60:]))
    assert est.best_val_loss_ == pytest.approx(val, rel=1e-6)  # scored with the val labels
    # about the entropy of N(0, I) in 2-D (2.84): each point scored under its own class's mean
    assert val < 3.5


def test_a_conditional_family_names_missing_or_mismatched_labels(pairs):
    x, y, _ = pairs
    with pytest.raises(ConfigError, match=r"^this _Conditional is conditional: give the labels y$"):
        _Conditional().fit(x, num_steps=1)
    with pytest.raises(ShapeMismatchError, match=r"^y: 89 labels for 90 examples$"):
        _Conditional().fit(x, y[:-1], num_steps=1)
    with pytest.raises(ConfigError, match=r"give the labels y_val$"):
        _Conditional().fit(x, y, num_steps=1, X_val=x[:5])
    with pytest.raises(ShapeMismatchError, match=r"^y_val: 4 labels for 5 examples$"):
        _Conditional().fit(x, y, num_steps=1, X_val=x[:5], y_val=y[:4])
    with pytest.raises(ConfigError, match=r"^y_val: label 2 is outside the fitted classes 0\.\.1$"):
        _Conditional().fit(x[y < 2], y[y < 2], num_steps=1, X_val=x[:5], y_val=np.full(5, 2))


def test_refitting_a_conditional_family_takes_the_new_classes(pairs):
    x, y, _ = pairs
    est = _Conditional().fit(x[y < 2], y[y < 2], num_steps=2)
    assert est.settings_ == {"num_classes": 2}
    est.fit(x, y, num_steps=2)  # labels 0..2: the old fit's two classes do not limit them
    assert est.settings_ == {"num_classes": 3} and est.model_.means.shape == (3, 2)


def test_sample_metrics_pass_their_parts_on(pairs, monkeypatch):
    import ppdgm.evaluation as evaluation
    import ppdgm.evaluation.features as features

    x, y, _ = pairs
    est = _Conditional(seed=5).fit(x, y, num_steps=2)
    calls = []

    def read(z):  # the data as the model reads them
        return est.check_data(z).astype(np.float64)

    def record(name, result):
        def fn(*args, **kwargs):
            calls.append((name, args, kwargs))
            return result(*args) if callable(result) else result

        return fn

    monkeypatch.setattr(evaluation, "sample_quality", record("quality", {"fid": 1.5}))
    monkeypatch.setattr(evaluation, "extract_features", record("extract", lambda a, m: a * 2))
    monkeypatch.setattr(features, "digits_features", record("digits", lambda a, s: a + 1))
    monkeypatch.setattr(features, "inception_score", record("inception", (7.0, 0.0)))
    sampled = []
    real_sample = est.sample
    monkeypatch.setattr(est, "sample", lambda n, **k: sampled.append((n, k)) or real_sample(n, **k))

    # raw values, standardized by the data's mean and (floored) deviation; the estimator's
    # seed for the quality figures, the labels of the rows compared for the samples
    got = est.sample_metrics(x, "val", y=y, max_samples=40)
    assert got == {"val_fid": 1.5, "val_quality_samples": 40}
    ((name, (a, b), options),) = calls
    assert name == "quality" and options == {"seed": 5}
    n, kwargs = sampled[-1]
    assert n == 40 and kwargs["seed"] is None
    np.testing.assert_array_equal(kwargs["y"], y[:40])
    fake = real_sample(40, seed=None, y=y[:40]).astype(np.float64)
    real = read(x[:40])
    mean, std = real.mean(0), real.std(0)
    np.testing.assert_allclose(a, (fake - mean) / std, rtol=1e-12)
    np.testing.assert_allclose(b, (real - mean) / std, rtol=1e-12)
    assert a.dtype == b.dtype == np.float64

    calls.clear()
    est.sample_metrics(x[:10], "test", seed=3)
    assert calls[0][2] == {"seed": 3} and sampled[-1][1] == {"seed": 3, "y": None}

    module = torch.nn.Identity()
    calls.clear()
    est.sample_metrics(x[:10], "test", features=module, seed=3)
    (_, (f1, m1), _), (_, (f2, m2), _), (_, (a, b), _) = calls
    assert m1 is module and m2 is module
    np.testing.assert_array_equal(f2, read(x[:10]))  # the fakes first, then the data
    np.testing.assert_array_equal(a, 2 * f1)
    np.testing.assert_array_equal(b, 2 * read(x[:10]))

    calls.clear()
    got = est.sample_metrics(x[:10], "test", features="digits", seed=3)
    assert got["test_inception_score"] == 7.0
    scales = [(c[0], c[1][1] if c[0] == "digits" else c[2]["scale"]) for c in calls[:3]]
    assert scales == [("digits", 16.0), ("digits", 16.0), ("inception", 16.0)]  # x exceeds 1
    for top, scale in ((1.0, 1.0), (2.0, 16.0)):
        calls.clear()
        z = np.clip(x[:10], 0.0, top)
        est.sample_metrics(z, "test", features="digits", seed=3)
        assert [c[1][1] if c[0] == "digits" else c[2]["scale"] for c in calls[:3]] == [scale] * 3
        np.testing.assert_array_equal(calls[1][1][0], read(z))

    calls.clear()
    est.sample_metrics(x[:10], "test", features=lambda a: a[:, :1], seed=3)
    ((_, (a, b), _),) = calls
    np.testing.assert_array_equal(a, real_sample(10, seed=3)[:, :1])  # the samples' features
    np.testing.assert_array_equal(b, read(x[:10])[:, :1])

    with pytest.raises(
        ConfigError,
        match=r"^features must be None, 'digits', a torch module or a function, got int$",
    ):
        est.sample_metrics(x[:10], "test", features=3)
    with pytest.raises(ConfigError, match=r"^unknown features 'pixels'"):
        est.sample_metrics(x[:10], "test", features="pixels")
    with pytest.raises(ConfigError, match=r"^max_samples must be a positive integer, got 0$"):
        est.sample_metrics(x, "test", y=y, max_samples=0)
    with pytest.raises(ShapeMismatchError, match=r"^y: 5 labels for 90 examples$"):
        est.sample_metrics(x, "test", y=y[:5])
    with pytest.raises(DataValueError, match=r"^X: non-finite value nan"):
        est.sample_metrics(np.full((3, 2), np.nan), "test")
