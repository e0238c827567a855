"""Every example runs end to end with a tiny budget."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _finite(*values):
    return all(np.isfinite(np.asarray(v, dtype=float)).all() for v in values)


def _check_mixture(resp):  # responsibilities: one probability row per point
    return resp.ndim == 2 and np.allclose(resp.sum(1), 1.0) and (resp >= 0).all()


def _check_path(path):  # a state per time step
    return path.ndim == 1 and set(np.unique(path)) <= {0, 1, 2}


def _check_topics(est):  # one word distribution per topic
    return est.ndim == 2 and np.allclose(est.sum(1), 1.0, atol=1e-4) and (est >= 0).all()


def _check_ppca(results):  # (covariance, sigma) per method: positive definite, sigma > 0
    return len(results) == 3 and all(
        _finite(cov, s) and np.all(np.linalg.eigvalsh(cov) > 0) and s > 0
        for cov, s in results.values()
    )


def _check_schools(results):
    return {"numpyro", "pyro"} <= set(results) and all(
        "posterior" in r.groups() and r.posterior["tau"].values.min() > 0 for r in results.values()
    )


# what each example returns, checked for its meaning even with a tiny budget
CHECKS = {
    "bayesian_regression": lambda r: r[0] > 0 and 0 <= r[1] <= 1,
    # the floor and each family: Fréchet distances above the floor, every figure finite
    "compare_families": lambda t: (
        set(t) == {"train/test floor", "vae", "made", "gan"}
        and all(
            r["test_frechet_distance"] > t["train/test floor"]["test_frechet_distance"]
            and _finite(*[v for v in r.values() if not isinstance(v, str)])
            for name, r in t.items()
            if name != "train/test floor"
        )
        and "test_nll" in t["vae"]
        and "test_nll" not in t["gan"]
    ),
    "custom_conditional_vae": lambda nll: _finite(nll) and nll > 0,
    "eight_schools": _check_schools,
    # KL(q || p) = log Z - ELBO per (target, flow): non-negative up to Monte Carlo error
    "flow_vi_energy": lambda gaps: (
        len(gaps) == 16 and all(np.isfinite(g) and g > -0.05 for g in gaps.values())
    ),
    "gaussian_mixture": _check_mixture,
    "hmm_viterbi": _check_path,
    "lda_svi": _check_topics,
    "ppca_nuts_svi_ml": _check_ppca,
    "semi_supervised_m2": lambda acc: 0.0 <= acc <= 1.0,
    # log p(x) >= ELBO (IWAE with 5000 particles), the gap split into its two parts
    "vae_amortization_gap": lambda r: (
        0.0 < r["acceptance_rate"] <= 1.0
        and all(total > -0.1 and np.isclose(total, a + b) for total, a, b in r["gaps"].values())
    ),
}


#: options beyond the tiny budget: the family comparison on three of its families
EXTRA_ARGS = {"compare_families": ["--families", "vae,made,gan"]}


def test_every_example_has_a_check():
    assert {p.stem for p in EXAMPLES} == set(CHECKS)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--steps", "5", *EXTRA_ARGS.get(path.stem, [])]
    if "--out" in path.read_text():
        argv += ["--out", str(tmp_path / "out")]
    result = _load(path).main(argv)
    assert CHECKS[path.stem](result), result


def test_m2_learns_from_few_labels():
    """With 100 labels and a short run, the M2 classifier is far better than chance."""
    mod = _load(next(p for p in EXAMPLES if p.stem == "semi_supervised_m2"))
    assert mod.main(["--steps", "600", "--labelled", "100"]) > 0.5
