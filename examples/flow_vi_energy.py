"""Variational inference with normalizing flows (Rezende & Mohamed, 2015): planar and radial
flows fitted by SVI to the paper's unnormalized 2-D densities exp(-U(z)).

The target is a Pyro program: an improper flat prior on z and a factor -U(z). The guide is a
Pyro program too: z = T(eps), eps ~ N(0, I), with T a chain of planar or radial layers. SVI
maximizes the ELBO, a lower bound on log Z; log Z itself is computed on a grid, so the gap
log Z - ELBO = KL(q || p) says how far each flow is from the target. Longer flows close it.
The KL is mode-seeking: on U1's two arcs a planar flow may settle on one of them, a gap near
log 2 = 0.69 nats that no longer shrinks with the flow's length.
U2-U4 are not normalizable along z1, so a soft wall (z1 / 4)^8 is added to each, as the
paper's figures (drawn on [-4, 4]^2) assume.

    python examples/flow_vi_energy.py --steps 3000 --out flows_vi.png
"""

import argparse
import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch

import ppdgm.inference as inf
from ppdgm.models.flows import InvertiblePlanar, InvertibleRadial


def _w1(z):
    return torch.sin(2 * math.pi * z[..., 0] / 4)


def _wall(z):
    return (z[..., 0] / 4) ** 8


ENERGIES = {
    "U1": lambda z: (
        0.5 * ((z.norm(dim=-1) - 2) / 0.4) ** 2
        - torch.logaddexp(-0.5 * ((z[..., 0] - 2) / 0.6) ** 2, -0.5 * ((z[..., 0] + 2) / 0.6) ** 2)
    ),
    "U2": lambda z: 0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2 + _wall(z),
    "U3": lambda z: (
        -torch.logaddexp(
            -0.5 * ((z[..., 1] - _w1(z)) / 0.35) ** 2,
            -0.5
            * ((z[..., 1] - _w1(z) + 3 * torch.exp(-0.5 * ((z[..., 0] - 1) / 0.6) ** 2)) / 0.35)
            ** 2,
        )
        + _wall(z)
    ),
    "U4": lambda z: (
        -torch.logaddexp(
            -0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2,
            -0.5 * ((z[..., 1] - _w1(z) + 3 * torch.sigmoid((z[..., 0] - 1) / 0.3)) / 0.35) ** 2,
        )
        + _wall(z)
    ),
}
LAYERS = {"planar": InvertiblePlanar, "radial": InvertibleRadial}


def target(energy, num_particles):
    """exp(-U(z)) as a program: ``num_particles`` independent copies of z (one SVI step then
    averages over that many draws of the guide)."""
    with pyro.plate("particles", num_particles):
        z = pyro.sample("z", dist.ImproperUniform(dist.constraints.real_vector, (), (2,)))
        pyro.factor("energy", -energy(z))


def flow_guide(kind, length, seed):
    """The guide program z = T(eps) and its flow distribution q."""
    torch.manual_seed(seed)
    layers = torch.nn.ModuleList(LAYERS[kind](2) for _ in range(length))

    def q():
        return dist.TransformedDistribution(
            dist.Normal(torch.zeros(2), 1.0).to_event(1), list(layers)
        )

    def guide(energy, num_particles):
        pyro.module("flow", layers)
        with pyro.plate("particles", num_particles):
            pyro.sample("z", q())

    return guide, q


def log_partition(energy, half_width=6.0, size=600):
    """log Z = log of the integral of exp(-U) over a grid (the targets live well inside it)."""
    t = torch.linspace(-half_width, half_width, size, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(t, t, indexing="xy"), -1)
    cell = (t[1] - t[0]) ** 2
    return float(torch.logsumexp(-energy(zz).flatten(), 0) + torch.log(cell)), zz, energy(zz)


def elbo(energy, q, num_draws=20000, seed=0):
    """E_q[-U(z) - log q(z)] from ``num_draws`` draws (each scored through the layers' cache)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        d = q()
        z = d.sample((num_draws,))
        return float((-energy(z) - d.log_prob(z)).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=3000, help="SVI steps per flow")
    ap.add_argument("--lengths", default="2,8,32", help="planar flow lengths, comma-separated")
    ap.add_argument("--radial-length", type=int, default=32)
    ap.add_argument("--particles", type=int, default=256, help="guide draws per step")
    ap.add_argument("--targets", default="U1,U2,U3,U4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="figure: target and flow samples (.png)")
    args = ap.parse_args(argv)

    names = args.targets.split(",")
    unknown = [n for n in names if n not in ENERGIES]
    if unknown:
        ap.error(f"unknown target(s) {unknown}; choose from {', '.join(ENERGIES)}")
    flows = [("planar", int(k)) for k in args.lengths.split(",")]
    flows.append(("radial", args.radial_length))

    gaps, panels = {}, {}
    for name in names:
        energy = ENERGIES[name]
        log_z, grid, u = log_partition(energy)
        panels[name] = (grid, u, {})
        for kind, length in flows:
            guide, q = flow_guide(kind, length, args.seed)
            idata = inf.svi(
                target,
                energy,
                args.particles,
                guide=guide,
                backend="pyro",
                num_steps=args.steps,
                learning_rate=1e-2,
                num_samples=1,
                progress_bar=False,
                posterior_predictive=False,
                seed=args.seed,
            )
            assert "loss" in idata.groups()
            gap = log_z - elbo(energy, q, seed=args.seed)
            gaps[(name, kind, length)] = gap
            with torch.no_grad():
                label = f"{kind} K={length}: KL {gap:.2f}"
                panels[name][2][label] = q().sample((2000,)).numpy()
            print(f"{name}  {kind:6s} K={length:3d}  KL(q || p) = log Z - ELBO = {gap:7.3f} nats")

    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = 1 + len(flows)
        fig, axes = plt.subplots(len(names), cols, figsize=(2.4 * cols, 2.4 * len(names)))
        axes = np.atleast_2d(axes)
        for row, name in zip(axes, names, strict=True):
            grid, u, samples = panels[name]
            density = torch.exp(-u).numpy()
            row[0].pcolormesh(grid[..., 0].numpy(), grid[..., 1].numpy(), density, shading="auto")
            row[0].set_title(f"exp(-{name})", fontsize=9)
            for ax, (label, s) in zip(row[1:], samples.items(), strict=True):
                ax.hist2d(s[:, 0], s[:, 1], bins=80, range=[[-4, 4], [-4, 4]])
                ax.set_title(label, fontsize=9)
            for ax in row:
                ax.set_xlim(-4, 4)
                ax.set_ylim(-4, 4)
                ax.set_xticks([])
                ax.set_yticks([])
        fig.tight_layout()
        fig.savefig(args.out, dpi=100)
        plt.close(fig)
        print(f"wrote {args.out}")
    return gaps


if __name__ == "__main__":
    main()
