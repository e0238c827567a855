"""Loaders for user data files: .npy, .npz, .csv, folders of PNG images and IDX files.

Every loader validates what it reads and raises a :mod:`ppdgm.errors` exception that
names the file and what is wrong. Nothing is ever unpickled: ``.npy``/``.npz`` are read
with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
import gzip
import re
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, DataValueError
from .dataset import validate_array, validate_labels

__all__ = [
    "read_npy",
    "read_labels",
    "read_npz",
    "read_csv",
    "read_csv_columns",
    "read_image_folder",
    "read_idx",
    "is_idx_path",
]

LABEL_COLUMN_NAMES = ("label", "labels", "y", "target", "class")
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_IDX_BYTES = 2**31


def _xy(x, y, source):
    x = validate_array(x, source)
    if y is not None:
        y = validate_labels(y, len(x), source)
    return x, y


def _np_load(path: Path, what: str):
    """``np.load`` without pickles, its failures turned into :class:`DataFormatError`."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if what == ".npz":
            with loaded as z:
                return {k: z[k] for k in z.files}
        return loaded
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataFormatError(
                f"{path}: holds pickled Python objects, which are refused; save numeric arrays"
            ) from None
        raise DataFormatError(f"{path}: not a valid {what} file ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataFormatError(f"{path}: not a valid {what} file ({e})") from None


def read_npy(path: Path) -> tuple[np.ndarray, None]:
    """Read an (N, ...) array from a ``.npy`` file."""
    return _xy(_np_load(path, ".npy"), None, str(path))


def read_labels(path: Path, n: int) -> np.ndarray:
    """Read one label per example from a ``.npy`` file (shape (N,) or (N, 1)) or an IDX file."""
    path = Path(path)
    if is_idx_path(path):
        y = read_idx(path)
    elif path.suffix.lower() == ".npy":
        y = np.asarray(_np_load(path, ".npy"))
    else:
        raise DataFormatError(
            f"{path}: unknown labels format {path.suffix or '(no extension)'!r}; expected .npy "
            "or an IDX file"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    return validate_labels(y, n, str(path))


_NPZ_X = ("x", "X", "data", "images")
_NPZ_Y = ("y", "Y", "labels", "targets")


def read_npz(path: Path) -> dict[str, np.ndarray | None]:
    """Read a ``.npz`` archive.

    Keys understood: ``x_train``/``x_test`` (+ ``y_train``/``y_test``, and optionally
    ``x_val``/``y_val`` for a validation split of its own) for a split of its own, else one
    of ``x, X, data, images`` (+ ``y, Y, labels, targets``), else the only array in the
    archive.

    Returns:
        dict with ``x`` and ``y`` or ``x_train``, ``x_test``, ``y_train``, ``y_test`` (and
        ``x_val``, ``y_val``, None when absent).
    """
    source = str(path)
    arrays = _np_load(path, ".npz")
    if not arrays:
        raise DataFormatError(f"{path}: the archive holds no arrays")
    if "x_train" in arrays:
        if "x_test" not in arrays:
            raise DataFormatError(f"{path}: has 'x_train' but no 'x_test'")
        if "y_val" in arrays and "x_val" not in arrays:
            raise DataFormatError(f"{path}: has 'y_val' but no 'x_val'")
        out = {"x_val": None, "y_val": None}
        parts = ("train", "test", "val") if "x_val" in arrays else ("train", "test")
        for part in parts:
            x, y = _xy(arrays[f"x_{part}"], arrays.get(f"y_{part}"), f"{source}[x_{part}]")
            out[f"x_{part}"], out[f"y_{part}"] = x, y
            if out["x_train"].shape[1:] != x.shape[1:]:
                raise DataFormatError(
                    f"{path}: x_train examples have shape {out['x_train'].shape[1:]} but x_{part} "
                    f"examples have shape {x.shape[1:]}"
                )
        if len({out[f"y_{part}"] is None for part in parts}) > 1:
            raise DataFormatError(f"{path}: labels given for only some of {'/'.join(parts)}")
        return out
    xkey = next((k for k in _NPZ_X if k in arrays), None)
    if xkey is None:
        if len(arrays) != 1:
            raise DataFormatError(
                f"{path}: cannot tell which array is the data among {sorted(arrays)}; "
                f"name it one of {', '.join(_NPZ_X)} (or x_train/x_test)"
            )
        xkey = next(iter(arrays))
    ykey = next((k for k in _NPZ_Y if k in arrays), None)
    x, y = _xy(arrays[xkey], arrays[ykey] if ykey else None, f"{source}[{xkey}]")
    return {"x": x, "y": y}


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _csv_rows(path: Path) -> tuple[list[str] | None, list[list[str]], int]:
    """The header (None if the first row is all numbers), the non-blank data rows, and the
    file line number of the first data row. Ragged rows are refused."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not a text CSV file (cannot decode as UTF-8)") from None
    except csv.Error as e:
        raise DataFormatError(f"{path}: malformed CSV ({e})") from None
    if not rows:
        raise DataFormatError(f"{path}: the file is empty")
    header = None
    if any(not _is_number(c) for c in rows[0]):
        header = [c.strip() for c in rows[0]]
        rows = rows[1:]
        if not rows:
            raise DataFormatError(f"{path}: has a header but no data rows")
    width = len(header) if header is not None else len(rows[0])
    first_line = 2 if header is not None else 1
    for i, r in enumerate(rows):
        if len(r) != width:
            raise DataFormatError(
                f"{path}: row {i + first_line} has {len(r)} columns, expected {width} (ragged rows)"
            )
    return header, rows, first_line


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """Read a CSV file with a header into one array per named column.

    A column whose cells are all integers becomes an int64 array, otherwise float64.

    Raises:
        DataFormatError: no header, a duplicate or empty column name, ragged rows.
        DataValueError: an empty cell, a non-numeric cell, NaN or infinity; the message
            names the column and the row (the file's line number).
    """
    header, rows, first_line = _csv_rows(path)
    if header is None:
        raise DataFormatError(f"{path}: needs a header row naming the columns")
    for j, name in enumerate(header):
        if not name:
            raise DataFormatError(f"{path}: column {j} has an empty name in the header")
        if header.index(name) != j:
            raise DataFormatError(f"{path}: column name {name!r} appears twice in the header")
    columns = {}
    for j, name in enumerate(header):
        cells = [r[j].strip() for r in rows]
        values = np.empty(len(cells), dtype=np.float64)
        for i, c in enumerate(cells):
            where = f"{path}: row {i + first_line}, column {name!r}"
            if not c:
                raise DataValueError(f"{where}: empty cell (missing value)")
            try:
                values[i] = float(c)
            except ValueError:
                raise DataValueError(f"{where}: {c!r} is not a number") from None
            if not np.isfinite(values[i]):
                raise DataValueError(f"{where}: {c!r} is not a finite number")
        is_int = all(c.lstrip("+-").isdigit() for c in cells)
        columns[name] = values.astype(np.int64) if is_int else values
    return columns


def read_csv(
    path: Path, label_column: str | int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read numeric columns from a CSV file, one example per row.

    A first row with any non-numeric cell is a header. The label column is ``label_column``
    (a header name or a 0-based index), or else a header named one of
    ``label, labels, y, target, class``; all other columns must be numeric.
    """
    header, rows, first_line = _csv_rows(path)
    width = len(header) if header is not None else len(rows[0])
    label_idx = None
    if label_column is not None:
        if isinstance(label_column, int) or str(label_column).isdigit():
            label_idx = int(label_column)
            if not 0 <= label_idx < width:
                raise DataFormatError(
                    f"{path}: label column {label_idx} out of range 0..{width - 1}"
                )
        elif header is None or label_column not in header:
            raise DataFormatError(f"{path}: no column named {label_column!r} in the header")
        else:
            label_idx = header.index(label_column)
    elif header is not None:
        lowered = [h.lower() for h in header]
        label_idx = next((lowered.index(n) for n in LABEL_COLUMN_NAMES if n in lowered), None)
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, r in enumerate(rows):
        for j, c in enumerate(r):
            try:
                values[i, j] = float(c)
            except ValueError:
                error, problem = DataFormatError, f"{c!r} is not a number"
            else:
                if np.isfinite(values[i, j]):
                    continue
                error = DataValueError
                problem = f"{c.strip()!r} is not a finite number; NaN and inf are not allowed"
            # one convention for every cell: the file's line number and the column's name
            col = f"{header[j]!r}" if header is not None else str(j)
            raise error(f"{path}: row {i + first_line}, column {col}: {problem}")
    y = None
    if label_idx is not None:
        y = values[:, label_idx]
        values = np.delete(values, label_idx, axis=1)
        if values.shape[1] == 0:
            raise DataFormatError(f"{path}: no data columns besides the label column")
    return _xy(values, y, str(path))


def read_image_folder(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a folder of PNG images as (N, C, H, W) values 0..255.

    Images directly in the folder are unlabelled; images in sub-folders are labelled by
    sub-folder (classes numbered in sorted order of the sub-folder names). All images must
    share one size; grayscale images give C=1, any colour image makes all of them RGB (C=3).
    """
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".png")
    if not files:
        raise DataFormatError(f"{path}: the folder holds no .png images")
    classes = sorted({p.parent.relative_to(path).parts[0] for p in files if p.parent != path})
    if classes and any(p.parent == path for p in files):
        raise DataFormatError(
            f"{path}: mixes images at the top level with images in class sub-folders"
        )
    images, labels = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise DataFormatError(
                        f"{p}: image of {im.width}x{im.height} pixels is larger than allowed"
                    )
                im.load()
                mode = (
                    "L" if im.mode in ("1", "L", "LA", "I", "I;16", "P") and _is_gray(im) else "RGB"
                )
                images.append(np.asarray(im.convert(mode)))
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataFormatError(f"{p}: not a readable PNG image ({e})") from None
        if classes:
            labels.append(classes.index(p.parent.relative_to(path).parts[0]))
    first = images[0].shape[:2]
    for f, im in zip(files, images, strict=True):
        if im.shape[:2] != first:
            raise DataFormatError(
                f"{f}: image is {im.shape[1]}x{im.shape[0]} pixels but {files[0].name} is "
                f"{first[1]}x{first[0]}; all images must have one size"
            )
    if any(im.ndim == 3 for im in images):
        images = [im if im.ndim == 3 else np.repeat(im[..., None], 3, axis=2) for im in images]
        x = np.stack(images).transpose(0, 3, 1, 2)
    else:
        x = np.stack(images)[:, None]
    return _xy(x, np.array(labels) if classes else None, str(path))


def _is_gray(im) -> bool:
    if im.mode == "P":
        pal = im.convert("RGB")
        a = np.asarray(pal)
        return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())
    return True


_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_NAME = re.compile(r"(idx\d-ubyte|\.idx\d?)(\.gz)?$", re.IGNORECASE)


def is_idx_path(path: Path) -> bool:
    """Whether a file name looks like an IDX file (``*-idx3-ubyte``, ``*.idx``, optionally ``.gz``)."""
    return bool(_IDX_NAME.search(path.name))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a NumPy array.

    The header is two zero bytes, a dtype code, the number of dimensions and one big-endian
    32-bit size per dimension; the payload must have exactly the size the header announces.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4:
                raise DataFormatError(f"{path}: too short to be an IDX file (no header)")
            if head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise DataFormatError(f"{path}: not an IDX file (bad magic number {head.hex()})")
            dtype, ndim = _IDX_DTYPES[head[2]], head[3]
            if ndim == 0:
                raise DataFormatError(f"{path}: IDX header declares zero dimensions")
            dims_raw = fh.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataFormatError(f"{path}: truncated IDX header")
            dims = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
            nbytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if nbytes > MAX_IDX_BYTES:
                raise DataFormatError(
                    f"{path}: IDX header declares {nbytes} bytes, more than allowed"
                )
            payload = fh.read(nbytes + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFormatError(f"{path}: cannot read IDX file ({e})") from None
    if len(payload) < nbytes:
        raise DataFormatError(
            f"{path}: truncated IDX file: header declares shape {dims} ({nbytes} bytes) "
            f"but only {len(payload)} bytes follow"
        )
    if len(payload) > nbytes:
        raise DataFormatError(
            f"{path}: IDX file has data beyond the shape {dims} its header declares"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))
