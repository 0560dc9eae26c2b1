"""tfvae's default `steps_per_execution` and the exact step counts it keeps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae

X = (np.random.default_rng(5).random((1050, 12)) < 0.3).astype("float32")


def small_vae(**compile_kwargs):
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **compile_kwargs)
    return model


def repeated(batch=50):
    return tf.data.Dataset.from_tensor_slices(X).batch(batch).repeat()


class CountCalls(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_begin(self, batch, logs=None):
        self.batches.append(batch)


def iterations(model):
    return int(model.optimizer.iterations.numpy())


def test_compile_defaults_to_ten_steps_per_execution():
    model = small_vae()
    assert model.steps_per_execution == 10
    count = CountCalls()
    model.fit(X, batch_size=50, epochs=1, verbose=0, callbacks=[count])
    assert iterations(model) == 21  # 1050 / 50: every batch, in 3 calls
    assert count.batches == [0, 10, 20]


@pytest.mark.parametrize("passed", [1, 4])
def test_compile_keeps_a_given_steps_per_execution(passed):
    assert small_vae(steps_per_execution=passed).steps_per_execution == passed
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,))
    # also when passed by position, as keras.Model.compile allows
    model.compile("adam", None, None, None, None, False, passed)
    assert model.steps_per_execution == passed


@pytest.mark.parametrize("steps_per_epoch", [5, 23, 30])
def test_fit_runs_exactly_steps_per_epoch(steps_per_epoch):
    # Keras alone runs whole executions: 10 steps for steps_per_epoch=5.
    model = small_vae()
    model.fit(repeated(), steps_per_epoch=steps_per_epoch, epochs=2, verbose=0)
    assert iterations(model) == 2 * steps_per_epoch
    assert model.steps_per_execution == 10  # restored after the call


def test_validation_and_evaluate_steps_are_exact():
    model = small_vae()
    seen = []

    class CountTestBatches(keras.callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            seen.append(batch)

    model.fit(
        repeated(),
        steps_per_epoch=20,
        validation_data=repeated(),
        validation_steps=6,
        epochs=1,
        verbose=0,
        callbacks=[CountTestBatches()],
    )
    assert iterations(model) == 20
    # gcd(20, 6) = 2 steps per call: the 6 validation batches in 3 calls
    assert seen == [1, 3, 5]
    seen.clear()
    model.evaluate(repeated(), steps=13, verbose=0, callbacks=[CountTestBatches()])
    assert seen == list(range(13))  # 13 is prime: one step per call
    assert model.predict(repeated(), steps=3, verbose=0).shape == (150, 12)


def test_default_steps_train_like_one_step_per_execution():
    # The same steps in 10-step calls give the weights of 1-step calls.
    one, ten = small_vae(steps_per_execution=1), small_vae()
    ten.set_weights(one.get_weights())
    for model in (one, ten):
        keras.utils.set_random_seed(1)
        model.fit(X, batch_size=50, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(one.get_weights(), ten.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mirrored_strategy_defaults_to_one_step_and_refuses_more():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,))
        model.compile(optimizer="adam")
        assert model.steps_per_execution == 1
        with pytest.raises(ValueError, match=r"steps_per_execution=10 fails under"):
            model.compile(optimizer="adam", steps_per_execution=10)


def test_a_saved_model_loads_compiled_as_it_was(tmp_path):
    model = small_vae(steps_per_execution=4)
    model.fit(X, batch_size=50, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.compiled and loaded.steps_per_execution == 4
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert int(loaded.optimizer.iterations.numpy()) == 21
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = keras.models.load_model(tmp_path / "m.keras")
    assert mirrored.compiled and mirrored.steps_per_execution == 1
