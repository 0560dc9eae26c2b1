"""Class-conditional models: a label beside x, p(x | z, y) and q(z | x, y).

`ClassConditional` is the base of `tfvae.VAE` and `tfvae.HierarchicalVAE`.
With `num_classes=0` (the default) it changes nothing. With `num_classes=K`
the model's inputs are `(x, labels)`, labels integer class indices 0..K-1 of
shape (batch,), and the label enters the networks as a **one-hot** vector (no
learned embedding: with K of 10 or 101 classes a one-hot vector is as
expressive as an embedding of that width, and it has no weights to save):

- beside x at the input of the first inference network, q(z | x, y): a flat
  x gets K more values, an image x K more constant channels;
- beside z at the input of the decoder, p(x | z, y) (the decoder's z is z_1,
  or [z_1, ..., z_L] under `skip=True`).

The prior p(z) is not conditioned on y (nor, in a hierarchy, the conditionals
p(z_l | z_{l+1})), as in Sohn et al.'s CVAE with a fixed prior. So the ELBO
and the importance-sampled estimate of a labelled model bound and estimate
log p(x | y), and `sample(n, labels=...)` draws a chosen class.

The label plugs in through the input methods of the protocol
(`tfvae.latent.LatentVariableModel`: `unpack_inputs`, `as_arrays`,
`check_data`, `check_inputs`, `input_signature`, `pack_inputs`,
`condition_signature`, `split_inputs`): the training steps, the estimator,
the diagnostics, the certificate and the export take a labelled model as it
is, and its SavedModel's signatures take an int32 `label` beside `x` (and
`decode` and `sample` take one per row).

References: Sohn, Lee & Yan (2015), Learning Structured Output Representation
using Deep Conditional Generative Models; Kingma et al. (2014), Semi-supervised
Learning with Deep Generative Models (the M2 model's p(x | y, z)).
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfvae import _checks
from tfvae.latent import LatentVariableModel

__all__ = ["ClassConditional", "rows_of_classes"]


def _labels_problem(problem, num_classes, received):
    return (
        f"labels must be integer class indices in [0, {num_classes}) of shape "
        f"(batch,): {problem}. Received: {received}"
    )


def rows_of_classes(num_classes, per_class):
    """Labels 0, ..., 0, 1, ..., K-1: `per_class` of each, a grid row per class."""
    return np.repeat(np.arange(num_classes), per_class)


class ClassConditional(LatentVariableModel):
    """A `LatentVariableModel` that takes a class label beside x (`num_classes`).

    See the module docstring. A subclass passes `num_classes` to
    `__init__`, builds its first inference network on
    `network_input(x, conditions)` and its decoder on `decoder_input(z,
    conditions)`, and takes `conditions` in `decode` and `generate`.

    Args:
        *args: `LatentVariableModel`'s arguments.
        num_classes: 0 (default: an unconditional model, inputs x) or the
            number of classes K >= 2 (inputs `(x, labels)`).
        **kwargs: `LatentVariableModel`'s keyword arguments.
    """

    def __init__(self, *args, num_classes=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_classes = _checks.positive_int(num_classes, "num_classes", 0)
        if self.num_classes == 1:
            raise ValueError(
                "`num_classes` must be 0 (an unconditional model) or the number "
                "of classes, >= 2: one class conditions on nothing. Received: "
                "num_classes=1"
            )

    @property
    def conditional(self):
        """Whether the model takes labels (`num_classes > 0`)."""
        return self.num_classes > 0

    # --- the networks' inputs ---------------------------------------------------

    def one_hot(self, labels):
        """float32 one-hot rows (batch, K) of integer labels (batch,)."""
        return ops.one_hot(ops.cast(labels, "int32"), self.num_classes)

    def network_input(self, x, conditions=()):
        """The input of the first inference network: x, and the label beside it.

        A flat x (batch, D) becomes (batch, D + K); an image (batch, H, W, C)
        gets K constant channels, (batch, H, W, C + K).
        """
        if not conditions:
            return x
        (labels,) = conditions
        y = self.one_hot(labels)
        if len(self.input_shape) > 1:  # constant channels, one label per image
            ones = [1] * (len(self.input_shape) - 1)
            y = ops.reshape(y, (-1, *ones, self.num_classes))
            spatial = tuple(self.input_shape[:-1])
            y = ops.broadcast_to(y, (ops.shape(y)[0], *spatial, self.num_classes))
        return ops.concatenate([x, ops.cast(y, x.dtype)], axis=-1)

    def decoder_input(self, z, conditions=(), num_samples=1):
        """The decoder's input: z (batch', dim), and the label beside it.

        z holds `num_samples` draws of each example of a batch of B labels,
        S-major (batch' = S * B, as a chain's reshaped draws): the labels are
        tiled S times. Another number of rows of z than S * B is refused (a
        `ValueError` where the shapes are known, else TensorFlow's error at
        the concatenation), never broadcast.
        """
        if not conditions:
            return z
        (labels,) = conditions
        rows, count = z.shape[0], labels.shape[0]
        if rows is not None and count is not None and rows != num_samples * count:
            raise ValueError(
                f"expected one label per row of z ({rows} rows"
                + (f", {num_samples} draws of each example" if num_samples > 1 else "")
                + f"). Received: {count} labels"
            )
        y = self.one_hot(labels)
        if num_samples > 1:
            y = ops.tile(y, (num_samples, 1))
        return ops.concatenate([z, ops.cast(y, z.dtype)], axis=-1)

    def zero_inputs(self):
        """Inputs of one zero example (and class 0): what builds the networks."""
        x = ops.zeros((1, *self.input_shape))
        if not self.conditional:
            return x
        return x, ops.zeros((1,), "int32")

    # --- the protocol's input methods ------------------------------------------

    def split_inputs(self, inputs):
        if not self.conditional:
            return super().split_inputs(inputs)
        x, labels = inputs
        return x, (labels,)

    def unpack_inputs(self, data):
        if not self.conditional:
            return super().unpack_inputs(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:  # fit((x, labels)): Keras passes the pair as the inputs
            self._check_pair(x, "x")
            return tuple(x), sample_weight
        return (x, y), sample_weight

    def as_arrays(self, data):
        if not self.conditional:
            return super().as_arrays(data)
        x, labels = self._check_pair(data, "x", weights=False)
        x = np.asarray(x)
        return x, self.checked_labels(labels, count=len(x))

    def check_data(self, data, name="x"):
        if not self.conditional or data is None:
            return super().check_data(data, name)
        if isinstance(data, tf.data.Dataset):
            spec = data.element_spec
            if isinstance(spec, (tuple, list)) and len(spec) >= 2:
                x_spec, label_spec = spec[0], spec[1]
                if isinstance(x_spec, tf.TensorSpec):
                    _checks.check_spec(x_spec, self.input_shape, name)
                if isinstance(label_spec, tf.TensorSpec):
                    self._check_label_spec(label_spec)
                return
            raise ValueError(self._needs_labels(name, f"a dataset of {spec}"))
        x, labels, *_ = self._check_pair(data, name)
        super().check_data(x, name)
        labels = self.checked_labels(labels)
        if len(labels) != len(x):
            raise ValueError(
                f"`{name}` holds {len(x)} examples and {len(labels)} labels: "
                "expected one label per example."
            )

    def check_inputs(self, inputs, values=True):
        if not self.conditional:
            return super().check_inputs(inputs, values)
        x, labels = self._check_pair(inputs, "inputs", weights=False)
        if values and not ops.is_tensor(labels):
            labels = self.checked_labels(labels)
        x = super().check_inputs(x, values)
        count = ops.convert_to_tensor(labels).shape[0]
        if x.shape[0] is not None and count is not None and x.shape[0] != count:
            raise ValueError(
                f"expected one label per example: {x.shape[0]} examples. "
                f"Received: {count} labels"
            )
        return x, self._label_tensor(labels, values)

    def check_conditions(self, conditions):
        if not self.conditional:
            return super().check_conditions(conditions)
        (labels,) = conditions
        return (self._label_tensor(labels),)

    def _label_tensor(self, labels, values=True):
        """int32 labels, checked in range by an in-graph assertion (`values`)."""
        labels = ops.convert_to_tensor(labels)
        self._check_label_spec(labels)
        labels = ops.cast(labels, "int32")
        if not values:
            return labels
        in_range = tf.logical_and(
            tf.reduce_all(labels >= 0), tf.reduce_all(labels < self.num_classes)
        )
        problem = _labels_problem(
            "some are out of range", self.num_classes, "labels from {} to {}"
        )
        check = _checks.data_assertion(
            in_range, problem, (tf.reduce_min(labels), tf.reduce_max(labels))
        )
        with tf.control_dependencies([check]):
            return tf.identity(labels)

    def input_signature(self):
        return [*super().input_signature(), *self.condition_signature()]

    def condition_signature(self):
        if not self.conditional:
            return super().condition_signature()
        return [tf.TensorSpec((None,), tf.int32, name="label")]

    def pack_inputs(self, tensors):
        if not self.conditional:
            return super().pack_inputs(tensors)
        return tuple(tensors)

    # --- labels -----------------------------------------------------------------

    def checked_labels(self, labels, count=None):
        """Labels as an int64 numpy array (batch,), or a `ValueError`.

        Refused: floats, one-hot rows or any shape but (batch,), classes out of
        [0, num_classes), and (with `count`) another number of labels.
        """
        if not self.conditional:
            raise ValueError(
                "this model takes no labels: it was built with num_classes=0. "
                "Build it with num_classes=K for a class-conditional model. "
                f"Received: labels of shape {np.shape(labels)}"
            )
        array = np.asarray(labels)
        received = f"labels of shape {array.shape} and dtype {array.dtype}"
        if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                _labels_problem(
                    "they are not integers (pass class indices, not floats or "
                    "one-hot rows)",
                    self.num_classes,
                    received,
                )
            )
        if array.ndim != 1:
            hint = ""
            if array.ndim == 2 and array.shape[-1] == self.num_classes:
                hint = " (one-hot rows? pass labels.argmax(-1))"
            raise ValueError(
                _labels_problem(f"wrong shape{hint}", self.num_classes, received)
            )
        if array.size and (array.min() < 0 or array.max() >= self.num_classes):
            raise ValueError(
                _labels_problem(
                    "some are out of range",
                    self.num_classes,
                    f"labels from {array.min()} to {array.max()}",
                )
            )
        if count is not None and len(array) != count:
            raise ValueError(
                f"expected one label per example, {count}. "
                f"Received: {len(array)} labels"
            )
        return array.astype("int64")

    def _check_label_spec(self, labels):
        """The static dtype and rank of a tensor (or spec) of labels."""
        dtype = tf.as_dtype(labels.dtype)
        if not dtype.is_integer:
            raise ValueError(
                _labels_problem(
                    "they are not integers", self.num_classes, f"dtype {dtype.name}"
                )
            )
        shape = tf.TensorShape(labels.shape)
        if shape.rank is not None and shape.rank != 1:
            raise ValueError(
                _labels_problem(
                    "wrong shape", self.num_classes, f"shape {tuple(shape.as_list())}"
                )
            )

    def _needs_labels(self, name, received):
        return (
            f"this model is class-conditional (num_classes={self.num_classes}): "
            f"`{name}` must be a pair (x, labels), or pass the labels as y "
            f"(fit(x, labels)). Received: {received}"
        )

    def _check_pair(self, data, name, weights=True):
        """Data as the pair `(x, labels)` (with `weights`, a third item, the
        sample weights of `fit`/`evaluate`, is kept)."""
        if isinstance(data, (tuple, list)) and len(data) in (
            (2, 3) if weights else (2,)
        ):
            if not isinstance(data[0], (tuple, list)):
                return tuple(data)
        if isinstance(data, (tuple, list)):
            received = f"a {type(data).__name__} of {len(data)} items"
        else:
            received = f"{type(data).__name__} of shape {np.shape(data)}"
        raise ValueError(self._needs_labels(name, received))

    def _labelled(self, x, labels):
        """(x, labels) for an API that takes labels beside x, or x as it is."""
        if labels is None:
            return x
        if not self.conditional:
            self.checked_labels(labels)  # raises: no labels for this model
        return (x, labels)

    # --- the public API with labels ----------------------------------------------

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`; a conditional model's labels as y, or x=(x, labels)."""
        if self.conditional and y is not None:
            x, y = (x, y), None
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate`; labels as y, or x=(x, labels)."""
        if self.conditional and y is not None:
            x, y = (x, y), None
        return super().evaluate(x, y, *args, **kwargs)

    def reconstruct(self, x, sample=False, seed=None, labels=None):
        """`LatentVariableModel.reconstruct`; a conditional model's x with labels.

        `reconstruct(x, labels=y)` is `reconstruct((x, y))`.
        """
        return super().reconstruct(self._labelled(x, labels), sample, seed)

    def sample(self, num_samples, seed=None, labels=None):
        """Decoder means of `num_samples` draws; see `LatentVariableModel.sample`.

        Args:
            num_samples: how many draws.
            seed: an int (the same seed, the same noise) or None.
            labels: for a conditional model (required): one class index for
                every draw, or one per draw (shape `(num_samples,)`).
        """
        num_samples = _checks.positive_int(num_samples, "num_samples")
        if not self.conditional:
            if labels is not None:
                self.checked_labels(labels)  # raises: no labels for this model
            return super().sample(num_samples, seed)
        if labels is None:
            raise ValueError(
                f"this model is class-conditional (num_classes={self.num_classes}): "
                "pass labels=, a class index or one per sample. Received: labels=None"
            )
        if np.ndim(labels) == 0:  # one class for every draw (a float is refused)
            labels = np.full((num_samples,), labels)
        if np.ndim(labels) == 1 and len(labels) != num_samples:
            raise ValueError(
                f"labels= must be one class index, or one per sample ({num_samples}). "
                f"Received: {len(labels)} labels"
            )
        labels = self.checked_labels(labels, count=num_samples)
        labels = ops.convert_to_tensor(labels.astype("int32"))
        return super().sample(num_samples, seed, conditions=(labels,))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
