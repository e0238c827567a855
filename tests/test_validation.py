"""Validation split, model selection (best checkpoint) and early stopping."""

import json

import numpy as np
import pytest
import torch
from test_train import _data, _pair, _params

from ppdgm import VAE
from ppdgm.cli import main
from ppdgm.data import load_data, split_validation
from ppdgm.data.dataset import Dataset
from ppdgm.errors import ConfigError, DataFormatError
from ppdgm.inference import ELBO
from ppdgm.train import Trainer, load_checkpoint

FAST = ["--no-progress", "--hidden-dims", "32", "--latent-dim", "2", "--iwae-k", "20"]


# -- the split ------------------------------------------------------------------------------------
def _indexed(n_train=200, n_test=30):
    """A dataset whose rows carry their own index (x[i] = [i, i], y[i] = i): rows and labels
    can be told apart and matched after any split."""
    x = np.repeat(np.arange(n_train + n_test, dtype=np.float32)[:, None], 2, axis=1)
    y = np.arange(n_train + n_test)
    return Dataset("idx", x[:n_train], x[n_train:], y[:n_train], y[n_train:])


def test_validation_split_is_disjoint_fixed_and_keeps_labels_with_rows():
    d = _indexed()
    v = split_validation(d, 0.1)
    assert len(v.x_val) == 20 and len(v.x_train) == 180
    train, val, test = (set(a[:, 0].astype(int)) for a in (v.x_train, v.x_val, v.x_test))
    assert not train & val and not val & test and not train & test
    assert train | val == set(range(200))  # carved out of the training split only
    np.testing.assert_array_equal(v.x_test, d.x_test)
    for x, y in ((v.x_train, v.y_train), (v.x_val, v.y_val)):
        np.testing.assert_array_equal(x[:, 0].astype(int), y)
    again = split_validation(d, 0.1)
    np.testing.assert_array_equal(again.x_val, v.x_val)
    assert split_validation(d, 0.0).x_val is None
    assert d.x_val is None and len(d.x_train) == 200  # the input is not modified


def test_digits_validation_split_comes_from_the_training_split():
    d = load_data("digits")
    v = split_validation(d, 0.1)
    assert (len(v.x_train), len(v.x_val), len(v.x_test)) == (1350, 150, 297)
    both = np.concatenate([v.x_train, v.x_val])
    key = lambda a: np.lexsort(a.T[::-1])  # noqa: E731
    np.testing.assert_array_equal(both[key(both)], d.x_train[key(d.x_train)])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "a", True])
def test_bad_val_fraction_is_refused(bad):
    with pytest.raises(ConfigError, match="val_fraction"):
        split_validation(_indexed(), bad)


def test_a_files_own_validation_split_is_used(tmp_path):
    rng = np.random.default_rng(0)
    parts = {k: rng.normal(size=(n, 3)) for k, n in (("x_train", 40), ("x_test", 9), ("x_val", 7))}
    np.savez(tmp_path / "d.npz", **parts)
    d = split_validation(load_data(tmp_path / "d.npz"), 0.1)
    np.testing.assert_allclose(d.x_val, parts["x_val"].astype(np.float32))
    assert len(d.x_train) == 40


# -- the trainer ----------------------------------------------------------------------------------
def _scripted_trainer(values, seed=0):
    """A trainer whose validation losses are ``values`` in turn; ``snapshots`` records the
    parameters at each evaluation."""
    model, guide = _pair(seed)
    tr = Trainer(model.model, guide.guide, ELBO(), batch_size=16, seed=seed, device="cpu")
    it = iter(values)
    snapshots = []

    def eval_fn():
        snapshots.append(_params(model, guide).clone())
        return {"val_loss": next(it)}

    return tr, model, guide, eval_fn, snapshots


def test_best_checkpoint_is_the_state_at_the_best_validation_step(tmp_path):
    tr, model, guide, eval_fn, snaps = _scripted_trainer([5.0, 3.0, 4.0, 2.0, 6.0, 7.0])
    tr.run(_data(), 60, progress=False, eval_fn=eval_fn, eval_every=10, best_path=tmp_path / "b.pt")
    assert tr.best["step"] == 40 and tr.best["value"] == 2.0 and tr.best["bad_evals"] == 2
    state = load_checkpoint(tmp_path / "b.pt")
    assert state["step"] == 40
    saved = torch.cat([p.flatten() for k in ("model", "guide") for p in _module_params(state, k)])
    assert torch.equal(saved, snaps[3])
    assert not torch.equal(_params(model, guide), snaps[3])
    assert tr.restore_best()
    assert torch.equal(_params(model, guide), snaps[3])


def _module_params(state, key):
    model, guide = _pair()
    module = model if key == "model" else guide
    module.load_state_dict(state["modules"][key])
    return list(module.parameters())


def test_early_stopping_stops_after_the_patience():
    tr, *_, eval_fn, snaps = _scripted_trainer([5.0, 3.0, 4.0, 4.0, 2.0, 9.0, 9.0, 9.0, 9.0])
    tr.run(_data(), 500, progress=False, eval_fn=eval_fn, eval_every=10, early_stopping=3)
    # best at the 5th evaluation (step 50); three evaluations without improvement follow
    assert tr.best["step"] == 50 and tr.best["stopped"]
    assert tr.step_count == 80 and len(snaps) == 8
    # a patience of 2 would have stopped at step 40 had 2.0 not come at step 50
    tr2, *_, eval_fn2, _ = _scripted_trainer([5.0, 3.0, 4.0, 4.0, 2.0])
    tr2.run(_data(), 500, progress=False, eval_fn=eval_fn2, eval_every=10, early_stopping=2)
    assert tr2.step_count == 40 and tr2.best["step"] == 20


def test_restored_best_parameters_give_the_recorded_validation_loss():
    model, guide = _pair()
    tr = Trainer(model.model, guide.guide, ELBO(), batch_size=16, seed=0, device="cpu", lr=0.05)
    x_val = _data()[:30]
    from ppdgm.evaluation import elbo

    def eval_fn():
        return {"val_loss": -elbo(model.model, guide.guide, x_val).mean().item()}

    tr.run(_data()[30:], 200, progress=False, eval_fn=eval_fn, eval_every=10)
    best = int(np.argmin(tr.history["eval"]))
    assert tr.best["step"] == tr.history["eval_step"][best]
    assert tr.restore_best()
    from ppdgm._utils import set_seed

    set_seed(tr.seed + 1)  # the evaluation's own seed
    model.eval(), guide.eval()
    assert eval_fn()["val_loss"] == pytest.approx(tr.best["value"], abs=1e-5)


def test_resume_keeps_the_best(tmp_path):
    values = [5.0, 3.0, 4.0, 6.0, 2.5, 7.0]
    ck, best = tmp_path / "c.pt", tmp_path / "b.pt"
    tr, model, guide, eval_fn, snaps = _scripted_trainer(values)
    tr.run(
        _data(),
        30,
        progress=False,
        eval_fn=eval_fn,
        eval_every=10,
        checkpoint_path=ck,
        best_path=best,
    )
    before = best.read_bytes()
    tr2, model2, guide2, eval_fn2, snaps2 = _scripted_trainer(values[3:])
    tr2.run(
        _data(),
        40,
        progress=False,
        eval_fn=eval_fn2,
        eval_every=10,
        checkpoint_path=ck,
        best_path=best,
        resume=True,
    )
    assert tr2.best["step"] == 20 and tr2.best["value"] == 3.0 and tr2.best["bad_evals"] == 2
    assert best.read_bytes() == before  # no improvement: the best checkpoint stays
    assert tr2.restore_best(best)  # from the file: this trainer never saw step 20
    assert torch.equal(_params(model2, guide2), snaps[1])
    tr2.run(
        _data(),
        60,
        progress=False,
        eval_fn=eval_fn2,
        eval_every=10,
        checkpoint_path=ck,
        best_path=best,
        resume=True,
    )
    assert tr2.best["step"] == 50 and load_checkpoint(best)["step"] == 50


def test_early_stopping_needs_validation():
    model, guide = _pair()
    tr = Trainer(model.model, guide.guide, ELBO(), batch_size=16, seed=0, device="cpu")
    with pytest.raises(ConfigError, match="early_stopping needs"):
        tr.run(_data(), 10, progress=False, early_stopping=2)
    with pytest.raises(ConfigError, match="X_val"):
        VAE(latent_dim=2, hidden_dims=(8,)).fit(_data().numpy(), num_steps=5, early_stopping=2)


# -- the estimator --------------------------------------------------------------------------------
def test_vae_fit_selects_the_best_validation_step():
    d = split_validation(load_data("digits-binary"), 0.1)
    vae = VAE(latent_dim=2, hidden_dims=(32,), seed=0)
    vae.fit(d.x_train[:300], num_steps=200, lr=3e-3, X_val=d.x_val, eval_every=20)
    h = vae.history_
    assert vae.best_step_ == h["eval_step"][int(np.argmin(h["eval"]))]
    assert vae.selected_step_ == vae.best_step_ and vae.last_step_ == 200
    last = VAE(latent_dim=2, hidden_dims=(32,), seed=0)
    last.fit(
        d.x_train[:300], num_steps=200, lr=3e-3, X_val=d.x_val, eval_every=20, restore_best=False
    )
    assert last.selected_step_ == 200
    if vae.best_step_ != 200:
        assert not np.allclose(vae.transform(d.x_val), last.transform(d.x_val))
    with pytest.warns(FutureWarning, match="X_val"):
        VAE(latent_dim=2, hidden_dims=(8,)).fit(d.x_train[:50], num_steps=4, X_test=d.x_val)


# -- the command line -----------------------------------------------------------------------------
def _train(out, *extra):
    argv = ["train", "vae", "--data", "digits-binary", "--out", str(out), *FAST, *extra]
    assert main(argv) == 0


def test_cli_selects_best_writes_best_pt_and_sample_evaluate_use_it(tmp_path, capsys):
    out = tmp_path / "run"
    _train(out, "--steps", "120", "--eval-every", "10", "--lr", "0.02", "--early-stopping", "3")
    m = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["val_fraction"] == 0.1 and m["num_val"] == 150 and m["num_test"] == 297
    best, last = load_checkpoint(out / "best.pt"), load_checkpoint(out / "checkpoint.pt")
    hist = last["history"]
    assert m["selected_step"] == best["step"] == hist["eval_step"][int(np.argmin(hist["eval"]))]
    assert m["num_steps"] == last["step"]
    assert m["stopped_early"] == (last["step"] < 120)
    assert {"val_elbo", "val_nll_iwae", "test_elbo", "test_nll_iwae"} <= m.keys()
    capsys.readouterr()
    assert main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "s.npy")]) == 0
    assert "from best.pt" in capsys.readouterr().out
    assert main(["sample", str(out), "-n", "4", "--last", "--out", str(tmp_path / "l.npy")]) == 0
    assert "from checkpoint.pt" in capsys.readouterr().out
    before = (out / "metrics.json").read_text()
    assert main(["evaluate", str(out), "--iwae-k", "20"]) == 0
    assert (out / "metrics.json").read_text() == before  # evaluate leaves the run's metrics
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["checkpoint"] == "best.pt" and ev["step"] == m["selected_step"]
    # the same parameters, seed and data give the training run's test figures again
    assert ev["test_nll_iwae"] == pytest.approx(m["test_nll_iwae"], rel=1e-5)
    assert main(["evaluate", str(out), "--last", "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["step"] == m["num_steps"]


def test_cli_resume_honours_steps_and_lr_and_refuses_other_changes(tmp_path, capsys):
    out = tmp_path / "run"
    _train(out, "--steps", "20", "--eval-every", "10")
    code = main(["train", "vae", "--out", str(out), "--resume", "--batch-size", "64", *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "--batch-size 64 (the run has 128)" in err
    assert main(["train", "vae", "--out", str(out), "--resume", "--data", "digits", *FAST]) == 1
    assert "--data digits (the run has digits-binary)" in capsys.readouterr().err
    # the same value as the run's is no change; new --steps and --lr are taken
    argv = ["train", "vae", "--out", str(out), "--resume", "--data", "digits-binary", *FAST]
    assert main([*argv, "--steps", "30", "--lr", "0.0005"]) == 0
    assert "resuming with --lr 0.0005 (was 0.001)" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoint.pt")["optimizer"]["param_groups"][0]["lr"] == 0.0005
    assert json.loads((out / "metrics.json").read_text())["num_steps"] == 30


def test_validation_split_sizes_at_the_edges_and_without_labels():
    def data(n, labelled=False):
        x = np.arange(n, dtype=np.float32)[:, None]
        return Dataset("tiny", x, x[:1], np.arange(n) if labelled else None, None)

    v = split_validation(data(2), 0.1)  # at least one of each
    assert len(v.x_train) == 1 and len(v.x_val) == 1 and v.y_train is None and v.y_val is None
    v = split_validation(data(5), 0.9)  # at least one example is left for training
    assert len(v.x_train) == 1 and len(v.x_val) == 4
    v = split_validation(data(2), 0.9)  # round(1.8) = 2 would leave none
    assert len(v.x_train) == 1 and len(v.x_val) == 1
    v = split_validation(data(50), 0.005)  # round(0.25) = 0, but one is held out
    assert len(v.x_val) == 1 and len(v.x_train) == 49
    v = split_validation(data(3, labelled=True), 0.5)
    np.testing.assert_array_equal(v.x_val[:, 0], v.y_val)
    with pytest.raises(DataFormatError, match=r"^tiny: need at least 2 training examples to hold"):
        split_validation(data(1), 0.1)
