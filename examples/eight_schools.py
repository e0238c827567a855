"""Partial pooling on the eight schools (Rubin, 1981): one write-once model, NUTS on
NumPyro and on Pyro, and why the non-centered form matters (the centered form diverges).

    python examples/eight_schools.py --steps 1000
"""

import argparse
import warnings

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

import ppdgm.inference as inf
from ppdgm.errors import ConvergenceWarning
from ppdgm.models import classical

Y = np.array([28, 8, -3, 7, -1, 1, 18, 12], dtype=float)
SIGMA = np.array([15, 10, 16, 11, 9, 11, 10, 18], dtype=float)


def centered(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("school", sigma.shape[0]):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=1000, help="warmup = draws per chain")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    opts = dict(num_warmup=args.steps, num_samples=args.steps, num_chains=2, seed=args.seed)
    results = {}
    for backend in ("numpyro", "pyro"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            idata = inf.mcmc(classical.eight_schools, SIGMA, y=Y, backend=backend, **opts)
        post = idata.posterior
        results[backend] = idata
        print(
            f"non-centered on {backend:8s}: mu {float(post['mu'].mean()):5.2f}, "
            f"tau {float(post['tau'].mean()):5.2f}, "
            f"divergences {int(idata.sample_stats['diverging'].sum())}"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        idata = inf.mcmc(centered, SIGMA, y=Y, **opts)
    print(f"centered on numpyro    : divergences {int(idata.sample_stats['diverging'].sum())}")
    for w in caught:
        print(f"  warning: {w.message}")
    return results


if __name__ == "__main__":
    main()
