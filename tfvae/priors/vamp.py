"""The VampPrior: a mixture of the model's own posteriors at learned inputs."""

import math

import keras
from keras import ops

from tfvae import _checks
from tfvae.priors.mixture import MixturePrior

__all__ = ["VampPrior"]


@keras.saving.register_keras_serializable(package="tfvae")
class VampPrior(MixturePrior):
    """The variational mixture of posteriors prior (Tomczak & Welling 2018).

    p(z_L) = 1/K sum_k q(z_L | u_k): the mixture of the model's own top-layer
    posteriors at K learned pseudo-inputs u_k, which have the data's shape.
    The components are computed by the model's encoder
    (`model.top_posterior(u)`), so they move with it; the prior's only
    weights are the pseudo-inputs. For a hierarchy it is the prior of the
    top layer, with q(z_L | x) from the upward pass (`inference="ladder"` or
    `"top_down"`).

    Pseudo-inputs, as in the paper's code: u = clip(w, low, high), the
    hard-tanh of a learned w, so that every u_k stays in the data's range
    [`low`, `high`] (for binary data [0, 1]); w starts at
    N(`init_mean`, `init_stddev`^2) draws, seeded (0.05 and 0.01: grey
    images, inside the range). A coordinate of w that leaves the range gets
    no gradient and stays at the bound, as with the paper's hard-tanh.

    Mathematical details: log p(z) = logsumexp_k log q(z | u_k) - log K; a
    draw picks k uniformly, then z ~ q(z | u_k). There is no closed-form KL.

    Reference: Tomczak & Welling (2018), VAE with a VampPrior, AISTATS.

    Args:
        num_pseudo_inputs: K, >= 1 (the paper uses 500 on MNIST).
        data_range: `(low, high)`, the range of the data and so of the
            pseudo-inputs.
        init_mean: mean of the initial w.
        init_stddev: standard deviation of the initial w, >= 0.
        seed: seed of the initial w.
        latent_dim: the size of z (the model sets it when `None`).
        **kwargs: base layer keyword arguments, such as `name`.

    Example:

    ```python
    model = tfvae.VAE(
        input_shape=(784,), latent_dim=40, kl="mc",
        prior=tfvae.priors.VampPrior(num_pseudo_inputs=500),
    )
    u = model.prior.pseudo_inputs()  # (500, 784), in [0, 1]
    ```
    """

    def __init__(
        self,
        num_pseudo_inputs=500,
        data_range=(0.0, 1.0),
        init_mean=0.05,
        init_stddev=0.01,
        seed=0,
        latent_dim=None,
        **kwargs,
    ):
        super().__init__(num_pseudo_inputs, latent_dim=latent_dim, **kwargs)
        self.num_pseudo_inputs = self.num_components
        low, high = _data_range(data_range)
        self.data_range = (low, high)
        self.init_mean = _checks.finite_float(init_mean, "init_mean")
        self.init_stddev = _checks.non_negative_float(init_stddev, "init_stddev")
        self.seed = seed
        self.input_shape = None
        self._top_posterior = None

    def bind(self, model):
        """Keeps the model's input shape and its `top_posterior` function."""
        conditions = [spec.name for spec in model.condition_signature()]
        if conditions:
            raise ValueError(
                "A VampPrior is a mixture of q(z_L | u_k) at learned pseudo-inputs "
                "u_k, which have no labels: it cannot be the prior of a model "
                "conditioned on them. Use prior='standard_normal' or 'mog:K'. "
                f"Received: {type(model).__name__} conditioned on {conditions}"
            )
        if not model.has_top_posterior:
            raise ValueError(
                "A VampPrior needs a model whose top posterior q(z_L | x) depends "
                "on x alone: tfvae.VAE, or tfvae.HierarchicalVAE with "
                "inference='ladder' or 'top_down' (or one layer). Received: "
                f"{type(model).__name__} with inference="
                f"{getattr(model, 'inference', None)!r}"
            )
        self.input_shape = tuple(model.input_shape)
        self._top_posterior = model.top_posterior

    def build(self, input_shape=None):
        if self._top_posterior is None:
            raise ValueError(
                "A VampPrior is computed by its model's encoder: pass it as "
                "`prior=` to a tfvae model, which binds it, instead of using it "
                "alone. Received: an unbound VampPrior"
            )
        self.raw_pseudo_inputs = self.add_weight(
            shape=(self.num_pseudo_inputs, *self.input_shape),
            initializer=keras.initializers.RandomNormal(
                mean=self.init_mean, stddev=self.init_stddev, seed=self.seed
            ),
            name="raw_pseudo_inputs",
        )

    def get_build_config(self):
        # Deserialized, a VampPrior waits for its model, which binds it and
        # then builds it (`LatentVariableModel.top_prior`).
        return None

    def pseudo_inputs(self):
        """The K pseudo-inputs u_k, shape (K, *input_shape), in the data's range."""
        low, high = self.data_range
        return ops.clip(ops.cast(self.raw_pseudo_inputs, "float32"), low, high)

    def components(self):
        q = self._top_posterior(self.pseudo_inputs())
        normal = q.distribution
        log_weights = ops.full(
            (self.num_pseudo_inputs,), -math.log(self.num_pseudo_inputs)
        )
        return (
            log_weights,
            ops.cast(normal.loc, "float32"),
            ops.cast(normal.scale, "float32"),
        )

    def get_config(self):
        config = super().get_config()
        del config["num_components"]
        return {
            **config,
            "num_pseudo_inputs": self.num_pseudo_inputs,
            "data_range": self.data_range,
            "init_mean": self.init_mean,
            "init_stddev": self.init_stddev,
            "seed": self.seed,
        }


def _data_range(data_range):
    try:
        low, high = (float(value) for value in data_range)
    except (TypeError, ValueError):  # not two numbers
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(
            "`data_range` must be two finite numbers (low, high) with low < high, "
            f"e.g. (0.0, 1.0). Received: data_range={data_range!r}"
        )
    return low, high
