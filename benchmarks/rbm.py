"""Restricted Boltzmann machines: ppdgm's BernoulliRBM against scikit-learn's, side by side.

The ``digits-binary`` train split (1,500 images of 8x8 binary pixels), learning rate 0.05,
batch 20, 30 epochs, for both. Reported, in one run:

* 64 hidden units: milliseconds per epoch (fit time / epochs; the best and the median of
  ``--reps`` runs, taken in turn, each round in a new order) and the test pseudo-log-likelihood (scikit-learn's ``score_samples``), for
  scikit-learn, ppdgm with its defaults (CD-1, momentum 0.9, linear learning-rate decay,
  visible biases at the data's log-odds), ppdgm with scikit-learn's algorithm (PCD-1, no
  momentum, constant rate, zero biases), and that algorithm as the shortest hand-written eager
  PyTorch loop (no trainer: the floor of any eager PyTorch trainer on batches this small); the
  ratio of times per epoch.
* 16 hidden units: the exact test log-likelihood (log Z by enumerating the 2^16 hidden
  states), for scikit-learn's fitted parameters, ppdgm's defaults over ``--seeds`` seeds,
  ppdgm with scikit-learn's algorithm, and independent pixels.
* Annealed importance sampling on ppdgm's 16-hidden model: the forward estimate (a
  stochastic lower bound) and the reverse one from long Gibbs chains (an upper bound), against
  the exact log Z.

    python benchmarks/rbm.py [--epochs 30] [--reps 10] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


class _HandTorchRBM:
    """scikit-learn's algorithm (PCD-1, constant rate, no momentum, zero biases) as the
    shortest eager PyTorch loop, no trainer: some 16 tensor operations per batch. Its time per
    epoch bounds from below what any eager PyTorch trainer of this model spends."""

    def __init__(self, n_components, learning_rate, batch_size, n_iter, random_state=0):
        self.params = dict(
            n_components=n_components,
            learning_rate=learning_rate,
            batch_size=batch_size,
            n_iter=n_iter,
            random_state=random_state,
        )

    def set_params(self, **kw):
        self.params.update(kw)
        return self

    def fit(self, x):
        import torch

        p = self.params
        torch.manual_seed(p["random_state"])
        v_all = torch.as_tensor(x, dtype=torch.float32)
        n, d = v_all.shape
        w = torch.randn(p["n_components"], d) * 0.01
        b, c = torch.zeros(d), torch.zeros(p["n_components"])
        h_chain = torch.zeros(p["batch_size"], p["n_components"])
        with torch.no_grad():
            for _ in range(p["n_iter"]):
                for v in v_all[torch.randperm(n)].split(p["batch_size"]):
                    rate = p["learning_rate"] / v.shape[0]
                    h_pos = torch.sigmoid(torch.addmm(c, v, w.t()))
                    a = torch.addmm(b, h_chain[: v.shape[0]], w)
                    v_neg = (torch.rand_like(a) < torch.sigmoid(a)).float()
                    h_neg = torch.sigmoid(torch.addmm(c, v_neg, w.t()))
                    w.add_(h_pos.t() @ v - h_neg.t() @ v_neg, alpha=rate)
                    b.add_(v.sum(0) - v_neg.sum(0), alpha=rate)
                    c.add_(h_pos.sum(0) - h_neg.sum(0), alpha=rate)
                    h_chain[: v.shape[0]] = (torch.rand_like(h_neg) < h_neg).float()
        self.w_, self.b_, self.c_ = w.numpy(), b.numpy(), c.numpy()
        return self

    def score_samples(self, x):
        """scikit-learn's pseudo-log-likelihood of the fitted parameters."""
        from sklearn.neural_network import BernoulliRBM as SkRBM

        sk = SkRBM(n_components=len(self.c_), random_state=self.params["random_state"])
        sk.components_, sk.intercept_visible_, sk.intercept_hidden_ = self.w_, self.b_, self.c_
        sk.h_samples_ = np.zeros((1, len(self.c_)))
        return sk.score_samples(x)


def _sklearn_as_model(sk):
    """scikit-learn's fitted parameters in a ppdgm RBM module (to enumerate its log Z)."""
    import torch

    from ppdgm.models.energy import RBM

    m = RBM(sk.components_.shape[1], sk.components_.shape[0])
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(sk.components_))
        m.visible_bias.copy_(torch.as_tensor(sk.intercept_visible_))
        m.hidden_bias.copy_(torch.as_tensor(sk.intercept_hidden_))
    return m


def _exact_ll(model, x) -> float:
    import torch

    with torch.no_grad():
        xt = torch.as_tensor(x, dtype=torch.float32)
        return float(model.log_prob(xt, model.log_partition_exact()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()

    import torch
    from sklearn.neural_network import BernoulliRBM as SkRBM

    import ppdgm
    from ppdgm.data import load_data

    data = load_data("digits-binary")
    x, xt = data.x_train, data.x_test
    settings = {"learning_rate": 0.05, "batch_size": 20, "n_iter": args.epochs}
    sk_algorithm = {
        "persistent": True,
        "momentum": 0.0,
        "lr_schedule": "constant",
        "visible_bias_init": "zero",
    }
    print(
        f"binarized digits: {len(x)} train, {len(xt)} test; lr 0.05, batch 20, "
        f"{args.epochs} epochs; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    # -- 64 hidden: time per epoch and pseudo-log-likelihood --------------------------------
    runners = {
        "scikit-learn": lambda s: SkRBM(n_components=64, random_state=s, **settings),
        "ppdgm (defaults)": lambda s: ppdgm.BernoulliRBM(
            n_components=64, random_state=s, device="cpu", **settings
        ),
        "ppdgm (scikit-learn's algorithm)": lambda s: ppdgm.BernoulliRBM(
            n_components=64, random_state=s, device="cpu", **settings, **sk_algorithm
        ),
        "hand-written torch (sk's algorithm)": lambda s: _HandTorchRBM(
            64, random_state=s, **settings
        ),
    }
    for make in runners.values():  # warm up (imports, first calls)
        make(0).set_params(n_iter=1).fit(x[:200])
    times = {k: [] for k in runners}
    pll = {k: [] for k in runners}
    names = list(runners)
    for rep in range(args.reps):
        # each run in a new order: what runs right after scikit-learn shares the cores with
        # its BLAS threads, which spin for a while after each call
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            est = runners[name](rep)
            t0 = time.perf_counter()
            est.fit(x)
            times[name].append((time.perf_counter() - t0) / args.epochs * 1e3)
            pll[name].append(float(np.mean(est.set_params(random_state=0).score_samples(xt))))
    print(
        f"\n64 hidden units ({args.reps} runs each, in turn; the best run and the median: this "
        "machine's speed drifts by half in phases of seconds)"
    )
    print(f"{'':36s} {'ms/epoch best':>14s} {'median':>7s} {'test pseudo-LL':>15s}   time ratio")
    best0, med0 = min(times["scikit-learn"]), float(np.median(times["scikit-learn"]))
    for name in runners:
        best, med = min(times[name]), float(np.median(times[name]))
        ratio = (
            "" if name == "scikit-learn" else f"   {best / best0:.2f} best, {med / med0:.2f} median"
        )
        print(f"{name:36s} {best:14.2f} {med:7.2f} {np.mean(pll[name]):15.2f}{ratio}")

    # -- 16 hidden: exact log-likelihood ------------------------------------------------------
    print("\n16 hidden units: exact test log-likelihood (nats per image; log Z by enumeration)")
    p = (x.sum(0) + 1.0) / (len(x) + 2.0)
    indep = float(np.mean(xt @ np.log(p) + (1 - xt) @ np.log1p(-p)))
    print(f"{'independent pixels (Laplace-smoothed)':44s} {indep:8.2f}")
    sk = SkRBM(n_components=16, random_state=0, **settings).fit(x)
    print(f"{'scikit-learn BernoulliRBM':44s} {_exact_ll(_sklearn_as_model(sk), xt):8.2f}")
    same = ppdgm.BernoulliRBM(
        n_components=16, random_state=0, device="cpu", **settings, **sk_algorithm
    ).fit(x)
    print(f"{'ppdgm, scikit-learn algorithm':44s} {float(np.mean(same.log_likelihood(xt))):8.2f}")
    fitted = None
    for seed in [int(s) for s in args.seeds.split(",")]:
        est = ppdgm.BernoulliRBM(n_components=16, random_state=seed, device="cpu", **settings)
        est.fit(x)
        ll = float(np.mean(est.log_likelihood(xt, method="exact")))
        print(f"{f'ppdgm defaults, seed {seed}':44s} {ll:8.2f}")
        fitted = fitted or est

    # -- AIS against the exact log Z ----------------------------------------------------------
    from ppdgm.evaluation import ais

    model = fitted.rbm_.model_
    exact = float(model.log_partition_exact())
    path = model.annealing_path()
    with torch.no_grad():
        start = model.gibbs(torch.as_tensor(xt[:100], dtype=torch.float32), 1000)
    t0 = time.perf_counter()
    result = ais(path, num_chains=100, num_betas=10_000, reverse_from=start, seed=0)
    seconds = time.perf_counter() - t0
    print(
        f"\nAIS on the 16-hidden model (100 chains, 10,000 distributions, {seconds:.1f} s): "
        f"forward {result.log_z:.4f} (error {result.log_z - exact:+.4f}), reverse "
        f"{result.log_z_reverse:.4f} (error {result.log_z_reverse - exact:+.4f}), exact "
        f"{exact:.4f}; forward ESS {result.ess:.1f} of 100"
    )


if __name__ == "__main__":
    main()
