"""Langevin dynamics against NUTS on a posterior known in closed form, and many-chain
throughput on an energy.

1. Bayesian linear regression with known noise (N=500, D=5, weights ~ N(0, I)), whose
   posterior is Gaussian: ppdgm's MALA and ULA on the Pyro and NumPyro backends, SGLD with
   minibatches of 50 (Pyro), against NUTS (ppdgm.inference.mcmc on NumPyro, the peer). Every
   method runs 4 chains, 500 warmup + 2000 kept steps. Reported: sampling seconds
   (``posterior.attrs["sampling_time"]``, compilation included for JAX), the minimum bulk ESS
   over the weights, ESS per second, the largest error of the posterior mean in Monte Carlo
   standard errors (|mean - exact| / (sd / sqrt(ESS))), and the largest relative error of
   the posterior variances. Ratios of ESS/s are to NUTS.
2. An energy on R^2 sampled by MALA with 10, 100, 1,000 and 10,000 chains in one batch:
   microseconds per chain-step, so the batching's gain shows as chains grow.

    python benchmarks/langevin.py [--steps 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyroapi import distributions as wdist
from pyroapi import pyro as wpyro

from ppdgm.inference import langevin, mcmc

N, D, SIGMA = 500, 5, 1.0


def data(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D))
    y = x @ rng.normal(size=D) + SIGMA * rng.normal(size=N)
    precision = np.eye(D) + x.T @ x / SIGMA**2
    cov = np.linalg.inv(precision)
    return x, y, cov @ x.T @ y / SIGMA**2, cov


def regression(x, y):
    w = wpyro.sample("w", wdist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with wpyro.plate("data", x.shape[0]):
        wpyro.sample("y", wdist.Normal(x @ w, SIGMA), obs=y)


def regression_sub(x, y):
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with pyro.plate("data", x.shape[0], subsample_size=50) as idx:
        pyro.sample("y", dist.Normal(x[idx] @ w, SIGMA), obs=y[idx])


def report(name, idata, mean, cov, base=None):
    w = idata.posterior["w"].values.reshape(-1, D)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(idata.posterior)["w"].values
    seconds = float(idata.posterior.attrs["sampling_time"])
    se = np.sqrt(np.diag(cov) / ess)
    mean_err = float(np.max(np.abs(w.mean(0) - mean) / se))
    var_err = float(np.max(np.abs(w.var(0) / np.diag(cov) - 1)))
    rate = ess.min() / seconds
    ratio = "" if base is None else f"{rate / base:8.2f}"
    print(
        f"{name:22s} {seconds:8.2f} {ess.min():8.0f} {rate:10.1f} {ratio:>8s} "
        f"{mean_err:10.2f} {var_err:9.3f}"
    )
    return rate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    x, y, mean, cov = data(args.seed)
    common = dict(num_chains=4, num_warmup=500, seed=args.seed, progress_bar=False, warn=False)

    print(f"1. linear regression posterior (N={N}, D={D}), 4 chains, 500 warmup + {args.steps}")
    print(
        f"{'method':22s} {'seconds':>8s} {'min ESS':>8s} {'ESS/s':>10s} {'vs NUTS':>8s} "
        f"{'mean err':>10s} {'var err':>9s}"
    )
    nuts = mcmc(
        regression,
        x,
        y,
        backend="numpyro",
        num_samples=args.steps,
        posterior_predictive=False,
        chain_method="vectorized",
        **common,
    )
    base = report("NUTS (numpyro)", nuts, mean, cov)
    for backend in ("numpyro", "pyro"):
        for method in ("mala", "ula"):
            idata = langevin(
                regression,
                x,
                y,
                method=method,
                backend=backend,
                num_steps=args.steps,
                posterior_predictive=False,
                **common,
            )
            report(f"{method.upper()} ({backend})", idata, mean, cov, base)
    idata = langevin(
        regression_sub,
        x,
        y,
        method="sgld",
        step_size=2e-4,
        num_steps=args.steps,
        **common,
    )
    report("SGLD, batch 50 (pyro)", idata, mean, cov, base)

    print("\n2. MALA on a 2-D Gaussian energy, chains in one batch (100 warmup + 400 steps)")
    precision = torch.tensor([[2.0, -1.0], [-1.0, 2.0]])

    def energy(z):
        return 0.5 * ((z @ precision) * z).sum(-1)

    for chains in (10, 100, 1000, 10000):
        start = time.perf_counter()
        langevin(
            energy,
            kind="energy",
            event_shape=(2,),
            num_chains=chains,
            num_warmup=100,
            num_steps=400,
            seed=args.seed,
            progress_bar=False,
            warn=False,
        )
        seconds = time.perf_counter() - start
        print(
            f"{chains:6d} chains: {seconds:6.2f} s, {1e6 * seconds / (chains * 500):8.2f} us per chain-step"
        )


if __name__ == "__main__":
    main()
