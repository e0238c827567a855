"""Sequence families: a character-level LSTM and a WaveNet-style dilated causal convolution
stack, over integer sequences (N, T) with categorical conditionals (exact likelihood)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._utils import atomic_write, check_int
from ..data.dataset import check_likelihood_support
from ..data.sequences import decode_text
from ..errors import ConfigError
from ..models.sequence import LSTMNet, SequenceModel, WaveNetNet
from .base import ExactLikelihoodEstimator, register

__all__ = ["CharRNN", "WaveNet"]

_COMMON_ARGS = """
        num_classes: K, the number of symbols; None: ``len(vocabulary)``, else the largest
            value in the data + 1.
        vocabulary: for text, the characters that the codes 0..K-1 stand for (``ppdgm train``
            takes it from the text file); samples then decode to text.
        seed: seeds initialization, training and sampling.
        device: ``auto``, ``cpu`` or ``cuda``.
        compile: trace the training step into a graph (see :class:`~ppdgm.train.Trainer`).

    Attributes:
        model_: the fitted :class:`~ppdgm.models.sequence.SequenceModel`.
"""


class _SequenceEstimator(ExactLikelihoodEstimator):
    """Shared parts of the sequence families."""

    def _check_params(self) -> None:
        super()._check_params()
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, low=2)
        if self.vocabulary is not None:
            v = self.vocabulary
            if not isinstance(v, str) or len(v) < 2 or len(set(v)) != len(v):
                raise ConfigError("vocabulary must be a string of at least 2 distinct characters")
            if self.num_classes is not None and self.num_classes != len(v):
                raise ConfigError(
                    f"num_classes {self.num_classes} does not match the vocabulary's "
                    f"{len(v)} characters"
                )

    def _settings(self, x: np.ndarray) -> dict[str, Any]:
        if self.vocabulary is not None:
            k = len(self.vocabulary)
        elif self.num_classes is not None:
            k = int(self.num_classes)
        else:
            k = max(2, int(np.nanmax(x)) + 1) if np.all(x >= 0) else 2
        return {"num_classes": k}

    def _check_support(self, x: np.ndarray, source: str, settings: dict[str, Any]) -> None:
        if x.ndim != 2:
            raise ConfigError(
                f"{type(self).__name__} models sequences (N, T) of symbol codes; got examples "
                f"of shape {x.shape[1:]}"
            )
        check_likelihood_support(x, "categorical", source, settings["num_classes"])

    def _build(self, data_shape: tuple[int, ...], num_classes: int) -> None:
        self.model_ = SequenceModel(self._net(int(num_classes)), num_classes, data_shape[0])

    def _net(self, num_classes: int) -> torch.nn.Module:
        raise NotImplementedError

    def sample(
        self,
        num_samples: int,
        *,
        seed: int | None = None,
        temperature: float = 1.0,
        length: int | None = None,
    ) -> np.ndarray:
        """Draw ``num_samples`` sequences of symbol codes, (num_samples, length) int64 (length:
        the training sequences' by default), each logit divided by ``temperature``."""
        self._check_fitted()
        check_int("num_samples", num_samples)
        if length is not None:
            check_int("length", length)
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
        with self._seeded(seed):
            out = self.model_.sample(int(num_samples), length, float(temperature))
        return out.cpu().numpy()

    def decode(self, codes) -> list[str]:
        """Sequences of codes as text, one string per sequence (needs the vocabulary)."""
        self._check_fitted()
        if self.vocabulary is None:
            raise ConfigError(f"this {type(self).__name__} has no vocabulary to decode text")
        codes = np.asarray(codes)
        return [decode_text(row, self.vocabulary) for row in codes.reshape(len(codes), -1)]

    def plot_figures(self, data, folder: Path, seed: int = 0) -> None:
        """Curves and ``samples.png``: for text the samples as lines of text (also written to
        ``samples.txt``), otherwise the sequences as curves (mu-law decoded) beside data."""
        from .. import viz

        viz.plot_curves(
            self.history_,
            path=folder / "curves.png",
            best_step=self.selected_step_ if self.best_step_ is not None else None,
        )
        samples = self.sample(8, seed=seed)
        if self.vocabulary is not None:
            self.write_text(samples, folder / "samples.txt")
        self.plot_samples(samples, folder / "samples.png", reference=data.x_test[:8])

    def write_text(self, samples, path) -> None:
        """Write sequences as text, one line each (needs the vocabulary)."""
        lines = self.decode(samples)
        with atomic_write(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def plot_samples(self, samples, path, reference=None, title: str = "samples") -> None:
        """Draw sequences: as lines of text for a model of text, otherwise as curves (mu-law
        decoded) beside ``reference`` sequences."""
        from .. import viz

        if self.vocabulary is not None:
            viz.plot_text(self.decode(samples), path=path, title=f"{title} (\u21b5: newline)")
        else:
            viz.plot_sequences(samples, reference, path=path, levels=self.num_classes_, title=title)

    @property
    def num_classes_(self) -> int:
        self._check_fitted()
        return int(self.settings_["num_classes"])


@register
class CharRNN(_SequenceEstimator):
    __doc__ = f"""A character-level recurrent language model (LSTM), or any sequence of symbols.

    ``p(x) = prod_t p(x_t | x_<t)`` with the conditionals from a stacked LSTM over the
    sequence so far (a start symbol first); exact log-likelihood in one pass, sampling one
    symbol at a time with the state carried, at a ``temperature``. ``ppdgm train charrnn
    --data FILE.txt`` fits it on a text file's characters (64-character windows).

    Args:
        hidden: LSTM units (and embedding width).
        num_layers: stacked LSTM layers.
        dropout: dropout between LSTM layers (with 2 or more layers).
        weight_decay: AdamW weight decay (0: Adam).{_COMMON_ARGS}"""

    family = "charrnn"
    summary = "character-level LSTM language model: exact likelihood, sampling with temperature"
    default_data = "pydoc-text"

    def __init__(
        self,
        *,
        hidden: int = 128,
        num_layers: int = 2,
        dropout: float = 0.0,
        weight_decay: float = 0.0,
        num_classes: int | None = None,
        vocabulary: str | None = None,
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.hidden = hidden
        self.num_layers = num_layers
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.num_classes = num_classes
        self.vocabulary = vocabulary
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        check_int("hidden", self.hidden)
        check_int("num_layers", self.num_layers)

    def _net(self, num_classes: int) -> torch.nn.Module:
        return LSTMNet(num_classes, int(self.hidden), int(self.num_layers), float(self.dropout))


@register
class WaveNet(_SequenceEstimator):
    __doc__ = f"""WaveNet (van den Oord et al., 2016): gated residual blocks of dilated causal
    convolutions over 1-D signals, categorical outputs (mu-law codes of audio, characters).

    Dilations 1, 2, 4, ..., 2^(num_layers - 1) give a receptive field of
    ``1 + (kernel_size - 1) * (2^num_layers - 1)`` symbols; the exact log-likelihood takes one
    pass, sampling one symbol at a time over the receptive field.

    Args:
        channels: channels of every residual block.
        num_layers: residual blocks (dilations doubling from 1).
        kernel_size: width of each causal convolution.
        weight_decay: AdamW weight decay (0: Adam).{_COMMON_ARGS}"""

    family = "wavenet"
    summary = "WaveNet: dilated causal convolutions over 1-D signals, categorical outputs"
    default_data = "tones"

    def __init__(
        self,
        *,
        channels: int = 32,
        num_layers: int = 7,
        kernel_size: int = 2,
        weight_decay: float = 0.0,
        num_classes: int | None = None,
        vocabulary: str | None = None,
        seed: int = 0,
        device: str = "auto",
        compile: bool = True,
    ):
        self.channels = channels
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.weight_decay = weight_decay
        self.num_classes = num_classes
        self.vocabulary = vocabulary
        self.seed = seed
        self.device = device
        self.compile = compile
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        check_int("channels", self.channels)
        check_int("num_layers", self.num_layers)
        check_int("kernel_size", self.kernel_size, low=2)

    def _net(self, num_classes: int) -> torch.nn.Module:
        return WaveNetNet(
            num_classes, int(self.channels), int(self.num_layers), int(self.kernel_size)
        )
