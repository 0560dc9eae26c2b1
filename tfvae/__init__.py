"""tfvae: variational autoencoders for TensorFlow and Keras 3.

The public API is what this module re-exports.
"""

from tfvae import callbacks, data, diagnostics, distribute, heads, layers, zoo
from tfvae.estimators import (
    bits_per_dim,
    evaluate_log_likelihood,
    use_evaluation_threads,
)
from tfvae.export import export_saved_model
from tfvae.hvae import HierarchicalVAE
from tfvae.vae import VAE
from tfvae.version import __version__

__all__ = [
    "VAE",
    "HierarchicalVAE",
    "bits_per_dim",
    "callbacks",
    "data",
    "diagnostics",
    "distribute",
    "evaluate_log_likelihood",
    "export_saved_model",
    "heads",
    "layers",
    "use_evaluation_threads",
    "zoo",
    "__version__",
]
