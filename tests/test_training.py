"""Training: the bound improves on real and synthetic data; the KL warm-up ramp."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import heads


def _val_elbo_gain(model, train, valid, epochs, learning_rate):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    before = model.evaluate(valid, batch_size=500, verbose=0, return_dict=True)["elbo"]
    history = model.fit(
        train, epochs=epochs, batch_size=100, validation_data=valid, verbose=0
    )
    after = history.history["val_elbo"][-1]
    return before, after


@pytest.mark.slow
def test_training_on_binarized_mnist_raises_the_validation_elbo(binarized_mnist):
    # 5,000 random training and 1,000 random validation images (the splits are
    # not shuffled by class, but random subsets are the rule here).
    rng = np.random.default_rng(0)
    train = binarized_mnist["train"][rng.choice(50_000, 5_000, replace=False)]
    valid = binarized_mnist["valid"][rng.choice(10_000, 1_000, replace=False)]
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(
        input_shape=(784,),
        latent_dim=20,
        hidden_units=(200,),
        activation="tanh",
        seed=0,
    )
    before, after = _val_elbo_gain(model, train, valid, epochs=5, learning_rate=1e-3)
    # Untrained, the bound is about 784 log 2 = 543 nats below zero; five epochs
    # bring it to about -165 nats. The test asks for a gain of 200 nats.
    assert before < -500
    assert after > before + 200, (before, after)


@pytest.mark.parametrize(
    "likelihood",
    ["gaussian", heads.GaussianHead(scale="shared"), heads.GaussianHead(scale=0.1)],
    ids=["diagonal", "shared", "fixed"],
)
def test_each_gaussian_mode_trains_on_continuous_data(likelihood):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 2))
    x = np.tanh(z @ rng.normal(size=(2, 10))) + 0.1 * rng.normal(size=(2000, 10))
    x = x.astype("float32")
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(
        input_shape=(10,),
        latent_dim=2,
        hidden_units=(32,),
        likelihood=likelihood,
        seed=0,
    )
    before, after = _val_elbo_gain(
        model, x[:1500], x[1500:], epochs=30, learning_rate=3e-3
    )
    # Measured gains after 20 epochs: 12 (diagonal), 7.6 (shared) and 240
    # (fixed sigma) nats per example; 30 epochs must give at least 5.
    assert after > before + 5, (before, after)


def test_kl_warmup_weight_is_the_ramp_in_float64():
    from tfvae.training import kl_warmup_weight

    weight = kl_warmup_weight(2.0, 1, 5, 10, 4)  # epoch 1, batch 5 of 10, 4 epochs
    assert weight.dtype == tf.float64 and float(weight) == 2.0 * (1 + 5 / 10) / 4
    assert float(kl_warmup_weight(2.0, 7, 0, 10, 4)) == 2.0  # capped at beta
    assert float(kl_warmup_weight(0.5, 0, 0, 10, 4)) == 0.0
    model = tfvae.VAE(input_shape=(6,), latent_dim=2, beta=0.7)
    model.compile(optimizer="adam")
    model.schedule_kl_warmup(epoch=1, batch=3, steps_per_epoch=7, epochs=3)
    expected = np.float32(0.7 * min(1.0, (1 + 3 / 7) / 3))
    assert model.kl_weight.numpy() == expected
