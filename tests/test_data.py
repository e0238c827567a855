import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from ppdgm.data import (
    TOY_DENSITIES,
    check_likelihood_support,
    load_data,
    load_digits_data,
    toy_density,
)
from ppdgm.errors import DataFormatError, DataValueError, ShapeMismatchError


def test_digits_split_is_fixed_and_documented():
    d = load_digits_data("raw")
    assert d.x_train.shape == (1500, 64) and d.x_test.shape == (297, 64)
    assert d.kind == "integer" and d.num_bins == 17 and d.image_shape == (1, 8, 8)
    again = load_data("digits")
    np.testing.assert_array_equal(d.x_test, again.x_test)
    b = load_data("digits-binary")
    np.testing.assert_array_equal(b.x_train, (d.x_train > 8).astype(np.float32))
    assert b.kind == "binary"
    u = load_data("digits-unit")
    assert u.x_train.max() <= 1.0 and u.kind == "continuous"


@pytest.mark.parametrize("name", sorted(TOY_DENSITIES))
def test_toy_densities_sample_and_integrate(name):
    d = toy_density(name)
    x = d.sample(500, seed=0)
    assert x.shape == (500, 2) and np.isfinite(x).all()
    np.testing.assert_array_equal(x, d.sample(500, seed=0))
    if d.has_log_prob:
        # a midpoint sum over a fine grid integrates the density to one (the grid avoids the
        # origin, where the rings' density has an integrable singularity)
        g = np.linspace(-3.5, 3.5, 701) + 0.005
        xx, yy = np.meshgrid(g, g)
        p = np.exp(d.log_prob(np.stack([xx.ravel(), yy.ravel()], 1)))
        assert abs(p.sum() * (g[1] - g[0]) ** 2 - 1) < 0.02
        # samples fall where the density is high: mean log-density of samples beats uniform
        assert np.isfinite(d.log_prob(x)).all(), "samples outside the density's support"
        # samples follow the density: their mean log-density is E_p[log p] (minus the
        # entropy, from the same grid), within Monte Carlo error; a sampler 1.5x too wide
        # is off by many standard errors
        lp = p * np.log(np.maximum(p, 1e-300))
        expected = lp.sum() * (g[1] - g[0]) ** 2
        got = d.log_prob(d.sample(4000, seed=1))
        assert abs(got.mean() - expected) < 4 * got.std() / np.sqrt(4000) + 0.01, (
            got.mean(),
            expected,
        )


def test_eight_gaussians_density_matches_scipy():
    from scipy.stats import multivariate_normal

    d = toy_density("8gaussians")
    x = np.array([[2.0, 0.0], [0.3, -0.2], [1.41, 1.41]])
    centers = 2 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
    ref = np.log(sum(multivariate_normal(c, 0.15**2 * np.eye(2)).pdf(x) for c in centers) / 8)
    np.testing.assert_allclose(d.log_prob(x), ref, rtol=1e-10)


# -- user files ------------------------------------------------------------------------------
def _write_idx(path, arr, code=0x08):
    dt = {0x08: ">u1", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    payload = header + arr.astype(dt).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(payload)
    return payload


def test_npy_and_npz(tmp_path):
    x = np.random.RandomState(0).rand(50, 3)
    np.save(tmp_path / "a.npy", x)
    d = load_data(tmp_path / "a.npy")
    assert d.x_train.shape == (45, 3) and d.x_test.shape == (5, 3) and d.y_train is None
    y = np.arange(50) % 3
    np.savez(tmp_path / "b.npz", x=x, labels=y)
    d = load_data(tmp_path / "b.npz")
    assert d.y_train is not None and len(d.y_train) == 45
    np.savez(tmp_path / "c.npz", x_train=x[:40], x_test=x[40:], y_train=y[:40], y_test=y[40:])
    d = load_data(tmp_path / "c.npz")
    np.testing.assert_allclose(d.x_test, x[40:].astype(np.float32))


@pytest.mark.parametrize("label", [-1, 2.5])
def test_negative_or_fractional_labels_are_refused(tmp_path, label):
    from ppdgm.data import validate_labels

    y = np.array([0, 1, label, 1])
    with pytest.raises(DataValueError, match=r"label .* at row 2 is not a non-negative integer"):
        validate_labels(y, 4, "y")
    p = tmp_path / "d.csv"
    p.write_text("a,label\n" + "\n".join(f"{i},{v}" for i, v in enumerate(y)) + "\n")
    with pytest.raises(DataValueError, match="not a non-negative integer"):
        load_data(p)
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), y=y)
    with pytest.raises(DataValueError, match="not a non-negative integer"):
        load_data(tmp_path / "d.npz")


def test_idx_labels_beside_the_images_stay_with_their_rows(tmp_path):
    imgs = np.zeros((50, 3, 3))
    imgs[:, 0, 0] = np.arange(50)  # image i starts with the value i
    _write_idx(tmp_path / "data-images-idx3-ubyte", imgs)
    _write_idx(tmp_path / "data-labels-idx1-ubyte", np.arange(50) % 10)
    d = load_data(tmp_path / "data-images-idx3-ubyte")
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        np.testing.assert_array_equal(x[:, 0, 0, 0].astype(int) % 10, y)
    assert len(d.x_train) == 45 and len(d.x_test) == 5


def test_csv_with_header_and_label_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,label\n" + "\n".join(f"{i},{i * 2},{i % 2}" for i in range(20)) + "\n")
    d = load_data(p)
    assert d.shape == (2,) and set(np.concatenate([d.y_train, d.y_test])) == {0, 1}
    d2 = load_data(p, label_column="a")
    assert d2.shape == (2,)
    # the named column is the label, the others stay features, row by row: b = 2 a
    for x, y in ((d2.x_train, d2.y_train), (d2.x_test, d2.y_test)):
        np.testing.assert_array_equal(x[:, 0], 2 * y)
        np.testing.assert_array_equal(x[:, 1], y % 2)
    d3 = load_data(p, label_column=1)
    np.testing.assert_array_equal(d3.x_train[:, 0] * 2, d3.y_train)
    q = tmp_path / "nohead.csv"
    q.write_text("\n".join(f"{i},{i + 1}" for i in range(10)))
    assert load_data(q).shape == (2,)


def test_png_folder_with_class_subfolders(tmp_path):
    rng = np.random.RandomState(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.randint(0, 256, (6, 7), dtype=np.uint8)).save(
                tmp_path / cls / f"{i}.png"
            )
    d = load_data(tmp_path)
    assert d.shape == (1, 6, 7) and d.kind == "integer" and d.image_shape == (1, 6, 7)
    assert sorted(np.concatenate([d.y_train, d.y_test]).tolist()) == [0] * 5 + [1] * 5


def test_idx_gz_and_plain_with_labels(tmp_path):
    rng = np.random.RandomState(0)
    imgs = rng.randint(0, 256, (20, 5, 4)).astype(np.uint8)
    labels = rng.randint(0, 10, 20).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    d = load_data(tmp_path / "train-images-idx3-ubyte.gz")
    assert d.shape == (1, 5, 4) and d.y_train is not None
    all_x = np.concatenate([d.x_train, d.x_test])
    assert sorted(map(tuple, all_x.reshape(20, -1))) == sorted(
        map(tuple, imgs.reshape(20, -1).astype(np.float32))
    )
    _write_idx(tmp_path / "plain-images-idx3-ubyte", imgs)
    assert load_data(tmp_path / "plain-images-idx3-ubyte").y_train is None


# -- bad input: each a named error ---------------------------------------------------------------
def test_nan_and_inf_name_the_row(tmp_path):
    x = np.ones((10, 3))
    x[7, 1] = np.nan
    np.save(tmp_path / "n.npy", x)
    with pytest.raises(DataValueError, match=r"n\.npy.*row 7"):
        load_data(tmp_path / "n.npy")
    p = tmp_path / "inf.csv"
    p.write_text("1,2\n3,inf\n")
    # the file's line number and the column, as for a non-numeric cell
    with pytest.raises(DataValueError, match=r"inf\.csv: row 2, column 1: 'inf' is not a finite"):
        load_data(p)
    q = tmp_path / "nan.csv"
    q.write_text("a,b,c6\n1,2,3\n1,2,3\n1,2,nan\n")
    with pytest.raises(DataValueError, match=r"nan\.csv: row 4, column 'c6': 'nan' is not a fin"):
        load_data(q)


def test_ragged_and_non_numeric_csv(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("a,b\n1,2\n3\n")
    with pytest.raises(DataFormatError, match=r"r\.csv: row 3 has 1 columns, expected 2"):
        load_data(p)
    q = tmp_path / "s.csv"
    q.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(DataFormatError, match=r"s\.csv: row 3, column 'b': 'x' is not a number"):
        load_data(q)


@pytest.mark.parametrize("name,content", [("e.csv", ""), ("h.csv", "a,b\n")])
def test_empty_csv(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataFormatError, match=name):
        load_data(tmp_path / name)


def test_empty_and_wrong_dtype_npy(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    with pytest.raises(DataFormatError, match="empty"):
        load_data(tmp_path / "e.npy")
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataFormatError, match="numeric"):
        load_data(tmp_path / "s.npy")
    np.save(tmp_path / "v.npy", np.arange(5.0))
    with pytest.raises(DataFormatError, match=r"shape \(5,\)"):
        load_data(tmp_path / "v.npy")


def test_pickled_npy_is_refused_not_loaded(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match="pickled"):
        load_data(tmp_path / "o.npy")


def test_corrupt_files(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="bad.npz"):
        load_data(tmp_path / "bad.npz")
    (tmp_path / "t.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataFormatError, match="t.npy"):
        load_data(tmp_path / "t.npy")
    (tmp_path / "x.parquet").write_bytes(b"1")
    with pytest.raises(DataFormatError, match="unknown data format"):
        load_data(tmp_path / "x.parquet")
    with pytest.raises(DataFormatError, match="no such file"):
        load_data(tmp_path / "missing.npy")


def test_truncated_and_bad_idx(tmp_path):
    payload = _write_idx(tmp_path / "a-images-idx3-ubyte", np.zeros((4, 3, 3), np.uint8))
    (tmp_path / "a-images-idx3-ubyte").write_bytes(payload[:-5])
    with pytest.raises(DataFormatError, match="truncated IDX"):
        load_data(tmp_path / "a-images-idx3-ubyte")
    (tmp_path / "b-images-idx3-ubyte").write_bytes(b"\x01\x02\x08\x03" + payload[4:])
    with pytest.raises(DataFormatError, match="bad magic"):
        load_data(tmp_path / "b-images-idx3-ubyte")
    (tmp_path / "c-images-idx3-ubyte").write_bytes(payload + b"xx")
    with pytest.raises(DataFormatError, match="beyond"):
        load_data(tmp_path / "c-images-idx3-ubyte")


def test_image_folder_problems(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataFormatError, match=r"b\.png.*one size"):
        load_data(tmp_path)
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataFormatError, match=r"b\.png: not a readable PNG"):
        load_data(tmp_path)


def test_labels_must_match(tmp_path):
    np.savez(tmp_path / "m.npz", x=np.zeros((10, 2)), y=np.arange(9))
    with pytest.raises(ShapeMismatchError, match="9 labels for 10 examples"):
        load_data(tmp_path / "m.npz")
    np.savez(tmp_path / "f.npz", x=np.zeros((3, 2)), y=np.array([0, 1.5, 2]))
    with pytest.raises(DataValueError, match="row 1"):
        load_data(tmp_path / "f.npz")


def test_likelihood_support_checks():
    x = np.array([[0.0, 1.0], [1.0, 0.5]])
    with pytest.raises(DataValueError, match=r"bernoulli.*0.5 at row 1"):
        check_likelihood_support(x, "bernoulli", "mydata")
    with pytest.raises(DataValueError, match="discretized_logistic"):
        check_likelihood_support(np.array([[0.0, 17.0]]), "discretized_logistic", "d", num_bins=17)
    check_likelihood_support(np.array([[0.0, 16.0]]), "discretized_logistic", "d", num_bins=17)


# -- the checks every loader applies, each pinned (found by mutation testing) ----------------------
@pytest.mark.parametrize(
    "values, expected",
    [
        ([0.0, 1.0, 1.0], ("binary", 2)),
        ([1.0, 1.0], ("binary", 2)),
        ([0.0, 0.0], ("binary", 2)),
        ([0.0, 3.0, 16.0], ("integer", 17)),
        ([2.0, 5.0], ("integer", 6)),
        ([-1.0, 2.0], ("continuous", None)),
        ([0.5, 1.0], ("continuous", None)),
    ],
)
def test_value_kind(values, expected):
    from ppdgm.data.dataset import value_kind

    assert value_kind(np.array(values, dtype=np.float32)) == expected


def test_files_are_split_by_the_fixed_permutation():
    from ppdgm.data.dataset import split_fixed

    x = np.arange(30, dtype=np.float32)[:, None]
    y = np.arange(30)
    xtr, xte, ytr, yte = split_fixed(x, y, "f")
    perm = np.random.RandomState(0).permutation(30)
    np.testing.assert_array_equal(xte[:, 0], perm[:3])  # 10%, the first of the permutation
    np.testing.assert_array_equal(xtr[:, 0], perm[3:])
    np.testing.assert_array_equal(yte, perm[:3])
    again = split_fixed(x, None, "f")
    np.testing.assert_array_equal(again[1], xte)
    assert again[2] is None and again[3] is None
    two = split_fixed(x[:2], None, "f")  # the smallest split: one example each
    assert len(two[0]) == 1 and len(two[1]) == 1
    assert len(split_fixed(x[:25], None, "f")[1]) == 2  # round(2.5) = 2
    with pytest.raises(DataFormatError, match=r"^f: need at least 2 examples to split"):
        split_fixed(x[:1], None, "f")


def test_label_and_shape_checks_say_what_is_wrong():
    from ppdgm.data import check_shape, validate_labels

    with pytest.raises(DataFormatError, match=r"^y: labels must be one-dimensional, got shape"):
        validate_labels(np.zeros((3, 2)), 3, "y")
    with pytest.raises(DataFormatError, match=r"^y: labels must be integers, got dtype <U1"):
        validate_labels(np.array(["a", "b"]), 2, "y")
    with pytest.raises(ShapeMismatchError, match=r"^y: 2 labels for 3 examples$"):
        validate_labels(np.array([0, 1]), 3, "y")
    out = validate_labels(np.array([0.0, 2.0, 1.0]), 3, "y")
    assert out.dtype == np.int64 and out.tolist() == [0, 2, 1]
    assert validate_labels(np.array([True, False]), 2, "y").tolist() == [1, 0]
    with pytest.raises(
        ShapeMismatchError,
        match=r"^d\.npy: examples have shape \(5,\) but the model was trained on shape \(6,\)$",
    ):
        check_shape(np.zeros((2, 5)), (6,), "d.npy")
    check_shape(np.zeros((2, 6)), (6,), "d.npy")


def test_likelihood_support_checks_name_the_value_and_its_row():
    from ppdgm.data import check_likelihood_support

    x = np.zeros((4, 3))
    x[2, 0] = 0.5  # row 2, column 0: a mutant reading the column would say row 0
    with pytest.raises(
        DataValueError,
        match=r"^d: the bernoulli likelihood needs binary data \(0 or 1\), found 0\.5 at row 2; "
        r"binarize the data \(e\.g\. --data digits-binary\) or choose another likelihood$",
    ):
        check_likelihood_support(x, "bernoulli", "d")
    check_likelihood_support(np.eye(3), "bernoulli", "d")
    for bad, bins, upper in ((-1.0, 17, "0..16"), (2.5, 17, "0..16"), (17.0, 17, "0..16"),
                             (-3.0, None, "non-negative integers")):  # fmt: skip
        x = np.ones((4, 3))
        x[3, 1] = bad
        with pytest.raises(
            DataValueError,
            match=rf"^d: the discretized_logistic likelihood needs integer values in {upper}, "
            rf"found {bad} at row 3$",
        ):
            check_likelihood_support(x, "discretized_logistic", "d", bins)
    check_likelihood_support(np.full((2, 2), 16.0), "discretized_logistic", "d", 17)
    check_likelihood_support(np.full((2, 2), 99.0), "discretized_logistic", "d", None)
    check_likelihood_support(np.full((2, 2), -4.2), "gaussian", "d")


def test_arrays_that_are_not_data_are_refused_by_kind():
    from ppdgm.data import validate_array

    with pytest.raises(DataFormatError, match=r"^a: expected a numeric array, got dtype timedelta"):
        validate_array(np.array([[1, 2]], dtype="timedelta64[s]"), "a")
    with pytest.raises(DataFormatError, match=r"\(strings, objects and dates are not data\)$"):
        validate_array(np.array([["x"]]), "a")
    with pytest.raises(DataFormatError, match=r"^a: complex values are not supported"):
        validate_array(np.ones((2, 2), dtype=complex), "a")
    for empty in (np.zeros((0, 3)), np.zeros((3, 0))):
        with pytest.raises(DataFormatError, match=r"^a: the data is empty \(shape"):
            validate_array(empty, "a")


def test_validate_array_returns_float32_and_names_the_bad_cell():
    from ppdgm.data import validate_array

    one = validate_array(np.array([[1, 2, 3]], dtype=np.int64), "a")  # one example is data
    assert one.dtype == np.float32 and one.shape == (1, 3) and one.tolist() == [[1, 2, 3]]
    x = np.ones((3, 2, 4))
    x[1, 1, 3] = np.inf
    with pytest.raises(
        DataValueError,
        match=r"^a: non-finite value inf at row 1, position \(1, 3\); NaN and inf are not allowed$",
    ):
        validate_array(x, "a")
    y = np.ones((4, 5))
    y[2, 4] = np.nan
    with pytest.raises(
        DataValueError, match=r"^a: non-finite value nan at row 2, position \(4,\);"
    ):
        validate_array(y, "a")


# -- load_data: which reader, which split --------------------------------------------------------
def test_digits_views_are_thresholded_and_scaled_from_the_raw_pixels():
    raw, b, u = load_data("digits"), load_data("digits-binary"), load_data("digits-unit")
    np.testing.assert_array_equal(b.x_train, (raw.x_train > 8).astype(np.float32))
    np.testing.assert_allclose(u.x_test, raw.x_test / 16.0)
    assert (raw.name, b.name, u.name) == ("digits", "digits-binary", "digits-unit")
    assert (raw.kind, raw.num_bins, b.kind, b.num_bins, u.kind, u.num_bins) == (
        "integer",
        17,
        "binary",
        2,
        "continuous",
        None,
    )
    np.testing.assert_array_equal(raw.y_train, b.y_train)
    assert raw.image_shape == (1, 8, 8) and raw.x_train.dtype == np.float32
    with pytest.raises(ValueError, match="unknown digits view 'gray'"):
        load_digits_data("gray")


def test_bundled_listing_and_toy_data():
    from ppdgm.data import list_datasets, load_toy_data

    names = dict(list_datasets())
    assert names["digits"] == "scikit-learn 8x8 digits, integer pixels 0..16"
    assert names["digits-binary"] == "digits binarized at pixel > 8"
    assert set(TOY_DENSITIES) <= set(names) and names["8gaussians"].startswith("toy 2-D: ")
    d = load_data("8gaussians")
    assert d.x_train.shape == (8000, 2) and d.x_test.shape == (2000, 2) and d.name == "8gaussians"
    assert d.kind == "continuous" and d.true_log_prob is not None
    density = toy_density("8gaussians")
    np.testing.assert_array_equal(d.x_train, density.sample(8000, seed=1))
    np.testing.assert_array_equal(d.x_test, density.sample(2000, seed=2))
    small = load_toy_data("two-moons", num_train=30, num_test=7)
    assert small.x_train.shape == (30, 2) and small.x_test.shape == (7, 2)
    assert small.true_log_prob is None  # two-moons has no closed-form density


def test_mnist_training_file_takes_its_t10k_test_file(tmp_path):
    rng = np.random.RandomState(0)
    tr, te = rng.randint(0, 256, (12, 4, 4)), rng.randint(0, 256, (5, 4, 4))
    _write_idx(tmp_path / "train-images-idx3-ubyte", tr)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", te)
    d = load_data(tmp_path / "train-images-idx3-ubyte")
    np.testing.assert_array_equal(d.x_train[:, 0], tr)
    np.testing.assert_array_equal(d.x_test[:, 0], te)
    assert d.y_train is None and d.image_shape == (1, 4, 4) and d.kind == "integer"
    assert d.num_bins == int(max(tr.max(), te.max())) + 1
    # labels for the training split only are dropped: a labelled model needs both
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(12) % 10)
    d = load_data(tmp_path / "train-images-idx3-ubyte")
    assert d.y_train is None and d.y_test is None
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5))
    d = load_data(tmp_path / "train-images-idx3-ubyte")
    np.testing.assert_array_equal(d.y_train, np.arange(12) % 10)
    np.testing.assert_array_equal(d.y_test, np.arange(5))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.randint(0, 256, (5, 4, 3)))
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte: test images of shape"):
        load_data(tmp_path / "train-images-idx3-ubyte")
    # the same file under another name is split 90/10 as usual
    (tmp_path / "x-images-idx3-ubyte").write_bytes(
        (tmp_path / "train-images-idx3-ubyte").read_bytes()
    )
    d = load_data(tmp_path / "x-images-idx3-ubyte")
    assert len(d.x_train) == 11 and len(d.x_test) == 1


def test_idx_labels_named_with_dots_and_given_explicitly(tmp_path):
    imgs = np.zeros((10, 2, 2))
    imgs[:, 0, 0] = np.arange(10)
    _write_idx(tmp_path / "a-images.idx3", imgs)
    _write_idx(tmp_path / "a-labels.idx1", np.arange(10))
    d = load_data(tmp_path / "a-images.idx3")
    np.testing.assert_array_equal(d.x_train[:, 0, 0, 0], d.y_train)
    np.save(tmp_path / "other.npy", 9 - np.arange(10))
    d = load_data(tmp_path / "a-images.idx3", labels=tmp_path / "other.npy")
    np.testing.assert_array_equal(9 - d.x_train[:, 0, 0, 0], d.y_train)
    _write_idx(tmp_path / "flat-images-idx2-ubyte", np.arange(20).reshape(10, 2))
    assert load_data(tmp_path / "flat-images-idx2-ubyte").x_train.shape == (9, 2)


def test_labels_file_beside_any_data_file(tmp_path):
    x = np.zeros((10, 3))
    x[:, 0] = np.arange(10)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(10) % 4)
    d = load_data(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    np.testing.assert_array_equal(d.x_train[:, 0] % 4, d.y_train)
    np.testing.assert_array_equal(d.x_test[:, 0] % 4, d.y_test)
    np.save(tmp_path / "short.npy", np.arange(9))
    with pytest.raises(ShapeMismatchError, match=r"short\.npy: 9 labels for 10 examples"):
        load_data(tmp_path / "x.npy", labels=tmp_path / "short.npy")


def test_image_arrays_get_a_channel_and_too_many_dimensions_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 5, 6)))
    d = load_data(tmp_path / "a.npy")
    assert d.x_train.shape == (9, 1, 5, 6) and d.image_shape == (1, 5, 6)
    np.save(tmp_path / "c.npy", np.zeros((10, 3, 5, 6)))
    assert load_data(tmp_path / "c.npy").image_shape == (3, 5, 6)
    np.save(tmp_path / "v.npy", np.zeros((10, 4)))
    assert load_data(tmp_path / "v.npy").image_shape is None
    np.save(tmp_path / "b.npy", np.zeros((10, 2, 3, 4, 5)))
    with pytest.raises(DataFormatError, match=r"b\.npy: examples of shape \(2, 3, 4, 5\) have too"):
        load_data(tmp_path / "b.npy")
    x3 = np.random.RandomState(0).randint(0, 3, (6, 2, 2)).astype(float)
    np.savez(tmp_path / "s.npz", x_train=x3[:3], x_test=x3[3:5], x_val=x3[5:])
    d = load_data(tmp_path / "s.npz")
    assert d.x_train.shape == (3, 1, 2, 2) and d.x_val.shape == (1, 1, 2, 2)
    assert d.image_shape == (1, 2, 2) and d.x_test.shape == (2, 1, 2, 2)
    assert (d.kind, d.num_bins) == ("integer", int(x3.max()) + 1)
    np.savez(tmp_path / "t.npz", x_train=x3[:3], x_test=x3[3:])
    d = load_data(tmp_path / "t.npz")
    assert d.x_val is None and d.x_test.shape == (3, 1, 2, 2)


def test_unknown_format_and_missing_path_name_the_choices(tmp_path):
    (tmp_path / "noext").write_text("1")
    with pytest.raises(DataFormatError, match=r"unknown data format '\(no extension\)'; expected"):
        load_data(tmp_path / "noext")
    with pytest.raises(DataFormatError, match=r"nope: no such file .* \(bundled: digits, digits-"):
        load_data("nope")


def test_digits_split_is_the_documented_permutation_with_labels():
    from sklearn.datasets import load_digits

    raw = load_digits()
    perm = np.random.RandomState(0).permutation(1797)
    for view, expect in (("raw", raw.data), ("binary", raw.data > 8), ("unit", raw.data / 16)):
        d = load_digits_data(view)
        assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
        np.testing.assert_allclose(d.x_train, expect[perm[:1500]].astype(np.float32))
        np.testing.assert_allclose(d.x_test, expect[perm[1500:]].astype(np.float32))
        np.testing.assert_array_equal(d.y_train, raw.target[perm[:1500]])
        np.testing.assert_array_equal(d.y_test, raw.target[perm[1500:]])
    assert load_digits_data().name == "digits"  # the raw view by default


def test_loaded_files_are_named_by_their_path_with_their_kind(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(20).reshape(10, 2))
    d = load_data(tmp_path / "a.npy")
    assert d.name == str(tmp_path / "a.npy") and (d.kind, d.num_bins) == ("integer", 20)
    np.savez(tmp_path / "s.npz", x_train=np.zeros((3, 2)), x_test=np.ones((2, 2)))
    assert load_data(tmp_path / "s.npz").name == str(tmp_path / "s.npz")
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 2, 2)))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 2, 2)))
    assert load_data(tmp_path / "train-images-idx3-ubyte").name == str(
        tmp_path / "train-images-idx3-ubyte"
    )
    np.save(tmp_path / "one.npy", np.zeros((1, 2)))
    with pytest.raises(DataFormatError, match=r"one\.npy: need at least 2 examples to split"):
        load_data(tmp_path / "one.npy")


def test_npz_splits_keep_their_labels_and_the_validation_values_count(tmp_path):
    x = np.zeros((4, 2))
    np.savez(
        tmp_path / "v.npz",
        x_train=x,
        x_test=x[:2],
        x_val=np.full((2, 2), 5.0),  # the largest value is in the validation split only
        y_train=[0, 1, 2, 3],
        y_test=[1, 0],
        y_val=[2, 2],
    )
    d = load_data(tmp_path / "v.npz")
    assert (d.kind, d.num_bins) == ("integer", 6)
    assert d.y_train.tolist() == [0, 1, 2, 3] and d.y_test.tolist() == [1, 0]
    assert d.y_val.tolist() == [2, 2]


def test_float_idx_with_nan_and_mismatched_test_images_are_named(tmp_path):
    imgs = np.zeros((3, 2, 2), np.float32)
    imgs[1, 0, 1] = np.nan
    _write_idx(tmp_path / "f-images-idx3-ubyte", imgs, code=0x0D)
    with pytest.raises(DataValueError, match=r"f-images-idx3-ubyte: non-finite value nan at row 1"):
        load_data(tmp_path / "f-images-idx3-ubyte")
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 3, 2)))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 2, 3)))
    with pytest.raises(
        DataFormatError,
        match=r"t10k-images-idx3-ubyte: test images of shape \(1, 2, 3\) do not match the "
        r"training images' \(1, 3, 2\) in .*train-images-idx3-ubyte$",
    ):
        load_data(tmp_path / "train-images-idx3-ubyte")


def test_format_refusals_say_what_is_expected(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"1")
    with pytest.raises(
        DataFormatError,
        match=r"x\.parquet: unknown data format '\.parquet'; expected \.npy, \.npz, \.csv, "
        r"\.txt \(text\), an IDX file or a folder of PNG images$",
    ):
        load_data(tmp_path / "x.parquet")
    np.save(tmp_path / "b.npy", np.zeros((10, 2, 3, 4, 5)))
    with pytest.raises(
        DataFormatError,
        match=r"have too many dimensions; expected \(N, D\) vectors or \(N, C, H, W\) images$",
    ):
        load_data(tmp_path / "b.npy")
