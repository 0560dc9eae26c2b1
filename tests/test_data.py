"""Datasets: search order, loaders, and downloads from local servers only."""

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from tfvae import data

RNG = np.random.default_rng(7)


@contextlib.contextmanager
def http_server(folder, handler_class=None):
    """A quiet HTTP server on 127.0.0.1 serving `folder`; yields its base URL."""

    class Quiet(handler_class or http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No TFVAE_DATA_DIR, and a home cache inside tmp_path."""
    monkeypatch.delenv("TFVAE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def fake_binarized_mnist(folder, n=5):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        s: np.packbits(RNG.random((n, 784)) < 0.2, axis=1)
        for s in ("train", "valid", "test")
    }
    np.savez(folder / "binarized_mnist.npz", **arrays)
    return arrays


def amat_bytes(bits):
    """The .amat text of 0/1 rows: values separated by spaces, one row a line."""
    chars = np.full((len(bits), 2 * 784), ord(" "), np.uint8)
    chars[:, ::2] = bits + ord("0")
    chars[:, -1] = ord("\n")
    return chars.tobytes()


def test_search_order_data_dir_then_environment_then_home_cache(isolated, monkeypatch):
    first = fake_binarized_mnist(isolated / "first", n=3)
    env = fake_binarized_mnist(isolated / "env", n=4)
    cache = fake_binarized_mnist(isolated / "xdg" / "tfvae", n=6)
    monkeypatch.setenv("TFVAE_DATA_DIR", str(isolated / "env"))
    loaded = data.load("binarized_mnist", "valid", data_dir=isolated / "first")
    np.testing.assert_array_equal(
        loaded, np.unpackbits(first["valid"], axis=1)[:, :784]
    )
    assert len(data.load("binarized_mnist", "valid")) == len(env["valid"])
    monkeypatch.delenv("TFVAE_DATA_DIR")
    assert len(data.load("binarized_mnist", "valid")) == len(cache["valid"])
    assert data.search_path(isolated / "first")[0] == str(isolated / "first")


@pytest.mark.slow
def test_real_binarized_mnist_matches_its_readme(binarized_mnist):
    for split, n, mean in (
        ("train", 50_000, 0.1306),
        ("valid", 10_000, 0.1311),
        ("test", 10_000, 0.1325),
    ):
        x = data.load("binarized_mnist", split)
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert abs(x.mean() - mean) < 1e-4
        np.testing.assert_array_equal(x, binarized_mnist[split])


@pytest.mark.slow
def test_download_of_binarized_mnist_from_a_local_server(binarized_mnist, isolated):
    served = isolated / "served"
    served.mkdir()
    for split, x in binarized_mnist.items():
        (served / f"binarized_mnist_{split}.amat").write_bytes(
            amat_bytes(x.astype(np.uint8))
        )
    target = isolated / "target"
    with http_server(served) as url:
        loaded = data.load("binarized_mnist", "test", data_dir=target, source=url)
    np.testing.assert_array_equal(loaded, binarized_mnist["test"])
    assert os.listdir(target) == ["binarized_mnist.npz"]  # nothing partial left
    # The cache is the documented format: 784 bits packed into 98 bytes a row.
    cached = np.load(target / "binarized_mnist.npz")
    for split, x in binarized_mnist.items():
        np.testing.assert_array_equal(
            cached[split], np.packbits(x.astype(np.uint8), axis=1)
        )


def test_a_download_that_fails_verification_leaves_nothing(isolated):
    served = isolated / "served"
    served.mkdir()
    for split in ("train", "valid", "test"):
        bits = (RNG.random((4, 784)) < 0.2).astype(np.uint8)
        (served / f"binarized_mnist_{split}.amat").write_bytes(amat_bytes(bits))
    with http_server(served) as url:
        with pytest.raises(data.DataNotFoundError, match="failed verification: sha256"):
            data.load(
                "binarized_mnist", "test", data_dir=isolated / "target", source=url
            )
    assert not (isolated / "target").exists() or os.listdir(isolated / "target") == []


class Truncating(http.server.SimpleHTTPRequestHandler):
    """Announces the whole file, sends a third of it, and hangs up."""

    def do_GET(self):
        path = self.translate_path(self.path)
        body = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 3])
        self.wfile.flush()
        self.close_connection = True


def test_an_interrupted_download_leaves_nothing(isolated):
    served = isolated / "served"
    served.mkdir()
    (served / "mnist.npz").write_bytes(b"x" * 30_000)
    with http_server(served, Truncating) as url:
        with pytest.raises(data.DataNotFoundError) as info:
            data.load("mnist", data_dir=isolated / "target", source=url)
    assert "failed" in str(info.value)
    assert not (isolated / "target").exists() or os.listdir(isolated / "target") == []


def test_offline_error_says_where_it_looked_and_what_to_do(isolated):
    with pytest.raises(data.DataNotFoundError) as info:
        data.load(
            "binarized_mnist",
            "test",
            data_dir=isolated / "d",
            source="http://127.0.0.1:1/",
        )
    message = str(info.value)
    assert str(isolated / "d") in message and str(isolated / "xdg" / "tfvae") in message
    assert "Put binarized_mnist.npz" in message and "TFVAE_DATA_DIR" in message
    with pytest.raises(data.DataNotFoundError, match="download=False"):
        data.load("binarized_mnist", "test", download=False)


def idx_labels(labels):
    header = (2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big")
    return gzip.compress(header + np.asarray(labels, np.uint8).tobytes())


def idx_images(images):
    header = (2051).to_bytes(4, "big") + len(images).to_bytes(4, "big")
    header += (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    return gzip.compress(header + images.astype(np.uint8).tobytes())


def test_fashion_mnist_from_a_file_url(isolated, monkeypatch):
    served = isolated / "served"
    served.mkdir()
    arrays = {
        s: RNG.integers(0, 256, (n, 28, 28)) for s, n in (("train", 6), ("test", 3))
    }
    arrays.update(
        train_labels=RNG.integers(0, 10, 6), test_labels=RNG.integers(0, 10, 3)
    )
    digests = {}
    for key, file in data._SOURCES["fashion_mnist"].files.items():
        if key.endswith("_labels"):
            raw = idx_labels(arrays[key])
        else:
            raw = idx_images(arrays[key])
        (served / file).write_bytes(raw)
        digests[key] = ("md5", hashlib.md5(raw).hexdigest())
    source = dataclasses.replace(
        data._SOURCES["fashion_mnist"], digests=digests, held_out=2
    )
    monkeypatch.setitem(data._SOURCES, "fashion_mnist", source)
    x, y = data.load("fashion_mnist", "test", source=served.as_uri(), labels=True)
    np.testing.assert_allclose(x, arrays["test"].reshape(3, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, arrays["test_labels"])
    assert (isolated / "xdg" / "tfvae" / "fashion_mnist.npz").exists()
    # The cache has the format of ../shared/data: images and labels.
    with np.load(isolated / "xdg" / "tfvae" / "fashion_mnist.npz") as cached:
        assert sorted(cached.files) == [
            "test",
            "test_labels",
            "train",
            "train_labels",
        ]
        assert cached["train"].shape == (6, 28, 28)
    # The last `held_out` training images are the validation split.
    train, y_train = data.load("fashion_mnist", "train", download=False, labels=True)
    valid, y_valid = data.load("fashion_mnist", "valid", download=False, labels=True)
    assert train.shape == (4, 784) and valid.shape == (2, 784)
    np.testing.assert_allclose(
        np.concatenate([train, valid]), arrays["train"].reshape(6, 784) / 255.0
    )
    np.testing.assert_array_equal(
        np.concatenate([y_train, y_valid]), arrays["train_labels"]
    )
    assert data.load("fashion_mnist", "train_full", download=False).shape == (6, 784)


def test_mnist_from_keras_npz_on_a_local_server(isolated, monkeypatch):
    served = isolated / "served"
    served.mkdir()
    x_train, x_test = (
        RNG.integers(0, 256, (5, 28, 28)),
        RNG.integers(0, 256, (2, 28, 28)),
    )
    y_train = RNG.integers(0, 10, 5).astype(np.uint8)
    np.savez(
        served / "mnist.npz",
        x_train=x_train.astype(np.uint8),
        y_train=y_train,
        x_test=x_test.astype(np.uint8),
        y_test=np.zeros(2, np.uint8),
    )
    digest = hashlib.sha256((served / "mnist.npz").read_bytes()).hexdigest()
    source = dataclasses.replace(
        data._SOURCES["mnist"], digests={"*": ("sha256", digest)}, held_out=1
    )
    monkeypatch.setitem(data._SOURCES, "mnist", source)
    with http_server(served) as url:
        x, y = data.load(
            "mnist", "train", data_dir=isolated / "d", source=url, labels=True
        )
    np.testing.assert_allclose(x, x_train[:4].reshape(4, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, y_train[:4])


def test_arrays_and_files(tmp_path):
    array = RNG.random((8, 3)).astype("float32")
    np.testing.assert_array_equal(data.load(array), array)
    np.save(tmp_path / "a.npy", array)
    np.savez(tmp_path / "splits.npz", train=array, test=array[:2])
    np.testing.assert_array_equal(data.load(str(tmp_path / "a.npy")), array)
    assert data.load(str(tmp_path / "splits.npz"), "test").shape == (2, 3)
    with pytest.raises(ValueError, match="no array for split 'valid'"):
        data.load(str(tmp_path / "splits.npz"), "valid")
    with pytest.raises(data.DataNotFoundError, match="No such data file"):
        data.load(str(tmp_path / "missing.npz"))
    subset = data.load(array, limit=3, seed=1)
    assert subset.shape == (3, 3)
    assert all(any(np.array_equal(row, a) for a in array) for row in subset)
    np.testing.assert_array_equal(data.load(array, limit=3, seed=1), subset)
    assert not np.array_equal(data.load(array, limit=3, seed=2), subset)


def test_digits_splits_are_disjoint_and_scaled():
    splits = {s: data.load("digits", s) for s in ("train", "valid", "test")}
    assert [len(x) for x in splits.values()] == [1257, 270, 270]
    assert all(
        x.shape[1] == 64 and x.min() >= 0 and x.max() <= 1 for x in splits.values()
    )
    rows = {tuple(r) for x in splits.values() for r in x}
    assert len(rows) > 1700  # few duplicate images; splits drawn without overlap


def test_unknown_names_and_splits():
    with pytest.raises(
        ValueError, match=r"Valid names: \['binarized_mnist', 'caltech101_silhouettes'"
    ):
        data.load("cifar10")
    with pytest.raises(
        ValueError, match=r"\('train', 'valid', 'test'\). Received: split='full'"
    ):
        data.load("digits", "full")
    with pytest.raises(ValueError, match="binarize='static'"):
        data.load("digits", binarize="static")


def test_dataset_batches_shuffles_and_binarizes_each_epoch():
    x = data.load("digits", "test")
    batches = list(data.dataset("digits", "test", batch_size=100, shuffle=False))
    assert [len(b) for b in batches] == [100, 100, 70]
    np.testing.assert_array_equal(np.concatenate(batches), x)
    dynamic = data.dataset(
        "digits", "test", batch_size=300, shuffle=False, binarize="dynamic", seed=3
    )
    first, second = (next(iter(dynamic)).numpy() for _ in range(2))
    assert set(np.unique(first)) <= {0.0, 1.0}
    assert (first != second).mean() > 0.05  # a new draw every epoch
    # Each pixel is on with probability equal to its grey level.
    assert abs(first.mean() - x.mean()) < 0.02
    again = data.dataset(
        "digits", "test", batch_size=300, shuffle=False, binarize="dynamic", seed=3
    )
    np.testing.assert_array_equal(next(iter(again)).numpy(), first)  # seeded
    shuffled = [
        b.numpy() for b in data.dataset("digits", "test", batch_size=270, seed=1)
    ]
    assert not np.array_equal(shuffled[0], x)
    np.testing.assert_array_equal(np.sort(shuffled[0], axis=0), np.sort(x, axis=0))


def test_uniform_dequantization_spreads_each_level_over_its_bin():
    x = data.load("digits", "test")
    y = data.load("digits", "test", dequantize="uniform", seed=4)
    levels = data.LEVELS["digits"]
    assert y.dtype == np.float32 and y.shape == x.shape
    # Level k = 16 x lands in [k / 17, (k + 1) / 17): the data is recoverable.
    np.testing.assert_array_equal(np.floor(y * levels), np.round(x * (levels - 1)))
    assert y.min() >= 0 and y.max() < 1
    # The offsets within the bins are uniform: mean 1/2, variance 1/12.
    offsets = y * levels - np.round(x * (levels - 1))
    n = offsets.size
    assert abs(offsets.mean() - 0.5) < 4 * np.sqrt(1 / 12 / n)
    assert abs(offsets.var() - 1 / 12) < 0.01
    np.testing.assert_array_equal(
        data.load("digits", "test", dequantize="uniform", seed=4), y
    )  # seeded
    # Every pixel varies, also those that are 0 in every image: a learned
    # scale has nothing to collapse on.
    assert (x.std(axis=0) == 0).any() and (y.std(axis=0) > 0.1 / levels).all()


def test_dataset_dequantizes_anew_each_epoch():
    x = data.load("digits", "test")
    stream = data.dataset(
        "digits", "test", batch_size=300, shuffle=False, dequantize="uniform", seed=2
    )
    first, second = (next(iter(stream)).numpy() for _ in range(2))
    levels = data.LEVELS["digits"]
    for y in (first, second):
        np.testing.assert_array_equal(np.floor(y * levels), np.round(x * 16))
    assert (first != second).mean() > 0.99  # a new draw every epoch


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("digits", {"dequantize": "gaussian"}, "dequantize='gaussian'"),
        (
            "digits",
            {"dequantize": "uniform", "binarize": "dynamic"},
            "`binarize` and `dequantize` exclude each other",
        ),
        (
            np.zeros((3, 4), "float32"),
            {"dequantize": "uniform"},
            r"named dataset of known grey levels, one of \['digits'",
        ),
    ],
)
def test_dequantize_rejects_bad_options(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load(name, "test", **kwargs)
    with pytest.raises(ValueError, match=match):
        data.dataset(name, "test", **kwargs)


def test_images_for_a_convolutional_model():
    flat = data.load("digits", "test")
    images = data.load("digits", "test", shape=data.image_shape("digits"))
    assert data.image_shape("digits") == (8, 8, 1)
    assert images.shape == (len(flat), 8, 8, 1)
    np.testing.assert_array_equal(images.reshape(len(flat), -1), flat)
    batch = next(iter(data.dataset("digits", "train", 10, shape=(8, 8, 1))))
    assert batch.shape == (10, 8, 8, 1)
    assert data.image_shape("binarized_mnist") == (28, 28, 1)
    assert data.image_shape("some/file.npz") is None
    with pytest.raises(ValueError, match=r"cannot be reshaped to shape=\(28, 28, 1\)"):
        data.load("digits", "test", shape=(28, 28, 1))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, train_mean, test_mean",
    [("mnist", 0.1307, 0.1325), ("fashion_mnist", 0.2860, 0.2868)],
)
def test_real_grey_level_sets_have_a_validation_split_and_labels(
    data_dir, name, train_mean, test_mean
):
    full, y_full = data.load(name, "train_full", labels=True)
    train, y_train = data.load(name, "train", labels=True)
    valid, y_valid = data.load(name, "valid", labels=True)
    test, y_test = data.load(name, "test", labels=True)
    assert [len(a) for a in (full, train, valid, test)] == [60000, 50000, 10000, 10000]
    # The README's means: of all 60,000 training images, and of the test set.
    assert abs(full.mean() - train_mean) < 1e-4 and abs(test.mean() - test_mean) < 1e-4
    # valid is the last 10,000 published training images, train the rest.
    np.testing.assert_array_equal(np.concatenate([train, valid]), full)
    np.testing.assert_array_equal(np.concatenate([y_train, y_valid]), y_full)
    for x, y in ((full, y_full), (test, y_test)):
        assert x.dtype == np.float32 and x.shape[1] == 784
        np.testing.assert_array_equal(np.unique(np.round(x * 255) / 255), np.unique(x))
        assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))


@pytest.mark.slow
def test_real_caltech_silhouettes_is_inverted_with_zero_based_labels(data_dir):
    with np.load(f"{data_dir}/caltech101_silhouettes_28.npz") as stored:
        for split, n in (("train", 4100), ("valid", 2264), ("test", 2307)):
            x, y = data.load("caltech101_silhouettes", split, labels=True)
            assert x.shape == (n, 784) and x.dtype == np.float32
            # The object is 1: the stored 0, upright, row-major.
            np.testing.assert_array_equal(x, 1 - stored[split].reshape(n, 784))
            np.testing.assert_array_equal(y, stored[f"{split}_labels"] - 1)
            assert y.min() >= 0 and y.max() <= 100
    assert data.image_shape("caltech101_silhouettes") == (28, 28, 1)
    assert data.splits("caltech101_silhouettes") == ("train", "valid", "test")


@pytest.mark.slow
def test_caltech_silhouettes_from_the_matlab_file_on_a_local_server(data_dir, isolated):
    # The canonical file holds each image as a row of 784 pixels in MATLAB's
    # column-major order; a download converts it to upright images, checked
    # against the digests of the data README's file.
    scipy_io = pytest.importorskip("scipy.io")
    served = isolated / "served"
    served.mkdir()
    mat = {}
    with np.load(f"{data_dir}/caltech101_silhouettes_28.npz") as stored:
        for split, key in (("train", "train"), ("valid", "val"), ("test", "test")):
            images = stored[split]
            mat[f"{key}_data"] = images.transpose(0, 2, 1).reshape(len(images), 784)
            mat[f"{key}_labels"] = stored[f"{split}_labels"].reshape(-1, 1)
        expected = {s: stored[s] for s in ("train", "valid", "test")}
    mat["classnames"] = np.array(["Faces 2", "Airplanes Side 2"], dtype=object)
    scipy_io.savemat(served / "caltech101_silhouettes_28_split1.mat", mat)
    with http_server(served) as url:
        x = data.load("caltech101_silhouettes", "valid", data_dir=isolated, source=url)
    np.testing.assert_array_equal(x, 1 - expected["valid"].reshape(-1, 784))
    with np.load(isolated / "caltech101_silhouettes_28.npz") as cached:
        for split, images in expected.items():
            np.testing.assert_array_equal(cached[split], images)
        assert list(cached["classnames"]) == ["Faces 2", "Airplanes Side 2"]
    # Images in row-major order would be transposed: verification refuses them.
    mat["val_data"] = expected["valid"].reshape(-1, 784)
    scipy_io.savemat(served / "caltech101_silhouettes_28_split1.mat", mat)
    with http_server(served) as url:
        with pytest.raises(data.DataNotFoundError, match="valid split failed verif"):
            data.load("caltech101_silhouettes", data_dir=isolated / "other", source=url)
    assert not (isolated / "other").exists() or os.listdir(isolated / "other") == []


def test_labels_of_files_arrays_and_sets_without_them(tmp_path):
    x = RNG.random((6, 3)).astype("float32")
    np.savez(tmp_path / "a.npz", train=x, train_labels=np.arange(6), test=x[:2])
    loaded, y = data.load(str(tmp_path / "a.npz"), labels=True, limit=4, seed=1)
    assert y.dtype == np.int64
    # The subset keeps each example with its label.
    np.testing.assert_array_equal(loaded, x[y])
    with pytest.raises(ValueError, match="no labels for split 'test'"):
        data.load(str(tmp_path / "a.npz"), "test", labels=True)
    with pytest.raises(ValueError, match="an array has none"):
        data.load(x, labels=True)
    images, digits = data.load("digits", "test", labels=True)
    assert len(images) == len(digits) == 270 and set(np.unique(digits)) == set(
        range(10)
    )


def test_binarized_mnist_has_no_labels(isolated):
    fake_binarized_mnist(isolated / "d")
    with pytest.raises(ValueError, match="'binarized_mnist' has no labels"):
        data.load("binarized_mnist", "test", data_dir=isolated / "d", labels=True)


def test_dataset_of_pairs_binarizes_the_images_only():
    x, y = data.load("digits", "test", labels=True)
    stream = data.dataset(
        "digits",
        "test",
        batch_size=300,
        shuffle=False,
        binarize="dynamic",
        seed=5,
        labels=True,
    )
    images, labels = next(iter(stream))
    np.testing.assert_array_equal(labels.numpy(), y)
    assert set(np.unique(images.numpy())) <= {0.0, 1.0}
    assert abs(images.numpy().mean() - x.mean()) < 0.02
    shuffled = next(iter(data.dataset("digits", "test", 300, seed=1, labels=True)))
    # Shuffled together: each image keeps its label.
    for row, label in zip(shuffled[0].numpy(), shuffled[1].numpy(), strict=True):
        assert label in y[(x == row).all(axis=1)]


def test_dataset_without_redraw_repeats_one_seeded_draw():
    stream = data.dataset(
        "digits", "test", 300, shuffle=False, binarize="dynamic", seed=6, redraw=False
    )
    first, second = (next(iter(stream)).numpy() for _ in range(2))
    np.testing.assert_array_equal(first, second)
    expected = data.binarized(data.load("digits", "test"), seed=6)
    np.testing.assert_array_equal(first, expected)
    with pytest.raises(ValueError, match="redraw='no'"):
        data.dataset("digits", redraw="no")


def test_binarized_draws_each_pixel_with_its_grey_level():
    x = np.full((400, 50), 0.3, "float32")
    draw = data.binarized(x, seed=0)
    # The mean of 20,000 Bernoulli(0.3) draws, within 5 standard errors.
    assert abs(draw.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / x.size)
    np.testing.assert_array_equal(data.binarized(x, seed=0), draw)
    np.testing.assert_array_equal(data.load(x, binarize="dynamic", seed=0), draw)
