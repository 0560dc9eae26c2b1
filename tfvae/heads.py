"""Distribution heads: Keras layers that turn features into TFP distributions.

A head owns the last affine map of a network. With `projection="dense"` (the
default) it flattens the features it is given (everything but the batch axis)
and projects them onto all the parameters of its distribution; with
`projection="pixel"` it maps the feature vector at every location of a feature
map of the data's spatial shape by one linear map (a 1x1 convolution), as a
convolutional decoder needs. It returns a `tfd.Independent` distribution whose
event shape is the data's shape, so `log_prob(x)` gives one value per example.

Parameters and log-probabilities are computed in float32, also under a
mixed-precision dtype policy.
"""

import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from tfvae import _checks
from tfvae.discretized import (
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
    level_values,
)

tfd = tfp.distributions

__all__ = [
    "DistributionHead",
    "BernoulliHead",
    "GaussianHead",
    "DiagonalGaussianHead",
    "DiscretizedLogisticHead",
    "get",
    "serialize",
]


def _standardize_event_shape(event_shape):
    if event_shape is None:
        return None
    if isinstance(event_shape, int):
        event_shape = (event_shape,)
    try:
        shape = tuple(int(d) for d in event_shape)
    except (TypeError, ValueError):
        shape = None
    if not shape or any(d < 1 for d in shape):
        raise ValueError(
            "`event_shape` must be a non-empty tuple of positive integers. "
            f"Received: event_shape={event_shape}"
        )
    return shape


PROJECTIONS = ("dense", "pixel")


def _check_pixel_event_shape(event_shape, name):
    if event_shape is not None and len(event_shape) < 2:
        raise ValueError(
            f"Head '{name}' has projection='pixel', which maps features of shape "
            "(batch, *event_shape[:-1], channels) at every location: it needs an "
            "event shape of rank >= 2, such as (height, width, channels). "
            f"Received: event_shape={event_shape}"
        )


class DistributionHead(keras.layers.Layer):
    """Base class of the distribution heads.

    Subclasses set `num_params` (how many tensors of the event shape the
    projection produces) and implement `_distribution(params)`, which receives a
    list of float32 tensors of shape `(batch, *event_shape)`.

    Mathematical details: with `projection="dense"`, params = flatten(h) K + c,
    K of shape (features, num_params * prod(event_shape)), split into
    `num_params` tensors of the event shape. With `projection="pixel"`, h has
    shape (batch, *event_shape[:-1], F) and at every location p,
    params[p] = h[p] K + c with K of shape (F, num_params * C), C =
    event_shape[-1]: a 1x1 convolution, whose output is split along the
    channel axis into `num_params` tensors of the event shape.

    Args:
        event_shape: shape of one example of the modelled variable, e.g.
            `(784,)` or `(28, 28, 1)`. May be left `None` and set later through
            `set_event_shape` (the models do this from their `input_shape`).
        projection: `"dense"` (default), or `"pixel"` for features that are
            feature maps of the data's spatial shape, (batch,
            *event_shape[:-1], F), as a convolutional decoder returns; it needs
            an event shape of rank >= 2.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Example:

    ```python
    head = tfvae.heads.BernoulliHead(event_shape=(28, 28, 1), projection="pixel")
    p = head(features)  # features of shape (batch, 28, 28, 32)
    p.log_prob(x)  # (batch,)
    ```
    """

    num_params = 1
    # The closed interval the modelled values must lie in, or None.
    support = None
    # The values on which `log_prob` is a log-probability, for a discrete
    # likelihood (None: a density). Training may take values between them
    # (the Bernoulli cross-entropy of grey levels); a log-likelihood is
    # reported only on them (`tfvae.certify`).
    discrete_values = None
    # Whether the head needs image-shaped data, (H, W, C), whatever the
    # networks (`tfvae.runs` then gives a model of any architecture images).
    image_shaped = False

    def __init__(self, event_shape=None, projection="dense", **kwargs):
        super().__init__(**kwargs)
        self.projection = _checks.one_of(projection, "projection", PROJECTIONS)
        self.event_shape = _standardize_event_shape(event_shape)
        if projection == "pixel":
            _check_pixel_event_shape(self.event_shape, self.name)

    def set_event_shape(self, event_shape):
        """Sets the event shape of an unbuilt head, or checks it if set."""
        event_shape = _standardize_event_shape(event_shape)
        if self.event_shape is not None and self.event_shape != event_shape:
            raise ValueError(
                f"Head '{self.name}' was configured with event_shape="
                f"{self.event_shape}, but the model needs event_shape="
                f"{event_shape}. Received: event_shape={self.event_shape}"
            )
        if self.built and self.event_shape is None:
            raise ValueError(f"Head '{self.name}' is already built.")
        if self.projection == "pixel":
            _check_pixel_event_shape(event_shape, self.name)
        self.event_shape = event_shape

    @property
    def event_size(self):
        return math.prod(self.event_shape)

    def build(self, input_shape):
        if self.event_shape is None:
            raise ValueError(
                f"Head '{self.name}' has no event_shape. Pass "
                "`event_shape=` or use the head inside a tfvae model."
            )
        if self.projection == "pixel":
            self._check_feature_map(input_shape)
            # One linear map of the F features at each location onto the
            # num_params * C parameters there.
            in_features = input_shape[-1]
            outputs = self.num_params * self.event_shape[-1]
        else:
            in_features = math.prod(input_shape[1:])
            outputs = self.num_params * self.event_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(in_features, outputs),
            initializer="glorot_uniform",
        )
        self.bias = self.add_weight(name="bias", shape=(outputs,), initializer="zeros")

    def _check_feature_map(self, shape):
        """Refuses features whose spatial shape is not the event's (pixel)."""
        shape = tuple(shape)
        spatial = self.event_shape[:-1]
        if len(shape) != len(self.event_shape) + 1 or tuple(shape[1:-1]) != spatial:
            expected = ", ".join(str(d) for d in spatial)
            raise ValueError(
                f"Head '{self.name}' has projection='pixel' and event_shape="
                f"{self.event_shape}: its features must have shape (batch, "
                f"{expected}, features), one feature vector per location. "
                f"Received: features.shape={shape}"
            )

    def _pixel_params(self, features, kernel, bias):
        """Per-location params (rows, num_params * C) of a feature map."""
        self._check_feature_map(features.shape)
        width = features.shape[-1]
        rows = ops.reshape(features, (-1, width))
        return ops.add(ops.matmul(rows, kernel), bias)

    def project(self, features):
        """Returns the list of float32 parameter tensors for `features`."""
        batch = ops.shape(features)[0]
        if self.projection == "pixel":
            params = self._pixel_params(features, self.kernel, self.bias)
            channels = self.num_params * self.event_shape[-1]
            params = ops.reshape(params, (batch, *self.event_shape[:-1], channels))
        else:
            features = ops.reshape(features, (batch, -1))
            params = ops.add(ops.matmul(features, self.kernel), self.bias)
        params = ops.cast(params, "float32")
        params = ops.split(params, self.num_params, axis=-1)
        return [ops.reshape(p, (batch, *self.event_shape)) for p in params]

    def call(self, features):
        return self._distribution(self.project(features))

    def prepare(self, x):
        """The part of `log_likelihood` that depends on x only, or None.

        `log_likelihood(features, x, S, prepared=head.prepare(x))` equals
        `log_likelihood(features, x, S)`; the importance-sampling estimator
        computes it once per chunk of examples instead of once per block of
        samples.
        """
        del x
        return None

    def log_likelihood(self, features, x, num_samples, prepared=None):
        """log p(x | features) for `num_samples` feature rows per example.

        Args:
            features: (S * B, ...) features, sample-major: row s * B + b
                belongs to example b.
            x: (B, *event_shape) values, not repeated.
            num_samples: S, a Python int.
            prepared: `prepare(x)`, or None to compute it here.

        Returns:
            A float32 tensor of shape (S * B,).
        """
        del prepared  # The distribution's log_prob needs nothing prepared.
        x = ops.cast(x, "float32")
        if num_samples > 1:
            x = ops.broadcast_to(x[None], (num_samples, *ops.shape(x)))
            x = ops.reshape(x, (-1, *self.event_shape))
        return self(features).log_prob(x)

    def picture(self, distribution):
        """The deterministic picture of p(x|z) that the models show: its mean.

        What `call`, `reconstruct`, `sample` and `generate` return of the
        distribution `call` made. A head whose mean is intractable gives
        another picture (`tfvae.autoregressive.PixelCNNHead`: the
        sequential mean).
        """
        return distribution.mean()

    def output_parameters(self, distribution):
        """The named tensors that describe p(x|z) for a server: `{"mean": ...}`.

        The exported `decode` signature returns them; heads add their own
        parameters (`probs`, `scale`).
        """
        return {"mean": distribution.mean()}

    def _independent(self, distribution):
        return tfd.Independent(
            distribution, reinterpreted_batch_ndims=len(self.event_shape)
        )

    def _distribution(self, params):
        raise NotImplementedError

    def get_config(self):
        return {
            **super().get_config(),
            "event_shape": self.event_shape,
            "projection": self.projection,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class BernoulliHead(DistributionHead):
    """Independent Bernoulli distribution parameterized by logits.

    Mathematical details: log p(x|z) = sum_i x_i log sigmoid(l_i) +
    (1 - x_i) log sigmoid(-l_i), where l are the projected logits. Targets
    must lie in [0, 1]; fractional targets are accepted (the cross-entropy
    form above), as for grey-level data treated as probabilities.

    Args:
        event_shape: shape of one example; see `DistributionHead`.
        projection: `"dense"` (default) or `"pixel"`; see `DistributionHead`.
        **kwargs: base layer keyword arguments.

    Example:

    >>> head = tfvae.heads.BernoulliHead(event_shape=(784,))
    >>> p = head(keras.ops.zeros((2, 16)))
    >>> p.log_prob(keras.ops.zeros((2, 784))).shape
    TensorShape([2])
    """

    support = (0.0, 1.0)
    discrete_values = (0.0, 1.0)

    def _distribution(self, params):
        (logits,) = params
        return self._independent(tfd.Bernoulli(logits=logits, dtype=tf.float32))

    def output_parameters(self, distribution):
        """`mean` and `probs` (the same values)."""
        return {"mean": distribution.mean(), "probs": distribution.mean()}

    def prepare(self, x):
        """x as rows, K x, c . x, K / 2 and c / 2: see `log_likelihood`.

        Under `projection="pixel"`: x as rows, K / 2 and c / 2.
        """
        if not self.built:
            raise ValueError(
                "BernoulliHead.prepare needs a built head; call the head on "
                "features first."
            )
        kernel = ops.cast(self.kernel, "float32")
        bias = ops.cast(self.bias, "float32")
        x = ops.reshape(ops.cast(x, "float32"), (ops.shape(x)[0], -1))
        if self.projection == "pixel":
            return x, 0.5 * kernel, 0.5 * bias
        kernel_x = ops.matmul(x, ops.transpose(kernel))  # (B, features)
        return x, kernel_x, ops.sum(x * bias, axis=-1), 0.5 * kernel, 0.5 * bias

    def log_likelihood(self, features, x, num_samples, prepared=None):
        """log p(x | features), fused: sum_i x_i l_i - sum_i softplus(l_i).

        With several samples per example and logits l = f K + c, the first sum
        is f . (K x) + c . x: one small product per example instead of an
        elementwise pass over every (sample, pixel), and x is never repeated.
        The second is `sum_softplus_of_double` of m = l / 2, computed as
        f (K / 2) + c / 2 (halving is exact in float32), which saves it a pass
        over the logits. `prepare(x)` holds K x, c . x, K / 2 and c / 2. See
        `DistributionHead.log_likelihood` for the shapes.

        Under `projection="pixel"` the logits at a location are f_p K + c, and
        K x would cost as much as the logits themselves: the first sum is
        taken over the halved logits m, as 2 sum_i x_i m_i.
        """
        if not self.built:
            self.build(features.shape)
        if self.projection == "pixel":
            return self._pixel_log_likelihood(features, x, num_samples, prepared)
        width = math.prod(features.shape[1:])
        features = ops.cast(ops.reshape(features, (-1, width)), "float32")
        if num_samples == 1 and prepared is None:  # a training step
            x = ops.reshape(ops.cast(x, "float32"), (ops.shape(x)[0], -1))
            logits = ops.add(
                ops.matmul(features, ops.cast(self.kernel, "float32")),
                ops.cast(self.bias, "float32"),
            )
            return ops.sum(x * logits, axis=-1) - sum_softplus(logits)
        if prepared is None:
            prepared = self.prepare(x)
        x, kernel_x, x_dot_bias, half_kernel, half_bias = prepared
        half_logits = ops.add(ops.matmul(features, half_kernel), half_bias)
        normalizer = sum_softplus_of_double(half_logits)
        if num_samples == 1:
            return 2.0 * ops.sum(x * half_logits, axis=-1) - normalizer
        per_sample = ops.reshape(features, (-1, ops.shape(x)[0], width))
        dot = ops.sum(per_sample * kernel_x[None], axis=-1) + x_dot_bias
        return ops.reshape(dot, (-1,)) - normalizer

    def _pixel_log_likelihood(self, features, x, num_samples, prepared):
        """`log_likelihood` under `projection="pixel"`."""
        del num_samples  # the rows of the features say it
        if prepared is None:
            prepared = self.prepare(x)
        x, half_kernel, half_bias = prepared
        features = ops.cast(features, "float32")
        half_logits = self._pixel_params(features, half_kernel, half_bias)
        half_logits = ops.reshape(half_logits, (-1, self.event_size))
        normalizer = sum_softplus_of_double(half_logits)
        per_sample = ops.reshape(half_logits, (-1, ops.shape(x)[0], self.event_size))
        dot = ops.sum(per_sample * x[None], axis=-1)
        return 2.0 * ops.reshape(dot, (-1,)) - normalizer


def _block_size(size):
    """The largest divisor of `size` in [8, 64], or None."""
    for block in range(64, 7, -1):
        if size % block == 0:
            return block
    return None


@tf.custom_gradient
def sum_softplus_of_double(m):
    """sum over the last axis of softplus(2 m), for a (rows, n) float32 tensor.

    softplus(2 m) = 2 relu(m) + log(1 + exp(-2 |m|)), and
    1 + exp(-2 |m|) = 2 / (1 + tanh |m|). Over a block of b elements, the
    second terms sum to b log 2 - log prod (1 + |tanh m|), a product of
    factors in [1, 2] (at most 2^64 for b <= 64: no overflow in float32). That
    is one tanh per element and one log per block: faster on CPU than the
    exp of the same form or a softplus per element
    (`benchmarks/bernoulli_normalizer.py`), and as accurate in float32 as a
    softplus (tests check both against float64). The gradient is
    2 sigmoid(2 m).
    """
    size = m.shape[-1]
    block = _block_size(size)
    if block is None:
        value = tf.reduce_sum(tf.nn.softplus(2.0 * m), axis=-1)
    else:
        factors = 1.0 + tf.abs(tf.tanh(m))
        blocks = tf.reshape(factors, (-1, size // block, block))
        # Each block's b log 2 - log(product) is small where |m| is large.
        log_blocks = block * math.log(2.0) - tf.math.log(
            tf.reduce_prod(blocks, axis=-1)
        )
        value = 2.0 * tf.reduce_sum(tf.nn.relu(m), axis=-1) + tf.reduce_sum(
            log_blocks, axis=-1
        )

    def gradient(upstream):
        return upstream[..., None] * 2.0 * tf.sigmoid(2.0 * m)

    return value, gradient


def sum_softplus(logits):
    """sum over the last axis of softplus(logits): `sum_softplus_of_double`."""
    return sum_softplus_of_double(0.5 * logits)


_GAUSSIAN_SCALES = ("diagonal", "shared")


@keras.saving.register_keras_serializable(package="tfvae")
class GaussianHead(DistributionHead):
    """Independent Gaussian distribution with one of three kinds of scale.

    - `scale="diagonal"`: the projection has a second output, and
      sigma(z) = softplus(s(z)) + min_scale is per example and per dimension.
    - `scale="shared"`: one learned sigma per data dimension, shared by all
      examples: sigma = softplus(s) + min_scale with `s` a weight of the event
      shape.
    - `scale=<float>`: a fixed sigma, the N(o(z), sigma^2 I) decoder.

    Mathematical details: log p(x|z) = sum_i -0.5 ((x_i - mu_i) / sigma_i)^2
    - log sigma_i - 0.5 log(2 pi).

    Args:
        scale: `"diagonal"`, `"shared"` or a positive float.
        min_scale: the floor added to learned scales. Default 1e-3.
        event_shape: shape of one example; see `DistributionHead`.
        projection: `"dense"` (default) or `"pixel"`; see `DistributionHead`.
            Under `"pixel"` with `scale="diagonal"`, the means and the scales
            are the two halves of the channels at each location.
        **kwargs: base layer keyword arguments.
    """

    def __init__(self, scale="diagonal", min_scale=1e-3, event_shape=None, **kwargs):
        super().__init__(event_shape=event_shape, **kwargs)
        if isinstance(scale, str):
            if scale not in _GAUSSIAN_SCALES:
                raise ValueError(
                    f"`scale` must be one of {_GAUSSIAN_SCALES} or a positive "
                    f"float. Received: scale={scale!r}"
                )
        elif isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise ValueError(
                f"`scale` must be one of {_GAUSSIAN_SCALES} or a positive "
                f"float. Received: scale={scale!r}"
            )
        elif not (math.isfinite(scale) and scale > 0):
            raise ValueError(
                "A fixed `scale` must be a positive finite float. "
                f"Received: scale={scale}"
            )
        else:
            scale = float(scale)
        if not (math.isfinite(min_scale) and min_scale >= 0):
            raise ValueError(
                "`min_scale` must be a non-negative finite float. "
                f"Received: min_scale={min_scale}"
            )
        self.scale = scale
        self.min_scale = float(min_scale)
        self.num_params = 2 if scale == "diagonal" else 1

    def build(self, input_shape):
        super().build(input_shape)
        if self.scale == "shared":
            self.raw_scale = self.add_weight(
                name="raw_scale", shape=self.event_shape, initializer="zeros"
            )

    def _distribution(self, params):
        loc = params[0]
        if self.scale == "diagonal":
            scale = ops.softplus(params[1]) + self.min_scale
        elif self.scale == "shared":
            raw = ops.cast(self.raw_scale, "float32")
            scale = ops.broadcast_to(ops.softplus(raw) + self.min_scale, ops.shape(loc))
        else:
            scale = ops.full_like(loc, self.scale)
        return self._independent(tfd.Normal(loc=loc, scale=scale))

    def output_parameters(self, distribution):
        """`mean` and `scale` (sigma)."""
        return {"mean": distribution.mean(), "scale": distribution.stddev()}

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "min_scale": self.min_scale,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class DiagonalGaussianHead(GaussianHead):
    """Diagonal Gaussian N(mu(h), diag(sigma(h)^2)), as for a posterior q(z|x).

    A `GaussianHead(scale="diagonal")` with a smaller default floor, for
    latent variables rather than data. Used by the models for q(z|x).

    Args:
        event_shape: shape of the latent variable, e.g. `(latent_dim,)`.
        min_scale: the floor added to sigma = softplus(s(h)). Default 1e-4.
        **kwargs: base layer keyword arguments, and `projection` (see
            `DistributionHead`).
    """

    def __init__(self, event_shape=None, min_scale=1e-4, **kwargs):
        super().__init__(
            scale="diagonal", min_scale=min_scale, event_shape=event_shape, **kwargs
        )

    def get_config(self):
        config = super().get_config()
        del config["scale"]
        return config


@keras.saving.register_keras_serializable(package="tfvae")
class DiscretizedLogisticHead(DistributionHead):
    """Independent discretized logistics (or mixtures) over every pixel's levels.

    With `num_components=1` the projection has two outputs per pixel: the
    location, used as is (0 is black, 1 white), and the raw scale, scale =
    softplus(raw) + min_scale. With K > 1 components, 3K: the mixture's
    logits, locations and raw scales. `log_prob` is an exact log-probability
    of the levels k / (levels - 1); the data must hold those values
    (`tfvae.data.load` of `"mnist"` and `"fashion_mnist"` does), which
    `tfvae.certify` checks.

    Mathematical details: see `tfvae.discretized.DiscretizedLogistic` and
    `DiscretizedLogisticMixture`.

    Args:
        levels: the number of grey levels, 256 for 8-bit data.
        num_components: K, logistics per pixel (a mixture for K > 1).
        min_scale: the floor of the scales, a non-negative float. Default
            1e-3.
        event_shape: shape of one example; see `DistributionHead`.
        projection: `"dense"` (default) or `"pixel"`; see `DistributionHead`.
        **kwargs: base layer keyword arguments.

    Example:

    ```python
    model = tfvae.VAE(input_shape=(784,), likelihood="discretized-logistic")
    model.compile(optimizer="adam")
    model.fit(tfvae.data.dataset("mnist"), epochs=10)
    ```
    """

    support = (0.0, 1.0)

    def __init__(
        self,
        levels=256,
        num_components=1,
        min_scale=1e-3,
        event_shape=None,
        **kwargs,
    ):
        super().__init__(event_shape=event_shape, **kwargs)
        self.levels = _checks.positive_int(levels, "levels")
        if self.levels < 2:
            raise ValueError(f"`levels` must be at least 2. Received: levels={levels}")
        self.num_components = _checks.positive_int(num_components, "num_components")
        if not (
            isinstance(min_scale, (int, float))
            and not isinstance(min_scale, bool)
            and np.isfinite(min_scale)
            and min_scale >= 0
        ):
            raise ValueError(
                "`min_scale` must be a non-negative finite float. "
                f"Received: min_scale={min_scale!r}"
            )
        self.min_scale = float(min_scale)
        self.num_params = 2 if self.num_components == 1 else 3 * self.num_components
        self.discrete_values = level_values(self.levels)

    def _distribution(self, params):
        if self.num_components == 1:
            loc, raw_scale = params
            scale = ops.softplus(raw_scale) + self.min_scale
            return self._independent(
                DiscretizedLogistic(loc, scale, levels=self.levels)
            )
        k = self.num_components
        logits, loc, raw_scale = (
            ops.stack(params[i * k : (i + 1) * k], axis=-1) for i in range(3)
        )
        scale = ops.softplus(raw_scale) + self.min_scale
        return self._independent(
            DiscretizedLogisticMixture(logits, loc, scale, levels=self.levels)
        )

    def output_parameters(self, distribution):
        """`mean` (the exact mean level), `loc` and `scale` (and `logits`).

        For a mixture, `logits`, `loc` and `scale` have a last axis of the
        K components.
        """
        inner = distribution.distribution
        outputs = {"mean": distribution.mean(), "loc": inner.loc, "scale": inner.scale}
        if self.num_components > 1:
            outputs["logits"] = inner.logits
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "levels": self.levels,
            "num_components": self.num_components,
            "min_scale": self.min_scale,
        }


_NAMES = {
    "bernoulli": BernoulliHead,
    "gaussian": lambda **kwargs: GaussianHead(scale="diagonal", **kwargs),
    "gaussian-shared": lambda **kwargs: GaussianHead(scale="shared", **kwargs),
    "discretized-logistic": DiscretizedLogisticHead,
}
# A fixed sigma: "gaussian-fixed:0.1".
_FIXED_GAUSSIAN = "gaussian-fixed:"
# A mixture of K discretized logistics: "discretized-logistic:10".
_LOGISTIC_MIXTURE = "discretized-logistic:"
# The autoregressive head, tfvae.autoregressive.PixelCNNHead (K components).
_PIXELCNN = "pixelcnn"
# Its binary sibling, tfvae.autoregressive.BernoulliPixelCNNHead (F filters).
_PIXELCNN_BERNOULLI = "pixelcnn-bernoulli"
NAMES = (
    *_NAMES,
    _FIXED_GAUSSIAN + "SIGMA",
    _LOGISTIC_MIXTURE + "K",
    _PIXELCNN,
    _PIXELCNN + ":K",
    _PIXELCNN + ":K:F",
    _PIXELCNN_BERNOULLI,
    _PIXELCNN_BERNOULLI + ":F",
)


def _sizes(name, prefix, keys, message):
    """The optional positive integers of `prefix[:A[:B...]]`, by `keys`.

    `name` is `prefix` alone (no sizes: `{}`) or `prefix:` and up to
    `len(keys)` integers >= 1 joined by ":"; anything else raises
    `ValueError(message)`, with the name received.
    """
    fields = name[len(prefix) + 1 :].split(":") if len(name) > len(prefix) else []
    if len(fields) > len(keys) or not all(f.isdigit() and int(f) >= 1 for f in fields):
        raise ValueError(f"{message} Received: likelihood={name!r}")
    return dict(zip(keys[: len(fields)], map(int, fields), strict=True))


def _from_name(name, projection="dense"):
    """A new head for a name of `NAMES`, with the projection given."""
    key = name.lower()
    if key in _NAMES:
        return _NAMES[key](projection=projection)
    if key.startswith(_FIXED_GAUSSIAN):
        text = name[len(_FIXED_GAUSSIAN) :]
        try:
            sigma = float(text)
        except ValueError:
            sigma = None
        if sigma is None or not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(
                f"The sigma of {_FIXED_GAUSSIAN}SIGMA must be a positive finite "
                f"number. Received: likelihood={name!r}"
            )
        return GaussianHead(scale=sigma, projection=projection)
    if key.startswith(_LOGISTIC_MIXTURE):
        text = name[len(_LOGISTIC_MIXTURE) :]
        if not text.isdigit() or int(text) < 1:
            raise ValueError(
                f"The K of {_LOGISTIC_MIXTURE}K must be a positive integer, the "
                f"number of components. Received: likelihood={name!r}"
            )
        return DiscretizedLogisticHead(num_components=int(text), projection=projection)
    if key == _PIXELCNN or key.startswith(_PIXELCNN + ":"):
        from tfvae.autoregressive import PixelCNNHead  # it builds on this module

        sizes = _sizes(
            name,
            _PIXELCNN,
            ("num_components", "filters"),
            f"The K and F of {_PIXELCNN}:K[:F] must be positive integers, the "
            "number of components and of filters.",
        )
        return PixelCNNHead(projection=projection, **sizes)
    if key == _PIXELCNN_BERNOULLI or key.startswith(_PIXELCNN_BERNOULLI + ":"):
        from tfvae.autoregressive import BernoulliPixelCNNHead

        sizes = _sizes(
            name,
            _PIXELCNN_BERNOULLI,
            ("filters",),
            f"The F of {_PIXELCNN_BERNOULLI}:F must be a positive integer, the "
            "number of filters.",
        )
        return BernoulliPixelCNNHead(projection=projection, **sizes)
    raise ValueError(
        f"Unknown likelihood {name!r}. Valid names: {list(NAMES)}, or a "
        f"tfvae.heads.DistributionHead instance. Received: likelihood={name!r}"
    )


def get(identifier, projection="dense"):
    """Returns a new head for a name, a serialized head, or the head itself.

    Args:
        identifier: `"bernoulli"` (a `BernoulliHead()`), `"gaussian"` (a
            `GaussianHead(scale="diagonal")`), `"gaussian-shared"`
            (`GaussianHead(scale="shared")`), `"gaussian-fixed:SIGMA"`
            (`GaussianHead(scale=SIGMA)`, e.g. `"gaussian-fixed:0.1"`),
            `"discretized-logistic"` (`DiscretizedLogisticHead()`),
            `"discretized-logistic:K"` (a mixture of K per pixel,
            `DiscretizedLogisticHead(num_components=K)`), `"pixelcnn"`,
            `"pixelcnn:K"` and `"pixelcnn:K:F"`
            (`tfvae.autoregressive.PixelCNNHead` with 5 or K components and
            32 or F filters; image-shaped data), `"pixelcnn-bernoulli"` and
            `"pixelcnn-bernoulli:F"` (its binary sibling,
            `tfvae.autoregressive.BernoulliPixelCNNHead`), a
            config dict produced by `tfvae.heads.serialize`, or a
            `DistributionHead` instance, returned as is.
        projection: the projection of a head made from a name, `"dense"`
            (default) or `"pixel"`; a head or a config keeps its own.

    Raises:
        ValueError: for an unknown name or an object that is not a head.
    """
    _checks.one_of(projection, "projection", PROJECTIONS)
    return _checks.get_object(
        identifier,
        DistributionHead,
        lambda name: _from_name(name, projection),
        "likelihood",
        NAMES,
    )


def serialize(head):
    """Returns the config dict of a head, for `get` to rebuild it."""
    return keras.saving.serialize_keras_object(head)
