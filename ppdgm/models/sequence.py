"""Autoregressive models of 1-D sequences with categorical outputs: an LSTM (char-RNN) and a
WaveNet-style stack of dilated causal convolutions.

A sequence ``x = (x_1, ..., x_T)`` of symbols in ``{0, ..., K-1}`` (characters, mu-law
quantized audio) has the exact likelihood ``p(x) = prod_t p(x_t | x_<t)``. Both networks read
the sequence shifted right by one (a start symbol ``K`` first) and output, at every position,
the logits of the next symbol's categorical distribution, so one pass gives every conditional
(teacher forcing) and position ``t``'s output never sees ``x_t`` or later symbols. Sampling
draws one symbol at a time; a ``temperature`` divides the logits (below 1: more conservative
samples, above 1: more varied).

References: Graves (2013), "Generating Sequences With Recurrent Neural Networks"; Karpathy
(2015), "The Unreasonable Effectiveness of Recurrent Neural Networks"; van den Oord et al.
(2016), "WaveNet: A Generative Model for Raw Audio".
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

__all__ = [
    "CausalConv1d",
    "WaveNetNet",
    "LSTMNet",
    "SequenceModel",
    "mu_law_encode",
    "mu_law_decode",
]


class CausalConv1d(nn.Conv1d):
    """A 1-D convolution whose output at ``t`` sees inputs at ``t, t - d, ..., t - (k-1) d``
    only (left padding of ``(k - 1) * d``), so the output has the input's length."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))


class WaveNetNet(nn.Module):
    """Embedding of the shifted input, then residual blocks of gated dilated causal
    convolutions (``tanh(W_f * h) * sigmoid(W_g * h)``) with dilations 1, 2, 4, ... (one cycle of
    ``num_layers``), skip connections summed into a 1x1-conv head with ``K`` logits (the last
    block feeds the skips only).

    Input (N, T) symbols in ``{0, ..., K}`` (``K`` the start symbol); output (N, T, K)."""

    def __init__(self, num_classes: int, channels: int, num_layers: int, kernel_size: int = 2):
        super().__init__()
        self.embed = nn.Embedding(num_classes + 1, channels)
        self.filters = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.residual = nn.ModuleList()
        self.skip = nn.ModuleList()
        for i in range(num_layers):
            d = 2**i
            self.filters.append(CausalConv1d(channels, channels, kernel_size, d))
            self.gates.append(CausalConv1d(channels, channels, kernel_size, d))
            if i < num_layers - 1:  # the last block's output goes to the skips only
                self.residual.append(nn.Conv1d(channels, channels, 1))
            self.skip.append(nn.Conv1d(channels, channels, 1))
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(channels, channels, 1),
            nn.ReLU(),
            nn.Conv1d(channels, num_classes, 1),
        )
        self.receptive_field = 1 + (kernel_size - 1) * (2**num_layers - 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.embed(inputs))

    def blocks(self, embedded: torch.Tensor) -> torch.Tensor:
        """The logits (N, T, K) from the embedded inputs (N, T, C)."""
        h = embedded.transpose(1, 2)  # (N, C, T)
        skips = 0
        for i, (f, g, s) in enumerate(zip(self.filters, self.gates, self.skip, strict=True)):
            z = torch.tanh(f(h)) * torch.sigmoid(g(h))
            skips = skips + s(z)
            if i < len(self.residual):
                h = h + self.residual[i](z)
        return self.head(skips).transpose(1, 2)


class LSTMNet(nn.Module):
    """Embedding, a stacked LSTM and a linear layer to ``K`` logits; input (N, T) symbols in
    ``{0, ..., K}``, output (N, T, K). ``forward`` takes and returns the LSTM's state, so that
    sampling runs one position at a time with the state carried."""

    def __init__(self, num_classes: int, hidden: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(num_classes + 1, hidden)
        self.lstm = nn.LSTM(
            hidden, hidden, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0
        )
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, inputs: torch.Tensor, state=None):
        h, state = self.lstm(self.embed(inputs), state)
        return self.out(h), state


class SequenceModel(PyroModule):
    """``x_t ~ Categorical(logits = net(x_<t))`` for t = 1..T: the program, its exact
    log-likelihood and its sampler.

    Args:
        net: a :class:`LSTMNet` or :class:`WaveNetNet` (or any module mapping (N, T) shifted
            symbols to (N, T, K) logits, with outputs at t depending on inputs at <= t).
        num_classes: K.
        length: T, the length of the sequences :meth:`sample` draws by default.
    """

    def __init__(self, net: nn.Module, num_classes: int, length: int):
        super().__init__()
        self.net = net
        self.num_classes = int(num_classes)
        self.length = int(length)

    def _shifted(self, x: torch.Tensor) -> torch.Tensor:
        start = torch.full_like(x[:, :1], self.num_classes)
        return torch.cat([start, x[:, :-1]], 1).long()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of every conditional p(x_t | x_<t), (N, T, K)."""
        out = self.net(self._shifted(x))
        return out[0] if isinstance(out, tuple) else out

    def model(self, x: torch.Tensor):
        """The generative program with ``x`` (N, T) observed (to draw, use :meth:`sample`)."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Categorical(logits=self.logits(x)).to_event(1), obs=x.long())

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per sequence, in nats; (N,)."""
        logp = torch.log_softmax(self.logits(x), -1)
        return logp.gather(-1, x.long()[..., None])[..., 0].sum(-1)

    @torch.no_grad()
    def sample(
        self, num_samples: int, length: int | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Draw (num_samples, length) sequences one symbol at a time, the logits divided by
        ``temperature``."""
        length = int(length or self.length)
        device = next(self.parameters()).device
        inputs = torch.full((num_samples, 1), self.num_classes, dtype=torch.long, device=device)
        out = torch.empty(num_samples, length, dtype=torch.long, device=device)
        if isinstance(self.net, LSTMNet):  # carry the state: one position per step
            state = None
            for t in range(length):
                logits, state = self.net(inputs[:, -1:], state)
                out[:, t] = dist.Categorical(logits=logits[:, -1] / temperature).sample()
                inputs = out[:, t : t + 1]
            return out
        window = getattr(self.net, "receptive_field", length)
        for t in range(length):
            logits = self.net(inputs[:, -window:])
            if isinstance(logits, tuple):
                logits = logits[0]
            out[:, t] = dist.Categorical(logits=logits[:, -1] / temperature).sample()
            inputs = torch.cat([inputs, out[:, t : t + 1]], 1)
        return out


def mu_law_encode(x: np.ndarray, num_levels: int = 256) -> np.ndarray:
    """Signal values in [-1, 1] to integers in ``{0, ..., num_levels - 1}`` by mu-law
    companding (``mu = num_levels - 1``), as WaveNet quantizes audio."""
    x = np.asarray(x, dtype=np.float64)
    if x.size and (np.nanmax(np.abs(x)) > 1 or not np.isfinite(x).all()):
        raise ValueError("mu-law encoding needs finite values in [-1, 1]")
    mu = num_levels - 1
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.clip(np.floor((y + 1) / 2 * mu + 0.5), 0, mu).astype(np.int64)


def mu_law_decode(q: np.ndarray, num_levels: int = 256) -> np.ndarray:
    """The inverse of :func:`mu_law_encode` (up to the quantization)."""
    mu = num_levels - 1
    y = 2 * np.asarray(q, dtype=np.float64) / mu - 1
    return np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu
