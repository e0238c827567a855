"""Bayesian linear regression (scikit-learn's diabetes data) and logistic regression
(breast cancer), standardized inputs, NUTS on NumPyro; posterior predictive accuracy on a
held-out split.

    python examples/bayesian_regression.py --steps 500
"""

import argparse
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes

import ppdgm.inference as inf
from ppdgm.errors import ConvergenceWarning
from ppdgm.models import classical


def _split(x, y, seed):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    tr, te = idx[:cut], idx[cut:]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    return (x[tr] - mu) / sd, y[tr], (x[te] - mu) / sd, y[te]


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=500, help="NUTS warmup = draws")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    opts = dict(num_warmup=args.steps, num_samples=args.steps, num_chains=1, seed=args.seed)

    x, y = load_diabetes(return_X_y=True)
    x_tr, y_tr, x_te, y_te = _split(x, y, args.seed)
    y_mu, y_sd = y_tr.mean(), y_tr.std()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if args.steps < 100 else "default", ConvergenceWarning)
        idata = inf.mcmc(classical.linear_regression, x_tr, (y_tr - y_mu) / y_sd, **opts)
        idata = inf.posterior_predictive(classical.linear_regression, idata, x_te, seed=args.seed)
    pred = idata.posterior_predictive["y"].values.reshape(-1, len(x_te)) * y_sd + y_mu
    rmse = np.sqrt(((pred.mean(0) - y_te) ** 2).mean())
    lo, hi = np.percentile(pred, [5, 95], axis=0)
    print(
        f"diabetes: test RMSE {rmse:.1f} (std of y {y_te.std():.1f}); "
        f"90% predictive interval covers {((y_te >= lo) & (y_te <= hi)).mean():.0%}"
    )

    x, y = load_breast_cancer(return_X_y=True)
    x_tr, y_tr, x_te, y_te = _split(x, y.astype(float), args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if args.steps < 100 else "default", ConvergenceWarning)
        idata = inf.mcmc(classical.logistic_regression, x_tr, y_tr, **opts)
        idata = inf.posterior_predictive(classical.logistic_regression, idata, x_te, seed=args.seed)
    prob = idata.posterior_predictive["y"].values.reshape(-1, len(x_te)).mean(0)
    accuracy = ((prob > 0.5) == y_te).mean()
    print(f"breast cancer: test accuracy {accuracy:.3f}")
    return rmse, accuracy


if __name__ == "__main__":
    main()
