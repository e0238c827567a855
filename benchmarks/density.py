"""Exact-likelihood families: flows on eight Gaussians against zuko and Pyro, autoregressive
models on the binarized digits against the VAE's bound.

Part ``flows``: eight Gaussians on a circle (radius 2, std 0.1, equal weights; 20,000 train
and 5,000 test points, seeds 1 and 2). Each flow is trained for ``--flow-steps`` steps of
batch 512 at lr 1e-3, once with its class defaults and once at the peers' architecture
(4 transforms, hidden 64x2; NSF with 8 bins, autoregressive and coupling); the peers (zuko
NSF and MAF, a Pyro spline-coupling flow and a Pyro affine-autoregressive flow, each 4
transforms of hidden 64x2, and zuko NSF tuned: 6 transforms of hidden 128x2, 16 bins, cosine
learning-rate decay) train in a plain Adam loop at the same budget. Reported: the test NLL,
its gap to the true density's NLL on the same points, milliseconds per step, and the ratios
of time per step against the peer with the same transform.

Part ``digits``:

Each family is fitted with its defaults, the way ``ppdgm train FAMILY --data digits-binary``
fits it: 5,000 steps of batch 128 at lr 1e-3 on the training split less its validation part,
the parameters of the best validation step kept. Reported per family: the exact test NLL in
nats per image (lower is better), the step it was selected at, the validation NLL there and
at the last step (how much it overfits), and the time per training step (validation
included). The VAE row is its IWAE bound (5,000
particles) on the same test images, an upper bound on its NLL.

Part ``dequantized``: digits at 17 grey levels, uniformly dequantized (every flow's default
for integer data), fitted like part ``digits``; reported in bits per dimension.

Part ``sequences``: CharRNN on the bundled text (standard-library docstrings) and WaveNet on
the bundled tones, with defaults; test nats and bits per symbol next to the uniform code.

Part ``vae-flows``: the VAE on binarized digits with a normal or flow prior and a Normal or
IAF guide; test IWAE bound (5,000 particles) and negative ELBO.

    python benchmarks/density.py [--part flows|digits|dequantized|sequences|vae-flows|all]
        [--flow-steps 2000]
        [--flow-families nice,realnvp,maf,nsf,glow,cnf,planar,radial] [--steps 5000]
        [--families fvsbn,nade,made,pixelcnn,vae] [--dequantized-families realnvp,glow,nsf]
        [--set NAME=VALUE ...]

``--set`` overrides a hyperparameter of every listed family that has it (to try settings
against the defaults).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def digits(families: list[str], steps: int, seed: int, overrides: dict | None = None) -> None:
    import torch

    from ppdgm.data import load_data, split_validation
    from ppdgm.estimators import get_family

    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = split_validation(load_data("digits-binary"))
    print(
        f"binarized digits: {len(data.x_train)} train, {len(data.x_val)} validation, "
        f"{len(data.x_test)} test images; {steps} steps of batch 128, lr 1e-3, defaults"
    )
    print(
        f"{'family':<8} {'test NLL':>9} {'at step':>8} {'val NLL there':>14} "
        f"{'val NLL at end':>15} {'ms/step':>8}"
    )
    for name in families:
        cls = get_family(name)
        est = cls(
            **{
                **{k: v for k, v in (overrides or {}).items() if k in cls.param_defaults()},
                "seed": seed,
            }
        )
        x_train, x_val, x_test = data.x_train, data.x_val, data.x_test
        if getattr(cls, "needs_images", False):  # PixelCNN: 1x8x8 images
            x_train, x_val, x_test = (
                x.reshape(len(x), *data.image_shape) for x in (x_train, x_val, x_test)
            )
        start = time.perf_counter()
        est.fit(x_train, num_steps=steps, batch_size=128, lr=1e-3, X_val=x_val)
        per_step = 1000 * (time.perf_counter() - start) / steps
        if name == "vae":
            nll = -float(np.mean(est.score_samples(x_test, num_particles=5000)))
            name += "*"
        else:
            nll = -est.score(x_test)
        val = est.history_["eval"]
        print(
            f"{name:<8} {nll:9.3f} {est.selected_step_:8d} {est.best_val_loss_:14.3f} "
            f"{val[-1]:15.3f} {per_step:8.2f}"
        )
    print("* the VAE's IWAE bound (5,000 particles), an upper bound on its NLL; its validation")
    print("  loss is the negative ELBO")


def eight_gaussians(num: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angles = rng.integers(8, size=num) * np.pi / 4
    centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
    return (centres + 0.1 * rng.normal(size=(num, 2))).astype(np.float32)


def eight_gaussians_log_prob(x: np.ndarray) -> np.ndarray:
    from scipy.special import logsumexp

    angles = np.arange(8) * np.pi / 4
    centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
    d2 = ((x[:, None, :].astype(np.float64) - centres[None]) ** 2).sum(-1)
    return logsumexp(-0.5 * d2 / 0.01 - np.log(2 * np.pi * 0.01), axis=1) - np.log(8)


def _peer_loop(log_prob, params, x, steps: int, seed: int, cosine: bool = False) -> float:
    """A plain Adam loop over shuffled minibatches of 512 (the learning rate decayed along a
    cosine to 0 if ``cosine``); returns ms per step."""
    import torch

    opt = torch.optim.Adam(params, lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
    gen = torch.Generator().manual_seed(seed)
    perm, pos = torch.randperm(len(x), generator=gen), 0
    start = time.perf_counter()
    for _ in range(steps):
        if pos + 512 > len(x):
            perm, pos = torch.randperm(len(x), generator=gen), 0
        batch = x[perm[pos : pos + 512]]
        pos += 512
        loss = -log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    return 1000 * (time.perf_counter() - start) / steps


def _peer_builders(seed: int) -> list:
    """(name, build, cosine) per peer; ``build()`` returns a fresh (log_prob, parameters)."""
    import pyro.distributions as dist
    import pyro.distributions.transforms as T
    import torch

    builders = []
    try:
        import zuko

        for name, cls, kw, cosine in (
            ("zuko NSF", zuko.flows.NSF, {}, False),
            ("zuko MAF", zuko.flows.MAF, {}, False),
            (
                "zuko NSF tuned (6x128x2, 16 bins, cos)",
                zuko.flows.NSF,
                {"transforms": 6, "hidden_features": (128, 128), "bins": 16},
                True,
            ),
        ):

            def build(cls=cls, kw=kw):
                torch.manual_seed(seed)
                flow = cls(2, **{"transforms": 4, "hidden_features": (64, 64), **kw})
                return (lambda b: flow().log_prob(b)), flow.parameters()

            builders.append((name, build, cosine))
    except ImportError:
        print("(zuko is not installed: its rows are left out; pip install zuko)")
    base = dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
    for name, make in (
        ("Pyro spline coupling", lambda: T.spline_coupling(2, hidden_dims=[64, 64], count_bins=8)),
        ("Pyro affine AR", lambda: T.affine_autoregressive(2, hidden_dims=[64, 64])),
    ):

        def build(name=name, make=make):
            torch.manual_seed(seed)
            layers = [make() for _ in range(4)]
            transforms = []
            for i, t in enumerate(layers):
                transforms.append(t.inv if "AR" in name else t)
                if i < 3:
                    transforms.append(T.Permute(torch.tensor([1, 0])))

            def log_prob(b):
                return dist.TransformedDistribution(base, transforms).log_prob(b)

            return log_prob, torch.nn.ModuleList(layers).parameters()

        builders.append((name, build, False))
    return builders


def flows(steps: int, seed: int, families: list[str]) -> None:
    import torch

    from ppdgm.estimators import get_family

    x_train, x_test = eight_gaussians(20000, 1), eight_gaussians(5000, 2)
    true = -float(np.mean(eight_gaussians_log_prob(x_test)))
    print(
        f"eight Gaussians (std 0.1): true test NLL {true:.3f} nats; {steps} steps of batch "
        "512, lr 1e-3"
    )
    print(f"{'flow':<40} {'test NLL':>9} {'gap':>7} {'ms/step':>8}")
    peer_arch = {"num_transforms": 4, "hidden_dims": (64, 64)}
    # the peers' architecture per family (zuko's and Pyro's 8 bins for NSF's two kinds)
    peer_configs = {
        "nsf": [
            ("AR 4 x 64x2, 8 bins", {**peer_arch, "count_bins": 8}),
            ("coupling 4 x 64x2, 8 bins", {**peer_arch, "count_bins": 8, "kind": "coupling"}),
        ]
    }
    for name in families:
        cls = get_family(name)
        configs = [("defaults", {})]
        if {"num_transforms", "hidden_dims"} <= set(cls.param_defaults()):  # the peers' too
            configs += peer_configs.get(name, [("4 x 64x2", peer_arch)])
        for label, kw in configs:
            est = cls(seed=seed, device="cpu", **kw)
            start = time.perf_counter()
            est.fit(x_train, num_steps=steps, batch_size=512, lr=1e-3)
            ms = 1000 * (time.perf_counter() - start) / steps
            nll = -est.score(x_test)
            row = f"ppdgm {cls.__name__} ({label})"
            print(f"{row:<40} {nll:9.3f} {nll - true:+7.3f} {ms:8.2f}", flush=True)
    xt = torch.as_tensor(x_train)
    peers = {}
    for name, build, cosine in _peer_builders(seed):
        log_prob, params = build()
        ms = _peer_loop(log_prob, params, xt, steps, seed, cosine)
        with torch.no_grad():
            nll = -float(log_prob(torch.as_tensor(x_test)).mean())
        peers[name] = (build, cosine)
        print(f"{name:<40} {nll:9.3f} {nll - true:+7.3f} {ms:8.2f}", flush=True)
    # the ratios: each pair timed again, alternating, and the median of three runs taken, so
    # that a slow spell of a shared machine does not fall on one side only
    reps, timing_steps = 3, min(steps, 1000)
    print(
        f"time per step, ppdgm / peer (median of {reps} alternating runs of {timing_steps} "
        "steps; below 1: ppdgm is faster):"
    )
    for family, label, peer in (
        ("nsf", "defaults", "zuko NSF tuned (6x128x2, 16 bins, cos)"),
        ("nsf", "AR 4 x 64x2, 8 bins", "zuko NSF"),
        ("nsf", "coupling 4 x 64x2, 8 bins", "Pyro spline coupling"),
        ("maf", "4 x 64x2", "zuko MAF"),
        ("maf", "4 x 64x2", "Pyro affine AR"),
    ):
        if family not in families or peer not in peers:
            continue
        cls = get_family(family)
        kw = dict([("defaults", {}), *peer_configs.get(family, [("4 x 64x2", peer_arch)])])[label]
        build, cosine = peers[peer]
        ours_ms, peer_ms = [], []
        for _ in range(reps):
            start = time.perf_counter()
            est = cls(seed=seed, device="cpu", **kw)
            est.fit(x_train, num_steps=timing_steps, batch_size=512, lr=1e-3)
            ours_ms.append(1000 * (time.perf_counter() - start) / timing_steps)
            log_prob, params = build()
            peer_ms.append(_peer_loop(log_prob, params, xt, timing_steps, seed, cosine))
        a, b = float(np.median(ours_ms)), float(np.median(peer_ms))
        print(
            f"  ppdgm {cls.__name__} ({label}) / {peer}: {a:.2f} / {b:.2f} ms = {a / b:.2f}",
            flush=True,
        )


def dequantized(families: list[str], steps: int, seed: int) -> None:
    """Digits at 17 grey levels (0..16), uniformly dequantized: bits per dimension."""
    from ppdgm.data import load_data, split_validation
    from ppdgm.estimators import get_family

    data = split_validation(load_data("digits"))
    print(
        f"digits at 17 levels, dequantized: {len(data.x_train)} train, {len(data.x_val)} "
        f"validation, {len(data.x_test)} test images; {steps} steps of batch 128, lr 1e-3, "
        "defaults (dequantize='auto': uniform)"
    )
    print(f"{'family':<10} {'test bits/dim':>14} {'test NLL':>9} {'at step':>8} {'ms/step':>8}")
    for name in families:
        cls = get_family(name)
        est = cls(seed=seed)
        x_train, x_val, x_test = data.x_train, data.x_val, data.x_test
        if name == "glow":  # as 1x8x8 images (multi-scale)
            x_train, x_val, x_test = (
                x.reshape(len(x), *data.image_shape) for x in (x_train, x_val, x_test)
            )
        start = time.perf_counter()
        est.fit(x_train, num_steps=steps, batch_size=128, lr=1e-3, X_val=x_val)
        per_step = 1000 * (time.perf_counter() - start) / steps
        m = est.metrics(x_test, "test")
        print(
            f"{name:<10} {m['test_bits_per_dim']:14.3f} {m['test_nll']:9.2f} "
            f"{est.selected_step_:8d} {per_step:8.2f}"
        )
    print("  (a lower bound on log P(x) with 8 importance samples of the dequantization noise)")


def sequences(steps: int, seed: int) -> None:
    """CharRNN on the bundled text and WaveNet on the bundled tones, with defaults."""
    from ppdgm import CharRNN, WaveNet
    from ppdgm.data import load_data, split_validation

    print(f"sequence models with defaults: {steps} steps of batch 128, lr 1e-3")
    print(
        f"{'family':<8} {'data':<11} {'test nats/symbol':>17} {'bits/symbol':>12} "
        f"{'uniform':>8} {'ms/step':>8}"
    )
    for cls, name in ((CharRNN, "pydoc-text"), (WaveNet, "tones")):
        data = split_validation(load_data(name))
        k = len(data.vocabulary) if data.vocabulary else data.num_bins
        est = cls(num_classes=k, vocabulary=data.vocabulary, seed=seed)
        start = time.perf_counter()
        est.fit(data.x_train, num_steps=steps, batch_size=128, lr=1e-3, X_val=data.x_val)
        per_step = 1000 * (time.perf_counter() - start) / steps
        nats = -est.score(data.x_test) / data.x_test.shape[1]
        print(
            f"{cls.family:<8} {name:<11} {nats:17.3f} {nats / np.log(2):12.3f} "
            f"{np.log(k):8.3f} {per_step:8.2f}"
        )
        if data.vocabulary:
            for line in est.decode(est.sample(3, temperature=0.8)):
                print("   sample (T=0.8):", repr(line))


def vae_flows(steps: int, seed: int) -> None:
    """The VAE on binarized digits with and without a flow prior and an IAF guide."""
    from ppdgm import VAE
    from ppdgm.data import load_data, split_validation

    data = split_validation(load_data("digits-binary"))
    print(
        f"VAE on binarized digits: {steps} steps of batch 128, lr 1e-3; IWAE bound, 5,000 particles"
    )
    print(f"{'prior':<7} {'guide':<7} {'test NLL <=':>11} {'test -ELBO':>11} {'ms/step':>8}")
    for prior, guide in (("normal", "none"), ("flow", "none"), ("normal", "iaf"), ("flow", "iaf")):
        est = VAE(prior=prior, guide_flow=guide, seed=seed)
        start = time.perf_counter()
        est.fit(data.x_train, num_steps=steps, batch_size=128, lr=1e-3, X_val=data.x_val)
        per_step = 1000 * (time.perf_counter() - start) / steps
        iwae = -float(np.mean(est.score_samples(data.x_test, num_particles=5000)))
        elbo = -float(np.mean(est.elbo_samples(data.x_test, num_particles=10)))
        print(f"{prior:<7} {guide:<7} {iwae:11.3f} {elbo:11.3f} {per_step:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=("flows", "digits", "dequantized", "sequences", "vae-flows", "all"),
        default="all",
    )
    parser.add_argument("--flow-steps", type=int, default=2000)
    parser.add_argument("--flow-families", default="nice,realnvp,maf,nsf,glow,cnf,planar,radial")
    parser.add_argument("--dequantized-families", default="realnvp,glow,nsf")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--families", default="fvsbn,nade,made,pixelcnn,vae")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a hyperparameter (a Python literal) of the families that have it",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.part in ("flows", "all"):
        flows(args.flow_steps, args.seed, args.flow_families.split(","))
    if args.part in ("digits", "all"):
        import ast

        overrides = {}
        for item in args.set:
            name, _, value = item.partition("=")
            overrides[name] = ast.literal_eval(value)
        digits(args.families.split(","), args.steps, args.seed, overrides)
    if args.part in ("dequantized", "all"):
        dequantized(args.dequantized_families.split(","), args.steps, args.seed)
    if args.part in ("sequences", "all"):
        sequences(args.steps, args.seed)
    if args.part in ("vae-flows", "all"):
        vae_flows(args.steps, args.seed)


if __name__ == "__main__":
    main()
