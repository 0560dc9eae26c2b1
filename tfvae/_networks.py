"""The default networks of the models: multilayer perceptrons."""

import keras


def mlp(hidden_units, activation, flatten=False, name=None):
    """A `keras.Sequential` of Dense layers; `()` is the identity (a linear model).

    Args:
        hidden_units: widths of the hidden layers, in order.
        activation: activation of every hidden layer.
        flatten: whether to flatten the input first (for image-shaped data).
        name: the Sequential's name.
    """
    layers = [keras.layers.Flatten()] if flatten else []
    layers += [
        keras.layers.Dense(units, activation=activation) for units in hidden_units
    ]
    if not layers:
        layers = [keras.layers.Identity()]
    return keras.Sequential(layers, name=name)
