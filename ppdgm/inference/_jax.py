"""JAX settings ppdgm applies for its NumPyro backend: the persistent compilation cache and a
progress display that costs (almost) nothing.

The cache keeps compiled samplers on disk, so running the same model again in a new process
(``ppdgm infer`` twice, a script run again) skips JAX's compilation. It lives under
``$PPDGM_CACHE_DIR/jax`` (default: the user cache directory, ``~/.cache/ppdgm/jax`` on Linux).
``PPDGM_JAX_CACHE=0`` turns it off, as does :func:`set_compilation_cache(None)
<set_compilation_cache>`; a cache directory the user configured in JAX is left alone.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from pathlib import Path

from .._utils import cache_dir

__all__ = [
    "cache_dir",
    "enable_compilation_cache",
    "set_compilation_cache",
    "progress_kernel",
    "provide_host_devices",
    "jax_started",
]

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def jax_started() -> bool:
    """Whether JAX has set up its devices (after which their number is fixed)."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except (ImportError, AttributeError):  # a JAX without that internal: assume started
        return True


def provide_host_devices(count: int | None = None) -> bool:
    """Give JAX one CPU device per chain (``count``, default max(4, number of cores)), so
    that NumPyro runs chains in parallel, as NumPyro's ``set_host_device_count`` does; only
    possible before JAX sets up its devices, and left alone when ``XLA_FLAGS`` already
    says, or ``PPDGM_HOST_DEVICES=0``. Returns whether the setting was made."""
    flags = os.environ.get("XLA_FLAGS", "")
    wanted = os.environ.get("PPDGM_HOST_DEVICES", "").strip()
    if wanted == "0" or _DEVICE_FLAG in flags or jax_started():
        return False
    if count is None:
        count = int(wanted) if wanted.isdigit() else max(4, os.cpu_count() or 1)
    os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={int(count)}".strip()
    return True


_state = {"configured": False}


def set_compilation_cache(path: str | os.PathLike | None) -> None:
    """Keep JAX's compiled programs in ``path`` (every compilation, however short), or turn
    the persistent cache off with ``None``."""
    import jax

    _state["configured"] = True
    if path is None:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_enable_compilation_cache", False)
        return
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # an unwritable cache is no reason to fail a run: compile as usual
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # the samplers of small models compile in well under JAX's default threshold of 1 s
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def enable_compilation_cache() -> None:
    """Turn on the persistent cache once per process, unless the user configured one or set
    ``PPDGM_JAX_CACHE=0``."""
    if _state["configured"]:
        return
    _state["configured"] = True
    import jax

    if os.environ.get("PPDGM_JAX_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return
    if jax.config.jax_compilation_cache_dir:  # the user's own choice
        return
    set_compilation_cache(cache_dir() / "jax")


@functools.cache
def _progress_kernel_class():
    from numpyro.infer.mcmc import MCMCKernel

    class ProgressKernel(MCMCKernel):
        """A NumPyro kernel that reports progress through a host callback every ``rate``
        steps, so that the sampler stays compiled whole (NumPyro's own single-chain bar runs
        every step from Python). The draws are those of the wrapped kernel, bit for bit."""

        def __init__(self, inner, total: int, rate: int, desc: str):
            self.inner = inner
            self.total, self.rate, self.desc = int(total), max(1, int(rate)), desc
            self.bar = None
            self.lock = threading.Lock()

        def open(self):
            """Show a new bar (call before each run)."""
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="it", dynamic_ncols=True)

        @property
        def model(self):
            return getattr(self.inner, "model", None)

        @property
        def _sample_fn(self):
            return getattr(self.inner, "_sample_fn", None)

        @property
        def sample_field(self):
            return self.inner.sample_field

        @property
        def default_fields(self):
            return self.inner.default_fields

        @property
        def is_ensemble_kernel(self):
            return self.inner.is_ensemble_kernel

        def get_diagnostics_str(self, state):
            return self.inner.get_diagnostics_str(state)

        def postprocess_fn(self, model_args, model_kwargs):
            return self.inner.postprocess_fn(model_args, model_kwargs)

        def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
            return self.inner.init(rng_key, num_warmup, init_params, model_args, model_kwargs)

        def _tick(self):
            with self.lock:
                if self.bar is not None:
                    self.bar.update(min(self.rate, self.bar.total - self.bar.n))

        def sample(self, state, model_args, model_kwargs):
            import jax

            new = self.inner.sample(state, model_args, model_kwargs)
            jax.lax.cond(
                new.i % self.rate == 0, lambda: jax.debug.callback(self._tick), lambda: None
            )
            return new

        def close(self, completed: bool = True):
            """Close the bar (full when the run ``completed``)."""
            with self.lock:
                if self.bar is not None:
                    if completed:
                        self.bar.update(self.bar.total - self.bar.n)
                    self.bar.close()
                    self.bar = None

    return ProgressKernel


def progress_kernel(inner, total: int, rate: int, desc: str = "nuts"):
    """Wrap the NumPyro kernel ``inner`` with a progress bar of ``total`` steps updated every
    ``rate`` steps (see ``ProgressKernel``); call ``open()`` before a run and ``close()``
    after it."""
    return _progress_kernel_class()(inner, total, rate, desc)
