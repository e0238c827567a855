"""Probabilistic PCA three ways: NUTS (NumPyro), SVI with a full-rank Gaussian guide, and
the closed-form maximum-likelihood solution of Tipping & Bishop (1999).

W is identified only up to a rotation, so the three are compared on what is identified:
the model covariance W Wᵀ + σ² I and the noise σ. The data are simulated from a PPCA with
known parameters, so each is also compared with the truth. Writes a figure of the four
covariance matrices with --out.

    python examples/ppca_nuts_svi_ml.py --steps 1000 --out ppca.png
"""

import argparse
import warnings

import numpy as np

import ppdgm.inference as inf
from ppdgm.errors import ConvergenceWarning
from ppdgm.models import classical


def _covariances(idata):
    w = idata.posterior["W"].values.reshape((-1,) + idata.posterior["W"].shape[2:])
    s = idata.posterior["sigma"].values.ravel()
    cov = np.einsum("sdl,sel->sde", w, w) + (s**2)[:, None, None] * np.eye(w.shape[1])
    return cov.mean(0), s.mean()


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=1000, help="NUTS warmup = draws; SVI steps x2")
    ap.add_argument("--points", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="figure of the covariance matrices (.png)")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    d, latent, sigma = 6, 2, 0.4
    w_true = rng.normal(size=(d, latent))
    x = rng.normal(size=(args.points, latent)) @ w_true.T + sigma * rng.normal(
        size=(args.points, d)
    )
    truth = w_true @ w_true.T + sigma**2 * np.eye(d)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        nuts = inf.mcmc(
            classical.ppca,
            x,
            latent_dim=latent,
            num_warmup=args.steps,
            num_samples=args.steps,
            num_chains=1,
            seed=args.seed,
        )
    svi = inf.svi(
        classical.ppca,
        x,
        latent_dim=latent,
        guide="multivariate_normal",
        num_steps=2 * args.steps,
        learning_rate=0.02,
        seed=args.seed,
    )
    ml = classical.ppca_ml(x, latent)
    results = {
        "NUTS (posterior mean)": _covariances(nuts),
        "SVI (posterior mean)": _covariances(svi),
        "closed-form ML": (ml["covariance"], ml["sigma"]),
    }
    scale = np.abs(truth).max()
    print(f"true sigma {sigma:.3f}")
    print(f"{'method':24s} {'sigma':>7s} {'max |C - C_true| / max|C_true|':>32s}")
    for name, (cov, s) in results.items():
        print(f"{name:24s} {s:7.3f} {np.abs(cov - truth).max() / scale:32.3f}")

    if args.out:
        import matplotlib.pyplot as plt

        from ppdgm.viz import save_figure

        mats = {"truth": truth, **{k: v[0] for k, v in results.items()}}
        fig, axes = plt.subplots(1, len(mats), figsize=(3 * len(mats), 3))
        for ax, (name, m) in zip(axes, mats.items(), strict=True):
            ax.imshow(m, cmap="RdBu_r", vmin=-scale, vmax=scale)
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        save_figure(fig, args.out)
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
