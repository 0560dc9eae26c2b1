"""Keras layers of the built-in networks: gated dense and convolutional layers."""

import keras
from keras import ops

from tfvae import _checks

__all__ = ["GatedDense", "GatedConv2D", "GatedConv2DTranspose"]


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
        self.units = _checks.positive_int(units, "units")
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


class _GatedConvolution(keras.layers.Layer):
    """The gated convolutions: activation(conv_W(x)) * sigmoid(conv_V(x)).

    Subclasses set `convolution`, the Keras layer class of the projection. As
    in `GatedDense`, the two convolutions share one layer of `2 * filters`
    output channels (the value first, then the gate), so the layer runs one
    convolution.
    """

    convolution = None

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        activation=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _checks.positive_int(filters, "filters")
        self.padding = _checks.one_of(padding, "padding", ("same", "valid"))
        self.activation = keras.activations.get(activation)
        # The convolution checks kernel_size and strides, and standardizes them.
        self.projection = self.convolution(
            2 * filters,
            kernel_size,
            strides=strides,
            padding=padding,
            name="projection",
        )
        self.kernel_size = self.projection.kernel_size
        self.strides = self.projection.strides

    def build(self, input_shape):
        self.projection.build(input_shape)

    def call(self, inputs):
        value, gate = ops.split(self.projection(inputs), 2, axis=-1)
        return self.activation(value) * ops.sigmoid(gate)

    def compute_output_shape(self, input_shape):
        shape = self.projection.compute_output_shape(input_shape)
        return (*shape[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "activation": keras.activations.serialize(self.activation),
        }


@keras.saving.register_keras_serializable(package="tfvae")
class GatedConv2D(_GatedConvolution):
    """A gated 2D convolution: activation(conv_W(x)) * sigmoid(conv_V(x)).

    The convolutional gated linear unit of Dauphin et al. (2017), the
    building block of the convolutional VAEs of Tomczak & Welling (2018): a
    sigmoid gate computed by a second convolution of the same input scales
    each output channel at each location. Both convolutions share one
    `keras.layers.Conv2D` of `2 * filters` channels (`projection`: the value
    channels first, then the gate's), so the layer runs one convolution.

    Args:
        filters: output channels, >= 1.
        kernel_size: an int or a pair of ints, the height and width of the
            kernel.
        strides: an int or a pair of ints. Default 1.
        padding: `"same"` (default) or `"valid"`.
        activation: activation of the ungated part; `None` (linear) by default.
        **kwargs: base layer keyword arguments, such as `name`.

    Example:

    ```python
    layer = tfvae.layers.GatedConv2D(32, 3, strides=2)
    y = layer(x)  # (batch, 14, 14, 32) for x of shape (batch, 28, 28, 1)
    ```
    """

    convolution = keras.layers.Conv2D


@keras.saving.register_keras_serializable(package="tfvae")
class GatedConv2DTranspose(_GatedConvolution):
    """A gated transposed 2D convolution, for upsampling.

    activation(convT_W(x)) * sigmoid(convT_V(x)), the two transposed
    convolutions sharing one `keras.layers.Conv2DTranspose` of `2 * filters`
    channels (`projection`). With `strides=2` and `padding="same"` it doubles
    the height and width: the learned upsampling of `tfvae.networks.conv_decoder`.

    Args:
        filters: output channels, >= 1.
        kernel_size: an int or a pair of ints.
        strides: an int or a pair of ints, the upsampling factors. Default 1.
        padding: `"same"` (default) or `"valid"`.
        activation: activation of the ungated part; `None` (linear) by default.
        **kwargs: base layer keyword arguments, such as `name`.

    Example:

    ```python
    layer = tfvae.layers.GatedConv2DTranspose(32, 3, strides=2)
    y = layer(x)  # (batch, 14, 14, 32) for x of shape (batch, 7, 7, 64)
    ```
    """

    convolution = keras.layers.Conv2DTranspose
