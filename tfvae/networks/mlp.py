"""Multilayer perceptrons, the default networks of the models."""

import keras

from tfvae.layers import GatedDense


def dense_layers(hidden_units, activation, gated=False):
    """A list of Dense (or `tfvae.layers.GatedDense`) layers of these widths."""
    layer = GatedDense if gated else keras.layers.Dense
    return [layer(units, activation=activation) for units in hidden_units]


def mlp(hidden_units, activation, flatten=False, name=None, gated=False):
    """A `keras.Sequential` of Dense layers; `()` is the identity (a linear model).

    Args:
        hidden_units: widths of the hidden layers, in order.
        activation: activation of every hidden layer.
        flatten: whether to flatten the input first (for image-shaped data).
        name: the Sequential's name.
        gated: `tfvae.layers.GatedDense` layers, activation(W x + b) *
            sigmoid(V x + c), instead of Dense ones.
    """
    layers = [keras.layers.Flatten()] if flatten else []
    layers += dense_layers(hidden_units, activation, gated)
    if not layers:
        layers = [keras.layers.Identity()]
    return keras.Sequential(layers, name=name)
