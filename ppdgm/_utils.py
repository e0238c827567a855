"""Small shared helpers: seeding, devices, atomic file writes."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError

__all__ = [
    "atomic_path",
    "check_choice",
    "check_int",
    "set_seed",
    "resolve_device",
    "atomic_write",
    "write_json",
    "get_rng_state",
    "set_rng_state",
    "owner_module",
]

#: learning-rate schedules of :meth:`ppdgm.train.Trainer.run`
LR_SCHEDULES = ("constant", "cosine", "linear")


def check_choice(name: str, value: Any, allowed: Iterable[Any], *, more: str = "") -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise :class:`ConfigError` (a
    ``ValueError``) that names ``name``, the value and the choices:
    ``unknown NAME 'value'; choose one of A, B, C`` (then ``more``, e.g. " or a callable")."""
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(map(str, allowed))
        raise ConfigError(f"unknown {name} {value!r}; choose one of {listed}{more}")
    return value


def check_int(name: str, value: Any, low: int = 1) -> int:
    """Return ``value`` as an int if it is an integer (not a bool) >= ``low``, else raise
    :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    return int(value)


def no_grad(fn):
    """``torch.no_grad()`` as a decorator, at a fraction of its cost: free when gradients are
    already off, and a bare switch otherwise (a small model's training step calls several such
    functions, and entering ``torch.no_grad()`` costs about as much as a small tensor
    operation)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not torch.is_grad_enabled():
            return fn(*args, **kwargs)
        # the switch itself: a fifth of the cost of entering torch.no_grad()
        torch._C._set_grad_enabled(False)
        try:
            return fn(*args, **kwargs)
        finally:
            torch._C._set_grad_enabled(True)

    return wrapper


def floored_std(std):
    """Per-coordinate standard deviations (a tensor or array) floored at 1% of their mean (and
    1e-6): a coordinate (nearly) constant in the data it came from, e.g. a blank border pixel,
    keeps a scale of the typical order, so that other data, or samples, varying there do not
    blow up in standardized units."""
    floor = max(1e-6, 1e-2 * float(std.mean()))
    return std.clamp_min(floor) if isinstance(std, torch.Tensor) else np.maximum(std, floor)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a device; ``auto`` picks CUDA when present."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (
        device == "cpu" or device == "cuda" or device.startswith("cuda:")
    ):
        raise ConfigError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available here")
    return torch.device(device)


def cache_dir() -> Path:
    """The folder of ppdgm's caches: ``$PPDGM_CACHE_DIR``, else the user cache directory."""
    env = os.environ.get("PPDGM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ppdgm"


def _umask() -> int:
    """The process umask (the permission bits new files do not get)."""
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Give a temporary path beside ``path`` to write to (for writers that want a file name),
    and rename it over ``path`` only on success.

    A crash or an exception leaves any previous ``path`` untouched and no partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600), and the rename would keep that: give it the
        # mode any program's new file gets, 0666 less the umask
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path`` and rename it over ``path`` only on success.

    A crash or an exception leaves any previous ``path`` untouched and no partial file.
    """
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")


def get_rng_state() -> dict[str, Any]:
    """Every random generator's state, as tensors and plain Python values (safe to save)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_rest": [str(np_state[0]), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state(
        (name, state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def caller_stacklevel() -> int:
    """The ``stacklevel`` for a warning issued by the calling function that makes it point at
    the first frame outside ppdgm: the user's line, not the library's."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def owner_module(fn) -> torch.nn.Module | None:
    """The module a program belongs to: the module itself or a bound method's ``__self__``."""
    if isinstance(fn, torch.nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None
