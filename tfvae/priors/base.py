"""The prior protocol, `Prior`, and the default prior, `StandardNormal`.

A prior is a `Prior` layer that the model owns (`model.prior`), so a learned
prior's weights train, save and export with the model. The models reach it
through these names only, which are the whole protocol:

- `set_latent_dim(dim)`: called once by the model with the size of z.
- `distribution()`: p(z) as a `tfd.Distribution` with event shape (dim,).
- `log_prob(z, prepared=None)`: log p(z) over the last axis, for any
  leading shape; `prepared` is what `prepare()` returned (None: compute it).
- `prepare()`: the work of `log_prob` that does not depend on z (a mixture's
  components), done once for many calls, as the estimator does per chunk;
  None by default.
- `kl_divergence(q)`: KL(q || p) in closed form for a diagonal-Gaussian q,
  per example, where `analytic_kl` is True (else `None`: the model estimates
  the KL by the sampled log-density ratio); `kl_per_dimension(q)` likewise
  per dimension, for the diagnostics.
- `sample_from_noise(noise)`: a draw of p(z) from standard-normal noise of
  shape (..., `noise_dim`): ancestral sampling and the exported `sample`
  signature go through it.

A prior computed by the model's own networks (`tfvae.priors.VampPrior`)
also implements `bind(model)`, which the model calls once, before `build`.
The importance-sampling estimator sizes its blocks with the prior's
`floats_per_sample()`.

`StandardNormal` is the default. A new prior is a new module with a subclass
and an entry for `tfvae.priors.get`; see `docs/architecture.md` for a worked
example.
"""

import keras

from tfvae import _checks
from tfvae.distributions import (
    standard_normal,
    standard_normal_log_prob,
    tfd,
)

__all__ = ["Prior", "StandardNormal"]


class Prior(keras.layers.Layer):
    """Base class of the priors; see the module docstring for the protocol.

    Args:
        latent_dim: the size of z. May be left `None`: the model sets it
            through `set_latent_dim`.
        **kwargs: base layer keyword arguments, such as `name`.
    """

    # Whether `kl_divergence` and `kl_per_dimension` have a closed form.
    analytic_kl = False

    def __init__(self, latent_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = None
        if latent_dim is not None:
            self.set_latent_dim(latent_dim)

    def set_latent_dim(self, latent_dim):
        """Sets the size of z, or checks it if it was set already."""
        latent_dim = _checks.positive_int(latent_dim, "latent_dim")
        if self.latent_dim is not None and self.latent_dim != latent_dim:
            raise ValueError(
                f"Prior '{self.name}' was configured with latent_dim="
                f"{self.latent_dim}, but the model needs latent_dim={latent_dim}. "
                f"Received: latent_dim={self.latent_dim}"
            )
        self.latent_dim = latent_dim

    def bind(self, model):
        """Called once by the model that owns this prior, before `build`.

        A prior made of the model's own networks keeps what it needs here
        (the VampPrior keeps `model.input_shape` and `model.top_posterior`).
        The default does nothing.
        """
        del model

    def floats_per_sample(self):
        """Rough float32 count of the work of `log_prob` for one z.

        The importance-sampling estimator adds it to the model's count to size
        its blocks; 0 for a prior whose log-density is O(latent_dim).
        """
        return 0

    @property
    def noise_dim(self):
        """The size of the standard-normal noise `sample_from_noise` takes."""
        return self.latent_dim

    def build(self, input_shape=None):
        """Creates the prior's weights (none for a fixed prior).

        The model calls it once `latent_dim` is set, with `input_shape`
        (None, latent_dim).
        """

    def distribution(self):
        """p(z): a `tfd.Distribution` with event shape (latent_dim,)."""
        raise NotImplementedError

    def prepare(self):
        """What `log_prob` computes whatever z is, or None."""
        return None

    def log_prob(self, z, prepared=None):
        """log p(z) over the last axis: shape `z.shape[:-1]`."""
        del prepared
        return self.distribution().log_prob(z)

    def kl_divergence(self, q):
        """KL(q || p) per example in closed form, or None where there is none."""
        del q
        return None

    def kl_per_dimension(self, q):
        """KL(q_j || p_j) per dimension j in closed form, or None."""
        del q
        return None

    def sample_from_noise(self, noise):
        """A reparameterized draw of p(z) from noise of shape (..., noise_dim)."""
        raise NotImplementedError

    def call(self, noise):
        return self.sample_from_noise(noise)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


@keras.saving.register_keras_serializable(package="tfvae")
class StandardNormal(Prior):
    """The fixed prior p(z) = N(0, I), the default of both models.

    Mathematical details: log p(z) = -|z|^2 / 2 - D/2 log 2 pi, and for
    q = N(mu, diag(sigma^2)), KL(q || p) = 0.5 sum_j (mu_j^2 + sigma_j^2 - 1
    - log sigma_j^2).

    Example:

    >>> prior = tfvae.priors.StandardNormal(latent_dim=2)
    >>> prior.log_prob(keras.ops.zeros((3, 2))).shape
    TensorShape([3])
    """

    analytic_kl = True

    def distribution(self):
        return standard_normal(self.latent_dim)

    def log_prob(self, z, prepared=None):
        del prepared
        return standard_normal_log_prob(z)

    def kl_divergence(self, q):
        return tfd.kl_divergence(q, self.distribution())

    def kl_per_dimension(self, q):
        return q.distribution.kl_divergence(self.distribution().distribution)

    def sample_from_noise(self, noise):
        return noise
