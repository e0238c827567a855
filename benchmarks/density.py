"""Exact-likelihood families on the binarized digits, side by side with the VAE's bound.

Each family is fitted with its defaults, the way ``ppdgm train FAMILY --data digits-binary``
fits it: 5,000 steps of batch 128 at lr 1e-3 on the training split less its validation part,
the parameters of the best validation step kept. Reported per family: the exact test NLL in
nats per image (lower is better), the step it was selected at, the validation NLL there and
at the last step (how much it overfits), and the time per training step (validation
included). The VAE row is its IWAE bound (5,000
particles) on the same test images, an upper bound on its NLL.

    python benchmarks/density.py [--steps 5000] [--families fvsbn,nade,made,vae]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def digits(families: list[str], steps: int, seed: int) -> None:
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
        est = get_family(name)(seed=seed)
        start = time.perf_counter()
        est.fit(data.x_train, num_steps=steps, batch_size=128, lr=1e-3, X_val=data.x_val)
        per_step = 1000 * (time.perf_counter() - start) / steps
        if name == "vae":
            nll = -float(np.mean(est.score_samples(data.x_test, num_particles=5000)))
            name += "*"
        else:
            nll = -est.score(data.x_test)
        val = est.history_["eval"]
        print(
            f"{name:<8} {nll:9.3f} {est.selected_step_:8d} {est.best_val_loss_:14.3f} "
            f"{val[-1]:15.3f} {per_step:8.2f}"
        )
    print("* the VAE's IWAE bound (5,000 particles), an upper bound on its NLL; its validation")
    print("  loss is the negative ELBO")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--families", default="fvsbn,nade,made,vae")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    digits(args.families.split(","), args.steps, args.seed)


if __name__ == "__main__":
    main()
