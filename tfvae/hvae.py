"""The Markov-chain hierarchical VAE: z_L -> ... -> z_1 -> x."""

import keras
from keras import ops

from tfvae import _checks, heads
from tfvae._model import Chain, LatentVariableModel, reparameterize, standard_normal
from tfvae._networks import mlp


def _hidden_units_per_layer(hidden_units, latent_dims):
    message = (
        "`hidden_units` must hold one tuple of widths per stochastic layer "
        f"({len(latent_dims)} for latent_dims={latent_dims}), e.g. "
        f"{tuple((200,) for _ in latent_dims)}. Received: hidden_units={hidden_units!r}"
    )
    try:
        layers = tuple(hidden_units)
    except TypeError:
        raise ValueError(message) from None
    if len(layers) != len(latent_dims) or any(
        isinstance(units, int) for units in layers
    ):
        raise ValueError(message)
    return tuple(
        _checks.shape_tuple(units, f"hidden_units[{i}]", allow_empty=True)
        for i, units in enumerate(layers)
    )


@keras.saving.register_keras_serializable(package="tfvae")
class HierarchicalVAE(LatentVariableModel):
    """A VAE with a Markov chain of L stochastic layers.

    Generative model: p(x, z_1..z_L) = p(z_L) p(z_{L-1}|z_L) ... p(z_1|z_2)
    p(x|z_1), with p(z_L) = N(0, I) and diagonal-Gaussian conditionals.
    Inference model: q(z_1..z_L|x) = q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}),
    diagonal Gaussians. Layer l's networks (the inference network of
    q(z_l|z_{l-1}) and the generative network of p(z_{l-1}|z_l), with z_0 = x)
    are MLPs with `hidden_units[l - 1]`, the generative one in reverse order.

    Mathematical details:
    ELBO(x) = E_q[log p(x|z_1) + sum_{l<L} log p(z_l|z_{l+1}) + log p(z_L)
    - sum_l log q(z_l|z_{l-1})], estimated by ancestral reparameterized
    sampling through the inference chain. The KL of layer l < L is the
    single-sample ratio kl_l = log q(z_l|z_{l-1}) - log p(z_l|z_{l+1}); the
    top layer's kl_L = KL(q(z_L|z_{L-1}) || N(0, I)) is the closed form. With
    L = 1 this is `tfvae.VAE` with `kl="analytic"`.

    Metrics of `fit` and `evaluate`, in nats per example: `loss`, `elbo`,
    `reconstruction` (E_q log p(x|z_1)), `kl` (the sum over layers) and
    `kl_1` ... `kl_L`. A layer whose `kl_l` stays near 0 has collapsed: its
    posterior equals its prior and it carries no information.

    References: Burda, Grosse & Salakhutdinov (2015), Importance Weighted
    Autoencoders; Sønderby et al. (2016), Ladder Variational Autoencoders.

    Args:
        input_shape: shape of one example, without the batch axis.
        latent_dims: dimensions of z_1 ... z_L, z_1 first (next to x), e.g.
            `(100, 50)`.
        hidden_units: one tuple of hidden widths per stochastic layer, e.g.
            `((200, 200), (100, 100))`; `()` for a layer makes its maps affine.
        activation: activation of the hidden layers.
        likelihood: `"bernoulli"`, `"gaussian"` or a
            `tfvae.heads.DistributionHead`, for p(x|z_1).
        beta: weight of the KL terms in the training loss, >= 0.
        num_samples: Monte Carlo samples of the chain per example, >= 1.
        free_bits: nats of KL per latent layer that are free in the training
            loss (each layer's batch-mean KL counts as at least this); never
            applied to the reported `elbo`.
        objective: `"elbo"` (default) or `"iwae"`, the importance-weighted
            bound with K = `num_samples` over whole chains; see `tfvae.VAE`.
        seed: seed of the model's noise (an int or None).
        **kwargs: base `keras.Model` arguments, such as `name`.

    Example:

    ```python
    model = tfvae.HierarchicalVAE(
        input_shape=(784,), latent_dims=(100, 50),
        hidden_units=((200, 200), (100, 100)), activation="tanh",
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x_train, epochs=10, batch_size=100,
              callbacks=[tfvae.callbacks.KLWarmup(epochs=5)])
    ```
    """

    _per_layer_metrics = True

    def __init__(
        self,
        input_shape,
        latent_dims=(100, 50),
        hidden_units=((200, 200), (100, 100)),
        activation="relu",
        likelihood="bernoulli",
        beta=1.0,
        num_samples=1,
        free_bits=0.0,
        objective="elbo",
        seed=None,
        **kwargs,
    ):
        super().__init__(
            input_shape, beta, num_samples, free_bits, objective, seed, **kwargs
        )
        self.latent_dims = _checks.shape_tuple(latent_dims, "latent_dims")
        self.hidden_units = _hidden_units_per_layer(hidden_units, self.latent_dims)
        keras.activations.get(activation)
        self.activation = activation
        num_layers = len(self.latent_dims)
        # Attributes in data-flow order: the inference chain, then the
        # generative chain from the top down to x.
        self.inference_networks = [
            mlp(units, activation, flatten=(i == 0), name=f"inference_{i + 1}")
            for i, units in enumerate(self.hidden_units)
        ]
        self.posteriors = [
            heads.DiagonalGaussianHead(event_shape=(dim,), name=f"posterior_{i + 1}")
            for i, dim in enumerate(self.latent_dims)
        ]
        # generative_networks[i] maps z_{i+1} to the features of z_i (x for i=0).
        self.generative_networks = [
            mlp(units[::-1], activation, name=f"generative_{i + 1}")
            for i, units in enumerate(self.hidden_units)
        ]
        # conditionals[i] is the head of p(z_{i+1} | z_{i+2}).
        self.conditionals = [
            heads.DiagonalGaussianHead(event_shape=(dim,), name=f"prior_{i + 1}")
            for i, dim in enumerate(self.latent_dims[:-1])
        ]
        self.likelihood = self._likelihood_head(likelihood)
        self._make_trackers(num_layers)
        self.build((None, *self.input_shape))

    def _build_networks(self):
        self._chain(ops.zeros((1, *self.input_shape)), self._noise(1, 1, seed=0))

    @property
    def num_layers(self):
        return len(self.latent_dims)

    @property
    def _noise_dims(self):
        return self.latent_dims

    @property
    def prior(self):
        """The top prior p(z_L) = N(0, I)."""
        return standard_normal(self.latent_dims[-1])

    def _posterior(self, layer, h, training=None):
        """q(z_layer | z_{layer-1}), with z_0 = x; layers count from 1."""
        features = self.inference_networks[layer - 1](h, training=training)
        return self.posteriors[layer - 1](features)

    def _conditional(self, layer, z_above, training=None):
        """p(z_layer | z_{layer+1}) for layer < L; layers count from 1."""
        features = self.generative_networks[layer](z_above, training=training)
        return self.conditionals[layer - 1](features)

    def _latent_layers(self, x, noise):
        posteriors, z = self._posterior_chain(x, noise)
        priors = [self._conditional(i, z[i]) for i in range(1, self.num_layers)]
        return list(zip(posteriors, priors + [self.prior], z, strict=True))

    def _first_posterior(self, x, training=None):
        return self._posterior(1, x, training)

    def decode(self, z_1, training=None):
        """Returns p(x|z_1), a `tfd.Distribution` with the data's event shape."""
        features = self.generative_networks[0](z_1, training=training)
        return self.likelihood(features)

    def encode(self, x, seed=None, sample=True, training=None):
        """The posteriors q(z_1|x), q(z_2|z_1), ... along one ancestral sample.

        Args:
            x: a batch of examples.
            seed: seed of the sampled z_1 ... z_{L-1} that condition the upper
                layers; the model's seed generator when `None`.
            sample: `False` conditions each layer on the posterior mean of the
                layer below instead of a sample (deterministic).

        Returns:
            A list of L `tfd.Distribution`s, each of batch shape (batch,).
        """
        x = self._checked(x)
        if not sample:
            posteriors, h = [], x
            for layer in range(1, self.num_layers + 1):
                posteriors.append(self._posterior(layer, h, training))
                h = posteriors[-1].mean()
            return posteriors
        noise = self._noise(1, ops.shape(x)[0], self._seed(seed))
        posteriors, _ = self._posterior_chain(x, noise, training)
        return posteriors

    def _posterior_chain(self, x, noise, training=None):
        """Ancestral reparameterized sampling of z_1..z_L ~ q; z's are (S*B, dim)."""
        posteriors, samples = [], []
        h = x
        layers = enumerate(zip(self.latent_dims, noise, strict=True), start=1)
        for layer, (dim, eps) in layers:
            q = self._posterior(layer, h, training)
            if layer > 1:  # q has batch (S*B,); noise is (S, B, dim).
                eps = ops.reshape(eps, (-1, dim))
            h = ops.reshape(reparameterize(q, eps), (-1, dim))
            posteriors.append(q)
            samples.append(h)
        return posteriors, samples

    def _chain(self, x, noise, training=None):
        num_samples = noise[0].shape[0]

        def per_sample(values):
            return ops.reshape(values, (num_samples, -1))

        posteriors, z = self._posterior_chain(x, noise, training)
        # q(z_1|x) has batch (B,): score z_1 as (S, B, dim); the others (S*B,).
        z_1 = ops.reshape(z[0], (num_samples, -1, self.latent_dims[0]))
        log_q = [per_sample(posteriors[0].log_prob(z_1))] + [
            per_sample(q.log_prob(z_l))
            for q, z_l in zip(posteriors[1:], z[1:], strict=True)
        ]
        log_p = [
            per_sample(
                self._conditional(layer, z[layer], training).log_prob(z[layer - 1])
            )
            for layer in range(1, self.num_layers)
        ]
        log_p.append(per_sample(self.prior.log_prob(z[-1])))
        features = self.generative_networks[0](z[0], training=training)
        log_px = self.likelihood.log_likelihood(features, x, num_samples)
        log_px = per_sample(log_px)
        kl_top = heads.tfd.kl_divergence(posteriors[-1], self.prior)
        if self.num_layers > 1:
            kl_top = per_sample(kl_top)
        return Chain(log_px=log_px, log_q=log_q, log_p=log_p, kl_top=kl_top)

    def _generate(self, noise):
        z = noise[-1]
        for layer in range(self.num_layers - 1, 0, -1):
            z = reparameterize(self._conditional(layer, z), noise[layer - 1])
        return self.decode(z).mean()

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dims": self.latent_dims,
            "hidden_units": self.hidden_units,
            "activation": keras.activations.serialize(
                keras.activations.get(self.activation)
            ),
        }
