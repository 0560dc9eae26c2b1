"""Convolutional networks for image-shaped data, built from gated convolutions.

`conv_encoder` maps images of shape (H, W, C) to a flat feature vector;
`conv_decoder` maps a latent vector to feature maps of shape (H, W, F), which
a likelihood head with `projection="pixel"` turns into the parameters of each
pixel. The models build them under `architecture="conv"`.

Why gated convolutions rather than residual blocks. Every convolution here is
a `tfvae.layers.GatedConv2D` (or its transpose), activation(conv_W(x)) *
sigmoid(conv_V(x)), as in the convolutional hierarchical VAE (convHVAE) of
Tomczak & Welling (2018), and as `gated=True` makes the dense layers: the
sigmoid gate selects, at every location, which features pass. Residual
blocks earn their keep in deep stacks (the tens of layers of IAF-VAE or
NVAE), where the identity path carries the gradient; these networks have
three or four convolutions, which need no such path, and a residual block
costs two convolutions per stage, a projection shortcut wherever the shape
changes (each stage here changes it), and in practice a normalization layer
(NVAE's batch normalization), whose batch statistics the importance-sampled
estimator would mix across the samples of one example. A gated convolution
costs one convolution of twice the channels, needs no normalization, and is
the block whose VAEs' log-likelihoods on binarized MNIST are published.

Why transposed convolutions for upsampling. The decoder runs once per
importance sample: `log_likelihood` evaluates it 5000 times per test image,
so its cost per evaluation is what matters. A stride-2
`tfvae.layers.GatedConv2DTranspose` applies its k x k kernel once per input
(low-resolution) location: a quarter of the multiply-adds of a
nearest-neighbour `UpSampling2D` followed by the same convolution at the
doubled resolution. The gated convolution at full resolution that follows
smooths the uneven kernel overlap of a stride-2, 3 x 3 transposed
convolution (the checkerboard of Odena et al. 2016).

The decoder starts from a small map: a gated dense layer maps z to
(H/4, W/4, filters[-1]), two stride-2 stages upsample it to
(H, W, filters[0]), and one gated convolution runs at full resolution. For
(28, 28, 1) images, a 40-dimensional z, the default filters (32, 64) and no
hidden dense layers, the decoder costs 20.1 million multiply-adds per
evaluation (0.25 M for the dense layer, 1.8 M and 3.6 M for the two
upsampling stages, 14.5 M for the full-resolution convolution; a pixel head
adds 0.03 M), and the encoder 5.9 million (0.45 M, 3.6 M and 1.8 M for its
three convolutions; the posterior head adds 0.25 M). A stack of 64-channel
3 x 3 gated convolutions at full resolution costs 58 million per layer.

References: Tomczak & Welling (2018), VAE with a VampPrior; Dauphin et al.
(2017), Language Modeling with Gated Convolutional Networks; Odena, Dumoulin
& Olah (2016), Deconvolution and Checkerboard Artifacts.
"""

import math

import keras

from tfvae import _checks
from tfvae.layers import GatedConv2D, GatedConv2DTranspose, GatedDense
from tfvae.networks.mlp import dense_layers

__all__ = ["conv_encoder", "conv_decoder", "image_shape"]


def image_shape(shape, name="input_shape", stages=2, what="the convolutional networks"):
    """(H, W, C) for an image shape whose H and W are divisible by 2**stages.

    Args:
        shape: the shape to check, without the batch axis.
        name: its name in the error message.
        stages: the number of stride-2 stages it must go through.
        what: who needs it, for the error message.

    Raises:
        ValueError: for a shape that is not (height, width, channels) of
            positive integers with height and width divisible by 2**stages.
    """
    divisor = 2**stages
    try:
        checked = _checks.shape_tuple(shape, name)
    except ValueError:
        checked = None
    if (
        checked is None
        or len(checked) != 3
        or checked[0] % divisor
        or checked[1] % divisor
    ):
        raise ValueError(
            f"{what}: `{name}` must be of the form (height, width, channels), "
            f"with height and width divisible by {divisor}, e.g. (28, 28, 1). "
            f"Received: {name}={shape!r}"
        )
    return checked


def _filters(filters):
    return _checks.shape_tuple(filters, "filters")


def conv_encoder(
    input_shape,
    filters=(32, 64),
    kernel_size=3,
    hidden_units=(),
    activation=None,
    gated=False,
    name=None,
):
    """A gated convolutional encoder: images (H, W, C) to a feature vector.

    One gated convolution of `filters[0]` channels at full resolution, then
    one stride-2 gated convolution per entry of `filters` (the height and
    width halve at each), a flatten, and optional dense layers.

    Args:
        input_shape: shape of one image, (H, W, C), with H and W divisible by
            2 ** len(filters) (4 for the default).
        filters: the channels after each stride-2 stage, e.g. `(32, 64)`:
            (H/2, W/2, 32), then (H/4, W/4, 64).
        kernel_size: the height and width of every kernel.
        hidden_units: widths of dense layers after the convolutions; `()`
            (default) returns the flattened feature maps.
        activation: activation of the ungated part of every layer; `None`
            (linear, the gated units of Tomczak & Welling) by default.
        gated: whether the dense layers are `tfvae.layers.GatedDense` (the
            convolutions are always gated).
        name: the Sequential's name.

    Returns:
        A `keras.Sequential` mapping (batch, H, W, C) to (batch, features).

    Example:

    ```python
    encoder = tfvae.networks.conv_encoder((28, 28, 1))
    encoder(images).shape  # (batch, 7 * 7 * 64)
    ```
    """
    filters = _filters(filters)
    image_shape(input_shape, stages=len(filters), what="conv_encoder")
    layers = [GatedConv2D(filters[0], kernel_size, activation=activation)]
    layers += [
        GatedConv2D(width, kernel_size, strides=2, activation=activation)
        for width in filters
    ]
    layers.append(keras.layers.Flatten())
    layers += dense_layers(hidden_units, activation, gated)
    return keras.Sequential(layers, name=name)


def conv_decoder(
    output_shape,
    filters=(32, 64),
    kernel_size=3,
    hidden_units=(),
    activation=None,
    gated=False,
    name=None,
):
    """A gated convolutional decoder: a vector to feature maps of (H, W).

    Optional dense layers, a `tfvae.layers.GatedDense` onto a map of
    (H / 2**n, W / 2**n, filters[-1]), n = len(filters), then n stride-2
    gated transposed convolutions back to (H, W) (the channels of the
    encoder's stages in reverse, ending at `filters[0]`), and one gated
    convolution at full resolution. The output is the feature maps: a
    likelihood head with `projection="pixel"` maps them to the parameters of
    each pixel.

    Args:
        output_shape: shape of one image, (H, W, C), with H and W divisible
            by 2 ** len(filters); the decoder returns (H, W, filters[0])
            feature maps.
        filters: the channels of the stages, as for `conv_encoder`: the map
            starts with `filters[-1]` channels.
        kernel_size: the height and width of every kernel.
        hidden_units: widths of dense layers before the map, in order; `()`
            (default) for none.
        activation: activation of the ungated part of every layer; `None`
            (linear) by default.
        gated: whether the hidden dense layers are `tfvae.layers.GatedDense`
            (the map's projection and the convolutions are always gated).
        name: the Sequential's name.

    Returns:
        A `keras.Sequential` mapping (batch, dim) to (batch, H, W, filters[0]).

    Example:

    ```python
    decoder = tfvae.networks.conv_decoder((28, 28, 1))
    head = tfvae.heads.BernoulliHead(event_shape=(28, 28, 1), projection="pixel")
    p = head(decoder(z))  # p(x|z) for z of shape (batch, latent_dim)
    ```
    """
    filters = _filters(filters)
    height, width, _ = image_shape(
        output_shape, "output_shape", stages=len(filters), what="conv_decoder"
    )
    scale = 2 ** len(filters)
    start = (height // scale, width // scale, filters[-1])
    layers = dense_layers(hidden_units, activation, gated)
    layers += [
        GatedDense(math.prod(start), activation=activation),
        keras.layers.Reshape(start),
    ]
    layers += [
        GatedConv2DTranspose(channels, kernel_size, strides=2, activation=activation)
        for channels in (*filters[-2::-1], filters[0])
    ]
    layers.append(GatedConv2D(filters[0], kernel_size, activation=activation))
    return keras.Sequential(layers, name=name)
