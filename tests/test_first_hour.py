"""What a new user meets first: each case here failed before it was fixed."""

import gzip
import importlib.util
import json
import os
import stat
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ppdgm.cli import INFER_FILES, main
from ppdgm.data import load_data
from ppdgm.errors import CheckpointError, ConfigError
from ppdgm.inference import ELBO
from ppdgm.train import Trainer, load_checkpoint

FAST = ["--no-progress", "--hidden-dims", "32", "--latent-dim", "2", "--iwae-k", "10"]
ROOT = Path(__file__).parent.parent


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(head + arr.tobytes())


# -- files ----------------------------------------------------------------------------------------
def test_files_written_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        args = ["train", "vae", "--data", "digits-binary", "--steps", "4", "--out", str(out)]
        assert main([*args, *FAST]) == 0
        old_027 = os.umask(0o027)
        assert main(["sample", str(out), "-n", "2", "--out", str(tmp_path / "s.npy")]) == 0
    finally:
        os.umask(old)
    assert old_027 == 0o022
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    assert stat.S_IMODE((tmp_path / "s.npy").stat().st_mode) == 0o640


# -- data -----------------------------------------------------------------------------------------
def test_labels_npy_of_shape_n_and_idx_images_with_npy_labels(tmp_path):
    x = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    y = np.arange(40) % 4
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    d = load_data(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    # each example keeps its own label through the split
    np.testing.assert_array_equal((d.x_train[:, 0] / 3).astype(int) % 4, d.y_train)
    np.testing.assert_array_equal((d.x_test[:, 0] / 3).astype(int) % 4, d.y_test)
    imgs = np.zeros((30, 4, 4))
    imgs[:, 0, 0] = np.arange(30)  # image i starts with the value i
    _write_idx(tmp_path / "imgs-idx3-ubyte", imgs)
    np.save(tmp_path / "lab.npy", np.arange(30) % 7)
    d = load_data(tmp_path / "imgs-idx3-ubyte", labels=tmp_path / "lab.npy")
    assert d.x_train.shape[1:] == (1, 4, 4)
    np.testing.assert_array_equal(d.x_train[:, 0, 0, 0].astype(int) % 7, d.y_train)


def test_mnist_t10k_files_beside_the_training_files_are_the_test_split(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.full((12, 4, 4), 1))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(12) % 10)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.full((5, 4, 4), 2))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5))
    d = load_data(tmp_path / "train-images-idx3-ubyte")
    assert len(d.x_train) == 12 and len(d.x_test) == 5
    assert (d.x_train == 1).all() and (d.x_test == 2).all()
    np.testing.assert_array_equal(d.y_train, np.arange(12) % 10)
    np.testing.assert_array_equal(d.y_test, np.arange(5))


@pytest.mark.parametrize("name", ["Label", "TARGET", "Class"])
def test_label_column_names_match_case_insensitively(tmp_path, name):
    rows = "\n".join(f"{i},{i + 1},{i % 3}" for i in range(20))
    (tmp_path / "d.csv").write_text(f"a,b,{name}\n{rows}\n")
    d = load_data(tmp_path / "d.csv")
    assert d.x_train.shape[1] == 2
    np.testing.assert_array_equal(d.x_train[:, 0].astype(int) % 3, d.y_train)


# -- training -------------------------------------------------------------------------------------
def test_trainer_run_accepts_numpy_arrays_and_refuses_other_things_clearly():
    from test_train import _pair

    model, guide = _pair()
    tr = Trainer(model.model, guide.guide, ELBO(), batch_size=8, seed=0, device="cpu")
    x = (np.random.default_rng(0).random((40, 12)) > 0.5).astype(np.float64)
    hist = tr.run(x, 5, progress=False, log_every=1)
    assert len(hist["loss"]) == 5 and np.isfinite(hist["loss"]).all()
    for bad in ("data", [None], [np.array(["a"] * 3)]):
        with pytest.raises(ConfigError, match="data"):
            tr.run(bad, 10, progress=False)


def test_nan_loss_leaves_a_resumable_checkpoint_and_no_spurious_warning(tmp_path, capsys):
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["train", "vae", "--lr", "1e5", "--steps", "50", "--out", str(out),
                     "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "nan at step 2" in err and "checkpoint.pt" in err
    assert not [w for w in caught if "differs from the eager loss" in str(w.message)]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 1
    code = main(["train", "vae", "--out", str(out), "--resume", "--no-progress", "--lr", "1e5"])
    assert "nothing to resume" not in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")
def test_device_cuda_without_cuda_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "vae", "--device", "cuda", "--out", str(out), *FAST]) == 1
    assert "CUDA is not available" in capsys.readouterr().err
    assert not out.exists()


# -- messages -------------------------------------------------------------------------------------
def test_mismatched_data_errors_name_the_file(tmp_path, capsys):
    data = tmp_path / "x.npy"
    np.save(data, (np.random.default_rng(0).random((60, 6)) > 0.5).astype(np.float32))
    out = tmp_path / "run"
    assert (
        main(["train", "vae", "--data", str(data), "--steps", "3", "--out", str(out), *FAST]) == 0
    )
    np.save(data, np.random.default_rng(0).random((60, 5)))  # the file changed shape
    assert main(["evaluate", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{data}: examples have shape (5,)" in err and "X:" not in err
    np.save(data, np.random.default_rng(0).random((60, 6)))  # not binary any more
    assert main(["evaluate", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{data}: the bernoulli likelihood needs binary data" in err


def test_a_pickle_given_as_checkpoint_is_not_a_ppdgm_checkpoint(tmp_path, capsys):
    import pickle

    bad = tmp_path / "run" / "checkpoint.pt"
    bad.parent.mkdir()
    bad.write_bytes(pickle.dumps({"x": object()}))
    torch.save({"a": ConfigError("x")}, tmp_path / "zip.pt")
    for path in (bad, tmp_path / "zip.pt"):
        with pytest.raises(CheckpointError, match="not a ppdgm checkpoint") as e:
            load_checkpoint(path)
        assert "weights_only" not in str(e.value)
    assert main(["sample", str(bad.parent), "--out", str(tmp_path / "s.png")]) == 1
    err = capsys.readouterr().err
    assert "not a ppdgm checkpoint" in err and "weights_only" not in err


def test_list_into_a_closed_pipe_prints_no_traceback():
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppdgm", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader (`| head -0`) is gone before anything is written
    err = proc.stderr.read()
    proc.wait(timeout=120)
    proc.stderr.close()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.stem)
def test_example_help_shows_the_whole_description(path, capsys):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(SystemExit):
        mod.main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert " ".join(mod.__doc__.split("\n\n")[0].split()) in shown


# -- infer ----------------------------------------------------------------------------------------
MODEL = """
from pyroapi import distributions as dist
from pyroapi import pyro


def normal_mean(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
"""


def test_infer_with_few_draws_and_a_failure_while_writing(tmp_path, capsys, monkeypatch):
    (tmp_path / "m.py").write_text(MODEL)
    (tmp_path / "x.csv").write_text("x\n" + "\n".join(str(v) for v in range(8)) + "\n")
    out = tmp_path / "out"
    argv = ["infer", f"{tmp_path / 'm.py'}:normal_mean", "--data", str(tmp_path / "x.csv"),
            "--chains", "1", "--warmup", "50", "--samples", "50", "--out", str(out),
            "--no-progress"]  # fmt: skip
    import logging

    import arviz

    records = []
    handler = logging.Handler()
    handler.emit = records.append  # what ArviZ's own logger lets through
    log = getattr(arviz, "_log", logging.getLogger("arviz"))
    log.addHandler(handler)
    try:
        assert main(argv) == 0
    finally:
        log.removeHandler(handler)
    assert not [r for r in records if "Shape validation failed" in r.getMessage()]
    before = {n: (out / n).read_bytes() for n in INFER_FILES}
    from ppdgm import viz

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(viz, "plot_rank", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main([*argv, "--overwrite", "--seed", "3"])
    assert {n: (out / n).read_bytes() for n in INFER_FILES} == before  # old results, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py", "out", "x.csv"]
    assert json.dumps(sorted(p.name for p in out.iterdir())) == json.dumps(sorted(INFER_FILES))


def test_a_crash_while_saving_keeps_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    """The CLI's checkpoints are written atomically: a save that dies half-way (disk full,
    kill) leaves the last complete checkpoint, and no partial file."""
    import ppdgm.train as train_module

    calls = []
    real_save = torch.save

    def dying_save(obj, fh, *a, **k):
        calls.append(obj["step"])
        if len(calls) == 3:
            fh.write(b"PK\x03\x04 half a checkpoint")
            raise OSError("No space left on device")
        return real_save(obj, fh, *a, **k)

    monkeypatch.setattr(train_module.torch, "save", dying_save)
    out = tmp_path / "run"
    argv = ["train", "vae", "--data", "digits-binary", "--steps", "40", "--out", str(out),
            "--checkpoint-every", "10", "--val-fraction", "0", *FAST]  # fmt: skip
    with pytest.raises(OSError, match="No space"):
        main(argv)
    monkeypatch.setattr(train_module.torch, "save", real_save)
    assert calls == [10, 20, 30]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 20
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json"]
