"""The models' noise: counter-based draws and the split per layer."""

import math

import numpy as np
import tensorflow as tf

from tfvae import noise
from tfvae.noise import counter_normal


def test_counter_noise_is_standard_normal_and_independent():
    noise = counter_normal(7, tf.range(8), 0, 20_000, 5).numpy()  # (K, B, dim)
    flat = noise.ravel()
    n = flat.size
    assert abs(flat.mean()) < 4 / math.sqrt(n)
    assert abs(flat.var() - 1) < 4 * math.sqrt(2 / n)
    # Tails: P(|z| > 2) = 0.0455 and P(|z| > 3) = 0.0027 for a standard normal.
    for bound, p in ((2.0, 0.0455), (3.0, 0.0027)):
        assert abs((np.abs(flat) > bound).mean() - p) < 4 * math.sqrt(p * (1 - p) / n)
    # No correlation across dimensions, examples or consecutive samples.
    limit = 4 / math.sqrt(20_000)
    assert abs(np.corrcoef(noise[:, 0, 0], noise[:, 0, 1])[0, 1]) < limit
    assert abs(np.corrcoef(noise[:, 0, 0], noise[:, 1, 0])[0, 1]) < limit
    assert abs(np.corrcoef(noise[1:, 0, 0], noise[:-1, 0, 0])[0, 1]) < limit
    other_seed = counter_normal(8, tf.range(8), 0, 20_000, 5).numpy()
    assert abs(np.corrcoef(noise[:, 0, 0], other_seed[:, 0, 0])[0, 1]) < limit


def test_counter_noise_depends_only_on_its_indices():
    whole = counter_normal(3, tf.range(10), 0, 300, 7).numpy()
    part = counter_normal(3, tf.range(4, 6), 120, 50, 7).numpy()
    np.testing.assert_array_equal(part, whole[120:170, 4:6])


def test_split_cuts_the_last_axis_per_layer_z_1_first():
    draw = tf.reshape(tf.range(2 * 3 * 7, dtype=tf.float32), (2, 3, 7))
    pieces = noise.split(draw, (4, 2, 1))
    assert [p.shape for p in pieces] == [(2, 3, 4), (2, 3, 2), (2, 3, 1)]
    np.testing.assert_array_equal(tf.concat(pieces, axis=-1), draw)
    (whole,) = noise.split(draw, (7,))
    np.testing.assert_array_equal(whole, draw)


def test_standard_normal_is_keras_normal_split():
    import keras

    pieces = noise.standard_normal((5, 3), (2, 4), seed=9)
    expected = keras.random.normal((5, 3, 6), seed=9)
    np.testing.assert_array_equal(tf.concat(pieces, axis=-1), expected)
