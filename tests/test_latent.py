"""The protocol of `tfvae.latent.LatentVariableModel`: a new kind of model,
written here against the protocol alone, gets everything else unchanged:
training, the ELBO and IWAE objectives, the estimator, the diagnostics, the
certificate, the SavedModel and the presets."""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from model_test_case import run_model_test

import tfvae
from tfvae.distributions import log_prob_of_noise, reparameterize
from tfvae.latent import NOTHING_PREPARED, Chain, LatentVariableModel

RNG = np.random.default_rng(11)
X = (RNG.random((200, 10)) < 0.3).astype("float32")


@keras.saving.register_keras_serializable(package="tests")
class LinearVAE(LatentVariableModel):
    """A one-layer model with affine maps, written from the protocol alone."""

    def __init__(self, input_shape, latent_dim, likelihood="bernoulli", **kwargs):
        defaults = dict(beta=1.0, num_samples=1, free_bits=0.0, objective="elbo")
        defaults["seed"] = None
        super().__init__(input_shape, **{**defaults, **kwargs})
        self.latent_dim = latent_dim
        self.posterior = tfvae.heads.DiagonalGaussianHead(event_shape=(latent_dim,))
        self.prior = self.top_prior("standard_normal", latent_dim)
        self.likelihood = self.likelihood_head(likelihood)
        self.make_trackers()
        self.build((None, *self.input_shape))

    @property
    def latent_dims(self):
        return (self.latent_dim,)

    def build_networks(self):
        (q,) = self.encode(ops.zeros((1, *self.input_shape)))
        self.decode(q.mean())

    def encode(self, x, sample=True, seed=None, training=None):
        return [self.posterior(x)]

    def decode(self, z, training=None):
        return self.likelihood(z)

    def chain(self, x, noise, training=None, prepared=NOTHING_PREPARED):
        (eps,) = noise
        (q,) = self.encode(x)
        z = reparameterize(q, eps)  # (S, B, D)
        num_samples = eps.shape[0]
        log_px = self.likelihood.log_likelihood(
            ops.reshape(z, (-1, self.latent_dim)), x, num_samples
        )
        return Chain(
            log_px=ops.reshape(log_px, (num_samples, -1)),
            log_q=[log_prob_of_noise(q, eps)],
            log_p=[self.prior.log_prob(z)],
            kl_top=self.prior.kl_divergence(q),
        )

    def latent_layers(self, x, noise):
        (q,) = self.encode(x)
        return [self.top_layer(q, reparameterize(q, noise[0][0]))]

    def generate(self, noise):
        return self.decode(self.prior.sample_from_noise(noise[0])).mean()

    def get_config(self):
        config = super().get_config()
        del config["prior"]
        return {**config, "latent_dim": self.latent_dim}


def test_a_new_kind_of_model_passes_the_shared_model_test(tmp_path):
    run_model_test(LinearVAE, {"input_shape": (10,), "latent_dim": 3}, X[:6], tmp_path)


def test_a_new_kind_of_model_trains_and_is_certified():
    keras.utils.set_random_seed(0)
    model = LinearVAE((10,), 3, objective="iwae", num_samples=4, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-2))
    before = float(ops.mean(model.elbo(X, num_samples=10, seed=0)))
    history = model.fit(X, epochs=10, batch_size=100, verbose=0)
    assert set(history.history) == {"loss", "iwae", "elbo", "reconstruction", "kl"}
    # The same noise before and after: the gain is the training's. Independent
    # pixels with P(1) = 0.3 have an ELBO of at most -10 H(0.3) = -6.11 nats.
    after = float(ops.mean(model.elbo(X, num_samples=10, seed=0)))
    assert before + 1.0 < after < -6.0, (before, after)
    result = tfvae.certify(model, X, num_samples=100)
    assert result["log_likelihood"] >= result["elbo"]  # the IWAE bound is tighter
    assert len(result["active_units"]) == len(result["kl_per_layer"]) == 1


# --- A model with a second input: a class label ----------------------------------

LABELS = np.eye(3, dtype="float32")[RNG.integers(0, 3, size=len(X))]


@keras.saving.register_keras_serializable(package="tests")
class LabelledLinearVAE(LinearVAE):
    """p(x | z, y) and q(z | x, y) with a one-hot label y of 3 classes beside x:
    the label plugs in through the input methods of the protocol alone."""

    def build_networks(self):
        x, y = ops.zeros((1, *self.input_shape)), ops.zeros((1, 3))
        (q,) = self.encode((x, y))
        self.decode(q.mean(), conditions=(y,))

    # The inputs: (x, y).
    def unpack_inputs(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:  # fit((x, y)): Keras passes both as the inputs
            return tuple(x), sample_weight
        return (x, y), sample_weight

    def as_arrays(self, data):
        x, y = data
        return np.asarray(x), np.asarray(y, "float32")

    def check_data(self, data, name="x"):
        if data is None:
            return
        super().check_data(data[0], name)
        if np.shape(data[1])[1:] != (3,):
            raise ValueError(
                f"labels must be one-hot of 3 classes: {np.shape(data[1])}"
            )

    def check_inputs(self, inputs, values=True):
        x, y = inputs
        return super().check_inputs(x, values), ops.cast(y, "float32")

    def input_signature(self):
        return [*super().input_signature(), *self.condition_signature()]

    def condition_signature(self):
        return [tf.TensorSpec((None, 3), tf.float32, name="label")]

    def pack_inputs(self, tensors):
        return tuple(tensors)

    # The model.
    def call(self, inputs, training=None):
        (q,) = self.encode(inputs)
        return self.decode(q.mean(), conditions=(inputs[1],)).mean()

    def encode(self, inputs, sample=True, seed=None, training=None):
        x, y = inputs
        return [self.posterior(ops.concatenate([x, y], axis=-1))]

    def decode(self, z, training=None, conditions=()):
        (y,) = conditions
        return self.likelihood(ops.concatenate([z, y], axis=-1))

    def chain(self, inputs, noise, training=None, prepared=NOTHING_PREPARED):
        x, y = inputs
        (eps,) = noise
        (q,) = self.encode(inputs)
        z = reparameterize(q, eps)  # (S, B, D)
        num_samples = eps.shape[0]
        labels = ops.broadcast_to(y[None], (num_samples, *ops.shape(y)))
        features = ops.concatenate([z, labels], axis=-1)
        log_px = self.likelihood.log_likelihood(
            ops.reshape(features, (-1, self.latent_dim + 3)), x, num_samples
        )
        return Chain(
            log_px=ops.reshape(log_px, (num_samples, -1)),
            log_q=[log_prob_of_noise(q, eps)],
            log_p=[self.prior.log_prob(z)],
            kl_top=self.prior.kl_divergence(q),
        )

    def prepare(self, inputs):
        return NOTHING_PREPARED  # `chain` computes every part itself

    def generate(self, noise, conditions=()):
        z = self.prior.sample_from_noise(noise[0])
        return self.decode(z, conditions=conditions).mean()


def test_a_label_plugs_in_without_touching_the_estimator_or_the_export(tmp_path):
    keras.utils.set_random_seed(0)
    model = LabelledLinearVAE((10,), 2, seed=0)
    helpers.randomize_biases(model, RNG)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit((X, LABELS), epochs=2, batch_size=50, verbose=0)
    assert np.isfinite(history.history["elbo"]).all()
    data = (X[:30], LABELS[:30])
    # The estimator: chunking does not change the estimate; the label matters.
    log_px = model.log_likelihood(data, num_samples=64, seed=1)
    np.testing.assert_allclose(
        model.log_likelihood(data, num_samples=64, seed=1, batch_size=7),
        log_px,
        rtol=1e-5,
    )
    other = (X[:30], np.roll(LABELS[:30], 1, axis=-1))
    assert not np.allclose(model.log_likelihood(other, 64, seed=1), log_px)
    result = tfvae.certify(model, data, num_samples=64, seed=1)
    assert result["log_likelihood"] == pytest.approx(float(log_px.mean()), rel=1e-6)
    # The SavedModel takes the label where it needs it.
    served = tf.saved_model.load(
        tfvae.export_saved_model(model, tmp_path / "export")
    ).signatures
    x, y = (tf.constant(a) for a in data)
    got = served["log_likelihood"](x=x, label=y, num_samples=tf.constant(64))
    np.testing.assert_allclose(
        got["log_likelihood"], model.log_likelihood(data, 64, seed=0), rtol=1e-5
    )
    z = tf.random.normal((30, 2), seed=3)
    np.testing.assert_allclose(
        served["decode"](z=z, label=y)["mean"],
        model.decode(z, conditions=(y,)).mean(),
        rtol=1e-5,
    )
    drawn = served["sample"](
        num_samples=tf.constant(4), seed=tf.constant(2), label=y[:4]
    )
    assert drawn["x"].shape == (4, 10)
    np.testing.assert_allclose(
        served["elbo"](x=x, label=y)["elbo"], model.elbo((x, y), seed=0), rtol=1e-5
    )
    np.testing.assert_allclose(
        served["serving_default"](x=x, label=y)["reconstruction"],
        model((x, y)),
        rtol=1e-5,
    )
