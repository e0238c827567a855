import os
import pickle
import signal

import numpy as np
import pyro
import pytest
import torch

from ppdgm.errors import CheckpointError, ConfigError, TrainingDivergedError
from ppdgm.guides import AmortizedNormalGuide
from ppdgm.inference import ELBO
from ppdgm.models import VAEModel, make_likelihood
from ppdgm.nn import MLP
from ppdgm.train import Trainer, load_checkpoint, save_checkpoint


def _pair(seed=0):
    torch.manual_seed(seed)
    model = VAEModel(MLP(3, [16], 12), 3, make_likelihood("bernoulli", (12,)), (12,))
    guide = AmortizedNormalGuide(MLP(12, [16], 6), 3)
    return model, guide


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((100, 12), 0.3), generator=g)


def _trainer(compile=True, objective=None, seed=0, **options):
    model, guide = _pair(seed)
    return (
        Trainer(
            model.model,
            guide.guide,
            objective or ELBO(),
            batch_size=16,
            seed=seed,
            device="cpu",
            compile=compile,
            **options,
        ),
        model,
        guide,
    )


def _params(*modules):
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def test_trainer_reduces_loss_and_touches_no_global_state():
    tr, model, guide = _trainer()
    hist = tr.run(_data(), 300, progress=False, log_every=20)
    assert hist["loss"][-1] < hist["loss"][0] - 0.5  # the data's entropy is 7.33 nats
    assert len(pyro.get_param_store()) == 0


def test_compiled_step_matches_eager_step():
    a, ma, ga = _trainer(compile=True)
    b, mb, gb = _trainer(compile=False)
    a.run(_data(), 30, progress=False)
    b.run(_data(), 30, progress=False)
    assert a._loss.fallback_reason is None and any(v is not False for v in a._loss.cache.values())
    torch.testing.assert_close(_params(ma, ga), _params(mb, gb), rtol=1e-4, atol=1e-5)


class _ValueDependentELBO(ELBO):
    """An objective whose Python control flow depends on a tensor's value."""

    def loss(self, model, guide, *args, **kwargs):
        loss = super().loss(model, guide, *args, **kwargs)
        return loss * 2 if bool(args[0].sum() > 96) else loss


def test_value_dependent_control_flow_falls_back_to_eager():
    tr, model, guide = _trainer(objective=_ValueDependentELBO())
    with pytest.warns(UserWarning, match="runs uncompiled"):
        tr.run(_data(), 5, progress=False)
    assert "control flow" in tr._loss.fallback_reason
    assert all(v is False for v in tr._loss.cache.values())


def test_pyro_elbo_classes_are_objectives_as_they_are():
    tr, model, guide = _trainer(objective=pyro.infer.Trace_ELBO())
    hist = tr.run(_data(), 100, progress=False)
    assert np.isfinite(hist["loss"]).all() and len(pyro.get_param_store()) == 0


def test_checkpoint_round_trip(tmp_path):
    tr, model, guide = _trainer()
    tr.run(_data(), 20, progress=False, checkpoint_path=tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["step"] == 20
    tr2, model2, guide2 = _trainer(seed=5)
    tr2.load_state_dict(state)
    torch.testing.assert_close(_params(model, guide), _params(model2, guide2), rtol=0, atol=0)
    assert tr2.step_count == 20 and tr2.history == tr.history


@pytest.mark.parametrize("compile", [True, False])
def test_resume_equals_an_uninterrupted_run(tmp_path, compile):
    data = _data()
    full, mf, gf = _trainer(compile=compile)
    full.run(data, 40, progress=False, eval_fn=lambda: {"x": 0.0}, eval_every=7)
    part, _, _ = _trainer(compile=compile)
    part.run(
        data,
        23,
        progress=False,
        checkpoint_path=tmp_path / "c.pt",
        checkpoint_every=1000,
        eval_fn=lambda: {"x": 0.0},
        eval_every=7,
    )
    torch.manual_seed(123)  # whatever happens in between does not matter
    resumed, mr, gr = _trainer(compile=compile, seed=0)
    resumed.run(
        data,
        40,
        progress=False,
        checkpoint_path=tmp_path / "c.pt",
        resume=True,
        eval_fn=lambda: {"x": 0.0},
        eval_every=7,
    )
    torch.testing.assert_close(_params(mf, gf), _params(mr, gr), rtol=0, atol=0)
    assert full.history["loss"] == resumed.history["loss"]


def _record_lrs(tr):
    """Wrap the trainer's optimizer step to record the learning rate each step used."""
    lrs, step = [], tr.optimizer.step

    def recording_step(*a, **k):
        lrs.append(tr.optimizer.param_groups[0]["lr"])
        return step(*a, **k)

    tr.optimizer.step = recording_step
    return lrs


def test_cosine_schedule_decays_the_learning_rate_and_constant_keeps_it():
    tr, _, _ = _trainer(lr=0.01, lr_schedule="cosine")
    lrs = _record_lrs(tr)
    tr.run(_data(), 10, progress=False)
    expected = [0.005 * (1 + np.cos(np.pi * t / 10)) for t in range(10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    const, _, _ = _trainer(lr=0.01)
    lrs = _record_lrs(const)
    const.run(_data(), 5, progress=False)
    assert lrs == [0.01] * 5
    linear, _, _ = _trainer(lr=0.01, lr_schedule="linear")
    lrs = _record_lrs(linear)
    linear.run(_data(), 4, progress=False)
    np.testing.assert_allclose(lrs, [0.01, 0.0075, 0.005, 0.0025], rtol=1e-12)
    with pytest.raises(ConfigError, match="unknown lr_schedule 'step'; choose one of"):
        _trainer(lr_schedule="step")


def test_a_cosine_run_resumed_after_an_interrupt_equals_an_uninterrupted_run(tmp_path):
    data = _data()
    full, mf, gf = _trainer(lr=0.01, lr_schedule="cosine")
    full.run(data, 30, progress=False)
    part, _, _ = _trainer(lr=0.01, lr_schedule="cosine")

    def interrupt_at_step_12():
        if part.step_count == 12:
            signal.raise_signal(signal.SIGINT)
        return {"v": 0.0}

    with pytest.raises(KeyboardInterrupt):
        part.run(
            data,
            30,
            progress=False,
            checkpoint_path=tmp_path / "c.pt",
            eval_fn=interrupt_at_step_12,
            eval_every=4,
        )
    resumed, mr, gr = _trainer(lr=0.01, lr_schedule="cosine")
    lrs = _record_lrs(resumed)
    resumed.run(data, 30, progress=False, checkpoint_path=tmp_path / "c.pt", resume=True)
    # the schedule goes on from step 12 of 30 (not from the top, nor at the constant rate)
    np.testing.assert_allclose(lrs[0], 0.005 * (1 + np.cos(np.pi * 12 / 30)), rtol=1e-12)
    torch.testing.assert_close(_params(mf, gf), _params(mr, gr), rtol=0, atol=0)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_pickled_code_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    torch.save({"format": "ppdgm.checkpoint/1", "step": 1, "evil": payload}, tmp_path / "evil.pt")
    with pytest.raises(
        CheckpointError,
        match=r"evil\.pt: not a ppdgm checkpoint: it holds pickled objects other than tensors "
        r"and plain values, and loading those could run code, so it was refused$",
    ):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    # a plain pickle file is refused too
    with open(tmp_path / "plain.pt", "wb") as fh:
        pickle.dump(payload, fh)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "plain.pt")
    assert not marker.exists()


def test_truncated_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    tr, _, _ = _trainer()
    tr.run(_data(), 3, progress=False, checkpoint_path=tmp_path / "c.pt")
    raw = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "t.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a ppdgm checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    other, _, _ = _trainer()
    bad = load_checkpoint(tmp_path / "c.pt")
    bad["modules"]["model"] = {"nope": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="does not fit"):
        other.load_state_dict(bad)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c.pt", {"step": 1})
    before = (tmp_path / "c.pt").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "c.pt", {"step": 2})
    assert (tmp_path / "c.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


class _NaNAfter(ELBO):
    def __init__(self, after):
        super().__init__()
        self.calls, self.after = 0, after

    def loss(self, model, guide, *args, **kwargs):
        self.calls += 1
        loss = super().loss(model, guide, *args, **kwargs)
        return loss * float("nan") if self.calls > self.after else loss


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    tr, model, guide = _trainer(compile=False, objective=_NaNAfter(12))
    with pytest.raises(TrainingDivergedError, match="step 13") as caught:
        tr.run(_data(), 50, progress=False, checkpoint_path=tmp_path / "c.pt", checkpoint_every=5)
    assert caught.value.step == 13
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["step"] == 12  # the last good step is saved, not only the periodic one
    assert all(torch.isfinite(v).all() for v in state["modules"]["model"].values())
    assert torch.isfinite(_params(model, guide)).all()  # the bad step was not applied
    saved = torch.cat([v.reshape(-1) for v in state["modules"]["model"].values()])
    here = torch.cat([v.reshape(-1) for v in model.state_dict().values()])
    assert torch.equal(saved, here)


def test_interrupt_saves_the_last_complete_step(tmp_path):
    tr, model, guide = _trainer()
    calls = []
    # whatever the disposition was (a background job starts with SIGINT ignored), the
    # trainer must put it back
    before = signal.getsignal(signal.SIGINT)

    def interrupt_at_step_8():
        calls.append(tr.step_count)
        if tr.step_count == 8:
            signal.raise_signal(signal.SIGINT)
        return {"v": 0.0}

    with pytest.raises(KeyboardInterrupt):
        tr.run(
            _data(),
            100,
            progress=False,
            checkpoint_path=tmp_path / "c.pt",
            checkpoint_every=1000,
            eval_fn=interrupt_at_step_8,
            eval_every=4,
        )
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["step"] == 8
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.gpu
def test_training_on_cuda_learns_what_training_on_cpu_learns(tmp_path):
    """The same model trained on CUDA and on the CPU reaches the same ELBO on the data (the
    random streams differ, so the trajectories do not match; on the CPU, seeds 0-3 end within
    0.005 nats of each other), and a CUDA checkpoint loads on the CPU."""
    from ppdgm.evaluation import elbo

    results = {}
    for device in ("cpu", "cuda"):
        model, guide = _pair()
        tr = Trainer(model.model, guide.guide, ELBO(), batch_size=16, device=device, seed=0)
        hist = tr.run(_data(), 300, progress=False, checkpoint_path=tmp_path / f"{device}.pt")
        assert np.isfinite(hist["loss"]).all()
        assert {p.device.type for p in model.parameters()} == {device}
        model.cpu(), guide.cpu()
        torch.manual_seed(0)
        results[device] = elbo(model.model, guide.guide, _data(), num_particles=200).mean().item()
    assert abs(results["cuda"] - results["cpu"]) < 0.05, results
    assert results["cuda"] > -7.6  # an untrained pair is near -8.3
    model, guide = _pair()
    cpu = Trainer(model.model, guide.guide, ELBO(), batch_size=16, device="cpu")
    cpu.load_state_dict(load_checkpoint(tmp_path / "cuda.pt", "cpu"))
    assert cpu.step_count == 300
