"""What the latent-variable models share: ELBO training, metrics and data checks.

A model describes one reparameterized pass through its latent chain in
`_chain(x, noise, training)`, which returns a `Chain`; this base class turns it
into the ELBO, the training loss (beta, free bits) and the metrics, and wraps
`fit`, `evaluate` and `predict` with the data checks of `tfvae._checks`.
"""

import collections
import contextlib
import inspect
import math

import keras
import tensorflow as tf
from keras import ops

from tfvae import _checks, distribute, estimators, heads

# One reparameterized pass through the latent chain, for `num_samples` draws of
# each example. Shapes: (S, B) for per-sample terms.
#   log_px: log p(x | z_1) at each draw.
#   log_q:  per layer l = 1..L, log q(z_l | z_{l-1}) at each draw.
#   log_p:  per layer, log p(z_l | z_{l+1}) (the prior N(0, I) for l = L).
#   kl_top: KL(q(z_L | z_{L-1}) || N(0, I)) in closed form, (S, B) or (B,).
Chain = collections.namedtuple("Chain", ["log_px", "log_q", "log_p", "kl_top"])
# What `_log_weights` computes from x alone, once for many blocks of samples:
# the likelihood head's `prepare(x)`, and q(z|x) where it depends on x only.
Prepared = collections.namedtuple("Prepared", ["likelihood", "posterior"])
# Nothing prepared: the chain computes each part itself.
NOTHING_PREPARED = Prepared(likelihood=None, posterior=None)

_OBJECTIVES = ("elbo", "iwae")

# The default of `compile(steps_per_execution=)`: batches run per call of the
# compiled step. One call per batch leaves small models waiting on Python; see
# `LatentVariableModel.compile`.
_STEPS_PER_EXECUTION = 10

# The arguments of `fit`, `evaluate` and `predict` that fix a number of steps.
_STEP_ARGUMENTS = ("steps_per_epoch", "validation_steps", "steps")


class LatentVariableModel(keras.Model):
    """Base class of `tfvae.VAE` and `tfvae.HierarchicalVAE`. Not public.

    Subclasses call `super().__init__` with the shared hyperparameters, create
    their networks, set `self.likelihood = self._likelihood_head(likelihood)`
    last (attributes are in data-flow order, which `summary()` follows), then
    call `self._make_trackers(num_layers)` and `self.build(...)`. They
    implement `_build_networks`, `_noise_dims`, `_chain`, `_first_posterior`,
    `_generate`, `encode`, `decode` and `get_config`.
    """

    # Whether the top layer's KL is the closed form (else the sampled ratio).
    _analytic_top_kl = True
    # Whether per-layer `kl_l` metrics are reported.
    _per_layer_metrics = False

    def __init__(
        self, input_shape, beta, num_samples, free_bits, objective, seed, **kwargs
    ):
        super().__init__(**kwargs)
        self.input_shape = _checks.shape_tuple(input_shape, "input_shape")
        self.beta = _checks.non_negative_float(beta, "beta")
        self.num_samples = _checks.positive_int(num_samples, "num_samples")
        self.free_bits = _checks.non_negative_float(free_bits, "free_bits")
        self.objective = _checks.one_of(objective, "objective", _OBJECTIVES)
        if objective == "iwae" and self.free_bits:
            raise ValueError(
                "`free_bits` applies to objective='elbo' only; the IWAE bound has "
                f"no per-layer KL term. Received: free_bits={free_bits}, "
                f"objective={objective!r}"
            )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # The weight of the KL term in the training loss: beta, unless a
        # callback such as `tfvae.callbacks.KLWarmup` changes it. A variable,
        # so that changing it needs no retracing and it is saved with the model.
        self.kl_weight = keras.Variable(
            self.beta, trainable=False, name="kl_weight", dtype="float32"
        )
        # The warm-up schedule within one call of the compiled step, set by
        # `tfvae.callbacks.KLWarmup` (see `_scheduled_kl_weight`). Not a model
        # weight: kept out of Keras' tracking, so it is never saved.
        object.__setattr__(
            self,
            "_kl_schedule",
            tf.Variable(tf.zeros(5, tf.float64), trainable=False, name="kl_schedule"),
        )

    def build(self, input_shape=None):
        if input_shape is not None:
            _checks.check_spec(
                keras.KerasTensor(input_shape), self.input_shape, "input_shape"
            )
        self._build_networks()

    def _build_networks(self):
        """Creates every weight, by one pass of a zero example."""
        raise NotImplementedError

    def _likelihood_head(self, likelihood):
        """The head of p(x|z_1) for a name, config or head, with the data's shape."""
        head = heads.get(likelihood)
        head.set_event_shape(self.input_shape)
        return head

    def _make_trackers(self, num_layers):
        names = ["loss", "elbo", "reconstruction", "kl"]
        if self.objective == "iwae":
            names.insert(1, "iwae")
        if self._per_layer_metrics:
            names += [f"kl_{layer}" for layer in range(1, num_layers + 1)]
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self):
        return list(self._trackers.values())

    @property
    def _noise_dims(self):
        """Dimensions of z_1 ... z_L: one standard normal draw is split among them."""
        raise NotImplementedError

    def _chain(self, x, noise, training=None, prepared=NOTHING_PREPARED):
        """One reparameterized pass; `noise` is the list `_noise` returns.

        `prepared` is `self._prepare(x)`, or `NOTHING_PREPARED`.
        """
        raise NotImplementedError

    def _latent_layers(self, x, noise):
        """One sample per example: a list of (q(z_l|.), p(z_l|.), z_l), z_1 first.

        `noise` is `_noise(1, batch, seed)`; every distribution has batch
        shape (batch,) and every z_l shape (batch, dim). The top layer's p is
        the prior N(0, I).
        """
        raise NotImplementedError

    def _first_posterior(self, x, training=None):
        """q(z_1|x), the posterior of the layer next to x."""
        raise NotImplementedError

    def _generate(self, noise):
        """Decoder means of prior draws driven by per-layer noise (batch, dim)."""
        raise NotImplementedError

    def call(self, x, training=None):
        """The reconstruction: the mean of p(x|z_1) at the posterior mean of z_1."""
        _checks.check_spec(x, self.input_shape)
        z = self._first_posterior(x, training).mean()
        return self.decode(z, training).mean()

    def reconstruct(self, x, sample=False, seed=None):
        """Decoder means of x's encodings.

        Args:
            x: a batch of examples.
            sample: `False` decodes the posterior mean of z_1 (the same as
                `call`); `True` decodes one draw z_1 ~ q(z_1|x) per example.
            seed: seed of the draw when `sample=True`; the model's seed
                generator when `None`.
        """
        q = self._first_posterior(self._checked(x))
        if not sample:
            return self.decode(q.mean()).mean()
        noise = keras.random.normal(ops.shape(q.mean()), seed=self._seed(seed))
        return self.decode(reparameterize(q, noise)).mean()

    def sample(self, num_samples, seed=None):
        """Decoder means of `num_samples` draws from the generative model.

        The noise is `keras.random.normal((num_samples, sum(latent dims)),
        seed=seed)`, split among the layers, z_1 first: the same integer seed
        gives the same samples; with `None`, the model's seed generator.
        """
        num_samples = _checks.positive_int(num_samples, "num_samples")
        return self._generate(self._noise(None, num_samples, self._seed(seed)))

    def _seed(self, seed):
        return self.seed_generator if seed is None else seed

    def _noise(self, num_samples, batch, seed):
        """N(0, I) noise of shape (S, B, sum of latent dims), split per layer."""
        shape = (batch,) if num_samples is None else (num_samples, batch)
        noise = keras.random.normal((*shape, sum(self._noise_dims)), seed=seed)
        return self._split_noise(noise)

    def _split_noise(self, noise):
        """Splits noise along its last axis among the latent layers, z_1 first."""
        return ops.split(noise, _split_points(self._noise_dims), axis=-1)

    def _repeat(self, x, num_samples):
        """x repeated for each of `num_samples` draws: (S * B, *input_shape)."""
        if num_samples == 1:
            return x
        x = ops.broadcast_to(x[None], (num_samples, *ops.shape(x)))
        return ops.reshape(x, (-1, *self.input_shape))

    def _elbo_terms(self, x, num_samples, seed, training=None):
        """Per-example reconstruction and per-layer KLs, each of shape (batch,)."""
        noise = self._noise(num_samples, ops.shape(x)[0], seed)
        return self._terms(self._chain(x, noise, training=training))

    @staticmethod
    def _chain_log_weights(chain, kl_weight=1.0):
        """log w = log p(x|z_1) + kl_weight * (log p(z) - log q(z|x)), (S, B)."""
        pairs = zip(chain.log_p, chain.log_q, strict=True)
        latent = sum(log_p - log_q for log_p, log_q in pairs)
        return chain.log_px + kl_weight * latent

    def _prepare(self, x):
        """A `Prepared`: the work of `_log_weights` that depends on x only."""
        likelihood = self.likelihood.prepare(x) if self.likelihood.built else None
        return NOTHING_PREPARED._replace(likelihood=likelihood)

    def _log_weights(self, x, noise, training=None, prepared=None):
        """Importance log-weights log p(x, z) - log q(z|x) of each draw, (S, B).

        `prepared` is `self._prepare(x)`, or None.
        """
        if prepared is None:
            prepared = NOTHING_PREPARED
        chain = self._chain(x, noise, training=training, prepared=prepared)
        return self._chain_log_weights(chain)

    def _floats_per_sample(self):
        """Rough float32 count of the activations of one (example, sample) pair."""
        widths = sum(w.shape[-1] for w in self.trainable_weights if len(w.shape) == 2)
        return 4 * math.prod(self.input_shape) + 3 * widths

    def log_likelihood(
        self,
        x,
        num_samples=5000,
        batch_size=None,
        seed=None,
        memory_budget=estimators.DEFAULT_MEMORY_BUDGET,
        verbose="auto",
    ):
        """Importance-sampled estimate of log p(x) for each example, in nats.

        Mathematical details: log p(x) ~= logmeanexp_k [log p(x, z_k) -
        log q(z_k|x)], z_k ~ q(z|x) (the whole chain for a hierarchy). This is
        the K-sample IWAE bound: below log p(x) in expectation, tight as K
        grows. Published results use K = 5000 on the test set.

        Examples are processed in chunks (one call of a compiled function
        each), and the samples of a chunk in blocks evaluated one after the
        other, sized from `memory_budget`; the noise of sample k of example i
        depends only on `(seed, i, k)`, so the result does not depend on the
        chunking or on `batch_size`. Log-sum-exp keeps float32 stable for any K.

        References: Burda, Grosse & Salakhutdinov (2015), Importance Weighted
        Autoencoders; Rezende et al. (2014), Appendix E.

        Args:
            x: an array of examples, shape (n, *input_shape).
            num_samples: K, importance samples per example.
            batch_size: examples per chunk; `None` takes enough (up to 131,072
                example-sample pairs) to amortize the cost of a call.
            seed: an int; `None` draws one from the model's seed generator.
            memory_budget: bytes of activations one block may use (an
                estimate; default 256 MiB). Blocks are at most 1,024 pairs,
                so that their activations stay in the CPU caches; up to
                max(10, inter-op threads) blocks run side by side.
            verbose: `"auto"` shows a progress bar when n * K >= 10^6; 0 or 1.

        Returns:
            A float32 numpy array of shape (n,).
        """
        return estimators.log_likelihood(
            self,
            x,
            num_samples=num_samples,
            batch_size=batch_size,
            seed=seed,
            memory_budget=memory_budget,
            verbose=verbose,
        )

    def _terms(self, chain):
        """Per-example reconstruction and per-layer KLs from one chain."""
        kls = [
            ops.mean(log_q - log_p, axis=0)
            for log_q, log_p in zip(chain.log_q, chain.log_p, strict=True)
        ]
        if self._analytic_top_kl:
            top = chain.kl_top
            kls[-1] = ops.mean(top, axis=0) if len(top.shape) == 2 else top
        return ops.mean(chain.log_px, axis=0), kls

    def elbo(self, x, num_samples=1, seed=None):
        """The ELBO of each example, estimated with `num_samples` draws per example.

        The noise is `keras.random.normal((num_samples, batch, sum(latent
        dims)), seed=seed)` split along the last axis among the latent layers,
        z_1 first (the model's seed generator when `seed` is None). beta and
        free bits are not applied: this is the bound itself.

        Returns:
            A float32 tensor of shape (batch,), in nats.
        """
        num_samples = _checks.positive_int(num_samples, "num_samples")
        reconstruction, kls = self._elbo_terms(
            self._checked(x), num_samples, self._seed(seed)
        )
        return reconstruction - sum(kls)

    def _checked(self, x):
        """Checks a batch given to a public method; returns it as float32."""
        if not tf.is_tensor(x):
            _checks.check_array(x, self.input_shape, self.likelihood.support)
        return _checks.check_batch(
            ops.convert_to_tensor(x), self.input_shape, self.likelihood.support
        )

    def _step_terms(self, data, training):
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = _checks.check_batch(
            x, self.input_shape, self.likelihood.support, values=not self.jit_compile
        )
        chain = self._chain(x, self._step_noise(ops.shape(x)[0]), training=training)
        reconstruction, kls = self._terms(chain)
        if sample_weight is not None:
            sample_weight = ops.cast(ops.reshape(sample_weight, (-1,)), "float32")

        def batch_mean(values):
            if sample_weight is None:
                return ops.mean(values)
            return ops.mean(values * sample_weight)

        kl = sum(kls)
        values = {"elbo": reconstruction - kl, "reconstruction": reconstruction}
        values["kl"] = kl
        if self.objective == "iwae":
            # The importance-weighted bound of Burda et al. (2015) with
            # K = num_samples; the KL weight scales the latent log-ratio.
            log_k = math.log(self.num_samples)

            def iwae(kl_weight):
                log_w = self._chain_log_weights(chain, kl_weight)
                return ops.logsumexp(log_w, axis=0) - log_k

            values["iwae"] = iwae(1.0)
            loss = -batch_mean(iwae(self.kl_weight))
        else:
            # Free bits (Kingma et al. 2016): each layer's batch-mean KL counts
            # at least `free_bits` nats in the loss; below that, no gradient.
            kl_loss = sum(ops.maximum(batch_mean(kl), self.free_bits) for kl in kls)
            loss = -batch_mean(reconstruction) + self.kl_weight * kl_loss
        if self.losses:
            loss = loss + ops.sum(self.losses)
        if self._per_layer_metrics:
            values.update({f"kl_{i}": kl for i, kl in enumerate(kls, start=1)})
        return loss, values, sample_weight

    def _step_noise(self, batch):
        """The noise of a training or test step, keyed by each example's index.

        One seed per step comes from the model's seed generator (the same in
        every replica of a `tf.distribute` strategy), and the noise of each
        example is `estimators.counter_normal` of (that seed, its index in the
        global batch, sample). Replica r of a strategy holds examples
        r * local_batch ... of the global batch, so a step draws the same noise
        for an example whether it runs on one device or on several, and no two
        replicas share noise.
        """
        step_seed = keras.random.randint((), 0, 2**31 - 1, seed=self.seed_generator)
        replica = tf.distribute.get_replica_context()
        replica_id = 0 if replica is None else replica.replica_id_in_sync_group
        first = tf.cast(replica_id, "int32") * batch
        noise = estimators.counter_normal(
            step_seed,
            first + tf.range(batch),
            0,
            self.num_samples,
            sum(self._noise_dims),
        )
        return self._split_noise(noise)

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

    def _scheduled_kl_weight(self):
        """Sets `kl_weight` for this step from the schedule of its execution.

        `KLWarmup` sets the KL weight before each call of the compiled step,
        which runs `steps_per_execution` batches. So that the ramp moves at
        every batch all the same, it also stores (iteration, epoch, batch,
        steps per epoch, warm-up epochs) of the call's first batch, and each
        step computes its own weight from them, with the callback's formula in
        float64: the same weights as one step per call. Steps per epoch 0
        (no schedule, the state outside `KLWarmup`) leaves the weight alone.
        """
        first, epoch, batch, steps, epochs = tf.unstack(self._kl_schedule)
        step = tf.cast(self.optimizer.iterations, tf.float64) - first
        progress = tf.minimum(
            tf.constant(1.0, tf.float64),
            (epoch + (batch + step) / tf.maximum(steps, 1.0)) / tf.maximum(epochs, 1.0),
        )
        weight = tf.cast(self.beta * progress, "float32")
        self.kl_weight.assign(tf.where(steps > 0, weight, self.kl_weight))

    def train_step(self, data):
        if self.steps_per_execution > 1:
            self._scheduled_kl_weight()
        with tf.GradientTape() as tape:
            loss, values, sample_weight = self._step_terms(data, training=True)
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
            checks.append(_checks.check_finite({"loss": loss, **values}, step))
        with tf.control_dependencies(checks):
            self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_metrics(
            loss, values, sample_weight, ops.shape(values["elbo"])[0]
        )

    def test_step(self, data):
        loss, values, sample_weight = self._step_terms(data, training=False)
        return self._update_metrics(
            loss, values, sample_weight, ops.shape(values["elbo"])[0]
        )

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
            "steps_per_execution", 1 if mirrored else _STEPS_PER_EXECUTION
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
        self._check_data(x, "x")
        arguments = inspect.signature(keras.Model.predict).bind(
            self, x, *args, **kwargs
        )
        with self._exact_steps(arguments.arguments), _checks.data_errors():
            return super().predict(x, *args, **kwargs)

    def _checked_run(self, method, signature, x, y, *args, **kwargs):
        """Checks the data of `fit`/`evaluate`, then runs it."""
        arguments = inspect.signature(signature).bind(self, x, y, *args, **kwargs)
        arguments = arguments.arguments
        self._check_data(x, "x")
        self._check_data(arguments.get("validation_data"), "validation_data")
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

    def _check_data(self, data, name):
        _checks.check_data(data, self.input_shape, self.likelihood.support, name)

    def get_config(self):
        return {
            **super().get_config(),
            "input_shape": self.input_shape,
            "likelihood": heads.serialize(self.likelihood),
            "beta": self.beta,
            "num_samples": self.num_samples,
            "free_bits": self.free_bits,
            "objective": self.objective,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name, value in config.items():
            if isinstance(value, dict) and "class_name" in value:
                config[name] = keras.saving.deserialize_keras_object(value)
        return cls(**config)


class _StopOnNonFiniteLogs(keras.callbacks.Callback):
    """The divergence check of a step compiled with XLA, on its logs.

    XLA compiles no assertions, so the in-graph check of `train_step` is left
    out under `jit_compile=True`; this callback, added by `fit`, raises the
    same `FloatingPointError` from the logs, after the step's update.
    """

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            value = float(value)
            if not math.isfinite(value):
                step = int(self.model.optimizer.iterations.numpy())
                raise FloatingPointError(
                    _checks.divergence_message(
                        step,
                        name,
                        value,
                        "mean over the epoch so far",
                        "Under XLA the check runs after the step's update, so "
                        "the weights may hold non-finite values.",
                    )
                )


def reparameterize(q, noise):
    """z = mu + sigma * noise for a diagonal Gaussian q; noise broadcasts left."""
    normal = q.distribution
    return normal.loc + normal.scale * noise


def log_prob_of_noise(q, noise):
    """log q(z) of z = `reparameterize(q, noise)`, computed from the noise.

    log N(mu + sigma e; mu, sigma) = -|e|^2 / 2 - sum log sigma - D/2 log 2 pi:
    the same value as `q.log_prob(z)` without recovering e = (z - mu) / sigma,
    which costs a division and a subtraction per latent coordinate and sample.
    """
    scale = q.distribution.scale
    dim = scale.shape[-1]
    return (
        -0.5 * ops.sum(ops.square(noise), axis=-1)
        - ops.sum(ops.log(scale), axis=-1)
        - 0.5 * dim * math.log(2 * math.pi)
    )


def standard_normal_log_prob(z):
    """log N(z; 0, I) over the last axis."""
    return -0.5 * ops.sum(ops.square(z), axis=-1) - 0.5 * z.shape[-1] * math.log(
        2 * math.pi
    )


def diagonal_normal(loc, scale):
    """N(loc, diag(scale^2)) over the last axis: event shape (dim,)."""
    tfd = heads.tfd
    return tfd.Independent(
        tfd.Normal(loc=loc, scale=scale), reinterpreted_batch_ndims=1
    )


def standard_normal(dim):
    """N(0, I) over R^dim, as a `tfd.Distribution` with event shape (dim,)."""
    return diagonal_normal(tf.zeros((dim,)), tf.ones((dim,)))


def _split_points(dims):
    points, total = [], 0
    for dim in dims[:-1]:
        total += dim
        points.append(total)
    return points if points else 1
