"""Turning a model's sites and posterior draws into ArviZ ``InferenceData``.

The functions here work the same on both backends: they trace the model once to learn
its sites (latent, observed, deterministic, factor) and the plates each sits in, then
evaluate, for every posterior draw, the deterministic sites, the pointwise
log-likelihood of the observed sites and a posterior predictive draw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._utils import caller_stacklevel
from ..errors import ConfigError, ConvergenceWarning, ModelError, PpdgmError

__all__ = [
    "SiteInfo",
    "build_inference_data",
    "check_diagnostics",
    "init_strategy",
    "model_sites",
    "pointwise",
    "posterior_predictive",
]

_CHUNK = 1000


@dataclasses.dataclass
class SiteInfo:
    """One site of a model's trace.

    Attributes:
        name: the site name.
        kind: "latent", "observed", "deterministic" or "factor".
        shape: the value's shape in one run of the model.
        event_dim: the number of trailing event dimensions.
        dims: a name for each axis of the value: the plate's name where the axis is a
            plate of that size, else ``"{name}_dim_{i}"``.
        plate_nesting: how many batch dimensions the site's plates use (its deepest plate).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    event_dim: int
    dims: list[str]
    plate_nesting: int = 0

    @property
    def batch_dims(self) -> list[str]:
        """Names of the axes of the site's pointwise log-density."""
        return self.dims[: len(self.shape) - self.event_dim]


def _dims(name: str, shape: tuple[int, ...], event_dim: int, frames) -> list[str]:
    dims = [f"{name}_dim_{i}" for i in range(len(shape))]
    batch = len(shape) - event_dim
    for frame in frames:
        if frame.dim is None:
            continue
        axis = batch + frame.dim
        if 0 <= axis < batch and shape[axis] == frame.size and frame.size > 1:
            dims[axis] = frame.name
    return dims


def _is_factor(fn, unit: type) -> bool:
    """Whether a site's distribution is a factor's ``Unit``, also when a plate has wrapped it
    (NumPyro expands a factor inside a plate into an ``ExpandedDistribution``)."""
    while not isinstance(fn, unit) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, unit)


def _classify(site: dict, backend: str) -> str | None:
    if backend == "numpyro":
        from numpyro.distributions import Unit

        if site["type"] == "deterministic":
            return "deterministic"
        if site["type"] != "sample":
            return None
        if site["is_observed"]:
            return "factor" if _is_factor(site["fn"], Unit) else "observed"
        return "latent"
    from pyro.distributions import Unit

    if site["type"] != "sample" or type(site["fn"]).__name__ == "_Subsample":
        return None
    if site["infer"].get("_deterministic"):
        return "deterministic"
    if site["is_observed"]:
        return "factor" if _is_factor(site["fn"], Unit) else "observed"
    return "latent"


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _pyro_init_to_uniform(site, radius: float = 2.0):
    """Pyro's ``init_to_uniform`` without drawing from the distribution, which an improper
    prior (``ImproperUniform``) cannot do: uniform in (-radius, radius) on the real line,
    mapped to the site's support."""
    import torch
    from torch.distributions import biject_to

    fn = site["fn"]
    if fn.support.is_discrete:
        return fn.sample().detach()
    t = biject_to(fn.support)
    shape = t.inverse_shape(fn.shape())
    value = t(torch.rand(shape, dtype=torch.get_default_dtype()) * (2 * radius) - radius)
    value = value.detach()
    value._pyro_custom_init = False
    return value


def init_strategy(backend: str, values: Mapping[str, Any] | None = None):
    """The backend's initialization: the given ``values`` by site name (NumPy arrays), the
    other continuous latents uniform in [-2, 2] on the unconstrained scale. Works for
    improper priors, which cannot be sampled."""
    values = dict(values or {})
    if backend == "numpyro":
        import jax.numpy as jnp
        from numpyro.infer import init_to_uniform, init_to_value

        if not values:
            return init_to_uniform
        return init_to_value(values={k: jnp.asarray(v) for k, v in values.items()})
    import torch
    from pyro.infer.autoguide.initialization import init_to_value

    dtype = torch.get_default_dtype()
    tensors = {
        k: torch.as_tensor(np.asarray(v), dtype=dtype if np.asarray(v).dtype.kind == "f" else None)
        for k, v in values.items()
    }
    return init_to_value(values=tensors, fallback=_pyro_init_to_uniform)


class _LastSite:
    """Remembers the name of the last sample site a model reached."""

    name: str | None = None


def _site_recorder(backend: str, last: _LastSite):
    if backend == "numpyro":
        from numpyro.primitives import Messenger

        class Record(Messenger):
            def process_message(self, msg):
                if msg["type"] in ("sample", "deterministic"):
                    last.name = msg["name"]

        return Record()
    from pyro.poutine.messenger import Messenger

    class RecordPyro(Messenger):
        def _process_message(self, msg):
            if msg["type"] == "sample":
                last.name = msg["name"]

    return RecordPyro()


def model_sites(
    model: Callable,
    args: tuple,
    kwargs: Mapping[str, Any],
    backend: str,
    seed: int = 0,
    init_values: Mapping[str, Any] | None = None,
) -> tuple[dict[str, SiteInfo], dict[str, np.ndarray]]:
    """Trace ``model(*args, **kwargs)`` once, at the sampler's kind of initial values.

    Latents take ``init_values`` where given, else a uniform draw on the unconstrained scale
    (never a draw from the prior, which an improper prior cannot give).

    Returns:
        ``(sites, observed)``: every sample/deterministic site in execution order, and the
        values of the observed sites (the data).

    Raises:
        ModelError: the model failed while being traced; the message names the model and the
            last site it reached.
    """
    from .backend import use_backend

    strategy = init_strategy(backend, init_values)
    last = _LastSite()
    try:
        with use_backend(backend):
            if backend == "numpyro":
                import jax
                from numpyro import handlers

                tr = handlers.trace(
                    handlers.substitute(
                        handlers.seed(
                            _site_recorder(backend, last)(model), jax.random.PRNGKey(seed)
                        ),
                        substitute_fn=strategy,
                    )
                ).get_trace(*args, **kwargs)
            else:
                import pyro.poutine as poutine
                import torch
                from pyro.infer.autoguide.initialization import InitMessenger

                with torch.random.fork_rng(), torch.no_grad():
                    torch.manual_seed(seed)
                    with (
                        poutine.trace() as tracer,
                        InitMessenger(strategy),
                        _site_recorder(backend, last),
                    ):
                        model(*args, **kwargs)
                    tr = tracer.trace.nodes
    except PpdgmError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the user's program is reported
        name = getattr(model, "__qualname__", None) or type(model).__name__
        where = f"at or after site {last.name!r}" if last.name else "before its first site"
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(
            f"the model {name} failed {where} when traced on the {backend} backend: "
            f"{type(e).__name__}: {first}"
        ) from e
    sites, observed = {}, {}
    for name, site in tr.items():
        kind = _classify(site, backend)
        if kind is None:
            continue
        value = _to_numpy(site["value"])
        if kind == "deterministic":
            event_dim = 0
        else:
            event_dim = len(site["fn"].event_shape)
        if kind == "factor":
            shape = tuple(np.shape(_to_numpy(site["fn"].log_prob(site["value"]))))
            event_dim = 0
        else:
            shape = value.shape
        frames = site.get("cond_indep_stack", ())
        dims = _dims(name, shape, event_dim, frames)
        nesting = max((-f.dim for f in frames if f.dim is not None), default=0)
        sites[name] = SiteInfo(name, kind, tuple(shape), event_dim, dims, nesting)
        if kind == "observed":
            observed[name] = value
    if not any(s.kind == "latent" for s in sites.values()):
        raise ConfigError(
            "the model has no latent sample sites to infer (every pyro.sample is observed)"
        )
    return sites, observed


def _numpyro_pointwise(model, draws, args, kwargs, sites, seed, predict):
    import jax
    import jax.numpy as jnp
    from numpyro import handlers
    from numpyro.distributions import Unit
    from numpyro.primitives import Messenger

    class Unobserve(Messenger):
        def process_message(self, msg):
            if msg["type"] == "sample" and msg["is_observed"] and not _is_factor(msg["fn"], Unit):
                msg["value"] = None
                msg["is_observed"] = False

    det = [n for n, s in sites.items() if s.kind == "deterministic"]
    lik = [n for n, s in sites.items() if s.kind in ("observed", "factor")]
    obs = list(predict)

    def one(key, draw):
        k1, k2 = jax.random.split(key)
        tr = handlers.trace(handlers.seed(handlers.substitute(model, data=draw), k1)).get_trace(
            *args, **kwargs
        )
        ptr = (
            handlers.trace(
                handlers.seed(handlers.substitute(Unobserve(model), data=draw), k2)
            ).get_trace(*args, **kwargs)
            if obs
            else {}
        )
        return (
            {n: tr[n]["value"] for n in det},
            {n: tr[n]["fn"].log_prob(tr[n]["value"]) for n in lik},
            {n: ptr[n]["value"] for n in obs},
        )

    # vectorized over draws, op by op: a jit would compile the model anew for every call
    # (0.5 s for a small model), where the vectorized ops take milliseconds
    fn = jax.vmap(one)
    num = len(next(iter(draws.values())))
    keys = jax.random.split(jax.random.PRNGKey(seed), num)
    parts = []
    for start in range(0, num, _CHUNK):
        chunk = {k: jnp.asarray(v[start : start + _CHUNK]) for k, v in draws.items()}
        parts.append(jax.tree.map(np.asarray, fn(keys[start : start + _CHUNK], chunk)))
    return tuple(
        {k: np.concatenate([p[i][k] for p in parts]) for k in parts[0][i]} for i in range(3)
    )


def _pyro_pointwise(model, draws, args, kwargs, sites, seed, predict):
    import pyro
    import pyro.poutine as poutine
    import torch
    from pyro.distributions import Unit
    from pyro.poutine.messenger import Messenger

    class SetLatents(Messenger):
        def __init__(self, values):
            super().__init__()
            self.values = values

        def _pyro_sample(self, msg):
            if not msg["is_observed"] and msg["name"] in self.values:
                msg["value"] = self.values[msg["name"]]
                msg["done"] = True

    class Unobserve(Messenger):
        def _pyro_sample(self, msg):
            if (
                msg["is_observed"]
                and not msg["infer"].get("_deterministic")
                and not _is_factor(msg["fn"], Unit)
            ):
                # drawn here, after the plates have broadcast the distribution, with its
                # out-of-place sample(): rsample's in-place noise cannot differ across the
                # draws that vmap batches
                msg["is_observed"] = False
                msg["value"] = msg["fn"].sample()
                msg["done"] = True

    det = [n for n, s in sites.items() if s.kind == "deterministic"]
    lik = [n for n, s in sites.items() if s.kind in ("observed", "factor")]
    obs = list(predict)
    num = len(next(iter(draws.values())))
    dtype = torch.get_default_dtype()
    tensors = {
        k: torch.as_tensor(v, dtype=dtype if v.dtype.kind == "f" else None)
        for k, v in draws.items()
    }

    def evaluate(values, predict_sites):
        with poutine.trace() as tr, SetLatents(values):
            model(*args, **kwargs)
        nodes = tr.trace.nodes
        pnodes = {}
        if predict_sites:  # a fresh draw of the predicted sites
            with poutine.trace() as ptr, SetLatents(values), Unobserve():
                model(*args, **kwargs)
            pnodes = ptr.trace.nodes
        return (
            {n: nodes[n]["value"] for n in det},
            {n: nodes[n]["fn"].log_prob(nodes[n]["value"]) for n in lik},
            {n: pnodes[n]["value"] for n in predict_sites},
        )

    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        try:
            # every draw at once, in chunks, where the program batches
            batched = torch.func.vmap(lambda v: evaluate(v, obs), randomness="different")
            chunks = []
            with pyro.validation_enabled(False), warnings.catch_warnings():
                # torch.binomial under vmap resizes its output (correctly) with a warning
                warnings.filterwarnings("ignore", message="An output with one or more elements")
                for start in range(0, num, _CHUNK):
                    chunks.append(
                        batched({k: v[start : start + _CHUNK] for k, v in tensors.items()})
                    )
            return tuple(
                {k: np.concatenate([_to_numpy(c[i][k]) for c in chunks]) for k in names}
                for i, names in enumerate((det, lik, obs))
            )
        except Exception:  # noqa: BLE001 - a program that does not batch runs draw by draw
            pass
        out = ({n: [] for n in det}, {n: [] for n in lik}, {n: [] for n in obs})
        for i in range(num):
            parts = evaluate({k: v[i] for k, v in tensors.items()}, obs)
            for d, part in zip(out, parts, strict=True):
                for k, v in part.items():
                    d[k].append(_to_numpy(v))
    return tuple({k: np.stack(v) for k, v in d.items()} for d in out)


def pointwise(
    model: Callable,
    draws: Mapping[str, np.ndarray],
    args: tuple,
    kwargs: Mapping[str, Any],
    sites: Mapping[str, SiteInfo],
    backend: str,
    seed: int = 0,
    predict: list[str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Evaluate the model at each posterior draw.

    Args:
        draws: latent site name -> array of shape ``(S, *site shape)``.

    Returns:
        ``(deterministic, log_likelihood, posterior_predictive)``, each a dict of arrays
        with leading axis ``S``: the deterministic sites' values, the pointwise
        log-density of each observed (and factor) site, and a fresh draw of each observed
        site given the latents (or of the sites named in ``predict``; none when it is
        empty, and then no predictive run is made).
    """
    if predict is None:
        predict = [n for n, s in sites.items() if s.kind == "observed"]
    from .backend import use_backend

    with use_backend(backend):
        if backend == "numpyro":
            return _numpyro_pointwise(model, dict(draws), args, kwargs, sites, seed, predict)
        return _pyro_pointwise(model, dict(draws), args, kwargs, sites, seed, predict)


def _dataset_dims(arrays: Mapping[str, np.ndarray], sites, lead: list[str], log_lik=False):
    dims = {}
    for name, value in arrays.items():
        site = sites.get(name)
        inner = value.ndim - len(lead)
        if site is None:
            names = [f"{name}_dim_{i}" for i in range(inner)]
        else:
            names = site.batch_dims if log_lik else site.dims
            if len(names) != inner:
                names = [f"{name}_dim_{i}" for i in range(inner)]
        dims[name] = names
    return dims


def build_inference_data(
    posterior: Mapping[str, np.ndarray],
    sites: Mapping[str, SiteInfo],
    *,
    sample_stats: Mapping[str, np.ndarray] | None = None,
    log_likelihood: Mapping[str, np.ndarray] | None = None,
    posterior_predictive: Mapping[str, np.ndarray] | None = None,
    observed_data: Mapping[str, np.ndarray] | None = None,
    constant_data: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
):
    """Assemble an ``arviz.InferenceData`` from arrays shaped ``(chain, draw, ...)``.

    Plate names become dimension names (``school`` rather than ``theta_dim_0``) wherever a
    site sits in a plate.
    """
    import arviz as az

    lead = ["chain", "draw"]

    def group(arrays, log_lik=False, leading=lead):
        if not arrays:
            return None
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        return az.dict_to_dataset(
            arrays,
            dims=_dataset_dims(arrays, sites, leading, log_lik),
            attrs=dict(attrs or {}),
            library=None,
        )

    groups = {
        "posterior": group(posterior),
        "sample_stats": group(sample_stats),
        "log_likelihood": group(log_likelihood, log_lik=True),
        "posterior_predictive": group(posterior_predictive),
    }
    if observed_data:
        groups["observed_data"] = az.dict_to_dataset(
            {k: np.asarray(v) for k, v in observed_data.items()},
            dims=_dataset_dims(observed_data, sites, []),
            default_dims=[],
            library=None,
        )
    if constant_data:
        groups["constant_data"] = az.dict_to_dataset(
            {k: np.asarray(v) for k, v in constant_data.items()},
            default_dims=[],
            library=None,
        )
    return az.InferenceData(**{k: v for k, v in groups.items() if v is not None})


def constant_arguments(model: Callable, args: tuple, kwargs: Mapping[str, Any], observed) -> dict:
    """The model's array arguments that are not observations, by parameter name."""
    try:
        bound = inspect.signature(model).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        bound = dict(kwargs)
    out = {}
    for name, value in bound.items():
        if name in observed or value is None:
            continue
        arr = _to_numpy(value) if hasattr(value, "shape") else None
        if arr is not None and arr.ndim > 0 and arr.dtype.kind in "biuf":
            out[name] = arr
    return out


@contextlib.contextmanager
def quiet_arviz():
    """Silence ArviZ's log and warnings for the block: its shape warning for a single chain
    (no R-hat, reported as NaN) and its notices are not about the user's results."""
    import logging

    import arviz as az

    log = getattr(az, "_log", None) or logging.getLogger("arviz")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def check_diagnostics(
    idata, *, rhat_threshold: float = 1.01, min_ess_per_chain: float = 100.0
) -> list[str]:
    """Warn (:class:`ppdgm.errors.ConvergenceWarning`) about R-hat, bulk ESS and divergences.

    Returns:
        the warning messages, also issued with :func:`warnings.warn`.
    """
    import arviz as az

    post = idata.posterior
    num_chains = post.sizes["chain"]
    messages = []
    with quiet_arviz():
        ess = az.ess(post, method="bulk")
        rhat = az.rhat(post) if num_chains > 1 else None
    if rhat is not None:
        # constant variables (NaN diagnostics) are not flagged
        worst = {k: _finite_extreme(v.values, max) for k, v in rhat.data_vars.items()}
        bad = {k: v for k, v in worst.items() if v is not None and v > rhat_threshold}
        if bad:
            listed = ", ".join(f"{k} ({v:.3f})" for k, v in sorted(bad.items()))
            messages.append(
                f"R-hat above {rhat_threshold} for {listed}: the chains disagree; run longer "
                "warmup or more samples, or reparameterize"
            )
    floor = min_ess_per_chain * num_chains
    worst_ess = {k: _finite_extreme(v.values, min) for k, v in ess.data_vars.items()}
    low = {k: v for k, v in worst_ess.items() if v is not None and v < floor}
    if low:
        listed = ", ".join(f"{k} ({v:.0f})" for k, v in sorted(low.items()))
        messages.append(
            f"bulk ESS below {floor:.0f} ({min_ess_per_chain:.0f} per chain) for {listed}: "
            "estimates are noisy; draw more samples"
        )
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        n_div = int(idata.sample_stats["diverging"].values.sum())
        if n_div:
            total = idata.sample_stats["diverging"].size
            messages.append(
                f"{n_div} of {total} transitions diverged after warmup: the posterior has "
                "regions the sampler cannot explore (e.g. a funnel); reparameterize (non-centered "
                "parameterization) or raise target_accept_prob"
            )
    for message in messages:
        warnings.warn(message, ConvergenceWarning, stacklevel=caller_stacklevel())
    return messages


def _finite_extreme(values: np.ndarray, pick) -> float | None:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(pick(finite)) if finite.size else None


def posterior_predictive(
    model: Callable, idata, *args, backend: str = "numpyro", seed: int = 0, **kwargs
):
    """Draw the observed sites of ``model(*args, **kwargs)`` at every posterior draw in
    ``idata`` and return ``idata`` with a (new) ``posterior_predictive`` group.

    Pass new inputs (for example test covariates, with the observations left ``None``) to
    predict for them.
    """
    from .backend import as_backend_args

    bargs, bkwargs = as_backend_args(args, kwargs, backend)
    sites, _ = model_sites(model, bargs, bkwargs, backend, seed)
    post = idata.posterior
    chains, num = post.sizes["chain"], post.sizes["draw"]
    latent = [n for n, s in sites.items() if s.kind == "latent" and n in post]
    if not latent:
        raise ConfigError("the posterior holds none of the model's latent sites")
    # Sites the posterior does not hold (observations left None) are what is predicted.
    predict = [
        n
        for n, s in sites.items()
        if s.kind == "observed" or (s.kind == "latent" and n not in post)
    ]
    flat = {n: post[n].values.reshape((chains * num,) + post[n].shape[2:]) for n in latent}
    _, _, ppc = pointwise(model, flat, bargs, bkwargs, sites, backend, seed=seed, predict=predict)
    ppc = {k: v.reshape((chains, num) + v.shape[1:]) for k, v in ppc.items()}
    new = build_inference_data(ppc, sites)
    if "posterior_predictive" in idata.groups():
        del idata.posterior_predictive
    idata.add_groups({"posterior_predictive": new.posterior})
    return idata
