"""Export to a SavedModel for TF Serving, with a signature for every use of a VAE.

The SavedModel needs only the TensorFlow runtime to load and serve: no tfvae,
no TensorFlow Probability, no Keras objects. Its signatures, inputs -> outputs
(batch dimensions are dynamic):

- `serving_default`: `x` -> `reconstruction`
- `encode`: `x` -> `loc`, `scale` (one latent layer); `loc_1`, `scale_1`, ...
  (several)
- `decode`: `z` (z_1 for a hierarchy) -> the likelihood head's
  `output_parameters`: `mean`, and `probs` (Bernoulli) or `scale` (Gaussian)
- `sample`: `num_samples`, `seed` (int32 scalars) -> `x`
- `elbo`: `x` -> `elbo`
- `log_likelihood`: `x`, `num_samples` (int32 scalar) -> `log_likelihood`
"""

import os
import tempfile

import keras
import tensorflow as tf

from tfvae import _checks, _files, distribute, estimators, training
from tfvae import noise as noise_lib
from tfvae.latent import LatentVariableModel

__all__ = ["decode_outputs", "decode_signature", "encode_outputs", "export_saved_model"]

# Samples per block of the in-graph log-likelihood loop.
_LOG_LIKELIHOOD_BLOCK = 32


def encode_outputs(model, inputs):
    """What the `encode` signature returns for checked inputs of `model`.

    The posterior means and standard deviations, following the means up a
    hierarchy (`model.encode(inputs, sample=False)`): `loc` and `scale` for
    one latent layer; `loc_1`, `scale_1`, `loc_2`, ... (z_1 first) for
    several. The ONNX and LiteRT encoders return the same names.

    Args:
        model: a `tfvae.latent.LatentVariableModel`.
        inputs: the model's inputs (`model.pack_inputs` of tensors of
            `model.input_signature()`), checked by `model.check_inputs`.

    Returns:
        A dict of float32 tensors of shape (batch, latent dim of the layer).
    """
    posteriors = model.encode(inputs, sample=False)
    if len(posteriors) == 1:
        (q,) = posteriors
        return {"loc": q.mean(), "scale": q.stddev()}
    outputs = {}
    for layer, q in enumerate(posteriors, start=1):
        outputs[f"loc_{layer}"] = q.mean()
        outputs[f"scale_{layer}"] = q.stddev()
    return outputs


def decode_signature(model):
    """The named inputs of the `decode` signature: `z`, then the conditions.

    Args:
        model: a `tfvae.latent.LatentVariableModel`.

    Returns:
        A list of `tf.TensorSpec`: `z` of shape (None, `model.decode_dim`),
        then `model.condition_signature()` (none for an unconditional model).
    """
    z_spec = tf.TensorSpec((None, model.decode_dim), tf.float32, name="z")
    return [z_spec, *model.condition_signature()]


def decode_outputs(model, z, conditions=()):
    """What the `decode` signature returns: the parameters of p(x | z).

    Args:
        model: a `tfvae.latent.LatentVariableModel`.
        z: a float32 tensor of shape (batch, `model.decode_dim`).
        conditions: tensors of `model.condition_signature()`, in order.

    Returns:
        `model.likelihood.output_parameters(model.decode(z, ...))`: a dict
        with `mean`, and the head's own parameters (`probs`, `scale`, ...).
    """
    p = model.decode_given(z, conditions)
    return model.likelihood.output_parameters(p)


def _endpoints(model):
    """(name, function, input signature) of every exported signature.

    The data inputs are `model.input_signature()` (x, or x and what else the
    model takes per example), and `decode` and `sample` also take
    `model.condition_signature()` (none by default).
    """
    x_specs = model.input_signature()
    condition_specs = model.condition_signature()
    count_spec = tf.TensorSpec((), tf.int32, name="num_samples")
    seed_spec = tf.TensorSpec((), tf.int32, name="seed")

    # Every signature refuses what the Python API refuses: data outside the
    # likelihood's support or not finite (`check_inputs`), a non-finite z.
    def serving_default(*inputs):
        return {"reconstruction": model(model.check_inputs(model.pack_inputs(inputs)))}

    def encode(*inputs):
        return encode_outputs(model, model.check_inputs(model.pack_inputs(inputs)))

    def decode(z, *conditions):
        z = tf.debugging.assert_all_finite(z, "z must be finite (no NaN or Inf)")
        return decode_outputs(model, z, model.check_conditions(conditions))

    def sample(num_samples, seed, *conditions):
        tf.debugging.assert_positive(num_samples, message="num_samples must be >= 1")
        dims = model.generation_dims
        noise = tf.random.stateless_normal(
            (num_samples, sum(dims)), seed=tf.stack([seed, 0])
        )
        noise = noise_lib.split(noise, dims)
        conditions = model.check_conditions(conditions)
        return {"x": model.generate_given(noise, conditions)}

    def elbo(*inputs):
        return {"elbo": model.elbo(model.pack_inputs(inputs), num_samples=1, seed=0)}

    def log_likelihood(*arguments):
        *inputs, num_samples = arguments
        tf.debugging.assert_positive(num_samples, message="num_samples must be >= 1")
        x = model.check_inputs(model.pack_inputs(inputs))
        lse, _ = estimators.log_sum_exp_weights(
            model,
            x,
            tf.range(training.batch_size(x)),
            tf.constant(0, tf.int64),
            num_samples,
            _LOG_LIKELIHOOD_BLOCK,
        )
        log_k = tf.math.log(tf.cast(num_samples, tf.float32))
        return {"log_likelihood": lse - log_k}

    return [
        ("serving_default", serving_default, x_specs),
        ("encode", encode, x_specs),
        ("decode", decode, decode_signature(model)),
        ("sample", sample, [count_spec, seed_spec, *condition_specs]),
        ("elbo", elbo, x_specs),
        ("log_likelihood", log_likelihood, [*x_specs, count_spec]),
    ]


def _replaceable_export(folder):
    """None for a SavedModel folder; else why `overwrite` may not replace it."""
    names = sorted(os.listdir(folder))
    versions = [name for name in names if name.isdigit()]
    if versions:
        return (
            f"holds TF Serving versions {versions}; pass version= (--version N) "
            "to add or replace one"
        )
    if "saved_model.pb" not in names:
        return f"holds files that are not a SavedModel ({names[:5]})"
    return None


def export_saved_model(model, export_dir, version=None, overwrite=False):
    """Writes a SavedModel of `model` for TF Serving; returns its folder.

    The signatures (see the module docstring and the README for the names of
    their inputs and outputs) are deterministic: `sample` takes a seed, `elbo`
    is a one-sample estimate with the fixed seed 0, `log_likelihood` is
    `model.log_likelihood(x, num_samples, seed=0)` (its noise keyed by the row
    of the request), and the hierarchy's `encode` follows the posterior means
    up the chain (`model.encode(x, sample=False)`).

    Args:
        model: a `tfvae.VAE` or `tfvae.HierarchicalVAE`.
        export_dir: the folder to write; with `version`, the model base path.
        version: an int >= 0; the SavedModel goes to `export_dir/<version>/`,
            the layout TF Serving loads from.
        overwrite: replace an existing SavedModel at the target. Without it,
            an existing non-empty target raises `FileExistsError` before any
            work; with it, so does a target that is not a SavedModel (a base
            folder of TF Serving versions, or other files) or a symbolic link.
            The export is written to a temporary sibling folder and moved in
            place, so an interrupted export leaves the old one intact (and its
            staging folder is removed by the next export beside it).

    Returns:
        The path of the written SavedModel folder; `None` on a worker that is
        not the chief of a multi-worker cluster, which writes nothing
        (`tfvae.distribute.is_chief`).

    Example:

    ```python
    path = tfvae.export_saved_model(model, "/models/vae", version=1)
    served = tf.saved_model.load(path)
    served.signatures["encode"](x=tf.constant(x_test[:4]))["loc"]
    ```
    """
    if not isinstance(model, LatentVariableModel):
        raise ValueError(
            "`model` must be a tfvae model (a tfvae.latent.LatentVariableModel, "
            "such as tfvae.VAE or tfvae.HierarchicalVAE). "
            f"Received: model={model!r}"
        )
    target = os.fspath(export_dir)
    if version is not None:
        version = _checks.positive_int(version, "version", minimum=0)
        target = os.path.join(target, str(version))
    _files.check_target(target, "export", _replaceable_export, overwrite)

    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, function, signature in _endpoints(model):
        archive.add_endpoint(name, tf.function(function), input_signature=signature)
    if not distribute.is_chief(model.distribute_strategy):
        # Every worker of a multi-worker cluster takes part in the save (it can
        # read variables through collective ops); only the chief keeps it.
        with tempfile.TemporaryDirectory(prefix="tfvae-export-") as scratch:
            archive.write_out(scratch, verbose=False)
        return None
    with _files.staged_folder(target, prefix=".tfvae-export-") as staging:
        archive.write_out(staging, verbose=False)
    return target
