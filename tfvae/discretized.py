"""The discretized logistic likelihood: exact probabilities of 8-bit grey levels.

A grey level k of L levels, stored as the value k / (L - 1) in [0, 1], gets the
probability mass that a logistic density puts on its bin, the edge bins
stretched to the ends of the line (Salimans et al. 2017; Kingma et al. 2016):
a discrete distribution over the L levels, so `log_prob` is an exact
log-probability, bits/dim need no dequantization, and `tfvae.certify` reports
the log-likelihood of the discrete data.

`DiscretizedLogistic` is the TFP distribution (scalar events, one per pixel);
`tfvae.heads.DiscretizedLogisticHead` is the decoder head that projects
features onto its location and scale, `likelihood="discretized-logistic"` in
the models and on the command line.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import _checks

tfd = tfp.distributions

__all__ = [
    "DiscretizedLogistic",
    "DiscretizedLogisticMixture",
    "level_log_prob",
    "level_values",
]


def level_values(levels):
    """The float32 values k / (levels - 1), k = 0 .. levels - 1, of the levels.

    The values a dataset of `levels` grey levels holds after `tfvae.data.load`
    (uint8 / 255 in float32): the same float32 numbers.
    """
    return np.arange(levels, dtype=np.float32) / np.float32(levels - 1)


def level_log_prob(k, loc, scale, levels):
    """log P(level k) under a logistic(loc, scale) discretized to `levels`.

    `k` holds level indices as floats (0 .. levels - 1); the shapes
    broadcast. The stable form of `DiscretizedLogistic`'s docstring.
    """
    top = float(levels - 1)
    centered = k / top - loc
    a = (centered + 0.5 / top) / scale
    b = (centered - 0.5 / top) / scale
    log_upper = -tf.math.softplus(-a)  # log sigmoid(a), log P(X <= k)
    log_above_lower = -tf.math.softplus(b)  # log (1 - sigmoid(b))
    # b - a = -1 / (top * scale): the bin's width in scale units.
    log_width = tf.math.log(-tf.math.expm1(-1.0 / (top * scale)))
    middle = log_upper + log_above_lower + log_width
    return tf.where(k <= 0.0, log_upper, tf.where(k >= top, log_above_lower, middle))


def _levels_of(x, levels):
    """The level index k of each value, as a float tensor."""
    top = float(levels - 1)
    return tf.clip_by_value(tf.round(x * top), 0.0, top)


def _mean_level(loc, scale, levels):
    """The exact mean of the levels: sum_{j >= 1} P(X >= j) / (levels - 1)."""
    # P(X >= j) = 1 - sigmoid(b_j) = sigmoid(-b_j), with
    # b_j = ((j - 1/2) / (levels - 1) - loc) / scale.
    top = float(levels - 1)
    thresholds = (tf.range(1, levels, dtype=loc.dtype) - 0.5) / top
    b = (thresholds - loc[..., None]) / scale[..., None]
    return tf.reduce_sum(tf.sigmoid(-b), axis=-1) / top


def _logistic_levels(loc, scale, levels, uniform):
    """The level values of logistic draws from U(0, 1) noise."""
    logistic = loc + scale * (tf.math.log(uniform) - tf.math.log1p(-uniform))
    return _levels_of(logistic, levels) / float(levels - 1)


def _uniform(shape, seed, dtype):
    """U(0, 1) noise, open at 0 (the smallest normal float), seeded."""
    tiny = np.finfo(dtype.as_numpy_dtype).tiny
    return tf.random.stateless_uniform(shape, seed, minval=tiny, dtype=dtype)


def _check_levels(levels):
    levels = _checks.positive_int(levels, "levels")
    if levels < 2:
        raise ValueError(f"`levels` must be at least 2. Received: levels={levels}")
    return levels


class _OnLevels:
    """What both distributions over the levels share: scalar events of `levels`
    values, a location and a scale (per component), and `prob`."""

    @property
    def loc(self):
        return self._loc

    @property
    def scale(self):
        return self._scale

    @property
    def levels(self):
        return self._levels

    def _event_shape(self):
        return tf.TensorShape([])

    def _event_shape_tensor(self):
        return tf.constant([], dtype=tf.int32)

    def _prob(self, x):
        return tf.exp(self._log_prob(x))


class DiscretizedLogistic(_OnLevels, tfd.Distribution):
    """A logistic distribution discretized to the levels k / (L - 1) of [0, 1].

    Mathematical details: with bin half-width d = 1 / (2 (L - 1)), level value
    c = k / (L - 1), a = (c + d - loc) / scale and b = (c - d - loc) / scale,

        P(k) = sigmoid(a)                  for k = 0,
        P(k) = 1 - sigmoid(b)              for k = L - 1,
        P(k) = sigmoid(a) - sigmoid(b)     otherwise,

    so the L probabilities sum to 1. In logs, computed without the
    cancellation of the difference (sigmoid(a) - sigmoid(b) = sigmoid(a)
    (1 - exp(b - a)) / (1 + exp(b))):

        log P(0)     = -softplus(-a),
        log P(L - 1) = -softplus(b),
        log P(k)     = -softplus(-a) - softplus(b) + log(-expm1(b - a)),

    every term finite in float32 for any finite loc and positive scale, so a
    level far in a tail gets a large negative log-probability, not -inf or
    NaN (nor a NaN gradient through the unused branches).

    A value is scored as its nearest level (round(x (L - 1))); values outside
    [0, 1] are clipped to the edge levels. `sample` draws a logistic variate
    and returns its level's value, and `mean` is the exact mean of the levels,
    sum_{k >= 1} P(X >= k) / (L - 1).

    Args:
        loc: float tensor, the location of the logistic, in the units of the
            values (0 .. 1).
        scale: positive float tensor, the logistic's scale.
        levels: the number of levels L (256 for 8-bit data), an int >= 2.
        validate_args, allow_nan_stats, name: as for TFP distributions.

    References: Salimans, Karpathy, Chen & Kingma (2017), PixelCNN++:
    improving the PixelCNN with discretized logistic mixture likelihood and
    other modifications; Kingma et al. (2016), Improved variational inference
    with inverse autoregressive flow.
    """

    def __init__(
        self,
        loc,
        scale,
        levels=256,
        validate_args=False,
        allow_nan_stats=True,
        name="DiscretizedLogistic",
    ):
        parameters = dict(locals())
        levels = _check_levels(levels)
        with tf.name_scope(name) as name:
            self._loc = tf.convert_to_tensor(loc, dtype_hint=tf.float32, name="loc")
            self._scale = tf.convert_to_tensor(
                scale, dtype=self._loc.dtype, name="scale"
            )
            self._levels = levels
            super().__init__(
                dtype=self._loc.dtype,
                reparameterization_type=tfd.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {
            "loc": tfp.util.ParameterProperties(),
            "scale": tfp.util.ParameterProperties(
                default_constraining_bijector_fn=tfp.bijectors.Softplus
            ),
        }

    def _log_prob(self, x):
        k = _levels_of(tf.convert_to_tensor(x, self.dtype), self._levels)
        return level_log_prob(k, self._loc, self._scale, self._levels)

    def _sample_n(self, n, seed=None):
        shape = tf.concat([[n], self.batch_shape_tensor()], axis=0)
        uniform = _uniform(shape, tfp.random.sanitize_seed(seed), self.dtype)
        return _logistic_levels(self._loc, self._scale, self._levels, uniform)

    def _mean(self):
        return _mean_level(self._loc, self._scale, self._levels)


class DiscretizedLogisticMixture(_OnLevels, tfd.Distribution):
    """A mixture of discretized logistics over the levels k / (L - 1) of [0, 1].

    Mathematical details: P(k) = sum_j pi_j P_j(k), with pi = softmax(logits)
    and P_j the `DiscretizedLogistic` of (loc_j, scale_j); log P(k) is the
    log-sum-exp over j of log pi_j + log P_j(k), each term in its stable
    form. As in PixelCNN++ (Salimans et al. 2017), without its
    autoregression: one mixture per pixel.

    Args:
        logits, loc, scale: float tensors whose last axis is the mixture's
            components (K); the batch shape is the rest.
        levels: the number of levels L, an int >= 2.
        validate_args, allow_nan_stats, name: as for TFP distributions.
    """

    def __init__(
        self,
        logits,
        loc,
        scale,
        levels=256,
        validate_args=False,
        allow_nan_stats=True,
        name="DiscretizedLogisticMixture",
    ):
        parameters = dict(locals())
        levels = _check_levels(levels)
        with tf.name_scope(name) as name:
            self._logits = tf.convert_to_tensor(
                logits, dtype_hint=tf.float32, name="logits"
            )
            self._loc = tf.convert_to_tensor(loc, self._logits.dtype, name="loc")
            self._scale = tf.convert_to_tensor(scale, self._logits.dtype, name="scale")
            self._levels = levels
            super().__init__(
                dtype=self._logits.dtype,
                reparameterization_type=tfd.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {
            "logits": tfp.util.ParameterProperties(event_ndims=1),
            "loc": tfp.util.ParameterProperties(event_ndims=1),
            "scale": tfp.util.ParameterProperties(
                event_ndims=1, default_constraining_bijector_fn=tfp.bijectors.Softplus
            ),
        }

    @property
    def logits(self):
        return self._logits

    def _log_prob(self, x):
        k = _levels_of(tf.convert_to_tensor(x, self.dtype), self._levels)
        components = level_log_prob(k[..., None], self._loc, self._scale, self._levels)
        weights = tf.nn.log_softmax(self._logits, axis=-1)
        return tf.reduce_logsumexp(weights + components, axis=-1)

    def _sample_n(self, n, seed=None):
        seed = tfp.random.sanitize_seed(seed)
        component_seed, level_seed = tfp.random.split_seed(seed)
        batch = self.batch_shape_tensor()
        size = tf.reduce_prod(batch)
        logits = tf.reshape(
            tf.broadcast_to(self._logits, tf.shape(self._loc)), (size, -1)
        )
        choice = tf.random.stateless_categorical(logits, n, component_seed)  # (size, n)
        choice = tf.reshape(tf.transpose(choice), tf.concat([[n], batch], axis=0))
        pick = tf.one_hot(choice, tf.shape(self._loc)[-1], dtype=self.dtype)
        loc = tf.reduce_sum(pick * self._loc, axis=-1)
        scale = tf.reduce_sum(pick * self._scale, axis=-1)
        uniform = _uniform(tf.shape(loc), level_seed, self.dtype)
        return _logistic_levels(loc, scale, self._levels, uniform)

    def _mean(self):
        weights = tf.nn.softmax(self._logits, axis=-1)
        means = _mean_level(self._loc, self._scale, self._levels)
        return tf.reduce_sum(weights * means, axis=-1)
