"""Loading a user's model function from a file and binding data columns to its arguments."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataFormatError

__all__ = ["load_function", "bind_columns", "gather_matrices", "as_call"]


def load_function(spec: str) -> Callable:
    """Import ``"path/to/file.py:function"`` and return the function.

    The file is run as a module (it is the user's own code, as with ``python file.py``).

    Raises:
        ConfigError: a malformed spec, a missing file, or no such callable in it.
    """
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise ConfigError(
            f"model {spec!r}: expected FILE.py:FUNCTION, e.g. my_model.py:eight_schools"
        )
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist")
    if path.suffix != ".py":
        raise ConfigError(f"model file {path} is not a .py file")
    module_name = f"ppdgm_user_model_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[module_name]
        raise ConfigError(f"model file {path} failed to import: {type(e).__name__}: {e}") from e
    fn = getattr(module, name, None)
    if fn is None:
        found = sorted(
            k for k, v in vars(module).items() if inspect.isfunction(v) and not k.startswith("_")
        )
        raise ConfigError(
            f"model file {path} has no function {name!r} (functions: {', '.join(found) or 'none'})"
        )
    if not callable(fn):
        raise ConfigError(f"{path}:{name} is not callable")
    return fn


def _signature_text(fn: Callable, params) -> str:
    parts = [p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params]
    return f"{fn.__name__}({', '.join(parts)})"


def bind_columns(
    fn: Callable,
    columns: Mapping[str, np.ndarray],
    source: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Match data columns (and ``extra`` scalar arguments) to ``fn``'s parameters by name.

    Returns:
        keyword arguments for ``fn``.

    Raises:
        DataFormatError: a column that names no parameter, or a required parameter with
            neither a column nor an ``extra`` value.
    """
    extra = dict(extra or {})
    params = list(inspect.signature(fn).parameters.values())
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = {p.name for p in named}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    sig = _signature_text(fn, named)
    for key in list(columns) + list(extra):
        if key not in names and not takes_kwargs:
            what = "column" if key in columns else "argument"
            raise DataFormatError(f"{source}: {what} {key!r} matches no argument of {sig}")
    both = sorted(set(columns) & set(extra))
    if both:
        raise DataFormatError(f"{source}: {both} given both as a column and with --arg")
    missing = [
        p.name
        for p in named
        if p.default is p.empty and p.name not in columns and p.name not in extra
    ]
    if missing:
        raise DataFormatError(
            f"{source}: no column for the argument{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} of {sig}"
        )
    return {**columns, **extra}


def gather_matrices(
    fn: Callable, columns: Mapping[str, np.ndarray], specs: list[str], source: str
) -> dict[str, np.ndarray]:
    """Join CSV columns into matrix arguments: each spec is ``NAME=COL1,COL2,...`` (the
    columns in that order) or ``NAME=*`` (every column that names no argument of ``fn`` and
    is in no other matrix, in file order).

    Returns:
        the columns with those joined removed and each matrix, shape ``(N, k)`` float64, added.

    Raises:
        ConfigError: a malformed spec; DataFormatError: a column that is not in the file, a
            column in two matrices, a matrix named like a column, or ``*`` with no column left.
    """
    out = dict(columns)
    params = {p.name for p in inspect.signature(fn).parameters.values()}
    parsed: list[tuple[str, list[str] | None]] = []
    for spec in specs:
        name, sep, cols = spec.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not cols.strip():
            raise ConfigError(f"--matrix {spec!r}: expected NAME=COL1,COL2,... or NAME=*")
        if cols.strip() == "*":
            parsed.append((name, None))
        else:
            parsed.append((name, [c.strip() for c in cols.split(",") if c.strip()]))
    if sum(cols is None for _, cols in parsed) > 1:
        raise ConfigError("--matrix: only one matrix can take the remaining columns (=*)")
    taken: dict[str, str] = {}
    for name, cols in parsed:
        if name in columns:
            raise DataFormatError(f"{source}: --matrix {name} is also the name of a column")
        for c in cols or []:
            if c not in columns:
                raise DataFormatError(
                    f"{source}: --matrix {name}: no column {c!r} (columns: {', '.join(columns)})"
                )
            if c in taken:
                raise DataFormatError(
                    f"{source}: column {c!r} is in two matrices ({taken[c]} and {name})"
                )
            taken[c] = name
    for name, cols in parsed:
        if cols is None:
            cols = [c for c in columns if c not in taken and c not in params]
            if not cols:
                raise DataFormatError(
                    f"{source}: --matrix {name}=* found no column left over (every column "
                    "names an argument or is in another matrix)"
                )
            for c in cols:
                taken[c] = name
        out[name] = np.stack([np.asarray(columns[c], dtype=np.float64) for c in cols], axis=1)
    for c in taken:
        out.pop(c, None)
    return out


def as_call(fn: Callable, kwargs: Mapping[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """Split keyword arguments into positional ones (in ``fn``'s order, defaults filled in
    for skipped parameters) and the keyword-only rest, so that a data column named like an
    option of the sampler (``seed``, ``backend``, ...) cannot collide with it."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    last = max((i for i, p in enumerate(positional) if p.name in kwargs), default=-1)
    args = tuple(kwargs[p.name] if p.name in kwargs else p.default for p in positional[: last + 1])
    rest = {k: v for k, v in kwargs.items() if k not in {p.name for p in positional[: last + 1]}}
    return args, rest
