"""PixelCNN: the masks' causal structure (and the original net's blind spot), the exact
likelihood against its conditionals computed one value at a time, sampling against the
enumerated distribution, categorical levels, and the estimator's inputs and learning."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from ppdgm import PixelCNN
from ppdgm.data import load_data, split_validation
from ppdgm.errors import ConfigError, DataValueError
from ppdgm.models.pixelcnn import (
    GatedPixelCNNNet,
    MaskedConv2d,
    PixelCNNModel,
    PixelCNNNet,
    channel_groups,
)


def _before(c, i, j, cc, ii, jj):
    """Whether value (cc, ii, jj) comes before (c, i, j): raster order, then channels."""
    return (ii, jj) < (i, j) or ((ii, jj) == (i, j) and cc < c)


def _seen(net, shape, per_channel):
    """seen[(c, i, j)]: the (C, H, W) inputs that output (c, i, j) has a gradient from, at
    any of several random inputs (one input may leave a ReLU path dead)."""
    c_, h_, w_ = shape
    x = torch.randn(8, *shape, dtype=torch.float64, requires_grad=True)
    out = net(x).reshape(8, c_, per_channel, h_, w_)
    seen = {}
    for c, i, j in itertools.product(range(c_), range(h_), range(w_)):
        (g,) = torch.autograd.grad(out[:, c, :, i, j].sum(), x, retain_graph=True)
        seen[(c, i, j)] = (g != 0).any(0)
    return seen


def _nets(channels_in, per_channel=2, layers=6):
    torch.manual_seed(0)
    gated = GatedPixelCNNNet(channels_in, per_channel, channels=8 * channels_in, num_layers=layers)
    plain = PixelCNNNet(
        channels_in, per_channel, channels=8 * channels_in, num_layers=layers, first_kernel=3
    )
    return gated.double(), plain.double()


@pytest.mark.parametrize("channels_in", [1, 3])
def test_each_output_sees_exactly_the_values_before_it_and_the_original_has_a_blind_spot(
    channels_in,
):
    shape = (channels_in, 5, 5)
    gated, plain = _nets(channels_in)
    for name, net in (("gated", gated), ("plain", plain)):
        seen = _seen(net, shape, 2)
        missed = []
        for (c, i, j), s in seen.items():
            for cc, ii, jj in itertools.product(range(channels_in), range(5), range(5)):
                before = _before(c, i, j, cc, ii, jj)
                assert not (s[cc, ii, jj] and not before), (name, (c, i, j), (cc, ii, jj))
                if before and not s[cc, ii, jj]:
                    missed.append(((c, i, j), (cc, ii, jj)))
        if name == "gated":  # enough layers to reach the whole 5x5 image: nothing missed
            assert missed == []
        else:
            # the blind spot: stacked 3x3 masks never reach up and to the right, e.g. the
            # pixel (i - 1, j + 2) of output (i, j) in the bottom row
            assert ((0, 4, 2), (0, 3, 4)) in missed
            assert all(jj > j and ii < i for (_, i, j), (_, ii, jj) in missed)


def test_masked_convolution_equals_the_full_convolution_of_the_masked_kernel():
    torch.manual_seed(1)
    cases = [
        dict(rows="above", centre_row="none", centre=None),
        dict(rows="above", centre_row="all", centre=None),
        dict(rows="none", centre_row="left", centre="A"),
        dict(rows="above", centre_row="left", centre="B"),
    ]
    for kw, kernel in itertools.product(cases, [(3, 3), (5, 5), (1, 3)]):
        mask = MaskedConv2d.causal_mask(channel_groups(4, 2), channel_groups(6, 2), kernel, **kw)
        conv = MaskedConv2d(4, 6, mask)
        x = torch.randn(2, 4, 6, 7)
        full = F.conv2d(x, conv.weight * mask, conv.bias, padding=(kernel[0] // 2, kernel[1] // 2))
        torch.testing.assert_close(conv(x), full, rtol=1e-5, atol=1e-5)


def test_causal_mask_centre_taps_follow_the_channel_groups():
    g_in, g_out = channel_groups(3, 3), channel_groups(6, 3)
    assert g_out.tolist() == [0, 0, 1, 1, 2, 2]
    a = MaskedConv2d.causal_mask(g_in, g_out, (3, 3), centre="A")[:, :, 1, 1]
    b = MaskedConv2d.causal_mask(g_in, g_out, (3, 3), centre="B")[:, :, 1, 1]
    assert a.tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0]]
    assert b.tolist() == [[1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]]
    full = MaskedConv2d.causal_mask(g_in, g_out, (3, 5), centre="B")
    assert full[:, :, 0].eq(1).all() and full[:, :, 2].eq(0).all()  # rows above / below
    assert full[:, :, 1, :2].eq(1).all() and full[:, :, 1, 3:].eq(0).all()  # left / right
    with pytest.raises(ValueError, match="odd"):
        MaskedConv2d(3, 6, torch.ones(6, 3, 2, 3))


def _tiny_model(gated, num_bins, shape=(1, 2, 2), seed=0):
    torch.manual_seed(seed)
    per = 1 if num_bins == 2 else num_bins
    cls = GatedPixelCNNNet if gated else PixelCNNNet
    kw = {} if gated else {"first_kernel": 3}
    net = cls(shape[0], per, channels=4 * shape[0], num_layers=2, **kw)
    for p in net.parameters():  # larger weights: conditionals far from uniform
        p.data.mul_(3.0)
    return PixelCNNModel(net, shape, num_bins).eval()


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
@pytest.mark.parametrize("num_bins", [2, 3], ids=["binary", "three_levels"])
def test_exact_likelihood_is_its_conditionals_one_value_at_a_time_and_normalizes(gated, num_bins):
    shape = (2, 2, 2) if num_bins == 2 else (1, 2, 2)
    model = _tiny_model(gated, num_bins, shape)
    c_, h_, w_ = shape
    states = torch.tensor(
        list(itertools.product(range(num_bins), repeat=c_ * h_ * w_)), dtype=torch.float32
    ).reshape(-1, *shape)
    logp = model.log_prob(states)
    # one value at a time: zero out that value and everything after it, read its conditional
    by_hand = torch.zeros(len(states))
    order = [(c, i, j) for i in range(h_) for j in range(w_) for c in range(c_)]
    for t, (c, i, j) in enumerate(order):
        visible = states.clone()
        for cc, ii, jj in order[t:]:
            visible[:, cc, ii, jj] = 0
        out = model.net(visible).reshape(len(states), c_, -1, h_, w_)[:, c, :, i, j]
        value = states[:, c, i, j].long()
        if num_bins == 2:
            by_hand += -F.binary_cross_entropy_with_logits(
                out[:, 0], value.float(), reduction="none"
            )
        else:
            by_hand += out.log_softmax(-1).gather(1, value[:, None])[:, 0]
    torch.testing.assert_close(logp, by_hand, rtol=1e-5, atol=1e-5)
    assert torch.logsumexp(logp, 0).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("num_bins", [2, 3], ids=["binary", "three_levels"])
def test_samples_follow_the_enumerated_distribution(num_bins):
    model = _tiny_model(True, num_bins, (1, 2, 2), seed=2)
    states = torch.tensor(
        list(itertools.product(range(num_bins), repeat=4)), dtype=torch.float32
    ).reshape(-1, 1, 2, 2)
    probs = model.log_prob(states).detach().exp().numpy().astype(np.float64)
    torch.manual_seed(0)
    n = 4000
    draws = model.sample(n).reshape(n, 4).numpy()
    codes = (draws * num_bins ** np.arange(3, -1, -1)).sum(1).astype(int)
    counts = np.bincount(codes, minlength=len(states))
    _, p = chisquare(counts, probs / probs.sum() * n)
    assert p > 1e-3, (counts, probs * n)


def _digits_images():
    d = split_validation(load_data("digits-binary"))
    return [x.reshape(len(x), 1, 8, 8) for x in (d.x_train, d.x_val, d.x_test)]


def test_pixelcnn_refuses_bad_input_and_hyperparameters():
    x = _digits_images()[0][:20]
    with pytest.raises(ConfigError, match=r"images \(N, C, H, W\)"):
        PixelCNN(channels=4, num_layers=1).fit(x.reshape(20, 64), num_steps=1)
    with pytest.raises(DataValueError, match="quantize"):
        PixelCNN(channels=4, num_layers=1).fit(x + 0.5, num_steps=1)
    with pytest.raises(
        DataValueError, match=r"categorical likelihood needs integer values in 0\.\.2"
    ):
        PixelCNN(channels=4, num_layers=1, num_bins=3).fit(x * 3, num_steps=1)
    with pytest.raises(ConfigError, match="multiple of the image's 3 channels"):
        PixelCNN(channels=4, num_layers=1).fit(np.zeros((4, 3, 4, 4)), num_steps=1)
    for bad, match in [
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"channels": 0}, "channels"),
        ({"num_layers": -1}, "num_layers"),
        ({"num_bins": 1}, "num_bins"),
        ({"dropout": 1.0}, "dropout"),
        ({"weight_decay": -1.0}, "weight_decay"),
    ]:
        with pytest.raises(ConfigError, match=match):
            PixelCNN(**bad)


def test_pixelcnn_fits_integer_levels_with_a_categorical_per_value():
    d = load_data("digits")
    x = d.x_train[:64].reshape(64, 1, 8, 8)
    est = PixelCNN(channels=4, num_layers=1, seed=0, device="cpu").fit(x, num_steps=2)
    assert est.num_bins_ == 17 and est.model_.num_bins == 17
    s = est.sample(3)
    assert s.shape == (3, 1, 8, 8) and set(np.unique(s)) <= set(range(17))
    scores = est.score_samples(x[:5])
    # a near-uniform start: close to 64 values x log 17 nats
    assert np.all(np.abs(-scores - 64 * np.log(17)) < 20)


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
def test_pixelcnn_learns_the_binary_digits(gated):
    x_train, x_val, x_test = _digits_images()
    est = PixelCNN(gated=gated, channels=16, num_layers=4, seed=0, device="cpu")
    est.fit(x_train, num_steps=300, batch_size=64, lr=3e-3, X_val=x_val)
    nll = -est.score(x_test)
    # 64 fair coins cost 44.4 nats; a factorized Bernoulli fitted to the digits about 29
    assert nll < 24.0, nll


def _centre(conv):
    """The centre taps of a masked convolution's mask, (out, in)."""
    kh, kw = conv.mask.shape[-2:]
    return conv.mask[:, :, kh // 2, kw // 2]


@pytest.mark.parametrize("channels_in", [1, 3])
def test_only_the_first_layer_is_of_type_a(channels_in):
    gated, plain = _nets(channels_in, layers=3)
    first_h, *later_h = gated.h_convs
    groups_in = channel_groups(channels_in, channels_in)
    groups_f = channel_groups(8 * channels_in, channels_in)
    halves = torch.cat([groups_f] * 2)
    type_a = (groups_in[None, :] < halves[:, None]).double()
    torch.testing.assert_close(_centre(first_h), type_a)
    torch.testing.assert_close(
        _centre(plain.first), (groups_in[None, :] < groups_f[:, None]).double()
    )
    # every later layer sees its own group's features at the centre (type B)
    type_b_h = (groups_f[None, :] <= halves[:, None]).double()
    type_b = (groups_f[None, :] <= groups_f[:, None]).double()
    for conv in later_h:
        torch.testing.assert_close(_centre(conv), type_b_h)
    for conv in [*gated.h_res, *plain.blocks]:
        torch.testing.assert_close(_centre(conv), type_b)


def test_causal_mask_refuses_unknown_settings():
    g = channel_groups(2, 1)
    for kw in ({"centre": "b"}, {"rows": "NONE"}, {"centre_row": "right"}):
        (name,) = kw
        with pytest.raises(ValueError, match=f"unknown {name} '{kw[name]}'"):
            MaskedConv2d.causal_mask(g, g, (3, 3), **kw)


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
def test_pixelcnn_dropout_acts_only_while_training(gated):
    cls = GatedPixelCNNNet if gated else PixelCNNNet
    torch.manual_seed(0)
    net = cls(1, 1, channels=8, num_layers=2, dropout=0.5)
    plain = cls(1, 1, channels=8, num_layers=2)
    plain.load_state_dict(net.state_dict())
    x = torch.rand(4, 1, 5, 5)
    net.eval()
    plain.eval()
    torch.testing.assert_close(net(x), plain(x))
    net.train()
    assert not torch.allclose(net(x), plain(x))


def test_causal_mask_of_a_five_by_five_kernel_tap_by_tap():
    g = channel_groups(1, 1)
    a = MaskedConv2d.causal_mask(g, g, (5, 5), centre="A")[0, 0]
    expected = torch.zeros(5, 5)
    expected[:2] = 1  # the two rows above
    expected[2, :2] = 1  # the two taps left of the centre
    torch.testing.assert_close(a, expected)
    b = MaskedConv2d.causal_mask(g, g, (5, 5))[0, 0]  # type B by default: the centre too
    expected[2, 2] = 1
    torch.testing.assert_close(b, expected)
    whole = MaskedConv2d.causal_mask(g, g, (5, 5), centre_row="all", centre=None)[0, 0]
    torch.testing.assert_close(whole, torch.cat([torch.ones(3, 5), torch.zeros(2, 5)]))
    row = MaskedConv2d.causal_mask(g, g, (1, 5), rows="none", centre=None)[0, 0]
    torch.testing.assert_close(row, torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]]))
