"""PixelCNN: an autoregressive model of images as a Pyro program with an exact likelihood.

``p(x) = prod_{i, j, c} p(x_{c,i,j} | pixels before (i, j) in raster order, channels before c
at (i, j))``. Every conditional comes out of one pass of a convolutional net whose kernels are
masked so that an output never sees its own input or any later one: the first layer is of
type A (the centre pixel's own channel and later ones hidden), the layers after it of type B
(the centre's earlier-or-same channel groups visible, since their features already exclude the
pixel's own value).

Two nets:

* the original stack of masked convolutions (van den Oord, Kalchbrenner & Kavukcuoglu 2016,
  "Pixel Recurrent Neural Networks"), whose receptive field has a *blind spot*: pixels up and
  to the right of the centre that a stack of masked 3x3 kernels never reaches;
* the gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
  Decoders"): a vertical stack that sees every row above and a horizontal stack that sees the
  pixels to the left in the current row, joined at each layer, with gated activations
  ``tanh(a) * sigmoid(b)``; no blind spot.

Both are written with full ``k x k`` kernels and 0/1 masks (rather than cropped kernels and
shifts): slower by a constant, and the causal structure is readable from the masks.

Each channel value is Bernoulli (binary images) or categorical over ``num_bins`` levels
(integer images such as the digits' 0..16), so the log-likelihood and bits/dim are exact.
Sampling runs the net once per pixel and channel, in raster order.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

from .._utils import check_choice

__all__ = ["MaskedConv2d", "PixelCNNNet", "GatedPixelCNNNet", "PixelCNNModel", "channel_groups"]


def channel_groups(num: int, groups: int) -> torch.Tensor:
    """Which of ``groups`` data channels each of ``num`` feature channels belongs to: channel
    ``i`` goes to group ``i * groups // num`` (contiguous blocks, the first block first)."""
    return torch.arange(num) * groups // num


class MaskedConv2d(nn.Conv2d):
    """A 2-D convolution (stride 1, 'same' padding) whose kernel is multiplied by a fixed 0/1
    mask of shape (out, in, kh, kw).

    Only the smallest box of kernel taps that holds the mask's ones is computed (the input
    padded to match), so a kernel that looks only up or only left costs what its open taps
    cost. Build the mask with :meth:`causal_mask`.
    """

    def __init__(self, in_channels: int, out_channels: int, mask: torch.Tensor):
        kh, kw = mask.shape[-2:]
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"masked convolutions need odd kernel sizes, got {kh}x{kw}")
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2))
        if mask.shape != self.weight.shape:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} for a kernel of shape {tuple(self.weight.shape)}"
            )
        self.register_buffer("mask", mask.to(self.weight.dtype))
        rows = mask.sum((0, 1, 3)).nonzero().flatten().tolist() or [kh // 2]
        cols = mask.sum((0, 1, 2)).nonzero().flatten().tolist() or [kw // 2]
        r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
        self._box = (r0, r1 + 1, c0, c1 + 1)
        # F.pad's (left, right, top, bottom); a negative amount crops
        self._pad = (kw // 2 - c0, c1 - kw // 2, kh // 2 - r0, r1 - kh // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r0, r1, c0, c1 = self._box
        w = (self.weight * self.mask)[:, :, r0:r1, c0:c1]
        return F.conv2d(F.pad(x, self._pad), w, self.bias)

    @staticmethod
    def causal_mask(
        in_groups: torch.Tensor,
        out_groups: torch.Tensor,
        kernel: tuple[int, int],
        *,
        rows: str = "above",
        centre_row: str = "left",
        centre: str | None = "B",
    ) -> torch.Tensor:
        """A (out, in, kh, kw) mask of kernel taps that only look back in raster order.

        Args:
            in_groups, out_groups: the data channel each input and output channel belongs to
                (:func:`channel_groups`).
            kernel: (kh, kw), both odd.
            rows: ``"above"`` lets every tap in the rows above the centre through, ``"none"``
                none of them.
            centre_row: which taps of the centre row go through: ``"left"`` (those left of
                the centre), ``"all"`` (the whole row, centre included, whatever ``centre``
                says: for inputs that never saw the centre row) or ``"none"``.
            centre: the centre tap: ``"A"`` (from earlier channel groups only), ``"B"``
                (earlier or the same group) or None (closed).

        Raises:
            ConfigError: an unknown ``rows``, ``centre_row`` or ``centre``.
        """
        check_choice("rows", rows, ("above", "none"))
        check_choice("centre_row", centre_row, ("left", "all", "none"))
        check_choice("centre", centre, ("A", "B", None))
        kh, kw = kernel
        mask = torch.zeros(len(out_groups), len(in_groups), kh, kw)
        if rows == "above":
            mask[:, :, : kh // 2, :] = 1
        if centre_row == "all":
            mask[:, :, kh // 2, :] = 1
            return mask
        if centre_row == "left":
            mask[:, :, kh // 2, : kw // 2] = 1
        if centre is not None:
            earlier = in_groups[None, :] < out_groups[:, None]
            same = in_groups[None, :] == out_groups[:, None]
            mask[:, :, kh // 2, kw // 2] = (earlier | (same & (centre == "B"))).float()
        return mask


def _masked(cin, cout, kernel, c, first=False, **kw):
    """A masked convolution between feature maps split evenly among ``c`` channel groups."""
    mask = MaskedConv2d.causal_mask(channel_groups(cin, c), channel_groups(cout, c), kernel, **kw)
    return MaskedConv2d(cin, cout, mask)


def _head(channels: int, hidden: int, c: int, per_channel: int) -> nn.Module:
    """ReLU, masked 1x1 (B), ReLU, masked 1x1 (B) to ``per_channel`` outputs per data channel."""
    out_groups = torch.arange(c).repeat_interleave(per_channel)
    last = MaskedConv2d(
        hidden,
        c * per_channel,
        MaskedConv2d.causal_mask(channel_groups(hidden, c), out_groups, (1, 1), centre="B"),
    )
    return nn.Sequential(
        nn.ReLU(), _masked(channels, hidden, (1, 1), c, centre="B"), nn.ReLU(), last
    )


class PixelCNNNet(nn.Module):
    """The original PixelCNN: a masked ``first_kernel`` convolution of type A, then residual
    blocks of masked 3x3 convolutions of type B, then a 1x1 head. Its receptive field has a
    blind spot (see the module docstring).

    Args:
        in_channels: C, the image's channels.
        per_channel: outputs per data channel (1 logit for a Bernoulli, ``num_bins`` logits for
            a categorical).
        channels: feature channels (a multiple of C).
        num_layers: residual blocks after the first layer.
        first_kernel: the first layer's kernel size (odd).
        dropout: dropout on the features while training.
    """

    def __init__(
        self,
        in_channels: int,
        per_channel: int,
        channels: int = 64,
        num_layers: int = 4,
        first_kernel: int = 5,
        dropout: float = 0.0,
    ):
        super().__init__()
        c = in_channels
        k = (first_kernel, first_kernel)
        self.first = _masked(c, channels, k, c, centre="A")
        self.blocks = nn.ModuleList(
            _masked(channels, channels, (3, 3), c, centre="B") for _ in range(num_layers)
        )
        self.head = _head(channels, channels, c, per_channel)
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        for block in self.blocks:
            h = h + F.dropout(block(F.relu(h)), self.dropout, self.training)
        return self.head(h)


class GatedPixelCNNNet(nn.Module):
    """The gated PixelCNN: vertical and horizontal stacks with gated activations.

    The vertical stack at (i, j) sees the rows above i only (all columns in reach); the
    horizontal stack sees the pixels left of j in row i (and, after the first layer, the
    centre's earlier channel groups) plus the vertical stack at (i, j). Together they cover
    every pixel before (i, j) in raster order within reach: no blind spot.

    Args: as :class:`PixelCNNNet`, with ``kernel`` the stacks' kernel size (odd).
    """

    def __init__(
        self,
        in_channels: int,
        per_channel: int,
        channels: int = 64,
        num_layers: int = 4,
        kernel: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        c, f = in_channels, channels
        kk = (kernel, kernel)
        # gate halves share one group layout, so tanh(a_k) * sigmoid(b_k) stays in k's group
        halves = torch.cat([channel_groups(f, c)] * 2)
        groups_in = [channel_groups(c, c)] + [channel_groups(f, c)] * num_layers
        self.v_convs = nn.ModuleList()
        self.h_convs = nn.ModuleList()
        self.v_to_h = nn.ModuleList()
        self.h_res = nn.ModuleList()
        for layer in range(num_layers + 1):
            cin, gin = (c if layer == 0 else f), groups_in[layer]
            first = layer == 0
            # vertical: the image's rows above only, so no shift is needed before it feeds the
            # horizontal stack; later layers may read the whole centre row of features that
            # themselves see only the rows above
            v_mask = MaskedConv2d.causal_mask(
                gin, halves, kk, centre_row="none" if first else "all", centre=None
            )
            self.v_convs.append(MaskedConv2d(cin, 2 * f, v_mask))
            # horizontal: the centre row up to the centre (type A first, then B)
            h_mask = MaskedConv2d.causal_mask(
                gin, halves, (1, kernel), rows="none", centre="A" if first else "B"
            )
            self.h_convs.append(MaskedConv2d(cin, 2 * f, h_mask))
            # the vertical features at (i, j) come from rows above: every channel may be used
            self.v_to_h.append(nn.Conv2d(2 * f, 2 * f, 1))
            self.h_res.append(_masked(f, f, (1, 1), c, centre="B"))
        self.head = _head(f, f, c, per_channel)
        self.dropout = float(dropout)

    @staticmethod
    def _gate(a: torch.Tensor) -> torch.Tensor:
        t, s = a.chunk(2, dim=1)
        return torch.tanh(t) * torch.sigmoid(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, h = x, x
        for i, (vc, hc, link, res) in enumerate(
            zip(self.v_convs, self.h_convs, self.v_to_h, self.h_res, strict=True)
        ):
            v_pre = vc(v)
            h_new = res(self._gate(hc(h) + link(v_pre)))
            h_new = F.dropout(h_new, self.dropout, self.training)
            v = self._gate(v_pre)
            h = h_new if i == 0 else h + h_new  # residual once the shapes agree
        return self.head(h)


class PixelCNNModel(PyroModule):
    """x ~ prod over pixels and channels of Bernoulli or Categorical(net(x)): the program and
    its pixel-by-pixel sampler.

    Args:
        net: maps (N, C, H, W) images to (N, C * per_channel, H, W) logits with the causal
            structure above (:class:`PixelCNNNet` or :class:`GatedPixelCNNNet`).
        image_shape: (C, H, W).
        num_bins: 2 for binary images (a Bernoulli per value: ``per_channel`` = 1), else the
            number of integer levels 0..num_bins-1 (a categorical: ``per_channel`` =
            num_bins).
    """

    def __init__(self, net: nn.Module, image_shape: tuple[int, int, int], num_bins: int = 2):
        super().__init__()
        self.net = net
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_bins = int(num_bins)

    def distribution(self, x: torch.Tensor) -> dist.Distribution:
        """The product of the conditionals given ``x`` (N, C, H, W), one per value; its
        ``log_prob(x)`` is the exact log-likelihood."""
        out = self.net(x)
        c, h, w = self.image_shape
        if self.num_bins == 2:
            return dist.Bernoulli(logits=out).to_event(3)
        logits = out.reshape(x.shape[0], c, self.num_bins, h, w).permute(0, 1, 3, 4, 2)
        return dist.Categorical(logits=logits).to_event(3)

    def model(self, x: torch.Tensor):
        """The generative program with ``x`` (N, C, H, W) observed (to draw, :meth:`sample`)."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.distribution(x), obs=x)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per image, in nats; (N,)."""
        return self.distribution(x).log_prob(x)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Draw (num_samples, C, H, W) images one value at a time in raster order (rows, then
        columns, then channels)."""
        c, h, w = self.image_shape
        device = next(self.net.parameters()).device
        x = torch.zeros(num_samples, c, h, w, device=device)
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    d = self.distribution(x).base_dist
                    if self.num_bins == 2:
                        x[:, ch, i, j] = torch.bernoulli(d.probs[:, ch, i, j])
                    else:
                        x[:, ch, i, j] = torch.multinomial(d.probs[:, ch, i, j], 1)[:, 0].float()
        return x
