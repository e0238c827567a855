"""The amortization gap of a VAE, seen with Langevin dynamics.

A VAE with a 2-D latent space is trained on the binarized digits. For a few test digits, the
exact posterior p(z | x) of its decoder is sampled with MALA (``ppdgm.inference.langevin``
on the VAE's own Pyro program, the digits' latents moved together), and compared with the
amortized guide q(z | x) that the encoder predicts:

- log p(x), estimated by importance sampling with 5,000 particles (IWAE bound);
- the ELBO of the amortized guide;
- the ELBO of the best full-covariance Gaussian for that one digit, fitted by stochastic
  gradient ascent from the amortized guide's.

The inference gap log p(x) - ELBO(amortized) splits into the approximation gap
log p(x) - ELBO(local Gaussian), which no Gaussian can close (a skewed or multimodal
posterior, which the MALA draws show), and the amortization gap ELBO(local) - ELBO(amortized),
the price of one encoder for every x (Cremer et al., 2018). With a 2-D latent the exact
posterior is also drawn on a grid, so the figure shows it, the MALA draws and the amortized
guide side by side.

    python examples/vae_amortization_gap.py --steps 3000 --out amortization_gap.png
"""

import argparse
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import torch

import ppdgm
from ppdgm.data import load_data
from ppdgm.evaluation import elbo, iwae_bound
from ppdgm.inference import langevin


def gaussian_guide(loc: torch.Tensor, scale_tril: torch.Tensor):
    """A guide program with a fixed full-covariance Gaussian per example."""

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=scale_tril))

    return guide


def log_joint(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x_k, z_gk) for digits x (K, D) and latents z (G, K, 2): (G, K)."""
    g, k = z.shape[:2]
    conditioned = pyro.poutine.condition(model, {"z": z.reshape(g * k, 2)})
    trace = pyro.poutine.trace(conditioned).get_trace(x.repeat(g, 1))
    trace.compute_log_prob()
    return (trace.nodes["z"]["log_prob"] + trace.nodes["x"]["log_prob"]).reshape(g, k)


def local_gaussians(model, x, loc, scale, steps: int = 500, particles: int = 64):
    """The best Gaussian q_k(z) for each digit on its own: the ELBO maximized over a mean and
    a Cholesky factor per digit by Adam, from the amortized guide's (loc, diag scale)."""
    mean = loc.detach().clone().requires_grad_(True)
    raw = torch.diag_embed(scale.detach().log()).clone().requires_grad_(True)
    opt = torch.optim.Adam([mean, raw], lr=0.02)
    for _ in range(steps):
        tril = torch.tril(raw, -1) + torch.diag_embed(torch.diagonal(raw, 0, -2, -1).exp())
        q = dist.MultivariateNormal(mean, scale_tril=tril)
        z = q.rsample((particles,))
        loss = -(log_joint(model, x, z) - q.log_prob(z)).mean(0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        tril = torch.tril(raw, -1) + torch.diag_embed(torch.diagonal(raw, 0, -2, -1).exp())
    return mean.detach(), tril


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=3000, help="VAE training steps")
    ap.add_argument("--digits", type=int, default=6, help="test digits to examine")
    ap.add_argument("--mala-steps", type=int, default=1000, help="kept MALA steps per chain")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="figure (.png)")
    args = ap.parse_args(argv)

    data = load_data("digits-binary")
    vae = ppdgm.VAE(latent_dim=2, hidden_dims=(256, 256), seed=args.seed, device="cpu")
    vae.fit(data.x_train, num_steps=args.steps)
    model, guide = vae.model_.model, vae.guide_.guide
    x = torch.as_tensor(data.x_test[: args.digits], dtype=torch.float32)

    # the exact posterior of every chosen digit's latent, sampled together by MALA from the
    # amortized guide's means: started uniformly instead, some chains settle in minor modes
    # of these multimodal posteriors, which Langevin dynamics does not leave (R-hat shows it)
    loc, scale = (t.detach() for t in vae.guide_.posterior(x))
    idata = langevin(
        model,
        x,
        method="mala",
        init_values={"z": loc.numpy()},
        num_chains=4,
        num_warmup=500,
        num_steps=args.mala_steps,
        seed=args.seed,
        progress_bar=False,
        posterior_predictive=False,
        warn=False,
    )
    z = idata.posterior["z"].values.reshape(-1, args.digits, 2)  # (draws, digit, 2)
    accept = float(idata.sample_stats["acceptance_rate"].mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = float(az.rhat(idata.posterior)["z"].max())

    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        local = local_gaussians(model, x, loc, scale)
        log_px = iwae_bound(model, guide, x, num_particles=5000)
        elbo_amortized = elbo(model, guide, x, num_particles=2000)
        elbo_local = elbo(model, gaussian_guide(*local), x, num_particles=2000)

    # where the amortized guide sits in the exact posterior: the MALA mean in guide sds
    offset = np.abs(z.mean(0) - loc.numpy()) / scale.numpy()
    print(f"MALA acceptance rate {accept:.2f}, largest R-hat {rhat:.3f}")
    print(
        "digit  log p(x)  ELBO(amortized)  ELBO(local)  inference gap  amortization  "
        "approximation  |MALA mean - q mean| (q sds)"
    )
    gaps = {}
    for k in range(args.digits):
        total = float(log_px[k] - elbo_amortized[k])
        amort = float(elbo_local[k] - elbo_amortized[k])
        gaps[k] = (total, amort, total - amort)
        print(
            f"{k:5d}  {float(log_px[k]):8.2f}  {float(elbo_amortized[k]):15.2f}  "
            f"{float(elbo_local[k]):11.2f}  {total:13.2f}  {amort:12.2f}  {total - amort:13.2f}  "
            f"{offset[k].max():8.2f}"
        )
    mean_gaps = np.mean(list(gaps.values()), axis=0)
    print(
        f"mean: inference gap {mean_gaps[0]:.2f} nats = amortization {mean_gaps[1]:.2f} "
        f"+ approximation {mean_gaps[2]:.2f}"
    )

    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Ellipse

        from ppdgm import viz

        loc, scale = loc.numpy(), scale.numpy()
        fig, axes = plt.subplots(2, args.digits, figsize=(2.6 * args.digits, 5.4), squeeze=False)
        for k in range(args.digits):
            draws = z[:, k]
            lo = np.minimum(draws.min(0), loc[k] - 3 * scale[k]) - 0.5
            hi = np.maximum(draws.max(0), loc[k] + 3 * scale[k]) + 0.5
            xs, ys = np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120)
            grid = torch.as_tensor(
                np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2), dtype=torch.float32
            )
            with torch.no_grad():
                dens = log_joint(model, x[k : k + 1], grid[:, None]).exp().reshape(120, 120)
            axes[0, k].imshow(x[k].reshape(8, 8).numpy(), cmap="gray_r")
            axes[0, k].set_axis_off()
            axes[0, k].set_title(f"gap {gaps[k][0]:.2f} nats", fontsize=9)
            ax = axes[1, k]
            top = float(dens.max())
            ax.contourf(xs, ys, dens.numpy(), levels=np.linspace(0.02, 1, 10) * top, cmap="Greys")
            ax.scatter(*draws[::4].T, s=1, c="C1", alpha=0.3, label="MALA")
            for n_sd in (1, 2):
                ax.add_patch(
                    Ellipse(
                        loc[k],
                        2 * n_sd * scale[k][0],
                        2 * n_sd * scale[k][1],
                        fill=False,
                        color="C0",
                        lw=1.2,
                        label="q(z|x)" if n_sd == 1 else None,
                    )
                )
            ax.set_xlim(xs[0], xs[-1])
            ax.set_ylim(ys[0], ys[-1])
        axes[1, 0].legend(loc="lower left", fontsize=7)
        fig.suptitle("p(z | x) on a grid (grey), MALA draws (orange), amortized q(z | x) (blue)")
        fig.tight_layout()
        viz.save_figure(fig, args.out)
        print(f"wrote {args.out}")
    return {"gaps": gaps, "acceptance_rate": accept, "rhat": rhat}


if __name__ == "__main__":
    main()
