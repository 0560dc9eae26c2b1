"""Keras layers of the default networks."""

import keras
from keras import ops

__all__ = ["GatedDense"]


@keras.saving.register_keras_serializable(package="tfvae")
class GatedDense(keras.layers.Layer):
    """A gated dense layer: activation(W x + b) * sigmoid(V x + c).

    The gated linear unit of Dauphin et al. (2017), as used in the VAEs of
    Tomczak & Welling (2018): the sigmoid gate, computed from the same input,
    scales each unit. The two projections share one kernel of shape
    (input_dim, 2 * units), so the layer runs one matmul.

    Args:
        units: width of the output, >= 1.
        activation: activation of the ungated part; `None` (linear) by default.
        **kwargs: base layer keyword arguments, such as `name`.

    Example:

    ```python
    layer = tfvae.layers.GatedDense(300)
    y = layer(x)  # (batch, 300)
    ```
    """

    def __init__(self, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(
                f"`units` must be an integer >= 1. Received: units={units!r}"
            )
        self.units = units
        self.activation = keras.activations.get(activation)
        self.projection = keras.layers.Dense(2 * units, name="projection")

    def build(self, input_shape):
        self.projection.build(input_shape)

    def call(self, inputs):
        value, gate = ops.split(self.projection(inputs), 2, axis=-1)
        return self.activation(value) * ops.sigmoid(gate)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
        }
