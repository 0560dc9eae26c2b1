"""The Markov-chain hierarchical VAE: z_L -> ... -> z_1 -> x."""

import keras
from keras import ops

from tfvae import _checks, heads
from tfvae import noise as noise_lib
from tfvae.conditional import ClassConditional
from tfvae.distributions import precision_weighted, reparameterize
from tfvae.latent import NOTHING_PREPARED, Chain, LatentLayer
from tfvae.networks import check_architecture, conv_decoder, conv_encoder, mlp

_INFERENCES = ("bottom_up", "ladder", "top_down")


def _networks_per_layer(networks, name, latent_dims):
    """A list of L custom networks (None entries for the defaults), or None."""
    if networks is None:
        return None
    if not isinstance(networks, (list, tuple)):
        kinds = type(networks).__name__
    else:
        kinds = [None if n is None else type(n).__name__ for n in networks]
        valid = all(n is None or isinstance(n, keras.layers.Layer) for n in networks)
        if len(networks) == len(latent_dims) and valid:
            return list(networks)
    raise ValueError(
        f"`{name}` must be a list of one Keras layer (or None, for the default) "
        f"per stochastic layer: {len(latent_dims)} for latent_dims={latent_dims}. "
        f"Received: {name}={kinds}"
    )


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
class HierarchicalVAE(ClassConditional):
    """A VAE with a Markov chain of L stochastic layers.

    Generative model: p(x, z_1..z_L) = p(z_L) p(z_{L-1}|z_L) ... p(z_1|z_2)
    p(x|z_1), with p(z_L) = N(0, I) (or the `prior` given) and
    diagonal-Gaussian conditionals.
    Inference model, diagonal Gaussians, one of two (`inference`):
    - `"bottom_up"` (default): q(z_1..z_L|x) = q(z_1|x) q(z_2|z_1) ...
      q(z_L|z_{L-1}), the Markov chain of Burda et al. (2015). Layer l's
      inference network maps z_{l-1} (z_0 = x) to q(z_l|z_{l-1}).
    - `"ladder"`: q(z_1..z_L|x) = q(z_L|x) q(z_{L-1}|x, z_L) ... q(z_1|x, z_2),
      the ladder VAE of Sønderby et al. (2016). A deterministic upward pass
      d_l = f_l(d_{l-1}) (d_0 = x) gives each layer a Gaussian estimate
      N(m_l, s_l^2) from x; the top posterior is that estimate, and below it
      q(z_l|x, z_{l+1}) is its precision-weighted product with the generative
      conditional p(z_l|z_{l+1}) = N(mu_l, sigma_l^2):
      sigma_q^-2 = s_l^-2 + sigma_l^-2, mu_q = sigma_q^2 (m_l s_l^-2 +
      mu_l sigma_l^-2). Sampling runs top-down, so the upper layers take part
      in inference, and the model has no more weights than `"bottom_up"`.
    - `"top_down"`: the same factorization and upward pass as `"ladder"`,
      but q(z_l|x, z_{l+1}) for l < L is a learned function of both, a
      diagonal Gaussian from a merge network on the concatenation [d_l,
      z_{l+1}] (one hidden layer of layer l's last width), as in the
      two-layer HVAE of Tomczak & Welling (2018), whose q(z_1|x, z_2) is
      an MLP of x and z_2. It costs a merge network per layer below the top.
    The generative model is the same Markov chain for all three, unless
    `skip=True` lets x depend on every layer: p(x|z_1, ..., z_L), the
    decoder's input the concatenation [z_1, ..., z_L] (Tomczak & Welling's
    p(x|z_1, z_2)). Without it an upper layer reaches x only through the
    layers below, and tends to collapse. Layer l's networks (the inference
    network f_l and the generative network of p(z_{l-1}|z_l), with z_0 = x)
    are MLPs with `hidden_units[l - 1]`, the generative one in reverse order,
    unless `architecture="conv"` makes the two that touch x (f_1 and the
    decoder of p(x|.)) gated convolutional networks, or custom networks
    (`inference_networks`, `generative_networks`) replace them.

    Mathematical details:
    ELBO(x) = E_q[log p(x|z_1) + sum_{l<L} log p(z_l|z_{l+1}) + log p(z_L)
    - sum_l log q(z_l|.)] (log p(x|z_1, ..., z_L) under `skip`), estimated
    by ancestral reparameterized sampling through the inference chain. The
    KL of layer l < L is the single-sample ratio kl_l = log q(z_l|.) -
    log p(z_l|z_{l+1}); the top layer's kl_L = KL(q(z_L|.) || N(0, I)) is the
    closed form. With L = 1 this is `tfvae.VAE` with `kl="analytic"`, for
    any inference.

    Metrics of `fit` and `evaluate`, in nats per example: `loss`, `elbo`,
    `reconstruction` (E_q log p(x|z_1)), `kl` (the sum over layers) and
    `kl_1` ... `kl_L`. A layer whose `kl_l` stays near 0 has collapsed: its
    posterior equals its prior and it carries no information.

    References: Burda, Grosse & Salakhutdinov (2015), Importance Weighted
    Autoencoders; Sønderby et al. (2016), Ladder Variational Autoencoders
    (without their batch normalization).

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
        inference: `"bottom_up"` (default), `"ladder"` or `"top_down"`, the
            inference model described above.
        skip: `True` makes the decoder p(x|z_1, ..., z_L), a function of
            every layer; `decode` then takes the concatenation [z_1, ...,
            z_L] (`decode_dim` wide). `False` (default): p(x|z_1).
        gated: `True` makes every hidden layer a `tfvae.layers.GatedDense`,
            activation(W x + b) * sigmoid(V x + c) (the convolutions of
            `architecture="conv"` are always gated).
        prior: p(z_L): `"standard_normal"` (the default) or a
            `tfvae.priors.Prior`. A prior without a closed-form KL makes the
            top layer's KL the sampled ratio, as for the layers below.
        architecture: `"mlp"` (default) or `"conv"`: the networks that touch
            x, `inference_networks[0]` (x to d_1) and
            `generative_networks[0]` (z_1, or [z_1, ..., z_L] under `skip`,
            to x's features), are `tfvae.networks.conv_encoder` and
            `tfvae.networks.conv_decoder`, with `hidden_units[0]` the widths
            of dense layers between the convolutions and z_1 (`()` for
            none), and the likelihood head gets `projection="pixel"` (a head
            given with another projection is refused). The networks between
            latent layers stay MLPs. `input_shape` must be (H, W, C) with H
            and W divisible by 4.
        inference_networks: optional list of L Keras layers (None entries
            keep the default of that layer): `inference_networks[i]` maps
            the input of layer i + 1, x for i = 0, z_i under bottom-up
            inference and the upward feature d_i under ladder and top-down
            inference, to features that the posterior head projects.
        generative_networks: optional list of L Keras layers (None entries
            keep the default): `generative_networks[i]` maps z_{i+1} to the
            features of p(z_i | z_{i+1}), and, for i = 0, z_1 (the
            concatenation [z_1, ..., z_L] under `skip`) to the features of
            p(x | .) that the likelihood head projects.
        num_classes: 0 (default) or K >= 2 for a class-conditional model
            (`tfvae.conditional`): inputs `(x, labels)`, and a one-hot label
            beside x at the input of `inference_networks[0]` (q(z_1|x, y),
            or the upward pass) and beside the decoder's z in p(x|z_1, y)
            (p(x|z_1, ..., z_L, y) under `skip`). The chain p(z_L) ...
            p(z_1|z_2) is unconditional.
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

    Convolutional networks next to x, and a custom decoder of p(x|z_1, z_2):

    ```python
    model = tfvae.HierarchicalVAE(
        input_shape=(28, 28, 1), latent_dims=(32, 16),
        hidden_units=((), (100,)), architecture="conv",
        inference="top_down", skip=True,
        generative_networks=[
            tfvae.networks.conv_decoder((28, 28, 1), filters=(16, 32)), None,
        ],
    )
    ```
    """

    per_layer_metrics = True

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
        inference="bottom_up",
        gated=False,
        prior="standard_normal",
        skip=False,
        architecture="mlp",
        inference_networks=None,
        generative_networks=None,
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
        self.inference = _checks.one_of(inference, "inference", _INFERENCES)
        self.gated = _checks.boolean(gated, "gated")
        self.skip = _checks.boolean(skip, "skip")
        self.latent_dims = _checks.shape_tuple(latent_dims, "latent_dims")
        self.hidden_units = _hidden_units_per_layer(hidden_units, self.latent_dims)
        keras.activations.get(activation)
        self.activation = activation
        self._custom_networks = {
            name: _networks_per_layer(networks, name, self.latent_dims)
            for name, networks in (
                ("inference_networks", inference_networks),
                ("generative_networks", generative_networks),
            )
        }
        defaults = [None] * self.num_layers
        # Attributes in data-flow order: the inference chain, then the
        # generative chain from the top down to x.
        self.inference_networks = [
            self._default_inference_network(i) if custom is None else custom
            for i, custom in enumerate(
                self._custom_networks["inference_networks"] or defaults
            )
        ]
        if self.inference == "top_down":
            # merge_networks[i] maps [d_{i+1}, z_{i+2}] to features of z_{i+1}.
            self.merge_networks = [
                mlp(units[-1:], activation, name=f"merge_{i + 1}", gated=gated)
                for i, units in enumerate(self.hidden_units[:-1])
            ]
        self.posteriors = [
            heads.DiagonalGaussianHead(event_shape=(dim,), name=f"posterior_{i + 1}")
            for i, dim in enumerate(self.latent_dims)
        ]
        # generative_networks[i] maps z_{i+1} to the features of z_i (x for
        # i=0; from [z_1, ..., z_L] under `skip`).
        self.generative_networks = [
            self._default_generative_network(i) if custom is None else custom
            for i, custom in enumerate(
                self._custom_networks["generative_networks"] or defaults
            )
        ]
        # conditionals[i] is the head of p(z_{i+1} | z_{i+2}).
        self.conditionals = [
            heads.DiagonalGaussianHead(event_shape=(dim,), name=f"prior_{i + 1}")
            for i, dim in enumerate(self.latent_dims[:-1])
        ]
        self.prior = self.top_prior(prior, self.latent_dims[-1])
        self.likelihood = self.likelihood_head(
            likelihood, projection="pixel" if architecture == "conv" else None
        )
        self.make_trackers()
        self.build((None, *self.input_shape))

    def _default_inference_network(self, i):
        """The built-in network of `inference_networks[i]`."""
        units, name = self.hidden_units[i], f"inference_{i + 1}"
        if i == 0 and self.architecture == "conv":
            return conv_encoder(
                self.input_shape,
                hidden_units=units,
                activation=self.activation,
                gated=self.gated,
                name=name,
            )
        return mlp(
            units, self.activation, flatten=(i == 0), name=name, gated=self.gated
        )

    def _default_generative_network(self, i):
        """The built-in network of `generative_networks[i]`."""
        units, name = self.hidden_units[i][::-1], f"generative_{i + 1}"
        if i == 0 and self.architecture == "conv":
            return conv_decoder(
                self.input_shape,
                hidden_units=units,
                activation=self.activation,
                gated=self.gated,
                name=name,
            )
        return mlp(units, self.activation, name=name, gated=self.gated)

    def build_networks(self):
        noise = noise_lib.standard_normal((1, 1), self.latent_dims, seed=0)
        self.chain(self.zero_inputs(), noise)

    def _first_input(self, inputs):
        """What the first inference network sees: x (and a label beside it)."""
        x, conditions = self.split_inputs(inputs)
        return self.network_input(ops.convert_to_tensor(x, "float32"), conditions)

    def _posterior(self, layer, h, training=None):
        """q(z_layer | z_{layer-1}), with z_0 = x; layers count from 1.

        Under `"ladder"` inference, h is the upward feature d_{layer-1} and
        this is the layer's Gaussian estimate from x alone.
        """
        features = self.inference_networks[layer - 1](h, training=training)
        return self.posteriors[layer - 1](features)

    def _conditional(self, layer, z_above, training=None):
        """p(z_layer | z_{layer+1}) for layer < L; layers count from 1."""
        features = self.generative_networks[layer](z_above, training=training)
        return self.conditionals[layer - 1](features)

    @property
    def has_top_posterior(self):
        # Under bottom-up inference, q(z_L|x) for L > 1 integrates over the
        # layers below: it is not a Gaussian function of x.
        return self.inference != "bottom_up" or self.num_layers == 1

    def top_posterior(self, x, training=None):
        """q(z_L | x): the top of the upward pass (ladder or top-down, or L = 1)."""
        if not self.has_top_posterior:
            return super().top_posterior(x, training)
        h = self._first_input(x)
        for layer in range(1, self.num_layers + 1):
            h = self.inference_networks[layer - 1](h, training=training)
        return self.posteriors[-1](h)

    @property
    def _per_example_layer(self):
        """Index of the layer sampled first, whose posterior has batch (B,)."""
        return 0 if self.inference == "bottom_up" else self.num_layers - 1

    def latent_layers(self, x, noise):
        posteriors, z, conditionals = self._posterior_chain(self._first_input(x), noise)
        layers = []
        for q, p, z_l in zip(posteriors[:-1], conditionals, z[:-1], strict=True):
            kl = q.distribution.log_prob(z_l) - p.distribution.log_prob(z_l)
            layers.append(LatentLayer(q, p, z_l, kl))
        layers.append(self.top_layer(posteriors[-1], z[-1]))
        return layers

    def decode(self, z, training=None, conditions=()):
        """p(x|z), a `tfd.Distribution` with the data's event shape.

        z is z_1, or under `skip=True` the concatenation [z_1, ..., z_L]
        (`decoder_latent` of the per-layer values), `decode_dim` wide. A
        class-conditional model takes `conditions=(labels,)`: p(x|z, y).
        """
        z = self.decoder_input(z, conditions)
        features = self.generative_networks[0](z, training=training)
        return self.likelihood(features)

    @property
    def decode_dim(self):
        return sum(self.latent_dims) if self.skip else self.latent_dims[0]

    def decoder_latent(self, z):
        return ops.concatenate(z, axis=-1) if self.skip else z[0]

    def encode(self, x, sample=True, seed=None, training=None):
        """The posteriors of z_1 ... z_L along one ancestral sample.

        q(z_1|x), q(z_2|z_1), ... under `"bottom_up"` inference; q(z_1|x, z_2),
        ..., q(z_L|x) under `"ladder"` and `"top_down"`, where the sample runs
        top-down.

        Args:
            x: a batch of examples.
            seed: seed of the sampled layers that condition the others; the
                model's seed generator when `None`.
            sample: `False` conditions each layer on the posterior mean of the
                layer it depends on instead of a sample (deterministic).

        Returns:
            A list of L `tfd.Distribution`s, z_1 first, each of batch shape
            (batch,).
        """
        h = self._first_input(x)
        if not sample:
            return self._mean_chain(h, training)
        noise = noise_lib.standard_normal(
            (1, ops.shape(h)[0]), self.latent_dims, self._seed(seed)
        )
        posteriors, _, _ = self._posterior_chain(
            h, noise, training, with_conditionals=False
        )
        return posteriors

    def _mean_chain(self, h, training=None):
        """The posteriors along the chain of posterior means, z_1 first.

        h is what the first inference network sees (`_first_input`).
        """
        if self.inference != "bottom_up":
            zeros = [ops.zeros((1, ops.shape(h)[0], dim)) for dim in self.latent_dims]
            return self._posterior_chain(h, zeros, training)[0]
        posteriors = []
        for layer in range(1, self.num_layers + 1):
            posteriors.append(self._posterior(layer, h, training))
            h = posteriors[-1].mean()
        return posteriors

    def _posterior_chain(self, h, noise, training=None, with_conditionals=True):
        """Ancestral reparameterized sampling of z_1..z_L ~ q.

        h is what the first inference network sees (`_first_input`).

        Returns (posteriors, samples, conditionals), z_1 first: the z's are
        (S*B, dim), and conditionals[l - 1] is p(z_l|z_{l+1}) at the sampled
        z_{l+1}, for l < L. The layer sampled first (`_per_example_layer`) has
        a posterior of batch (B,); the others have batch (S*B,). Bottom-up
        inference needs no conditionals: with `with_conditionals=False` they
        are left out (None); ladder and top-down inference compute them anyway.
        """
        if self.inference != "bottom_up":
            return self._ladder_chain(h, noise, training)
        posteriors, samples = [], []
        layers = enumerate(zip(self.latent_dims, noise, strict=True), start=1)
        for layer, (dim, eps) in layers:
            q = self._posterior(layer, h, training)
            if layer > 1:  # q has batch (S*B,); noise is (S, B, dim).
                eps = ops.reshape(eps, (-1, dim))
            h = ops.reshape(reparameterize(q, eps), (-1, dim))
            posteriors.append(q)
            samples.append(h)
        conditionals = None
        if with_conditionals:
            conditionals = [
                self._conditional(layer, samples[layer], training)
                for layer in range(1, self.num_layers)
            ]
        return posteriors, samples, conditionals

    def _ladder_chain(self, h, noise, training=None):
        """`_posterior_chain` under ladder or top-down inference: up, then down."""
        upward = []
        for layer in range(1, self.num_layers + 1):
            h = self.inference_networks[layer - 1](h, training=training)
            upward.append(h)
        q = self.posteriors[-1](h)
        z = ops.reshape(reparameterize(q, noise[-1]), (-1, self.latent_dims[-1]))
        posteriors, samples, conditionals = [q], [z], []
        num_samples = ops.shape(noise[0])[0]
        for layer in range(self.num_layers - 1, 0, -1):
            p = self._conditional(layer, z, training)
            d = upward[layer - 1]
            if self.inference == "top_down":  # d is (B, .); z is (S*B, .)
                merged = ops.concatenate([ops.tile(d, (num_samples, 1)), z], axis=-1)
                features = self.merge_networks[layer - 1](merged, training=training)
                q = self.posteriors[layer - 1](features)
            else:
                q = precision_weighted(self.posteriors[layer - 1](d), p)
            z = reparameterize(
                q, ops.reshape(noise[layer - 1], ops.shape(p.distribution.loc))
            )
            posteriors.insert(0, q)
            samples.insert(0, z)
            conditionals.insert(0, p)
        return posteriors, samples, conditionals

    def chain(self, inputs, noise, training=None, prepared=NOTHING_PREPARED):
        num_samples = noise[0].shape[0]
        x, conditions = self.split_inputs(inputs)

        def per_sample(values):
            return ops.reshape(values, (num_samples, -1))

        posteriors, z, conditionals = self._posterior_chain(
            self._first_input(inputs), noise, training
        )
        first = self._per_example_layer
        log_q = []
        for layer, (q, z_l) in enumerate(zip(posteriors, z, strict=True)):
            if layer == first:  # q has batch (B,): score z as (S, B, dim).
                z_l = ops.reshape(z_l, (num_samples, -1, self.latent_dims[layer]))
            log_q.append(per_sample(q.log_prob(z_l)))
        log_p = [
            per_sample(p.log_prob(z_l))
            for p, z_l in zip(conditionals, z[:-1], strict=True)
        ]
        log_p.append(per_sample(self.prior.log_prob(z[-1], prepared=prepared.prior)))
        features = self.generative_networks[0](
            self.decoder_input(self.decoder_latent(z), conditions, num_samples),
            training=training,
        )
        log_px = self.likelihood.log_likelihood(
            features, x, num_samples, prepared=prepared.likelihood
        )
        log_px = per_sample(log_px)
        kl_top = self.prior.kl_divergence(posteriors[-1])
        if kl_top is not None and first != self.num_layers - 1:
            kl_top = per_sample(kl_top)  # q(z_L|.) has batch (S*B,)
        return Chain(log_px=log_px, log_q=log_q, log_p=log_p, kl_top=kl_top)

    def generate(self, noise, conditions=()):
        z = [self.prior.sample_from_noise(noise[-1])]
        for layer in range(self.num_layers - 1, 0, -1):
            p = self._conditional(layer, z[0])
            z.insert(0, reparameterize(p, noise[layer - 1]))
        return self.likelihood.picture(
            self.decode(self.decoder_latent(z), conditions=conditions)
        )

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dims": self.latent_dims,
            "hidden_units": self.hidden_units,
            "activation": keras.activations.serialize(
                keras.activations.get(self.activation)
            ),
            "inference": self.inference,
            "gated": self.gated,
            "skip": self.skip,
            "architecture": self.architecture,
            **{
                name: _serialized(networks)
                for name, networks in self._custom_networks.items()
            },
        }


def _serialized(networks):
    """The config of a list of custom networks (None entries kept), or None."""
    if networks is None:
        return None
    return [
        None if layer is None else keras.saving.serialize_keras_object(layer)
        for layer in networks
    ]
