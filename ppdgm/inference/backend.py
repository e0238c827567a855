"""Backends for models written once with :mod:`pyroapi`'s neutral names.

A model that imports ``from pyroapi import pyro, distributions as dist`` runs on Pyro
(PyTorch) or on NumPyro (JAX) depending on the backend that is active when it is called.
Importing this module registers ``"numpyro"`` (and re-points ``pyroapi``'s ``"numpy"``
alias) to a complete NumPyro backend whose ``pyro`` namespace has every primitive,
``deterministic`` and ``factor`` included.

:func:`use_backend` switches backends without the fixed seed that ``pyroapi.pyro_backend``
installs, so the samplers keep control of randomness.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .._utils import check_choice
from ..errors import DataValueError
from ._jax import provide_host_devices

# One CPU device per chain, so that NumPyro runs chains in parallel. It must be set before JAX
# starts, so here, where every NumPyro path of ppdgm begins (tracing a model for the posterior
# starts JAX too), not where the sampler is imported.
provide_host_devices()

__all__ = ["BACKENDS", "NUMPYRO_MODULES", "as_backend_args", "use_backend", "register"]

BACKENDS = ("numpyro", "pyro")

NUMPYRO_MODULES = {
    "pyro": "ppdgm.inference._numpyro_pyro",
    "distributions": "numpyro.distributions",
    "handlers": "numpyro.handlers",
    "infer": "numpyro.compat.infer",
    "ops": "numpyro.compat.ops",
    "optim": "numpyro.compat.optim",
}

_PYRO_MODULES = {
    "pyro": "pyro",
    "distributions": "pyro.distributions",
    "handlers": "pyro.poutine",
    "infer": "pyro.infer",
    "ops": "torch",
    "optim": "pyro.optim",
}


def register() -> None:
    """Register ppdgm's NumPyro backend with :mod:`pyroapi` as ``"numpyro"`` and ``"numpy"``."""
    import pyroapi

    pyroapi.register_backend("numpyro", NUMPYRO_MODULES)
    pyroapi.register_backend("numpy", NUMPYRO_MODULES)


def check_backend(backend: str) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise :class:`ConfigError`."""
    return check_choice("backend", backend, BACKENDS)


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    """Route :mod:`pyroapi`'s names to ``backend`` ("numpyro" or "pyro") inside the block."""
    from pyroapi.dispatch import GenericModule

    check_backend(backend)
    modules = NUMPYRO_MODULES if backend == "numpyro" else _PYRO_MODULES
    old = dict(GenericModule.current_backend)
    GenericModule.current_backend.update(modules)
    try:
        yield
    finally:
        GenericModule.current_backend.clear()
        GenericModule.current_backend.update(old)


def _convert(name: str, value: Any, backend: str) -> Any:
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value)
    ):
        value = np.asarray(value)
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        raise DataValueError(f"argument {name!r} is {value}; expected a finite number")
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind not in "biuf":
        raise DataValueError(f"argument {name!r} has dtype {value.dtype}; expected a numeric array")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        bad = np.argwhere(~np.isfinite(value))[0]
        raise DataValueError(
            f"argument {name!r} holds a non-finite value ({value[tuple(bad)]}) at index "
            f"{tuple(int(i) for i in bad)}"
        )
    if backend == "numpyro":
        import jax.numpy as jnp

        return jnp.asarray(value)
    import torch

    if value.dtype.kind == "f":
        return torch.as_tensor(value, dtype=torch.get_default_dtype())
    if value.dtype.kind == "b":
        return torch.as_tensor(value)
    return torch.as_tensor(value, dtype=torch.long)


def as_backend_args(
    args: tuple, kwargs: Mapping[str, Any], backend: str, names: list[str] | None = None
) -> tuple[tuple, dict[str, Any]]:
    """Convert NumPy arrays (and lists of numbers) in a model's arguments to the backend's
    arrays: float arrays to the default float type, integers to integer arrays.

    Raises:
        DataValueError: an array holds NaN/inf or is not numeric; the message names the
            argument (``names`` gives names to positional arguments).
    """
    names = list(names or [])
    out_args = tuple(
        _convert(names[i] if i < len(names) else f"#{i}", a, backend) for i, a in enumerate(args)
    )
    out_kwargs = {k: _convert(k, v, backend) for k, v in kwargs.items()}
    return out_args, out_kwargs


register()
