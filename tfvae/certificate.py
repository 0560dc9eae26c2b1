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

from tfvae import _checks, data, diagnostics, estimators

__all__ = ["certify"]


def certify(
    model,
    x,
    num_samples=5000,
    seed=0,
    levels=None,
    verbose=0,
    progress=None,
    binarizations=None,
):
    """Measures a model's fit on `x`: a dict of floats and lists.

    Args:
        model: a `tfvae.latent.LatentVariableModel`.
        x: an array of examples, shape (n, *input_shape); with
            `binarizations`, their grey levels in [0, 1].
        num_samples: K, importance samples per example (papers use 5000).
        seed: the seed of the estimator's samples (the diagnostics use their
            own fixed seed, 0).
        levels: for uniformly dequantized data, the number of grey levels of
            the discrete data, so that bits/dim is theirs
            (`tfvae.bits_per_dim`); None otherwise.
        verbose: as for `model.log_likelihood`.
        progress: None, or a file that keeps the log-likelihood's partial
            results, so that an evaluation killed midway goes on from them
            when run again (`tfvae.estimators.log_likelihood`). With
            `binarizations`, binarization b > 0 keeps its own in
            `{progress}.b{b}`.
        binarizations: None, or B, the test protocol of a dynamically
            binarized dataset: the grey levels `x` are binarized B times, with
            seeds 0 .. B - 1 (`tfvae.data.binarized`), and each example's
            log-likelihood and ELBO are the means of its B estimates, so
            that the standard errors over examples include the binarization's
            spread. The result adds `binarizations` and the mean
            log-likelihood of each (`log_likelihood_per_binarization`); the
            diagnostics use the first.

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
    if binarizations is None:
        draws = [x]
    else:
        count = _checks.positive_int(binarizations, "binarizations")
        # The examples are the first of the model's inputs (labels stay as
        # they are).
        arrays = model.as_arrays(x)
        grey, *rest = tf.nest.flatten(arrays)
        if np.min(grey) < 0 or np.max(grey) > 1:
            raise ValueError(
                "binarizations= draws Bernoulli pixels from grey levels in "
                f"[0, 1], but the data lie in [{np.min(grey):.4g}, {np.max(grey):.4g}]"
            )
        draws = [
            tf.nest.pack_sequence_as(arrays, [data.binarized(grey, seed=b), *rest])
            for b in range(count)
        ]
    _check_discrete(model, draws[0])  # the draws of binarizations are 0/1
    estimates = [
        estimators.log_likelihood(
            model,
            draw,
            num_samples=num_samples,
            seed=seed,
            verbose=verbose,
            return_elbo=True,
            progress=_progress_of(progress, b),
        )
        for b, draw in enumerate(draws)
    ]
    values = np.mean([values for values, _ in estimates], axis=0)
    elbos = np.mean([elbo for _, elbo in estimates], axis=0)
    result = estimators.summarize(values, elbos, num_samples)
    if binarizations is not None:
        result["binarizations"] = len(draws)
        result["log_likelihood_per_binarization"] = [
            float(values.mean()) for values, _ in estimates
        ]
    result["bits_per_dim"] = float(
        estimators.bits_per_dim(result["log_likelihood"], model.input_shape, levels)
    )
    means, kls = diagnostics.latent_statistics(model, draws[0])
    result["active_units"] = diagnostics.active_units_of(means)["active_units"]
    result["kl_per_layer"] = [float(k.sum()) for k in kls]
    return result


def _progress_of(progress, binarization):
    """The progress file of a binarization: `progress` itself for the first."""
    if progress is None or binarization == 0:
        return progress
    return f"{progress}.b{binarization}"


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
        if len(values) > 2:
            what = f"the {len(values)} levels k / {len(values) - 1}"
            fix = "Give it the grey levels as loaded, not dequantized or rescaled"
        else:
            what = f"the values {[float(v) for v in values]}"
            fix = (
                "Binarize the data first (--binarize dynamic, or "
                "tfvae.data.load(..., binarize='dynamic'))"
            )
        raise ValueError(
            f"the {type(model.likelihood).__name__} gives a probability to "
            f"{what} only, but the data holds other values (e.g. "
            f"{float(example):.4g}): its log-likelihood and bits/dim would not be "
            f"ones. {fix}"
        )
