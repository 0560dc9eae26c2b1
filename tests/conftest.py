import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices, for the tf.distribute tests; set before TensorFlow
# initializes its devices. Single-device code runs on the first, as usual.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)


@pytest.fixture(scope="session")
def binarized_mnist():
    """The real statically binarized MNIST, unpacked to float32 0/1 pixels.

    Fails (never skips) when `$TFVAE_DATA_DIR/binarized_mnist.npz` is missing:
    CI must run the tests that need it.
    """
    data_dir = os.environ.get("TFVAE_DATA_DIR")
    path = os.path.join(data_dir or "", "binarized_mnist.npz")
    if not data_dir or not os.path.exists(path):
        pytest.fail(
            "These tests need binarized_mnist.npz in $TFVAE_DATA_DIR; "
            f"TFVAE_DATA_DIR={data_dir!r}."
        )
    with np.load(path) as packed:
        return {
            split: np.unpackbits(packed[split], axis=1)[:, :784].astype("float32")
            for split in ("train", "valid", "test")
        }


@pytest.fixture(scope="session")
def data_dir():
    """$TFVAE_DATA_DIR, checked to hold every data file of ../shared/data.

    Fails (never skips) when one is missing: CI must run the tests that need
    them.
    """
    folder = os.environ.get("TFVAE_DATA_DIR")
    files = (
        "binarized_mnist.npz",
        "mnist.npz",
        "fashion_mnist.npz",
        "caltech101_silhouettes_28.npz",
    )
    missing = [f for f in files if not folder or not os.path.exists(f"{folder}/{f}")]
    if missing:
        pytest.fail(
            f"These tests need {missing} in $TFVAE_DATA_DIR; TFVAE_DATA_DIR={folder!r}."
        )
    return folder
