"""The certificate of fit: every number a model card reports, in one pass.

`certify` measures a trained model on a data set: the importance-sampled
log-likelihood and the ELBO from the same samples, with their standard
errors; the NLL in nats and bits per dimension; and, from one pass of the
diagnostics, the active units and the KL of each latent layer. `tfvae
evaluate`, `tfvae zoo publish` and `tfvae zoo verify` all report it.
"""

import math

import numpy as np
import tensorflow as tf

from tfvae import diagnostics, estimators

__all__ = ["certify"]


def certify(model, x, num_samples=5000, seed=0, levels=None, verbose=0, progress=None):
    """Measures a model's fit on `x`: a dict of floats and lists.

    Args:
        model: a `tfvae.latent.LatentVariableModel`.
        x: an array of examples, shape (n, *input_shape).
        num_samples: K, importance samples per example (papers use 5000).
        seed: the seed of the estimator's samples (the diagnostics use their
            own fixed seed, 0).
        levels: for uniformly dequantized data, the number of grey levels of
            the discrete data, so that bits/dim is theirs
            (`tfvae.bits_per_dim`); None otherwise.
        verbose: as for `model.log_likelihood`.
        progress: None, or a file that keeps the log-likelihood's partial
            results, so that an evaluation killed midway goes on from them
            when run again (`tfvae.estimators.log_likelihood`).

    Returns:
        The dict of `tfvae.evaluate_log_likelihood` (`log_likelihood`,
        `log_likelihood_stderr`, `nll`, `elbo`, `elbo_stderr`, `num_samples`,
        `num_examples`) with `bits_per_dim`, `active_units` (a count per
        layer, z_1 first) and `kl_per_layer` (nats per layer) added.

    Example:

    ```python
    result = tfvae.certify(model, x_test, num_samples=5000)
    print(f"NLL {result['nll']:.2f} nats, {result['bits_per_dim']:.4f} bits/dim")
    ```
    Raises:
        ValueError: before any work, for data a discrete likelihood gives no
            probability to (grey levels under a Bernoulli decoder: binarize
            them first), whose "log-likelihood" would not be one.
    """
    _check_discrete(model, x)
    result = estimators.evaluate_log_likelihood(
        model, x, num_samples=num_samples, seed=seed, verbose=verbose, progress=progress
    )
    result["bits_per_dim"] = float(
        estimators.bits_per_dim(result["log_likelihood"], model.input_shape, levels)
    )
    means, kls = diagnostics.latent_statistics(model, x)
    result["active_units"] = diagnostics.active_units_of(means)["active_units"]
    result["kl_per_layer"] = [float(k.sum()) for k in kls]
    return result


def stderr_or_zero(value):
    """A standard error, 0 where it is undefined (one example)."""
    return 0.0 if math.isnan(value) else value


def _check_discrete(model, x):
    values = model.likelihood.discrete_values
    if values is None:
        return
    data = np.asarray(tf.nest.flatten(model.as_arrays(x))[0])  # x, not labels
    outside = ~np.isin(data, np.asarray(values, data.dtype))
    if outside.any():
        example = data[outside].flat[0]
        raise ValueError(
            f"the {type(model.likelihood).__name__} gives a probability to the "
            f"values {list(values)} only, but the data holds others (e.g. "
            f"{float(example):.4g}): its log-likelihood and bits/dim would not be "
            "ones. Binarize the data first (--binarize dynamic, or "
            "tfvae.data.load(..., binarize='dynamic'))"
        )
