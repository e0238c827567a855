"""Generative adversarial networks: a generator program with an implicit likelihood against a
discriminator, fitted by an adversarial objective through the one trainer."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._utils import check_int, floored_std
from ..errors import ConfigError, NoDensityError
from ..inference.adversarial import ADVERSARIAL_LOSSES, Adversarial
from .base import Estimator, check_hidden_dims, register

__all__ = ["GAN", "BiGAN"]

ARCHS = ("auto", "mlp", "dcgan")
#: the losses whose critic is trained several times per generator step by default
_CRITIC_LOSSES = ("wasserstein", "wgan_gp")


@register
class GAN(Estimator):
    """A generative adversarial network (Goodfellow et al., 2014) and its variants.

    The generator :class:`~ppdgm.models.gan.Generator` is a Pyro program: z ~ N(0, I), x a
    deterministic function of z (and of the label y when ``conditional``); it has no density.
    The discriminator :class:`~ppdgm.models.gan.Discriminator` plays against it under
    :class:`~ppdgm.inference.Adversarial`, each with its own Adam optimizer (RMSprop for
    ``wasserstein``, as in its paper), in :class:`~ppdgm.train.Trainer`.

    The validation loss, which selects the best step, is the unbiased MMD² with a Gaussian
    kernel between generated examples and the validation data (standardized units, bandwidth
    by the median heuristic on the validation data, fixed for the fit). ``score_samples``
    raises :class:`~ppdgm.errors.NoDensityError`; :meth:`sample_metrics` reports sample quality
    (Fréchet and kernel distances, precision and recall) instead.

    Args:
        loss: ``non_saturating``, ``minimax``, ``wasserstein`` (weight clipping),
            ``wgan_gp``, ``least_squares``, ``hinge``, or f-GAN's ``f:kl``,
            ``f:reverse_kl``, ``f:js``, ``f:pearson``, ``f:hellinger``.
        arch: ``mlp``, ``dcgan`` (images (N, C, H, W)) or ``auto`` (dcgan for images).
        latent_dim: dimension of z (None: half the data's dimensions, from 2 to 100).
        hidden_dims: hidden widths of the MLP generator and discriminator.
        channels: the DCGAN nets' narrowest convolution width (doubling per level).
        conditional: a conditional GAN: labels y go into the generator and the
            discriminator; ``fit(X, y)`` and ``sample(n, y=...)``.
        n_critic: discriminator updates per generator update (None: 5 for the Wasserstein
            losses, else 1).
        gp_weight: λ of the gradient penalty (``wgan_gp``; None: 1 for the MLP on
            standardized vectors, where the paper's 10 leaves more samples between the modes of
            a toy mixture, and the paper's 10 for images).
        clip_value: the weight clipping bound (``wasserstein``).
        betas: Adam's betas for both players (None: (0.5, 0.9) for ``wgan_gp``, else
            (0.5, 0.999)).
        discriminator_lr_scale: the discriminator's learning rate as a multiple of the
            generator's (two time-scale updates when not 1).
        ema: decay of an exponential moving average of the generator's weights (Yazıcı et
            al., 2019), which ``sample``, the validation MMD and the metrics use; 0: the last
            weights. On 8 Gaussians (5,000 steps) 0.99 raised the non-saturating GAN's
            high-quality share from 0.893, 0.901, 0.903 to 0.901, 0.909, 0.906 (seeds 0-2).
        seed, device, compile: as for every family.

    Attributes:
        model_: the fitted :class:`~ppdgm.models.gan.Generator` (the last weights).
        generator_average_: its moving average (None when ``ema`` is 0).
        discriminator_: the fitted :class:`~ppdgm.models.gan.Discriminator`.
    """

    family = "gan"
    summary = "generative adversarial network (minimax, non-saturating, WGAN(-GP), LSGAN, f-GAN)"
    default_data = "8gaussians"
    default_lr = 2e-4
    default_batch_size = 256
    has_density = False
    choices = {"loss": ADVERSARIAL_LOSSES, "arch": ARCHS}
    saved_defaults = {"ema": 0.0}  # a checkpoint from before the moving average had none

    def __init__(
        self,
        loss: str = "non_saturating",
        *,
        arch: str = "auto",
        latent_dim: int | None = None,
        hidden_dims: tuple[int, ...] = (128, 128, 128),
        channels: int = 32,
        conditional: bool = False,
        n_critic: int | None = None,
        gp_weight: float | None = None,
        clip_value: float = 0.01,
        betas: tuple[float, float] | None = None,
        discriminator_lr_scale: float = 1.0,
        ema: float = 0.99,
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.loss = loss
        self.arch = arch
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.channels = channels
        self.conditional = conditional
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.clip_value = clip_value
        self.betas = betas
        self.discriminator_lr_scale = discriminator_lr_scale
        self.ema = ema
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    # -- hyperparameters -----------------------------------------------------------------------
    def _check_params(self) -> None:
        super()._check_params()
        if self.latent_dim is not None:
            check_int("latent_dim", self.latent_dim)
        check_int("channels", self.channels)
        check_hidden_dims(self.hidden_dims)
        if self.n_critic is not None:
            check_int("n_critic", self.n_critic)
        if self.gp_weight is not None and not float(self.gp_weight) >= 0:
            raise ConfigError(f"gp_weight must be >= 0, got {self.gp_weight}")
        if not float(self.clip_value) > 0:
            raise ConfigError(f"clip_value must be positive, got {self.clip_value}")
        if not float(self.discriminator_lr_scale) > 0:
            raise ConfigError(
                f"discriminator_lr_scale must be positive, got {self.discriminator_lr_scale}"
            )
        if not 0.0 <= float(self.ema) < 1.0:
            raise ConfigError(f"ema must lie in [0, 1), got {self.ema}")
        if self.betas is not None:
            b = tuple(self.betas)
            if len(b) != 2 or not all(0.0 <= float(v) < 1.0 for v in b):
                raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
            if self.loss == "wasserstein":
                raise ConfigError("betas set Adam's; loss='wasserstein' uses RMSprop")
        if not isinstance(self.conditional, bool):
            raise ConfigError(f"conditional must be True or False, got {self.conditional!r}")

    def uses_labels(self) -> bool:
        return bool(self.conditional)

    @property
    def n_critic_(self) -> int:
        """The discriminator updates per generator update in use."""
        if self.n_critic is not None:
            return int(self.n_critic)
        return 5 if self.loss in _CRITIC_LOSSES else 1

    @property
    def gp_weight_(self) -> float:
        """λ of the gradient penalty in use (after the model is built, for the default)."""
        if self.gp_weight is not None:
            return float(self.gp_weight)
        return 10.0 if getattr(self, "arch_", "mlp") == "dcgan" else 1.0

    # -- the family's part ---------------------------------------------------------------------
    def _check_support(self, x: np.ndarray, source: str, settings: dict[str, Any]) -> None:
        if self.arch == "dcgan" and x.ndim != 4:
            raise ConfigError(
                f"{source}: arch='dcgan' needs images (N, C, H, W); got examples of shape "
                f"{x.shape[1:]}"
            )

    def _build(self, data_shape: tuple[int, ...], num_classes: int | None = None) -> None:
        from ..models import gan as G

        images = len(data_shape) == 3
        self.arch_ = "dcgan" if self.arch == "dcgan" or (self.arch == "auto" and images) else "mlp"
        k = int(num_classes or 0)
        dim = math.prod(data_shape)
        # auto: half the data's dimensions, between 2 and 100 (2 for 2-D toys, 32 for digits)
        latent = int(self.latent_dim or min(max(2, dim // 2), 100))
        self.latent_dim_ = latent
        hidden = tuple(self.hidden_dims)
        if self.arch_ == "dcgan":
            net = G.DCGANGeneratorNet(latent + k, data_shape, int(self.channels))
            features = G.DCGANDiscriminatorNet(data_shape, int(self.channels), self._d_norm())
            head: nn.Module = nn.Linear(features.out_dim + k, 1)
        else:
            net = G.mlp_generator_net(latent + k, hidden, dim)
            features = nn.Flatten()
            head = G.mlp_head(dim + k, hidden)
        self.model_ = G.Generator(net, latent, data_shape, num_classes=k)
        self.discriminator_ = G.Discriminator(features, head, data_shape, num_classes=k)
        self._val_bandwidth = None
        self._make_average()

    def _make_average(self) -> None:
        """The generator's moving average: a frozen copy of ``model_`` (or None)."""
        self.generator_average_ = (
            copy.deepcopy(self.model_).requires_grad_(False) if float(self.ema) > 0 else None
        )

    def _d_norm(self) -> str:
        """The DCGAN discriminator's normalization: per example for the gradient penalty
        (which is taken example by example), DCGAN's batch normalization otherwise."""
        return "layer" if self.loss == "wgan_gp" else "batch"

    def _data_init(self, x: torch.Tensor) -> None:
        """Standardize with the training data: per feature for vectors; for images the value
        range mapped to [-1, 1], the generator's tanh range."""
        from ..models.gan import image_scale

        if self.arch_ == "dcgan":
            shift, scale = image_scale(float(x.min()), float(x.max()))
            shift, scale = torch.tensor(shift), torch.tensor(scale)
        else:
            shift, scale = x.mean(0), floored_std(x.std(0))
        for m in self._standardized():
            m.shift.copy_(shift.expand_as(m.shift))
            m.scale.copy_(scale.expand_as(m.scale))
        if self.generator_average_ is not None:
            self.generator_average_.load_state_dict(self.model_.state_dict())

    def _standardized(self) -> tuple[nn.Module, ...]:
        """The modules that hold the data's shift and scale."""
        return (self.model_, self.discriminator_)

    def _modules(self) -> dict[str, torch.nn.Module]:
        # the trainer's checkpoints hold the discriminator in the objective's module, under
        # its attribute name: the same keys here, so that both kinds of file load
        objective = {"discriminator": self.discriminator_}
        if self.generator_average_ is not None:
            objective["generator_average"] = self.generator_average_
        return {"model": self.model_, "objective": nn.ModuleDict(objective)}

    def _generator(self) -> nn.Module:
        """The generator that samples: the moving average, or the last weights."""
        return self.model_ if self.generator_average_ is None else self.generator_average_

    def _programs(self):
        return self.model_.model, None

    def _objective(self) -> Adversarial:
        adam = {
            "betas": tuple(self.betas or ((0.5, 0.9) if self.loss == "wgan_gp" else (0.5, 0.999)))
        }
        if self.loss == "wasserstein":
            adam = {"optimizer": "rmsprop"}
        return Adversarial(
            self.discriminator_,
            self.loss,
            n_critic=self.n_critic_,
            gp_weight=self.gp_weight_,
            clip_value=float(self.clip_value),
            discriminator_options={**adam, "lr": self._lr * float(self.discriminator_lr_scale)},
            generator_options={**adam, "lr": self._lr},
            generator_average=self.generator_average_,
            average_decay=float(self.ema),
        )

    def _make_trainer(self, lr=None, batch_size=None, lr_schedule=None):
        self._lr = float(self.default_lr if lr is None else lr)
        return super()._make_trainer(lr=lr, batch_size=batch_size, lr_schedule=lr_schedule)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model_
        return ((x - m.shift) / m.scale).reshape(len(x), -1)

    def _val_loss(self, x: torch.Tensor, *labels: torch.Tensor) -> float:
        """MMD² (Gaussian kernel, standardized units) between as many generated examples as
        there are validation examples (at most 1,000) and the validation data."""
        from ..evaluation import kernel_distance, median_bandwidth

        x = x[:1000]
        real = self._flat(x).double().cpu().numpy()
        if self._val_bandwidth is None:
            self._val_bandwidth = median_bandwidth(real)
        with torch.no_grad():
            fake = self._generator().sample(len(x), *[y[: len(x)] for y in labels])
        fake = self._flat(fake).double().cpu().numpy()
        return kernel_distance(fake, real, kernel="rbf", bandwidth=self._val_bandwidth)

    # -- queries -------------------------------------------------------------------------------
    def score_samples(self, X) -> np.ndarray:
        """A GAN's generator has no density: raises :class:`~ppdgm.errors.NoDensityError`
        (after the usual checks of X, so that bad data gets its own error)."""
        self.check_data(X)
        raise NoDensityError(
            "a GAN's generator has an implicit likelihood, so it gives no log-density; compare "
            "its samples with the data instead: sample_metrics(X, 'test') or "
            "ppdgm.evaluation.frechet_distance / kernel_distance / precision_recall / mmd_test"
        )

    def sample(self, num_samples: int, *, y=None, seed: int | None = None) -> np.ndarray:
        """Draw ``num_samples`` examples, shape (num_samples, *data shape). A conditional GAN
        takes one label per sample (``y``, shape (num_samples,)) or draws them uniformly."""
        self._check_fitted()
        check_int("num_samples", num_samples)
        labels = ()
        with self._seeded(seed):
            if self.conditional:
                k = int(self.settings_["num_classes"])
                if y is None:
                    y = torch.randint(k, (int(num_samples),))
                else:
                    y = self._labels(y, int(num_samples), "y")
                labels = (torch.as_tensor(y, device=self.device_),)
            return self._generator().sample(int(num_samples), *labels).cpu().numpy()

    def discriminate(self, X, y=None) -> np.ndarray:
        """The discriminator's raw output (logit; critic value) per example, shape (N,)."""
        x = self._tensor(X)
        labels = ()
        if self.conditional:
            labels = (torch.as_tensor(self._labels(y, len(x), "y"), device=self.device_),)
        with torch.no_grad():
            return self.discriminator_(x, *labels).cpu().numpy()

    # -- what the command line reports ---------------------------------------------------------
    def metrics(self, X, prefix: str, y=None, **options) -> dict[str, Any]:
        """A GAN has no likelihood to report: its figures of merit are those of
        :meth:`sample_metrics` (sample quality), which the command line reports for every
        family; here only the number of examples."""
        self.check_data(X, "X")
        return {f"num_{prefix}": int(len(X))}

    def plot_figures(self, data, folder: Path, seed: int = 0) -> None:
        """Samples, both players' loss curves, and for 2-D data the discriminator's landscape
        with the data and the samples."""
        from .. import viz

        super().plot_figures(data, folder, seed)
        if self.data_shape_ == (2,) and not self.conditional:
            samples = self.sample(1000, seed=seed)
            disc = self.discriminator_

            def landscape(points):
                with torch.no_grad():
                    p = torch.as_tensor(points, dtype=torch.float32, device=self.device_)
                    return disc(p).cpu().numpy()

            viz.plot_density_2d(
                landscape,
                data.x_test,
                path=folder / "discriminator.png",
                title="discriminator output",
                samples=samples,
                exponentiate=False,
            )


@register
class BiGAN(GAN):
    """ALI / BiGAN (Dumoulin et al., 2017; Donahue et al., 2017): a generator program and an
    amortized guide (the encoder) fitted together by an adversarial objective over joint
    pairs: (x, z ~ q(z | x)) from the data and the encoder against (x ~ G(z), z ~ p(z)) from
    the model. At the game's optimum the two joints match, so the encoder inverts the
    generator: :meth:`transform` embeds data like a VAE's encoder, :meth:`reconstruct` maps
    x to G(E(x)).

    The guide :class:`~ppdgm.models.gan.Encoder` is z ~ N(mu(x), sigma(x)), reparameterized
    so that the game's gradient reaches it; it plays on the generator's side, and the joint
    discriminator :class:`~ppdgm.models.gan.Discriminator` sees [features(x), z] through an
    MLP head. Everything else (losses, architectures, conditional, the validation loss,
    ``score_samples`` raising :class:`~ppdgm.errors.NoDensityError`) is :class:`GAN`'s.

    The arguments are :class:`GAN`'s; ``hidden_dims`` also sizes the encoder and the
    discriminator's joint head.

    Attributes:
        model_, discriminator_: as for :class:`GAN`.
        encoder_: the fitted :class:`~ppdgm.models.gan.Encoder` (the guide).
    """

    family = "bigan"
    summary = "ALI/BiGAN: generator and encoder fitted adversarially over joint (x, z) pairs"
    default_data = "digits"

    @classmethod
    def param_docs(cls) -> dict[str, str]:
        docs = GAN.param_docs()
        docs["hidden_dims"] = (
            "hidden widths of the MLP generator, encoder and discriminator (its joint head)."
        )
        return docs

    def _build(self, data_shape: tuple[int, ...], num_classes: int | None = None) -> None:
        from ..models import gan as G
        from ..nn import MLP

        super()._build(data_shape, num_classes)
        k, latent = int(num_classes or 0), self.latent_dim_
        hidden = tuple(self.hidden_dims)
        if self.arch_ == "dcgan":
            features: nn.Module = G.DCGANDiscriminatorNet(
                data_shape, int(self.channels), self._d_norm()
            )
            enc_features = G.DCGANDiscriminatorNet(data_shape, int(self.channels), "none")
            enc: nn.Module = nn.Sequential(
                enc_features, nn.Linear(enc_features.out_dim, 2 * latent)
            )
            width = features.out_dim
        else:
            features = nn.Flatten()
            width = math.prod(data_shape)
            enc = nn.Sequential(
                nn.Flatten(), MLP(width, hidden, 2 * latent, activation="leaky_relu")
            )
        head = G.mlp_head(width + k + latent, hidden)
        self.discriminator_ = G.Discriminator(
            features, head, data_shape, num_classes=k, latent_dim=latent
        )
        self.encoder_ = G.Encoder(enc, latent, data_shape)

    def _standardized(self) -> tuple[nn.Module, ...]:
        return (self.model_, self.discriminator_, self.encoder_)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {**super()._modules(), "guide": self.encoder_}

    def _programs(self):
        return self.model_.model, self.encoder_.guide

    # -- queries -------------------------------------------------------------------------------
    @torch.no_grad()
    def transform(self, X) -> np.ndarray:
        """The encoder's mean of z given x; shape (N, latent_dim)."""
        self._check_fitted()
        loc, _ = self.encoder_.params(self._tensor(X))
        return loc.cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, X, y=None) -> np.ndarray:
        """G(E(x)): the generator at the encoder's mean; shape (N, *data shape). A
        conditional BiGAN takes the labels ``y`` (N,)."""
        self._check_fitted()
        x = self._tensor(X)
        labels = None
        if self.conditional:
            labels = torch.as_tensor(self._labels(y, len(x), "y"), device=self.device_)
        loc, _ = self.encoder_.params(x)
        return self.model_(loc, self.model_._labels(labels)).cpu().numpy()

    # -- what the command line reports ---------------------------------------------------------
    def metrics(self, X, prefix: str, y=None, **options) -> dict[str, Any]:
        """The reconstruction error of G(E(x)): the root mean squared error in the data's units
        (``<prefix>_reconstruction_rmse``; a conditional BiGAN's needs the labels y)."""
        out = super().metrics(X, prefix, y=y, **options)
        if not self.conditional or y is not None:
            x = self.check_data(X, "X")
            err = np.sqrt(np.mean((self.reconstruct(x, y) - x) ** 2, dtype=np.float64))
            out[f"{prefix}_reconstruction_rmse"] = float(err)
        return out

    def plot_figures(self, data, folder: Path, seed: int = 0) -> None:
        """:class:`GAN`'s figures, the reconstructions G(E(x)) and the encoder's latents."""
        from .. import viz

        super().plot_figures(data, folder, seed)
        n = min(32, len(data.x_test))
        y = data.y_test[:n] if self.conditional else None
        shape = data.image_shape if len(self.data_shape_) == 1 else None
        viz.plot_reconstructions(
            data.x_test[:n],
            self.reconstruct(data.x_test[:n], y),
            shape,
            path=folder / "reconstructions.png",
        )
        viz.plot_latents(self.transform(data.x_test), data.y_test, path=folder / "latents.png")
