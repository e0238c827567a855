"""Figures reused by every family: sample grids, reconstructions, latent maps, curves.

Every function draws on a new matplotlib figure (Agg backend, no screen needed) and, given a
``path``, writes a PNG atomically; it returns the figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .._utils import atomic_write  # noqa: E402

__all__ = [
    "image_grid",
    "plot_samples",
    "plot_reconstructions",
    "plot_latents",
    "plot_curves",
    "save_figure",
    "to_images",
    "matrix_plot",
    "plot_trace",
    "plot_rank",
    "plot_ppc",
    "plot_density_2d",
    "density_grid",
]


def save_figure(fig, path: str | Path | None, dpi: int = 120):
    """Save ``fig`` as PNG atomically (when ``path`` is given) and close it."""
    if path is not None:
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return fig


def _square_image_shape(length: int) -> tuple[int, int, int] | None:
    """(1, side, side) when vectors of ``length`` are square images (side > 1), else None."""
    side = int(round(math.sqrt(length)))
    return (1, side, side) if side > 1 and side * side == length else None


def to_images(x: np.ndarray, image_shape=None) -> np.ndarray:
    """Turn (N, D) or (N, C, H, W) data into (N, H, W) or (N, H, W, 3) images for display."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        if image_shape is None:
            image_shape = _square_image_shape(x.shape[1])
            if image_shape is None:
                raise ValueError(f"cannot show vectors of length {x.shape[1]} as images")
        x = x.reshape(len(x), *image_shape)
    if x.ndim != 4:
        raise ValueError(f"expected (N, D) or (N, C, H, W) data, got shape {x.shape}")
    lo, hi = x.min(), x.max()
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return x[:, 0] if x.shape[1] == 1 else x[:, :3].transpose(0, 2, 3, 1)


def _is_imageable(x: np.ndarray, image_shape) -> bool:
    if x.ndim == 4 or image_shape is not None:
        return True
    return x.ndim == 2 and _square_image_shape(x.shape[1]) is not None


def matrix_plot(x: np.ndarray, title: str | None = None, path=None, ylabel: str = "example"):
    """Vectors that are not images, one row per example, as a heat map."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    fig, ax = plt.subplots(
        figsize=(min(10.0, 2 + 0.25 * x.shape[1]), min(8.0, 1.5 + 0.12 * len(x)))
    )
    im = ax.imshow(x, aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax)
    ax.set_xlabel("feature")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def image_grid(
    x: np.ndarray,
    image_shape=None,
    nrow: int | None = None,
    title: str | None = None,
    path: str | Path | None = None,
):
    """A grid of images; ``x`` is (N, D) with ``image_shape`` or (N, C, H, W). Vectors that
    cannot be shown as images are drawn as a heat map, one row per example."""
    if not _is_imageable(np.asarray(x), image_shape):
        return matrix_plot(x, title, path)
    imgs = to_images(x, image_shape)
    n = len(imgs)
    ncol = nrow or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncol))
    h, w = imgs.shape[1:3]
    pad = 1
    canvas_shape = (nrows * (h + pad) + pad, ncol * (w + pad) + pad) + imgs.shape[3:]
    # separators: light gray under the reversed gray map of 1-channel images, white for colour
    canvas = np.full(canvas_shape, 0.15 if imgs.ndim == 3 else 1.0)
    for i, im in enumerate(imgs):
        r, c = divmod(i, ncol)
        canvas[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = im
    size = max(3.0, min(10.0, 0.45 * ncol))
    fig, ax = plt.subplots(
        figsize=(size, size * canvas.shape[0] / canvas.shape[1] + (0.3 if title else 0))
    )
    ax.imshow(
        canvas, cmap="gray_r" if canvas.ndim == 2 else None, interpolation="nearest", vmin=0, vmax=1
    )
    ax.axis("off")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def plot_samples(
    x: np.ndarray, image_shape=None, title: str = "samples", path=None, reference=None
):
    """Samples as an image grid, or as a scatter plot for 2-D data (over ``reference`` points)."""
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 2 and image_shape is None:
        fig, ax = plt.subplots(figsize=(5, 5))
        if reference is not None:
            ax.scatter(*np.asarray(reference)[:, :2].T, s=2, c="0.75", label="data")
        ax.scatter(*x.T, s=3, c="C0", label="samples")
        ax.set_aspect("equal")
        ax.legend(loc="upper right", markerscale=4)
        ax.set_title(title)
        return save_figure(fig, path)
    return image_grid(x, image_shape, title=title, path=path)


def plot_sequences(
    samples: np.ndarray, reference=None, path=None, levels: int | None = None, title="samples"
):
    """Sequences of symbol codes as curves (mu-law decoded to [-1, 1] when ``levels`` is
    given, as for audio), samples on the left and data on the right."""
    from ..models.sequence import mu_law_decode

    columns = [("samples", np.asarray(samples))]
    if reference is not None:
        columns.append(("data", np.asarray(reference)))
    rows = max(len(c[1]) for c in columns)
    fig, axes = plt.subplots(
        rows, len(columns), figsize=(5 * len(columns), 0.9 * rows), sharey=True, squeeze=False
    )
    for j, (name, seqs) in enumerate(columns):
        for i in range(rows):
            ax = axes[i, j]
            if i < len(seqs):
                y = mu_law_decode(seqs[i], levels) if levels else seqs[i]
                ax.plot(y, lw=0.8, c="C0" if j == 0 else "0.4")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(f"{title if j == 0 else name}")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_text(lines: list[str], path=None, title: str = "samples"):
    """Lines of text (samples of a text model) in a monospaced figure."""
    shown = [line.replace("\n", "\u21b5") for line in lines]
    width = max((len(line) for line in shown), default=10)
    fig, ax = plt.subplots(figsize=(0.11 * width + 0.5, 0.3 * len(shown) + 0.6))
    for i, line in enumerate(shown):
        ax.text(
            0.0,
            1 - (i + 0.5) / max(1, len(shown)),
            line,
            family="monospace",
            fontsize=9,
            parse_math=False,  # text, not math: a "$" is a dollar sign
            va="center",
            transform=ax.transAxes,
        )
    ax.set_axis_off()
    ax.set_title(title)
    return save_figure(fig, path)


def density_grid(points: np.ndarray, size: int = 200, margin: float = 0.15):
    """A grid of ``size`` x ``size`` points over 2-D ``points`` (their box, widened by
    ``margin`` of its longer side): ``(xs, ys, grid)`` with ``grid`` the (size**2, 2) points,
    row by row (``ys`` outer, ``xs`` inner)."""
    points = np.asarray(points)
    lo, hi = points.min(0), points.max(0)
    pad = margin * (hi - lo).max()
    lo, hi = lo - pad, hi + pad
    xs = np.linspace(lo[0], hi[0], size)
    ys = np.linspace(lo[1], hi[1], size)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.stack([gx.ravel(), gy.ravel()], 1)


def plot_density_2d(
    log_prob,
    data: np.ndarray,
    path=None,
    title: str = "density",
    size=200,
    samples=None,
    exponentiate: bool = True,
):
    """The classic flow figure: the data (left) next to the learned density ``exp(log_prob)``
    evaluated on a grid over the data (right); with ``samples``, the model's samples in a third
    panel. With ``exponentiate=False`` the middle panel shows ``log_prob``'s values as they are
    (a discriminator's output, say), with a colour bar."""
    data = np.asarray(data)
    xs, ys, grid = density_grid(data, size)
    density = np.asarray(log_prob(grid), dtype=float).reshape(size, size)
    if exponentiate:
        density = np.exp(density)
    panels = 2 if samples is None else 3
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 5))
    axes[0].scatter(*data[:, :2].T, s=2, c="k", alpha=0.4)
    axes[0].set_title("data")
    image = axes[1].imshow(
        density, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="viridis"
    )
    if not exponentiate:
        fig.colorbar(image, ax=axes[1], fraction=0.046, pad=0.04)
    axes[1].set_title(title)
    if samples is not None:
        axes[2].scatter(*np.asarray(samples)[:, :2].T, s=2, c="C1", alpha=0.4)
        axes[2].set_title("samples")
    for ax in axes:
        ax.set_xlim(xs[0], xs[-1])
        ax.set_ylim(ys[0], ys[-1])
        ax.set_aspect("equal")
    return save_figure(fig, path)


def plot_reconstructions(
    x: np.ndarray,
    x_rec: np.ndarray,
    image_shape=None,
    path=None,
    title: str = "data (odd rows) and reconstructions (even rows)",
):
    """Originals and reconstructions in alternating rows."""
    x, x_rec = np.asarray(x), np.asarray(x_rec)
    n = len(x)
    ncol = min(n, 16)
    rows = []
    for start in range(0, n, ncol):
        rows += [x[start : start + ncol], x_rec[start : start + ncol]]
    stacked = np.concatenate(rows)
    if x.ndim == 2 and x.shape[1] == 2 and image_shape is None:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(*x.T, s=3, label="data")
        ax.scatter(*x_rec.T, s=3, label="reconstruction")
        ax.legend()
        ax.set_title("data and reconstructions")
        return save_figure(fig, path)
    return image_grid(stacked, image_shape, nrow=ncol, title=title, path=path)


def plot_latents(
    z: np.ndarray, labels: np.ndarray | None = None, path=None, title: str | None = None
):
    """Posterior means in 2-D (the first two principal components when latent_dim > 2)."""
    z = np.asarray(z, dtype=np.float64)
    axes = ("z[0]", "z[1]")
    if z.shape[1] > 2:
        zc = z - z.mean(0)
        _, s, vt = np.linalg.svd(zc, full_matrices=False)
        z = zc @ vt[:2].T
        share = (s[:2] ** 2).sum() / (s**2).sum()
        axes = ("PC 1", "PC 2")
        title = (
            title or f"posterior means, first two principal components ({share:.0%} of variance)"
        )
    elif z.shape[1] == 1:
        z = np.concatenate([z, np.zeros_like(z)], axis=1)
    fig, ax = plt.subplots(figsize=(6, 5))
    if labels is not None:
        sc = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=8)
        fig.colorbar(sc, ax=ax, label="label")
    else:
        ax.scatter(z[:, 0], z[:, 1], s=8)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title or "posterior means")
    return save_figure(fig, path)


def plot_curves(
    history: dict,
    path=None,
    ylabel: str = "loss (nats per example)",
    eval_label: str = "validation",
    best_step: int | None = None,
):
    """Training loss (and the validation loss, if any) against step; ``best_step`` marks the
    selected step."""
    fig, ax = plt.subplots(figsize=(6, 4))
    players = sorted(k for k in history if k.startswith("loss_"))
    if history.get("step") and players:  # a game: each player's loss
        for k in players:
            ax.plot(history["step"], history[k], label=k[5:], lw=1)
    elif history.get("step"):
        ax.plot(history["step"], history["loss"], label="train", lw=1)
    if history.get("eval_step"):
        ax.plot(history["eval_step"], history["eval"], "o-", ms=3, label=eval_label)
    if best_step is not None:
        ax.axvline(best_step, color="0.4", ls="--", lw=1, label=f"selected (step {best_step})")
    loss = np.asarray(
        [history[k] for k in players] if players else history.get("loss", []), dtype=float
    ).ravel()
    if loss.size > 10:  # the first steps' loss would squash the rest of the curve
        lo, hi = np.percentile(loss, 0), np.percentile(loss, 95)
        if history.get("eval"):
            lo, hi = min(lo, min(history["eval"])), max(hi, max(history["eval"]))
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# ---------------------------------------------------------------- ArviZ diagnostics

_MAX_PANELS = 12


def _posterior_vars(idata, var_names):
    if var_names is not None:
        return list(var_names)
    names = list(idata.posterior.data_vars)
    # a long list of per-observation variables would make an unreadable figure: keep the
    # first variables in the model's order
    return names[:_MAX_PANELS]


def _figure_of(axes):
    axes = np.asarray(axes)
    return axes.ravel()[0].figure


def plot_trace(idata, path: str | Path | None = None, var_names=None):
    """ArviZ trace plot (density per chain and the draws over time) of the posterior."""
    import arviz as az

    with az.rc_context({"plot.max_subplots": 4 * _MAX_PANELS}):
        axes = az.plot_trace(idata, var_names=_posterior_vars(idata, var_names), compact=True)
    fig = _figure_of(axes)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_rank(idata, path: str | Path | None = None, var_names=None):
    """ArviZ rank plot: per-chain histograms of draw ranks, flat when the chains mix."""
    import arviz as az

    names = _posterior_vars(idata, var_names)
    # one panel per scalar coordinate; keep at most _MAX_PANELS of them
    coords, count = [], 0
    for name in names:
        size = int(np.prod(idata.posterior[name].shape[2:], dtype=int))
        if count + size > _MAX_PANELS and coords:
            break
        coords.append(name)
        count += size
    with az.rc_context({"plot.max_subplots": 4 * _MAX_PANELS}):
        axes = az.plot_rank(idata, var_names=coords)
    fig = _figure_of(axes)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_ppc(idata, path: str | Path | None = None, num_pp_samples: int = 100, seed: int = 0):
    """Posterior predictive check: the observed data's density against replicated draws."""
    import arviz as az

    pp = idata.posterior_predictive
    # ArviZ refuses more replicated draws than there are
    num_pp_samples = max(1, min(num_pp_samples, pp.sizes["chain"] * pp.sizes["draw"]))
    with az.rc_context({"plot.max_subplots": 4 * _MAX_PANELS}):
        axes = az.plot_ppc(idata, num_pp_samples=num_pp_samples, random_seed=seed)
    fig = _figure_of(axes)
    fig.tight_layout()
    return save_figure(fig, path)
