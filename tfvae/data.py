"""Datasets: binarized MNIST, MNIST, Fashion-MNIST, Caltech-101 Silhouettes, digits.

`load` returns a float32 numpy array of examples, flattened to
(n, height * width) for the image sets (or `shape=`), and with
`labels=True` their integer class labels too; `dataset` wraps them in a
shuffled, batched, prefetched `tf.data.Dataset`, with an optional dynamic
binarization that draws a new Bernoulli binarization of grey levels every
epoch.

Splits. `binarized_mnist` and `caltech101_silhouettes` have their published
train / valid / test splits. MNIST and Fashion-MNIST are published as 60,000
train and 10,000 test images; tfvae holds out the **last 10,000 training
images** as `"valid"` (the split of the IWAE, LVAE and VampPrior papers'
code), so `"train"` is the first 50,000 and `"train_full"` all 60,000 (for a
final fit on train and validation together, as the IWAE paper trained).

Where a named dataset is looked for, in order: `data_dir`, `$TFVAE_DATA_DIR`,
and a cache folder under the user's home (`$XDG_CACHE_HOME/tfvae`, by default
`~/.cache/tfvae`). On a miss it is downloaded from its canonical public source
(or `source=`, a mirror with the same file names), verified against known
digests, converted to the cache format and written atomically into `data_dir`,
or else into the home cache; a killed download leaves no file that is later
read as data.
"""

import dataclasses
import gzip
import hashlib
import http.client
import io
import math
import os
import tempfile
import urllib.error
import urllib.request
import zipfile

import numpy as np
import tensorflow as tf

from tfvae import _checks

__all__ = [
    "DataNotFoundError",
    "LEVELS",
    "binarized",
    "load",
    "dataset",
    "dequantize_levels",
    "image_shape",
    "uniform_dequantize",
    "names",
    "num_classes",
    "search_path",
    "splits",
]

# The number of grey levels of the named datasets whose values are
# k / (levels - 1), k = 0 .. levels - 1: what a uniform dequantization needs.
LEVELS = {"digits": 17, "mnist": 256, "fashion_mnist": 256}


class DataNotFoundError(FileNotFoundError):
    """A named dataset is neither on disk nor downloadable."""


def _parse_amat(raw):
    """The text .amat format: one image per line, 784 space-separated 0/1 values."""
    chars = np.frombuffer(raw, np.uint8)
    is_bit = (chars == ord("0")) | (chars == ord("1"))
    is_space = np.isin(chars, np.frombuffer(b" \t\r\n", np.uint8))
    lines = sum(1 for line in raw.split(b"\n") if line.strip())
    bits = chars[is_bit] - ord("0")
    # Single-character values separated by white space: no two digits touch.
    touching = np.any(is_bit[1:] & is_bit[:-1])
    if (
        not lines
        or not np.all(is_bit | is_space)
        or touching
        or bits.size != lines * 784
    ):
        raise ValueError("not an .amat file of 784 values 0 or 1 per line")
    return bits.reshape(lines, 784)


def _parse_idx_images(raw):
    """An IDX3 image file (MNIST format), gzip-compressed."""
    data = gzip.decompress(raw)
    if int.from_bytes(data[:4], "big") != 2051:
        raise ValueError("not an IDX3 image file")
    count, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows * cols)


def _parse_idx_labels(raw):
    """An IDX1 label file (MNIST format), gzip-compressed."""
    data = gzip.decompress(raw)
    if int.from_bytes(data[:4], "big") != 2049:
        raise ValueError("not an IDX1 label file")
    count = int.from_bytes(data[4:8], "big")
    return np.frombuffer(data, np.uint8, offset=8)[:count]


def _from_amat(source, raw_files):
    """binarized_mnist: each split's .amat text, packed 8 pixels a byte."""
    arrays = {}
    for split, raw in raw_files.items():
        packed = np.packbits(_parse_amat(raw), axis=1)
        _verify(f"{split} split", packed.tobytes(), source.digests[split])
        arrays[split] = packed
    return arrays


def _from_keras_npz(source, raw_files):
    """mnist: Keras' mnist.npz (x_train, y_train, x_test, y_test)."""
    _verify(source.files["*"], raw_files["*"], source.digests["*"])
    with np.load(io.BytesIO(raw_files["*"]), allow_pickle=False) as data:
        arrays = {}
        for split in ("train", "test"):
            arrays[split] = data[f"x_{split}"].reshape(-1, 28, 28)
            if f"y_{split}" in data.files:
                arrays[f"{split}_labels"] = data[f"y_{split}"]
    return arrays


def _from_idx(source, raw_files):
    """fashion_mnist: the gzipped IDX image and label files of each split."""
    arrays = {}
    for key, raw in raw_files.items():
        _verify(source.files[key], raw, source.digests[key])
        if key.endswith("_labels"):
            arrays[key] = _parse_idx_labels(raw)
        else:
            arrays[key] = _parse_idx_images(raw).reshape(-1, 28, 28)
    return arrays


def _from_mat(source, raw_files):
    """caltech101_silhouettes: Marlin's MATLAB file of the three splits.

    Its images are rows of 784 pixels in column-major (MATLAB) order; the
    cache holds them upright, (n, 28, 28) in row-major order, and each
    split's images are verified against the digest of that content.
    """
    try:
        from scipy import io as scipy_io
    except ImportError:
        raise DataNotFoundError(
            "Converting the Caltech-101 Silhouettes download (a MATLAB file) "
            "needs SciPy: pip install scipy"
        ) from None
    mat = scipy_io.loadmat(io.BytesIO(raw_files["*"]))
    arrays = {}
    for split, key in (("train", "train"), ("valid", "val"), ("test", "test")):
        images = mat[f"{key}_data"].reshape(-1, 28, 28).transpose(0, 2, 1)
        images = np.ascontiguousarray(images.astype(np.uint8))
        _verify(f"{split} split", images.tobytes(), source.digests[split])
        arrays[split] = images
        arrays[f"{split}_labels"] = mat[f"{key}_labels"].reshape(-1).astype(np.uint8)
    if "classnames" in mat:
        names = [str(np.squeeze(name)) for name in mat["classnames"].ravel()]
        arrays["classnames"] = np.array(names)
    return arrays


@dataclasses.dataclass(frozen=True)
class _Source:
    """A named dataset: its splits, canonical files and how to check them."""

    filename: str  # the cache file, an .npz: {split}, {split}_labels arrays
    splits: tuple  # the splits `load` offers
    base_url: str
    files: dict  # key -> remote file name ("*" for one file of all splits)
    digests: dict  # key or split -> (algorithm, hex digest)
    convert: object  # (source, {key: bytes}) -> {key: array} of the cache
    values: str  # "packed" bits, "binary" 0/1 images or "grey" levels 0..255
    held_out: int = 0  # "valid" is the last `held_out` stored train images
    inverted: bool = False  # the loaded values are 1 - the stored ones

    def arrays_from_download(self, raw_files):
        """{key: uint8 array} of the cache format from the downloaded files."""
        return self.convert(self, raw_files)

    def stored_split(self, split):
        """(the stored array's key, the rows of it that `split` takes)."""
        if not self.held_out or split == "test":
            return split, slice(None)
        if split == "valid":
            return "train", slice(-self.held_out, None)
        if split == "train":
            return "train", slice(None, -self.held_out)
        return "train", slice(None)  # train_full


_HELD_OUT_SPLITS = ("train", "valid", "test", "train_full")
_SOURCES = {
    "binarized_mnist": _Source(
        filename="binarized_mnist.npz",
        splits=("train", "valid", "test"),
        base_url="http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
        files={s: f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test")},
        # sha256 of the np.packbits(..., axis=1) bytes of each split, the
        # content of the cache format of ../shared/data/README.md.
        digests={
            "train": (
                "sha256",
                "727146c35424b019f3e350e1e69faa05644a0abaf787e3f4e1a9632220a13906",
            ),
            "valid": (
                "sha256",
                "a256ac44ae26be720fad8616a05ed6ecfd1619930d9a208379bb2a4405df5b6d",
            ),
            "test": (
                "sha256",
                "9fcd8da6f0fdf09b2ba30fe63a0bb784042a0de82563172530229b983e294ff2",
            ),
        },
        convert=_from_amat,
        values="packed",
    ),
    "mnist": _Source(
        filename="mnist.npz",
        splits=_HELD_OUT_SPLITS,
        base_url="https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        files={"*": "mnist.npz"},
        digests={
            "*": (
                "sha256",
                "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
            )
        },
        convert=_from_keras_npz,
        values="grey",
        held_out=10000,
    ),
    "fashion_mnist": _Source(
        filename="fashion_mnist.npz",
        splits=_HELD_OUT_SPLITS,
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        files={
            "train": "train-images-idx3-ubyte.gz",
            "train_labels": "train-labels-idx1-ubyte.gz",
            "test": "t10k-images-idx3-ubyte.gz",
            "test_labels": "t10k-labels-idx1-ubyte.gz",
        },
        # The MD5 digests published with Fashion-MNIST.
        digests={
            "train": ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train_labels": ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
            "test": ("md5", "bef4ecab320f06d8554ea6380940ec79"),
            "test_labels": ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        convert=_from_idx,
        values="grey",
        held_out=10000,
    ),
    "caltech101_silhouettes": _Source(
        filename="caltech101_silhouettes_28.npz",
        splits=("train", "valid", "test"),
        base_url="https://people.cs.umass.edu/~marlin/data/",
        # md5 4483e9c14b188fd09937f9ea6f9ea777 by public dataset catalogues;
        # verified here by the content it converts to, below.
        files={"*": "caltech101_silhouettes_28_split1.mat"},
        # sha256 of each split's upright (n, 28, 28) uint8 images, the content
        # of the cache format of ../shared/data/README.md.
        digests={
            "train": (
                "sha256",
                ("4e667900732526e6c757b385151c31812ec071b1e833dcad1f10cbe9c12e9a96"),
            ),
            "valid": (
                "sha256",
                ("d31899cd9a8421bad5500bdfa166ea93b6490c6f67abbd09826603751801628d"),
            ),
            "test": (
                "sha256",
                ("caf9bfb9732aced2ed6d7cfb7bf678eb933622574c87a3ce159a3c76dcb2b722"),
            ),
        },
        convert=_from_mat,
        values="binary",
        # The source draws the object as 0 on a background of 1; tfvae models
        # the object as 1, as the VampPrior paper's code does.
        inverted=True,
    ),
}
_DIGITS_SPLITS = ("train", "valid", "test")


def names():
    """The names `load` and `dataset` accept (besides arrays and file paths)."""
    return sorted([*_SOURCES, "digits"])


def splits(name):
    """The splits of a named dataset, e.g. `("train", "valid", "test")`.

    `()` for a name that is not a named dataset (a file path, say).
    """
    if name == "digits":
        return _DIGITS_SPLITS
    source = _SOURCES.get(name)
    return source.splits if source is not None else ()


# The image shape (H, W, C) of the examples of each named dataset.
_IMAGE_SHAPES = {
    "binarized_mnist": (28, 28, 1),
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "caltech101_silhouettes": (28, 28, 1),
    "digits": (8, 8, 1),
}


def image_shape(name):
    """The (H, W, C) of a named dataset's images, or None (a file, an array).

    `load(name, shape=image_shape(name))` gives image-shaped examples, as a
    convolutional model (`architecture="conv"`) takes them.
    """
    return _IMAGE_SHAPES.get(name) if isinstance(name, str) else None


# The number of classes of the labels of each named dataset that has them.
_NUM_CLASSES = {
    "mnist": 10,
    "fashion_mnist": 10,
    "caltech101_silhouettes": 101,
    "digits": 10,
}


def num_classes(name, data_dir=None):
    """K, the number of classes of a dataset's labels 0..K-1.

    For a named dataset, its number of classes; for an `.npz` file, one more
    than the largest label of its `train` split. Raises `ValueError` for a
    dataset without labels (`binarized_mnist`, or a file without them).
    """
    if isinstance(name, str) and name in _NUM_CLASSES:
        return _NUM_CLASSES[name]
    source = _SOURCES.get(name) if isinstance(name, str) else None
    if source is not None and source.values == "packed":
        raise ValueError(
            f"Dataset {name!r} has no labels (the binarized MNIST of Larochelle & "
            "Murray was published without them). Datasets with labels: "
            f"{sorted(_NUM_CLASSES)}"
        )
    _, y = load(name, "train", labels=True, data_dir=data_dir)
    if not len(y):
        raise ValueError(f"the train split of {name!r} holds no labels")
    return int(y.max()) + 1


def _reshaped(x, shape, name):
    """The examples of x (n, ...) reshaped to `shape`, or a clear error."""
    if shape is None:
        return x
    shape = _checks.shape_tuple(shape, "shape")
    if math.prod(x.shape[1:]) != math.prod(shape):
        raise ValueError(
            f"the examples of {name!r} have shape {x.shape[1:]} "
            f"({math.prod(x.shape[1:])} values), which cannot be reshaped to "
            f"shape={shape} ({math.prod(shape)} values)"
        )
    return x.reshape(len(x), *shape)


def search_path(data_dir=None):
    """The folders a named dataset is looked for in, in order."""
    folders = []
    if data_dir is not None:
        folders.append(os.fspath(data_dir))
    if os.environ.get("TFVAE_DATA_DIR"):
        folders.append(os.environ["TFVAE_DATA_DIR"])
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    folders.append(os.path.join(cache_home, "tfvae"))
    return folders


def _verify(what, raw, digest):
    algorithm, expected = digest
    actual = hashlib.new(algorithm, raw).hexdigest()
    if actual != expected:
        raise ValueError(
            f"{what} failed verification: {algorithm} {actual}, expected {expected}"
        )


def _fetch(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        length = response.headers.get("Content-Length")
        try:
            raw = response.read()
        except http.client.IncompleteRead as error:
            raise OSError(
                f"incomplete download: {len(error.partial)} of {length} bytes"
            ) from None
    if length is not None and len(raw) != int(length):
        raise OSError(f"incomplete download: {len(raw)} of {length} bytes")
    return raw


def _download(name, source, folder, base_url):
    """Downloads, verifies and converts; writes the cache file atomically."""
    base_url = base_url or source.base_url
    if not base_url.endswith("/"):
        base_url += "/"
    raw_files = {key: _fetch(base_url + file) for key, file in source.files.items()}
    arrays = source.arrays_from_download(raw_files)
    os.makedirs(folder, exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix=".npz.part", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(partial, os.path.join(folder, source.filename))
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _cached_arrays(name, data_dir, download, base_url):
    source = _SOURCES[name]
    folders = search_path(data_dir)
    for folder in folders:
        path = os.path.join(folder, source.filename)
        if os.path.exists(path):
            return path, source
    target = os.fspath(data_dir) if data_dir is not None else folders[-1]
    url = base_url or source.base_url
    problem = "downloads are off (download=False)"
    if download:
        try:
            _download(name, source, target, base_url)
            return os.path.join(target, source.filename), source
        except (OSError, ValueError, urllib.error.URLError) as error:
            problem = f"downloading it from {url} failed: {error}"
    raise DataNotFoundError(
        f"Dataset {name!r} ({source.filename}) was not found in "
        f"{', '.join(folders)}; {problem}. Put {source.filename} in one of "
        "those folders (or set TFVAE_DATA_DIR to its folder, or pass data_dir=)."
    )


def _digits(split):
    """(images, labels) of a split of scikit-learn's digits."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataNotFoundError(
            "The 'digits' dataset needs scikit-learn: pip install 'tfvae[digits]'"
        ) from None
    digits = load_digits()
    images = digits.data.astype("float32") / 16.0
    order = np.random.default_rng(0).permutation(len(images))
    cut = (int(0.7 * len(images)), int(0.85 * len(images)))
    parts = dict(zip(_DIGITS_SPLITS, np.split(order, cut), strict=True))
    rows = np.sort(parts[split])
    return images[rows], digits.target[rows]


def _from_file(path, split):
    try:
        x = _read_file(path, split)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, ValueError) and str(path) in str(error):
            raise
        kind = "a NumPy .npy file" if str(path).endswith(".npy") else "a NumPy .npz"
        reason = str(error).split(". ")[0]
        if "pickle" in reason or isinstance(error, zipfile.BadZipFile):
            reason = "it is not a NumPy file of arrays"
        raise ValueError(
            f"Cannot read the data file {path}: {reason}. Expected {kind} "
            "(np.save / np.savez)"
        ) from None
    if not isinstance(x, np.ndarray) or x.dtype == object or x.ndim < 2 or not len(x):
        raise ValueError(
            f"The data file {path} holds no examples for split {split!r}: "
            f"expected an array of shape (n >= 1, features...), got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    return x


def _read_file(path, split):
    if str(path).endswith(".npy"):
        return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as data:
        if split in data.files:
            return data[split]
        if f"x_{split}" in data.files:
            return data[f"x_{split}"]
        if len(data.files) == 1:
            return data[data.files[0]]
        raise ValueError(
            f"{path} has no array for split {split!r}. Arrays in it: {data.files}"
        )


def _file_labels(path, split):
    """The labels of a split of an .npz file: `{split}_labels` or `y_{split}`."""
    if str(path).endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            for key in (f"{split}_labels", f"y_{split}"):
                if key in data.files:
                    return data[key]
            found = data.files
    else:
        found = "one array (an .npy file)"
    raise ValueError(
        f"{path} has no labels for split {split!r}: expected an array "
        f"'{split}_labels' or 'y_{split}' beside the examples. Arrays in it: {found}"
    )


def _named(name, split, data_dir, download, base_url, labels):
    """(examples, labels or None) of a split of a dataset of `_SOURCES`."""
    _checks.one_of(split, "split", _SOURCES[name].splits)
    path, source = _cached_arrays(name, data_dir, download, base_url)
    key, rows = source.stored_split(split)
    with np.load(path, allow_pickle=False) as stored:
        x = stored[key] if key in stored.files else stored[f"x_{key}"]
        y = None
        if labels:
            if source.values == "packed":
                raise ValueError(
                    f"Dataset {name!r} has no labels (the binarized MNIST of "
                    "Larochelle & Murray was published without them). Datasets "
                    f"with labels: {sorted(n for n in names() if n != name)}"
                )
            if f"{key}_labels" not in stored.files:
                raise ValueError(
                    f"{path} holds no '{key}_labels' array (a cache written by "
                    "an older tfvae): remove it to download it again, or put "
                    "the file of the dataset's README in its place"
                )
            y = stored[f"{key}_labels"][rows].astype("int64")
    x = x[rows]
    if source.values == "packed":
        x = np.unpackbits(x, axis=1)[:, :784]
    x = x.reshape(len(x), -1).astype("float32")
    if source.values == "grey":
        x /= 255.0
    if source.inverted:
        x = 1.0 - x
    if y is not None and name == "caltech101_silhouettes":
        y -= 1  # the source's classes 1..101, as 0..100
    return x, y


def load(
    name,
    split="train",
    data_dir=None,
    binarize=None,
    seed=0,
    download=True,
    source=None,
    limit=None,
    dequantize=None,
    shape=None,
    labels=False,
):
    """Loads a dataset as a float32 numpy array of shape (n, features).

    Args:
        name: a named dataset, a path to an `.npz` (one array per split, or a
            single array) or `.npy` file, or an array. The named datasets:
            - `"binarized_mnist"`: the static binarization of Larochelle &
              Murray; splits train 50,000 / valid 10,000 / test 10,000; no
              labels.
            - `"mnist"`, `"fashion_mnist"`: grey levels k / 255 in [0, 1];
              splits train (the first 50,000 published training images),
              valid (the last 10,000), train_full (all 60,000) and test
              (10,000). Dynamically binarized MNIST is `"mnist"` with
              `binarize="dynamic"`.
            - `"caltech101_silhouettes"`: Caltech-101 Silhouettes 28x28
              (Marlin et al. 2010, split 1), 0/1 pixels with the object as 1
              and the background as 0 (the source's 1 - x, as the VampPrior
              paper modelled them); train 4,100 / valid 2,264 / test 2,307;
              labels 0..100 (the source's 1..101 less one).
            - `"digits"`: scikit-learn's 8x8 digits in [0, 1], splits train /
              valid / test of 70 / 15 / 15%; needs the `digits` extra.
        split: which split.
        data_dir: a folder searched first, and where a download is written.
        binarize: `None`, or `"dynamic"`: one Bernoulli draw of the grey levels
            (seeded by `seed`); see `dataset` for a new draw every epoch.
        seed: seed of the binarization and of the `limit` subset.
        download: whether a missing named dataset may be downloaded.
        source: a base URL to download from instead of the canonical source.
        limit: keep a random subset of `limit` examples (seeded by `seed`,
            in their original order): a representative sample, also of the
            binarized MNIST test split, which is sorted by digit class.
        dequantize: `None`, or `"uniform"`: the grey level k / (L - 1) of a
            dataset with L levels (`LEVELS`: digits, mnist, fashion_mnist)
            becomes (k + u) / L with u ~ U[0, 1) (one draw, seeded by
            `seed`), continuous values in [0, 1) for a density model; see
            `uniform_dequantize` and `tfvae.bits_per_dim(..., levels=L)`.
        shape: `None`, or the shape each example is reshaped to, e.g.
            `image_shape(name)`, (28, 28, 1) for the MNIST datasets.
        labels: also return the examples' integer class labels, `(x, y)`
            with y int64 of shape (n,); an `.npz` file gives them in an array
            `{split}_labels` or `y_{split}`.

    Returns:
        x, or `(x, y)` with `labels=True`.

    Raises:
        DataNotFoundError: the dataset is neither on disk nor downloadable;
            the message lists where it looked and how to provide it.
        ValueError: an unknown name or split, bad values, or labels asked of
            data that has none.
    """
    levels = dequantize_levels(name, dequantize, binarize)
    y = None
    if isinstance(name, np.ndarray):
        if labels:
            raise ValueError(
                "labels=True needs a named dataset or an .npz file with labels; "
                "an array has none (pass your labels beside it)"
            )
        x = name
    elif isinstance(name, (str, os.PathLike)) and str(name).endswith((".npz", ".npy")):
        if not os.path.exists(name):
            raise DataNotFoundError(f"No such data file: {name}")
        x = _from_file(name, split)
        if labels:
            y = np.asarray(_file_labels(name, split)).astype("int64")
            if y.shape != (len(x),):
                raise ValueError(
                    f"The labels of split {split!r} of {name} have shape "
                    f"{y.shape}; expected ({len(x)},), one per example"
                )
    elif isinstance(name, str) and name == "digits":
        _checks.one_of(split, "split", _DIGITS_SPLITS)
        x, y = _digits(split)
    elif name in _SOURCES:
        x, y = _named(name, split, data_dir, download, source, labels)
    else:
        raise ValueError(
            f"Unknown dataset {name!r}. Valid names: {names()}, a path to an "
            f".npz or .npy file, or an array. Received: name={name!r}"
        )
    if limit is not None and _checks.positive_int(limit, "limit") < len(x):
        rows = np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))
        x = x[rows]
        y = None if y is None else y[rows]
    x = np.asarray(x, dtype="float32")
    if binarize == "dynamic":
        x = binarized(x, seed)
    if levels:
        x = uniform_dequantize(x, levels, np.random.default_rng(seed).random(x.shape))
    x = _reshaped(x, shape, name)
    return (x, np.asarray(y, "int64")) if labels else x


def binarized(x, seed):
    """One Bernoulli draw of grey levels: 1 where U[0, 1) < x, seeded.

    The binarization of `load(..., binarize="dynamic", seed=seed)`, and the
    draws of the dynamically binarized MNIST's test protocol
    (`tfvae.certify(..., binarizations=B)` uses seeds 0 .. B - 1).
    """
    x = np.asarray(x, dtype="float32")
    return (np.random.default_rng(seed).random(x.shape) < x).astype("float32")


def dequantize_levels(name, dequantize, binarize=None):
    """The grey levels that `dequantize` spreads for dataset `name`, or None.

    Checks the preprocessing options: `dequantize` is None or `"uniform"`,
    excludes `binarize`, and needs a dataset of `LEVELS`.
    """
    _checks.one_of(binarize, "binarize", (None, "dynamic"))
    _checks.one_of(dequantize, "dequantize", (None, "uniform"))
    if dequantize is None:
        return None
    if binarize is not None:
        raise ValueError(
            "`binarize` and `dequantize` exclude each other. Received: "
            f"binarize={binarize!r}, dequantize={dequantize!r}"
        )
    if not isinstance(name, str) or name not in LEVELS:
        raise ValueError(
            "`dequantize` needs a named dataset of known grey levels, one of "
            f"{sorted(LEVELS)}. Received: name={name!r}"
        )
    return LEVELS[name]


def uniform_dequantize(x, levels, uniform):
    """Uniform dequantization: grey level k / (levels - 1) -> (k + u) / levels.

    The dequantized values lie in [0, 1), and the bin of level k is
    [k / levels, (k + 1) / levels). A density p on them bounds the
    probability of the discrete data, log P(k) >= E_u log p((k + u) / levels)
    - D log(levels) (Theis et al. 2016), which `tfvae.bits_per_dim(...,
    levels=levels)` reports.

    Args:
        x: grey levels in [0, 1], multiples of 1 / (levels - 1).
        levels: the number of grey levels.
        uniform: U[0, 1) noise of the shape of `x` (numpy array or tensor).
    """
    if isinstance(x, np.ndarray):
        return ((np.round(x * (levels - 1)) + uniform) / levels).astype("float32")
    return (tf.round(x * (levels - 1)) + uniform) / levels


def dataset(
    name,
    split="train",
    batch_size=100,
    shuffle=True,
    binarize=None,
    seed=None,
    data_dir=None,
    limit=None,
    dequantize=None,
    labels=False,
    redraw=True,
    **load_kwargs,
):
    """A batched, prefetched `tf.data.Dataset` of examples, or of (x, y) pairs.

    Args:
        name, split, data_dir, limit: as for `load`.
        batch_size: examples per batch.
        shuffle: reshuffle the examples every epoch.
        binarize: `None`, or `"dynamic"`: every epoch, each grey level p is
            replaced by a new draw of Bernoulli(p), as in the IWAE and LVAE
            papers (Burda et al. 2015; Sønderby et al. 2016).
        dequantize: `None`, or `"uniform"`: every epoch, a new uniform
            dequantization of the grey levels (see `load`).
        seed: seed of the shuffling, binarization and dequantization.
        labels: yield `(x, y)` batches, y the int64 class labels (see
            `load`); a model's `fit` takes them and trains on x.
        redraw: with `binarize` or `dequantize`, a new draw every epoch
            (default); `False` draws once (seeded by `seed`, 0 if None) and
            repeats it every epoch, the fixed validation set of a
            dynamically binarized dataset.
        **load_kwargs: `download`, `source` and `shape`, as for `load`.
    """
    batch_size = _checks.positive_int(batch_size, "batch_size")
    _checks.one_of(redraw, "redraw", (True, False))
    levels = dequantize_levels(name, dequantize, binarize)
    drawn = {}
    if not redraw and (binarize or levels):  # one seeded draw, kept
        drawn = {"binarize": binarize, "dequantize": dequantize, "seed": seed or 0}
        binarize = levels = None
    loaded = load(
        name,
        split,
        data_dir=data_dir,
        limit=limit,
        labels=labels,
        **drawn,
        **load_kwargs,
    )
    data = tf.data.Dataset.from_tensor_slices(loaded)
    if shuffle:
        size = len(loaded[0]) if labels else len(loaded)
        data = data.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    # A new draw of U[0, 1) noise every epoch binarizes or dequantizes.
    if binarize == "dynamic":

        def transform(batch, uniform):
            return tf.cast(uniform < batch, tf.float32)

    elif levels:

        def transform(batch, uniform):
            return uniform_dequantize(batch, levels, uniform)

    else:
        transform = None
    if transform is not None:
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

        def draw(batch, key):
            x = batch[0] if labels else batch
            key = tf.stack([key, tf.constant(0, tf.int64)])
            uniform = tf.random.stateless_uniform(tf.shape(x), seed=key)
            x = transform(x, uniform)
            return (x, batch[1]) if labels else x

        data = tf.data.Dataset.zip((data, keys)).map(draw)
    return data.prefetch(tf.data.AUTOTUNE)
