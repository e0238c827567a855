"""Level and power of ppdgm's two-sample tests: the share of rejections at level 0.05 over
``--reps`` repetitions, for the kernel MMD permutation test and the classifier two-sample test.

Pairs (n examples on each side):

* ``null``: N(0, I_2) against N(0, I_2); the share should be about 0.05 (the level).
* ``shift 0.3``: N(0, I_2) against N((0.3, 0), I_2), a small mean shift.
* ``scale 1.3``: N(0, I_2) against N(0, 1.3^2 I_2), a wider spread.
* ``digits null``: the digits classifier's features of training digits against those of test
  digits (both real: about 0.05 again).
* ``digits shift``: training digits against test digits moved one pixel to the right: a
  known-different pair of images.

    python benchmarks/two_sample.py [--sizes 50,100,200] [--reps 100] [--permutations 200]
"""

from __future__ import annotations

import argparse

import numpy as np


def _pairs(n: int, rng: np.random.Generator, train_f, test_f, shifted_f):
    def gauss(shift=0.0, scale=1.0):
        a = rng.standard_normal((n, 2))
        b = rng.standard_normal((n, 2)) * scale
        b[:, 0] += shift
        return a, b

    yield "null", gauss()
    yield "shift 0.3", gauss(shift=0.3)
    yield "scale 1.3", gauss(scale=1.3)
    if n <= len(test_f):
        a = train_f[rng.choice(len(train_f), n, replace=False)]
        idx = rng.choice(len(test_f), n, replace=False)
        yield "digits null", (a, test_f[idx])
        yield "digits shift", (a, shifted_f[idx])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,100,200")
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args(argv)

    from ppdgm.data import load_data
    from ppdgm.evaluation import classifier_two_sample_test, digits_features, mmd_test

    digits = load_data("digits")
    train_f, test_f = digits_features(digits.x_train), digits_features(digits.x_test)
    images = digits.x_test.reshape(-1, 8, 8)
    shifted = np.concatenate([np.zeros_like(images[:, :, :1]), images[:, :, :-1]], axis=2)
    shifted_f = digits_features(shifted.reshape(len(images), 64))

    sizes = [int(s) for s in args.sizes.split(",")]
    counts: dict[tuple[str, int], list[int]] = {}
    for n in sizes:
        for rep in range(args.reps):
            rng = np.random.default_rng(1000 * n + rep)
            for name, (a, b) in _pairs(n, rng, train_f, test_f, shifted_f):
                _, p_mmd = mmd_test(a, b, num_permutations=args.permutations, seed=rep)
                _, p_c2st = classifier_two_sample_test(a, b, seed=rep)
                c = counts.setdefault((name, n), [0, 0])
                c[0] += p_mmd <= args.alpha
                c[1] += p_c2st <= args.alpha

    names = list(dict.fromkeys(name for name, _ in counts))
    print(f"share of rejections at level {args.alpha}, {args.reps} repetitions (MMD / C2ST)")
    print(f"{'pair':<14}" + "".join(f"{'n=' + str(n):>16}" for n in sizes))
    table = {}
    for name in names:
        cells = []
        for n in sizes:
            if (name, n) not in counts:
                cells.append(f"{'-':>16}")
                continue
            mmd, c2st = (v / args.reps for v in counts[(name, n)])
            table[f"{name}, n={n}"] = {"mmd": mmd, "c2st": c2st}
            cells.append(f"{mmd:>9.2f} / {c2st:.2f}")
        print(f"{name:<14}" + "".join(cells))
    return table


if __name__ == "__main__":
    main()
