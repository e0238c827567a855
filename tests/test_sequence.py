"""Sequence models: causal connectivity (gradients), the exact likelihood against the
conditionals one position at a time, sampling against an enumerated distribution (with a
temperature), mu-law coding, text data, the estimators and the command line."""

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from ppdgm import CharRNN, WaveNet, cli
from ppdgm.data import load_data, split_validation
from ppdgm.data.sequences import decode_text, encode_text, read_text, text_windows
from ppdgm.errors import ConfigError, DataFormatError, DataValueError
from ppdgm.models.sequence import (
    CausalConv1d,
    LSTMNet,
    SequenceModel,
    WaveNetNet,
    mu_law_decode,
    mu_law_encode,
)


def _perturb(module, noise=0.5):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(noise * torch.randn_like(p))


def _model(kind, k=3, length=4, seed=0):
    torch.manual_seed(seed)
    if kind == "lstm":
        net = LSTMNet(k, hidden=8, num_layers=2)
    else:
        net = WaveNetNet(k, channels=8, num_layers=2, kernel_size=2)
    _perturb(net)
    return SequenceModel(net, k, length).eval()


def test_causal_convolution_sees_only_the_past():
    torch.manual_seed(0)
    conv = CausalConv1d(2, 3, kernel_size=3, dilation=2)
    x = torch.randn(1, 2, 12, requires_grad=True)
    y = conv(x)
    assert y.shape == (1, 3, 12)
    for t in range(12):
        (g,) = torch.autograd.grad(y[0, :, t].sum(), x, retain_graph=True)
        seen = set(torch.nonzero(g[0].abs().sum(0)).flatten().tolist())
        assert seen == {s for s in (t, t - 2, t - 4) if s >= 0}, (t, seen)
    plain = CausalConv1d(1, 1, kernel_size=2)  # dilation 1 by default
    assert plain.dilation == (1,) and plain.left == 1


def test_wavenet_receptive_field_by_gradients():
    torch.manual_seed(1)
    net = WaveNetNet(4, channels=6, num_layers=3)  # kernel size 2 by default
    _perturb(net, 0.3)
    assert net.receptive_field == 8
    h = net.embed(torch.randint(0, 5, (1, 20))).detach().requires_grad_(True)
    out = net.blocks(h).transpose(1, 2)  # (1, K, T): from the embedding on
    assert len(net.residual) == 2  # the last block feeds the skips only
    for t in (0, 5, 12, 19):
        (grad,) = torch.autograd.grad(out[0, :, t].sum(), h, retain_graph=True)
        seen = set(torch.nonzero(grad[0].abs().sum(-1)).flatten().tolist())
        assert seen == set(range(max(0, t - 7), t + 1)), (t, seen)


def test_wavenet_forward_against_a_written_out_reference():
    # gated dilated causal convolutions, residual connections between blocks (not after the
    # last), skips summed into relu -> 1x1 conv -> relu -> 1x1 conv, from the module's weights
    torch.manual_seed(6)
    net = WaveNetNet(4, channels=5, num_layers=3, kernel_size=3)
    _perturb(net, 0.3)
    x = torch.randint(0, 5, (2, 11))
    h = net.embed.weight[x].transpose(1, 2)  # (N, C, T)
    skips = torch.zeros(2, 5, 11)
    for i in range(3):
        d = 2**i

        def causal(conv, h=h, d=d):
            return F.conv1d(F.pad(h, (2 * d, 0)), conv.weight, conv.bias, dilation=d)

        z = torch.tanh(causal(net.filters[i])) * torch.sigmoid(causal(net.gates[i]))
        skips = skips + F.conv1d(z, net.skip[i].weight, net.skip[i].bias)
        if i < 2:
            h = h + F.conv1d(z, net.residual[i].weight, net.residual[i].bias)
    first, last = net.head[1], net.head[3]
    hidden = F.relu(F.conv1d(F.relu(skips), first.weight, first.bias))
    expected = F.conv1d(hidden, last.weight, last.bias).transpose(1, 2)
    torch.testing.assert_close(net(x), expected)


def test_lstm_net_stacks_its_layers_with_dropout_between():
    net = LSTMNet(3, 8, 2, dropout=0.25)
    assert (net.lstm.num_layers, net.lstm.hidden_size, net.lstm.dropout) == (2, 8, 0.25)
    assert net.embed.num_embeddings == 4 and net.out.out_features == 3  # K + start symbol
    one = LSTMNet(3, 8, 1, dropout=0.25)  # one layer: nothing to drop between
    assert one.lstm.num_layers == 1 and one.lstm.dropout == 0
    assert LSTMNet(3, 8, 2).lstm.dropout == 0


@pytest.mark.parametrize("kind", ["lstm", "wavenet"])
def test_the_program_observes_every_sequence_and_every_embedding_row_learns(kind, observed_rows):
    m = _model(kind, k=4, length=6, seed=7)
    x = torch.tensor([[0, 1, 2, 3, 0, 1], [3, 2, 1, 0, 3, 2]])
    trace = observed_rows(m.model, x, event_shape=(6,))
    site = trace.nodes["x"]
    log_p = m.log_prob(x)
    torch.testing.assert_close(site["fn"].log_prob(x), log_p)
    torch.testing.assert_close(trace.log_prob_sum(), log_p.sum())
    log_p.sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the K symbols and the start symbol are all inputs here: every row of the table learns
    rows = m.net.embed.weight.grad.abs().sum(1)
    assert rows.shape == (5,) and (rows > 0).all(), rows


@pytest.mark.parametrize("kind", ["lstm", "wavenet"])
def test_output_at_t_ignores_x_t_and_later(kind):
    m = _model(kind, k=5, length=10, seed=2)
    x = torch.randint(0, 5, (3, 10))
    base = m.logits(x)
    for t in range(10):
        y = x.clone()
        y[:, t:] = (y[:, t:] + 1) % 5
        changed = m.logits(y)
        torch.testing.assert_close(changed[:, : t + 1], base[:, : t + 1])  # positions <= t
        if t < 9:
            assert (changed[:, t + 1] - base[:, t + 1]).abs().max() > 1e-4  # t + 1 sees x_t


@pytest.mark.parametrize("kind", ["lstm", "wavenet"])
def test_log_prob_is_the_sum_of_conditionals_one_position_at_a_time(kind):
    m = _model(kind, k=4, length=6, seed=3)
    x = torch.randint(0, 4, (5, 6))
    expected = torch.zeros(5)
    for t in range(6):
        # the conditional of x_t from the prefix alone (start symbol, then x_<t)
        inputs = torch.cat([torch.full((5, 1), 4), x[:, :t]], 1)
        out = m.net(inputs)
        logits = (out[0] if isinstance(out, tuple) else out)[:, -1]
        expected += torch.log_softmax(logits, -1).gather(1, x[:, t : t + 1])[:, 0]
    torch.testing.assert_close(m.log_prob(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "wavenet"])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_matches_the_enumerated_distribution(kind, temperature):
    k, length = 3, 3
    m = _model(kind, k=k, length=length, seed=4)
    every = torch.tensor(list(itertools.product(range(k), repeat=length)))
    with torch.no_grad():
        logits = m.logits(every) / temperature  # each position's tempered conditional
        logp = torch.log_softmax(logits, -1).gather(-1, every[..., None])[..., 0].sum(-1)
        if temperature == 1.0:
            torch.testing.assert_close(logp, m.log_prob(every))
    p = logp.exp().numpy()
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    torch.manual_seed(0)
    s = m.sample(20000, temperature=temperature)
    codes = (s * torch.tensor([k**2, k, 1])).sum(-1).numpy()
    counts = np.bincount(codes, minlength=k**length)
    expected = 20000 * p
    keep = expected > 5
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3, (chi2, keep.sum())


def test_mu_law_coding():
    q = mu_law_encode(np.array([-1.0, 0.0, 1.0]))
    assert q.tolist() == [0, 128, 255] and q.dtype == np.int64
    ends = mu_law_decode(np.array([0, 255]))
    assert ends.tolist() == [-1.0, 1.0]  # exactly: 256 ** 1 - 1 = 255
    x = np.linspace(-1, 1, 1001)
    codes = mu_law_encode(x)
    assert np.all(np.diff(codes) >= 0) and codes.min() == 0 and codes.max() == 255
    back = mu_law_decode(codes)
    # companding: small amplitudes are coded finely, large ones coarsely
    err = np.abs(back - x)
    assert err[np.abs(x) < 0.01].max() < 1e-3 and err.max() < 0.03
    assert np.sign(back[x > 0.01]).min() == 1
    with pytest.raises(ValueError, match=r"^mu-law encoding needs finite values in \[-1, 1\]$"):
        mu_law_encode(np.array([1.5]))


def test_text_coding_and_files(tmp_path):
    codes, vocab = encode_text("banana")
    assert vocab == "abn" and codes.tolist() == [1, 0, 2, 0, 2, 0]
    assert decode_text(codes, vocab) == "banana"
    with pytest.raises(DataFormatError, match="not in the vocabulary"):
        encode_text("xyz", "xy")
    windows, vocab = text_windows("abcd" * 40, length=16)
    assert windows.shape == (10, 16) and vocab == "abcd"
    path = tmp_path / "t.txt"
    path.write_text("hello world\n" * 30, encoding="utf-8")
    x, vocab = read_text(path)
    assert x.shape == (5, 64) and decode_text(x[0], vocab) == ("hello world\n" * 6)[:64]
    data = split_validation(load_data(str(path)))
    assert data.vocabulary == vocab and data.kind == "integer"
    assert data.x_train.shape[1] == 64 and data.x_val is not None
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xff\xfe" * 40)
    with pytest.raises(DataFormatError, match=r"bad\.txt: not UTF-8 text"):
        load_data(str(bad))
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(DataFormatError, match="shorter than one example of 64"):
        load_data(str(short))


def test_bundled_sequence_data():
    text = load_data("pydoc-text")
    assert text.vocabulary and text.x_train.shape[1] == 64 and len(text.x_train) > 500
    assert text.x_train.max() < len(text.vocabulary)
    assert "Return" in decode_text(text.x_train[:200], text.vocabulary)
    tones = load_data("tones")
    assert tones.x_train.shape == (1800, 128) and tones.num_bins == 256
    assert 0 <= tones.x_train.min() and tones.x_train.max() <= 255


def test_charrnn_learns_a_periodic_text_and_decodes_samples():
    text = "the cat sat on the mat. " * 80
    x, vocab = text_windows(text, length=24)
    est = CharRNN(hidden=32, num_layers=1, vocabulary=vocab, seed=0, device="cpu")
    est.fit(x, num_steps=150, batch_size=16, lr=1e-2)
    per_char = -est.score(x) / 24
    assert per_char < 0.3, per_char  # uniform would be log(11) = 2.4 nats per character
    out = est.decode(est.sample(3, temperature=0.5))
    assert len(out) == 3 and all(len(s) == 24 and set(s) <= set(vocab) for s in out)
    assert any(" the " in s or "cat" in s or "mat" in s for s in out)
    with pytest.raises(ConfigError, match="temperature must be a positive number"):
        est.sample(2, temperature=0)
    with pytest.raises(DataValueError, match=r"integer values in 0\.\.10, found 11\.0"):
        est.score_samples(np.full((1, 24), 11.0))


def test_wavenet_beats_the_uniform_code_on_tones():
    data = load_data("tones")
    est = WaveNet(channels=16, num_layers=4, num_classes=256, seed=0, device="cpu")
    est.fit(data.x_train[:400], num_steps=60, batch_size=32, lr=1e-2)
    per_sample = -est.score(data.x_test[:50]) / 128
    assert per_sample < np.log(256) - 1.5, per_sample  # log 256 = 5.55 nats
    assert est.sample(2, length=40).shape == (2, 40)


def test_sequence_hyperparameters_and_shapes_are_checked():
    with pytest.raises(ConfigError, match="vocabulary must be a string of at least 2 distinct"):
        CharRNN(vocabulary="aa")
    with pytest.raises(ConfigError, match="num_classes 5 does not match the vocabulary's 3"):
        CharRNN(vocabulary="abc", num_classes=5)
    with pytest.raises(ConfigError, match="kernel_size must be an integer >= 2"):
        WaveNet(kernel_size=1)
    with pytest.raises(ConfigError, match=r"models sequences \(N, T\)"):
        WaveNet(seed=0, device="cpu").fit(np.zeros((4, 1, 2, 2)), num_steps=1)
    with pytest.raises(ConfigError, match="has no vocabulary to decode text"):
        WaveNet(channels=4, num_layers=1, seed=0, device="cpu").fit(
            np.zeros((4, 8)) + np.arange(8) % 3, num_steps=1
        ).decode(np.zeros((1, 8)))


def test_cli_trains_on_a_text_file_and_writes_text(tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_text("to be or not to be, that is the question. " * 40, encoding="utf-8")
    out = tmp_path / "run"
    rc = cli.main(
        ["train", "charrnn", "--data", str(path), "--out", str(out), "--steps", "3",
         "--hidden", "8", "--num-layers", "1", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    lines = (out / "samples.txt").read_text().splitlines()
    assert len(lines) == 8 and all(len(s) == 64 for s in lines)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["params"]["vocabulary"] == "".join(sorted(set(path.read_text())))
    target = tmp_path / "s.txt"
    rc = cli.main(
        ["sample", str(out), "--out", str(target), "-n", "4", "--temperature", "0.8"]
    )  # fmt: skip
    assert rc == 0 and len(target.read_text().splitlines()) == 4
    png = tmp_path / "s.png"
    drawn = []
    monkeypatch.setattr("ppdgm.viz.plot_text", lambda lines, **kw: drawn.append(lines))
    assert cli.main(["sample", str(out), "--out", str(png), "-n", "3"]) == 0
    assert len(drawn) == 1 and len(drawn[0]) == 3 and all(len(s) == 64 for s in drawn[0])
    with pytest.raises(SystemExit):
        cli.main(["sample", str(out), "--out", str(target), "--temperature", "0"])


def test_wavenet_sampling_over_its_receptive_field_equals_the_full_prefix():
    # sequences longer than the receptive field (4): the sampler's window must hold it all
    m = _model("wavenet", k=4, length=12, seed=5)
    assert m.net.receptive_field == 4
    torch.manual_seed(0)
    s = m.sample(200)
    torch.manual_seed(0)
    ref = torch.full((200, 1), 4)
    with torch.no_grad():
        for _ in range(12):
            logits = m.net(ref)[:, -1]
            ref = torch.cat(
                [ref, torch.distributions.Categorical(logits=logits).sample()[:, None]], 1
            )
    assert (s == ref[:, 1:]).float().mean() > 0.99
