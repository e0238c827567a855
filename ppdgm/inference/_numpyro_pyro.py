"""The ``pyro`` namespace of ppdgm's NumPyro backend for :mod:`pyroapi`.

``pyroapi``'s stock ``"numpy"`` backend routes ``pyro`` to ``numpyro.compat.pyro``, which
has only ``sample``, ``plate``, ``param`` and ``module``; a model that calls
``pyro.deterministic`` or ``pyro.factor`` fails there. This module gives every primitive a
Pyro user writes, with Pyro's signatures, on top of NumPyro's primitives.
"""

from __future__ import annotations

import inspect

import numpyro
from numpyro.compat.pyro import clear_param_store, get_param_store
from numpyro.primitives import module, plate, plate_stack, prng_key, subsample

__all__ = [
    "clear_param_store",
    "deterministic",
    "factor",
    "get_param_store",
    "module",
    "param",
    "plate",
    "plate_stack",
    "prng_key",
    "sample",
    "subsample",
]


def sample(name, fn, *args, obs=None, infer=None, **kwargs):
    """``pyro.sample(name, fn, obs=None, infer=None)`` as a NumPyro sample site."""
    return numpyro.sample(name, fn, *args, obs=obs, infer=infer, **kwargs)


def deterministic(name, value, event_dim=None):
    """``pyro.deterministic``: record ``value`` under ``name``; ``event_dim`` is accepted
    for Pyro compatibility (NumPyro records the whole value)."""
    del event_dim
    return numpyro.deterministic(name, value)


def factor(name, log_factor, *, has_rsample=None):
    """``pyro.factor``: add ``log_factor`` to the model's log density."""
    del has_rsample
    return numpyro.factor(name, log_factor)


def param(name, init_tensor=None, constraint=None, event_dim=None):
    """``pyro.param`` with Pyro's calling convention.

    A callable ``init_tensor`` taking no arguments (Pyro's lazy initializer) is called;
    NumPyro's own initializers, which take an RNG key, are passed on.
    """
    from numpyro.distributions import constraints

    if callable(init_tensor):
        try:
            takes_key = len(inspect.signature(init_tensor).parameters) > 0
        except (TypeError, ValueError):
            takes_key = True
        if not takes_key:
            init_tensor = init_tensor()
    kwargs = {"constraint": constraints.real if constraint is None else constraint}
    if event_dim is not None:
        kwargs["event_dim"] = event_dim
    value = numpyro.param(name, init_tensor, **kwargs)
    if value is None:
        store = get_param_store()
        if name in store:
            value = store[name]
    return value
