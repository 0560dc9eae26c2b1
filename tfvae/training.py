"""The Keras glue of the models: compile, fit, evaluate, predict and the steps.

`Trainer` is a `keras.Model` that trains any latent-variable model which
gives it two things (`tfvae.latent.LatentVariableModel` does):

- `objective_terms(x, noise, sample_weight, training)`: the loss to minimize
  and the metric values of one batch;
- `metric_names()`, `latent_dims`, `num_samples` (the noise a step draws),
  `beta` and `kl_weight` (the KL warm-up), and `input_shape` and
  `likelihood.support` (what the data checks check).

What it adds on top of Keras: ten steps per call of the compiled function by
default, exact step counts, data checks before any step, a stop with a
`FloatingPointError` on a non-finite loss or metric, a KL warm-up that moves
at every batch, gradients and noise that are the same under a
`tf.distribute` strategy as on one device. As Keras keeps `Trainer` apart from
`Model`, this module holds no modelling: a new kind of model is trained by it
unchanged.
"""

import contextlib
import inspect
import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfvae import _checks, distribute
from tfvae import noise as noise_lib

__all__ = ["Trainer", "batch_size", "kl_warmup_weight"]

# The default of `compile(steps_per_execution=)`: batches run per call of the
# compiled step. One call per batch leaves small models waiting on Python; see
# `Trainer.compile`.
STEPS_PER_EXECUTION = 10

# The arguments of `fit`, `evaluate` and `predict` that fix a number of steps.
_STEP_ARGUMENTS = ("steps_per_epoch", "validation_steps", "steps")


def kl_warmup_weight(beta, epoch, batch, steps_per_epoch, epochs):
    """beta * min(1, (epoch + batch / steps_per_epoch) / epochs), in float64.

    The KL weight of `tfvae.callbacks.KLWarmup` at a training batch (epoch
    and batch count from 0). Python numbers or tensors; the arithmetic is
    float64 either way, so the callback and the compiled step agree exactly.
    """
    one = tf.constant(1.0, tf.float64)
    epoch, batch, steps, epochs = (
        tf.cast(value, tf.float64) for value in (epoch, batch, steps_per_epoch, epochs)
    )
    progress = tf.minimum(
        one, (epoch + batch / tf.maximum(steps, one)) / tf.maximum(epochs, one)
    )
    return beta * progress


class Trainer(keras.Model):
    """Trains a latent-variable model with `fit`; see the module docstring.

    Subclasses call `super().__init__(seed=..., **kwargs)` and, once their
    metrics are known, `self.make_trackers()`.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # The warm-up schedule within one call of the compiled step, set by
        # `schedule_kl_warmup` (see `_scheduled_kl_weight`). Not a model
        # weight: kept out of Keras' tracking, so it is never saved.
        object.__setattr__(
            self,
            "_kl_schedule",
            tf.Variable(tf.zeros(5, tf.float64), trainable=False, name="kl_schedule"),
        )

    # --- metrics ------------------------------------------------------------

    def make_trackers(self):
        """Creates a `keras.metrics.Mean` for each of `metric_names()`."""
        self._trackers = {
            name: keras.metrics.Mean(name=name) for name in self.metric_names()
        }

    @property
    def metrics(self):
        return list(self._trackers.values())

    def _update_metrics(self, loss, values, sample_weight, batch_size):
        self._trackers["loss"].update_state(loss, sample_weight=batch_size)
        for name, value in values.items():
            self._trackers[name].update_state(value, sample_weight=sample_weight)
        results = {name: tracker.result() for name, tracker in self._trackers.items()}
        if distribute.in_multi_worker_mode():
            # Keras reduces a multi-worker step's outputs with a mean over
            # axis 0, which fails on scalars (tensorflow/tensorflow#72388).
            results = {name: value[None] for name, value in results.items()}
        return results

    # --- the steps ------------------------------------------------------------

    def step_noise(self, batch):
        """The noise of a training or test step, keyed by each example's index.

        One seed per step comes from the model's seed generator (the same in
        every replica of a `tf.distribute` strategy), and the noise of each
        example is `tfvae.noise.counter_normal` of (that seed, its index in
        the global batch, sample). Replica r of a strategy holds examples
        r * local_batch ... of the global batch, so a step draws the same noise
        for an example whether it runs on one device or on several, and no two
        replicas share noise. Returns the per-layer list of `noise.split`,
        each of shape (num_samples, batch, dim).
        """
        step_seed = keras.random.randint((), 0, 2**31 - 1, seed=self.seed_generator)
        replica = tf.distribute.get_replica_context()
        replica_id = 0 if replica is None else replica.replica_id_in_sync_group
        first = tf.cast(replica_id, "int32") * batch
        noise = noise_lib.counter_normal(
            step_seed,
            first + tf.range(batch),
            0,
            self.num_samples,
            sum(self.latent_dims),
        )
        return noise_lib.split(noise, self.latent_dims)

    def _step(self, data, training):
        """(loss, metric values, sample weight) of one batch."""
        inputs, sample_weight = self.unpack_inputs(data)
        inputs = self.check_inputs(inputs, values=not self.jit_compile)
        noise = self.step_noise(batch_size(inputs))
        loss, values = self.objective_terms(inputs, noise, sample_weight, training)
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return loss, values, sample_weight

    def train_step(self, data):
        if self.steps_per_execution > 1:
            self._scheduled_kl_weight()
        with tf.GradientTape() as tape:
            loss, values, sample_weight = self._step(data, training=True)
            # Under a tf.distribute strategy, gradients are summed over the
            # replicas: each contributes its batch mean / replicas, so the
            # update is that of the global batch mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled_loss, self.trainable_weights)
        checks = []
        if not self.jit_compile:
            # A diverged step raises (FloatingPointError) before its update.
            # XLA has no assertions: `fit` then checks the logs after the step.
            step = self.optimizer.iterations + 1
            checks.append(
                _checks.check_finite(
                    {"loss": loss, **values}, step, self.divergence_limit()
                )
            )
        with tf.control_dependencies(checks):
            self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_metrics(
            loss, values, sample_weight, ops.shape(values["elbo"])[0]
        )

    def divergence_limit(self):
        """The magnitude beyond which a step's metrics count as diverged.

        `_checks.DIVERGENCE_LIMIT_PER_DIMENSION` nats per data dimension.
        """
        return _checks.DIVERGENCE_LIMIT_PER_DIMENSION * math.prod(self.input_shape)

    def test_step(self, data):
        loss, values, sample_weight = self._step(data, training=False)
        return self._update_metrics(
            loss, values, sample_weight, ops.shape(values["elbo"])[0]
        )

    # --- KL warm-up -----------------------------------------------------------

    def schedule_kl_warmup(self, epoch, batch, steps_per_epoch, epochs):
        """Sets `kl_weight` for a training batch and the ramp of its call.

        `tfvae.callbacks.KLWarmup` calls this before each call of the compiled
        step. The weight is `kl_warmup_weight(beta, epoch, batch,
        steps_per_epoch, epochs)`. When a call runs several batches
        (`steps_per_execution`), its later batches compute their own weight in
        the graph from the same formula (`_scheduled_kl_weight`), so the ramp
        is the same whatever `steps_per_execution`. `steps_per_epoch=None`
        (an epoch of unknown length) sets the weight of `batch` alone.
        """
        steps = steps_per_epoch or 1
        weight = kl_warmup_weight(self.beta, epoch, batch, steps, epochs)
        self.kl_weight.assign(tf.cast(weight, "float32"))
        if steps_per_epoch:
            first = int(self.optimizer.iterations.numpy())
            self._kl_schedule.assign([first, epoch, batch, steps_per_epoch, epochs])

    def _scheduled_kl_weight(self):
        """Sets `kl_weight` for this step from the schedule of its execution.

        The schedule holds (iteration, epoch, batch, steps per epoch, warm-up
        epochs) of the call's first batch; this step's batch is that batch
        plus the iterations since. Steps per epoch 0 (no schedule, the state
        outside `KLWarmup`) leaves the weight alone.
        """
        first, epoch, batch, steps, epochs = tf.unstack(self._kl_schedule)
        step = tf.cast(self.optimizer.iterations, tf.float64) - first
        weight = kl_warmup_weight(self.beta, epoch, batch + step, steps, epochs)
        weight = tf.cast(weight, "float32")
        self.kl_weight.assign(tf.where(steps > 0, weight, self.kl_weight))

    # --- the model's inputs and their checks ---------------------------------------
    #
    # A model's inputs are the examples x, or a structure of x and what else
    # the model takes per example (a class label, say). These methods are all
    # that the training steps, the estimator, the diagnostics and the export
    # know of them; a model with several inputs overrides them.

    def unpack_inputs(self, data):
        """(inputs, sample_weight) of one batch of `fit` or `evaluate`.

        By default the inputs are x: a `y` beside it is ignored.
        """
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        return x, sample_weight

    def as_arrays(self, data):
        """The examples of `data` as numpy: an array (or the model's structure)."""
        return np.asarray(data)

    def input_signature(self):
        """The named `tf.TensorSpec`s of the inputs, for the SavedModel."""
        return [tf.TensorSpec((None, *self.input_shape), tf.float32, name="x")]

    def pack_inputs(self, tensors):
        """The model's inputs from tensors of `input_signature()`, in order."""
        (x,) = tensors
        return x

    def check_inputs(self, x, values=True):
        """Checks a batch of examples; returns it as a float32 tensor.

        Arrays are checked in full at once; tensors by in-graph assertions
        (`values=False` checks the shape only, as under XLA). Raises
        `ValueError` for a wrong shape, NaN or Inf, or values outside the
        likelihood's support.
        """
        support = self.likelihood.support
        if values and not keras.ops.is_tensor(x):
            _checks.check_array(x, self.input_shape, support)
        return _checks.check_batch(
            ops.convert_to_tensor(x), self.input_shape, support, values=values
        )

    def check_data(self, data, name="x"):
        """Checks what `fit`/`evaluate`/`predict` accept, as far as possible."""
        _checks.check_data(data, self.input_shape, self.likelihood.support, name)

    # --- compile, fit, evaluate, predict --------------------------------------

    def compile(self, *args, **kwargs):
        """Configures the model for training; `keras.Model.compile`'s arguments.

        The one default that differs from Keras is `steps_per_execution`: 10
        batches run per call of the compiled step instead of 1. A batch-100
        step of a small model takes a few milliseconds, and returning to
        Python after each one costs much of that: 10 steps per call trained
        1.3x to 1.4x faster on a 2-core CPU (see `BENCHMARKS.md`).
        What it changes: batch-level callbacks (`on_train_batch_begin/end`,
        the progress bar) run once per 10 batches. Pass
        `steps_per_execution=1` for a callback that must see every batch.
        (`tfvae.callbacks.KLWarmup` still ramps at every batch.)

        Under `tf.distribute.MirroredStrategy` and
        `MultiWorkerMirroredStrategy` the default is 1, and any other value
        raises: Keras' multi-step loop fails there (keras-team/keras#19246).

        Keras runs whole executions, so a `steps_per_epoch`, `validation_steps`
        or `steps` that is not a multiple of `steps_per_execution` would run
        more steps than asked; tfvae then runs that call with the largest
        `steps_per_execution` that divides it, so the step counts are exact.
        """
        arguments = inspect.signature(keras.Model.compile).bind(self, *args, **kwargs)
        strategy = self.distribute_strategy
        mirrored = self._under_mirrored_strategy()
        steps = arguments.arguments.setdefault(
            "steps_per_execution", 1 if mirrored else STEPS_PER_EXECUTION
        )
        if mirrored and steps != 1:
            raise ValueError(
                f"steps_per_execution={steps} fails under "
                f"{type(strategy).__name__} in Keras {keras.__version__}: the "
                "multi-step loop breaks there (keras-team/keras#19246). Expected "
                "steps_per_execution=1, the default under such a strategy."
            )
        super().compile(*arguments.args[1:], **arguments.kwargs)

    def _under_mirrored_strategy(self):
        return isinstance(
            self.distribute_strategy,
            (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy),
        )

    def compile_from_config(self, config):
        """Compiles a loaded model as it was saved.

        Keras does this itself only for models that keep its `compile`. A
        model saved with several steps per execution and loaded under a
        mirrored strategy gets 1, the only value that works there.
        """
        config = keras.saving.deserialize_keras_object(config)
        if self._under_mirrored_strategy():
            config["steps_per_execution"] = 1
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, *args, **kwargs):
        self._kl_schedule.assign(tf.zeros(5, tf.float64))  # until KLWarmup sets one
        if self.jit_compile:
            arguments = inspect.signature(keras.Model.fit).bind(
                self, x, y, *args, **kwargs
            )
            arguments.arguments["callbacks"] = [
                *(arguments.arguments.get("callbacks") or []),
                _StopOnNonFiniteLogs(),
            ]
            x, y, *args = arguments.args[1:]
            kwargs = arguments.kwargs
        return self._checked_run(super().fit, keras.Model.fit, x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        return self._checked_run(
            super().evaluate, keras.Model.evaluate, x, y, *args, **kwargs
        )

    def predict(self, x, *args, **kwargs):
        self.check_data(x, "x")
        arguments = inspect.signature(keras.Model.predict).bind(
            self, x, *args, **kwargs
        )
        with self._exact_steps(arguments.arguments), _checks.data_errors():
            return super().predict(x, *args, **kwargs)

    def _checked_run(self, method, signature, x, y, *args, **kwargs):
        """Checks the data of `fit`/`evaluate`, then runs it."""
        arguments = inspect.signature(signature).bind(self, x, y, *args, **kwargs)
        arguments = arguments.arguments
        self.check_data(x, "x")
        self.check_data(arguments.get("validation_data"), "validation_data")
        if y is None and arguments.get("sample_weight") is not None:
            # Keras drops sample weights when y is None; y itself is ignored.
            y = x
        with self._exact_steps(arguments), _checks.data_errors():
            return method(x, y, *args, **kwargs)

    @contextlib.contextmanager
    def _exact_steps(self, arguments):
        """Runs a call with a `steps_per_execution` that divides its step counts.

        Keras runs `steps_per_execution` steps per call of the compiled
        function, so `fit(steps_per_epoch=23)` with 10 would run 30 steps per
        epoch. For such a call, this uses the largest `steps_per_execution`
        that divides every given step count, and restores it after.
        """
        counts = [
            arguments[name]
            for name in _STEP_ARGUMENTS
            if isinstance(arguments.get(name), int) and arguments[name] > 0
        ]
        current = getattr(self, "steps_per_execution", 1)
        common = math.gcd(*counts) if counts else 0
        if not counts or not isinstance(current, int) or common % current == 0:
            yield
            return
        exact = max(d for d in range(1, current + 1) if common % d == 0)
        self._set_steps_per_execution(exact)
        try:
            yield
        finally:
            self._set_steps_per_execution(current)

    def _set_steps_per_execution(self, steps):
        self.steps_per_execution = steps
        # The compiled functions loop `steps_per_execution` times: rebuild them.
        self.train_function = self.test_function = self.predict_function = None


def batch_size(inputs):
    """The number of examples in a batch of inputs (a tensor or a structure)."""
    return ops.shape(tf.nest.flatten(inputs)[0])[0]


class _StopOnNonFiniteLogs(keras.callbacks.Callback):
    """The divergence check of a step compiled with XLA, on its logs.

    XLA compiles no assertions, so the in-graph check of `train_step` is left
    out under `jit_compile=True`; this callback, added by `fit`, raises the
    same `FloatingPointError` from the logs, after the step's update.
    """

    def on_train_batch_end(self, batch, logs=None):
        limit = self.model.divergence_limit()
        for name, value in (logs or {}).items():
            value = float(value)
            if _checks.diverged(value, limit):
                step = int(self.model.optimizer.iterations.numpy())
                raise FloatingPointError(
                    _checks.divergence_message(
                        step,
                        name,
                        value,
                        "mean over the epoch so far",
                        "Under XLA the check runs after the step's update, so "
                        "the weights may hold non-finite values.",
                        limit,
                    )
                )
