"""Semi-supervised learning with the M2 model: labels for a few digits, the rest unlabelled.

Unlabelled examples carry the label -1; the SemiSupervisedELBO objective gives labelled ones the
ELBO of p(x, y) and unlabelled ones the ELBO of p(x), with y summed out by enumeration in the
guide (TraceEnum_ELBO), plus a classification term. Reports the classifier's test accuracy.

    python examples/semi_supervised_m2.py --labelled 100 --steps 4000
"""

import argparse

import torch

from ppdgm.data import load_data
from ppdgm.guides import M2Guide
from ppdgm.inference import SemiSupervisedELBO
from ppdgm.models import M2Model, make_likelihood
from ppdgm.nn import MLP
from ppdgm.train import Trainer


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--labelled", type=int, default=100, help="how many training labels to keep")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    data = load_data("digits-binary")
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train).clone()
    g = torch.Generator().manual_seed(args.seed)
    hidden = torch.randperm(len(y), generator=g)[args.labelled :]
    y[hidden] = -1  # missing labels
    torch.manual_seed(args.seed)
    latent, classes = 8, 10
    model = M2Model(
        MLP(latent + classes, [256], 64),
        latent,
        make_likelihood("bernoulli", (64,)),
        (64,),
        num_classes=classes,
    )
    guide = M2Guide(
        MLP(64, [256], classes), MLP(64 + classes, [256], 2 * latent), latent, num_classes=classes
    )
    objective = SemiSupervisedELBO(aux_weight=0.1 * len(y) / max(1, args.labelled))
    # the objective splits each batch by label, a value-dependent step: run it eagerly
    trainer = Trainer(
        model.model, guide.guide, objective, lr=1e-3, batch_size=128, seed=args.seed, compile=False
    )
    trainer.run((x, y), args.steps, progress=True)

    with torch.no_grad():
        pred = guide.class_logits(torch.tensor(data.x_test)).argmax(-1).numpy()
    accuracy = (pred == data.y_test).mean()
    print(f"test accuracy of q(y | x) with {args.labelled} labels: {accuracy:.3f} (chance 0.1)")
    return accuracy


if __name__ == "__main__":
    main()
