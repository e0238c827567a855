"""A two-state hidden Markov model: NUTS over the parameters with the state path summed
out by the forward algorithm, then the posterior state marginals and the Viterbi path.

    python examples/hmm_viterbi.py --steps 500 --out hmm.png
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
    ap.add_argument("--length", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="figure of data, states and marginals (.png)")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    trans = np.array([[0.95, 0.05], [0.1, 0.9]])
    states = [0]
    for _ in range(args.length - 1):
        states.append(rng.choice(2, p=trans[states[-1]]))
    states = np.array(states)
    y = np.array([-1.0, 1.5])[states] + 0.8 * rng.normal(size=args.length)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if args.steps < 100 else "default", ConvergenceWarning)
        idata = inf.mcmc(
            classical.hmm,
            y,
            num_states=2,
            num_warmup=args.steps,
            num_samples=args.steps,
            num_chains=1,
            seed=args.seed,
        )
    mean = {
        n: idata.posterior[n].mean(("chain", "draw")).values
        for n in ("init", "trans", "locs", "scale")
    }
    print("posterior mean transition matrix:\n", np.round(mean["trans"], 3))
    print(
        "posterior mean state means:",
        np.round(mean["locs"], 3),
        "scale:",
        round(float(mean["scale"]), 3),
    )
    params = [mean[n] for n in ("init", "trans", "locs", "scale")]
    path = classical.viterbi(y, *params)
    marginals = classical.hmm_posterior_marginals(y, *params)
    print(f"Viterbi path agrees with the true states at {(path == states).mean():.1%} of steps")
    if args.out:
        import matplotlib.pyplot as plt

        from ppdgm.viz import save_figure

        fig, (a, b) = plt.subplots(2, 1, figsize=(8, 4), sharex=True)
        a.plot(y, lw=0.7, color="0.4", label="y")
        a.plot(mean["locs"][path], color="C3", label="Viterbi state mean")
        a.legend(fontsize=8)
        b.plot(marginals[:, 1], color="C0", label="p(state 1 | y)")
        b.plot(states, color="k", lw=0.6, ls="--", label="true state")
        b.legend(fontsize=8)
        save_figure(fig, args.out)
    return path


if __name__ == "__main__":
    main()
