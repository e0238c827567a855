"""`ppdgm infer`: a user's model file and CSV, end to end, and each kind of bad input."""

import textwrap

import numpy as np
import pytest

from ppdgm.cli import INFER_FILES, main

MODEL = textwrap.dedent(
    """
    from pyroapi import distributions as dist
    from pyroapi import pyro


    def eight_schools(sigma, y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("school", len(sigma)):
            theta_raw = pyro.sample("theta_raw", dist.Normal(0.0, 1.0))
            pyro.sample("y", dist.Normal(mu + tau * theta_raw, sigma), obs=y)


    def poisson_rate(exposure, seed=None):
        # the observed column is called "seed", like an option of the sampler
        rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
        with pyro.plate("data", len(exposure)):
            pyro.sample("seed", dist.Poisson(rate * exposure), obs=seed)


    def normal_mean(x, prior_scale=10.0):
        mu = pyro.sample("mu", dist.Normal(0.0, prior_scale))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
    """
)
CSV = "y,sigma\n28,15\n8,10\n-3,16\n7,11\n-1,9\n1,11\n18,10\n12,18\n"
FAST = ["--warmup", "150", "--samples", "150", "--no-progress"]


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "schools.csv").write_text(CSV)
    return tmp_path


def _infer(files, *extra, data="schools.csv", fn="eight_schools"):
    argv = ["infer", f"{files / 'model.py'}:{fn}", "--out", str(files / "out"), *FAST, *extra]
    if data is not None:
        argv += ["--data", str(files / data)]
    return main(argv)


def test_infer_nuts_end_to_end(files, capsys):
    assert _infer(files, "--chains", "2", "--seed", "1") == 0
    out = capsys.readouterr().out
    assert "mu" in out and "tau" in out and "r_hat" in out
    for name in INFER_FILES:
        path = files / "out" / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert not [p for p in (files / "out").iterdir() if p.name.endswith(".tmp")]
    import arviz as az
    import pandas as pd

    idata = az.from_netcdf(files / "out" / "posterior.nc")
    assert idata.posterior["mu"].shape == (2, 150)
    np.testing.assert_allclose(
        idata.observed_data["y"].values, [28, 8, -3, 7, -1, 1, 18, 12], rtol=1e-6
    )
    assert {"posterior", "sample_stats", "log_likelihood", "posterior_predictive"} <= set(
        idata.groups()
    )
    summary = pd.read_csv(files / "out" / "summary.csv", index_col=0)
    assert {"mu", "tau", "theta_raw[0]"} <= set(summary.index)
    assert abs(summary.loc["mu", "mean"] - idata.posterior["mu"].values.mean()) < 1e-2
    # existing results are kept unless --overwrite
    assert _infer(files, "--chains", "1") == 1
    assert "already holds results" in capsys.readouterr().err
    assert _infer(files, "--chains", "1", "--overwrite") == 0


def test_infer_svi_on_pyro_with_scalar_argument(files, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 1.0, size=40)
    (files / "x.csv").write_text("x\n" + "\n".join(f"{v:.6f}" for v in x) + "\n")
    code = _infer(
        files,
        "--method",
        "svi",
        "--backend",
        "pyro",
        "--steps",
        "400",
        "--lr",
        "0.05",
        "--arg",
        "prior_scale=0.05",
        data="x.csv",
        fn="normal_mean",
    )
    assert code == 0, capsys.readouterr().err
    import arviz as az

    idata = az.from_netcdf(files / "out" / "posterior.nc")
    mu = idata.posterior["mu"].values
    assert mu.shape == (1, 150)
    # analytic posterior: precision 1/0.05^2 + 40, mean sum(x) / precision (about 0.18); had
    # the argument been dropped, the default prior_scale 10 would give about 2.0
    precision = 1 / 0.05**2 + 40
    assert abs(mu.mean() - x.sum() / precision) < 0.05
    assert "loss" in idata.groups()


def test_infer_columns_named_like_options_reach_the_model(files, capsys):
    (files / "counts.csv").write_text("exposure,seed\n1,30\n2,50\n3,50\n4,90\n")
    code = _infer(
        files,
        "--method",
        "svi",
        "--backend",
        "pyro",
        "--steps",
        "300",
        "--lr",
        "0.05",
        data="counts.csv",
        fn="poisson_rate",
    )
    assert code == 0, capsys.readouterr().err
    import arviz as az

    idata = az.from_netcdf(files / "out" / "posterior.nc")
    np.testing.assert_array_equal(idata.observed_data["seed"].values, [30, 50, 50, 90])
    # conjugate Gamma(2 + 220, 1 + 10) posterior: mean 222 / 11 = 20.2, sd 1.35, far from the
    # prior's mean 2 (the data were used) and from 222 / 5 = 44 without the exposure
    assert abs(float(idata.posterior["rate"].mean()) - 222 / 11) < 0.6


@pytest.mark.parametrize(
    "csv, message",
    [
        (
            "y,sigma,extra\n1,2,3\n",
            "column 'extra' matches no argument of eight_schools(sigma, y=None)",
        ),
        ("y\n1\n2\n", "no column for the argument 'sigma' of eight_schools(sigma, y=None)"),
        ("y,sigma\n1,2\nnan,3\n", "row 3, column 'y': 'nan' is not a finite number"),
        ("y,sigma\n1,2\n4,abc\n", "row 3, column 'sigma': 'abc' is not a number"),
        ("y,sigma\n1,2\n,3\n", "row 3, column 'y': empty cell (missing value)"),
        ("y,sigma\n1,2\n3\n", "row 3 has 1 columns, expected 2 (ragged rows)"),
        ("1,2\n3,4\n", "needs a header row naming the columns"),
        ("", "the file is empty"),
    ],
)
def test_infer_bad_csv_is_refused_by_name(files, capsys, csv, message):
    (files / "bad.csv").write_text(csv)
    assert _infer(files, data="bad.csv") == 1
    err = capsys.readouterr().err
    assert message in err, err
    assert "bad.csv" in err
    assert not (files / "out").exists()


@pytest.mark.parametrize(
    "argv_model, extra, message",
    [
        ("missing.py:f", [], "model file"),
        ("model.py", [], "expected FILE.py:FUNCTION"),
        (
            "model.py:nope",
            [],
            "has no function 'nope' (functions: eight_schools, normal_mean, poisson_rate)",
        ),
        ("model.py:eight_schools", ["--arg", "sigma"], "--arg 'sigma': expected NAME=VALUE"),
        ("model.py:eight_schools", ["--arg", "k=abc"], "'abc' is not a number"),
    ],
)
def test_infer_bad_model_or_options(files, capsys, argv_model, extra, message):
    model = argv_model if argv_model.startswith("missing") else f"{files / argv_model}"
    argv = ["infer", model, "--data", str(files / "schools.csv"), "--out", str(files / "o")]
    assert main(argv + extra) == 1
    assert message in capsys.readouterr().err


def test_infer_unknown_option_values_exit_2(files, capsys):
    for extra in (["--backend", "stan"], ["--method", "gibbs"], ["--chains", "0"]):
        with pytest.raises(SystemExit) as e:
            _infer(files, *extra)
        assert e.value.code == 2
        assert "ppdgm: error:" in capsys.readouterr().err


def test_matrix_argument_from_columns(tmp_path, capsys):
    """`--matrix x=a,b` joins columns into the design matrix of a regression, in the order
    given; `x=*` takes every column that names no argument."""
    (tmp_path / "reg.py").write_text(
        "from ppdgm.models.classical import linear_regression  # noqa: F401\n"
    )
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 40))
    y = 2.0 * a - 1.0 * b + 0.5 * c + 0.1 * rng.normal(size=40)
    rows = "\n".join(f"{u},{v},{w},{t}" for u, v, w, t in zip(a, b, c, y, strict=True))
    (tmp_path / "d.csv").write_text("a,b,c,y\n" + rows + "\n")
    base = ["infer", f"{tmp_path / 'reg.py'}:linear_regression", "--data",
            str(tmp_path / "d.csv"), "--arg", "noise=0.1", "--no-progress", "--method", "svi",
            "--steps", "1500", "--samples", "200"]  # fmt: skip

    def coefs(spec, out):
        assert main([*base, "--matrix", spec, "--out", str(tmp_path / out)]) == 0
        import arviz as az

        post = az.from_netcdf(tmp_path / out / "posterior.nc").posterior
        name = next(k for k in post.data_vars if post[k].ndim == 3)
        return post[name].mean(("chain", "draw")).values

    np.testing.assert_allclose(coefs("x=*", "all"), [2.0, -1.0, 0.5], atol=0.15)
    np.testing.assert_allclose(coefs("x=c,b,a", "order"), [0.5, -1.0, 2.0], atol=0.15)
    capsys.readouterr()
    assert main([*base, "--matrix", "x=a,nope", "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "--matrix x: no column 'nope'" in err and "d.csv" in err
    assert main([*base, "--matrix", "x=a,b", "--out", str(tmp_path / "bad")]) == 1
    assert "column 'c' matches no argument" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
