import os
import subprocess
import sys

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_keras_round_trip,
    dense,
    log_sigmoid,
    normal_log_density,
    softplus,
)
from model_test_case import run_model_test

import tfvae
from tfvae import heads

RNG = np.random.default_rng(1)
X_BIN = (RNG.random((300, 12)) < 0.3).astype("float32")


def small_vae(**kwargs):
    config = dict(input_shape=(12,), latent_dim=3, hidden_units=(8,), activation="tanh")
    config.update(kwargs)
    return tfvae.VAE(**config)


def randomize_biases(model, scale=0.3):
    helpers.randomize_biases(model, RNG, scale)


def hand_elbo(model, x, noise):
    """The seeds' ELBO, computed in numpy from the model's weights.

    ELBO = mean_s log p(x | z_s) - KL(q(z|x) || N(0, I)), z_s = mu + sigma * eps_s.
    """
    hidden = dense(x, model.encoder.layers[-1], "tanh")
    params = dense(hidden, model.posterior)
    mu, raw = np.split(params, 2, axis=-1)
    sigma = softplus(raw) + model.posterior.min_scale
    z = mu + sigma * noise  # (S, B, D)
    params = dense(dense(z, model.decoder.layers[-1], "tanh"), model.likelihood)
    head = model.likelihood
    if isinstance(head, heads.BernoulliHead):
        log_px = (x * log_sigmoid(params) + (1 - x) * log_sigmoid(-params)).sum(-1)
    else:
        loc, raw_scale = np.split(params, head.num_params, axis=-1)[0], None
        if head.scale == "diagonal":
            raw_scale = np.split(params, 2, axis=-1)[1]
            scale = softplus(raw_scale) + head.min_scale
        elif head.scale == "shared":
            scale = softplus(head.raw_scale.numpy()) + head.min_scale
        else:
            scale = head.scale
        log_px = normal_log_density(x, loc, scale).sum(-1)
    if model.kl == "analytic":
        # Seeds, closed form: -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2).
        kl = -0.5 * (1 + np.log(sigma**2) - mu**2 - sigma**2).sum(-1)
    else:
        kl = (
            (normal_log_density(z, mu, sigma) - normal_log_density(z, 0.0, 1.0))
            .sum(-1)
            .mean(0)
        )
    return log_px.mean(0) - kl


@pytest.mark.parametrize("num_samples", [1, 4])
@pytest.mark.parametrize("kl", ["analytic", "mc"])
@pytest.mark.parametrize(
    "likelihood",
    [
        "bernoulli",
        "gaussian",
        heads.GaussianHead(scale="shared"),
        heads.GaussianHead(scale=0.2),
    ],
    ids=["bernoulli", "gaussian-diagonal", "gaussian-shared", "gaussian-fixed"],
)
def test_elbo_equals_hand_computation(likelihood, kl, num_samples):
    if isinstance(likelihood, heads.DistributionHead):
        likelihood = heads.get(heads.serialize(likelihood))  # a fresh head per case
    model = small_vae(likelihood=likelihood, kl=kl)
    randomize_biases(model)
    x = (
        X_BIN[:16]
        if likelihood == "bernoulli"
        else RNG.normal(size=(16, 12)).astype("float32")
    )
    noise = keras.random.normal((num_samples, 16, 3), seed=7).numpy()
    elbo = model.elbo(x, num_samples=num_samples, seed=7).numpy()
    assert elbo.shape == (16,)
    np.testing.assert_allclose(
        elbo, hand_elbo(model, x.astype("float64"), noise), atol=1e-4, rtol=1e-6
    )


def test_analytic_and_mc_kl_agree_within_monte_carlo_error():
    analytic = small_vae(kl="analytic")
    mc = small_vae(kl="mc")
    randomize_biases(analytic, scale=1.0)
    mc.set_weights(analytic.get_weights())
    # 4000 copies of each of 3 examples: one independent draw of z per row. With
    # the same seed both models draw the same z, so their reconstruction terms
    # are equal and elbo_mc - elbo_analytic = KL_analytic - KL_mc_sample.
    x = np.repeat(X_BIN[:3], 4000, axis=0)
    difference = (
        (mc.elbo(x, seed=11) - analytic.elbo(x, seed=11)).numpy().reshape(3, 4000)
    )
    mean = difference.mean(axis=1)
    standard_error = difference.std(axis=1, ddof=1) / np.sqrt(4000)
    assert np.all(standard_error > 1e-4), "the MC KL must actually vary"
    assert np.all(np.abs(mean) < 4 * standard_error), (mean, standard_error)


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_gradients_reach_every_encoder_weight(kl):
    model = small_vae(kl=kl)
    randomize_biases(model)
    encoder_weights = (
        model.encoder.trainable_weights + model.posterior.trainable_weights
    )
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.elbo(X_BIN[:32]))
    gradients = tape.gradient(loss, encoder_weights)
    for weight, gradient in zip(encoder_weights, gradients, strict=True):
        assert gradient is not None, weight.path
        assert np.all(np.abs(gradient.numpy()).sum(axis=0) > 0), weight.path


def test_reparameterized_reconstruction_term_trains_the_encoder():
    # beta=0: the loss is -E_q log p(x|z) alone, which reaches the encoder only
    # through z = mu + sigma * eps. One SGD step of fit must move every encoder
    # weight, the sigma half of the posterior projection included.
    model = small_vae(beta=0.0)
    randomize_biases(model)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = {
        w.path: w.numpy().copy()
        for w in model.encoder.weights + model.posterior.weights
    }
    model.fit(X_BIN[:100], batch_size=100, epochs=1, verbose=0)
    for weight in model.encoder.weights + model.posterior.weights:
        moved = np.abs(weight.numpy() - before[weight.path])
        assert np.all(moved.reshape(-1, moved.shape[-1]).sum(axis=0) > 0), weight.path


def test_fit_reports_the_four_metrics_consistently():
    model = small_vae(beta=0.5)
    model.compile(optimizer="adam")
    history = model.fit(
        X_BIN, batch_size=100, epochs=2, validation_data=X_BIN[:100], verbose=0
    )
    expected = {"loss", "elbo", "reconstruction", "kl"}
    assert set(history.history) == expected | {f"val_{k}" for k in expected}
    result = model.evaluate(X_BIN, batch_size=300, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        result["elbo"], result["reconstruction"] - result["kl"], rtol=1e-5
    )
    np.testing.assert_allclose(
        result["loss"], -(result["reconstruction"] - 0.5 * result["kl"]), rtol=1e-5
    )


def test_fit_accepts_pairs_and_datasets():
    model = small_vae()
    model.compile(optimizer="adam")
    pairs = tf.data.Dataset.from_tensor_slices((X_BIN, np.zeros(300))).batch(100)
    model.fit(X_BIN, np.zeros(300), batch_size=100, verbose=0)
    model.fit(pairs, validation_data=pairs, verbose=0)
    history = model.fit(tf.data.Dataset.from_tensor_slices(X_BIN).batch(100), verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_sample_weights_weight_the_metrics():
    model = small_vae()
    model.compile(optimizer="adam")
    weights = RNG.random(300).astype("float32")
    result = model.evaluate(
        X_BIN, sample_weight=weights, batch_size=300, verbose=0, return_dict=True
    )
    (q,) = model.encode(X_BIN)
    mu, sigma = q.mean().numpy(), q.stddev().numpy()
    kl = -0.5 * (1 + np.log(sigma**2) - mu**2 - sigma**2).sum(-1)
    np.testing.assert_allclose(
        result["kl"], (weights * kl).sum() / weights.sum(), rtol=1e-4
    )


def test_methods_and_shapes():
    model = small_vae()
    x = X_BIN[:5]
    assert model(x).shape == (5, 12)
    assert model.predict(x, verbose=0).shape == (5, 12)
    posteriors = model.encode(x)
    assert isinstance(posteriors, list) and len(posteriors) == 1
    (q,) = posteriors
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    assert model.decode(q.sample(seed=1)).event_shape == (12,)
    np.testing.assert_allclose(model.reconstruct(x), model(x), rtol=1e-6)
    assert model.reconstruct(x, sample=True, seed=3).shape == (5, 12)
    assert model.elbo(x, num_samples=3).shape == (5,)
    np.testing.assert_array_equal(model.sample(4, seed=5), model.sample(4, seed=5))
    assert not np.allclose(model.sample(4, seed=5), model.sample(4, seed=6))
    assert not np.allclose(model.sample(4), model.sample(4))  # the generator advances
    assert model.prior.distribution().event_shape == (3,)


def test_linear_model_has_no_hidden_layers():
    model = small_vae(hidden_units=())
    dense_layers = [
        layer
        for network in (model.encoder, model.decoder)
        for layer in network.layers
        if isinstance(layer, keras.layers.Dense)
    ]
    assert dense_layers == []
    # The heads alone hold the weights: x -> (mu, sigma) and z -> logits.
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == (12 * 6 + 6) + (3 * 12 + 12)


def test_image_shaped_data_and_convolutional_networks(tmp_path):
    encoder = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
        ]
    )
    decoder = keras.Sequential(
        [
            keras.layers.Dense(7 * 7 * 4, activation="relu"),
            keras.layers.Reshape((7, 7, 4)),
            keras.layers.Conv2DTranspose(
                4, 3, strides=2, padding="same", activation="relu"
            ),
        ]
    )
    model = tfvae.VAE(
        input_shape=(14, 14, 1), latent_dim=2, encoder=encoder, decoder=decoder
    )
    images = (RNG.random((200, 14, 14, 1)) < 0.3).astype("float32")
    model.compile(optimizer="adam")
    history = model.fit(images, batch_size=100, epochs=1, verbose=0)
    assert np.isfinite(history.history["elbo"][0])
    assert model.sample(3, seed=0).shape == (3, 14, 14, 1)
    assert_keras_round_trip(model, images[:4], tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"likelihood": heads.GaussianHead(scale="shared"), "kl": "mc", "beta": 0.3},
        {"likelihood": heads.GaussianHead(scale=0.5), "num_samples": 3, "seed": 4},
        {"hidden_units": (), "activation": "relu", "likelihood": "gaussian"},
    ],
)
def test_the_shared_model_test(kwargs, tmp_path):
    config = dict(input_shape=(12,), latent_dim=3, hidden_units=(8,), activation="tanh")
    model = run_model_test(
        tfvae.VAE, {**config, **kwargs}, X_BIN[:6], tmp_path, export=not kwargs
    )
    loaded = keras.models.load_model(tmp_path / "model.keras")
    z = X_BIN[:6, :3]
    np.testing.assert_array_equal(loaded.decode(z).stddev(), model.decode(z).stddev())


def test_keras_file_loads_in_a_new_process_with_only_import_tfvae(tmp_path):
    model = small_vae(likelihood=heads.GaussianHead(scale="shared"))
    randomize_biases(model)
    path, out = tmp_path / "m.keras", tmp_path / "out.npy"
    model.save(path)
    script = (
        "import sys, numpy as np, keras, tfvae\n"
        "m = keras.models.load_model(sys.argv[1])\n"
        "np.save(sys.argv[2], m.predict(np.load(sys.argv[3]), verbose=0))\n"
    )
    np.save(tmp_path / "x.npy", X_BIN[:6])
    subprocess.run(
        [sys.executable, "-c", script, str(path), str(out), str(tmp_path / "x.npy")],
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    np.testing.assert_array_equal(np.load(out), model.predict(X_BIN[:6], verbose=0))


# --- Bad input -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"latent_dim": 0}, "latent_dim=0"),
        ({"latent_dim": 2.5}, "latent_dim=2.5"),
        ({"num_samples": 0}, "num_samples=0"),
        ({"beta": -0.1}, "beta=-0.1"),
        ({"beta": float("inf")}, "beta=inf"),
        ({"kl": "exact"}, r"\('analytic', 'mc'\). Received: kl='exact'"),
        (
            {"likelihood": "poisson"},
            r"Valid names: \['bernoulli', 'gaussian', 'gaussian-shared', "
            r"'discretized-logistic', 'gaussian-fixed:SIGMA', "
            r"'discretized-logistic:K', 'pixelcnn', 'pixelcnn:K', 'pixelcnn:K:F', "
            r"'pixelcnn-bernoulli', 'pixelcnn-bernoulli:F'\]",
        ),
        ({"input_shape": (0,)}, r"input_shape=\(0,\)"),
        ({"hidden_units": (8, -1)}, r"hidden_units=\(8, -1\)"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_vae(**kwargs)


def test_bad_activation():
    with pytest.raises(ValueError, match="no_such_activation"):
        small_vae(activation="no_such_activation")


BAD_DATA = [
    (X_BIN[:, :10], r"shape \(batch, 12\).*Received: x.shape=\(300, 10\)"),
    (np.where(X_BIN > 0, np.nan, 0.0), "NaN or Inf"),
    (np.where(X_BIN > 0, np.inf, 0.0), "NaN or Inf"),
    (X_BIN * 2, r"values in \[0, 2\].*targets in \[0, 1\]"),
    (X_BIN - 1, r"values in \[-1, 0\].*targets in \[0, 1\]"),
]


def _assert_nothing_trained(model, before):
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("data, match", BAD_DATA)
def test_bad_arrays_fail_before_any_step(data, match):
    model = small_vae()
    model.compile(optimizer="adam")
    before = model.get_weights()
    for call in (
        lambda: model.fit(data, verbose=0),
        lambda: model.fit(X_BIN, validation_data=data, verbose=0),
        lambda: model.evaluate(data, verbose=0),
        lambda: model.elbo(data),
    ):
        with pytest.raises(ValueError, match=match.replace("x.shape", r"\w+.shape")):
            call()
    _assert_nothing_trained(model, before)
    assert int(model.optimizer.iterations) == 0


@pytest.mark.parametrize("data, match", BAD_DATA)
def test_bad_datasets_fail_before_any_update(data, match):
    model = small_vae()
    model.compile(optimizer="adam")
    before = model.get_weights()
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(100)
    with pytest.raises(ValueError, match=match.replace("300", "None")):
        model.fit(dataset, verbose=0)
    _assert_nothing_trained(model, before)


def test_unbatched_dataset_gets_a_hint():
    model = small_vae()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="unbatched"):
        model.fit(tf.data.Dataset.from_tensor_slices(X_BIN), verbose=0)


def test_gaussian_likelihood_accepts_any_finite_values():
    model = small_vae(likelihood="gaussian")
    model.compile(optimizer="adam")
    model.fit(X_BIN * 5 - 2, batch_size=100, verbose=0)


def test_predict_and_call_check_shapes():
    model = small_vae()
    with pytest.raises(ValueError, match="x.shape=\\(2, 5\\)"):
        model.predict(np.zeros((2, 5)), verbose=0)
    with pytest.raises(ValueError, match="input_shape=\\(12,\\)"):
        model(np.zeros((2, 5), "float32"))


def test_sample_rejects_bad_counts():
    with pytest.raises(ValueError, match="num_samples=0"):
        small_vae().sample(0)
    with pytest.raises(ValueError, match="num_samples=0"):
        small_vae().elbo(X_BIN[:2], num_samples=0)
