"""Mixture priors: p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)).

`MixturePrior` turns a prior's `components()` (log weights, means, scales)
into the `Prior` protocol: the density by log-sum-exp over the components,
ancestral draws from noise, and no closed-form KL (the models estimate it by
the sampled log-density ratio). `MixtureOfGaussians` learns all three.
"""

import math

import keras
from keras import ops

from tfvae import _checks
from tfvae.distributions import (
    diagonal_mixture,
    diagonal_mixture_log_prob,
    diagonal_mixture_sample,
)
from tfvae.priors.base import Prior

__all__ = ["MixturePrior", "MixtureOfGaussians"]

# softplus^-1(1): the raw value of a unit scale.
_UNIT_SCALE = math.log(math.e - 1.0)
# The smallest scale of a component, so that log-densities stay finite.
MIN_SCALE = 1e-4


class MixturePrior(Prior):
    """Base class of the diagonal-Gaussian mixture priors.

    A subclass implements `components()`. KL(q || p) has no closed form, so
    `analytic_kl` is False, `kl="analytic"` is refused by `tfvae.VAE`, and
    the KL is the sampled log q(z|x) - log p(z).

    Args:
        num_components: K, the number of mixture components, >= 1.
        latent_dim: the size of z (the model sets it when `None`).
        **kwargs: base layer keyword arguments, such as `name`.
    """

    def __init__(self, num_components, latent_dim=None, **kwargs):
        super().__init__(latent_dim=latent_dim, **kwargs)
        self.num_components = _checks.positive_int(num_components, "num_components")

    def components(self):
        """(log_weights (K,), loc (K, dim), scale (K, dim)), all float32."""
        raise NotImplementedError

    def distribution(self):
        return diagonal_mixture(*self.components())

    def prepare(self):
        # The components: for the VampPrior, an encoder pass over the
        # pseudo-inputs, done once per chunk of the estimator, not per block.
        return self.components()

    def log_prob(self, z, prepared=None):
        return diagonal_mixture_log_prob(z, *(prepared or self.components()))

    def floats_per_sample(self):
        # The (K, dim) standardized values and their squares.
        return 2 * self.num_components * self.latent_dim

    @property
    def noise_dim(self):
        # One coordinate picks the component; the rest draw z from it.
        return 1 + self.latent_dim

    def sample_from_noise(self, noise):
        return diagonal_mixture_sample(noise, *self.components())

    def get_config(self):
        return {**super().get_config(), "num_components": self.num_components}


@keras.saving.register_keras_serializable(package="tfvae")
class MixtureOfGaussians(MixturePrior):
    """A learned mixture of K diagonal Gaussians.

    p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), with pi = softmax(logits),
    sigma = softplus(raw) + 1e-4, all learned with the model. The weights
    start equal, the scales at 1 and the means at N(0, `init_stddev`^2)
    draws, seeded, so that the components start apart.

    Mathematical details: log p(z) = logsumexp_k [log pi_k + log N(z; mu_k,
    sigma_k^2)]; a draw picks k ~ Categorical(pi), then z = mu_k + sigma_k e.

    Args:
        num_components: K, >= 1.
        init_stddev: the spread of the initial means, >= 0.
        seed: seed of the initial means.
        latent_dim: the size of z (the model sets it when `None`).
        **kwargs: base layer keyword arguments, such as `name`.

    Example:

    >>> prior = tfvae.priors.MixtureOfGaussians(10)
    >>> model = tfvae.VAE(input_shape=(784,), latent_dim=2, prior=prior, kl="mc")
    >>> model.prior.distribution().batch_shape, model.prior.noise_dim
    (TensorShape([]), 3)
    """

    def __init__(
        self, num_components, init_stddev=1.0, seed=0, latent_dim=None, **kwargs
    ):
        super().__init__(num_components, latent_dim=latent_dim, **kwargs)
        self.init_stddev = _checks.non_negative_float(init_stddev, "init_stddev")
        self.seed = seed

    def build(self, input_shape=None):
        shape = (self.num_components, self.latent_dim)
        self.logits = self.add_weight(
            shape=(self.num_components,), initializer="zeros", name="logits"
        )
        self.loc = self.add_weight(
            shape=shape,
            initializer=keras.initializers.RandomNormal(
                stddev=self.init_stddev, seed=self.seed
            ),
            name="loc",
        )
        self.raw_scale = self.add_weight(
            shape=shape,
            initializer=keras.initializers.Constant(_UNIT_SCALE),
            name="raw_scale",
        )

    def components(self):
        logits = ops.cast(self.logits, "float32")
        log_weights = logits - ops.logsumexp(logits)
        scale = ops.softplus(ops.cast(self.raw_scale, "float32")) + MIN_SCALE
        return log_weights, ops.cast(self.loc, "float32"), scale

    def get_config(self):
        return {
            **super().get_config(),
            "init_stddev": self.init_stddev,
            "seed": self.seed,
        }
