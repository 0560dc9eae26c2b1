"""The networks the models build by name: MLPs and gated convolutional networks.

A network is any Keras layer that maps a batch to a batch of features; the
heads project whatever it returns (flattened, or location by location for
feature maps under `projection="pixel"`). A model takes custom networks too
(see `tfvae.VAE(encoder=, decoder=)` and `tfvae.HierarchicalVAE(
inference_networks=, generative_networks=)`); a new kind of built-in network
is a new module here.
"""

from tfvae import _checks
from tfvae.networks.conv import conv_decoder, conv_encoder, image_shape
from tfvae.networks.mlp import mlp

__all__ = ["mlp", "conv_encoder", "conv_decoder"]

# The kinds of default networks of the models (their `architecture`).
ARCHITECTURES = ("mlp", "conv")


def check_architecture(architecture, input_shape):
    """A model's `architecture`, checked with its input shape before any weight.

    `"conv"` needs `input_shape` (H, W, C) with H and W divisible by 4, for
    the two stride-2 stages of `conv_encoder` and `conv_decoder`.
    """
    _checks.one_of(architecture, "architecture", ARCHITECTURES)
    if architecture == "conv":
        image_shape(input_shape, what="architecture='conv'")
    return architecture
