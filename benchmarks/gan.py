"""GANs: ppdgm's GAN against a hand-written PyTorch loop, and mode coverage on 8 Gaussians.

Reported, in one run:

* Milliseconds per generator step of ``ppdgm.GAN(loss)`` (its trainer, steady state after a
  warm-up that includes tracing) and of a hand-written loop with the same networks (3x128
  LeakyReLU(0.2) MLPs, z of dimension 2, data standardized the same way), batch 256, the same
  Adam settings and critic steps and the same moving average of the generator's weights, for
  ``non_saturating`` and ``wgan_gp``; the median of
  ``--reps`` runs of ``--steps`` steps taken alternately, and the ratio.
* 8 Gaussians on a circle (radius 2, std 0.1; 20,000 training points), ``--train-steps``
  generator steps of batch 256 with each loss's defaults, for ``--seeds``: the modes covered
  (of 8; a mode counts with at least 1% of 5,000 samples within 3 std of it) and the share
  of high-quality samples (within 3 std of a mode).

    python benchmarks/gan.py [--steps 300] [--reps 3] [--train-steps 5000] [--seeds 0,1,2]
        [--losses non_saturating,wgan_gp]   (or --losses all)
"""

from __future__ import annotations

import argparse
import statistics
import time


def _hand_loop(x, loss: str, steps: int, seed: int) -> float:
    """Seconds per generator step of the loop a person would write."""
    import torch
    import torch.nn.functional as F

    from ppdgm.nn import MLP

    torch.manual_seed(seed)
    g, d = MLP(2, (128,) * 3, 2, "leaky_relu"), MLP(2, (128,) * 3, 1, "leaky_relu")
    betas = (0.5, 0.9) if loss == "wgan_gp" else (0.5, 0.999)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=betas)
    n_critic = 5 if loss == "wgan_gp" else 1
    average = [p.detach().clone() for p in g.parameters()]
    xs = (x - x.mean(0)) / x.std(0)
    batch = 256

    def step():
        for _ in range(n_critic):
            real = xs[torch.randint(len(xs), (batch,))]
            fake = g(torch.randn(batch, 2)).detach()
            if loss == "wgan_gp":
                eps = torch.rand(batch, 1)
                mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
                (grad,) = torch.autograd.grad(d(mix).sum(), mix, create_graph=True)
                gp = ((grad.norm(dim=1) - 1) ** 2).mean()
                loss_d = d(fake).mean() - d(real).mean() + 1.0 * gp  # ppdgm's default λ for MLPs
            else:
                loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        out = d(g(torch.randn(batch, 2)))
        loss_g = -out.mean() if loss == "wgan_gp" else F.softplus(-out).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():  # the generator's moving average, as ppdgm's default ema=0.99
            torch._foreach_lerp_(average, list(g.parameters()), 0.01)

    for _ in range(20):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def _ppdgm_loop(x, loss: str, steps: int, seed: int) -> float:
    import ppdgm

    gan = ppdgm.GAN(loss, hidden_dims=(128,) * 3, latent_dim=2, seed=seed, device="cpu")
    gan.fit(x, num_steps=20, batch_size=256)  # builds, traces and warms up
    t0 = time.perf_counter()
    gan.trainer_.run(x, 20 + steps, progress=False)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=5000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--losses", default="non_saturating,wgan_gp")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()

    import torch

    import ppdgm
    from ppdgm.data.toy import eight_gaussians
    from ppdgm.errors import TrainingDivergedError
    from ppdgm.evaluation import mode_coverage
    from ppdgm.inference import ADVERSARIAL_LOSSES

    density = eight_gaussians(std=0.1, radius=2.0)
    x_np = density.sample(20_000, seed=1)
    x = torch.as_tensor(x_np)

    if not args.skip_timing:
        print(f"ms per generator step, batch 256, median of {args.reps} x {args.steps} steps")
        print(f"{'loss':<16}{'hand-written':>14}{'ppdgm':>10}{'ratio':>8}")
        for loss in ("non_saturating", "wgan_gp"):
            hand, ours = [], []
            for rep in range(args.reps):
                hand.append(_hand_loop(x, loss, args.steps, rep))
                ours.append(_ppdgm_loop(x_np, loss, args.steps, rep))
            h, o = statistics.median(hand), statistics.median(ours)
            print(f"{loss:<16}{1e3 * h:>14.2f}{1e3 * o:>10.2f}{o / h:>8.2f}")

    losses = (
        ADVERSARIAL_LOSSES if args.losses == "all" else [n for n in args.losses.split(",") if n]
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"\n8 Gaussians (radius 2, std 0.1): {args.train_steps} generator steps of batch 256, "
        "defaults; modes covered of 8 / high-quality share, per seed"
    )
    for loss in losses:
        cells = []
        t0 = time.perf_counter()
        for seed in seeds:
            gan = ppdgm.GAN(loss, seed=seed, device="cpu")
            try:
                gan.fit(x_np, num_steps=args.train_steps, batch_size=256)
            except TrainingDivergedError as e:  # the loss overflowed: say when, go on
                cells.append(f"diverged@{e.step}")
                continue
            cover = mode_coverage(gan.sample(5000, seed=seed), *density.modes)
            cells.append(f"{cover['modes']}/8 {cover['high_quality']:.3f}")
        seconds = (time.perf_counter() - t0) / len(seeds)
        print(f"{loss:<16}" + "   ".join(cells) + f"   ({seconds:.0f} s per fit)")


if __name__ == "__main__":
    main()
