import os
import signal

import pyro
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# JAX's persistent compilation cache for the suite: programs compiled by one test (or one
# worker) are reused by the others and by the next run; kept out of the user's own cache
os.environ.setdefault(
    "PPDGM_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".cache", "tests")
)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per worker process: the workers already use the cores
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """The bundled digits (0..16 pixel values), loaded once per worker."""
    from ppdgm.data import load_data

    return load_data("digits")


@pytest.fixture
def observed_rows():
    """A check of a model's program: traced on a batch ``x`` of N rows, its site ``"x"`` is
    observed in one plate ``"data"`` of size N, with batch shape (N,) (and the given event
    shape); returns the trace."""

    def check(program, x, event_shape=None):
        trace = pyro.poutine.trace(program).get_trace(x)
        site = trace.nodes["x"]
        n = x.shape[0]
        assert site["is_observed"] and [f.name for f in site["cond_indep_stack"]] == ["data"]
        assert site["cond_indep_stack"][0].size == n and site["fn"].batch_shape == (n,)
        if event_shape is not None:
            assert site["fn"].event_shape == tuple(event_shape)
        return trace

    return check


@pytest.fixture
def float64():
    """The test runs with float64 as torch's default dtype (exact comparisons)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts seeded, with an empty Pyro parameter store."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture(autouse=True)
def _signal_handlers_untouched(request):
    """A test must leave the process's SIGINT/SIGTERM handlers as it found them (a later
    test of the trainer's interrupt handling depends on them)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    after = {s: signal.getsignal(s) for s in before}
    for s, handler in before.items():
        signal.signal(s, handler)
    changed = [s.name for s in before if after[s] is not before[s]]
    assert not changed, f"{request.node.nodeid} left {changed} handlers changed: {after}"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
