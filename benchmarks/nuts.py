"""NUTS speed: ppdgm on NumPyro and on Pyro against plain NumPyro, plain Pyro and PyMC.

Two posteriors, each sampled with 1 chain, 1000 warmup + 1000 draws:

  * eight schools, non-centered (8 observations, 10 latent dimensions);
  * Bayesian logistic regression on scikit-learn's breast-cancer data, standardized
    (569 x 30; weights ~ N(0, 1), intercept ~ N(0, 5)).

Reported per method: the minimum bulk ESS over all latent coordinates, the sampling time
in seconds excluding compilation, min bulk ESS per second, and the compilation time.
For JAX the compilation time is the union of the intervals JAX reports for tracing,
lowering and backend compilation during the call (``jax.monitoring`` events), subtracted
from the wall time; PyMC reports its own sampling time. Pyro is not compiled, except in the
row ppdgm-pyro-jit (Pyro's ``jit_compile=True``, whose tracing time is inside its seconds).
The ppdgm rows time the sampler only (``MCMC.timings_["sampling"]``); the building of the
InferenceData (log-likelihood, posterior predictive) is printed separately.

The NumPyro-based methods are run ``--repeats`` times, interleaved (order alternating),
with different seeds, after one short unmeasured run each; the median ESS/s is reported.
Ratios are to plain NumPyro.

End to end, equal output: the wall time from the model and NumPy data to an ArviZ
``InferenceData`` with posterior, pointwise log-likelihood and posterior predictive:
plain NumPyro is ``MCMC.run`` + ``Predictive`` + ``az.from_numpyro``; ppdgm is
``ppdgm.inference.mcmc`` (which also computes its convergence checks), with its progress
bar off and on. Compilation is included on both sides and JAX's persistent cache is off for
these rows, so each run compiles as a first run in a new process would. Last, the
persistent cache: ``ppdgm.inference.mcmc`` on eight schools in two new processes in turn,
sharing a fresh cache folder, against plain NumPyro in a new process.

    python benchmarks/nuts.py [--repeats 3] [--skip-pyro] [--skip-pymc] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore", category=FutureWarning)

# ---------------------------------------------------------------- compile-time accounting

_INTERVALS: list[tuple[float, float]] = []
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def _listen():
    import jax.monitoring

    def on_event(event, duration, **kwargs):
        if event in _COMPILE_EVENTS:
            end = time.perf_counter()
            _INTERVALS.append((end - duration, end))

    jax.monitoring.register_event_duration_secs_listener(on_event)


def _compile_seconds(start: float, end: float) -> float:
    """Length of the union of compile intervals inside [start, end] (nesting counted once)."""
    spans = sorted((max(a, start), min(b, end)) for a, b in _INTERVALS if b > start and a < end)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in spans:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def _min_ess(arrays: dict[str, np.ndarray]) -> float:
    """Minimum bulk ESS over every coordinate; arrays are (draws, ...) for one chain."""
    import arviz as az

    post = az.from_dict(posterior={k: np.asarray(v)[None] for k, v in arrays.items()})
    ess = az.ess(post, method="bulk")
    return float(min(np.min(v.values) for v in ess.data_vars.values()))


# ---------------------------------------------------------------- data and models


def schools_data():
    y = np.array([28, 8, -3, 7, -1, 1, 18, 12], dtype=float)
    sigma = np.array([15, 10, 16, 11, 9, 11, 10, 18], dtype=float)
    return (sigma,), {"y": y}


def cancer_data():
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return (x,), {"y": y.astype(float)}


def make_models(pyro, dist):
    """The two models over a namespace of primitives (``sample``, ``plate``) and one of
    distributions: with pyroapi's names they are write-once models; with numpyro or pyro
    and their distributions they are plain NumPyro or plain Pyro programs."""

    def eight_schools(sigma, y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("school", len(sigma)):
            theta_raw = pyro.sample("theta_raw", dist.Normal(0.0, 1.0))
            pyro.sample("y", dist.Normal(mu + tau * theta_raw, sigma), obs=y)

    def logistic(x, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
        b = pyro.sample("b", dist.Normal(0.0, 5.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

    return {"eight_schools": eight_schools, "logistic": logistic}


def write_once_models():
    import pyroapi

    return make_models(pyroapi.pyro, pyroapi.distributions)


def numpyro_models():
    import numpyro
    import numpyro.distributions

    return make_models(numpyro, numpyro.distributions)


def pyro_models():
    import pyro
    import pyro.distributions

    return make_models(pyro, pyro.distributions)


# ---------------------------------------------------------------- methods


def run_ppdgm(model, args, kwargs, backend, seed, warmup, samples, kernel_kwargs=None):
    import ppdgm.inference as inf

    sampler = inf.MCMC(
        model,
        backend=backend,
        num_warmup=warmup,
        num_samples=samples,
        num_chains=1,
        progress_bar=False,
        warn=False,
        kernel_kwargs=kernel_kwargs,
    )
    start = time.perf_counter()
    idata = sampler.run(*args, seed=seed, **kwargs)
    end = time.perf_counter()
    sampling = sampler.timings_["sampling"]
    sampling_start = end - sampler.timings_["postprocess"] - sampling
    compile_s = (
        _compile_seconds(sampling_start, sampling_start + sampling) if backend == "numpyro" else 0.0
    )
    latent = {k: idata.posterior[k].values[0] for k in idata.posterior.data_vars}
    return {
        "draws": latent,
        "ess": _min_ess(latent),
        "seconds": sampling - compile_s,
        "compile": compile_s,
        "post": sampler.timings_["postprocess"],
        "total": end - start,
    }


def run_numpyro(model, args, kwargs, seed, warmup, samples):
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    args = tuple(jnp.asarray(a) for a in args)
    kwargs = {k: jnp.asarray(v) for k, v in kwargs.items()}
    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, progress_bar=False)
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), *args, **kwargs)
    draws = jax.block_until_ready(mcmc.get_samples())
    end = time.perf_counter()
    compile_s = _compile_seconds(start, end)
    draws = {k: np.asarray(v) for k, v in draws.items()}
    return {
        "draws": draws,
        "ess": _min_ess(draws),
        "seconds": end - start - compile_s,
        "compile": compile_s,
        "total": end - start,
    }


def run_numpyro_e2e(model, args, kwargs, seed, warmup, samples):
    import arviz as az
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS, Predictive

    start = time.perf_counter()
    jargs = tuple(jnp.asarray(a) for a in args)
    jkwargs = {k: jnp.asarray(v) for k, v in kwargs.items()}
    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed), *jargs, **jkwargs)
    pp = Predictive(model, mcmc.get_samples())(jax.random.PRNGKey(seed + 1), *jargs)
    idata = az.from_numpyro(mcmc, posterior_predictive=pp)
    assert {"posterior", "log_likelihood", "posterior_predictive"} <= set(idata.groups())
    return time.perf_counter() - start


def run_ppdgm_e2e(model, args, kwargs, seed, warmup, samples, progress):
    import ppdgm.inference as inf

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = inf.mcmc(
            model,
            *args,
            num_warmup=warmup,
            num_samples=samples,
            num_chains=1,
            seed=seed,
            progress_bar=progress,
            **kwargs,
        )
    assert {"posterior", "log_likelihood", "posterior_predictive"} <= set(idata.groups())
    return time.perf_counter() - start


_PROCESS = """
import sys, time
t0 = time.perf_counter()
import warnings; warnings.simplefilter("ignore")
import numpy as np
y = np.array([28, 8, -3, 7, -1, 1, 18, 12.0]); sigma = np.array([15, 10, 16, 11, 9, 11, 10, 18.0])
import jax, jax.numpy as jnp, arviz as az
import numpyro, numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, Predictive
if sys.argv[1] == "ppdgm":
    import ppdgm.inference as inf
    from ppdgm.models.classical import eight_schools
    t1 = time.perf_counter()
    inf.mcmc(eight_schools, sigma, y=y, num_chains=1, progress_bar=False, seed=0)
else:
    def eight_schools(sigma, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("school", len(sigma)):
            theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0))
            numpyro.deterministic("theta", mu + tau * theta_raw)
            numpyro.sample("y", dist.Normal(mu + tau * theta_raw, sigma), obs=y)
    t1 = time.perf_counter()
    m = MCMC(NUTS(eight_schools), num_warmup=1000, num_samples=1000, progress_bar=False)
    m.run(jax.random.PRNGKey(0), jnp.asarray(sigma), y=jnp.asarray(y))
    pp = Predictive(eight_schools, m.get_samples())(jax.random.PRNGKey(1), jnp.asarray(sigma))
    az.from_numpyro(m, posterior_predictive=pp)
print(time.perf_counter() - t1, time.perf_counter() - t0)
"""


def run_processes(repeats: int) -> None:
    """Eight schools in new processes: plain NumPyro; ppdgm with a fresh cache (first run)
    and again with that cache (second run). Seconds from the imports done to the result,
    and in brackets the whole process including imports."""
    import os
    import subprocess
    import sys
    import tempfile

    def one(kind, env):
        out = subprocess.run(
            [sys.executable, "-c", _PROCESS, kind], env=env, capture_output=True, text=True
        )
        if out.returncode:
            raise RuntimeError(out.stderr[-2000:])
        return tuple(float(v) for v in out.stdout.split()[-2:])

    rows = {"numpyro, new process": [], "ppdgm, first run": [], "ppdgm, second run": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "PPDGM_CACHE_DIR": cache, "PPDGM_JAX_CACHE": "1"}
            rows["numpyro, new process"].append(one("numpyro", env))
            rows["ppdgm, first run"].append(one("ppdgm", env))
            rows["ppdgm, second run"].append(one("ppdgm", env))
    print("\neight schools end to end in a new process (median of", repeats, "), seconds:")
    for name, runs in rows.items():
        run_s = statistics.median(r[0] for r in runs)
        whole = statistics.median(r[1] for r in runs)
        print(f"{name:22s} {run_s:6.2f}  (whole process {whole:.2f})")


def run_pyro(model, args, kwargs, seed, warmup, samples):
    import pyro
    import torch
    from pyro.infer.mcmc import MCMC, NUTS

    args = tuple(torch.as_tensor(a, dtype=torch.float32) for a in args)
    kwargs = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in kwargs.items()}
    pyro.set_rng_seed(seed)
    mcmc = MCMC(NUTS(model), num_samples=samples, warmup_steps=warmup, disable_progbar=True)
    start = time.perf_counter()
    mcmc.run(*args, **kwargs)
    end = time.perf_counter()
    draws = {k: v.numpy() for k, v in mcmc.get_samples().items()}
    return {"ess": _min_ess(draws), "seconds": end - start, "compile": 0.0, "total": end - start}


def run_pymc(name, args, kwargs, seed, warmup, samples):
    import pymc as pm

    with pm.Model():
        if name == "eight_schools":
            (sigma,) = args
            mu = pm.Normal("mu", 0.0, 5.0)
            tau = pm.HalfCauchy("tau", 5.0)
            theta_raw = pm.Normal("theta_raw", 0.0, 1.0, shape=len(sigma))
            pm.Normal("y", mu + tau * theta_raw, sigma, observed=kwargs["y"])
        else:
            (x,) = args
            w = pm.Normal("w", 0.0, 1.0, shape=x.shape[1])
            b = pm.Normal("b", 0.0, 5.0)
            pm.Bernoulli("y", logit_p=pm.math.dot(x, w) + b, observed=kwargs["y"])
        start = time.perf_counter()
        idata = pm.sample(
            draws=samples,
            tune=warmup,
            chains=1,
            cores=1,
            random_seed=seed,
            progressbar=False,
            compute_convergence_checks=False,
        )
        end = time.perf_counter()
    sampling = float(idata.posterior.attrs["sampling_time"])
    draws = {k: idata.posterior[k].values[0] for k in idata.posterior.data_vars}
    return {
        "ess": _min_ess(draws),
        "seconds": sampling,
        "compile": end - start - sampling,
        "total": end - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--skip-pyro", action="store_true")
    parser.add_argument("--skip-pymc", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    opts = parser.parse_args()
    import os

    # the in-process rows compile on every run, as a first run would (see the docstring)
    os.environ["PPDGM_JAX_CACHE"] = "0"
    _listen()
    import jax

    print(f"jax devices: {jax.devices()}; 1 chain, {opts.warmup} warmup + {opts.samples} draws")
    datasets = {"eight_schools": schools_data(), "logistic": cancer_data()}
    wo, npm, pym = write_once_models(), numpyro_models(), pyro_models()
    pymc_ok = not opts.skip_pymc
    if pymc_ok:
        try:
            import pymc  # noqa: F401
        except Exception as e:  # PyMC is optional: report and go on
            print(f"PyMC not available ({type(e).__name__}: {e}); its rows are skipped")
            pymc_ok = False
    w, s = opts.warmup, opts.samples
    for name, (args, kwargs) in datasets.items():
        rows: dict[str, list[dict]] = {"numpyro": [], "ppdgm-numpyro": []}
        # one short unmeasured run of each first, so that neither pays JAX's start-up
        run_numpyro(npm[name], args, kwargs, 99, 20, 20)
        run_ppdgm(wo[name], args, kwargs, "numpyro", 99, 20, 20)
        for rep in range(opts.repeats):
            order = ["numpyro", "ppdgm-numpyro"][:: 1 if rep % 2 == 0 else -1]
            for method in order:
                if method == "numpyro":
                    rows[method].append(run_numpyro(npm[name], args, kwargs, rep, w, s))
                else:
                    rows[method].append(run_ppdgm(wo[name], args, kwargs, "numpyro", rep, w, s))
        if not opts.skip_pyro:
            rows["pyro"] = [run_pyro(pym[name], args, kwargs, 0, w, s)]
            rows["ppdgm-pyro"] = [run_ppdgm(wo[name], args, kwargs, "pyro", 0, w, s)]
            jit = {"jit_compile": True, "ignore_jit_warnings": True}
            rows["ppdgm-pyro-jit"] = [run_ppdgm(wo[name], args, kwargs, "pyro", 0, w, s, jit)]
        if pymc_ok:
            rows["pymc"] = [run_pymc(name, args, kwargs, 0, w, s)]
        base = statistics.median(r["ess"] / r["seconds"] for r in rows["numpyro"])
        print(f"\n{name}")
        print(
            f"{'method':15s} {'min ESS':>8s} {'sample s':>9s} {'ESS/s':>8s} {'ratio':>6s} "
            f"{'compile s':>9s} {'idata s':>8s}"
        )
        for method, runs in rows.items():
            rates = [r["ess"] / r["seconds"] for r in runs]
            mid = sorted(range(len(runs)), key=lambda i: rates[i])[len(runs) // 2]
            r = runs[mid]
            post = f"{r['post']:8.2f}" if "post" in r else f"{'':8s}"
            print(
                f"{method:15s} {r['ess']:8.0f} {r['seconds']:9.2f} {rates[mid]:8.0f} "
                f"{rates[mid] / base:6.2f} {r['compile']:9.2f} {post}"
            )
        if len(runs) > 1 or opts.repeats > 1:
            per = [
                (a["ess"] / a["seconds"]) / (b["ess"] / b["seconds"])
                for a, b in zip(rows["ppdgm-numpyro"], rows["numpyro"], strict=True)
            ]
            print("ppdgm-numpyro / numpyro per repeat: " + ", ".join(f"{p:.2f}" for p in per))
            same = all(
                all(np.array_equal(a["draws"][k], b["draws"][k]) for k in b["draws"])
                for a, b in zip(rows["ppdgm-numpyro"], rows["numpyro"], strict=True)
            )
            print(
                "same seed, same draws (so each ratio is a ratio of times): "
                + ("yes" if same else "no")
            )
        if not opts.skip_e2e:
            e2e: dict[str, list[float]] = {"numpyro": [], "ppdgm": [], "ppdgm+bar": []}
            for rep in range(opts.repeats):
                order = list(e2e)[:: 1 if rep % 2 == 0 else -1]
                for method in order:
                    if method == "numpyro":
                        t = run_numpyro_e2e(npm[name], args, kwargs, rep, w, s)
                    else:
                        t = run_ppdgm_e2e(
                            wo[name], args, kwargs, rep, w, s, progress=method == "ppdgm+bar"
                        )
                    e2e[method].append(t)
            base_t = statistics.median(e2e["numpyro"])
            print("end to end, equal output (compilation included), median seconds:")
            for method, times in e2e.items():
                mid = statistics.median(times)
                print(f"  {method:12s} {mid:6.2f}  ratio {mid / base_t:.3f}")
            per = [a / b for a, b in zip(e2e["ppdgm"], e2e["numpyro"], strict=True)]
            print("  ppdgm / numpyro per repeat: " + ", ".join(f"{p:.2f}" for p in per))
    if not opts.skip_e2e:
        run_processes(max(1, opts.repeats // 2))


if __name__ == "__main__":
    main()
