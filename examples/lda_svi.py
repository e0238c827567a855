"""Latent Dirichlet allocation by SVI on a synthetic corpus whose topics are known, with
the per-word topic assignments summed out; prints each recovered topic's top words.

    python examples/lda_svi.py --steps 3000
"""

import argparse

import numpy as np

import ppdgm.inference as inf
from ppdgm.models import classical

VOCAB = [
    "goal", "match", "team", "score",
    "vote", "party", "law", "senate",
    "gene", "cell", "protein", "dna",
]  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=3000, help="SVI steps")
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    k, v, length = 3, len(VOCAB), 40
    topics = np.zeros((k, v))
    for t in range(k):
        topics[t, 4 * t : 4 * t + 4] = rng.dirichlet(np.ones(4))
    theta = rng.dirichlet(0.3 * np.ones(k), size=args.docs)
    # documents of different lengths, padded and masked
    lengths = rng.integers(length // 2, length + 1, size=args.docs)
    words = np.zeros((args.docs, length), dtype=int)
    mask = np.arange(length)[None, :] < lengths[:, None]
    for d in range(args.docs):
        words[d, : lengths[d]] = rng.choice(v, size=lengths[d], p=theta[d] @ topics)

    idata = inf.svi(
        classical.lda,
        words,
        mask,
        num_topics=k,
        vocab_size=v,
        num_steps=args.steps,
        learning_rate=0.05,
        num_samples=200,
        seed=args.seed,
    )
    est = idata.posterior["topics"].mean(("chain", "draw")).values
    for t in range(k):
        top = np.argsort(est[t])[::-1][:4]
        print(f"topic {t}: " + ", ".join(f"{VOCAB[i]} ({est[t, i]:.2f})" for i in top))
    return est


if __name__ == "__main__":
    main()
