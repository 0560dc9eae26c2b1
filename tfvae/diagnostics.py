"""Diagnostics of a trained model's latent layers: active units and KL per dimension.

Both take averages over a data set (and, for the upper layers of a
hierarchy, over `num_samples` ancestral samples of the inference chain).
Both hold for either inference model of `tfvae.HierarchicalVAE`.
For bits per dimension, see `tfvae.bits_per_dim`.
"""

import numpy as np
import tensorflow as tf

from tfvae import _checks, estimators
from tfvae import noise as noise_lib

__all__ = ["active_units", "active_units_of", "kl_per_dimension", "latent_statistics"]


def latent_statistics(model, x, num_samples=10, seed=0, batch_size=1000):
    """One pass over the data: each layer's posterior means and KL per dimension.

    Args:
        model: a `tfvae.latent.LatentVariableModel`.
        x: an array of examples.
        num_samples: samples of the inference chain per example.
        seed: an int seed of those samples.
        batch_size: examples per chunk.

    Returns:
        `(means, kls)`: per layer (z_1 first), the posterior means E_q[z_l]
        averaged over the samples, an (n, dim) array, and the mean KL of each
        dimension over the data, a (dim,) array.
    """
    num_samples = _checks.positive_int(num_samples, "num_samples")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    arrays = model.as_arrays(x)
    model.check_data(arrays)
    num_examples = len(tf.nest.flatten(arrays)[0])
    means, kls = None, None
    for start in range(0, num_examples, batch_size):
        part = estimators.examples_between(arrays, start, start + batch_size)
        batch = len(tf.nest.flatten(part)[0])
        chunk = model.check_inputs(part, values=False)  # checked in full above
        noise = noise_lib.standard_normal(
            (1, num_samples * batch), model.latent_dims, seed=seed + start
        )
        repeated = tf.nest.map_structure(
            lambda t: tf.tile(t, [num_samples] + [1] * (len(t.shape) - 1)), chunk
        )
        chunk_means, chunk_kls = [], []
        for layer in model.latent_layers(repeated, noise):
            mean = tf.reshape(layer.q.mean(), (num_samples, batch, -1))
            chunk_means.append(tf.reduce_mean(mean, axis=0).numpy())
            chunk_kls.append(tf.reduce_sum(layer.kl, axis=0).numpy() / num_samples)
        if means is None:
            means, kls = [[m] for m in chunk_means], chunk_kls
        else:
            for layer, (m, k) in enumerate(zip(chunk_means, chunk_kls, strict=True)):
                means[layer].append(m)
                kls[layer] = kls[layer] + k
    means = [np.concatenate(m) for m in means]
    return means, [k / num_examples for k in kls]


def active_units_of(means, threshold=0.01):
    """`active_units`' result from the posterior means of `latent_statistics`."""
    activity = [m.var(axis=0) for m in means]
    return {
        "active_units": [int((a > threshold).sum()) for a in activity],
        "activity": activity,
    }


def active_units(model, x, threshold=0.01, num_samples=10, seed=0, batch_size=1000):
    """Counts the active latent units of each layer (Burda et al. 2015).

    Mathematical details: unit u is active when A_u = Cov_x(E_{q(u|x)}[u])
    exceeds `threshold` (0.01 in the paper): the posterior mean of u moves with
    x. In a hierarchy, a layer whose posterior depends on a sampled layer (the
    layers above z_1; under ladder inference, those below z_L) has E_q[u]
    averaged over `num_samples` ancestral samples of the inference chain.

    Args:
        model: a `tfvae.VAE`, `tfvae.HierarchicalVAE` or any
            `tfvae.latent.LatentVariableModel`.
        x: an array of examples.
        threshold: the activity above which a unit is active.
        num_samples: samples of the inference chain per example.
        seed: an int seed of those samples.
        batch_size: examples per chunk.

    Returns:
        A dict: `active_units`, a list with the count of each layer (z_1
        first), and `activity`, a list of arrays of A_u per unit.
    """
    means, _ = latent_statistics(model, x, num_samples, seed, batch_size)
    return active_units_of(means, threshold)


def kl_per_dimension(model, x, num_samples=10, seed=0, batch_size=1000):
    """The KL term of each latent dimension, averaged over the data, in nats.

    For the top layer, the closed-form KL(q(u|.) || p(u)) of each dimension (where the
    prior has one); for the layers below, the sampled log q(u|.) - log p(u|.) of each
    dimension (both densities are diagonal, so the layer's KL is the sum over its
    dimensions). The sums over dimensions add up to the `kl_l` metrics. A dimension near
    0 carries no information about x.

    Returns:
        A list of arrays, one per latent layer (z_1 first), of shape (dim,).
    """
    _, kls = latent_statistics(model, x, num_samples, seed, batch_size)
    return kls
