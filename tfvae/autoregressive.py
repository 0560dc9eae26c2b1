"""Autoregressive likelihoods over the pixels of an image: shallow PixelCNNs.

`PixelCNNHead` models p(x | z) = prod_i P(x_i | x_<i, z) over the pixels of a
one-channel image in raster order (row by row, left to right), each factor a
mixture of discretized logistics over the 8-bit levels
(`tfvae.discretized.DiscretizedLogisticMixture`), whose parameters at pixel i
come from the decoder's features at i and from the pixels before i, seen
through masked convolutions (van den Oord et al. 2016; Salimans et al.
2017). The latent variable still has to carry what the head cannot see: the
masked convolutions reach a few pixels up and to the left (a receptive field
of `kernel_size // 2 + num_layers` rows up), so the global shape of a digit
is the decoder's, and its local texture (the grey levels of an edge, given
its neighbours) is the head's. This is the PixelVAE's division of labour
(Gulrajani et al. 2017), with the few layers of the PixelHVAE of Tomczak &
Welling (2018). `BernoulliPixelCNNHead` is the same head for binary images,
a Bernoulli factor per pixel (the PixelVAE and PixelHVAE of binarized MNIST).

`log_prob` is exact: a sum of log-probabilities of levels, each factor a
normalized distribution over the levels, and the masks make the factor of
pixel i a function of x_<i alone (the tests check the Jacobian, and that the
joint probabilities of every image of a small image space sum to 1).
Sampling is sequential: one pass of the head's networks per pixel.

`mean()` of an autoregressive model is an intractable sum; the distribution
raises for it. What pictures show (`call`, `reconstruct`, `sample`, the
`decode` signature) is `sequential_mean()`: pixel i set to the mean of its
factor given the pixels before it, themselves so set. It is a deterministic
picture of p(x | z), not E[x | z].
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from tfvae import _checks
from tfvae.discretized import DiscretizedLogisticMixture, level_values
from tfvae.heads import DistributionHead

tfd = tfp.distributions

__all__ = [
    "AutoregressiveHead",
    "PixelCNNHead",
    "BernoulliPixelCNNHead",
    "AutoregressivePixels",
    "raster_mask",
]


def raster_mask(kernel_size, include_center):
    """The (k, k, 1, 1) mask of a convolution that sees only earlier pixels.

    1 above the centre row, and left of the centre on its row; at the centre
    itself only with `include_center` (the "B" mask of the layers after the
    first, whose input at a pixel already sees only the pixels before it).
    """
    mask = np.zeros((kernel_size, kernel_size, 1, 1), "float32")
    center = kernel_size // 2
    mask[:center] = 1.0
    mask[center, : center + (1 if include_center else 0)] = 1.0
    return mask


class AutoregressivePixels(tfd.Distribution):
    """p(x) = prod_i P(x_i | x_<i) over the pixels of (H, W, 1) images.

    Made by `PixelCNNHead`: `conditionals(x, conditioning)` returns the
    `DiscretizedLogisticMixture` of every pixel (batch shape (..., H, W)),
    that of pixel i computed from x_<i; `conditioning` is the decoder's part,
    (batch, H, W, F).

    Args:
        conditioning: float32 tensor (batch, H, W, F).
        conditionals: the head's function of (x, conditioning).
        levels: the number of grey levels.
        name: the distribution's name.
    """

    def __init__(self, conditioning, conditionals, levels, name="AutoregressivePixels"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._conditioning = tf.convert_to_tensor(conditioning, tf.float32)
            self._conditionals = conditionals
            self._levels = levels
            super().__init__(
                dtype=tf.float32,
                reparameterization_type=tfd.NOT_REPARAMETERIZED,
                validate_args=False,
                allow_nan_stats=True,
                parameters=parameters,
                name=name,
            )

    @property
    def conditioning(self):
        return self._conditioning

    def _batch_shape(self):
        return self._conditioning.shape[:1]

    def _batch_shape_tensor(self):
        return tf.shape(self._conditioning)[:1]

    def _event_shape(self):
        return tf.TensorShape([*self._conditioning.shape[1:3], 1])

    def _event_shape_tensor(self):
        return tf.concat([tf.shape(self._conditioning)[1:3], [1]], axis=0)

    def _log_prob(self, x):
        x = tf.convert_to_tensor(x, tf.float32)
        factors = self._conditionals(x, self._conditioning)
        return tf.reduce_sum(factors.log_prob(x[..., 0]), axis=[-2, -1])

    def _sequential(self, conditioning, pick):
        """Fills the pixels in raster order, pixel i by `pick(factors, i)`."""
        height, width = conditioning.shape[1], conditioning.shape[2]
        x = tf.zeros(tf.concat([tf.shape(conditioning)[:3], [1]], axis=0))
        pixels = tf.reshape(tf.eye(height * width), (height * width, height, width, 1))

        def step(i, x):
            factors = self._conditionals(x, conditioning)
            value = pick(factors, i)  # (batch, H, W): the values at pixel i used
            where = pixels[i]
            return i + 1, x * (1.0 - where) + value[..., None] * where

        _, x = tf.while_loop(lambda i, x: i < height * width, step, (tf.constant(0), x))
        return x

    def _sample_n(self, n, seed=None):
        seed = tfp.random.sanitize_seed(seed)
        conditioning = tf.reshape(
            tf.broadcast_to(
                self._conditioning, tf.concat([[n], tf.shape(self._conditioning)], 0)
            ),
            tf.concat([[-1], tf.shape(self._conditioning)[1:]], 0),
        )
        conditioning.set_shape([None, *self._conditioning.shape[1:]])

        def draw(factors, i):
            return factors.sample(
                seed=tf.random.experimental.stateless_fold_in(seed, i)
            )

        x = self._sequential(conditioning, draw)
        return tf.reshape(x, tf.concat([[n], tf.shape(self._conditioning)[:3], [1]], 0))

    def sequential_mean(self):
        """Pixel i the mean of its factor given the pixels before it, so set.

        A deterministic picture of the distribution, not its mean (which
        `mean()` refuses: an intractable sum for an autoregressive model).
        """
        return self._sequential(self._conditioning, lambda factors, i: factors.mean())

    def _mean(self):
        raise NotImplementedError(
            "the mean of an autoregressive distribution is an intractable sum; "
            "use sequential_mean() for a deterministic picture, or sample()"
        )


class AutoregressiveHead(DistributionHead):
    """The base class of the autoregressive heads (see `PixelCNNHead`).

    A subclass sets `_outputs_per_pixel()` and `_factor(params)`, the
    distribution of every pixel (batch shape (..., H, W)) from the last 1x1
    layer's outputs; the masked convolutions, the conditioning and the
    sequential pictures are shared. The teacher-forced pass is
    `factors(prepare(x), conditioning(features))`, whose first argument can
    be computed once for many samples of z (as the importance-sampled
    log-likelihood does).
    """

    support = (0.0, 1.0)
    image_shaped = True

    def __init__(
        self, filters, kernel_size, num_layers, levels, event_shape=None, **kwargs
    ):
        self.filters = _checks.positive_int(filters, "filters")
        self.kernel_size = _checks.positive_int(kernel_size, "kernel_size")
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` must be odd, to have a centre pixel. Received: "
                f"kernel_size={kernel_size}"
            )
        self.num_layers = _checks.positive_int(num_layers, "num_layers", minimum=0)
        self.levels = levels
        self.num_params = self.filters
        self.discrete_values = level_values(self.levels)
        super().__init__(event_shape=_image_event_shape(event_shape), **kwargs)

    def set_event_shape(self, event_shape):
        super().set_event_shape(_image_event_shape(event_shape))

    def build(self, input_shape):
        super().build(input_shape)  # the projection onto the conditioning
        f, k = self.filters, self.kernel_size
        self.masked_kernels = [
            self.add_weight(name="masked_0_kernel", shape=(k, k, 1, f))
        ]
        self.masked_biases = [
            self.add_weight(name="masked_0_bias", shape=(f,), initializer="zeros")
        ]
        for layer in range(1, self.num_layers + 1):
            self.masked_kernels.append(
                self.add_weight(name=f"masked_{layer}_kernel", shape=(3, 3, f, f))
            )
            self.masked_biases.append(
                self.add_weight(
                    name=f"masked_{layer}_bias", shape=(f,), initializer="zeros"
                )
            )
        self.hidden_kernel = self.add_weight(name="hidden_kernel", shape=(f, f))
        self.hidden_bias = self.add_weight(
            name="hidden_bias", shape=(f,), initializer="zeros"
        )
        outputs = self._outputs_per_pixel()
        self.output_kernel = self.add_weight(name="output_kernel", shape=(f, outputs))
        self.output_bias = self.add_weight(
            name="output_bias", shape=(outputs,), initializer="zeros"
        )
        self._masks = [raster_mask(k, include_center=False)] + [
            raster_mask(3, include_center=True)
        ] * self.num_layers

    def prepare(self, x):
        """a(x_<i) at every pixel: the masked convolutions, (batch, H, W, F)."""
        x = ops.reshape(ops.cast(x, "float32"), (-1, *self.event_shape))
        h = None
        for kernel, bias, mask in zip(
            self.masked_kernels, self.masked_biases, self._masks, strict=True
        ):
            inputs = x - 0.5 if h is None else ops.elu(h)
            out = ops.conv(inputs, kernel * mask, padding="same") + bias
            h = out if h is None else h + out  # residual after the first
        return h

    def factors(self, context, conditioning):
        """The factor of every pixel from a(x_<i) = `prepare(x)` and c(h) =
        `conditioning(features)`, both (..., H, W, F) (broadcast)."""
        h = ops.elu(context + conditioning)
        h = ops.elu(ops.matmul(h, self.hidden_kernel) + self.hidden_bias)
        return self._factor(ops.matmul(h, self.output_kernel) + self.output_bias)

    def conditionals(self, x, conditioning):
        """The factor P(x_i | x_<i, h) of every pixel, batch shape (batch, H, W)."""
        return self.factors(self.prepare(x), conditioning)

    def conditioning(self, features):
        """c(h): the projection of the features, (batch, H, W, filters)."""
        return ops.concatenate(self.project(features), axis=-1)

    def call(self, features):
        return AutoregressivePixels(
            self.conditioning(features), self.conditionals, self.levels
        )

    def log_likelihood(self, features, x, num_samples, prepared=None):
        if not self.built:  # a model's first pass builds its head here
            self.build(tuple(features.shape))
        context = self.prepare(x) if prepared is None else prepared
        conditioning = self.conditioning(features)  # (S * B, H, W, F)
        x = ops.reshape(ops.cast(x, "float32"), (-1, *self.event_shape))
        shape = (num_samples, -1, *self.event_shape[:-1])
        factors = self.factors(
            context[None], ops.reshape(conditioning, (*shape, self.filters))
        )
        log_probs = factors.log_prob(x[None, ..., 0])  # (S, B, H, W)
        return ops.reshape(ops.sum(log_probs, axis=(-2, -1)), (-1,))

    def picture(self, distribution):
        """The sequential mean (see `AutoregressivePixels.sequential_mean`)."""
        return distribution.sequential_mean()

    def output_parameters(self, distribution):
        """`sequential_mean` (see the module) and the `conditioning` c(h)."""
        return {
            "sequential_mean": distribution.sequential_mean(),
            "conditioning": distribution.conditioning,
        }

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "num_layers": self.num_layers,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class PixelCNNHead(AutoregressiveHead):
    """An autoregressive head: a shallow PixelCNN over discretized logistic mixtures.

    p(x | h) = prod_i P(x_i | x_<i, h), pixels in raster order, for
    one-channel images (event shape (H, W, 1)). The projection of the
    decoder's features h gives `filters` conditioning channels per pixel,
    c(h); the pixels go through a masked `kernel_size` convolution (it sees
    the pixels above and to the left, not the pixel itself), then
    `num_layers` residual masked 3x3 convolutions, giving a(x_<i); at every
    pixel, elu(c + a) goes through a 1x1 convolution with an elu and one onto
    the 3K parameters of a mixture of K discretized logistics (logits,
    locations, raw scales; scale = softplus(raw) + min_scale). See
    `tfvae.autoregressive` for what the distribution offers, and
    `BernoulliPixelCNNHead` for binary images.

    The masked part depends on x alone: `prepare(x)` computes it once for
    many samples of z (the importance-sampled log-likelihood's blocks).

    Args:
        levels: the number of grey levels, 256 for 8-bit data.
        num_components: K, logistics per pixel.
        filters: channels of the conditioning and of the masked layers.
        kernel_size: the first masked convolution's size, odd.
        num_layers: residual masked 3x3 layers after it (>= 0).
        min_scale: the floor of the scales. Default 1e-3.
        event_shape: (H, W, 1); see `DistributionHead`. A model's flat input
            shape is refused: give the model image-shaped data,
            `input_shape=(28, 28, 1)`.
        projection: `"dense"` (default) or `"pixel"`; see `DistributionHead`.
        **kwargs: base layer keyword arguments.

    Example:

    ```python
    head = tfvae.autoregressive.PixelCNNHead(num_components=5, filters=32)
    model = tfvae.VAE(input_shape=(28, 28, 1), likelihood=head)
    ```
    """

    def __init__(
        self,
        levels=256,
        num_components=5,
        filters=32,
        kernel_size=5,
        num_layers=2,
        min_scale=1e-3,
        event_shape=None,
        **kwargs,
    ):
        levels = _checks.positive_int(levels, "levels", minimum=2)
        self.num_components = _checks.positive_int(num_components, "num_components")
        self.min_scale = _checks.non_negative_float(min_scale, "min_scale")
        super().__init__(
            filters, kernel_size, num_layers, levels, event_shape=event_shape, **kwargs
        )

    def _outputs_per_pixel(self):
        return 3 * self.num_components

    def _factor(self, params):
        k = self.num_components
        logits, loc, raw_scale = (
            params[..., :k],
            params[..., k : 2 * k],
            params[..., 2 * k :],
        )
        scale = ops.softplus(raw_scale) + self.min_scale
        return DiscretizedLogisticMixture(logits, loc + 0.5, scale, levels=self.levels)

    def get_config(self):
        return {
            **super().get_config(),
            "levels": self.levels,
            "num_components": self.num_components,
            "min_scale": self.min_scale,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class BernoulliPixelCNNHead(AutoregressiveHead):
    """The autoregressive head of binary images: a shallow PixelCNN of Bernoullis.

    `PixelCNNHead`'s networks with a Bernoulli factor per pixel,
    P(x_i = 1 | x_<i, h) = sigmoid(logit_i), the logit from the last 1x1
    layer: the decoder of the PixelVAE / PixelHVAE on binarized MNIST
    (Gulrajani et al. 2017; Tomczak & Welling 2018). Pixels must be 0 or 1
    for a log-likelihood (training may take grey levels, as a cross-entropy,
    like `tfvae.heads.BernoulliHead`). The sequential mean sets each pixel to
    its probability given the ones before it, so set.

    Args:
        filters: channels of the conditioning and of the masked layers.
        kernel_size: the first masked convolution's size, odd.
        num_layers: residual masked 3x3 layers after it (>= 0).
        event_shape: (H, W, 1); see `PixelCNNHead`.
        projection: `"dense"` (default) or `"pixel"`; see `DistributionHead`.
        **kwargs: base layer keyword arguments.

    Example:

    ```python
    head = tfvae.autoregressive.BernoulliPixelCNNHead(filters=32)
    model = tfvae.HierarchicalVAE(input_shape=(28, 28, 1), likelihood=head)
    ```
    """

    def __init__(
        self, filters=32, kernel_size=5, num_layers=2, event_shape=None, **kwargs
    ):
        super().__init__(
            filters, kernel_size, num_layers, 2, event_shape=event_shape, **kwargs
        )

    def _outputs_per_pixel(self):
        return 1

    def _factor(self, params):
        return tfd.Bernoulli(logits=params[..., 0], dtype=tf.float32)


def _image_event_shape(event_shape):
    """Refuses an event shape that is not a one-channel image's (H, W, 1)."""
    if event_shape is None:
        return None
    shape = tuple(event_shape)
    if len(shape) != 3 or shape[-1] != 1:
        raise ValueError(
            "The autoregressive heads model one-channel images: the event shape is "
            "(height, width, 1); give the model image-shaped data, e.g. "
            f"input_shape=(28, 28, 1). Received: event_shape={shape}"
        )
    return shape
