import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_config_round_trip,
    dense,
    log_sigmoid,
    normal_log_density,
    softplus,
)
from model_test_case import run_model_test

import tfvae
from tfvae import heads

RNG = np.random.default_rng(2)
X_BIN = (RNG.random((300, 12)) < 0.3).astype("float32")


def small_hvae(**kwargs):
    config = dict(
        input_shape=(12,),
        latent_dims=(4, 2),
        hidden_units=((8,), (6,)),
        activation="tanh",
    )
    config.update(kwargs)
    return tfvae.HierarchicalVAE(**config)


def randomize_biases(model, scale=0.3):
    helpers.randomize_biases(model, RNG, scale)


def gaussian_params(features, head):
    mu, raw = np.split(dense(features, head), 2, axis=-1)
    return mu, softplus(raw) + head.min_scale


def hand_elbo_two_layers(model, x, noise):
    """The two-layer ELBO of the seeds, in numpy, from the model's weights."""
    d1 = model.latent_dims[0]
    e1, e2 = noise[..., :d1], noise[..., d1:]
    act = "tanh"
    mu1, s1 = gaussian_params(
        dense(x, model.inference_networks[0].layers[-1], act), model.posteriors[0]
    )
    z1 = mu1 + s1 * e1  # (S, B, d1)
    mu2, s2 = gaussian_params(
        dense(z1, model.inference_networks[1].layers[-1], act), model.posteriors[1]
    )
    z2 = mu2 + s2 * e2
    pm, ps = gaussian_params(
        dense(z2, model.generative_networks[1].layers[-1], act), model.conditionals[0]
    )
    logits = dense(
        dense(z1, model.generative_networks[0].layers[-1], act), model.likelihood
    )
    log_px = (x * log_sigmoid(logits) + (1 - x) * log_sigmoid(-logits)).sum(-1)
    kl_1 = (normal_log_density(z1, mu1, s1) - normal_log_density(z1, pm, ps)).sum(-1)
    kl_2 = 0.5 * (mu2**2 + s2**2 - 1 - np.log(s2**2)).sum(-1)  # closed form, top
    return (log_px - kl_1 - kl_2).mean(0)


def hand_elbo_two_layers_ladder(model, x, noise):
    """The same under ladder inference: z_2 ~ q(z_2|x), then z_1 from the
    precision-weighted product of the upward estimate and p(z_1|z_2)."""
    d1 = model.latent_dims[0]
    e1, e2 = noise[..., :d1], noise[..., d1:]
    act = "tanh"
    up_1 = dense(x, model.inference_networks[0].layers[-1], act)
    m1, s1 = gaussian_params(up_1, model.posteriors[0])
    mu2, s2 = gaussian_params(
        dense(up_1, model.inference_networks[1].layers[-1], act), model.posteriors[1]
    )
    z2 = mu2 + s2 * e2  # (S, B, d2)
    pm, ps = gaussian_params(
        dense(z2, model.generative_networks[1].layers[-1], act), model.conditionals[0]
    )
    variance = 1 / (s1**-2 + ps**-2)
    mu1, sigma1 = variance * (m1 * s1**-2 + pm * ps**-2), np.sqrt(variance)
    z1 = mu1 + sigma1 * e1
    logits = dense(
        dense(z1, model.generative_networks[0].layers[-1], act), model.likelihood
    )
    log_px = (x * log_sigmoid(logits) + (1 - x) * log_sigmoid(-logits)).sum(-1)
    kl_1 = (normal_log_density(z1, mu1, sigma1) - normal_log_density(z1, pm, ps)).sum(
        -1
    )
    kl_2 = 0.5 * (mu2**2 + s2**2 - 1 - np.log(s2**2)).sum(-1)  # closed form, top
    return (log_px - kl_1 - kl_2).mean(0)


def hand_elbo_two_layers_top_down(model, x, noise):
    """Top-down inference, z_2 ~ q(z_2|x) and z_1 ~ q(z_1|x, z_2) from the
    merge network on [d_1, z_2]; with `skip` the decoder sees [z_1, z_2]."""
    d1 = model.latent_dims[0]
    e1, e2 = noise[..., :d1], noise[..., d1:]
    act = "tanh"
    up_1 = dense(x, model.inference_networks[0].layers[-1], act)  # (B, 8)
    mu2, s2 = gaussian_params(
        dense(up_1, model.inference_networks[1].layers[-1], act), model.posteriors[1]
    )
    z2 = mu2 + s2 * e2  # (S, B, d2)
    merged = np.concatenate([np.broadcast_to(up_1, (len(z2), *up_1.shape)), z2], -1)
    mu1, s1 = gaussian_params(
        dense(merged, model.merge_networks[0].layers[-1], act), model.posteriors[0]
    )
    z1 = mu1 + s1 * e1
    pm, ps = gaussian_params(
        dense(z2, model.generative_networks[1].layers[-1], act), model.conditionals[0]
    )
    decoded = np.concatenate([z1, z2], -1) if model.skip else z1
    logits = dense(
        dense(decoded, model.generative_networks[0].layers[-1], act), model.likelihood
    )
    log_px = (x * log_sigmoid(logits) + (1 - x) * log_sigmoid(-logits)).sum(-1)
    kl_1 = (normal_log_density(z1, mu1, s1) - normal_log_density(z1, pm, ps)).sum(-1)
    kl_2 = 0.5 * (mu2**2 + s2**2 - 1 - np.log(s2**2)).sum(-1)  # closed form, top
    return (log_px - kl_1 - kl_2).mean(0)


HAND_ELBOS = {
    "bottom_up": hand_elbo_two_layers,
    "ladder": hand_elbo_two_layers_ladder,
    "top_down": hand_elbo_two_layers_top_down,
}


@pytest.mark.parametrize(
    "inference, skip",
    [("bottom_up", False), ("ladder", False), ("top_down", False), ("top_down", True)],
)
@pytest.mark.parametrize("num_samples", [1, 3])
def test_two_layer_elbo_equals_hand_computation(num_samples, inference, skip):
    model = small_hvae(inference=inference, skip=skip)
    randomize_biases(model)
    x = X_BIN[:10]
    noise = keras.random.normal((num_samples, 10, 6), seed=3).numpy()
    elbo = model.elbo(x, num_samples=num_samples, seed=3).numpy()
    expected = HAND_ELBOS[inference](model, x.astype("float64"), noise)
    np.testing.assert_allclose(elbo, expected, atol=1e-4, rtol=1e-6)


def test_skip_makes_the_decoder_see_every_layer():
    model = small_hvae(latent_dims=(5, 3, 2), hidden_units=((8,), (), (4,)), skip=True)
    randomize_biases(model)
    assert model.decode_dim == 10
    x = X_BIN[:6]
    means = [q.mean() for q in model.encode(x, sample=False)]
    z = model.decoder_latent(means)
    np.testing.assert_array_equal(z, np.concatenate(means, axis=-1))
    np.testing.assert_allclose(model(x), model.decode(z).mean(), rtol=1e-6)
    # Every layer reaches x directly: a change of z_3 alone changes p(x|z).
    moved = np.concatenate([means[0], means[1], means[2] + 1.0], axis=-1)
    assert not np.allclose(model.decode(moved).mean(), model.decode(z).mean())
    # A draw for `reconstruct(sample=True)` is mean + scale * noise of (B, 10).
    scales = np.concatenate([q.stddev() for q in model.encode(x, sample=False)], -1)
    noise = keras.random.normal((6, 10), seed=4)
    np.testing.assert_allclose(
        model.reconstruct(x, sample=True, seed=4),
        model.decode(z + scales * noise).mean(),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="skip"):
        small_hvae(skip="yes")


@pytest.mark.parametrize("inference", ["bottom_up", "ladder", "top_down"])
@pytest.mark.parametrize("num_samples", [1, 3])
def test_one_layer_equals_the_vae(num_samples, inference):
    hvae = small_hvae(
        latent_dims=(3,), hidden_units=((8,),), inference=inference, skip=True
    )
    vae = tfvae.VAE(
        input_shape=(12,), latent_dim=3, hidden_units=(8,), activation="tanh"
    )
    randomize_biases(hvae)
    vae.encoder.set_weights(hvae.inference_networks[0].get_weights())
    vae.posterior.set_weights(hvae.posteriors[0].get_weights())
    vae.decoder.set_weights(hvae.generative_networks[0].get_weights())
    vae.likelihood.set_weights(hvae.likelihood.get_weights())
    x = X_BIN[:20]
    np.testing.assert_allclose(
        hvae.elbo(x, num_samples=num_samples, seed=5),
        vae.elbo(x, num_samples=num_samples, seed=5),
        rtol=1e-6,
        atol=1e-5,
    )
    np.testing.assert_allclose(hvae(x), vae(x), rtol=1e-6)
    np.testing.assert_allclose(hvae.sample(4, seed=2), vae.sample(4, seed=2), rtol=1e-6)


@pytest.mark.parametrize("inference", ["bottom_up", "ladder", "top_down"])
def test_one_sample_elbo_is_unbiased(inference):
    # For each of 4 examples: 4000 single-sample estimates, against 200
    # estimates of 100 samples each. The means agree within 4 standard errors
    # of their difference; examples are kept apart, so a mix-up of samples
    # between examples in the many-sample path would show.
    model = small_hvae(inference=inference, skip=inference == "top_down")
    randomize_biases(model, scale=1.0)
    one = model.elbo(np.repeat(X_BIN[:4], 4000, axis=0), seed=1).numpy().reshape(4, -1)
    many = model.elbo(np.repeat(X_BIN[:4], 200, axis=0), num_samples=100, seed=2)
    many = many.numpy().reshape(4, -1)
    error = np.sqrt(one.var(1, ddof=1) / one.shape[1] + many.var(1, ddof=1) / 200)
    assert np.all(one.std(1) > 0.1), "the single-sample estimates must vary"
    assert np.all(np.abs(one.mean(1) - many.mean(1)) < 4 * error)


@pytest.mark.parametrize(
    "likelihood, low, high",
    [
        ("bernoulli", 0.0, 1.0),
        ("gaussian", -np.inf, np.inf),
        (heads.GaussianHead(scale="shared"), -np.inf, np.inf),
    ],
    ids=["bernoulli", "gaussian", "gaussian-shared"],
)
def test_sample_shape_and_range(likelihood, low, high):
    model = small_hvae(input_shape=(3, 4), likelihood=likelihood)
    samples = model.sample(7, seed=0).numpy()
    assert samples.shape == (7, 3, 4)
    assert np.all(np.isfinite(samples))
    assert samples.min() >= low and samples.max() <= high
    np.testing.assert_array_equal(samples, model.sample(7, seed=0))


@pytest.mark.parametrize(
    "inference, skip",
    [("bottom_up", False), ("ladder", False), ("top_down", False), ("top_down", True)],
)
def test_any_number_of_layers_and_the_methods(inference, skip):
    model = small_hvae(
        latent_dims=(5, 3, 2),
        hidden_units=((8,), (), (4, 4)),
        inference=inference,
        skip=skip,
    )
    x = X_BIN[:6]
    posteriors = model.encode(x, seed=1)
    assert [q.event_shape for q in posteriors] == [(5,), (3,), (2,)]
    assert all(q.batch_shape == (6,) for q in posteriors)
    z = model.decoder_latent([q.mean() for q in posteriors])
    assert z.shape == (6, model.decode_dim) and model.decode_dim == (10 if skip else 5)
    assert model.decode(z).event_shape == (12,)
    assert model(x).shape == (6, 12)
    np.testing.assert_allclose(model.reconstruct(x), model(x), rtol=1e-6)
    assert model.reconstruct(x, sample=True, seed=2).shape == (6, 12)
    assert model.elbo(x, num_samples=2).shape == (6,)
    model.compile(optimizer="adam")
    history = model.fit(X_BIN, batch_size=100, verbose=0)
    assert {"kl_1", "kl_2", "kl_3"} <= set(history.history)


def test_ladder_encodes_top_down():
    model = small_hvae(latent_dims=(5, 3, 2), hidden_units=((8,), (), (4,)))
    ladder = small_hvae(
        latent_dims=(5, 3, 2), hidden_units=((8,), (), (4,)), inference="ladder"
    )
    assert len(ladder.weights) == len(model.weights)  # no extra weights
    randomize_biases(ladder)
    x = X_BIN[:6]
    # The top posterior depends on x alone: it is the upward estimate.
    q_top = ladder.encode(x, seed=1)[-1]
    np.testing.assert_array_equal(q_top.mean(), ladder.encode(x, seed=2)[-1].mean())
    # The lower ones depend on the sample above them.
    q_1 = ladder.encode(x, seed=1)[0]
    assert not np.allclose(q_1.mean(), ladder.encode(x, seed=2)[0].mean())
    # sample=False conditions on means, top-down; `call` decodes that z_1's mean.
    means = ladder.encode(x, sample=False)
    again = ladder.encode(x, sample=False)
    for a, b in zip(means, again, strict=True):
        np.testing.assert_array_equal(a.mean(), b.mean())
    p_1 = ladder._conditional(1, means[1].mean())  # p(z_1 | E_q[z_2])
    q_hat = ladder._posterior(1, x)
    precision = q_hat.stddev() ** -2 + p_1.stddev() ** -2
    np.testing.assert_allclose(means[0].stddev(), precision**-0.5, rtol=1e-5)
    np.testing.assert_allclose(
        means[0].mean(),
        (q_hat.mean() * q_hat.stddev() ** -2 + p_1.mean() * p_1.stddev() ** -2)
        / precision,
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        ladder(x), ladder.decode(means[0].mean()).mean(), rtol=1e-6
    )


def test_per_layer_kl_metrics_add_up_and_are_non_negative():
    model = small_hvae()
    model.compile(optimizer="adam")
    history = model.fit(X_BIN, batch_size=100, epochs=3, verbose=0).history
    for epoch in range(3):
        kls = [history[f"kl_{layer}"][epoch] for layer in (1, 2)]
        assert min(kls) >= 0, kls
        np.testing.assert_allclose(sum(kls), history["kl"][epoch], rtol=1e-5)
    result = model.evaluate(X_BIN, batch_size=300, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        result["elbo"], result["reconstruction"] - result["kl"], rtol=1e-5
    )


def test_free_bits_change_the_loss_not_the_elbo():
    model = small_hvae(free_bits=1000.0)
    model.compile(optimizer="adam")
    result = model.evaluate(X_BIN, batch_size=300, verbose=0, return_dict=True)
    # Both layers' KLs are far below 1000 nats: each counts as 1000 in the loss.
    assert result["kl_1"] < 1000 and result["kl_2"] < 1000
    np.testing.assert_allclose(
        result["loss"], -result["reconstruction"] + 2 * 1000.0, rtol=1e-6
    )
    np.testing.assert_allclose(
        result["elbo"], result["reconstruction"] - result["kl"], rtol=1e-5
    )


def test_free_bits_stop_the_kl_gradient_below_the_threshold():
    # With every KL below its free bits, the loss is -reconstruction + const,
    # so the top layer's inference network gets no gradient at all: z_2 only
    # enters through kl_1's p(z_1|z_2) and kl_2, both constant in the loss.
    model = small_hvae(free_bits=1000.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    top = model.inference_networks[1].weights + model.posteriors[1].weights
    before = [w.numpy().copy() for w in top]
    first_before = model.posteriors[0].kernel.numpy().copy()
    model.fit(X_BIN, batch_size=300, verbose=0)
    for weight, old in zip(top, before, strict=True):
        np.testing.assert_array_equal(weight.numpy(), old)
    # The reconstruction term still trains the first layer.
    assert not np.array_equal(model.posteriors[0].kernel.numpy(), first_before)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"likelihood": heads.GaussianHead(scale=0.3), "num_samples": 2, "beta": 0.5},
        {"latent_dims": (3,), "hidden_units": ((),), "free_bits": 0.5, "seed": 3},
        {"inference": "ladder"},
        {"inference": "top_down", "skip": True, "prior": "vamp:3"},
    ],
)
def test_the_shared_model_test(kwargs, tmp_path):
    config = dict(
        input_shape=(12,),
        latent_dims=(4, 2),
        hidden_units=((8,), (6,)),
        activation="tanh",
    )
    # The export round trip of both inference models (test_export checks
    # them in a TensorFlow-only process).
    export = kwargs == {} or "inference" in kwargs
    run_model_test(
        tfvae.HierarchicalVAE, {**config, **kwargs}, X_BIN[:5], tmp_path, export=export
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden_units": ((8,),)}, r"one tuple of widths per stochastic layer \(2"),
        ({"hidden_units": ((8,), (6,), (4,))}, "Received: hidden_units"),
        ({"hidden_units": (8, 6)}, r"hidden_units=\(8, 6\)"),
        ({"hidden_units": ((8,), (0,))}, r"hidden_units\[1\]"),
        ({"latent_dims": ()}, r"latent_dims=\(\)"),
        ({"latent_dims": (4, 0)}, r"latent_dims=\(4, 0\)"),
        ({"num_samples": 0}, "num_samples=0"),
        ({"beta": -1.0}, "beta=-1.0"),
        ({"free_bits": -0.5}, "free_bits=-0.5"),
        ({"likelihood": "laplace"}, "Valid names"),
        (
            {"inference": "sideways"},
            r"\('bottom_up', 'ladder', 'top_down'\). Received: inference='sideways'",
        ),
        ({"skip": "yes"}, r"Received: skip=.yes."),
        ({"skip": 1}, r"`skip` must be True or False. Received: skip=1"),
        ({"gated": 0}, r"`gated` must be True or False. Received: gated=0"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_hvae(**kwargs)


@pytest.mark.parametrize(
    "data, match",
    [
        (X_BIN[:, :5], r"Received: x.shape=\(300, 5\)"),
        (np.where(X_BIN > 0, np.nan, 0.0), "NaN or Inf"),
        (X_BIN + 0.5, r"targets in \[0, 1\]"),
    ],
)
def test_bad_data_fails_before_any_step(data, match):
    model = small_hvae()
    model.compile(optimizer="adam")
    before = model.get_weights()
    with pytest.raises(ValueError, match=match):
        model.fit(data, verbose=0)
    with pytest.raises(ValueError, match=match.replace("300", "None")):
        model.fit(tf.data.Dataset.from_tensor_slices(data).batch(100), verbose=0)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def fit_with_warmup(model, train, valid):
    """`EPOCHS` epochs with a KL warm-up over `WARMUP`: the history."""
    return model.fit(
        train,
        epochs=EPOCHS,
        batch_size=100,
        validation_data=valid,
        callbacks=[tfvae.callbacks.KLWarmup(epochs=WARMUP)],
        verbose=0,
    ).history


def mnist_subsets(binarized_mnist):
    """10,000 training and 1,000 validation images; seeds Keras."""
    rng = np.random.default_rng(0)
    train = binarized_mnist["train"][rng.choice(50_000, 10_000, replace=False)]
    valid = binarized_mnist["valid"][rng.choice(10_000, 1_000, replace=False)]
    keras.utils.set_random_seed(0)
    return train, valid


# Measured with this recipe (10 epochs on 10,000 images, warm-up over 5) on
# 2026-11-23: the validation ELBO goes from -607 to -183 nats and kl_2 ends at
# 0.74 nats; the same run without warm-up ends at -182 nats with kl_2 = 2.0.
EPOCHS, WARMUP, ELBO_GAIN, KL_2_FLOOR = 10, 5, 300.0, 0.5


@pytest.mark.slow
def test_two_layer_model_trains_on_binarized_mnist_without_collapse(binarized_mnist):
    train, valid = mnist_subsets(binarized_mnist)
    model = tfvae.HierarchicalVAE(
        input_shape=(784,),
        latent_dims=(100, 50),
        hidden_units=((200, 200), (100, 100)),
        activation="tanh",
        seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = model.evaluate(valid, batch_size=500, verbose=0, return_dict=True)["elbo"]
    history = fit_with_warmup(model, train, valid)
    after = history["val_elbo"][-1]
    print(
        f"val_elbo {before:.0f} -> {after:.0f}, val_kl_2 {history['val_kl_2'][-1]:.2f}"
    )
    assert after > before + ELBO_GAIN, (before, after)
    assert history["val_kl_2"][-1] > KL_2_FLOOR, history["val_kl_2"]
    assert history["kl_weight"][-1] == 1.0


@pytest.mark.slow
def test_three_layers_train_without_collapse_under_top_down_inference(
    binarized_mnist,
):
    """Issue #19: L = 3 with top-down inference and skip connections, every
    layer above 1 nat of KL after 10 epochs on 10,000 images.

    Measured with this recipe on 2026-12-03 (validation ELBO; KL of z_1, z_2,
    z_3 in nats): top_down + skip -127.1 [6.63, 2.04, 5.28]; the same
    networks under ladder inference -133.1 [8.52, 2.00, 0.16], top_down
    without skip -124.0 [13.04, 0.44, 0.73], bottom-up -120.2 [12.4, 1.88,
    2.70]; with tanh instead of gated linear layers every inference model
    keeps under 3.1 nats in every layer.
    """
    train, valid = mnist_subsets(binarized_mnist)
    model = tfvae.HierarchicalVAE(
        input_shape=(784,),
        latent_dims=(32, 16, 8),
        hidden_units=((200, 200), (100,), (100,)),
        activation="linear",
        gated=True,
        inference="top_down",
        skip=True,
        seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = fit_with_warmup(model, train, valid)
    kls = [history[f"val_kl_{layer}"][-1] for layer in (1, 2, 3)]
    print(f"val_elbo {history['val_elbo'][-1]:.2f}, val KL per layer {kls}")
    assert min(kls) > 1.0, kls


@pytest.mark.parametrize("kind", ["vae", "hvae"])
def test_iwae_objective_trains_on_the_importance_weighted_bound(kind):
    if kind == "vae":
        model = tfvae.VAE(
            input_shape=(12,),
            latent_dim=3,
            hidden_units=(8,),
            objective="iwae",
            num_samples=5,
            seed=0,
        )
    else:
        model = small_hvae(objective="iwae", num_samples=5, seed=0)
    model.compile(optimizer="adam")
    first = model.evaluate(X_BIN, batch_size=300, verbose=0, return_dict=True)
    history = model.fit(X_BIN, batch_size=100, epochs=10, verbose=0).history
    assert {"iwae", "elbo", "loss"} <= set(history)  # the metrics name the bound
    # The loss is -iwae; the K-sample bound lies above the ELBO; it improves.
    result = model.evaluate(X_BIN, batch_size=300, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], -result["iwae"], rtol=1e-6)
    assert result["iwae"] > result["elbo"]
    assert result["iwae"] > first["iwae"]
    assert_config_round_trip(model)


def test_elbo_models_report_no_iwae_metric():
    model = small_hvae()
    model.compile(optimizer="adam")
    assert "iwae" not in model.fit(X_BIN, batch_size=100, verbose=0).history


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"objective": "vimco"}, r"\('elbo', 'iwae'\). Received: objective='vimco'"),
        ({"objective": "iwae", "free_bits": 1.0}, "objective='elbo' only"),
    ],
)
def test_bad_objective(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_hvae(**kwargs)
