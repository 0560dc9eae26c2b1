"""The shared test of a model kind: the protocol, and every round trip.

`run_model_test(cls, init_kwargs, x, tmp_path)` builds `cls(**init_kwargs)`
and checks what every tfvae model promises, in the manner of keras-hub's
`run_backbone_test`:

- the protocol of `tfvae.latent.LatentVariableModel`: `encode` returns one
  posterior per layer, `latent_layers`, `chain`, `log_weights`, `generate`
  and `sample` have the documented shapes, and `log_weights` with what
  `prepare` computed equals them without;
- a config round trip (`from_config(get_config())`);
- a `.keras` round trip: identical predictions, weights, ELBO, samples,
  posteriors and log-likelihood;
- a preset round trip (`save_to_preset`, `from_preset`);
- an export round trip: every SavedModel signature equals the in-memory
  model to 1e-5.

Biases get random values first, so that every weight matters.
"""

import helpers
import numpy as np
import tensorflow as tf
from helpers import as_json, assert_config_round_trip, assert_keras_round_trip

import tfvae
from tfvae import noise as noise_lib


def run_model_test(cls, init_kwargs, x, tmp_path, export=True, seed=0):
    """Runs the shared checks on `cls(**init_kwargs)`; returns the model."""
    model = cls(**init_kwargs)
    helpers.randomize_biases(model, np.random.default_rng(seed))
    check_protocol(model, x)
    clone = assert_config_round_trip(model)
    assert clone.count_params() == model.count_params()
    loaded = assert_keras_round_trip(model, x, tmp_path)
    assert_same_model(loaded, model, x)
    preset = tmp_path / "preset"
    model.save_to_preset(preset, samples=False)
    assert_same_model(cls.from_preset(str(preset)), model, x)
    if export:
        check_export(model, x, tmp_path / "export")
    return model


def assert_same_model(other, model, x):
    """Equal outputs of every seeded method."""
    assert as_json(other.get_config()) == as_json(model.get_config())
    np.testing.assert_array_equal(other.elbo(x, seed=4), model.elbo(x, seed=4))
    np.testing.assert_array_equal(other.sample(3, seed=4), model.sample(3, seed=4))
    pairs = zip(other.encode(x, seed=4), model.encode(x, seed=4), strict=True)
    for a, b in pairs:
        np.testing.assert_array_equal(a.mean(), b.mean())
        np.testing.assert_array_equal(a.stddev(), b.stddev())
    np.testing.assert_array_equal(
        other.log_likelihood(x, 20, seed=1), model.log_likelihood(x, 20, seed=1)
    )


def check_protocol(model, x):
    """The shapes and identities of the protocol's methods."""
    batch, dims = len(x), model.latent_dims
    x_tensor = tf.constant(x, tf.float32)
    posteriors = model.encode(x)
    assert isinstance(posteriors, list) and len(posteriors) == len(dims)
    for q, dim in zip(posteriors, dims, strict=True):
        assert q.batch_shape == (batch,) and q.event_shape == (dim,)
    assert model.num_layers == len(dims)
    layers = model.latent_layers(
        x_tensor, noise_lib.standard_normal((1, batch), dims, seed=0)
    )
    assert len(layers) == len(dims)
    for layer, dim in zip(layers, dims, strict=True):
        assert layer.z.shape == (batch, dim) and layer.kl.shape == (batch, dim)
    noise = noise_lib.standard_normal((3, batch), dims, seed=1)
    log_w = model.log_weights(x_tensor, noise, prepared=model.prepare(x_tensor))
    assert log_w.shape == (3, batch)
    # What `prepare` computes once gives the log-weights of computing it all.
    unprepared = model.chain_log_weights(model.chain(x_tensor, noise))
    np.testing.assert_allclose(log_w, unprepared, rtol=1e-5, atol=1e-4)
    generated = model.generate(
        noise_lib.standard_normal((2,), model.generation_dims, seed=2)
    )
    assert generated.shape == (2, *model.input_shape)
    assert model.sample(2, seed=2).shape == (2, *model.input_shape)
    assert model.floats_per_sample() > 0
    # `call` decodes what the decoder sees of the posterior means.
    means = [q.mean() for q in model.encode(x_tensor, sample=False)]
    z = model.decoder_latent(means)
    assert z.shape == (batch, model.decode_dim)
    np.testing.assert_allclose(
        model(x_tensor), model.likelihood.picture(model.decode(z)), rtol=1e-6
    )


def check_export(model, x, folder):
    """Every signature of the SavedModel equals the in-memory model."""
    path = tfvae.export_saved_model(model, folder)
    served = tf.saved_model.load(path).signatures
    x_tensor = tf.constant(x, tf.float32)
    z = tf.constant(
        np.random.default_rng(0).normal(size=(len(x), model.decode_dim)),
        tf.float32,
    )
    expected = {
        "serving_default": {"reconstruction": model(x_tensor)},
        "decode": model.likelihood.output_parameters(model.decode(z)),
        "sample": {"x": model.sample(3, seed=7)},
        "elbo": {"elbo": model.elbo(x, seed=0)},
        "log_likelihood": {"log_likelihood": model.log_likelihood(x, 40, seed=0)},
    }
    posteriors = model.encode(x, sample=False)
    names = [""] if len(posteriors) == 1 else [f"_{i}" for i in range(1, 10)]
    expected["encode"] = {}
    for suffix, q in zip(names, posteriors, strict=False):
        expected["encode"].update(
            {f"loc{suffix}": q.mean(), f"scale{suffix}": q.stddev()}
        )
    arguments = {
        "serving_default": {"x": x_tensor},
        "encode": {"x": x_tensor},
        "decode": {"z": z},
        "sample": {"num_samples": tf.constant(3), "seed": tf.constant(7)},
        "elbo": {"x": x_tensor},
        "log_likelihood": {"x": x_tensor, "num_samples": tf.constant(40)},
    }
    for name, outputs in expected.items():
        got = served[name](**arguments[name])
        assert sorted(got) == sorted(outputs), name
        for key, value in outputs.items():
            np.testing.assert_allclose(
                got[key], np.asarray(value), rtol=1e-5, atol=1e-5, err_msg=name
            )
