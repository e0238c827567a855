"""A Gaussian mixture with the component labels summed out, sampled by NUTS from a
k-means start, and the labels' posterior (responsibilities) recovered afterwards.

    python examples/gaussian_mixture.py --steps 500 --out mixture.png
"""

import argparse
import warnings

import numpy as np

import ppdgm.inference as inf
from ppdgm.errors import ConvergenceWarning
from ppdgm.models import classical


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=500, help="NUTS warmup = draws")
    ap.add_argument("--components", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="scatter plot coloured by component (.png)")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    locs = np.array([[-4.0, 0.0], [0.0, 3.0], [4.0, -1.0]])
    z = rng.choice(3, size=300, p=[0.5, 0.3, 0.2])
    x = locs[z] + 0.7 * rng.normal(size=(300, 2))

    k = args.components
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if args.steps < 100 else "default", ConvergenceWarning)
        idata = inf.mcmc(
            classical.gaussian_mixture,
            x,
            num_components=k,
            init_values=classical.mixture_init(x, k, seed=args.seed),
            num_warmup=args.steps,
            num_samples=args.steps,
            num_chains=1,
            seed=args.seed,
        )
    post = idata.posterior
    print("posterior mean weights:", np.round(post["weights"].mean(("chain", "draw")).values, 3))
    print("posterior mean locs:\n", np.round(post["locs"].mean(("chain", "draw")).values, 2))
    resp = classical.mixture_responsibilities(
        x,
        *(post[n].values.reshape((-1,) + post[n].shape[2:]) for n in ("weights", "locs", "scales")),
    )
    print(
        f"points whose most probable component is uncertain (max p < 0.9): {(resp.max(1) < 0.9).sum()}"
    )
    if args.out:
        import matplotlib.pyplot as plt

        from ppdgm.viz import save_figure

        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(
            x[:, 0],
            x[:, 1],
            c=resp.argmax(1),
            s=8,
            cmap="tab10",
            alpha=0.4 + 0.6 * (resp.max(1) > 0.9),
        )
        ax.scatter(*post["locs"].mean(("chain", "draw")).values.T, c="k", marker="x", s=60)
        ax.set_title("most probable component (x: posterior mean locations)")
        save_figure(fig, args.out)
    return resp


if __name__ == "__main__":
    main()
