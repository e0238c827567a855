"""The ``ppdgm`` command: train, sample, evaluate, infer, list."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._utils import LR_SCHEDULES, atomic_write, write_json
from .errors import ConfigError, DataError, PpdgmError, TrainingDivergedError

__all__ = ["main", "build_parser"]

CHECKPOINT, BEST, CONFIG, METRICS = "checkpoint.pt", "best.pt", "config.json", "metrics.json"
EVALUATION = "evaluation.json"
#: options of ``train`` that a resumed run takes from the command line (the rest must match)
RESUME_HONOURED = (
    "steps",
    "lr",
    "early_stopping",
    "eval_every",
    "checkpoint_every",
    "iwae_k",
    "quality_samples",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        self.exit(2, f"ppdgm: error: {message} (see ppdgm --help)\n")


def _dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return dims


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.5,0.999, got {text!r}"
        ) from None


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def _non_negative(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _train_options() -> argparse.ArgumentParser:
    """The options every family's ``train`` takes: data, run folder and the training loop."""
    t = argparse.ArgumentParser(add_help=False)
    g = t.add_argument_group("data and run")
    g.add_argument(
        "--data",
        default=None,
        help="bundled name (see `ppdgm list`) or a path: .npy, .npz, .csv, PNG folder, IDX "
        "(default: the family's own, digits for most)",
    )
    g.add_argument("--labels", default=None, help="labels file (.npy or IDX) for the data")
    g.add_argument("--label-column", default=None, help="CSV label column (name or 0-based index)")
    g.add_argument("--out", default=None, help="run folder (default runs/FAMILY)")
    g.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    g.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")
    o = t.add_argument_group("training")
    o.add_argument(
        "--steps",
        type=_positive(int),
        default=None,
        help="optimizer steps in total (default 3000; with --resume: the run's own, or a new total)",
    )
    o.add_argument(
        "--batch-size",
        type=_positive(int),
        default=None,
        help="examples per step (default: the family's, 128 for most)",
    )
    o.add_argument(
        "--lr",
        type=_positive(float),
        default=None,
        help="learning rate (default: the family's, 1e-3 for most)",
    )
    o.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=None,
        help="constant, or cosine or linear decay to 0 over the steps (default: the "
        "family's: cosine for nsf, linear for rbm and dbm, constant for the others)",
    )
    o.add_argument(
        "--val-fraction",
        type=_fraction,
        default=0.1,
        help="share of the training split held out for validation (model selection, early "
        "stopping); a file's own validation split is used where it has one; 0: none",
    )
    o.add_argument(
        "--early-stopping",
        type=_positive(int),
        default=None,
        metavar="PATIENCE",
        help="stop after PATIENCE evaluations without improvement of the validation loss",
    )
    o.add_argument(
        "--eval-every",
        type=_positive(int),
        default=None,
        help="steps between validation evaluations (default: 20 over the run)",
    )
    o.add_argument("--checkpoint-every", type=_positive(int), default=500)
    o.add_argument(
        "--iwae-k",
        type=_positive(int),
        default=1000,
        help="particles of the test IWAE bound (latent-variable families)",
    )
    o.add_argument(
        "--quality-samples",
        type=_non_negative_int,
        default=1000,
        help="samples compared with the test split for the sample-quality metrics (0: none)",
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--no-compile", action="store_true", help="run the training step eagerly")
    return t


@dataclasses.dataclass
class _Option:
    flag: str
    dest: str
    kwargs: dict[str, Any]


def _number_or_text(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def family_options(cls) -> list[_Option]:
    """A family's command-line options, one per hyperparameter of its constructor (those the
    command line does not set itself: seed, device, compile): the type from the default and
    the annotation, the choices from ``cls.choices``, the help from the docstring."""
    import inspect

    docs = cls.param_docs()
    sig = inspect.signature(cls.__init__)
    out = []
    for name, default in cls.param_defaults().items():
        if name in cls.cli_managed:
            continue
        annotation = str(sig.parameters[name].annotation)
        default = cls.cli_defaults.get(name, default)
        text = docs.get(name, "").replace("``", "")
        kwargs: dict[str, Any] = {"default": default, "help": text}
        if name in cls.choices:
            kwargs["choices"] = [c for c in cls.choices[name] if c is not None]
        elif isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif annotation.startswith("tuple[float"):
            kwargs["type"] = _floats
            kwargs["metavar"] = "X,X,..."
        elif isinstance(default, tuple):
            kwargs["type"] = _dims
            kwargs["metavar"] = "N,N,..."
        elif "float" in annotation and "str" in annotation:
            kwargs["type"] = _number_or_text
        elif isinstance(default, float) or annotation.startswith("float"):
            # 0 is a fine dropout, weight decay or momentum; the estimator refuses bad ranges
            kwargs["type"] = _non_negative
        elif isinstance(default, int) or annotation.startswith("int"):
            kwargs["type"] = _positive(int)
        if kwargs["help"] and default is not None and not isinstance(default, bool):
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            kwargs["help"] = kwargs["help"].rstrip(".") + f" (default: {shown})"
        out.append(_Option("--" + name.replace("_", "-"), name, kwargs))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ppdgm", description="Deep generative models as probabilistic programs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        help="train a model and write checkpoint, metrics and figures",
        description="Train a model family (see `ppdgm list`); `ppdgm train FAMILY --help` lists "
        "its options.",
    )
    families = t.add_subparsers(dest="model", required=True, metavar="FAMILY", parser_class=_Parser)
    common = _train_options()
    from .estimators import REGISTRY

    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        f = families.add_parser(
            name,
            help=cls.summary,
            description=f"{cls.summary}. Model options come from ppdgm.{cls.__name__}.",
            parents=[common],
        )
        group = f.add_argument_group(f"{name} model options (ppdgm.{cls.__name__})")
        for option in family_options(cls):
            group.add_argument(option.flag, dest=option.dest, **option.kwargs)

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run", help="run folder (or its checkpoint.pt)")
    s.add_argument("-n", "--num-samples", type=_positive(int), default=64)
    s.add_argument(
        "--out", required=True, help="output file: .png (grid), .npy (array) or .txt (text)"
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--temperature",
        type=_positive(float),
        default=None,
        help="divide the logits by this (sequence models): below 1 more conservative",
    )
    s.add_argument("--mean", action="store_true", help="the likelihood's mean instead of a draw")
    s.add_argument("--last", action="store_true", help=f"use {CHECKPOINT} instead of {BEST}")
    s.add_argument("--device", default="auto")

    e = sub.add_parser(
        "evaluate",
        help=f"recompute a run's metrics on the test split (written to {EVALUATION})",
    )
    e.add_argument("run", help="run folder")
    e.add_argument("--iwae-k", type=_positive(int), default=None, help="default: the run's own")
    e.add_argument(
        "--quality-samples",
        type=_non_negative_int,
        default=None,
        help="samples for the sample-quality metrics (0: none; default: the run's own)",
    )
    e.add_argument("--last", action="store_true", help=f"use {CHECKPOINT} instead of {BEST}")
    e.add_argument(
        "--out", default=None, help=f"JSON file for the metrics (default RUN/{EVALUATION})"
    )
    e.add_argument("--device", default="auto")

    i = sub.add_parser(
        "infer",
        help="posterior of a model of yours (FILE.py:FUNCTION) given a CSV of data",
        description="Map the CSV's columns to the model's arguments by name, sample the "
        "posterior (NUTS/HMC) or fit a guide (SVI), print the summary, and write "
        "posterior.nc, summary.csv, trace.png, rank.png and ppc.png.",
    )
    i.add_argument("model", help="FILE.py:FUNCTION, a model written with pyroapi's names")
    i.add_argument("--data", default=None, help="CSV with a header; columns = model arguments")
    i.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a scalar argument of the model (repeatable), e.g. --arg num_components=3",
    )
    i.add_argument(
        "--matrix",
        action="append",
        default=[],
        metavar="NAME=COLS",
        help="join CSV columns into one (N, k) matrix argument (repeatable): NAME=a,b,c, or "
        "NAME=* for every column that names no argument, e.g. --matrix X=*",
    )
    i.add_argument("--method", default="nuts", choices=["nuts", "hmc", "svi"])
    i.add_argument("--backend", default="numpyro", choices=["numpyro", "pyro"])
    i.add_argument("--chains", type=_positive(int), default=4)
    i.add_argument("--warmup", type=_positive(int), default=1000)
    i.add_argument("--samples", type=_positive(int), default=1000, help="draws per chain")
    i.add_argument("--target-accept", type=_positive(float), default=None)
    i.add_argument("--guide", default="normal", choices=["normal", "multivariate_normal", "iaf"])
    i.add_argument("--steps", type=_positive(int), default=2000, help="SVI steps")
    i.add_argument("--lr", type=_positive(float), default=0.01, help="SVI learning rate")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", default=None, help="output folder (default runs/FUNCTION)")
    i.add_argument("--overwrite", action="store_true", help="replace existing results in --out")
    i.add_argument("--no-progress", action="store_true", help="no progress bars")

    sub.add_parser("list", help="models and datasets available")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        args.given = _given_options(parser, sys.argv[1:] if argv is None else argv)
    try:
        code = {
            "train": _train,
            "sample": _sample,
            "evaluate": _evaluate,
            "infer": _infer,
            "list": _list,
        }[args.command](args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except PpdgmError as e:
        print(f"ppdgm: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ppdgm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`ppdgm list | head`): no traceback, and none at exit either
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the options given on the command line (not left to defaults)."""

    def subparsers(p):
        return [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]

    train = subparsers(parser)[0].choices["train"]
    actions = [a for f in subparsers(train)[0].choices.values() for a in f._actions]
    saved = [(a, a.default) for a in actions if a.dest != "help"]
    try:
        for a, _ in saved:
            a.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv))) - {"command", "model"}
    finally:
        for a, default in saved:
            a.default = default


# -- helpers ------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    import pyro
    import torch

    from . import __version__

    return {
        "ppdgm": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "numpy": np.__version__,
    }


def _load_run_data(cfg: dict[str, Any]):
    from .data import load_data, split_validation

    data = load_data(cfg["data"], labels=cfg.get("labels"), label_column=cfg.get("label_column"))
    # runs made before validation splits existed trained on the whole training split
    data = split_validation(data, cfg.get("val_fraction", 0.0))
    if cfg.get("reshape_to") is not None:
        shape = tuple(cfg["reshape_to"])
        for part in ("x_train", "x_val", "x_test"):
            x = getattr(data, part)
            if x is not None:
                setattr(data, part, x.reshape(len(x), *shape))
    return data


def _run_paths(run: str, last: bool = False) -> tuple[Path, Path]:
    """The run folder and the checkpoint to read: ``best.pt`` where there is one (unless
    ``last``), else ``checkpoint.pt``; a checkpoint file given directly is used as it is."""
    path = Path(run)
    if path.is_file():
        return path.parent, path
    if not path.is_dir():
        raise ConfigError(f"{run}: no such run folder")
    for name in (CHECKPOINT,) if last else (BEST, CHECKPOINT):
        if (path / name).is_file():
            return path, path / name
    raise ConfigError(f"{path}: holds no {CHECKPOINT}; is it a ppdgm run folder?")


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / CONFIG).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder}: holds no {CONFIG}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{folder / CONFIG}: not valid JSON ({e})") from None


def _check_data(est, data, source: str) -> None:
    """Refuse data that does not fit the trained model, naming the data file."""
    for part in ("x_train", "x_val", "x_test"):
        x = getattr(data, part)
        if x is not None:
            est.check_data(x, source)


def quality_features(data) -> str | None:
    """The feature space for sample quality: the digits classifier's for the bundled digits,
    the standardized raw values otherwise."""
    if str(data.name).startswith("digits") and tuple(data.image_shape or ()) == (1, 8, 8):
        return "digits"
    return None


def _compute_metrics(est, data, iwae_k: int, quality_samples: int = 1000) -> dict[str, Any]:
    """The family's figures of merit on the test split (and the validation split if any), and
    the sample quality of ``quality_samples`` samples against as many test examples."""

    def labels(split: str) -> dict[str, Any]:
        y = getattr(data, f"y_{split}")
        return {"y": y} if est.uses_labels() and y is not None else {}

    metrics = {
        "iwae_k": iwae_k,
        **est.metrics(data.x_test, "test", iwae_k=iwae_k, **labels("test")),
    }
    if data.x_val is not None:
        metrics.update(est.metrics(data.x_val, "val", iwae_k=iwae_k, **labels("val")))
    if data.modes is not None:  # a toy mixture: mode collapse, for any family
        from .evaluation import mode_coverage

        seed = int(getattr(est, "seed", 0))
        cover = mode_coverage(est.sample(len(data.x_test), seed=seed), *data.modes)
        metrics["test_modes"] = cover["modes"]
        metrics["test_high_quality"] = cover["high_quality"]
    # precision and recall need more examples than their k = 3 neighbours
    if quality_samples and len(data.x_test) > 3:
        metrics.update(
            est.sample_metrics(
                data.x_test,
                "test",
                features=quality_features(data),
                max_samples=quality_samples,
                **labels("test"),
            )
        )
    return metrics


# -- commands -----------------------------------------------------------------------------------
def _train(args) -> int:
    from ._utils import resolve_device
    from .estimators import get_family

    cls = get_family(args.model)
    resolve_device(args.device)  # refuse a device that is not here before anything is written
    out = Path(args.out or f"runs/{args.model}")
    ckpt, best = out / CHECKPOINT, out / BEST
    if args.resume:
        if not ckpt.is_file():
            raise ConfigError(f"{out}: nothing to resume (no {CHECKPOINT}); drop --resume to start")
        cfg = _resume_config(_read_config(out), args)
    else:
        if ckpt.exists() and not args.overwrite:
            raise ConfigError(
                f"{out}: already holds a run; use --resume to continue it or --overwrite"
            )
        cfg = _new_config(args)
    data = _load_run_data(cfg)
    params = cls.params_from_saved(cfg["params"])
    params["device"] = args.device
    # --no-compile turns compilation off; otherwise the family's default holds (a family
    # whose step cannot be traced defaults to eager)
    params["compile"] = False if args.no_compile else cls.param_defaults()["compile"]
    # a family that takes a vocabulary or a number of symbols gets them from the data (text)
    for name, value in (("vocabulary", data.vocabulary), ("num_classes", data.num_bins)):
        if name in params and params[name] is None and value is not None:
            params[name] = value
    est = cls(**params)
    # the data-dependent settings (a likelihood left to "auto", the number of integer values)
    # are fixed for the run from every split, so that the test data fit the trained model
    every = [x for x in (data.x_train, data.x_val, data.x_test) if x is not None]
    settings = est.data_settings(*every, source=str(cfg["data"]))
    fixed = {k: v for k, v in settings.items() if k in params and params[k] in (None, "auto")}
    est.set_params(**fixed)
    params.update(fixed)
    labelled = est.uses_labels()
    if labelled and data.y_train is None:
        raise ConfigError(
            f"{cfg['data']}: this model is conditional and needs labels; give --labels"
        )
    if cfg.get("early_stopping") and data.x_val is None:
        raise ConfigError("--early-stopping needs a validation split; set --val-fraction above 0")
    cfg["params"] = {**{k: v for k, v in params.items() if k != "compile"}, "device": "auto"}
    out.mkdir(parents=True, exist_ok=True)  # only now: bad input has been refused by here
    if args.overwrite and not args.resume:
        for name in (CHECKPOINT, BEST, METRICS, EVALUATION):
            (out / name).unlink(missing_ok=True)
    write_json(out / CONFIG, cfg)
    t0 = time.perf_counter()
    try:
        est.fit(
            data.x_train,
            data.y_train if labelled else None,
            y_val=data.y_val if labelled else None,
            num_steps=cfg["steps"],
            batch_size=cfg["batch_size"],
            lr=cfg["lr"],
            lr_schedule=cfg.get("lr_schedule"),
            X_val=data.x_val,
            early_stopping=cfg.get("early_stopping"),
            eval_every=cfg.get("eval_every"),
            progress=not args.no_progress,
            checkpoint_path=ckpt,
            checkpoint_every=cfg["checkpoint_every"],
            best_path=best if data.x_val is not None else None,
            resume=args.resume,
        )
    except KeyboardInterrupt:
        print(
            f"ppdgm: interrupted; the last complete checkpoint is {ckpt}; continue with "
            f"`ppdgm train {args.model} --out {out} --resume`",
            file=sys.stderr,
        )
        return 130
    except TrainingDivergedError as e:
        lr = f"{cfg['lr'] / 10:g}"
        raise TrainingDivergedError(
            f"{e}; the last good state is kept in {ckpt}: start over with a smaller learning "
            f"rate (--overwrite --lr {lr}) or continue from it (--resume --lr {lr})",
            step=e.step,
        ) from None
    seconds = time.perf_counter() - t0
    metrics = _compute_metrics(est, data, cfg["iwae_k"], cfg.get("quality_samples", 1000))
    metrics.update(
        {
            "num_steps": int(est.last_step_),
            "selected_step": int(est.selected_step_),
            "checkpoint": BEST if est.best_step_ is not None else CHECKPOINT,
            "best_val_loss": est.best_val_loss_,
            "stopped_early": est.stopped_early_,
            "val_fraction": cfg.get("val_fraction", 0.0),
            "seconds": seconds,
            "seed": cfg["params"]["seed"],
            "model": args.model,
            "data": str(cfg["data"]),
            **est.settings_,
            "device": str(est.device_),
            "versions": _versions(),
            "train_loss_final": float(est.history_["loss"][-1]),
        }
    )
    write_json(out / METRICS, metrics)
    est.plot_figures(data, out, cfg["params"]["seed"])
    stopped = " (stopped early)" if est.stopped_early_ else ""
    print(
        f"selected step {metrics['selected_step']} of {metrics['num_steps']}{stopped}; "
        f"{_headline(metrics, 'test')}; {seconds:.1f} s; wrote {out}/"
    )
    return 0


def _headline(metrics: dict[str, Any], prefix: str) -> str:
    """The test figures in one line: the ELBO and IWAE bound, or the exact NLL, or for a model
    without a density its sample quality (and modes on a toy mixture)."""
    if f"{prefix}_nll_iwae" in metrics:
        return (
            f"{prefix} ELBO {metrics[f'{prefix}_elbo']:.3f} nats, IWAE(K={metrics['iwae_k']}) "
            f"NLL {metrics[f'{prefix}_nll_iwae']:.3f} nats "
            f"({metrics[f'{prefix}_bits_per_dim']:.4f} bits/dim)"
        )
    if f"{prefix}_nll" in metrics:
        return (
            f"{prefix} NLL {metrics[f'{prefix}_nll']:.3f} nats "
            f"({metrics[f'{prefix}_bits_per_dim']:.4f} bits/dim)"
        )
    parts = []
    if f"{prefix}_frechet_distance" in metrics:
        parts.append(
            f"{prefix} Fréchet distance {metrics[f'{prefix}_frechet_distance']:.4f}, "
            f"precision {metrics[f'{prefix}_precision']:.3f}, "
            f"recall {metrics[f'{prefix}_recall']:.3f}"
        )
    if f"{prefix}_modes" in metrics:
        parts.append(
            f"{metrics[f'{prefix}_modes']} modes, "
            f"{metrics[f'{prefix}_high_quality']:.1%} high quality"
        )
    return ", ".join(parts) or f"{prefix}: no density and no sample quality (--quality-samples 0)"


def _resume_config(cfg: dict[str, Any], args) -> dict[str, Any]:
    """The run's configuration with the options a resumed run honours taken from the command
    line; any other option given with a value that differs from the run's is refused."""

    def flat(c):
        return {**{k: v for k, v in c.items() if k != "params"}, **c["params"]}

    new, old = flat(_new_config(args, load=False)), flat(cfg)
    changed = []
    for dest in sorted(getattr(args, "given", set()) & new.keys()):
        if dest == "model" or new[dest] == old.get(dest) or new[dest] == "auto":
            continue
        if dest in RESUME_HONOURED:
            print(
                f"ppdgm: resuming with --{dest.replace('_', '-')} {new[dest]} (was {old.get(dest)})"
            )
            cfg[dest] = new[dest]
        else:
            changed.append(f"--{dest.replace('_', '-')} {new[dest]} (the run has {old.get(dest)})")
    if changed:
        raise ConfigError(
            "--resume continues the run as it was configured, but these options differ: "
            + "; ".join(changed)
            + "; drop them, or start a new run (--overwrite). A resumed run takes only "
            + ", ".join(f"--{h.replace('_', '-')}" for h in RESUME_HONOURED)
        )
    return cfg


def _new_config(args, load: bool = True) -> dict[str, Any]:
    from .data import BUNDLED, load_data
    from .estimators import get_family

    cls = get_family(args.model)
    spec = args.data or cls.default_data
    data_spec = spec if spec in BUNDLED else str(Path(spec).resolve())
    labels = str(Path(args.labels).resolve()) if args.labels else None
    reshape = image_shape = None
    if load:
        data = load_data(data_spec, labels=labels, label_column=args.label_column)
        conv = getattr(args, "arch", None) == "conv"
        if (conv or getattr(cls, "needs_images", False)) and data.x_train.ndim == 2:
            if data.image_shape is None:
                who = "--arch conv" if conv else f"{args.model}"
                raise DataError(
                    f"{spec}: {who} needs images (N, C, H, W); these are vectors "
                    f"of length {data.x_train.shape[1]}"
                )
            reshape = list(data.image_shape)
        image_shape = list(data.image_shape) if data.image_shape else None
    params = {}
    for option in family_options(cls):
        value = getattr(args, option.dest)
        params[option.dest] = list(value) if isinstance(value, tuple) else value
    params["seed"] = args.seed
    return {
        "model": args.model,
        "data": data_spec,
        "labels": labels,
        "label_column": args.label_column,
        "reshape_to": reshape,
        "image_shape": image_shape,
        "steps": args.steps or 3000,
        "batch_size": args.batch_size or cls.default_batch_size,
        "lr": args.lr or cls.default_lr,
        "lr_schedule": args.lr_schedule or cls.default_lr_schedule,
        "iwae_k": args.iwae_k,
        "quality_samples": args.quality_samples,
        "val_fraction": args.val_fraction,
        "early_stopping": args.early_stopping,
        "eval_every": args.eval_every,
        "checkpoint_every": args.checkpoint_every,
        "params": params,
    }


def _sample(args) -> int:
    import inspect

    from . import viz
    from .estimators import load_estimator

    folder, ckpt = _run_paths(args.run, args.last)
    target = Path(args.out)
    if target.suffix.lower() not in (".png", ".npy", ".txt"):
        raise ConfigError(
            f"{target}: --out must end in .png (an image grid), .npy (an array) or .txt (text)"
        )
    est = load_estimator(ckpt, device=args.device)
    options = {}
    if target.suffix.lower() == ".txt" and getattr(est, "vocabulary", None) is None:
        raise ConfigError(f"{target}: only a model of text (with a vocabulary) writes .txt")
    if args.temperature is not None:
        if "temperature" not in inspect.signature(est.sample).parameters:
            raise ConfigError(f"--temperature: {type(est).__name__} samples have no temperature")
        options["temperature"] = args.temperature
    if args.mean:
        if "return_mean" not in inspect.signature(est.sample).parameters:
            raise ConfigError(f"--mean: {type(est).__name__} samples have no likelihood mean")
        options["return_mean"] = True
    x = est.sample(args.num_samples, seed=args.seed, **options)
    if target.suffix.lower() == ".npy":
        with atomic_write(target, "wb") as fh:
            np.save(fh, x)
    elif target.suffix.lower() == ".txt":
        est.write_text(x, target)
    elif hasattr(est, "plot_samples"):  # sequences: text, or curves
        est.plot_samples(x, target, title=f"{args.num_samples} samples")
    else:
        image_shape = None
        if len(est.data_shape_) == 1 and (folder / CONFIG).is_file():
            image_shape = _read_config(folder).get("image_shape")
        viz.plot_samples(x, image_shape, path=target, title=f"{args.num_samples} samples")
    print(f"wrote {args.num_samples} samples from {ckpt.name} to {target}")
    return 0


def _evaluate(args) -> int:
    from .estimators import load_estimator

    folder, ckpt = _run_paths(args.run, args.last)
    cfg = _read_config(folder)
    est = load_estimator(ckpt, device=args.device)
    data = _load_run_data(cfg)
    _check_data(est, data, str(cfg["data"]))
    k = args.iwae_k or cfg.get("iwae_k", 1000)
    q = cfg.get("quality_samples", 1000) if args.quality_samples is None else args.quality_samples
    metrics = {
        **_compute_metrics(est, data, k, q),
        "checkpoint": ckpt.name,
        "step": est.selected_step_,
        "versions": _versions(),
    }
    target = Path(args.out) if args.out else folder / EVALUATION
    write_json(target, metrics)
    for key, value in metrics.items():
        if key.startswith("test_") or key in ("iwae_k", "num_test"):
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"({ckpt.name}, step {est.selected_step_}); wrote {target}")
    return 0


INFER_FILES = ("posterior.nc", "summary.csv", "trace.png", "rank.png", "ppc.png")


def _scalar_args(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ConfigError(f"--arg {item!r}: expected NAME=VALUE")
        for kind in (int, float):
            try:
                out[name] = kind(text)
                break
            except ValueError:
                continue
        else:
            raise ConfigError(f"--arg {item!r}: {text!r} is not a number")
    return out


def _infer(args) -> int:
    from .inference.user import as_call, bind_columns, gather_matrices, load_function

    fn = load_function(args.model)
    extra = _scalar_args(args.arg)
    columns = {}
    if args.data is not None:
        from .data.files import read_csv_columns

        path = Path(args.data)
        if not path.is_file():
            raise DataError(f"data file {path} does not exist")
        columns = read_csv_columns(path)
    if args.matrix:
        if args.data is None:
            raise ConfigError("--matrix needs --data (a CSV whose columns it joins)")
        columns = gather_matrices(fn, columns, args.matrix, args.data)
    call_args, kwargs = as_call(fn, bind_columns(fn, columns, args.data or "(no --data)", extra))
    out = Path(args.out) if args.out else Path("runs") / fn.__name__
    existing = [name for name in INFER_FILES if (out / name).exists()]
    if existing and not args.overwrite:
        raise ConfigError(f"{out}: already holds results ({', '.join(existing)}); use --overwrite")
    if args.method != "svi" and args.backend == "numpyro":
        from .inference._jax import provide_host_devices

        # one (virtual) CPU device per chain, so that NumPyro runs them in parallel
        provide_host_devices(min(args.chains, 32))
    import warnings

    from . import inference
    from .errors import ConvergenceWarning

    progress = not args.no_progress
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if args.method == "svi":
            runner = inference.SVI(
                fn,
                guide=args.guide,
                backend=args.backend,
                num_steps=args.steps,
                learning_rate=args.lr,
                num_samples=args.samples,
                progress_bar=progress,
            )
        else:
            kernel_kwargs = {}
            if args.target_accept is not None:
                if not args.target_accept < 1:
                    raise ConfigError("--target-accept must be below 1")
                kernel_kwargs["target_accept_prob"] = args.target_accept
            runner = inference.MCMC(
                fn,
                kernel=args.method,
                backend=args.backend,
                num_warmup=args.warmup,
                num_samples=args.samples,
                num_chains=args.chains,
                kernel_kwargs=kernel_kwargs,
                progress_bar=progress,
            )
        # only a keyword-only model argument named "seed" could meet the option here
        idata = runner.run(*call_args, seed=args.seed, **kwargs)
    seconds = time.perf_counter() - start
    import arviz as az

    from .inference.posterior import quiet_arviz

    # draws from a guide have no R-hat or ESS to report
    with quiet_arviz():
        summary = az.summary(idata, kind="all" if args.method != "svi" else "stats")
        written = _write_infer_outputs(idata, summary, out, args.seed)
    print(summary.to_string())
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    print(
        f"{args.method} on {args.backend} took {seconds:.1f} s; wrote {', '.join(written)} to {out}"
    )
    return 0


def _write_infer_outputs(idata, summary, out: Path, seed: int) -> list[str]:
    """Write the result files into a temporary folder beside ``out`` and move them in only
    when every one was written: a failure part-way leaves the earlier results as they were,
    never a mix of old and new files."""
    import shutil
    import tempfile
    import warnings

    from . import viz

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        idata.to_netcdf(str(tmp / "posterior.nc"))
        with open(tmp / "summary.csv", "w") as fh:
            summary.to_csv(fh)
        written = ["posterior.nc", "summary.csv", "trace.png", "rank.png"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            viz.plot_trace(idata, tmp / "trace.png")
            viz.plot_rank(idata, tmp / "rank.png")
            if "posterior_predictive" in idata.groups() and "observed_data" in idata.groups():
                viz.plot_ppc(idata, tmp / "ppc.png", seed=seed)
                written.append("ppc.png")
            else:
                print("the model has no observed sites: no ppc.png", file=sys.stderr)
        for name in INFER_FILES:
            (out / name).unlink(missing_ok=True)
        for name in written:  # created by their writers, so with the umask's permissions
            (tmp / name).replace(out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def _list(args) -> int:
    from .data import list_datasets
    from .estimators import REGISTRY

    for name in sorted(REGISTRY):
        print(f"model    {name:16s} {REGISTRY[name].summary}")
    for name, desc in list_datasets():
        print(f"dataset  {name:16s} {desc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
