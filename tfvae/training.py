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
`FloatingPointError` on a non-finite loss or metric, the skipping of updates
whose gradient norm is an outlier or not finite (`compile(skip_threshold=)`),
a KL warm-up that moves at every batch, gradients and noise that are the same
under a `tf.distribute` strategy as on one device. As Keras keeps `Trainer` apart from
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

# The metrics of the updates (`compile(skip_threshold=)`), in training only.
_UPDATE_METRICS = {
    "grad_norm": keras.metrics.Mean,  # over the applied updates
    "skipped": keras.metrics.Sum,  # updates skipped in the epoch
}

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
        # Updates skipped in a row (`compile(skip_threshold=)`); not saved:
        # a resumed run counts from 0.
        object.__setattr__(
            self,
            "_consecutive_skips",
            tf.Variable(0, trainable=False, name="consecutive_skips", dtype=tf.int32),
        )
        object.__setattr__(
            self, "_last_norm", tf.Variable(0.0, trainable=False, name="last_norm")
        )
        self.skip_threshold = None
        self.max_consecutive_skips = None

    # --- metrics ------------------------------------------------------------

    def make_trackers(self):
        """Creates a `keras.metrics.Mean` for each of `metric_names()`."""
        self._trackers = {
            name: keras.metrics.Mean(name=name) for name in self.metric_names()
        }

    @property
    def metrics(self):
        updates = getattr(self, "_update_trackers", {})
        return [*self._trackers.values(), *updates.values()]

    def _update_metrics(self, loss, values, sample_weight, batch_size):
        self._trackers["loss"].update_state(loss, sample_weight=batch_size)
        for name, value in values.items():
            self._trackers[name].update_state(value, sample_weight=sample_weight)
        results = {tracker.name: tracker.result() for tracker in self.metrics}
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
        if self.skip_threshold is not None:
            return self._train_step_with_skips(loss, values, sample_weight, gradients)
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

    def _train_step_with_skips(self, loss, values, sample_weight, gradients):
        """The update, unless the gradient norm is above the threshold or not finite.

        The norm is that of the whole update (under a strategy, of the
        gradient summed over the replicas), so every replica decides alike.
        A skipped step changes no weight and no optimizer state; its loss and
        metric values are left out of the epoch's means, and it counts in
        `skipped`. More than `max_consecutive_skips` in a row stop the run.
        """
        norm = self._update_norm(gradients)
        finite = tf.math.is_finite(loss)
        for value in values.values():
            finite &= tf.reduce_all(tf.math.is_finite(value))
        skip = ~(finite & tf.math.is_finite(norm) & (norm <= self.skip_threshold))
        consecutive = tf.where(skip, self._consecutive_skips + 1, 0)
        checks = [
            self._consecutive_skips.assign(consecutive),
            self._last_norm.assign(norm),
        ]
        if not self.jit_compile:  # XLA has no assertions: see `_StopOnSkips`
            checks.append(
                _checks.check_skips(
                    consecutive,
                    self.max_consecutive_skips,
                    self.optimizer.iterations + 1,
                    norm,
                    self.skip_threshold,
                )
            )
        with tf.control_dependencies(checks):
            self._apply_unless(skip, gradients)
        skipped = tf.cast(skip, "float32")
        kept = 1.0 - skipped
        values = {name: tf.where(skip, 0.0, v) for name, v in values.items()}
        if sample_weight is None:
            sample_weight = tf.ones_like(values["elbo"])
        # Each replica counts its share: the metric sums over the replicas.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self._update_trackers["skipped"].update_state(skipped / replicas)
        self._update_trackers["grad_norm"].update_state(
            tf.where(skip, 0.0, norm), sample_weight=kept
        )
        return self._update_metrics(
            tf.where(skip, 0.0, loss),
            values,
            sample_weight * kept,
            tf.cast(ops.shape(values["elbo"])[0], "float32") * kept,
        )

    def _update_norm(self, gradients):
        """The global norm of the update (unscaled), the same on every replica."""
        replica = tf.distribute.get_replica_context()
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            gradients = replica.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        norm = tf.linalg.global_norm([tf.cast(g, "float32") for g in gradients])
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            norm = norm / tf.cast(self.optimizer.dynamic_scale, "float32")
        return norm

    def _apply_unless(self, skip, gradients):
        """Applies the gradients unless `skip`, as `LossScaleOptimizer` does.

        A `tf.cond` whose branch calls the optimizer (a `merge_call` under a
        strategy) must run in the cross-replica context.
        """

        def apply(gradients):
            self.optimizer.apply(gradients, self.trainable_weights)

        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            tf.cond(skip, lambda: None, lambda: apply(gradients))
            return

        def cross_replica(distribution, skip, gradients):
            # Every replica decided alike (`_update_norm`): take the first.
            skip = distribution.experimental_local_results(skip)[0]

            def apply_everywhere():
                distribution.extended.call_for_each_replica(apply, args=(gradients,))

            tf.cond(skip, lambda: None, apply_everywhere)

        tf.distribute.get_replica_context().merge_call(
            cross_replica, args=(skip, gradients)
        )

    def divergence_limit(self):
        """The magnitude beyond which a step's metrics count as diverged.

        `_checks.DIVERGENCE_LIMIT_PER_DIMENSION` nats per data dimension.
        """
        return _checks.DIVERGENCE_LIMIT_PER_DIMENSION * math.prod(self.input_shape)

    def predict_step(self, data):
        inputs, _ = self.unpack_inputs(data)
        return self(inputs, training=False)

    def test_step(self, data):
        loss, values, sample_weight = self._step(data, training=False)
        results = self._update_metrics(
            loss, values, sample_weight, ops.shape(values["elbo"])[0]
        )
        return {k: v for k, v in results.items() if k not in _UPDATE_METRICS}

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

    def compile(self, *args, skip_threshold=None, max_consecutive_skips=100, **kwargs):
        """Configures the model for training; `keras.Model.compile`'s arguments.

        Two arguments of tfvae's own make long runs robust to the rare batch
        that would wreck them (VDVAE's "skip updates", Child 2021):

        - `skip_threshold`: an update whose gradient global norm (of the
          whole update: unscaled under mixed precision, summed over the
          replicas of a strategy) exceeds this, or is NaN or Inf, or whose
          loss or metrics are not finite, is skipped: no weight and no
          optimizer state changes, its values are left out of the epoch's
          metrics, and the metric `skipped` counts it. The metric
          `grad_norm` is the mean norm of the applied updates, what a
          threshold is chosen from: `float("inf")` skips only non-finite
          updates and reports it. `None` (the default) applies every update
          and stops on a non-finite loss (`FloatingPointError`), as before.
        - `max_consecutive_skips` (default 100): more skipped updates in a
          row stop the run with a `FloatingPointError` that says so (a run
          can otherwise skip every step for ever, as VDVAE's can).

        Gradient-norm clipping is the optimizer's, as in Keras:
        `keras.optimizers.Adam(global_clipnorm=...)`; it applies after the
        skip test, which sees the unclipped norm.

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
        if skip_threshold is not None:
            skip_threshold = _checks.positive_threshold(
                skip_threshold, "skip_threshold"
            )
        max_consecutive_skips = _checks.positive_int(
            max_consecutive_skips, "max_consecutive_skips"
        )
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
        self.skip_threshold = skip_threshold
        self.max_consecutive_skips = max_consecutive_skips
        # Kept out of Keras' tracking (the model is built): not saved, and
        # reported by `metrics` only while skipping is on.
        object.__setattr__(
            self,
            "_update_trackers",
            {}
            if skip_threshold is None
            else {name: metric(name=name) for name, metric in _UPDATE_METRICS.items()},
        )
        self._consecutive_skips.assign(0)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None and self.skip_threshold is not None:
            config["skip_threshold"] = self.skip_threshold
            config["max_consecutive_skips"] = self.max_consecutive_skips
        return config

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
                *([_StopOnSkips()] if self.skip_threshold is not None else []),
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


class _StopOnSkips(keras.callbacks.Callback):
    """The cap on skipped updates under XLA, which compiles no assertions.

    Checked after each call of the compiled step, so a run stops at most
    `steps_per_execution - 1` skipped steps late (they changed nothing).
    """

    def on_train_batch_end(self, batch, logs=None):
        model = self.model
        consecutive = int(model._consecutive_skips.numpy())
        if consecutive > model.max_consecutive_skips:
            step = int(model.optimizer.iterations.numpy()) + 1
            norm = float(model._last_norm.numpy())
            raise FloatingPointError(
                _checks.skips_message(consecutive, step, norm, model.skip_threshold)
            )


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
