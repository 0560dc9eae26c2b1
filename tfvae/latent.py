"""The latent-variable model protocol and the objectives built on it.

`LatentVariableModel` is the one seam between a kind of model (`tfvae.VAE`,
`tfvae.HierarchicalVAE`, or yours) and everything that consumes it: the
training glue, the estimator, the diagnostics, the export, the callbacks and
the zoo. A model kind implements `latent_dims`, `build_networks`, `chain`,
`latent_layers`, `encode`, `decode`, `generate` and optionally `prepare`;
this class turns them into the ELBO, the IWAE bound, beta and free bits
(`objective_terms`), `elbo`, `log_weights`, `log_likelihood`, `sample`,
`reconstruct` and the presets. Consumers call only these public names.
`docs/architecture.md` describes the protocol and how to add a model, a
prior and a head.
"""

import collections
import math

import keras
from keras import ops

from tfvae import _checks, estimators, heads, priors
from tfvae import noise as noise_lib
from tfvae import training as training_lib

__all__ = ["LatentVariableModel", "Chain", "LatentLayer", "Prepared"]

# One reparameterized pass through the latent chain, for `num_samples` draws of
# each example. Shapes: (S, B) for per-sample terms.
#   log_px: log p(x | z_1) at each draw.
#   log_q:  per layer l = 1..L, log q(z_l | .) at each draw.
#   log_p:  per layer, log p(z_l | z_{l+1}) (the prior for l = L).
#   kl_top: KL(q(z_L | .) || p(z_L)) in closed form, (S, B) or (B,); None
#           where the model estimates it by the sampled ratio.
Chain = collections.namedtuple("Chain", ["log_px", "log_q", "log_p", "kl_top"])
# One layer of a pass with one draw per example (batch B): the posterior q
# and prior p of z_l (tfd distributions of batch (B,)), the draw z (B, dim),
# and the KL of each dimension (B, dim): the closed form where there is one,
# else the sampled log q - log p of each dimension.
LatentLayer = collections.namedtuple("LatentLayer", ["q", "p", "z", "kl"])
# What `log_weights` computes from x alone, once for many blocks of samples:
# the likelihood head's `prepare(x)`, q(z|x) where it depends on x only, and
# the prior's `prepare()`.
Prepared = collections.namedtuple("Prepared", ["likelihood", "posterior", "prior"])
# Nothing prepared: the chain computes each part itself.
NOTHING_PREPARED = Prepared(likelihood=None, posterior=None, prior=None)

_OBJECTIVES = ("elbo", "iwae")


class LatentVariableModel(training_lib.Trainer):
    """Base class of the latent-variable models; see the module docstring.

    Subclasses call `super().__init__` with the shared hyperparameters, create
    their networks, set `self.likelihood = self.likelihood_head(likelihood)`
    and `self.prior = self.top_prior(prior, dim)` (attributes are in
    data-flow order, which `summary()` follows), then call
    `self.make_trackers()` and `self.build(...)`.

    Args:
        input_shape: shape of one example, without the batch axis.
        beta: weight of the KL term in the training loss, >= 0.
        num_samples: Monte Carlo samples per example in a step, >= 1.
        free_bits: nats of KL per latent layer that are free in the loss.
        objective: `"elbo"` or `"iwae"`.
        seed: seed of the model's noise (an int or None).
        **kwargs: base `keras.Model` arguments, such as `name`.
    """

    # Whether per-layer `kl_l` metrics are reported.
    per_layer_metrics = False
    # The number of classes a class-conditional model takes labels of
    # (`tfvae.conditional.ClassConditional`); 0: none.
    num_classes = 0

    def __init__(
        self, input_shape, beta, num_samples, free_bits, objective, seed, **kwargs
    ):
        super().__init__(seed=seed, **kwargs)
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
        # The weight of the KL term in the training loss: beta, unless a
        # callback such as `tfvae.callbacks.KLWarmup` changes it. A variable,
        # so that changing it needs no retracing and it is saved with the model.
        self.kl_weight = keras.Variable(
            self.beta, trainable=False, name="kl_weight", dtype="float32"
        )

    # --- the protocol a model kind implements ---------------------------------

    # `latent_dims`, an attribute or property of the model kind: the sizes of
    # z_1 ... z_L, z_1 first, a tuple of ints.

    @property
    def num_layers(self):
        """L, the number of stochastic layers."""
        return len(self.latent_dims)

    def build_networks(self):
        """Creates every weight, by one pass of a zero example."""
        raise NotImplementedError

    def chain(self, x, noise, training=None, prepared=NOTHING_PREPARED):
        """One reparameterized pass for S draws of each example: a `Chain`.

        Args:
            x: a (B, *input_shape) float32 batch.
            noise: the list `tfvae.noise.split` makes of (S, B, sum of
                latent_dims) standard-normal noise.
            training: the Keras training flag.
            prepared: `self.prepare(x)`, or `NOTHING_PREPARED`.
        """
        raise NotImplementedError

    def latent_layers(self, x, noise):
        """One draw per example: a list of `LatentLayer`s, z_1 first.

        `noise` is the split of (1, B, sum of latent_dims) noise.
        """
        raise NotImplementedError

    def encode(self, x, sample=True, seed=None, training=None):
        """The posteriors of z_1 ... z_L: a list of `tfd.Distribution`s.

        Each has batch shape (batch,). Where a layer's posterior depends on a
        sampled layer, it is conditioned on a draw (seeded by `seed`), or on
        the posterior mean of that layer with `sample=False`.
        """
        raise NotImplementedError

    def decode(self, z, training=None):
        """p(x | z), a `tfd.Distribution` with the data's event shape.

        z, of shape (batch, `decode_dim`), is what the decoder sees:
        `decoder_latent` of the per-layer draws (z_1 unless the model says
        otherwise).
        """
        raise NotImplementedError

    @property
    def decode_dim(self):
        """The size of `decode`'s z: dim z_1, unless `decoder_latent` says more."""
        return self.latent_dims[0]

    def decoder_latent(self, z):
        """The z `decode` takes, from the list of per-layer values z_1 ... z_L.

        z_1 by default; a model whose decoder sees more layers (such as
        `tfvae.HierarchicalVAE(skip=True)`) overrides this and `decode_dim`.
        """
        return z[0]

    def generate(self, noise):
        """Decoder means of prior draws driven by per-layer noise (batch, dim)."""
        raise NotImplementedError

    # Whether `top_posterior` is available: q(z_L | x) is a function of x
    # alone, as a mixture-of-posteriors prior (the VampPrior) needs.
    has_top_posterior = False

    def top_posterior(self, x, training=None):
        """q(z_L | x), the top layer's posterior as a function of x alone.

        A diagonal-Gaussian `tfd.Distribution` of batch shape (batch,), where
        `has_top_posterior` is True; `tfvae.priors.VampPrior` computes its
        components with it.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no q(z_L | x) that depends on x alone"
        )

    def condition_signature(self):
        """Named `tf.TensorSpec`s of what generation is conditioned on.

        None by default. A model conditioned on a label, say, lists it here
        (and in `input_signature`), and takes it as `decode(z,
        conditions=...)` and `generate(noise, conditions=...)`: the
        SavedModel's `decode` and `sample` signatures then take it too.
        """
        return []

    def prepare(self, x):
        """A `Prepared`: the work of `log_weights` that depends on x only."""
        x = self.split_inputs(x)[0]
        likelihood = self.likelihood.prepare(x) if self.likelihood.built else None
        return NOTHING_PREPARED._replace(
            likelihood=likelihood, prior=self.prior.prepare()
        )

    def top_layer(self, q, z):
        """The `LatentLayer` of the top layer: posterior q, draw z, the prior.

        Its KL per dimension is the prior's closed form, or else the sampled
        log-ratio log q(z_j) - log p(z) / D of each dimension j: a prior that
        does not factorize has no KL of its own per dimension, so its log
        density is split evenly, and the layer's sum is the sampled KL.
        """
        kl = self.prior.kl_per_dimension(q)
        if kl is None:
            log_p = self.prior.log_prob(z)[:, None] / z.shape[-1]
            kl = q.distribution.log_prob(z) - log_p
        return LatentLayer(q, self.prior.distribution(), z, kl)

    # --- parts ----------------------------------------------------------------

    def likelihood_head(self, likelihood, projection=None):
        """The head of p(x|z_1) for a name, config or head, with the data's shape.

        Args:
            likelihood: a name, a config or a `tfvae.heads.DistributionHead`.
            projection: None, or the projection the decoder's features need
                (`"pixel"` for the feature maps of a convolutional decoder):
                a head made from a name gets it, and a head or a config with
                another one is refused.
        """
        head = heads.get(likelihood, projection=projection or "dense")
        if projection is not None and head.projection != projection:
            raise ValueError(
                f"The likelihood head must have projection={projection!r}: the "
                "decoder returns feature maps of the data's spatial shape "
                "(architecture='conv'), which the head maps location by "
                "location. Pass a name such as 'bernoulli', which gets it, or a "
                f"head made with projection={projection!r}, e.g. "
                "tfvae.heads.GaussianHead(scale='shared', projection='pixel'). "
                f"Received: likelihood={type(head).__name__} with "
                f"projection={head.projection!r}"
            )
        head.set_event_shape(self.input_shape)
        return head

    def top_prior(self, prior, latent_dim):
        """The prior of the top layer for a name, config or prior, sized."""
        prior = priors.get(prior)
        prior.set_latent_dim(latent_dim)
        prior.bind(self)
        if not prior.built:  # a learned prior's weights exist from the start
            prior.build((None, latent_dim))
        return prior

    def build(self, input_shape=None):
        if input_shape is not None:
            _checks.check_spec(
                keras.KerasTensor(input_shape), self.input_shape, "input_shape"
            )
        self.build_networks()

    def metric_names(self):
        """The names of the metrics of `fit` and `evaluate`."""
        names = ["loss", "elbo", "reconstruction", "kl"]
        if self.objective == "iwae":
            names.insert(1, "iwae")
        if self.per_layer_metrics:
            names += [f"kl_{layer}" for layer in range(1, self.num_layers + 1)]
        return names

    # --- what the model computes ----------------------------------------------

    def call(self, inputs, training=None):
        """The reconstruction: the mean of p(x|z) at the posterior means of z."""
        x, conditions = self.split_inputs(inputs)
        _checks.check_spec(x, self.input_shape)
        posteriors = self.encode(inputs, sample=False, training=training)
        z = self.decoder_latent([q.mean() for q in posteriors])
        return self.likelihood.picture(self.decode_given(z, conditions, training))

    def split_inputs(self, inputs):
        """(x, conditions): the data of the model's inputs, and the rest.

        x is what the likelihood scores; `conditions` is a tuple of what the
        model is also conditioned on, in the order of `condition_signature()`
        (empty by default; a class-conditional model's labels).
        """
        return inputs, ()

    def check_conditions(self, conditions):
        """Checks tensors of `condition_signature()`; returns them as a tuple.

        Nothing to check by default; a class-conditional model refuses
        labels out of range (an in-graph assertion).
        """
        return tuple(conditions)

    def decode_given(self, z, conditions, training=None):
        """`decode(z)`, with `conditions=` where there are any."""
        if not conditions:
            return self.decode(z, training=training)
        return self.decode(z, training=training, conditions=tuple(conditions))

    def generate_given(self, noise, conditions):
        """`generate(noise)`, with `conditions=` where there are any."""
        if not conditions:
            return self.generate(noise)
        return self.generate(noise, conditions=tuple(conditions))

    def reconstruct(self, x, sample=False, seed=None):
        """Decoder means of x's encodings.

        Args:
            x: a batch of examples.
            sample: `False` decodes the posterior means (the same as `call`);
                `True` decodes one draw z ~ q(z|x) per example of what the
                decoder sees (z_1, or every layer's draw given the means of
                the others under `skip=True`).
            seed: seed of the draw when `sample=True`, noise of shape
                (batch, `decode_dim`); the model's seed generator when `None`.
        """
        inputs = self.check_inputs(x)
        conditions = self.split_inputs(inputs)[1]
        posteriors = self.encode(inputs, sample=False)
        z = self.decoder_latent([q.mean() for q in posteriors])
        if not sample:
            return self.likelihood.picture(self.decode_given(z, conditions))
        scale = self.decoder_latent([q.stddev() for q in posteriors])
        noise = keras.random.normal(ops.shape(z), seed=self._seed(seed))
        return self.likelihood.picture(self.decode_given(z + scale * noise, conditions))

    def sample(self, num_samples, seed=None, conditions=()):
        """Decoder means of `num_samples` draws from the generative model.

        The noise is `keras.random.normal((num_samples, sum(latent dims)),
        seed=seed)`, split among the layers, z_1 first: the same integer seed
        gives the same samples; with `None`, the model's seed generator.
        `conditions` are what a conditional model's draws are conditioned on
        (tensors of `condition_signature()`, one row per sample); tfvae's
        class-conditional models take `labels=` instead.
        """
        num_samples = _checks.positive_int(num_samples, "num_samples")
        return self.generate_given(
            noise_lib.standard_normal(
                (num_samples,), self.generation_dims, self._seed(seed)
            ),
            conditions,
        )

    @property
    def generation_dims(self):
        """The noise sizes `generate` takes, z_1 first (the top one the prior's)."""
        return (*self.latent_dims[:-1], self.prior.noise_dim)

    def _seed(self, seed):
        return self.seed_generator if seed is None else seed

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
        reconstruction, kls = self.elbo_terms(
            self.check_inputs(x), num_samples, self._seed(seed)
        )
        return reconstruction - sum(kls)

    def elbo_terms(self, x, num_samples, seed, training=None):
        """Per-example reconstruction and per-layer KLs, each of shape (batch,)."""
        noise = noise_lib.standard_normal(
            (num_samples, training_lib.batch_size(x)), self.latent_dims, seed
        )
        return self._terms(self.chain(x, noise, training=training))

    @staticmethod
    def chain_log_weights(chain, kl_weight=1.0):
        """log w = log p(x|z_1) + kl_weight * (log p(z) - log q(z|x)), (S, B)."""
        pairs = zip(chain.log_p, chain.log_q, strict=True)
        latent = sum(log_p - log_q for log_p, log_q in pairs)
        return chain.log_px + kl_weight * latent

    def log_weights(self, x, noise, training=None, prepared=None):
        """Importance log-weights log p(x, z) - log q(z|x) of each draw, (S, B).

        `prepared` is `self.prepare(x)`, or None.
        """
        if prepared is None:
            prepared = NOTHING_PREPARED
        chain = self.chain(x, noise, training=training, prepared=prepared)
        return self.chain_log_weights(chain)

    def floats_per_sample(self):
        """Rough float32 count of the activations of one (example, sample) pair.

        The estimator sizes its blocks of samples from it.
        """
        weights = self.trainable_weights
        widths = sum(w.shape[-1] for w in weights if len(w.shape) == 2)
        # The output of a 2D convolution (or its transpose), at most the
        # larger of its kernel's two channel counts at the data's resolution.
        channels = sum(max(w.shape[-2:]) for w in weights if len(w.shape) == 4)
        return (
            4 * math.prod(self.input_shape)
            + 3 * widths
            + math.prod(self.input_shape[:-1]) * channels
            + self.prior.floats_per_sample()
        )

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
        if chain.kl_top is not None:
            top = chain.kl_top
            kls[-1] = ops.mean(top, axis=0) if len(top.shape) == 2 else top
        return ops.mean(chain.log_px, axis=0), kls

    def objective_terms(self, x, noise, sample_weight=None, training=None):
        """The training loss (a scalar) and the metric values of a batch.

        The loss is the batch mean of -ELBO with the KL weighted by
        `kl_weight` and each layer's batch-mean KL floored at `free_bits`, or
        of -IWAE with the latent log-ratio weighted by `kl_weight`. The values
        are per example: `elbo`, `reconstruction`, `kl`, `iwae` (objective
        "iwae") and `kl_1` ... `kl_L` (`per_layer_metrics`).
        """
        chain = self.chain(x, noise, training=training)
        reconstruction, kls = self._terms(chain)

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
                log_w = self.chain_log_weights(chain, kl_weight)
                return ops.logsumexp(log_w, axis=0) - log_k

            values["iwae"] = iwae(1.0)
            loss = -batch_mean(iwae(self.kl_weight))
        else:
            # Free bits (Kingma et al. 2016): each layer's batch-mean KL counts
            # at least `free_bits` nats in the loss; below that, no gradient.
            kl_loss = sum(ops.maximum(batch_mean(kl), self.free_bits) for kl in kls)
            loss = -batch_mean(reconstruction) + self.kl_weight * kl_loss
        if self.per_layer_metrics:
            values.update({f"kl_{i}": kl for i, kl in enumerate(kls, start=1)})
        return loss, values

    # --- configs and presets ------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "input_shape": self.input_shape,
            "likelihood": heads.serialize(self.likelihood),
            "prior": priors.serialize(self.prior),
            "beta": self.beta,
            "num_samples": self.num_samples,
            "free_bits": self.free_bits,
            "objective": self.objective,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        def deserialized(value):
            if isinstance(value, dict) and "class_name" in value:
                return keras.saving.deserialize_keras_object(value)
            return value

        config = dict(config)
        for name, value in config.items():
            if isinstance(value, list):  # a list of layers, such as networks
                config[name] = [deserialized(item) for item in value]
            else:
                config[name] = deserialized(value)
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, sha256=None, cache_dir=None):
        """A ready model of this class from a preset name, folder or URL.

        As `tfvae.zoo.load`, and a preset of another model class is refused
        with a `tfvae.zoo.PresetError` before anything is deserialized.

        Args:
            preset: a name from `tfvae.zoo.list()`, a preset folder, or an
                `http(s)://` or `file://` URL of one.
            sha256: the expected sha256 of the weights; required for a URL.
            cache_dir: where URL presets are kept.

        Example:

        ```python
        model = tfvae.VAE.from_preset("vae_bernoulli_bmnist")
        ```
        """
        from tfvae import zoo

        return zoo.load(preset, sha256=sha256, cache_dir=cache_dir, model_class=cls)

    def save_to_preset(self, preset_dir, metadata=None, overwrite=False, **kwargs):
        """Writes this model as a preset folder; see `tfvae.zoo.save_preset`.

        Example:

        ```python
        model.save_to_preset("my_vae", metadata={"description": "..."})
        tfvae.VAE.from_preset("my_vae")
        ```
        """
        from tfvae import zoo

        return zoo.save_preset(
            self, preset_dir, metadata=metadata, overwrite=overwrite, **kwargs
        )
