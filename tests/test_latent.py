"""The protocol of `tfvae.latent.LatentVariableModel`: a new kind of model,
written here against the protocol alone, gets everything else unchanged:
training, the ELBO and IWAE objectives, the estimator, the diagnostics, the
certificate, the SavedModel and the presets."""

import keras
import numpy as np
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
