"""tfvae: variational autoencoders for TensorFlow and Keras 3.

The public API is what this module re-exports. `docs/architecture.md` maps
the modules and the protocol through which they meet.
"""

from tfvae import (
    callbacks,
    data,
    diagnostics,
    distribute,
    distributions,
    heads,
    latent,
    layers,
    networks,
    noise,
    priors,
    runs,
    training,
    zoo,
)
from tfvae.certificate import certify
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
    "certify",
    "data",
    "diagnostics",
    "distribute",
    "distributions",
    "evaluate_log_likelihood",
    "export_saved_model",
    "heads",
    "latent",
    "layers",
    "networks",
    "noise",
    "priors",
    "runs",
    "training",
    "use_evaluation_threads",
    "zoo",
    "__version__",
]
