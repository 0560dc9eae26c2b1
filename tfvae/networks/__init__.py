"""The networks the models build by name: multilayer perceptrons today.

A network is any Keras layer that maps a batch to a batch of features; the
heads flatten whatever it returns. A model takes custom networks too (see
`tfvae.VAE(encoder=, decoder=)`); a new kind of built-in network is a new
module here.
"""

from tfvae.networks.mlp import mlp

__all__ = ["mlp"]
