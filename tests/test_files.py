"""The file readers of ``ppdgm.data.files`` called directly: every format's values, and every
refusal's message (the file, the place and the problem)."""

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from ppdgm.data.files import (
    is_idx_path,
    read_csv,
    read_csv_columns,
    read_idx,
    read_image_folder,
    read_labels,
    read_npy,
    read_npz,
)
from ppdgm.errors import DataFormatError, DataValueError, ShapeMismatchError

IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def write_idx(path, arr, code=0x08, extra=b""):
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    payload = header + np.asarray(arr).astype(IDX_CODES[code]).tobytes() + extra
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(payload)
    return payload


# -- CSV columns (the data of `ppdgm infer`) ----------------------------------------------------
def test_csv_columns_are_typed_per_column(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("n, x ,s\n1,0.5,-3\n+2,1e3,4\n\n-7,2,5\n")
    cols = read_csv_columns(p)
    assert list(cols) == ["n", "x", "s"]  # header cells are stripped
    assert cols["n"].dtype == np.int64 and cols["n"].tolist() == [1, 2, -7]
    assert cols["x"].dtype == np.float64 and cols["x"].tolist() == [0.5, 1000.0, 2.0]
    assert cols["s"].dtype == np.int64 and cols["s"].tolist() == [-3, 4, 5]
    q = tmp_path / "f.csv"
    q.write_text("a\n1\n2.0\n")
    assert read_csv_columns(q)["a"].dtype == np.float64


@pytest.mark.parametrize(
    "content,error,message",
    [
        ("1,2\n3,4\n", DataFormatError, r"c\.csv: needs a header row naming the columns"),
        ("a,,b\nx,1,2\n", DataFormatError, r"c\.csv: column 1 has an empty name"),
        ("a,b,a\nx,1,2\n", DataFormatError, r"c\.csv: column name 'a' appears twice"),
        ("a,b\n1,2\n3, \n", DataValueError, r"c\.csv: row 3, column 'b': empty cell"),
        ("a,b\n1,2\n\n3,x\n", DataValueError, r"c\.csv: row 3, column 'b': 'x' is not a number"),
        ("a,b\n1,nan\n", DataValueError, r"c\.csv: row 2, column 'b': 'nan' is not a finite"),
        ("a,b\n1,-inf\n", DataValueError, r"row 2, column 'b': '-inf' is not a finite number$"),
        ("a,b\n1,2\n3\n", DataFormatError, r"c\.csv: row 3 has 1 columns, expected 2 \(ragged"),
        ("a,b\n", DataFormatError, r"c\.csv: has a header but no data rows$"),
        ("\n , \n", DataFormatError, r"c\.csv: the file is empty$"),
    ],
)
def test_csv_columns_refusals_name_the_place(tmp_path, content, error, message):
    p = tmp_path / "c.csv"
    p.write_text(content)
    with pytest.raises(error, match=message):
        read_csv_columns(p)


def test_csv_that_is_not_text_or_not_csv(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes(b"\xff\xfe\x00a,b\n")
    with pytest.raises(DataFormatError, match=r"b\.csv: not a text CSV file \(cannot decode"):
        read_csv(p)
    q = tmp_path / "q.csv"
    q.write_text("a\n" + "1" * 200_000 + "\n")  # beyond the csv module's field limit
    with pytest.raises(DataFormatError, match=r"q\.csv: malformed CSV \(field larger"):
        read_csv(q)


# -- CSV examples -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["label", "Labels", "Y", "target", "CLASS"])
def test_csv_label_column_found_by_its_usual_names(tmp_path, name):
    p = tmp_path / "d.csv"
    p.write_text(f"a,{name},b\n1,0,2\n3,1,4\n5,2,6\n")
    x, y = read_csv(p)
    np.testing.assert_array_equal(x, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(y, [0, 1, 2])
    assert x.dtype == np.float32


def test_csv_label_column_by_name_or_index_and_their_errors(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,c\n1,0,2\n3,1,4\n")
    x, y = read_csv(p)
    assert y is None and x.shape == (2, 3)
    x, y = read_csv(p, label_column="b")
    np.testing.assert_array_equal(x, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(y, [0, 1])
    for column in (1, "1"):
        x2, y2 = read_csv(p, label_column=column)
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(y2, y)
    x, y = read_csv(p, label_column=0)
    np.testing.assert_array_equal(y, [1, 3])
    x, y = read_csv(p, label_column=2)
    np.testing.assert_array_equal(y, [2, 4])
    np.testing.assert_array_equal(x, [[1, 0], [3, 1]])
    with pytest.raises(DataFormatError, match=r"d\.csv: label column 3 out of range 0\.\.2"):
        read_csv(p, label_column=3)
    with pytest.raises(DataFormatError, match=r"d\.csv: label column -1 out of range"):
        read_csv(p, label_column=-1)
    with pytest.raises(DataFormatError, match=r"d\.csv: no column named 'z' in the header"):
        read_csv(p, label_column="z")
    q = tmp_path / "nohead.csv"
    q.write_text("1,0\n2,1\n")
    with pytest.raises(DataFormatError, match=r"nohead\.csv: no column named 'a'"):
        read_csv(q, label_column="a")
    x, y = read_csv(q, label_column=1)
    np.testing.assert_array_equal(x, [[1], [2]])
    np.testing.assert_array_equal(y, [0, 1])
    r = tmp_path / "only.csv"
    r.write_text("label\n0\n1\n")
    with pytest.raises(DataFormatError, match=r"only\.csv: no data columns besides the label"):
        read_csv(r)


def test_csv_without_header_names_columns_by_index(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("1,2,3\n4,5,six\n")
    with pytest.raises(DataFormatError, match=r"n\.csv: row 2, column 2: 'six' is not a number$"):
        read_csv(p)
    q = tmp_path / "m.csv"
    q.write_text("x,y\n1,2\n4, inf\n")
    with pytest.raises(
        DataValueError,
        match=r"m\.csv: row 3, column 'y': 'inf' is not a finite number; NaN and inf are not",
    ):
        read_csv(q, label_column=None)


# -- labels, npy, npz ---------------------------------------------------------------------------
def test_labels_from_npy_columns_and_idx(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[2], [0], [1]]))
    np.testing.assert_array_equal(read_labels(tmp_path / "a.npy", 3), [2, 0, 1])
    np.save(tmp_path / "b.npy", np.array([2, 0, 1, 1]))
    with pytest.raises(ShapeMismatchError, match="4 labels for 3 examples"):
        read_labels(tmp_path / "b.npy", 3)
    np.save(tmp_path / "c.npy", np.zeros((3, 2)))
    with pytest.raises((DataFormatError, ShapeMismatchError), match=r"c\.npy"):
        read_labels(tmp_path / "c.npy", 3)
    write_idx(tmp_path / "l-labels-idx1-ubyte", np.array([3, 1, 4]))
    np.testing.assert_array_equal(read_labels(tmp_path / "l-labels-idx1-ubyte", 3), [3, 1, 4])
    (tmp_path / "l.txt").write_text("1\n2\n")
    with pytest.raises(DataFormatError, match=r"l\.txt: unknown labels format '\.txt'"):
        read_labels(tmp_path / "l.txt", 2)
    (tmp_path / "noext").write_text("1\n")
    with pytest.raises(DataFormatError, match=r"unknown labels format '\(no extension\)'"):
        read_labels(tmp_path / "noext", 1)


def test_npy_values_come_back_as_float32(tmp_path):
    x = np.arange(12).reshape(4, 3)
    np.save(tmp_path / "a.npy", x)
    got, y = read_npy(tmp_path / "a.npy")
    assert y is None and got.dtype == np.float32
    np.testing.assert_array_equal(got, x)


def test_npz_keys_in_their_order_of_preference(tmp_path):
    x, other = np.arange(6.0).reshape(3, 2), np.ones((3, 2))
    np.savez(tmp_path / "a.npz", images=other, X=x, Y=[1, 2, 0], targets=[0, 0, 0])
    out = read_npz(tmp_path / "a.npz")
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["y"], [1, 2, 0])
    np.savez(tmp_path / "b.npz", features=x)
    out = read_npz(tmp_path / "b.npz")
    np.testing.assert_array_equal(out["x"], x)
    assert out["y"] is None
    np.savez(tmp_path / "c.npz", first=x, second=x)
    with pytest.raises(
        DataFormatError, match=r"c\.npz: cannot tell which array is the data among \['first'"
    ):
        read_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "e.npz")
    with pytest.raises(DataFormatError, match=r"e\.npz: the archive holds no arrays"):
        read_npz(tmp_path / "e.npz")
    np.savez(tmp_path / "d.npz", data=np.array([[1.0, np.nan]]))
    with pytest.raises(DataValueError, match=r"d\.npz\[data\]"):
        read_npz(tmp_path / "d.npz")


def test_npz_with_its_own_splits(tmp_path):
    rng = np.random.RandomState(0)
    a, b, c = rng.rand(5, 2), rng.rand(3, 2), rng.rand(2, 2)
    np.savez(tmp_path / "s.npz", x_train=a, x_test=b, x_val=c)
    out = read_npz(tmp_path / "s.npz")
    for key, v in (("x_train", a), ("x_test", b), ("x_val", c)):
        np.testing.assert_allclose(out[key], v.astype(np.float32))
    assert out["y_train"] is None and out["y_test"] is None and out["y_val"] is None
    np.savez(tmp_path / "t.npz", x_train=a, x_test=b, y_train=np.arange(5) % 2, y_test=[0, 1, 1])
    out = read_npz(tmp_path / "t.npz")
    assert out["x_val"] is None and out["y_val"] is None and out["y_test"].tolist() == [0, 1, 1]
    cases = [
        ({"x_train": a}, r"has 'x_train' but no 'x_test'"),
        ({"x_train": a, "x_test": b, "y_val": [0, 1]}, r"has 'y_val' but no 'x_val'"),
        (
            {"x_train": a, "x_test": rng.rand(3, 4)},
            r"x_train examples have shape \(2,\) but x_test examples have shape \(4,\)",
        ),
        (
            {"x_train": a, "x_test": b, "x_val": rng.rand(2, 3)},
            r"but x_val examples have shape \(3,\)",
        ),
        ({"x_train": a, "x_test": b, "y_train": np.zeros(5)}, r"labels given for only some of"),
        (
            {"x_train": a, "x_test": b, "x_val": c, "y_train": np.zeros(5), "y_test": np.zeros(3)},
            r"labels given for only some of train/test/val",
        ),
        ({"x_train": a, "x_test": b[:, :1] * np.nan}, r"u\.npz\[x_test\]"),
    ]
    for arrays, message in cases:
        np.savez(tmp_path / "u.npz", **arrays)
        with pytest.raises((DataFormatError, DataValueError), match=message):
            read_npz(tmp_path / "u.npz")


def test_npy_and_npz_refusals_name_the_file(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(DataFormatError, match=r"a\.npy: not a valid \.npy file"):
        read_npy(tmp_path / "a.npy")
    (tmp_path / "b.npz").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(DataFormatError, match=r"b\.npz: not a valid \.npz file"):
        read_npz(tmp_path / "b.npz")
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataFormatError, match=r"o\.npz: holds pickled Python objects"):
        read_npz(tmp_path / "o.npz")


# -- IDX ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", sorted(IDX_CODES))
def test_idx_every_dtype_round_trips_in_native_byte_order(tmp_path, code):
    arr = (np.arange(24).reshape(2, 3, 4) * (1 if code in (0x08,) else -1)).astype(IDX_CODES[code])
    if code in (0x0D, 0x0E):
        arr = arr / 4
    write_idx(tmp_path / "a.idx3.gz", arr, code)
    got = read_idx(tmp_path / "a.idx3.gz")
    assert got.dtype == np.dtype(IDX_CODES[code]).newbyteorder("=")
    assert got.dtype.isnative and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, arr)


def test_idx_header_refusals(tmp_path):
    p = tmp_path / "a.idx"
    cases = [
        (b"\x00\x00", r"a\.idx: too short to be an IDX file \(no header\)"),
        (b"\x00\x00\x08\x00", r"a\.idx: IDX header declares zero dimensions"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x03", r"a\.idx: truncated IDX header"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", r"not an IDX file \(bad magic number 00000701\)"),
        (b"\x00\x01\x08\x01\x00\x00\x00\x01\x00", r"bad magic number 00010801"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", r"bad magic number 01000801"),
        (
            b"\x00\x00\x08\x02" + struct.pack(">II", 2**16, 2**16),
            r"a\.idx: IDX header declares 4294967296 bytes, more than allowed",
        ),
        (
            b"\x00\x00\x0c\x01" + struct.pack(">I", 3) + b"\x00" * 11,
            r"truncated IDX file: header declares shape \(3,\) \(12 bytes\) but only 11 bytes",
        ),
        (
            b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00" * 3,
            r"a\.idx: IDX file has data beyond the shape \(2,\) its header declares",
        ),
    ]
    for content, message in cases:
        p.write_bytes(content)
        with pytest.raises(DataFormatError, match=message):
            read_idx(p)
    p.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 2**31 - 1))  # just within the limit
    with pytest.raises(DataFormatError, match="truncated IDX file"):
        read_idx(p)
    q = tmp_path / "b.idx.gz"
    q.write_bytes(b"not gzip at all")
    with pytest.raises(DataFormatError, match=r"b\.idx\.gz: cannot read IDX file"):
        read_idx(q)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("train-images-idx3-ubyte", True),
        ("train-labels-idx1-ubyte.gz", True),
        ("T10K-IMAGES-IDX3-UBYTE.GZ", True),
        ("x.idx", True),
        ("x.idx3", True),
        ("x.idx.gz", True),
        ("x.npy", False),
        ("idx3-ubyte.txt", False),
        ("x.gz", False),
    ],
)
def test_idx_file_names(tmp_path, name, expected):
    assert is_idx_path(tmp_path / name) is expected


# -- PNG folders --------------------------------------------------------------------------------
def test_png_folder_unlabelled_gray_and_colour(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(gray).save(tmp_path / "a.png")
    x, y = read_image_folder(tmp_path)
    assert y is None and x.shape == (1, 1, 3, 4)
    np.testing.assert_array_equal(x[0, 0], gray)
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 7
    Image.fromarray(rgb).save(tmp_path / "b.png")
    x, y = read_image_folder(tmp_path)
    assert x.shape == (2, 3, 3, 4)  # one colour image makes all of them RGB
    np.testing.assert_array_equal(x[0], np.stack([gray] * 3))
    np.testing.assert_array_equal(x[1, 0], 200)
    np.testing.assert_array_equal(x[1, 2], 7)


def test_png_palette_images_are_gray_only_when_their_palette_is(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "h").mkdir()
    im = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    im.putpalette([10, 10, 10, 90, 90, 90] + [0] * 762)
    im.save(tmp_path / "g" / "a.png")
    x, y = read_image_folder(tmp_path)
    assert x.shape == (1, 1, 2, 2) and y.tolist() == [0]
    np.testing.assert_array_equal(x[0, 0], [[10, 90], [90, 10]])
    col = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    col.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    col.save(tmp_path / "h" / "b.png")
    x, y = read_image_folder(tmp_path)
    assert x.shape == (2, 3, 2, 2) and y.tolist() == [0, 1]
    np.testing.assert_array_equal(x[1, :, 0, 0], [255, 0, 0])
    np.testing.assert_array_equal(x[0, :, 0, 1], [90, 90, 90])


def test_png_folder_refusals(tmp_path):
    with pytest.raises(DataFormatError, match="the folder holds no .png images"):
        read_image_folder(tmp_path)
    (tmp_path / "c").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "c" / "a.png")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "top.png")
    with pytest.raises(DataFormatError, match="mixes images at the top level with images in"):
        read_image_folder(tmp_path)


def test_png_larger_than_allowed_is_refused_before_decoding(tmp_path, monkeypatch):
    import ppdgm.data.files as files

    Image.fromarray(np.zeros((3, 4), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(files, "MAX_IMAGE_PIXELS", 12)
    assert read_image_folder(tmp_path)[0].shape == (1, 1, 3, 4)
    monkeypatch.setattr(files, "MAX_IMAGE_PIXELS", 11)
    with pytest.raises(DataFormatError, match=r"a\.png: image of 4x3 pixels is larger than"):
        read_image_folder(tmp_path)


# -- what mutation testing showed unpinned ------------------------------------------------------
def test_refusals_of_labels_name_their_file(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2)), y=[0, -1, 1])
    with pytest.raises(DataValueError, match=r"d\.npz\[x\].*row 1"):
        read_npz(tmp_path / "d.npz")
    p = tmp_path / "d.csv"
    p.write_text("a,label\n1,0\n2,-1\n")
    with pytest.raises(DataValueError, match=r"d\.csv.*row 1"):
        read_csv(p)
    q = tmp_path / "e.csv"
    q.write_text("a,label\n1e39,0\n")  # beyond float32
    with pytest.raises(
        DataValueError,
        match=r"e\.csv: value 1e\+39 at row 0, position \(0,\) is beyond the float32",
    ):
        read_csv(q)
    (tmp_path / "l.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(DataFormatError, match=r"l\.npy: not a valid \.npy file"):
        read_labels(tmp_path / "l.npy", 3)
    (tmp_path / "l.txt").write_text("1\n")
    with pytest.raises(
        DataFormatError,
        match=r"l\.txt: unknown labels format '\.txt'; expected \.npy or an IDX file$",
    ):
        read_labels(tmp_path / "l.txt", 1)


def test_npz_validation_split_with_labels_and_the_keys_listed(tmp_path):
    rng = np.random.RandomState(0)
    np.savez(
        tmp_path / "v.npz",
        x_train=rng.rand(4, 2),
        x_test=rng.rand(2, 2),
        x_val=rng.rand(3, 2),
        y_train=[0, 1, 0, 1],
        y_test=[1, 1],
        y_val=[0, 0, 1],
    )
    out = read_npz(tmp_path / "v.npz")
    assert out["y_val"].tolist() == [0, 0, 1] and out["x_val"].shape == (3, 2)
    np.savez(tmp_path / "c.npz", first=np.ones((2, 2)), second=np.ones((2, 2)))
    with pytest.raises(
        DataFormatError,
        match=r"among \['first', 'second'\]; name it one of x, X, data, images \(or x_train/x_t",
    ):
        read_npz(tmp_path / "c.npz")


def test_a_header_wider_than_the_rows_is_ragged(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("a,b,c\n1,2\n3,4\n")
    for reader in (read_csv, read_csv_columns):
        with pytest.raises(DataFormatError, match=r"w\.csv: row 2 has 2 columns, expected 3"):
            reader(p)


def test_png_folder_ignores_other_files_and_reads_every_gray_mode_as_one_channel(tmp_path):
    values = np.array([[0, 1, 0], [1, 1, 0]], np.uint8)
    Image.fromarray(values * 255).convert("1").save(tmp_path / "a_bilevel.png")
    Image.fromarray(values * 200, mode="L").convert("LA").save(tmp_path / "b_la.png")
    Image.fromarray(values.astype(np.uint16) * 70).save(tmp_path / "d_i16.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()  # a folder with an image's name is no image
    modes = [Image.open(p).mode for p in sorted(tmp_path.glob("*_*.png"))]
    assert modes == ["1", "LA", "I;16"]  # (Pillow writes no 32-bit "I" PNG)
    x, y = read_image_folder(tmp_path)
    assert y is None and x.shape == (3, 1, 2, 3)  # gray, every one
    np.testing.assert_array_equal(x[0, 0] > 0, values.astype(bool))
    np.testing.assert_array_equal(x[1, 0], values * 200)
    np.testing.assert_array_equal(x[2, 0], values * 70)


def test_png_sizes_are_checked_whichever_image_comes_first(tmp_path):
    rgb = np.zeros((3, 4, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(tmp_path / "b.png")
    assert read_image_folder(tmp_path)[0].shape == (2, 3, 3, 4)
    Image.fromarray(np.zeros((5, 2), np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(
        DataFormatError,
        match=r"c\.png: image is 2x5 pixels but a\.png is 4x3; all images must have one size$",
    ):
        read_image_folder(tmp_path)


@pytest.mark.parametrize(
    "colour,gray",
    [((90, 90, 90), True), ((200, 10, 10), False), ((10, 10, 200), False), ((10, 200, 10), False)],
)
def test_png_palette_is_gray_only_when_all_three_channels_agree(tmp_path, colour, gray):
    im = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    im.putpalette([0, 0, 0, *colour] + [0] * 762)
    im.save(tmp_path / "p.png")
    x, _ = read_image_folder(tmp_path)
    assert x.shape == ((1, 1, 1, 2) if gray else (1, 3, 1, 2))
    np.testing.assert_array_equal(x[0, :, 0, 1], [colour[0]] if gray else colour)


def test_idx_size_limit_is_inclusive(tmp_path, monkeypatch):
    import ppdgm.data.files as files

    monkeypatch.setattr(files, "MAX_IDX_BYTES", 12)
    p = tmp_path / "a.idx"
    write_idx(p, np.zeros((3, 4), np.uint8))  # exactly 12 bytes: allowed
    assert read_idx(p).shape == (3, 4)
    write_idx(p, np.zeros((13,), np.uint8))
    with pytest.raises(DataFormatError, match=r"declares 13 bytes, more than allowed"):
        read_idx(p)
