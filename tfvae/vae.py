"""The variational autoencoder, trained on the ELBO by a custom `train_step`."""

import inspect

import keras
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from tfvae import _checks, heads
from tfvae._networks import mlp

tfd = tfp.distributions

_KL_ESTIMATORS = ("analytic", "mc")


@keras.saving.register_keras_serializable(package="tfvae")
class VAE(keras.Model):
    """Variational autoencoder with a N(0, I) prior and a diagonal-Gaussian q(z|x).

    The encoder network maps x to features that a `DiagonalGaussianHead` turns
    into q(z|x); the decoder network maps z to features that the likelihood
    head turns into p(x|z). `fit` maximizes the ELBO with the reparameterization
    trick: z = mu(x) + sigma(x) * eps, eps ~ N(0, I), drawn from the model's
    `keras.random.SeedGenerator`.

    Mathematical details:
    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x). With
    `kl="analytic"` the KL term is the closed form
    0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2); with `kl="mc"` it is
    the average of log q(z|x) - log p(z) at the sampled z. Training minimizes
    the mean over the batch of -(E_q[log p(x|z)] - beta * KL), with the
    expectation estimated from `num_samples` draws of z per example.

    Metrics of `fit` and `evaluate`, in nats per example: `loss` (the
    minimized objective, beta applied, plus any regularization losses),
    `elbo` (beta = 1, the true bound), `reconstruction` (E_q log p(x|z)) and
    `kl`.

    References: Kingma & Welling (2014), Auto-Encoding Variational Bayes;
    Rezende, Mohamed & Wierstra (2014), Stochastic Backpropagation and
    Approximate Inference in Deep Generative Models.

    Args:
        input_shape: shape of one example, without the batch axis, e.g.
            `(784,)` or `(28, 28, 1)`.
        latent_dim: dimension of z, >= 1.
        hidden_units: widths of the hidden layers of the default encoder MLP;
            the default decoder uses them in reverse order. `()` makes both
            maps linear (affine).
        activation: activation of the hidden layers.
        likelihood: `"bernoulli"`, `"gaussian"` (a diagonal, per-example
            sigma(z)) or a `tfvae.heads.DistributionHead`, e.g.
            `tfvae.heads.GaussianHead(scale="shared")`.
        kl: `"analytic"` (closed form) or `"mc"` (sampled log-density ratio).
        beta: weight of the KL term in the training loss, >= 0. The reported
            `elbo` always uses 1.
        num_samples: Monte Carlo samples of z per example in the training and
            evaluation ELBO, >= 1.
        encoder: optional Keras layer mapping x to features, replacing the
            default MLP (for instance a convolutional network). The posterior
            head projects its flattened output onto (mu, sigma).
        decoder: optional Keras layer mapping z (shape `(batch, latent_dim)`)
            to features; the likelihood head projects its flattened output
            onto the distribution's parameters.
        seed: seed of the model's noise (an int or None).
        **kwargs: base `keras.Model` arguments, such as `name`.

    Example:

    ```python
    model = tfvae.VAE(input_shape=(784,), latent_dim=32, hidden_units=(256,))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x_train, epochs=10, batch_size=100, validation_data=x_valid)
    elbo = model.elbo(x_valid)  # one value per example
    ```
    """

    def __init__(
        self,
        input_shape,
        latent_dim,
        hidden_units=(512, 256),
        activation="relu",
        likelihood="bernoulli",
        kl="analytic",
        beta=1.0,
        num_samples=1,
        encoder=None,
        decoder=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_shape = _checks.shape_tuple(input_shape, "input_shape")
        self.latent_dim = _checks.positive_int(latent_dim, "latent_dim")
        self.hidden_units = _checks.shape_tuple(
            hidden_units, "hidden_units", allow_empty=True
        )
        keras.activations.get(activation)
        self.activation = activation
        self.kl = _checks.one_of(kl, "kl", _KL_ESTIMATORS)
        self.beta = _checks.non_negative_float(beta, "beta")
        self.num_samples = _checks.positive_int(num_samples, "num_samples")
        self.seed = seed
        likelihood = heads.get(likelihood)
        likelihood.set_event_shape(self.input_shape)
        self._custom_networks = {"encoder": encoder, "decoder": decoder}
        # Attributes in data-flow order, which `summary()` follows.
        self.encoder = encoder or mlp(
            self.hidden_units, activation, flatten=True, name="encoder"
        )
        self.posterior = heads.DiagonalGaussianHead(
            event_shape=(self.latent_dim,), name="posterior"
        )
        self.decoder = decoder or mlp(
            self.hidden_units[::-1], activation, name="decoder"
        )
        self.likelihood = likelihood
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "elbo", "reconstruction", "kl")
        }
        self.build((None, *self.input_shape))

    def build(self, input_shape=None):
        if input_shape is not None:
            _checks.check_spec(
                tf.TensorSpec(input_shape), self.input_shape, "input_shape"
            )
        q = self.encode(ops.zeros((1, *self.input_shape)))
        self.decode(q.mean())

    @property
    def metrics(self):
        return list(self._trackers.values())

    @property
    def prior(self):
        """The prior p(z) = N(0, I): a `tfd.Distribution`, event shape (latent_dim,)."""
        return tfd.Independent(
            tfd.Normal(
                loc=tf.zeros((self.latent_dim,)), scale=tf.ones((self.latent_dim,))
            ),
            reinterpreted_batch_ndims=1,
        )

    def encode(self, x, training=None):
        """Returns q(z|x), a `tfd.Distribution` of batch shape (batch,)."""
        return self.posterior(self.encoder(x, training=training))

    def decode(self, z, training=None):
        """Returns p(x|z), a `tfd.Distribution` with the data's event shape."""
        return self.likelihood(self.decoder(z, training=training))

    def call(self, x, training=None):
        """The reconstruction: the mean of p(x|z) at the posterior mean of z."""
        _checks.check_spec(x, self.input_shape)
        return self.decode(self.encode(x, training).mean(), training).mean()

    def reconstruct(self, x, sample=False, seed=None):
        """Decoder means of x's encodings.

        Args:
            x: a batch of examples.
            sample: `False` decodes the posterior mean (the same as `call`);
                `True` decodes one draw z ~ q(z|x) per example.
            seed: seed of the draw when `sample=True`; the model's seed
                generator when `None`.
        """
        x = self._checked(x)
        q = self.encode(x)
        if not sample:
            return self.decode(q.mean()).mean()
        noise = keras.random.normal(ops.shape(q.mean()), seed=self._seed(seed))
        return self.decode(_reparameterize(q, noise)).mean()

    def sample(self, num_samples, seed=None):
        """Decoder means of `num_samples` prior draws z ~ N(0, I).

        The same integer `seed` gives the same samples; with `None`, the draws
        come from the model's seed generator.
        """
        num_samples = _checks.positive_int(num_samples, "num_samples")
        z = keras.random.normal((num_samples, self.latent_dim), seed=self._seed(seed))
        return self.decode(z).mean()

    def elbo(self, x, num_samples=1, seed=None):
        """The ELBO of each example, estimated with `num_samples` draws of z.

        The noise is `keras.random.normal((num_samples, batch, latent_dim),
        seed=seed)` (the model's seed generator when `seed` is None), and
        z = mu(x) + sigma(x) * noise. beta is not applied: this is the bound.

        Returns:
            A float32 tensor of shape (batch,), in nats.
        """
        num_samples = _checks.positive_int(num_samples, "num_samples")
        reconstruction, kl = self._elbo_terms(
            self._checked(x), num_samples, self._seed(seed)
        )
        return reconstruction - kl

    def _seed(self, seed):
        return self.seed_generator if seed is None else seed

    def _checked(self, x):
        if not tf.is_tensor(x):
            _checks.check_array(x, self.input_shape, self.likelihood.support)
        return _checks.check_batch(
            ops.convert_to_tensor(x), self.input_shape, self.likelihood.support
        )

    def _elbo_terms(self, x, num_samples, seed, training=None):
        """Per-example E_q log p(x|z) and KL(q || p), each of shape (batch,)."""
        q = self.encode(x, training=training)
        batch = ops.shape(x)[0]
        noise = keras.random.normal((num_samples, batch, self.latent_dim), seed=seed)
        z = _reparameterize(q, noise)
        p = self.decode(ops.reshape(z, (-1, self.latent_dim)), training=training)
        if num_samples > 1:
            x = ops.reshape(
                ops.broadcast_to(x[None], (num_samples, *ops.shape(x))),
                (-1, *self.input_shape),
            )
        log_px = ops.reshape(p.log_prob(x), (num_samples, batch))
        reconstruction = ops.mean(log_px, axis=0)
        if self.kl == "analytic":
            kl = tfd.kl_divergence(q, self.prior)
        else:
            kl = ops.mean(q.log_prob(z) - self.prior.log_prob(z), axis=0)
        return reconstruction, kl

    def _step_terms(self, data, training):
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = _checks.check_batch(x, self.input_shape, self.likelihood.support)
        reconstruction, kl = self._elbo_terms(
            x, self.num_samples, self.seed_generator, training=training
        )
        per_example = -(reconstruction - self.beta * kl)
        if self.losses:
            per_example = per_example + ops.sum(self.losses)
        if sample_weight is None:
            loss = ops.mean(per_example)
        else:
            sample_weight = ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
            loss = ops.mean(per_example * sample_weight)
        values = {
            "loss": per_example,
            "elbo": reconstruction - kl,
            "reconstruction": reconstruction,
            "kl": kl,
        }
        return loss, values, sample_weight

    def _update_metrics(self, values, sample_weight):
        for name, value in values.items():
            self._trackers[name].update_state(value, sample_weight=sample_weight)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, values, sample_weight = self._step_terms(data, training=True)
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_metrics(values, sample_weight)

    def test_step(self, data):
        _, values, sample_weight = self._step_terms(data, training=False)
        return self._update_metrics(values, sample_weight)

    def fit(self, x=None, y=None, *args, **kwargs):
        return self._checked_run(super().fit, keras.Model.fit, x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        return self._checked_run(
            super().evaluate, keras.Model.evaluate, x, y, *args, **kwargs
        )

    def _checked_run(self, method, signature, x, y, *args, **kwargs):
        """Checks the data of `fit`/`evaluate`, then runs it."""
        arguments = inspect.signature(signature).bind(self, x, y, *args, **kwargs)
        arguments = arguments.arguments
        self._check_data(x, "x")
        self._check_data(arguments.get("validation_data"), "validation_data")
        if y is None and arguments.get("sample_weight") is not None:
            # Keras drops sample weights when y is None; y itself is ignored.
            y = x
        with _checks.data_errors():
            return method(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_data(x, "x")
        with _checks.data_errors():
            return super().predict(x, *args, **kwargs)

    def _check_data(self, data, name):
        _checks.check_data(data, self.input_shape, self.likelihood.support, name)

    def get_config(self):
        networks = {
            name: None if layer is None else keras.saving.serialize_keras_object(layer)
            for name, layer in self._custom_networks.items()
        }
        return {
            **super().get_config(),
            "input_shape": self.input_shape,
            "latent_dim": self.latent_dim,
            "hidden_units": self.hidden_units,
            "activation": keras.activations.serialize(
                keras.activations.get(self.activation)
            ),
            "likelihood": heads.serialize(self.likelihood),
            "kl": self.kl,
            "beta": self.beta,
            "num_samples": self.num_samples,
            "seed": self.seed,
            **networks,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("encoder", "decoder", "activation"):
            if isinstance(config.get(name), dict):
                config[name] = keras.saving.deserialize_keras_object(config[name])
        config["likelihood"] = heads.get(config["likelihood"])
        return cls(**config)


def _reparameterize(q, noise):
    """z = mu + sigma * noise for a diagonal Gaussian q; noise broadcasts left."""
    normal = q.distribution
    return normal.loc + normal.scale * noise
