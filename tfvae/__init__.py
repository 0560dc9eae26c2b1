"""tfvae: variational autoencoders for TensorFlow and Keras 3.

The public API is what this module re-exports.
"""

from tfvae import callbacks, heads
from tfvae.hvae import HierarchicalVAE
from tfvae.vae import VAE
from tfvae.version import __version__

__all__ = ["VAE", "HierarchicalVAE", "callbacks", "heads", "__version__"]
