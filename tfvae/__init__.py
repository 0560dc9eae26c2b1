"""tfvae: variational autoencoders for TensorFlow and Keras 3.

The public API is what this module re-exports. `docs/architecture.md` maps
the modules and the protocol through which they meet.
"""

from tfvae import (
    autoregressive,
    callbacks,
    conditional,
    data,
    diagnostics,
    distribute,
    distributions,
    heads,
    latent,
    layers,
    networks,
    noise,
    plots,
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
from tfvae.portable import export_litert, export_onnx
from tfvae.vae import VAE
from tfvae.version import __version__

__all__ = [
    "VAE",
    "HierarchicalVAE",
    "autoregressive",
    "bits_per_dim",
    "callbacks",
    "certify",
    "conditional",
    "data",
    "diagnostics",
    "distribute",
    "distributions",
    "evaluate_log_likelihood",
    "export_litert",
    "export_onnx",
    "export_saved_model",
    "heads",
    "latent",
    "layers",
    "networks",
    "noise",
    "plots",
    "priors",
    "runs",
    "training",
    "use_evaluation_threads",
    "zoo",
    "__version__",
]
