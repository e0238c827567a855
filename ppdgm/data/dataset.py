"""The :class:`Dataset` container and the checks every loader applies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataFormatError, DataValueError, ShapeMismatchError

__all__ = [
    "Dataset",
    "validate_array",
    "validate_labels",
    "value_kind",
    "split_fixed",
    "split_validation",
    "check_likelihood_support",
    "check_shape",
]

#: Seed of the fixed permutation that splits files without their own train/test split.
SPLIT_SEED = 0
#: Share of examples held out for testing when a file has no split of its own.
TEST_FRACTION = 0.1
#: Seed of the permutation that carves the validation split out of the training split.
VAL_SPLIT_SEED = 1
#: Default share of the training split held out for validation.
VAL_FRACTION = 0.1


@dataclass
class Dataset:
    """Train and test arrays (and a validation split once carved) with optional labels.

    Attributes:
        name: the bundled name or the path the data came from.
        x_train: (N_train, *shape) float32 array.
        x_test: (N_test, *shape) float32 array.
        y_train: (N_train,) int64 labels or None.
        y_test: (N_test,) int64 labels or None.
        kind: ``"binary"`` (values in {0, 1}), ``"integer"`` (non-negative integers) or
            ``"continuous"``.
        num_bins: for integer data, one more than the largest value (e.g. 17 for digits).
        image_shape: (C, H, W) when examples are images (stored flat or not), else None.
        true_log_prob: the true log-density for toy data where it is known in closed form.
        vocabulary: for text (sequences of character codes), the characters in code order.
    """

    name: str
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    kind: str = "continuous"
    num_bins: int | None = None
    image_shape: tuple[int, ...] | None = None
    true_log_prob: object | None = field(default=None, repr=False)
    #: (K, D) centers of the modes of a toy mixture and their standard deviation, else None
    modes: tuple | None = field(default=None, repr=False)
    #: (N_val, *shape) validation examples (a file's own, or carved by :func:`split_validation`)
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    #: for text: the characters the codes 0..K-1 stand for
    vocabulary: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.x_train.shape[1:])

    @property
    def has_labels(self) -> bool:
        return self.y_train is not None


def validate_array(x: np.ndarray, source: str, min_ndim: int = 2) -> np.ndarray:
    """Check that ``x`` is a non-empty, finite, numeric array and return it as float32.

    Args:
        x: (N, ...) array of examples.
        source: the file or name the data came from, used in error messages.
        min_ndim: the least number of dimensions (2 means one row per example).
    """
    x = np.asarray(x)
    if x.dtype == object or x.dtype.kind in "USVOMm":
        raise DataFormatError(
            f"{source}: expected a numeric array, got dtype {x.dtype} "
            "(strings, objects and dates are not data)"
        )
    if x.dtype.kind == "c":
        raise DataFormatError(f"{source}: complex values are not supported (dtype {x.dtype})")
    if x.ndim < min_ndim:
        raise DataFormatError(
            f"{source}: expected an array of shape (N, D) or (N, C, H, W), got shape {x.shape}"
        )
    if x.shape[0] == 0 or x.size == 0:
        raise DataFormatError(f"{source}: the data is empty (shape {x.shape})")
    original = x
    with np.errstate(over="ignore"):
        x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        where = f" at row {int(bad[0])}" + (
            f", position {tuple(int(i) for i in bad[1:])}" if len(bad) > 1 else ""
        )
        value = original[tuple(bad)]
        if np.isfinite(value):  # finite in the file, beyond float32's range
            raise DataValueError(
                f"{source}: value {value:g}{where} is beyond the float32 range (about 3.4e38)"
            )
        raise DataValueError(
            f"{source}: non-finite value {x[tuple(bad)]}{where}; NaN and inf are not allowed"
        )
    return x


def validate_labels(y: np.ndarray, n: int, source: str) -> np.ndarray:
    """Check labels: one non-negative integer per example; return them as int64."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataFormatError(f"{source}: labels must be one-dimensional, got shape {y.shape}")
    if len(y) != n:
        raise ShapeMismatchError(f"{source}: {len(y)} labels for {n} examples")
    if y.dtype.kind not in "biuf":
        raise DataFormatError(f"{source}: labels must be integers, got dtype {y.dtype}")
    yf = y.astype(np.float64)
    bad = ~np.isfinite(yf) | (yf != np.round(yf)) | (yf < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataValueError(f"{source}: label {y[i]!r} at row {i} is not a non-negative integer")
    return y.astype(np.int64)


def value_kind(x: np.ndarray) -> tuple[str, int | None]:
    """Classify values as ``binary``, ``integer`` (with its number of bins) or ``continuous``."""
    if np.isin(x, (0.0, 1.0)).all():
        return "binary", 2
    if (x >= 0).all() and (x == np.round(x)).all():
        return "integer", int(x.max()) + 1
    return "continuous", None


def split_fixed(
    x: np.ndarray, y: np.ndarray | None, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Split into train and test with a fixed permutation (seed 0, 10% test, at least one)."""
    n = len(x)
    if n < 2:
        raise DataFormatError(
            f"{source}: need at least 2 examples to split into train/test, got {n}"
        )
    perm = np.random.RandomState(SPLIT_SEED).permutation(n)
    n_test = max(1, int(round(TEST_FRACTION * n)))
    test, train = perm[:n_test], perm[n_test:]
    if y is None:
        return x[train], x[test], None, None
    return x[train], x[test], y[train], y[test]


def split_validation(data: Dataset, val_fraction: float = VAL_FRACTION) -> Dataset:
    """Carve a validation split out of the training split with a fixed permutation.

    A dataset that already has a validation split of its own (an ``.npz`` with ``x_val``)
    keeps it. ``val_fraction`` 0 means no validation split. The test split is untouched.

    Args:
        data: the dataset; not modified.
        val_fraction: share of the training examples held out, in [0, 1); at least one
            example is held out when it is positive, and at least one is left for training.

    Returns:
        a new :class:`Dataset` with ``x_val``/``y_val`` set (None when ``val_fraction`` is 0).
    """
    import dataclasses

    if isinstance(val_fraction, bool) or not (
        isinstance(val_fraction, int | float) and 0 <= val_fraction < 1
    ):
        raise ConfigError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if data.x_val is not None:
        return data
    n = len(data.x_train)
    if val_fraction == 0:
        return dataclasses.replace(data, x_val=None, y_val=None)
    if n < 2:
        raise DataFormatError(
            f"{data.name}: need at least 2 training examples to hold out a validation split, "
            f"got {n}"
        )
    perm = np.random.RandomState(VAL_SPLIT_SEED).permutation(n)
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    y = data.y_train
    return dataclasses.replace(
        data,
        x_train=data.x_train[train],
        x_val=data.x_train[val],
        y_train=None if y is None else y[train],
        y_val=None if y is None else y[val],
    )


def check_likelihood_support(x: np.ndarray, likelihood: str, source: str, num_bins=None) -> None:
    """Raise :class:`DataValueError` if ``x`` lies outside ``likelihood``'s support."""
    if likelihood == "bernoulli":
        bad = ~np.isin(x, (0.0, 1.0))
        if bad.any():
            i = np.argwhere(bad)[0]
            raise DataValueError(
                f"{source}: the bernoulli likelihood needs binary data (0 or 1), found "
                f"{x[tuple(i)]} at row {int(i[0])}; binarize the data (e.g. --data digits-binary) "
                "or choose another likelihood"
            )
    elif likelihood in ("discretized_logistic", "categorical", "dequantized"):
        bad = (x < 0) | (x != np.round(x))
        if num_bins is not None:
            bad |= x > num_bins - 1
        if bad.any():
            i = np.argwhere(bad)[0]
            upper = f"0..{num_bins - 1}" if num_bins is not None else "non-negative integers"
            raise DataValueError(
                f"{source}: the {likelihood} likelihood needs integer values in "
                f"{upper}, found {x[tuple(i)]} at row {int(i[0])}"
            )


def check_shape(x: np.ndarray, expected: tuple[int, ...], source: str) -> None:
    """Raise :class:`ShapeMismatchError` unless examples have shape ``expected``."""
    if tuple(x.shape[1:]) != tuple(expected):
        raise ShapeMismatchError(
            f"{source}: examples have shape {tuple(x.shape[1:])} but the model was trained on "
            f"shape {tuple(expected)}"
        )
