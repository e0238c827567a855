"""VAE training speed and quality: hand-written PyTorch vs Pyro tutorial-style SVI vs ppdgm.

The same MLP 64-256-256-8 VAE on binarized digits (pixel > 8 of 16; the fixed split of
``ppdgm.data``), batch 128, Adam 1e-3, 3000 steps:

  (a) a hand-written PyTorch loss with the analytic KL (the floor),
  (b) Pyro's tutorial-style SVI: pyro.module + Trace_ELBO + pyro.optim.Adam,
  (c) ppdgm: ``ppdgm.VAE`` with its Trainer (the step compiled; ``--no-compile`` for eager).

ppdgm's trainer uses PyTorch's fused Adam; (a') is the hand-written loop with fused Adam too,
printed so that the optimizer's share of the difference is visible. Ratios are to (a).

The three are trained in one run, interleaved in blocks of 100 steps so that a slow patch of
the machine hits all of them alike. Reported: ms/step (sum of block times / steps), the ratio
to (a), and the test IWAE (K=1000) negative log-likelihood in nats. The IWAE of (a) and (b)
is computed by a plain-torch estimator; for (c) by ``VAE.score_samples``, and the plain-torch
estimator is also run on (c)'s networks as a cross-check.

    python benchmarks/vae_svi.py [--steps 3000] [--no-compile] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppdgm import VAE
from ppdgm.data import load_data
from ppdgm.train import Trainer

D, H, L, BATCH, LR = 64, 256, 8, 128, 1e-3


def mlp(i, o):
    return nn.Sequential(nn.Linear(i, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, o))


class HandVAE:
    """(a): encoder/decoder and a loss written out by hand."""

    def __init__(self, x, fused=False):
        self.x, self.enc, self.dec = x, mlp(D, 2 * L), mlp(L, D)
        params = [*self.enc.parameters(), *self.dec.parameters()]
        self.opt = torch.optim.Adam(params, lr=LR, **({"fused": True} if fused else {}))
        self.gen, self.perm, self.pos = torch.Generator().manual_seed(0), None, len(x)

    def batch(self):
        if self.pos + BATCH > len(self.x):
            self.perm, self.pos = torch.randperm(len(self.x), generator=self.gen), 0
        idx = self.perm[self.pos : self.pos + BATCH]
        self.pos += BATCH
        return self.x[idx]

    def steps(self, k):
        for _ in range(k):
            x = self.batch()
            h = self.enc(x)
            loc, log_scale = h[:, :L], h[:, L:]
            z = loc + log_scale.exp() * torch.randn_like(loc)
            rec = nn.functional.binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum")
            kl = 0.5 * (loc**2 + (2 * log_scale).exp() - 1 - 2 * log_scale).sum()
            loss = (rec + kl) / x.shape[0]
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()


class PyroTutorialVAE(nn.Module):
    """(b): the structure of Pyro's VAE tutorial."""

    def __init__(self, x):
        super().__init__()
        self.x, self.encoder, self.decoder = x, mlp(D, 2 * L), mlp(L, D)
        pyro.clear_param_store()
        self.svi = pyro.infer.SVI(
            self.model, self.guide, pyro.optim.Adam({"lr": LR}), loss=pyro.infer.Trace_ELBO()
        )
        self.gen, self.perm, self.pos = torch.Generator().manual_seed(0), None, len(x)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], L), 1.0).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            h = self.encoder(x)
            pyro.sample("z", dist.Normal(h[:, :L], h[:, L:].exp()).to_event(1))

    batch = HandVAE.batch

    def steps(self, k):
        for _ in range(k):
            self.svi.step(self.batch())


class PpdgmVAE:
    """(c): ppdgm's estimator, trained through its Trainer's loop."""

    def __init__(self, x, compile):
        self.x = x
        self.vae = VAE(
            latent_dim=L,
            hidden_dims=(H, H),
            likelihood="bernoulli",
            seed=0,
            device="cpu",
            compile=compile,
        )
        self.vae._build((D,), None)
        self.trainer = Trainer(
            self.vae.model_.model,
            self.vae.guide_.guide,
            self.vae._objective(),
            lr=LR,
            batch_size=BATCH,
            seed=0,
            device="cpu",
            compile=compile,
        )
        self.vae.history_ = {}

    def steps(self, k):
        self.trainer.run(self.x, self.trainer.step_count + k, progress=False)


@torch.no_grad()
def iwae_nll(enc, dec, x, k=1000, chunk=100):
    """Plain-torch IWAE bound, -mean_n log (1/K) sum_k p(x, z_k) / q(z_k | x), in nats."""
    torch.manual_seed(1)
    h = enc(x)
    loc, scale = h[:, :L], h[:, L:].clamp(-9, 5).exp()
    acc = None
    for start in range(0, k, chunk):
        kk = min(chunk, k - start)
        eps = torch.randn(kk, *loc.shape)
        z = loc + scale * eps
        log_q = (-0.5 * eps**2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_pz = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
        logits = dec(z)
        log_px = -nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
        lse = torch.logsumexp(log_px + log_pz - log_q, 0)
        acc = lse if acc is None else torch.logaddexp(acc, lse)
    return -(acc - math.log(k)).mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data("digits-binary")
    x, x_test = torch.tensor(data.x_train), torch.tensor(data.x_test)
    torch.manual_seed(0)
    runs = {
        "a hand-written": HandVAE(x),
        "a' hand, fused Adam": HandVAE(x, fused=True),
        "b pyro tutorial": PyroTutorialVAE(x),
        "c ppdgm": PpdgmVAE(x, compile=not args.no_compile),
    }
    seconds = dict.fromkeys(runs, 0.0)
    blocks = {k: [] for k in runs}
    pyro.enable_validation(True)  # Pyro's default, as a tutorial user has it
    done = 0
    while done < args.steps:
        k = min(args.block, args.steps - done)
        for name, run in runs.items():
            t = time.perf_counter()
            run.steps(k)
            dt = time.perf_counter() - t
            seconds[name] += dt
            blocks[name].append(dt / k * 1e3)
        done += k
    ppdgm_vae = runs["c ppdgm"].vae
    nll = {
        "a hand-written": iwae_nll(runs["a hand-written"].enc, runs["a hand-written"].dec, x_test),
        "a' hand, fused Adam": iwae_nll(
            runs["a' hand, fused Adam"].enc, runs["a' hand, fused Adam"].dec, x_test
        ),
        "b pyro tutorial": iwae_nll(
            runs["b pyro tutorial"].encoder, runs["b pyro tutorial"].decoder, x_test
        ),
        "c ppdgm": -float(np.mean(ppdgm_vae.score_samples(data.x_test, num_particles=1000))),
    }
    cross = iwae_nll(ppdgm_vae.guide_.encoder, ppdgm_vae.model_.decoder, x_test)
    base = seconds["a hand-written"] / args.steps * 1e3
    print(
        f"VAE 64-{H}-{H}-{L} on binarized digits, batch {BATCH}, Adam {LR}, {args.steps} steps, "
        f"torch threads {torch.get_num_threads()}, compile={not args.no_compile}"
    )
    print(f"{'method':20s} {'ms/step':>8s} {'median':>8s} {'ratio':>6s} {'IWAE NLL':>9s}")
    for name in runs:
        ms = seconds[name] / args.steps * 1e3
        print(
            f"{name:20s} {ms:8.2f} {np.median(blocks[name]):8.2f} {ms / base:6.2f} {nll[name]:9.3f}"
        )
    print(
        f"per-block median ratio c/a: {np.median(np.array(blocks['c ppdgm']) / np.array(blocks['a hand-written'])):.3f}"
    )
    print(
        f"cross-check: plain-torch IWAE on ppdgm's networks {cross:.3f} nats "
        f"(ppdgm's own evaluation {nll['c ppdgm']:.3f})"
    )
    fb = getattr(runs["c ppdgm"].trainer._loss, "fallback_reason", None)
    if fb:
        print(f"note: ppdgm ran uncompiled: {fb}")


if __name__ == "__main__":
    main()
