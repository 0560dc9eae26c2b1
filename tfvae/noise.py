"""The models' standard-normal noise: drawn, counter-based, and split per layer.

Every stochastic pass of a tfvae model is driven by one standard-normal
tensor whose last axis holds the noise of every latent layer, z_1 first
(`model.latent_dims` long pieces); `split` cuts it into the per-layer list
that the models' `chain`, `latent_layers` and `generate` take.

`counter_normal` draws noise that is a fixed function of (seed, example index,
sample index): the importance-sampling estimator, the exported
`log_likelihood` signature and the training step use it, so any chunking of
examples and samples (or replicas of a `tf.distribute` strategy) draws the
same noise.
"""

import math

import keras
import tensorflow as tf
from keras import ops

__all__ = ["counter_normal", "split", "standard_normal"]


def split(noise, dims):
    """Splits noise along its last axis into one piece per layer, z_1 first.

    Args:
        noise: a tensor whose last axis has `sum(dims)` entries.
        dims: the noise size of each latent layer, z_1 first.

    Returns:
        A list of `len(dims)` tensors.
    """
    points, total = [], 0
    for dim in dims[:-1]:
        total += dim
        points.append(total)
    return ops.split(noise, points if points else 1, axis=-1)


def standard_normal(shape, dims, seed):
    """`keras.random.normal((*shape, sum(dims)), seed=seed)`, split per layer."""
    return split(keras.random.normal((*shape, sum(dims)), seed=seed), dims)


def _mix(h):
    """The 32-bit finalizer of MurmurHash3: a bijection with full avalanche."""
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))
    h = h * tf.constant(0x85EBCA6B, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 13))
    h = h * tf.constant(0xC2B2AE35, tf.uint32)
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))


def counter_normal(seed, example_index, first_sample, num_samples, dim):
    """N(0, 1) noise of shape (num_samples, batch, dim), a function of its indices.

    Entry (k, b, j) depends only on (seed, example_index[b], first_sample + k,
    j): a counter-based generator (hashed counters, then Box-Muller), so any
    chunking of examples and samples draws the same noise. Stateless random
    ops cannot be vectorized over per-example seeds; integer hashing can.
    """
    pairs = -(-dim // 2)
    golden = tf.constant(0x9E3779B9, tf.uint32)
    example = tf.cast(example_index, tf.uint32)[None, :, None]
    sample = tf.cast(first_sample + tf.range(num_samples), tf.uint32)[:, None, None]
    counter = tf.cast(tf.range(2 * pairs), tf.uint32)[None, None, :]
    h = _mix(tf.cast(seed, tf.uint32) + example * golden)
    h = _mix(tf.bitwise.bitwise_xor(h, sample * tf.constant(0x85EBCA77, tf.uint32)))
    h = _mix(tf.bitwise.bitwise_xor(h, counter * tf.constant(0xC2B2AE3D, tf.uint32)))
    # 24-bit uniforms in (0, 1), then both outputs of the Box-Muller transform.
    u = (tf.cast(tf.bitwise.right_shift(h, 8), tf.float32) + 0.5) * 2.0**-24
    radius = tf.sqrt(-2.0 * tf.math.log(u[..., :pairs]))
    angle = (2.0 * math.pi) * u[..., pairs:]
    noise = tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], axis=-1)
    return noise[..., :dim]
