"""tfvae.layers.GatedDense, and the gated default networks of the models."""

import keras
import numpy as np
import pytest
from helpers import assert_config_round_trip, assert_keras_round_trip

import tfvae
from tfvae.layers import GatedDense

RNG = np.random.default_rng(5)
X_BIN = (RNG.random((200, 12)) < 0.3).astype("float32")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("activation", [None, "tanh"])
def test_gated_dense_equals_numpy(activation):
    layer = GatedDense(5, activation=activation)
    x = RNG.normal(size=(7, 3)).astype("float32")
    layer.build((None, 3))
    kernel, bias = layer.projection.kernel.numpy(), layer.projection.bias.numpy()
    bias = RNG.normal(size=bias.shape).astype("float32")
    layer.projection.bias.assign(bias)
    y = layer(x).numpy()
    projected = x @ kernel + bias
    value, gate = projected[:, :5], projected[:, 5:]
    value = np.tanh(value) if activation == "tanh" else value
    np.testing.assert_allclose(y, value * sigmoid(gate), rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape((None, 3)) == (None, 5)
    assert kernel.shape == (3, 10)  # one matmul for both halves


def test_gated_dense_config_round_trip():
    layer = GatedDense(4, activation="tanh", name="gate")
    clone = assert_config_round_trip(layer)
    assert clone.units == 4 and clone.name == "gate"


@pytest.mark.parametrize("units", [0, 2.5, True, "8"])
def test_gated_dense_bad_units(units):
    with pytest.raises(ValueError, match=f"Received: units={units!r}"):
        GatedDense(units)


def gated_models():
    return [
        tfvae.VAE(
            input_shape=(12,),
            latent_dim=3,
            hidden_units=(8, 6),
            activation="linear",
            gated=True,
            seed=0,
        ),
        tfvae.HierarchicalVAE(
            input_shape=(12,),
            latent_dims=(4, 2),
            hidden_units=((8,), (6,)),
            activation="linear",
            gated=True,
            inference="ladder",
            seed=0,
        ),
    ]


@pytest.mark.parametrize("model", gated_models(), ids=["vae", "hvae"])
def test_gated_models_train_save_and_load(model, tmp_path):
    networks = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, (GatedDense, keras.layers.Dense))
        and not isinstance(layer, tfvae.heads.DistributionHead)
    ]
    gated = [layer for layer in networks if isinstance(layer, GatedDense)]
    # Every hidden layer is gated (their inner projections are the Dense ones).
    assert len(gated) == len(networks) // 2 > 0
    model.compile(optimizer="adam")
    before = model.evaluate(X_BIN, batch_size=200, verbose=0, return_dict=True)
    model.fit(X_BIN, epochs=5, batch_size=100, verbose=0)
    after = model.evaluate(X_BIN, batch_size=200, verbose=0, return_dict=True)
    assert after["elbo"] > before["elbo"]
    assert_config_round_trip(model)
    loaded = assert_keras_round_trip(model, X_BIN[:5], tmp_path)
    assert loaded.gated is True
    np.testing.assert_array_equal(
        loaded.elbo(X_BIN[:5], seed=1), model.elbo(X_BIN[:5], seed=1)
    )


@pytest.mark.parametrize("kind", ["vae", "hvae"])
def test_gated_must_be_a_bool(kind):
    with pytest.raises(ValueError, match="Received: gated='yes'"):
        if kind == "vae":
            tfvae.VAE(input_shape=(12,), latent_dim=3, gated="yes")
        else:
            tfvae.HierarchicalVAE(input_shape=(12,), gated="yes")
