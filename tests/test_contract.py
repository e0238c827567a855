"""The estimator contract, checked for every registered family: fit, sample, score, save/load,
hyperparameters, bad input, and the command line built from the constructor."""

import json

import numpy as np
import pytest
import torch

from ppdgm import cli
from ppdgm.data import load_data
from ppdgm.errors import ConfigError, DataValueError, NoDensityError, ShapeMismatchError
from ppdgm.estimators import REGISTRY, Estimator, get_family, load_estimator

#: a tiny configuration per family (every family must have one: see the first test)
TINY = {
    "vae": {"latent_dim": 2, "hidden_dims": (16,), "likelihood": "auto"},
    "fvsbn": {},
    "nade": {"hidden": 8},
    "made": {"hidden_dims": (16, 16), "num_orderings": 3},
    "nice": {"num_transforms": 2, "hidden_dims": (8,)},
    "realnvp": {"num_transforms": 2, "hidden_dims": (8,)},
    "maf": {"num_transforms": 2, "hidden_dims": (8,)},
    "nsf": {"num_transforms": 2, "hidden_dims": (8,), "count_bins": 4},
    "pixelcnn": {"channels": 8, "num_layers": 2},
    "glow": {"steps_per_level": 2, "hidden": 8},
    "cnf": {"hidden_dims": (8,), "solver": "rk4", "step_size": 0.5},
    "planar": {"num_transforms": 2},
    "radial": {"num_transforms": 2},
    "charrnn": {"hidden": 8, "num_layers": 1},
    "wavenet": {"channels": 8, "num_layers": 2},
    "rbm": {"num_hidden": 8, "sample_steps": 20},
    "dbm": {
        "hidden": (6, 4),
        "num_chains": 16,
        "sample_steps": 20,
        "ais_chains": 10,
        "ais_betas": 20,
    },
    "gan": {"hidden_dims": (16,), "latent_dim": 2},
    "bigan": {"hidden_dims": (16,), "latent_dim": 2},
    "ebm": {
        "hidden_dims": (8,),
        "langevin_steps": 2,
        "buffer_size": 64,
        "sample_steps": 5,
        "ais_chains": 10,
        "ais_betas": 20,
    },
}
FAMILIES = sorted(REGISTRY)


def test_every_family_has_a_tiny_configuration_and_a_summary():
    assert set(TINY) == set(REGISTRY)
    for name, cls in REGISTRY.items():
        assert issubclass(cls, Estimator) and cls.family == name
        assert cls.summary and "\n" not in cls.summary
        assert get_family(name) is cls
    listed = ", ".join(FAMILIES)
    with pytest.raises(ConfigError, match=rf"unknown model family 'nope'; choose one of {listed}$"):
        get_family("nope")


def _default_data(cls):
    """The family's default data, as images for a family that models images only."""
    data = load_data(cls.default_data)
    if getattr(cls, "needs_images", False):
        for part in ("x_train", "x_test"):
            x = getattr(data, part)
            setattr(data, part, x.reshape(len(x), *data.image_shape))
    return data


@pytest.fixture(scope="module", params=FAMILIES)
def fitted(request):
    cls = REGISTRY[request.param]
    data = _default_data(cls)
    est = cls(**TINY[request.param], seed=0, device="cpu")
    assert est.fit(data.x_train[:200], num_steps=5, batch_size=32) is est
    return est, data


def test_fit_sample_score_shapes(fitted):
    est, data = fitted
    x = data.x_test[:7]
    s = est.sample(5)
    assert s.shape == (5, *data.x_train.shape[1:]) and np.isfinite(s).all()
    np.testing.assert_array_equal(est.sample(4, seed=3), est.sample(4, seed=3))
    assert est.last_step_ == 5 and est.data_shape_ == data.x_train.shape[1:]
    if not est.has_density:
        with pytest.raises(NoDensityError, match="no log-density"):
            est.score_samples(x)
        return
    scores = est.score_samples(x)
    assert isinstance(scores, np.ndarray) and scores.shape == (7,) and np.isfinite(scores).all()
    assert est.score(x) == pytest.approx(float(np.mean(est.score_samples(x))), rel=1e-5)


def test_every_parameter_receives_a_gradient(fitted):
    est, data = fitted
    cls = type(est)
    # two steps: a zero-initialized last layer (Glow's couplings) passes no gradient on the first
    fresh = cls(**TINY[cls.family], seed=1, device="cpu").fit(data.x_train[:64], num_steps=2)
    params = fresh.trainer_.params
    # every parameter but those frozen by design (a GAN generator's moving average)
    assert params and len(params) == len(
        {id(p) for m in fresh._modules().values() for p in m.parameters() if p.requires_grad}
    )
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_save_load_round_trip_gives_identical_scores(fitted, tmp_path):
    est, data = fitted
    est.save(tmp_path / "m.pt")
    for back in (
        type(est).load(tmp_path / "m.pt", device="cpu"),
        load_estimator(tmp_path / "m.pt"),
    ):
        assert type(back) is type(est) and back.get_params() == {
            **est.get_params(),
            "device": back.device,
        }
        x = data.x_test[:6]
        if est.has_density:
            np.testing.assert_array_equal(back.score_samples(x), est.score_samples(x))
        np.testing.assert_array_equal(back.sample(3, seed=1), est.sample(3, seed=1))


def test_hyperparameters_come_from_the_constructor(fitted):
    est, _ = fitted
    cls = type(est)
    params = est.get_params()
    assert list(params) == list(cls.param_defaults())
    clone = cls(**params)
    assert clone.get_params() == params
    assert "seed=0" not in repr(cls(seed=0)) and "seed=3" in repr(cls(seed=3))
    with pytest.raises(ConfigError, match=rf"unknown parameter 'nope' for {cls.__name__}"):
        clone.set_params(nope=1)
    assert clone.set_params(seed=4) is clone and clone.seed == 4
    for name in cls.choices:
        with pytest.raises(ConfigError, match=rf"unknown {name} 'bogus'"):
            clone.set_params(**{name: "bogus"})
        assert getattr(clone, name) == params[name]  # a refused value changes nothing


def test_bad_input_is_refused_by_name(fitted):
    est, data = fitted
    cls = type(est)
    with pytest.raises(ShapeMismatchError, match="X"):
        est.score_samples(np.zeros((2, 3)))
    bad = data.x_test[:3].copy()
    bad.reshape(3, -1)[1, 0] = np.nan
    with pytest.raises(DataValueError, match="non-finite"):
        est.score_samples(bad)
    with pytest.raises(ConfigError, match="not fitted"):
        cls(**TINY[cls.family]).sample(2)
    with pytest.raises(ConfigError, match="num_steps"):
        cls(**TINY[cls.family]).fit(data.x_train[:10], num_steps=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_train_help_lists_exactly_the_constructors_hyperparameters(family, capsys):
    cls = REGISTRY[family]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", family, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    expected = {
        "--" + n.replace("_", "-") for n in cls.param_defaults() if n not in cls.cli_managed
    }
    if not expected:  # argparse leaves an empty group out of the help
        assert f"{family} model options" not in text
        return
    section = text[text.index(f"{family} model options") :]
    flags = {
        line.split()[0].rstrip(",")  # "--gated, --no-gated" for a switch
        for line in section.splitlines()[1:]
        if line.startswith("  --")
    }
    assert flags == expected


def test_list_has_one_line_per_family(capsys):
    assert cli.main(["list"]) == 0
    models = [line for line in capsys.readouterr().out.splitlines() if line.startswith("model")]
    assert [line.split()[1] for line in models] == FAMILIES
    for line, name in zip(models, FAMILIES, strict=True):
        assert line.endswith(REGISTRY[name].summary)


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_train_sample_evaluate_end_to_end(family, tmp_path, capsys):
    cls = REGISTRY[family]
    out = tmp_path / "run"
    argv = ["train", family, "--steps", "6", "--out", str(out), "--no-progress", "--iwae-k", "5"]
    for name, value in TINY[family].items():
        flag = "--" + name.replace("_", "-")
        argv += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    for name in ("checkpoint.pt", "best.pt", "config.json", "metrics.json", "samples.png"):
        assert (out / name).is_file(), name
    if family in (
        "nice",
        "realnvp",
        "maf",
        "nsf",
        "planar",
        "radial",
    ):  # 2-D default data: the density next to the data
        assert load_data(cls.default_data).x_train.shape[1:] == (2,)
        assert (out / "density.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == family and metrics["num_steps"] == 6
    config = json.loads((out / "config.json").read_text())
    assert set(config["params"]) >= {n for n in cls.param_defaults() if n not in ("compile",)}
    assert cli.main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape[0] == 4
    assert cli.main(["evaluate", str(out), "--iwae-k", "5"]) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert any(k.startswith("test_") for k in evaluation)
    assert evaluation["step"] == metrics["selected_step"]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_command_line_option_has_help(name):
    from ppdgm.cli import family_options

    missing = [o.flag for o in family_options(REGISTRY[name]) if not o.kwargs.get("help")]
    assert not missing, f"{name}: options without help text (the class docstring's Args:)"
