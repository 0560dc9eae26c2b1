"""tfvae: variational autoencoders for TensorFlow and Keras 3.

The public API is what this module re-exports.
"""

from tfvae import heads
from tfvae.vae import VAE
from tfvae.version import __version__

__all__ = ["VAE", "heads", "__version__"]
