"""Write your own latent-variable model: a conditional VAE on the digits, trained by the Trainer.

The model and the guide are ordinary Pyro programs (here ppdgm's ConditionalVAEModel and
ConditionalNormalGuide, which you can copy and change); the Trainer takes any (model, guide,
objective) and knows nothing about VAEs. After training, digits of a chosen class are generated.

    python examples/custom_conditional_vae.py --steps 3000 --out runs/cvae
"""

import argparse
from pathlib import Path

import torch

from ppdgm import viz
from ppdgm.data import load_data
from ppdgm.evaluation import iwae_bound
from ppdgm.guides import ConditionalNormalGuide
from ppdgm.inference import ELBO
from ppdgm.models import ConditionalVAEModel, make_likelihood
from ppdgm.nn import MLP
from ppdgm.train import Trainer


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/cvae")
    args = ap.parse_args(argv)

    data = load_data("digits-binary")
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    torch.manual_seed(args.seed)
    latent, classes = 4, 10
    model = ConditionalVAEModel(
        MLP(latent + classes, [256, 256], 64),
        latent,
        make_likelihood("bernoulli", (64,)),
        (64,),
        num_classes=classes,
    )
    guide = ConditionalNormalGuide(
        MLP(64 + classes, [256, 256], 2 * latent), latent, num_classes=classes
    )
    trainer = Trainer(model.model, guide.guide, ELBO(), lr=1e-3, batch_size=128, seed=args.seed)
    trainer.run((x, y), args.steps, progress=True)

    xt, yt = torch.tensor(data.x_test), torch.tensor(data.y_test)
    nll = -iwae_bound(model.model, guide.guide, xt, yt, num_particles=200).mean().item()
    print(f"test -log p(x | y) <= {nll:.2f} nats (IWAE, K=200)")
    with torch.no_grad():
        labels = torch.arange(classes).repeat_interleave(8)
        z = torch.randn(len(labels), latent)
        images = model.decode(z, labels).numpy()
    out = Path(args.out)
    viz.image_grid(images, (1, 8, 8), nrow=8, title="one row per class", path=out / "by_class.png")
    viz.plot_curves(trainer.history, path=out / "curves.png")
    print(f"wrote {out}/by_class.png and {out}/curves.png")
    return nll


if __name__ == "__main__":
    main()
