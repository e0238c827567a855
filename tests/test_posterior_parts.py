"""The parts that turn a model and its draws into InferenceData, called directly (no sampler):
site discovery, pointwise evaluation, the InferenceData layout, diagnostics and prediction."""

import re
import warnings

import arviz as az
import numpy as np
import pytest
from pyroapi import distributions as dist
from pyroapi import pyro
from scipy import stats

from ppdgm.errors import ConfigError, ConvergenceWarning, ModelError
from ppdgm.inference.backend import as_backend_args
from ppdgm.inference.posterior import (
    SiteInfo,
    build_inference_data,
    check_diagnostics,
    constant_arguments,
    init_strategy,
    model_sites,
    pointwise,
    posterior_predictive,
)

BACKENDS = ["numpyro", "pyro"]


def grouped(x, y=None, *, num_groups=5, offset=0.0):
    """A latent in a plate, a multivariate latent with an event dim, a deterministic, a factor
    and an observation in two nested plates. (The tests pass num_groups=3 and offset=0.5, so a
    dropped keyword argument shows in the shapes and in the likelihood.)"""
    scale = pyro.sample("scale", dist.HalfNormal(2.0))
    with pyro.plate("groups", num_groups):
        loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    shift = pyro.deterministic("shift", loc * 2.0)
    pyro.factor("penalty", -0.5 * (w**2).sum())
    with pyro.plate("cols", x.shape[1], dim=-1):
        with pyro.plate("rows", x.shape[0], dim=-2):
            pyro.sample("y", dist.Normal(x * w.sum() + shift[0] + offset, scale), obs=y)


def _args(backend, x, y=None):
    return as_backend_args((x, y), {"num_groups": 3, "offset": 0.5}, backend)


X = np.arange(8, dtype=float).reshape(4, 2) / 4
Y = X * 0.5 + 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_sites_kinds_shapes_dims_and_plates(backend):
    args, kwargs = _args(backend, X, Y)
    sites, observed = model_sites(grouped, args, kwargs, backend)
    assert list(sites) == ["scale", "loc", "w", "shift", "penalty", "y"]
    expected = {
        "scale": SiteInfo("scale", "latent", (), 0, [], 0),
        "loc": SiteInfo("loc", "latent", (3,), 0, ["groups"], 1),
        "w": SiteInfo("w", "latent", (2,), 1, ["w_dim_0"], 0),
        "shift": SiteInfo("shift", "deterministic", (3,), 0, ["shift_dim_0"], 0),
        "penalty": SiteInfo("penalty", "factor", (), 0, [], 0),
        "y": SiteInfo("y", "observed", (4, 2), 0, ["rows", "cols"], 2),
    }
    assert sites == expected
    assert sites["w"].batch_dims == [] and sites["y"].batch_dims == ["rows", "cols"]
    assert list(observed) == ["y"]
    np.testing.assert_allclose(observed["y"], Y, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_sites_trace_at_initial_values_not_prior_draws(backend):
    args, kwargs = _args(backend, X, Y)

    seen = {}

    def recording(x, y=None, *, num_groups=3, offset=0.0):
        s = pyro.sample("scale", dist.HalfNormal(2.0))
        seen["scale"] = float(s)
        with pyro.plate("groups", num_groups):
            seen["loc"] = np.asarray(pyro.sample("loc", dist.Normal(0.0, 1.0)))

    model_sites(recording, args, kwargs, backend, init_values={"loc": np.array([5.0, 6.0, 7.0])})
    np.testing.assert_allclose(seen["loc"], [5.0, 6.0, 7.0])
    # uniform in [-2, 2] on the unconstrained (log) scale
    assert np.exp(-2) <= seen["scale"] <= np.exp(2)

    def improper(x, y=None, *, num_groups=3, offset=0.0):
        # a prior that cannot be sampled: tracing it must not try to
        seen["s"] = float(pyro.sample("s", dist.ImproperUniform(dist.constraints.positive, (), ())))

    sites, _ = model_sites(improper, args, kwargs, backend, seed=4)
    assert sites["s"].kind == "latent" and np.exp(-2) <= seen["s"] <= np.exp(2)
    first = seen["s"]
    model_sites(improper, args, kwargs, backend, seed=5)
    assert seen["s"] != first  # the seed picks the initial values


@pytest.mark.parametrize("backend", BACKENDS)
def test_initial_values_are_uniform_in_minus_two_two_on_the_unconstrained_scale(backend):
    seen = {}

    def wide(x):
        with pyro.plate("many", 4000):
            seen["u"] = np.asarray(pyro.sample("u", dist.Normal(0.0, 1.0)))
            seen["p"] = np.asarray(pyro.sample("p", dist.HalfNormal(1.0)))

    args, kwargs = as_backend_args((np.zeros(2),), {}, backend)
    model_sites(wide, args, kwargs, backend)
    for v in (seen["u"], np.log(seen["p"])):
        assert v.min() >= -2 - 1e-5 and v.max() <= 2 + 1e-5
        assert v.min() < -1.95 and v.max() > 1.95
        assert abs(v.mean()) < 0.1 and abs(v.std() - 4 / np.sqrt(12)) < 0.05


def test_init_strategy_gives_values_where_given():
    from numpyro.infer import init_to_uniform

    assert init_strategy("numpyro") is init_to_uniform
    assert init_strategy("numpyro", {}) is init_to_uniform


def test_pyro_init_strategy_keeps_given_values_and_their_kinds():
    import pyro as real_pyro
    import pyro.distributions as pdist
    import torch
    from pyro.infer.autoguide.initialization import InitMessenger

    def model():
        real_pyro.sample("loc", pdist.Normal(torch.zeros(3), 1.0).to_event(1))
        real_pyro.sample("k", pdist.Categorical(logits=torch.zeros(4)))
        real_pyro.sample("free", pdist.Normal(0.0, 1.0))

    given = {"loc": np.array([1.0, 2.0, 3.0]), "k": np.array(2)}
    strategy = init_strategy("pyro", given)
    with real_pyro.poutine.trace() as tr, InitMessenger(strategy):
        model()
    nodes = tr.trace.nodes
    assert nodes["loc"]["value"].dtype == torch.get_default_dtype()  # not NumPy's float64
    torch.testing.assert_close(nodes["loc"]["value"], torch.tensor([1.0, 2.0, 3.0]))
    assert nodes["k"]["value"].dtype == torch.int64 and int(nodes["k"]["value"]) == 2
    assert -2.0 <= float(nodes["free"]["value"]) <= 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_errors_name_the_model_the_site_and_the_backend(backend):
    def fails_early(x):
        raise KeyError("k")

    def fails_late(x):
        pyro.sample("a", dist.Normal(0.0, 1.0))
        raise ValueError("bad thing\nsecond line")

    args, kwargs = as_backend_args((X,), {}, backend)
    with pytest.raises(
        ModelError,
        match=rf"^the model .*fails_late failed at or after site 'a' when traced on the "
        rf"{backend} backend: ValueError: bad thing$",
    ):
        model_sites(fails_late, args, kwargs, backend)
    with pytest.raises(ModelError, match=r"fails_early failed before its first site when.*KeyErr"):
        model_sites(fails_early, args, kwargs, backend)

    def fails_after_deterministic(x):
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.deterministic("twice", a * 2)
        raise ValueError()  # no message

    with pytest.raises(ModelError, match=r"after site 'twice' .* ValueError: $"):
        model_sites(fails_after_deterministic, args, kwargs, backend)

    class Failing:  # a callable object: no __qualname__
        def __call__(self, x):
            raise RuntimeError("boom")

    with pytest.raises(ModelError, match=r"^the model Failing failed before .*RuntimeError: boom$"):
        model_sites(Failing(), args, kwargs, backend)
    with pytest.raises(ConfigError, match=r"^the model has no latent sample sites to infer"):
        model_sites(lambda x: pyro.sample("x", dist.Normal(0.0, 1.0), obs=x), args, kwargs, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pointwise_log_likelihood_deterministic_and_predictive(backend):
    args, kwargs = _args(backend, X, Y)
    sites, _ = model_sites(grouped, args, kwargs, backend)
    rng = np.random.default_rng(0)
    s = 5
    draws = {
        "scale": rng.uniform(0.5, 2.0, s),
        "loc": rng.normal(size=(s, 3)),
        "w": rng.normal(size=(s, 2)),
    }
    det, ll, ppc = pointwise(grouped, draws, args, kwargs, sites, backend, seed=1)
    np.testing.assert_allclose(det["shift"], 2 * draws["loc"], rtol=1e-6)
    mean = X[None] * draws["w"].sum(1)[:, None, None] + 2 * draws["loc"][:, :1, None] + 0.5
    expected = stats.norm(mean, draws["scale"][:, None, None]).logpdf(Y[None])
    np.testing.assert_allclose(ll["y"], expected, rtol=1e-5)
    np.testing.assert_allclose(ll["penalty"], -0.5 * (draws["w"] ** 2).sum(1), rtol=1e-5)
    assert set(ppc) == {"y"} and ppc["y"].shape == (s, 4, 2)
    assert not np.allclose(ppc["y"], Y)  # a fresh draw, not the data
    # the predictive draw is centred on the model's mean with the model's scale
    many = {k: np.repeat(v[:1], 2000, axis=0) for k, v in draws.items()}
    _, _, big = pointwise(grouped, many, args, kwargs, sites, backend, seed=2)
    z = (big["y"] - mean[0]) / draws["scale"][0]
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    none = pointwise(grouped, draws, args, kwargs, sites, backend, predict=[])[2]
    assert none == {}
    again = pointwise(grouped, draws, args, kwargs, sites, backend, seed=1)
    np.testing.assert_array_equal(again[2]["y"], ppc["y"])  # seeded


def _zeros(backend, n):
    if backend == "numpyro":
        import jax.numpy as jnp

        return jnp.zeros(n)
    import torch

    return torch.zeros(n)


def _as(backend, a):
    if backend == "numpyro":
        import jax.numpy as jnp

        return jnp.asarray(a, dtype=jnp.float32)
    import torch

    return torch.as_tensor(a, dtype=torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_site_dims_name_plates_only_where_they_index_the_batch(backend):
    def model(x):
        with pyro.plate("one", 1, dim=-2):
            with pyro.plate("rows", 4, dim=-1):
                # an event dim inside the plate: the plate names the batch axis only
                pyro.sample("mv", dist.Normal(0.0, 1.0).expand([4, 3]).to_event(1))
                pyro.sample("s", dist.Normal(0.0, 1.0))
                pyro.factor("f", _zeros(backend, 4))  # a factor per row: shape (4,)
        pyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=x)

    if backend == "pyro":  # a sequential plate (no dim) outside a vectorized one
        inner = model

        def model(x):
            inner(x)
            for i in pyro.plate("steps", 2):
                with pyro.plate(f"cells_{i}", 3, dim=-1):
                    pyro.sample(f"q_{i}", dist.Normal(0.0, 1.0))

    args, kwargs = as_backend_args((np.zeros(2),), {}, backend)
    sites, _ = model_sites(model, args, kwargs, backend)
    if backend == "pyro":
        assert sites["q_1"].dims == ["cells_1"]
    # a plate of size 1 names nothing
    assert sites["mv"].shape == (1, 4, 3) and sites["mv"].dims == ["mv_dim_0", "rows", "mv_dim_2"]
    assert sites["s"].dims == ["s_dim_0", "rows"] and sites["s"].plate_nesting == 2
    assert sites["x"].dims == ["x_dim_0"]
    assert sites["f"].kind == "factor" and sites["f"].shape[-1] == 4


def test_inference_data_layout_uses_plate_names():
    sites = {
        "loc": SiteInfo("loc", "latent", (3,), 0, ["groups"], 1),
        "w": SiteInfo("w", "latent", (2,), 1, ["w_dim_0"], 0),
        "y": SiteInfo("y", "observed", (4, 2), 0, ["rows", "cols"], 2),
        "v": SiteInfo("v", "observed", (4, 2), 1, ["rows", "v_dim_1"], 1),
    }
    c, d = 2, 3
    idata = build_inference_data(
        {"loc": np.zeros((c, d, 3)), "w": np.zeros((c, d, 2)), "extra": np.zeros((c, d, 5))},
        sites,
        sample_stats={"diverging": np.zeros((c, d), bool)},
        log_likelihood={"y": np.zeros((c, d, 4, 2)), "v": np.zeros((c, d, 4))},
        posterior_predictive={
            "y": np.zeros((c, d, 4, 2)),
            "w": np.zeros((c, d, 7)),
            "v": np.zeros((c, d, 4, 2)),
        },
        observed_data={"y": np.ones((4, 2))},
        constant_data={"x": np.arange(4.0)},
        attrs={"backend": "numpyro"},
    )
    assert set(idata.groups()) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "posterior_predictive",
        "observed_data",
        "constant_data",
    }
    post = idata.posterior
    assert post["loc"].dims == ("chain", "draw", "groups")
    assert post["w"].dims == ("chain", "draw", "w_dim_0")
    assert post["extra"].dims == ("chain", "draw", "extra_dim_0")
    assert post.attrs["backend"] == "numpyro"
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "rows", "cols")
    assert idata.log_likelihood["v"].dims == ("chain", "draw", "rows")  # event dim dropped
    np.testing.assert_array_equal(idata.constant_data["x"].values, np.arange(4.0))
    np.testing.assert_array_equal(idata.observed_data["y"].values, np.ones((4, 2)))
    # a shape that does not fit the site's dims falls back to numbered names
    assert idata.posterior_predictive["w"].dims == ("chain", "draw", "w_dim_0")
    assert idata.posterior_predictive["w"].shape == (c, d, 7)
    # outside the log-likelihood a site keeps its event dims
    assert idata.posterior_predictive["v"].dims == ("chain", "draw", "rows", "v_dim_1")
    assert idata.observed_data["y"].dims == ("rows", "cols")
    assert idata.constant_data["x"].dims == ("x_dim_0",)
    assert idata.sample_stats["diverging"].dims == ("chain", "draw")
    bare = build_inference_data({"loc": np.zeros((1, 2, 3))}, sites)
    assert set(bare.groups()) == {"posterior"}


def test_constant_arguments_are_the_numeric_arrays_that_are_not_observed():
    def model(x, group, y=None, label="a", scalar=3.0, mask=None):
        pass

    x = np.ones((3, 2))
    out = constant_arguments(
        model,
        (x, np.array([0, 1, 1]), np.zeros(3)),
        {"label": "b", "scalar": np.float64(2.0), "mask": np.array([True, False, True])},
        {"y"},
    )
    assert sorted(out) == ["group", "mask", "x"]
    np.testing.assert_array_equal(out["x"], x)
    assert out["group"].dtype.kind == "i"
    assert constant_arguments(model, (None, np.array(["a"])), {}, set()) == {}
    # only arrays (values with a shape) count: a list or a tuple of numbers is left out
    assert constant_arguments(model, ([1.0, 2.0], (0, 1)), {}, set()) == {}
    # a callable whose signature cannot be read falls back to its keyword arguments
    out = constant_arguments(print, (np.ones(2),), {"w": np.ones(3), "y": np.ones(3)}, {"y"})
    assert list(out) == ["w"]


def test_diagnostics_messages_name_the_variables_and_the_counts():
    rng = np.random.default_rng(0)
    apart = np.stack([rng.normal(0, 1, 400), rng.normal(3, 1, 400)])
    good = rng.normal(size=(2, 400))
    idata = az.from_dict(
        posterior={"b_apart": apart, "a_apart": apart + 1, "ok": good},
        sample_stats={"diverging": np.array([[True] * 3 + [False] * 397, [False] * 400])},
    )
    with pytest.warns(ConvergenceWarning) as caught:
        messages = check_diagnostics(idata)
    assert [str(w.message) for w in caught] == messages
    assert len(messages) == 3
    assert re.match(
        r"^R-hat above 1\.01 for a_apart \(\d\.\d{3}\), b_apart \(\d\.\d{3}\): the chains "
        r"disagree; run longer warmup or more samples, or reparameterize$",
        messages[0],
    )
    assert re.match(
        r"^bulk ESS below 200 \(100 per chain\) for a_apart \(\d+\), b_apart \(\d+\): "
        r"estimates are noisy; draw more samples$",
        messages[1],
    )
    assert messages[2] == (
        "3 of 800 transitions diverged after warmup: the posterior has regions the sampler "
        "cannot explore (e.g. a funnel); reparameterize (non-centered parameterization) or "
        "raise target_accept_prob"
    )
    # the thresholds are the caller's to set
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_diagnostics(az.from_dict(posterior={"ok": good}), rhat_threshold=1.01) == []
    with pytest.warns(ConvergenceWarning):
        msgs = check_diagnostics(az.from_dict(posterior={"ok": good}), min_ess_per_chain=1000)
    assert re.match(r"^bulk ESS below 2000 \(1000 per chain\) for ok \(\d+\): estimates", msgs[0])
    # the worst R-hat of a vector variable is the one reported, and one chain has no R-hat
    vec = np.stack([good, apart], axis=-1)
    with pytest.warns(ConvergenceWarning):
        msg = check_diagnostics(az.from_dict(posterior={"v": vec}))[0]
    worst = float(az.rhat(az.from_dict(posterior={"v": vec}))["v"].max())
    assert f"v ({worst:.3f})" in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_diagnostics(az.from_dict(posterior={"a": apart[:1]})) == []


def test_diagnostics_warnings_point_at_the_caller():
    # (its own test: a mutation tool's trampolines add frames, so mutation runs leave it out)
    rng = np.random.default_rng(0)
    apart = np.stack([rng.normal(0, 1, 400), rng.normal(3, 1, 400)])
    with pytest.warns(ConvergenceWarning) as caught:
        check_diagnostics(az.from_dict(posterior={"a": apart}))
    assert len(caught) == 2 and all(w.filename == __file__ for w in caught)


@pytest.mark.parametrize("backend", BACKENDS)
def test_posterior_predictive_from_given_draws_for_new_inputs(backend):
    def reg(x, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("obs", x.shape[0]):
            pyro.sample("y", dist.Normal(w * x, 0.01), obs=y)

    w = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    idata = az.from_dict(posterior={"w": w})
    x_new = np.array([1.0, -1.0, 10.0, 0.0])
    out = posterior_predictive(reg, idata, x_new, backend=backend, seed=0)
    pred = out.posterior_predictive["y"].values
    assert pred.shape == (2, 3, 4) and out.posterior_predictive["y"].dims[2] == "obs"
    np.testing.assert_allclose(pred, w[..., None] * x_new, atol=0.06)
    # a second call replaces the group
    out = posterior_predictive(reg, out, x_new[:2], backend=backend, seed=0)
    assert out.posterior_predictive["y"].shape == (2, 3, 2)
    with pytest.raises(ConfigError, match="^the posterior holds none of the model's latent sites$"):
        posterior_predictive(reg, az.from_dict(posterior={"v": w}), x_new, backend=backend)
    # the seed (default 0) picks the draws
    a = posterior_predictive(reg, az.from_dict(posterior={"w": w}), x_new, backend=backend)
    b = posterior_predictive(reg, az.from_dict(posterior={"w": w}), x_new, backend=backend, seed=0)
    c = posterior_predictive(reg, az.from_dict(posterior={"w": w}), x_new, backend=backend, seed=1)
    np.testing.assert_array_equal(a.posterior_predictive["y"], b.posterior_predictive["y"])
    assert not np.array_equal(a.posterior_predictive["y"], c.posterior_predictive["y"])


def test_posterior_predictive_defaults_to_numpyro_and_predicts_the_missing_latents():
    def two(x, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
        with pyro.plate("obs", x.shape[0]):
            pyro.sample("y", dist.Normal(w[0] * x + w[1] + b, 0.01), obs=y)

    w = np.random.default_rng(0).normal(size=(2, 3, 2))
    idata = az.from_dict(posterior={"w": w})  # b is not in the posterior: it is predicted
    x_new = np.array([1.0, 2.0])
    out = posterior_predictive(two, idata, x_new, seed=3)
    ppc = out.posterior_predictive
    assert set(ppc.data_vars) == {"y", "b"}
    assert ppc["b"].shape == (2, 3) and ppc["y"].shape == (2, 3, 2)
    expected = w[..., :1] * x_new + w[..., 1:] + ppc["b"].values[..., None]
    np.testing.assert_allclose(ppc["y"].values, expected, atol=0.06)
    same = posterior_predictive(
        two, az.from_dict(posterior={"w": w}), x_new, backend="numpyro", seed=3
    )
    np.testing.assert_array_equal(same.posterior_predictive["y"], ppc["y"])
    # an observed site (data given) is predicted too, afresh rather than copied
    given = posterior_predictive(
        two, az.from_dict(posterior={"w": w, "b": np.zeros((2, 3))}), x_new, np.zeros(2), seed=3
    )
    assert set(given.posterior_predictive.data_vars) == {"y"}
    pred = given.posterior_predictive["y"].values
    np.testing.assert_allclose(pred, w[..., :1] * x_new + w[..., 1:], atol=0.06)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pointwise_keeps_integer_draws_and_the_default_dtype(backend):
    locs = np.array([-5.0, 0.0, 5.0])

    def mix(y=None):
        z = pyro.sample("z", dist.Categorical(logits=_zeros(backend, 3)))
        s = pyro.sample("s", dist.HalfNormal(1.0))
        pyro.sample("y", dist.Normal(_as(backend, locs)[z], s), obs=y)

    args, kwargs = as_backend_args((np.array(0.5),), {}, backend)
    sites, _ = model_sites(mix, args, kwargs, backend)
    # integer draws index an array; float64 draws (as NumPy gives them) become float32
    draws = {"z": np.array([0, 1, 2, 1]), "s": np.array([1.0, 0.5, 2.0, 1.5])}
    assert draws["s"].dtype == np.float64
    _, ll, _ = pointwise(mix, draws, args, kwargs, sites, backend, predict=[])
    expected = stats.norm(locs[draws["z"]], draws["s"]).logpdf(0.5)
    np.testing.assert_allclose(ll["y"], expected, rtol=1e-5)
    assert ll["y"].dtype == np.float32


def test_pyro_pointwise_batches_the_draws_and_agrees_with_the_draw_by_draw_loop():
    args, kwargs = _args("pyro", X, Y)
    sites, _ = model_sites(grouped, args, kwargs, "pyro")
    rng = np.random.default_rng(3)
    s = 400
    draws = {
        "scale": rng.uniform(0.5, 2.0, s),
        "loc": rng.normal(size=(s, 3)),
        "w": rng.normal(size=(s, 2)),
    }
    calls = {"batched": 0, "loop": 0}

    def counted(x, y=None, **kw):
        calls["batched"] += 1
        return grouped(x, y, **kw)

    def unbatchable(x, y=None, **kw):
        calls["loop"] += 1
        out = grouped(x, y, **kw)
        float(pyro.param("unused", lambda: __import__("torch").zeros(())))  # no vmap
        return out

    batched = pointwise(counted, draws, args, kwargs, sites, "pyro", seed=1)
    looped = pointwise(unbatchable, draws, args, kwargs, sites, "pyro", seed=1)
    assert calls["batched"] <= 3  # one vmapped run, one plated predictive run
    assert calls["loop"] >= 2 * s
    for i in (0, 1):
        for k in batched[i]:
            np.testing.assert_allclose(batched[i][k], looped[i][k], rtol=1e-5, atol=1e-6)
    mean = X[None] * draws["w"].sum(1)[:, None, None] + 2 * draws["loc"][:, :1, None] + 0.5
    for ppc in (batched[2], looped[2]):
        z = (ppc["y"] - mean) / draws["scale"][:, None, None]
        assert abs(z.mean()) < 0.06 and abs(z.std() - 1) < 0.05
