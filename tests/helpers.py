"""Shared test helpers: round trips and an independent numpy forward pass."""

import json
import os

import keras
import numpy as np


def assert_config_round_trip(layer):
    """from_config(get_config()) rebuilds a layer with the same config."""
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert as_json(clone.get_config()) == as_json(config)
    return clone


def assert_keras_round_trip(model, x, tmp_path):
    """A .keras save/load gives identical deterministic outputs."""
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert as_json(loaded.get_config()) == as_json(model.get_config())
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    return loaded


def randomize_biases(model, rng, scale=0.3):
    """Random (not zero) biases and shared scales, so hand checks see every weight."""
    for weight in model.trainable_weights:
        if weight.path.endswith("bias") or weight.path.endswith("raw_scale"):
            weight.assign(rng.normal(scale=scale, size=weight.shape))


def as_json(config):
    """A config as it reads after a JSON round trip (tuples become lists)."""
    return json.loads(json.dumps(config))


def softplus(x):
    return np.logaddexp(0.0, x)


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def normal_log_density(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


def dense(x, layer, activation=None):
    y = x @ layer.kernel.numpy() + layer.bias.numpy()
    return np.tanh(y) if activation == "tanh" else y


def subprocess_environment(**extra):
    """This process's environment for a child, quiet, with TensorFlow's thread
    settings (TF_NUM_*) left to the child; `extra` variables on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_NUM_")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}
