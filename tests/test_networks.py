"""The networks the models build by name."""

import keras
import numpy as np

from tfvae.layers import GatedDense
from tfvae.networks import mlp


def test_mlp_layers_widths_and_flatten():
    net = mlp((8, 4), "tanh", flatten=True, name="encoder")
    assert net.name == "encoder"
    y = net(np.zeros((3, 2, 5), "float32"))
    assert y.shape == (3, 4)
    kinds = [type(layer) for layer in net.layers]
    assert kinds == [keras.layers.Flatten, keras.layers.Dense, keras.layers.Dense]
    assert [layer.units for layer in net.layers[1:]] == [8, 4]


def test_gated_mlp_and_the_identity():
    gated = mlp((6,), "linear", gated=True)
    assert isinstance(gated.layers[0], GatedDense)
    identity = mlp((), "relu")
    x = np.random.default_rng(0).normal(size=(2, 3)).astype("float32")
    np.testing.assert_array_equal(identity(x), x)
