import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ppdgm.cli import main

FILES = [
    "checkpoint.pt",
    "config.json",
    "metrics.json",
    "samples.png",
    "reconstructions.png",
    "latents.png",
    "curves.png",
]
FAST = ["--no-progress", "--hidden-dims", "32", "--latent-dim", "2", "--iwae-k", "20"]


def test_train_writes_every_file_then_sample_evaluate_list(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "vae",
                "--data",
                "digits-binary",
                "--steps",
                "30",
                "--seed",
                "0",
                "--out",
                str(out),
                *FAST,
            ]
        )
        == 0
    )
    for f in FILES:
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    m = json.loads((out / "metrics.json").read_text())
    for key in ("test_elbo", "test_nll_iwae", "num_steps", "seconds", "seed", "versions"):
        assert key in m
    assert (
        m["num_steps"] == 30 and m["iwae_k"] == 20 and m["test_nll_iwae"] <= -m["test_elbo"] + 0.5
    )
    assert {"torch", "pyro", "numpy", "ppdgm", "python"} <= set(m["versions"])

    assert main(["sample", str(out), "-n", "9", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (9, 64)
    assert main(["sample", str(out), "-n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--iwae-k", "10"]) == 0
    assert "test_nll_iwae" in capsys.readouterr().out
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "vae" in listing and "digits-binary" in listing and "8gaussians" in listing


def test_resume_continues_and_existing_run_is_protected(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "vae", "--data", "digits-binary", "--out", str(out), *FAST]
    assert main([*args, "--steps", "10"]) == 0
    assert main([*args, "--steps", "10"]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert main([*args, "--steps", "10", "--resume"]) == 0  # the run's own step count
    assert json.loads((out / "metrics.json").read_text())["num_steps"] == 10
    assert main([*args, "--steps", "25", "--resume"]) == 0  # extended to a new total
    assert json.loads((out / "metrics.json").read_text())["num_steps"] == 25
    assert json.loads((out / "config.json").read_text())["steps"] == 25


def test_lr_schedule_is_the_familys_default_or_the_option_and_kept_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "vae", "--data", "digits-binary", "--out", str(out), *FAST]
    assert main([*args, "--steps", "4"]) == 0
    assert json.loads((out / "config.json").read_text())["lr_schedule"] == "constant"
    assert main([*args, "--steps", "4", "--overwrite", "--lr-schedule", "cosine"]) == 0
    assert json.loads((out / "config.json").read_text())["lr_schedule"] == "cosine"
    # the schedule is part of the run: a resumed run cannot switch it
    assert main([*args, "--steps", "8", "--resume", "--lr-schedule", "constant"]) == 1
    assert "--lr-schedule constant (the run has cosine)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--lr-schedule", "exponential"])
    assert "invalid choice: 'exponential'" in capsys.readouterr().err
    nsf = tmp_path / "nsf"
    nsf_args = ["--num-transforms", "1", "--hidden-dims", "8", "--count-bins", "3"]
    assert (
        main(["train", "nsf", "--steps", "3", "--no-progress", "--out", str(nsf), *nsf_args]) == 0
    )
    assert json.loads((nsf / "config.json").read_text())["lr_schedule"] == "cosine"


def test_user_csv_data_and_conv_arch(tmp_path):
    rng = np.random.RandomState(0)
    rows = "\n".join(
        ",".join(str(v) for v in r) + f",{i % 3}" for i, r in enumerate(rng.randint(0, 2, (60, 6)))
    )
    (tmp_path / "d.csv").write_text("a,b,c,d,e,f,label\n" + rows + "\n")
    assert (
        main(
            [
                "train",
                "vae",
                "--data",
                str(tmp_path / "d.csv"),
                "--steps",
                "5",
                "--out",
                str(tmp_path / "r1"),
                *FAST,
            ]
        )
        == 0
    )
    cfg = json.loads((tmp_path / "r1" / "config.json").read_text())
    assert cfg["params"]["likelihood"] == "bernoulli"
    assert (
        main(
            [
                "train",
                "vae",
                "--data",
                "digits",
                "--arch",
                "conv",
                "--steps",
                "5",
                "--out",
                str(tmp_path / "r2"),
                *FAST,
            ]
        )
        == 0
    )
    assert (
        json.loads((tmp_path / "r2" / "metrics.json").read_text())["likelihood"]
        == "discretized_logistic"
    )


def _bad(tmp_path, argv, capsys, expect):
    out = tmp_path / "out"
    code = main([*argv, "--out", str(out), "--no-progress"]) if argv[0] == "train" else main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert expect in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_bad_inputs_give_one_line_and_no_output(tmp_path, capsys):
    (tmp_path / "nan.csv").write_text("1,2\n3,nan\n4,5\n")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    _bad(tmp_path, ["train", "vae", "--data", str(tmp_path / "nan.csv")], capsys, "row 2, column 1")
    _bad(tmp_path, ["train", "vae", "--data", str(tmp_path / "ragged.csv")], capsys, "ragged")
    _bad(
        tmp_path, ["train", "vae", "--data", str(tmp_path / "missing.npy")], capsys, "no such file"
    )
    _bad(
        tmp_path,
        ["train", "vae", "--data", "digits", "--likelihood", "bernoulli"],
        capsys,
        "binary",
    )
    _bad(
        tmp_path,
        ["sample", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")],
        capsys,
        "no such run",
    )
    with pytest.raises(SystemExit) as e:
        main(["train", "vae", "--bogus-flag"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus-flag" in err and len(err.strip().splitlines()) == 1


def _cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "ppdgm", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_module_entry_point_reports_errors_without_traceback(tmp_path):
    p = _cli("train", "vae", "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "o"))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1 and err.startswith("ppdgm: error:") and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def _start_long_run(out, checkpoint_every):
    """Start a long training in a subprocess; return it once its first checkpoint exists."""
    p = _cli(
        "train",
        "vae",
        "--data",
        "digits-binary",
        "--steps",
        "100000",
        "--out",
        str(out),
        "--checkpoint-every",
        str(checkpoint_every),
        *FAST,
    )
    for _ in range(600):  # wait up to about two minutes
        if (out / "checkpoint.pt").exists():
            break
        time.sleep(0.2)
    return p


def test_ctrl_c_keeps_the_last_complete_checkpoint_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    p = _start_long_run(out, 50)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "--resume" in err and "Traceback" not in err
    from ppdgm.train import load_checkpoint

    step = load_checkpoint(out / "checkpoint.pt")["step"]
    assert step >= 50
    cfg = json.loads((out / "config.json").read_text())
    cfg["steps"] = step + 20  # finish quickly
    (out / "config.json").write_text(json.dumps(cfg))
    assert main(["train", "vae", "--out", str(out), "--resume", *FAST]) == 0
    assert json.loads((out / "metrics.json").read_text())["num_steps"] == step + 20


_KILL_MID_SAVE = """
import os, signal, sys
import torch
import ppdgm.train
from ppdgm.cli import main

real_save, calls = torch.save, []


def save(obj, fh, *a, **k):
    calls.append(obj["step"])
    if len(calls) == 3:  # the third checkpoint: half written, then the process is killed
        fh.write(b"PK\\x03\\x04 half a checkpoint")
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, fh, *a, **k)


ppdgm.train.torch.save = save
sys.exit(main(sys.argv[1:]))
"""


def test_killed_run_keeps_a_complete_checkpoint(tmp_path):
    """SIGKILL in the middle of writing a checkpoint (no handler can run) leaves the previous
    checkpoint whole; the kill is placed by the run itself, not by the clock."""
    out = tmp_path / "run"
    argv = ["train", "vae", "--data", "digits-binary", "--steps", "100", "--out", str(out),
            "--checkpoint-every", "20", "--val-fraction", "0", *FAST]  # fmt: skip
    p = subprocess.run([sys.executable, "-c", _KILL_MID_SAVE, *argv], capture_output=True)
    assert p.returncode == -signal.SIGKILL
    from ppdgm.train import load_checkpoint

    assert load_checkpoint(out / "checkpoint.pt")["step"] == 40
