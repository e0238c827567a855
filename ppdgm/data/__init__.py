"""Bundled datasets and loaders for user files.

``load_data(spec)`` takes a bundled name (see :data:`BUNDLED`) or a path to the user's own
data: ``.npy``, ``.npz``, ``.csv``, a folder of PNG images, or IDX files (MNIST format,
gzipped or not). Nothing is downloaded.

The bundled digits are scikit-learn's ``load_digits`` (1,797 images of 8x8 pixels, values
0..16). Their split is fixed: a permutation drawn with ``numpy.random.RandomState(0)``;
the first 1,500 permuted examples are the training set, the remaining 297 the test set.
Files without a split of their own are split the same way with 10% held out for testing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._utils import check_choice
from ..errors import DataFormatError
from .dataset import (
    Dataset,
    check_likelihood_support,
    check_shape,
    split_fixed,
    split_validation,
    validate_array,
    validate_labels,
    value_kind,
)
from .files import (
    is_idx_path,
    read_csv,
    read_idx,
    read_image_folder,
    read_labels,
    read_npy,
    read_npz,
)
from .sequences import read_text, stdlib_docstrings, synthesize_tones, text_windows
from .toy import TOY_DENSITIES, ToyDensity, toy_density

__all__ = [
    "Dataset",
    "BUNDLED",
    "load_data",
    "load_digits_data",
    "load_toy_data",
    "list_datasets",
    "toy_density",
    "ToyDensity",
    "TOY_DENSITIES",
    "split_validation",
    "validate_array",
    "validate_labels",
    "check_likelihood_support",
    "check_shape",
]

DIGITS_TRAIN_SIZE = 1500
TOY_TRAIN_SIZE, TOY_TEST_SIZE = 8000, 2000


def load_digits_data(view: str = "raw") -> Dataset:
    """scikit-learn's 8x8 digits with the fixed train/test split.

    Args:
        view: ``raw`` (integers 0..16), ``binary`` (pixel > 8) or ``unit`` (value / 16).

    Returns:
        Dataset with x of shape (N, 64), labels 0..9 and ``image_shape`` (1, 8, 8).
    """
    from sklearn.datasets import load_digits

    check_choice("digits view", view, ("raw", "binary", "unit"))
    d = load_digits()
    x, y = d.data.astype(np.float32), d.target.astype(np.int64)
    if view == "binary":
        x, kind, bins = (x > 8).astype(np.float32), "binary", 2
    elif view == "unit":
        x, kind, bins = x / 16.0, "continuous", None
    else:
        kind, bins = "integer", 17
    perm = np.random.RandomState(0).permutation(len(x))
    tr, te = perm[:DIGITS_TRAIN_SIZE], perm[DIGITS_TRAIN_SIZE:]
    name = "digits" if view == "raw" else f"digits-{view}"
    return Dataset(name, x[tr], x[te], y[tr], y[te], kind, bins, (1, 8, 8))


def load_toy_data(
    name: str, num_train: int = TOY_TRAIN_SIZE, num_test: int = TOY_TEST_SIZE
) -> Dataset:
    """Samples of a toy 2-D density (training seed 1, test seed 2) and its true density."""
    d = toy_density(name)
    return Dataset(
        name,
        d.sample(num_train, seed=1),
        d.sample(num_test, seed=2),
        kind="continuous",
        true_log_prob=d.log_prob if d.has_log_prob else None,
        modes=d.modes,
    )


def load_text_corpus() -> Dataset:
    """The bundled text: standard-library docstrings in windows of 64 characters."""
    x, vocabulary = text_windows(stdlib_docstrings(), source="pydoc-text")
    xtr, xte, _, _ = split_fixed(x, None, "pydoc-text")
    return Dataset(
        "pydoc-text", xtr, xte, kind="integer", num_bins=len(vocabulary), vocabulary=vocabulary
    )


def load_tones() -> Dataset:
    """The bundled audio: 2,000 multi-tone signals of 128 samples, mu-law coded to 256
    levels (1,800 train, 200 test)."""
    x = synthesize_tones(2000, 128, 256, seed=0)
    return Dataset("tones", x[:1800], x[1800:], kind="integer", num_bins=256)


BUNDLED: dict[str, tuple[str, Callable[[], Dataset]]] = {
    "digits": ("scikit-learn 8x8 digits, integer pixels 0..16", lambda: load_digits_data("raw")),
    "digits-binary": ("digits binarized at pixel > 8", lambda: load_digits_data("binary")),
    "digits-unit": ("digits scaled to [0, 1]", lambda: load_digits_data("unit")),
    "pydoc-text": (
        "standard-library docstrings, 64-character windows (text)",
        load_text_corpus,
    ),
    "tones": ("synthesized multi-tone audio, 128 samples mu-law coded to 256 levels", load_tones),
    **{
        name: (f"toy 2-D: {d.description}", (lambda n=name: load_toy_data(n)))
        for name, d in TOY_DENSITIES.items()
    },
}


def list_datasets() -> list[tuple[str, str]]:
    """(name, description) of every bundled dataset."""
    return [(name, desc) for name, (desc, _) in BUNDLED.items()]


def _labels_file(path: Path) -> Path | None:
    """The MNIST-style labels file next to an images file, if it exists."""
    name = path.name
    for a, b in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1")):
        if a in name:
            cand = path.with_name(name.replace(a, b))
            if cand.exists():
                return cand
    return None


def _mnist_test_file(path: Path) -> Path | None:
    """MNIST's test images (``t10k-...``) beside its training images (``train-...``)."""
    if not path.name.startswith("train-"):
        return None
    cand = path.with_name("t10k-" + path.name[len("train-") :])
    return cand if cand.is_file() else None


def _read_idx_images(path: Path, labels: Path | None) -> tuple[np.ndarray, np.ndarray | None]:
    x = read_idx(path)
    x = validate_array(x[:, None] if x.ndim == 3 else x, str(path))
    lab = labels if labels is not None else _labels_file(path)
    return x, (read_labels(lab, len(x)) if lab is not None else None)


def load_data(
    spec: str | Path,
    labels: str | Path | None = None,
    label_column: str | int | None = None,
) -> Dataset:
    """Load a bundled dataset by name or the user's data from a file or folder.

    Args:
        spec: a name of :data:`BUNDLED` or a path (``.npy``, ``.npz``, ``.csv``, ``.txt``
            (UTF-8 text, as windows of 64 character codes), a folder of PNGs, an IDX file).
        labels: optional path to a labels file (``.npy`` of shape (N,), IDX); for IDX images
            a ``*labels-idx1*`` file next to the images is found on its own. Given MNIST's
            ``train-images-idx3-ubyte``, the ``t10k-images-idx3-ubyte`` file beside it (and its
            labels) is the test split.
        label_column: for CSV, the label column's header name or 0-based index.

    Raises:
        DataFormatError, DataValueError, ShapeMismatchError: naming the file and the problem.
    """
    if isinstance(spec, str) and spec in BUNDLED:
        return BUNDLED[spec][1]()
    path = Path(spec)
    if not path.exists():
        raise DataFormatError(
            f"{spec}: no such file or folder, and not a bundled dataset "
            f"(bundled: {', '.join(BUNDLED)})"
        )
    source = str(path)
    suffix = path.suffix.lower()
    y = None
    if path.is_dir():
        x, y = read_image_folder(path)
    elif is_idx_path(path):
        x, y = _read_idx_images(path, Path(labels) if labels is not None else None)
        test = _mnist_test_file(path)
        if test is not None:
            xte, yte = _read_idx_images(test, None)
            if xte.shape[1:] != x.shape[1:]:
                raise DataFormatError(
                    f"{test}: test images of shape {xte.shape[1:]} do not match the training "
                    f"images' {x.shape[1:]} in {path}"
                )
            if (y is None) != (yte is None):
                y = yte = None  # labels for one split only are no use to a labelled model
            kind, bins = value_kind(np.concatenate([x.reshape(-1), xte.reshape(-1)]))
            return Dataset(source, x, xte, y, yte, kind, bins, _image_shape(x))
    elif suffix == ".npy":
        x, y = read_npy(path)
    elif suffix == ".npz":
        parts = read_npz(path)
        if "x_train" in parts:
            xtr, xte, xva = parts["x_train"], parts["x_test"], parts["x_val"]
            every = [xtr, xte] + ([xva] if xva is not None else [])
            kind, bins = value_kind(np.concatenate([a.reshape(-1) for a in every]))
            if xtr.ndim == 3:
                xtr, xte = xtr[:, None], xte[:, None]
                xva = None if xva is None else xva[:, None]
            return Dataset(
                source,
                xtr,
                xte,
                parts["y_train"],
                parts["y_test"],
                kind,
                bins,
                _image_shape(xtr),
                x_val=xva,
                y_val=parts["y_val"],
            )
        x, y = parts["x"], parts["y"]
    elif suffix == ".csv":
        x, y = read_csv(path, label_column=label_column)
    elif suffix == ".txt":
        x, vocabulary = read_text(path)
        xtr, xte, _, _ = split_fixed(x, None, source)
        return Dataset(
            source, xtr, xte, kind="integer", num_bins=len(vocabulary), vocabulary=vocabulary
        )
    else:
        raise DataFormatError(
            f"{path}: unknown data format {suffix or '(no extension)'!r}; expected .npy, .npz, "
            ".csv, .txt (text), an IDX file or a folder of PNG images"
        )
    if labels is not None and not is_idx_path(path):  # IDX images read their labels above
        y = read_labels(Path(labels), len(x))
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim > 4:
        raise DataFormatError(
            f"{path}: examples of shape {x.shape[1:]} have too many dimensions; "
            "expected (N, D) vectors or (N, C, H, W) images"
        )
    kind, bins = value_kind(x)
    xtr, xte, ytr, yte = split_fixed(x, y, source)
    return Dataset(source, xtr, xte, ytr, yte, kind, bins, _image_shape(xtr))


def _image_shape(x: np.ndarray) -> tuple[int, ...] | None:
    """The shape of one image for (N, C, H, W) data (3-D data has its channel by now)."""
    return tuple(x.shape[1:]) if x.ndim == 4 else None
