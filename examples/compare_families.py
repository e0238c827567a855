"""Every family on the bundled digits, compared by the same sample-quality metrics: Fréchet and
kernel distances in the digits classifier's features, precision and recall, the Inception-score
analogue, and for the families with a density the test NLL too.

The floor is the distance between the training and test splits themselves (297 test examples
against as many samples: the Fréchet distance is biased upward at this sample size, so a model
cannot be expected to go below it). Binary families (MADE, NADE, PixelCNN, RBM, DBM) model the
binarized digits, whose NLL is not comparable with the others'; their samples are compared with
the same test images, binarized. The deep EBM's NLL rests on an AIS estimate of log Z which, in
64 dimensions, is far from settled (AIS warns); the table marks such an NLL with ``?``.

    python examples/compare_families.py [--steps 3000] [--families vae,realnvp,...] [--out DIR]

Writes ``compare_families.json`` (the table) and ``compare_families.png`` (the figure: the
Fréchet distance of each family beside the floor, and a row of samples of each).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import ppdgm
from ppdgm.data import load_data
from ppdgm.errors import TrainingDivergedError
from ppdgm.evaluation import digits_features, frechet_distance, inception_score
from ppdgm.inference import ADVERSARIAL_LOSSES

#: name -> (estimator factory, data view, images (N, 1, 8, 8) rather than rows)
FAMILIES = {
    "vae": (lambda s: ppdgm.VAE(likelihood="auto", seed=s), "digits", False),
    "realnvp": (lambda s: ppdgm.RealNVP(seed=s), "digits", False),
    "maf": (lambda s: ppdgm.MAF(seed=s), "digits", False),
    "nsf": (lambda s: ppdgm.NSF(seed=s), "digits", False),
    "made": (lambda s: ppdgm.MADE(seed=s), "digits-binary", False),
    "nade": (lambda s: ppdgm.NADE(seed=s), "digits-binary", False),
    "pixelcnn": (lambda s: ppdgm.PixelCNN(seed=s), "digits-binary", True),
    "gan": (lambda s: ppdgm.GAN("non_saturating", seed=s), "digits", True),
    "wgan_gp": (lambda s: ppdgm.GAN("wgan_gp", seed=s), "digits", True),
    "lsgan": (lambda s: ppdgm.GAN("least_squares", seed=s), "digits", True),
    "bigan": (lambda s: ppdgm.BiGAN(seed=s), "digits", True),
    "rbm": (lambda s: ppdgm.RBM(seed=s), "digits-binary", False),
    "dbm": (lambda s: ppdgm.DBM(seed=s), "digits-binary", False),
    "ebm": (lambda s: ppdgm.DeepEBM(seed=s), "digits", False),
}
# every other adversarial loss, DCGAN on the digits with its defaults: gan-minimax, gan-hinge,
# gan-f:kl, ...
FAMILIES.update(
    {
        f"gan-{loss}": ((lambda s, loss=loss: ppdgm.GAN(loss, seed=s)), "digits", True)
        for loss in ADVERSARIAL_LOSSES
        if loss not in ("non_saturating", "wgan_gp", "least_squares")
    }
)


def _fit_one(name: str, steps: int, seed: int) -> tuple[dict, np.ndarray]:
    make, view, images = FAMILIES[name]
    data = load_data(view)
    x_train, x_test = data.x_train, data.x_test
    if images:
        x_train, x_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)
    t0 = time.perf_counter()
    est = make(seed).fit(x_train, num_steps=steps)
    seconds = time.perf_counter() - t0
    row = {"data": view, "seconds": seconds}
    row.update(est.sample_metrics(x_test, "test", features="digits"))
    if est.has_density:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            row["test_nll"] = float(-np.mean(est.score_samples(x_test)))
        # an energy model's log Z from an unsettled AIS run (it warns): the NLL is not a figure
        row["test_nll_reliable"] = not any("AIS" in str(w.message) for w in caught)
    samples = est.sample(8, seed=seed).reshape(8, 8, 8)
    return row, samples / (16.0 if view == "digits" else 1.0)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=3000, help="training steps of every family")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated names")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=".", help="folder for the table and the figure")
    args = ap.parse_args(argv)
    names = [n for n in args.families.split(",") if n]
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        ap.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    digits = load_data("digits")
    train_f, test_f = digits_features(digits.x_train), digits_features(digits.x_test)
    table = {
        "train/test floor": {
            "data": "digits",
            "test_frechet_distance": frechet_distance(test_f, train_f),
            "test_inception_score": inception_score(digits.x_test)[0],
        }
    }
    grids = {}
    for name in names:
        try:
            table[name], grids[name] = _fit_one(name, args.steps, args.seed)
        except TrainingDivergedError as e:  # a row that says so, not a lost table
            table[name] = {"data": FAMILIES[name][1], "diverged": str(e)}
            print(f"{name}: diverged ({e})", flush=True)
            continue
        print(
            f"{name}: Fréchet {table[name]['test_frechet_distance']:.3f} "
            f"({table[name]['seconds']:.0f} s)",
            flush=True,
        )
        # written after every family, so that a long run's finished rows survive
        (out / "compare_families.json").write_text(json.dumps(table, indent=2) + "\n")

    cols = [
        ("test_frechet_distance", "Fréchet"),
        ("test_kernel_distance", "KID"),
        ("test_precision", "prec"),
        ("test_recall", "recall"),
        ("test_inception_score", "IS"),
        ("test_nll", "NLL"),
    ]
    print(f"{'':<18}{'data':<15}" + "".join(f"{title:>9}" for _, title in cols))
    for name, row in table.items():
        cells = "".join(f"{row[key]:>9.3f}" if key in row else f"{'':>9}" for key, _ in cols)
        if row.get("test_nll_reliable") is False:
            cells += "?"
        if "diverged" in row:
            cells += "   diverged"
        print(f"{name:<18}{row['data']:<15}{cells}")
    (out / "compare_families.json").write_text(json.dumps(table, indent=2) + "\n")
    _figure(table, grids, out / "compare_families.png")
    return table


def _figure(table: dict, grids: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(grids)
    fig, (bars, pics) = plt.subplots(
        1, 2, figsize=(11, 0.5 * len(names) + 2), gridspec_kw={"width_ratios": [1, 1.4]}
    )
    fd = [table[n]["test_frechet_distance"] for n in names]
    bars.barh(range(len(names)), fd, color="tab:blue")
    bars.axvline(
        table["train/test floor"]["test_frechet_distance"],
        color="k",
        ls="--",
        label="train vs test (floor)",
    )
    bars.set_yticks(range(len(names)), names)
    bars.invert_yaxis()
    bars.set_xscale("log")
    bars.set_xlabel("Fréchet distance, digits-classifier features (lower is better)")
    bars.legend(loc="lower right")
    # each 8x8 sample with a one-pixel blank border: one row of 8 per family
    tiles = {n: np.pad(np.clip(grids[n], 0, 1), ((0, 0), (1, 1), (1, 1))) for n in names}
    strip = np.concatenate([np.concatenate(list(tiles[n]), axis=1) for n in names], axis=0)
    pics.imshow(strip, cmap="gray_r", vmin=0, vmax=1, aspect="equal")
    pics.set_yticks([10 * i + 4.5 for i in range(len(names))], names)
    pics.set_xticks([])
    pics.set_title("8 samples of each")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
