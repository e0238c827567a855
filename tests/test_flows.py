"""Normalizing flows: invertibility, the log-determinant against autograd's Jacobian, the exact
density (normalized on a grid in 2-D), gradients to every parameter, and learning a toy set."""

import numpy as np
import pyro
import pytest
import torch

from ppdgm import MAF, NICE, NSF, Glow, PlanarFlow, RadialFlow, RealNVP
from ppdgm.data import load_data
from ppdgm.errors import ConfigError
from ppdgm.models.flows import (
    Flow,
    InvertiblePlanar,
    InvertibleRadial,
    PermuteLayer,
    maf_layers,
    nice_layers,
    nsf_layers,
    planar_layers,
    radial_layers,
    realnvp_layers,
)
from ppdgm.models.glow import (
    ActNorm,
    AffineCouplingConv,
    GlowModel,
    GlowNet,
    InvertibleConv1x1,
    squeeze,
    unsqueeze,
)
from ppdgm.viz import density_grid

BUILDERS = {
    "nice": lambda d: nice_layers(d, 3, (8,)),
    "realnvp": lambda d: realnvp_layers(d, 3, (8,)),
    "maf": lambda d: maf_layers(d, 3, (8,)),
    "nsf-coupling": lambda d: nsf_layers(d, 3, (8,), count_bins=5, bound=3.0),
    "nsf-autoregressive": lambda d: nsf_layers(d, 3, (8,), 5, 3.0, kind="autoregressive"),
    "planar": lambda d: planar_layers(d, 3),
    "radial": lambda d: radial_layers(d, 3),
}


# The layer tests use the float64 fixture (tests/conftest.py): exact comparisons in double
# precision, and Pyro's autoregressive inverse starts from zeros of the default dtype.


def _flow(name, dim, seed=0, noise=0.3):
    torch.manual_seed(seed)
    layers, inverted = BUILDERS[name](dim)
    flow = Flow(layers, dim, inverted)
    with torch.no_grad():  # away from the identity that a fresh flow starts near
        for p in flow.parameters():
            p.add_(noise * torch.randn_like(p))
    return flow


@pytest.mark.parametrize("name", BUILDERS)
def test_leading_dimensions_and_the_program(name, float64, observed_rows):
    # (B, N, D) inputs score and invert row by row, as (B * N, D) do; the program observes
    # rows in plate "data"
    flow = _flow(name, 4, seed=5)
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    lp = flow.log_prob(x.clone())
    assert lp.shape == (2, 5)
    torch.testing.assert_close(lp, flow.log_prob(x.reshape(10, 4).clone()).reshape(2, 5))
    z = flow.inverse_map(x.clone())
    torch.testing.assert_close(z, flow.inverse_map(x.reshape(10, 4).clone()).reshape(2, 5, 4))
    torch.testing.assert_close(flow.forward_map(z.clone()), x, rtol=1e-6, atol=1e-6)
    observed_rows(flow.model, x[0])
    assert Flow(flow.layers, 4).inverted == [False] * len(flow.layers)  # the default


@pytest.mark.parametrize("name", BUILDERS)
def test_inverse_undoes_forward(name, float64):
    flow = _flow(name, 3)
    z = torch.randn(50, 3, dtype=torch.float64)
    x = flow.forward_map(z)
    assert not torch.allclose(x, z, atol=0.05)  # not the identity
    # clones: a transform's cache would hand back its own input without computing the inverse
    torch.testing.assert_close(flow.inverse_map(x.clone()), z, rtol=1e-6, atol=1e-6)
    x2 = torch.randn(50, 3, dtype=torch.float64) * 2
    back = flow.forward_map(flow.inverse_map(x2).clone())
    torch.testing.assert_close(back, x2, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", BUILDERS)
def test_log_prob_is_base_density_plus_log_det_of_autograds_jacobian(name, float64):
    flow = _flow(name, 3, seed=1)
    base = torch.distributions.Normal(0.0, 1.0)
    xs = torch.randn(6, 3, dtype=torch.float64) * 1.5
    log_p = flow.log_prob(xs)
    for x, lp in zip(xs, log_p, strict=True):
        jac = torch.autograd.functional.jacobian(lambda v: flow.inverse_map(v[None])[0], x)
        z = flow.inverse_map(x[None])[0]
        expected = base.log_prob(z).sum() + torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(lp, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", BUILDERS)
def test_every_parameter_gets_a_gradient_and_shapes(name, float64):
    flow = _flow(name, 4, seed=2)
    x = torch.randn(16, 4)
    lp = flow.log_prob(x)
    assert lp.shape == (16,)
    lp.sum().backward()
    for n, p in flow.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    torch.manual_seed(0)
    s = flow.sample(7)
    assert s.shape == (7, 4) and torch.isfinite(s).all()


@pytest.mark.parametrize("name", BUILDERS)
def test_two_dimensional_density_integrates_to_one(name, float64):
    flow = _flow(name, 2, seed=3, noise=0.1)  # smooth enough for a grid of 1000 x 1000
    torch.manual_seed(0)
    pts = flow.sample(2000).numpy()
    xs, ys, grid = density_grid(np.concatenate([pts, [[-7, -7], [7, 7]]]), size=1000, margin=0.1)
    with torch.no_grad():
        p = flow.log_prob(torch.as_tensor(grid)).exp().numpy()
    total = p.sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert abs(total - 1) < 0.01, total


def test_samples_follow_the_density(float64):
    # the sampler and the density describe the same distribution: the mean log-density of
    # the flow's own samples is its negative entropy, estimated two ways
    flow = _flow("maf", 2, seed=4)
    torch.manual_seed(0)
    with torch.no_grad():
        s = flow.sample(20000)
        own = flow.log_prob(s).mean()
        z = torch.randn(20000, 2, dtype=torch.float64)
        x = flow.forward_map(z)
        other = flow.log_prob(x).mean()
    torch.testing.assert_close(own, other, rtol=0, atol=0.05)
    # a shifted sampler would not agree with the density (the test can fail)
    with torch.no_grad():
        shifted = flow.log_prob(s + 0.5).mean()
    assert shifted < own - 0.05


def test_permute_layer_and_flow_checks():
    perm = PermuteLayer(torch.tensor([2, 0, 1]))
    x = torch.arange(6.0).reshape(2, 3)
    y = perm(x)
    torch.testing.assert_close(y, x[:, [2, 0, 1]])
    torch.testing.assert_close(perm.inv(y), x)
    assert perm.log_abs_det_jacobian(x, y).shape == (2,)
    with pytest.raises(ValueError, match="1 inverted flags for 2 layers"):
        Flow([perm, perm], 3, [False])


@pytest.mark.parametrize(
    "cls, steps", [(RealNVP, 1000), (MAF, 200), (NSF, 200)], ids=["realnvp", "maf", "nsf"]
)
def test_flows_learn_eight_gaussians(cls, steps):
    d = load_data("8gaussians")
    tiny = {"num_transforms": 3, "hidden_dims": (32, 32)}
    untrained = cls(**tiny, seed=0, device="cpu").fit(d.x_train, num_steps=1)
    fitted = cls(**tiny, seed=0, device="cpu").fit(
        d.x_train, num_steps=steps, batch_size=256, lr=3e-3
    )
    true = -float(np.mean(d.true_log_prob(d.x_test)))  # 1.13 nats
    before, after = -untrained.score(d.x_test), -fitted.score(d.x_test)
    assert after < before - 1.0 and after < true + 1.0, (before, after, true)
    s = fitted.sample(2000, seed=0)
    # most samples lie near one of the eight modes
    radius = np.linalg.norm(s, axis=1)
    assert np.mean(np.abs(radius - 2) < 0.6) > 0.8


def test_nice_beats_the_best_gaussian_on_eight_gaussians():
    # volume-preserving couplings learn the rings slowly; the bar is the best Gaussian (no
    # diagonal scaling alone can beat it), about 3.5 nats
    d = load_data("8gaussians")
    cov = np.cov(d.x_train.T)
    gaussian = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * cov)[1]
    fitted = NICE(num_transforms=3, hidden_dims=(32, 32), seed=0, device="cpu")
    fitted.fit(d.x_train, num_steps=300, batch_size=256, lr=3e-3)
    assert -fitted.score(d.x_test) < gaussian - 0.5, (-fitted.score(d.x_test), gaussian)


@pytest.mark.parametrize("cls", [InvertiblePlanar, InvertibleRadial], ids=["planar", "radial"])
def test_planar_and_radial_keep_pyros_map_and_add_an_inverse(cls, float64):
    torch.manual_seed(0)
    layer = cls(3)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    x = torch.randn(20, 3)
    y = layer(x)
    # the log-determinant computed from x equals the one Pyro keeps from its forward pass
    torch.testing.assert_close(layer.log_abs_det_jacobian(x, y), layer._cached_logDetJ)
    # the inverse of fresh points, and its log-determinant from the recovered point (Pyro's
    # would be the stale one of the last forward pass)
    y2 = torch.randn(20, 3) * 2
    x2 = layer.inv(y2)
    torch.testing.assert_close(layer(x2.clone()), y2)
    for a, b in zip(x2[:4], y2[:4], strict=True):
        jac = torch.autograd.functional.jacobian(lambda v: layer._call(v[None])[0], a)
        expected = -torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(layer.inv.log_abs_det_jacobian(b[None], a[None])[0], expected)


def test_planar_inverts_near_its_invertibility_limit(float64):
    # u opposite to w: w . u_hat is just above -1 and the map is nearly flat along w
    layer = InvertiblePlanar(2)
    with torch.no_grad():
        layer.w.copy_(torch.tensor([1.0, 0.5]))
        layer.u.copy_(-20 * layer.w)
        layer.bias.fill_(0.3)
    k = float((layer.w * layer.u_hat(layer.u, layer.w)).sum().detach())
    assert -1 < k < -0.99
    x = torch.randn(200, 2) * 3
    y = layer(x)
    torch.testing.assert_close(layer(layer.inv(y.clone()).clone()), y, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls", [PlanarFlow, RadialFlow], ids=["planar", "radial"])
def test_planar_and_radial_flows_beat_the_best_gaussian(cls):
    d = load_data("8gaussians")
    cov = np.cov(d.x_train.T)
    gaussian = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * cov)[1]
    fitted = cls(num_transforms=16, seed=0, device="cpu")
    fitted.fit(d.x_train, num_steps=300, batch_size=256, lr=1e-2)
    nll = -fitted.score(d.x_test)
    assert nll < gaussian - 1.0, (nll, gaussian)
    s = fitted.sample(500, seed=0)
    assert s.shape == (500, 2) and np.isfinite(s).all()


def test_flow_hyperparameters_are_checked():
    with pytest.raises(ConfigError, match="num_transforms must be a positive integer"):
        RealNVP(num_transforms=0)
    with pytest.raises(ConfigError, match="hidden_dims must be positive integers"):
        MAF(hidden_dims=(8, -1))
    with pytest.raises(ConfigError, match="unknown kind 'x'"):
        NSF(kind="x")
    with pytest.raises(ConfigError, match="count_bins must be an integer >= 2"):
        NSF(count_bins=1)
    with pytest.raises(ConfigError, match="bound must be a positive number"):
        NSF(bound=0)
    with pytest.raises(ConfigError, match="num_transforms must be a positive integer"):
        PlanarFlow(num_transforms=0)
    with pytest.raises(TypeError, match="hidden_dims"):
        RadialFlow(hidden_dims=(8,))
    with pytest.raises(ConfigError, match=r"RealNVP models vectors \(N, D\)"):
        RealNVP(seed=0, device="cpu").fit(np.zeros((4, 1, 2, 2)), num_steps=1)
    with pytest.raises(ConfigError, match="needs at least 2 dimensions"):
        MAF(seed=0, device="cpu").fit(np.zeros((4, 1)), num_steps=1)


# -- Glow ------------------------------------------------------------------------------------


def _glow(shape, levels, seed=0, noise=0.1):
    torch.manual_seed(seed)
    model = GlowModel(GlowNet(shape, num_levels=levels, steps=2, hidden=8))
    model.initialize(torch.randn(64, *shape) * 2 + 1)
    with torch.no_grad():  # couplings start at the identity: move them off it
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    return model


GLOW_SHAPES = [((1, 8, 8), 2), ((3, 4, 4), 2), ((2, 4, 8), 2), ((5, 1, 1), 1)]


@pytest.mark.parametrize("shape, levels", GLOW_SHAPES, ids=["1x8x8", "3x4x4", "2x4x8", "vector"])
def test_glow_inverts_and_its_log_det_matches_autograd(shape, levels, float64):
    model = _glow(shape, levels)
    net = model.net
    x = torch.randn(4, *shape) * 2 + 1
    zs, logdet = net.encode(x)
    assert sum(z[0].numel() for z in zs) == x[0].numel()  # every value goes to the base once
    assert [tuple(z.shape[1:]) for z in zs] == net.base_shapes  # what sampling draws
    torch.testing.assert_close(net.decode([z.clone() for z in zs]), x, rtol=1e-9, atol=1e-9)
    base = torch.distributions.Normal(0.0, 1.0)
    lp = model.log_prob(x)
    for i in range(len(x)):

        def encode(v):
            return torch.cat([z.flatten() for z in net.encode(v.reshape(1, *shape))[0]])

        jac = torch.autograd.functional.jacobian(encode, x[i].flatten())
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac)[1], rtol=1e-9, atol=1e-9)
        expected = base.log_prob(encode(x[i])).sum() + torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(lp[i], expected, rtol=1e-9, atol=1e-9)


def test_glow_layers_each_invert_and_actnorm_starts_at_unit_variance(float64):
    torch.manual_seed(0)
    x = torch.randn(32, 4, 3, 3) * 3 + 2
    act = ActNorm(4)
    act.initialize(x)
    z, _ = act.encode(x)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(4), atol=1e-9, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3)), torch.ones(4), atol=1e-9, rtol=0)
    conv = InvertibleConv1x1(4)
    assert torch.det(conv.weight()).abs().item() == pytest.approx(1.0)  # starts a rotation
    coupling = AffineCouplingConv(4, 6)
    z, ld = coupling.encode(x)
    # the zero-initialized last layer: a constant scale sigmoid(2) on the second half
    torch.testing.assert_close(z[:, :2], x[:, :2])
    torch.testing.assert_close(z[:, 2:], x[:, 2:] * torch.sigmoid(torch.tensor(2.0)))
    for layer in (act, conv, coupling):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(0.2 * torch.randn_like(p))
        z, ld = layer.encode(x)
        assert ld.shape == (32,)
        torch.testing.assert_close(layer.decode(z.clone()), x, rtol=1e-9, atol=1e-9)
    block = torch.arange(16.0).reshape(1, 1, 4, 4)
    sq = squeeze(block)
    assert sq.shape == (1, 4, 2, 2)
    # channel k of the squeeze holds pixel (k // 2, k % 2) of each 2x2 block
    assert sq[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    assert sq[0, 1, 1, 1].item() == 11.0
    torch.testing.assert_close(unsqueeze(sq), block)


def test_glow_structure_seeding_initialization_and_program(float64, observed_rows):
    # the 1x1 convolution starts at the rotation drawn from the given generator
    torch.manual_seed(1)
    one = GlowNet((1, 4, 4), 1, 2, 6, torch.Generator().manual_seed(0))
    torch.manual_seed(2)
    two = GlowNet((1, 4, 4), 1, 2, 6, torch.Generator().manual_seed(0))
    for a, b in zip(one.levels[0][1::3], two.levels[0][1::3], strict=True):
        w = a.weight()
        torch.testing.assert_close(w @ w.T, torch.eye(4))
        torch.testing.assert_close(w, b.weight())
    # images: 3x3 coupling nets of `hidden` channels; vectors: one level of 1x1 nets
    coupling = one.levels[0][2]
    assert coupling.net[0].kernel_size == (3, 3) and coupling.net[0].out_channels == 6
    vec = GlowNet((5, 1, 1), 2, 1, 7)
    assert len(vec.levels) == 1 and vec.base_shapes == [(5, 1, 1)]
    assert vec.levels[0][2].net[0].kernel_size == (1, 1)
    for shape, levels, got in [((1, 12, 8), 3, "12x8"), ((1, 8, 12), 3, "8x12")]:
        with pytest.raises(ValueError, match=f"3 levels need H and W divisible by 8, got {got}"):
            GlowNet(shape, levels, 1, 4)
    # ActNorm is set from data only when asked (GlowModel.initialize)
    x = torch.randn(16, 1, 4, 4) * 3 + 2
    model = GlowModel(one)
    model.log_prob(x)
    first = one.levels[0][0]
    assert first.bias.abs().max() == 0 and first.log_scale.abs().max() == 0
    model.initialize(x)
    torch.testing.assert_close(first.bias.flatten(), squeeze(x).mean((0, 2, 3)))
    # the program: site "x" observed in plate "data", images by default, vectors when flat
    trace = observed_rows(model.model, x, event_shape=(1, 4, 4))
    torch.testing.assert_close(trace.log_prob_sum(), model.log_prob(x).sum())
    assert model.sample(3).shape == (3, 1, 4, 4)
    flat = GlowModel(vec, flat=True)
    v = torch.randn(6, 5)
    assert flat.log_prob(v).shape == (6,) and flat.sample(2).shape == (2, 5)
    assert pyro.poutine.trace(flat.model).get_trace(v).nodes["x"]["value"].shape == (6, 5, 1, 1)


def test_glow_coupling_against_a_written_out_reference(float64):
    torch.manual_seed(4)
    coupling = AffineCouplingConv(5, 6)
    for p in coupling.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, 5, 4, 4)
    c1, c2, c3 = coupling.net[0], coupling.net[2], coupling.net[4]
    h = torch.relu(torch.nn.functional.conv2d(x[:, :2], c1.weight, c1.bias, padding=1))
    h = torch.relu(torch.nn.functional.conv2d(h, c2.weight, c2.bias))
    out = torch.nn.functional.conv2d(h, c3.weight, c3.bias, padding=1)
    log_scale = torch.nn.functional.logsigmoid(out[:, :3] + 2)
    z, ld = coupling.encode(x)
    torch.testing.assert_close(z[:, :2], x[:, :2])
    torch.testing.assert_close(z[:, 2:], (x[:, 2:] + out[:, 3:]) * log_scale.exp())
    torch.testing.assert_close(ld, log_scale.sum((1, 2, 3)))


def test_glow_two_dimensional_density_integrates_to_one(float64):
    model = _glow((2, 1, 1), 1, seed=3, noise=0.05)
    model.flat = True
    torch.manual_seed(0)
    pts = model.sample(2000).numpy()
    xs, ys, grid = density_grid(np.concatenate([pts, [[-7, -7], [7, 7]]]), size=1000, margin=0.1)
    with torch.no_grad():
        density = model.log_prob(torch.as_tensor(grid)).exp().numpy()
    area = (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert density.sum() * area == pytest.approx(1.0, abs=0.01)


def test_glow_fits_images_and_vectors_and_refuses_bad_shapes():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 1, 8, 8)).astype(np.float32)
    est = Glow(steps_per_level=1, hidden=8, seed=0, device="cpu").fit(images, num_steps=3)
    assert est.sample(2).shape == (2, 1, 8, 8)
    assert est.score_samples(images[:3]).shape == (3,)
    params = est.trainer_.params
    assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    # ActNorm set from the data: the first one centres the squeezed pixels
    first = est.model_.net.levels[0][0]
    assert first.bias.abs().max() > 0 and first.log_scale.abs().max() > 0
    with pytest.raises(ConfigError, match="2 levels need H and W divisible by 4"):
        Glow(seed=0, device="cpu").fit(rng.normal(size=(8, 1, 6, 6)), num_steps=1)
    with pytest.raises(ConfigError, match="steps_per_level must be a positive integer"):
        Glow(steps_per_level=0)


def test_glow_learns_eight_gaussians():
    d = load_data("8gaussians")
    est = Glow(steps_per_level=4, hidden=64, seed=0, device="cpu")
    est.fit(d.x_train, num_steps=400, batch_size=256, lr=3e-3)
    cov = np.cov(d.x_train.T)
    gaussian = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * cov)[1]  # 3.5 nats; the truth 1.13
    nll = -est.score(d.x_test)  # about 2.0 at this budget
    assert nll < gaussian - 1.0, (nll, gaussian)


@pytest.mark.parametrize("name", BUILDERS)
def test_log_prob_of_the_same_tensor_follows_the_parameters(name, float64):
    # Pyro's transforms cache their last (x, y) pair: scoring the very same tensor again after
    # an update must not hand back the old pass (a validation set is one tensor all run long)
    flow = _flow(name, 3, seed=5)
    x = torch.randn(8, 3, dtype=torch.float64)
    before = flow.log_prob(x)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    after = flow.log_prob(x)
    torch.testing.assert_close(after, flow.log_prob(x.clone()))
    assert not torch.allclose(after, before)
    trace = pyro.poutine.trace(flow.model).get_trace(x)
    torch.testing.assert_close(trace.nodes["x"]["fn"].log_prob(x), after)


def test_spline_flow_layers_follow_their_kind_and_settings():
    from ppdgm.models.splines import SplineAutoregressive, SplineCoupling

    layers, inverted = nsf_layers(4, 3, (8,), count_bins=5, bound=2.5, kind="autoregressive")
    assert [type(t) for t in layers] == [SplineAutoregressive] * 3 and inverted == [True] * 3
    assert all(t.count_bins == 5 and t.bound == 2.5 for t in layers)
    # the network's ordering reverses from one layer to the next
    orders = [t.arn.permutation.tolist() for t in layers]
    assert orders == [[0, 1, 2, 3], [3, 2, 1, 0], [0, 1, 2, 3]]
    layers, inverted = nsf_layers(4, 3, (8,), count_bins=5, bound=2.5, kind="coupling")
    kinds = [type(t) for t in layers]
    assert kinds == [SplineCoupling, PermuteLayer] * 2 + [SplineCoupling]
    assert inverted == [False] * 5
    assert all(t.count_bins == 5 and t.bound == 2.5 for t in layers[::2])
    assert all(t.split == 2 for t in layers[::2])  # half the dimensions condition the rest
    assert [t.permutation.tolist() for t in layers[1::2]] == [[3, 2, 1, 0]] * 2  # reversal
    with pytest.raises(ConfigError, match="unknown spline flow kind 'spline'"):
        nsf_layers(4, 2, (8,), 5, 2.0, kind="spline")


def test_realnvp_scale_is_softly_bounded_and_a_fresh_layer_is_the_identity():
    torch.manual_seed(0)
    layers, _ = realnvp_layers(4, 2, (8, 8))
    x = torch.randn(5, 4)
    couplings = layers[::2]
    assert [type(t).__name__ for t in layers] == ["AffineCoupling", "PermuteLayer"] * 1 + [
        "AffineCoupling"
    ]
    for t in couplings:
        torch.testing.assert_close(t(x), x)  # the output layer of every network starts at 0
    scale = layers[0].nn
    with torch.no_grad():
        last = scale.net.layers[-1]
        last.bias.copy_(torch.tensor([0.0, 0.0, 0.01, 30.0]))  # (shift, shift, s, s)
    _, log_scale = scale(x[:, :2])
    # limit * tanh(s / limit): slope 1 near 0, never past the limit
    torch.testing.assert_close(log_scale[:, 0], torch.full((5,), 0.01), rtol=1e-3, atol=0)
    # RealNVP's layers bound each log-scale to +-2 (a scale within exp(+-2))
    assert (log_scale[:, 1] <= 2.0).all() and (log_scale[:, 1] > 1.98).all()
