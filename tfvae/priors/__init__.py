"""Priors p(z) of the top latent layer: Keras layers that return distributions.

A prior is a `Prior` layer that the model owns (`model.prior`), so a learned
prior's weights train, save and export with the model; `tfvae.priors.base`
describes the protocol. The priors:

- `StandardNormal()`: N(0, I), the default (closed-form KL).
- `MixtureOfGaussians(num_components)`: a learned mixture of diagonal
  Gaussians.
- `VampPrior(num_pseudo_inputs=500)`: the mixture of the model's own
  posteriors at learned pseudo-inputs (Tomczak & Welling 2018).

Which to use: `StandardNormal` unless the likelihood matters most. A learned
prior closes the gap between the aggregate posterior and p(z), which is where
the ELBO loses most on binarized MNIST; the VampPrior does so best and costs
an encoder pass over its K pseudo-inputs per training step;
`MixtureOfGaussians` is cheap and serves when a clustered latent space is
wanted. Neither has a closed-form KL: use `kl="mc"` in `tfvae.VAE`.

`get` takes a prior, a config dict or a name: `"standard_normal"`,
`"mog:K"` (`MixtureOfGaussians(K)`) or `"vamp:K"` (`VampPrior(K)`), as on
the command line (`--prior vamp:500`).
"""

import keras

from tfvae import _checks
from tfvae.priors.base import Prior, StandardNormal
from tfvae.priors.mixture import MixtureOfGaussians, MixturePrior
from tfvae.priors.vamp import VampPrior

__all__ = [
    "NAMES",
    "MixtureOfGaussians",
    "MixturePrior",
    "Prior",
    "StandardNormal",
    "VampPrior",
    "get",
    "serialize",
]

_NAMES = {"standard_normal": StandardNormal}
# Names that take a number of components: "mog:10", "vamp:500".
_COUNTED = {"mog": MixtureOfGaussians, "vamp": VampPrior}
NAMES = (*_NAMES, *(f"{name}:K" for name in _COUNTED))


def get(identifier):
    """A new prior for a name or a serialized prior; a `Prior` as it is.

    Args:
        identifier: `"standard_normal"` (N(0, I)), `"mog:K"` (a learned
            mixture of K Gaussians), `"vamp:K"` (a VampPrior with K
            pseudo-inputs), a config dict produced by
            `tfvae.priors.serialize`, or a `Prior` instance.

    Raises:
        ValueError: for an unknown name or an object that is not a prior.
    """
    return _checks.get_object(identifier, Prior, _from_name, "prior", NAMES)


def _from_name(name):
    key = name.lower()
    if key in _NAMES:
        return _NAMES[key]()
    kind, _, count = key.partition(":")
    if kind in _COUNTED:
        try:
            number = int(count)
        except ValueError:
            number = 0
        if number < 1:
            raise ValueError(
                f"The K of {kind}:K must be a positive integer, e.g. {kind}:10. "
                f"Received: prior={name!r}"
            )
        return _COUNTED[kind](number)
    raise ValueError(
        f"Unknown prior {name!r}. Valid names: {list(NAMES)}, or a "
        f"tfvae.priors.Prior instance. Received: prior={name!r}"
    )


def serialize(prior):
    """The config dict of a prior, for `get` to rebuild it."""
    return keras.saving.serialize_keras_object(prior)
