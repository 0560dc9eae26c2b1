"""The variational autoencoder, trained on the ELBO by a custom `train_step`."""

import keras
from keras import ops

from tfvae import _checks, heads
from tfvae.conditional import ClassConditional
from tfvae.distributions import log_prob_of_noise, reparameterize
from tfvae.latent import NOTHING_PREPARED, Chain
from tfvae.networks import check_architecture, conv_decoder, conv_encoder, mlp

_KL_ESTIMATORS = ("analytic", "mc")


@keras.saving.register_keras_serializable(package="tfvae")
class VAE(ClassConditional):
    """Variational autoencoder: diagonal-Gaussian q(z|x), p(z) = N(0, I) by default.

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
    the batch mean of -E_q[log p(x|z)] + beta * max(KL, free_bits), with the
    expectation estimated from `num_samples` draws of z per example (the KL's
    batch mean is compared with `free_bits`).

    Metrics of `fit` and `evaluate`, in nats per example: `loss` (the
    minimized objective, beta and free bits applied, plus any regularization
    losses),
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
            maps linear (affine). Under `architecture="conv"`, the widths of
            dense layers between the convolutions and z (after the
            encoder's convolutions; before the decoder's map, in reverse);
            `()` for none.
        activation: activation of the hidden layers (of the ungated part of
            the gated convolutions under `architecture="conv"`).
        likelihood: `"bernoulli"`, `"gaussian"` (a diagonal, per-example
            sigma(z)) or a `tfvae.heads.DistributionHead`, e.g.
            `tfvae.heads.GaussianHead(scale="shared")`. Under
            `architecture="conv"` a name gets `projection="pixel"`, and a
            head must have it (a `ValueError` otherwise).
        kl: `"analytic"` (closed form) or `"mc"` (sampled log-density ratio).
        prior: p(z): `"standard_normal"` (the default) or a
            `tfvae.priors.Prior`. `kl="analytic"` needs a prior with a closed
            form KL.
        beta: weight of the KL term in the training loss, >= 0. The reported
            `elbo` always uses 1. `tfvae.callbacks.KLWarmup` ramps the weight
            (`model.kl_weight`) from 0 up to beta.
        num_samples: Monte Carlo samples of z per example in the training and
            evaluation ELBO, >= 1.
        encoder: optional Keras layer mapping x to features, replacing the
            default MLP (for instance a convolutional network). The posterior
            head projects its flattened output onto (mu, sigma).
        decoder: optional Keras layer mapping z (shape `(batch, latent_dim)`)
            to features; the likelihood head projects its flattened output
            onto the distribution's parameters, or, with
            `projection="pixel"` (as under `architecture="conv"`), its
            feature maps of the data's spatial shape location by location.
        free_bits: nats of KL per latent layer that are free: the training loss
            uses max(batch-mean KL, free_bits), so the KL gets no gradient
            below it (Kingma et al. 2016). Default 0. Never applied to `elbo`.
        objective: `"elbo"` (default) or `"iwae"`: train on the
            importance-weighted bound log mean_k p(x, z_k) / q(z_k|x) with
            K = `num_samples` (Burda et al. 2015); the metrics then include
            `iwae`, and `loss` is -iwae.
        gated: `True` makes the hidden layers of the default MLPs
            `tfvae.layers.GatedDense`, activation(W x + b) * sigmoid(V x + c)
            (Tomczak & Welling 2018 use them with `activation="linear"`).
            Under `architecture="conv"` it applies to the hidden dense
            layers; the convolutions are always gated.
        architecture: `"mlp"` (default): the default encoder and decoder are
            MLPs. `"conv"`: they are the gated convolutional networks
            `tfvae.networks.conv_encoder` and `tfvae.networks.conv_decoder`
            (filters (32, 64)), and the likelihood head maps the decoder's
            (H, W, 32) feature maps pixel by pixel (`projection="pixel"`);
            `input_shape` must be (H, W, C) with H and W divisible by 4.
            Networks given as `encoder`/`decoder` replace the defaults as
            usual.
        num_classes: 0 (default) or K >= 2 for a class-conditional VAE,
            p(x|z, y) and q(z|x, y) with a one-hot label y of K classes beside
            z and x (`tfvae.conditional`): its inputs are `(x, labels)`,
            labels integer class indices of shape (batch,), and
            `sample(n, labels=...)` draws chosen classes. The prior p(z) is
            unconditional (a VampPrior is refused: its pseudo-inputs have no
            labels).
        seed: seed of the model's noise (an int or None).
        **kwargs: base `keras.Model` arguments, such as `name`.

    Example:

    ```python
    model = tfvae.VAE(input_shape=(784,), latent_dim=32, hidden_units=(256,))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x_train, epochs=10, batch_size=100, validation_data=x_valid)
    elbo = model.elbo(x_valid)  # one value per example
    ```

    A convolutional VAE of (28, 28, 1) images:

    ```python
    model = tfvae.VAE(
        input_shape=(28, 28, 1), latent_dim=32, hidden_units=(),
        architecture="conv",
    )
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
        free_bits=0.0,
        objective="elbo",
        encoder=None,
        decoder=None,
        gated=False,
        prior="standard_normal",
        architecture="mlp",
        num_classes=0,
        seed=None,
        **kwargs,
    ):
        architecture = check_architecture(architecture, input_shape)
        super().__init__(
            input_shape,
            beta,
            num_samples,
            free_bits,
            objective,
            seed,
            num_classes=num_classes,
            **kwargs,
        )
        self.architecture = architecture
        self.latent_dim = _checks.positive_int(latent_dim, "latent_dim")
        self.hidden_units = _checks.shape_tuple(
            hidden_units, "hidden_units", allow_empty=True
        )
        keras.activations.get(activation)
        self.activation = activation
        self.kl = _checks.one_of(kl, "kl", _KL_ESTIMATORS)
        self.gated = _checks.boolean(gated, "gated")
        self._custom_networks = {"encoder": encoder, "decoder": decoder}
        units = self.hidden_units
        if architecture == "conv":
            self.encoder = encoder or conv_encoder(
                self.input_shape,
                hidden_units=units,
                activation=activation,
                gated=gated,
                name="encoder",
            )
        else:
            self.encoder = encoder or mlp(
                units, activation, flatten=True, name="encoder", gated=gated
            )
        self.posterior = heads.DiagonalGaussianHead(
            event_shape=(self.latent_dim,), name="posterior"
        )
        if architecture == "conv":
            self.decoder = decoder or conv_decoder(
                self.input_shape,
                hidden_units=units[::-1],
                activation=activation,
                gated=gated,
                name="decoder",
            )
        else:
            self.decoder = decoder or mlp(
                units[::-1], activation, name="decoder", gated=gated
            )
        self.prior = self.top_prior(prior, self.latent_dim)
        self.likelihood = self.likelihood_head(
            likelihood, projection="pixel" if architecture == "conv" else None
        )
        if self.kl == "analytic" and not self.prior.analytic_kl:
            raise ValueError(
                f"kl='analytic' needs a prior with a closed-form KL; "
                f"{type(self.prior).__name__} has none. Expected kl='mc'. "
                f"Received: kl={kl!r}, prior={self.prior.name!r}"
            )
        self.make_trackers()
        self.build((None, *self.input_shape))

    def build_networks(self):
        inputs = self.zero_inputs()
        (q,) = self.encode(inputs)
        self.decode_given(q.mean(), self.split_inputs(inputs)[1])

    @property
    def latent_dims(self):
        return (self.latent_dim,)

    has_top_posterior = True

    def posterior_of(self, inputs, training=None):
        """q(z|x) (q(z|x, y) with a label), a `tfd.Distribution` of batch (batch,)."""
        x, conditions = self.split_inputs(inputs)
        features = self.encoder(self.network_input(x, conditions), training=training)
        return self.posterior(features)

    def top_posterior(self, x, training=None):
        return self.posterior_of(x, training=training)

    def encode(self, x, sample=True, seed=None, training=None):
        """Returns [q(z|x)]: a list of one `tfd.Distribution` of batch (batch,).

        A list, as for every tfvae model (one posterior per latent layer);
        `sample` and `seed` change nothing for a single layer.
        """
        del sample, seed
        return [self.posterior_of(x, training=training)]

    def decode(self, z, training=None, conditions=()):
        """Returns p(x|z), a `tfd.Distribution` with the data's event shape.

        A class-conditional model takes `conditions=(labels,)`: p(x|z, y).
        """
        z = self.decoder_input(z, conditions)
        return self.likelihood(self.decoder(z, training=training))

    def latent_layers(self, x, noise):
        q = self.posterior_of(x)
        return [self.top_layer(q, reparameterize(q, noise[0][0]))]

    def generate(self, noise, conditions=()):
        (eps,) = noise
        z = self.prior.sample_from_noise(eps)
        return self.likelihood.picture(self.decode(z, conditions=conditions))

    def prepare(self, x):
        return super().prepare(x)._replace(posterior=self.posterior_of(x))

    def chain(self, inputs, noise, training=None, prepared=NOTHING_PREPARED):
        (noise,) = noise
        num_samples = noise.shape[0]
        x, conditions = self.split_inputs(inputs)
        q = prepared.posterior
        if q is None:
            q = self.posterior_of(inputs, training=training)
        z = reparameterize(q, noise)  # (S, B, D)
        flat_z = ops.reshape(z, (-1, self.latent_dim))
        features = self.decoder(
            self.decoder_input(flat_z, conditions, num_samples), training=training
        )
        log_px = self.likelihood.log_likelihood(
            features, x, num_samples, prepared=prepared.likelihood
        )
        log_px = ops.reshape(log_px, (num_samples, -1))
        return Chain(
            log_px=log_px,
            log_q=[log_prob_of_noise(q, noise)],
            log_p=[self.prior.log_prob(z, prepared=prepared.prior)],
            kl_top=self.prior.kl_divergence(q) if self.kl == "analytic" else None,
        )

    def get_config(self):
        networks = {
            name: None if layer is None else keras.saving.serialize_keras_object(layer)
            for name, layer in self._custom_networks.items()
        }
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "hidden_units": self.hidden_units,
            "activation": keras.activations.serialize(
                keras.activations.get(self.activation)
            ),
            "kl": self.kl,
            "gated": self.gated,
            "architecture": self.architecture,
            **networks,
        }
