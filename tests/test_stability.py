"""Long-run stability: skipped updates, their cap, clipping and weight averages."""

import keras
import numpy as np
import pytest

import tfvae

RNG = np.random.default_rng(7)
X = (RNG.random((600, 12)) < 0.3).astype("float32")
BATCH = 50  # 12 steps per epoch


def small_vae(**kwargs):
    config = dict(input_shape=(12,), latent_dim=3, hidden_units=(8,), seed=1)
    return tfvae.VAE(**{**config, **kwargs})


class WeightsAfterEachBatch(keras.callbacks.Callback):
    """The trainable weights after every training batch (one step per call)."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([w.numpy().copy() for w in self.model.trainable_weights])


def fit_recording(model, weights):
    """One epoch in order, with these sample weights: (history, recorder)."""
    record = WeightsAfterEachBatch()
    history = model.fit(
        X,
        sample_weight=weights,
        batch_size=BATCH,
        shuffle=False,
        verbose=0,
        callbacks=[record],
    ).history
    return history, record


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def typical_norm():
    """The mean gradient norm of an epoch of this test's model and data."""
    model = small_vae()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), skip_threshold=np.inf)
    history = model.fit(X, batch_size=BATCH, shuffle=False, verbose=0).history
    assert history["skipped"] == [0.0]
    return history["grad_norm"][0]


@pytest.mark.parametrize("bad_weight", [1e6, np.inf], ids=["outlier", "non-finite"])
def test_an_injected_bad_gradient_skips_that_step_and_only_that_step(bad_weight):
    # Batch 4 of 12 has its examples weighted by `bad_weight`: its loss, and
    # so its gradient, is that many times larger (or infinite).
    threshold = 100 * typical_norm()
    weights = np.ones(len(X), "float32")
    weights[4 * BATCH : 5 * BATCH] = bad_weight
    model = small_vae()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        skip_threshold=threshold,
        steps_per_execution=1,
    )
    initial = [w.numpy().copy() for w in model.trainable_weights]
    history, record = fit_recording(model, weights)
    states = [initial, *record.weights]
    moved = [changed(states[i], states[i + 1]) for i in range(12)]
    assert moved == [i != 4 for i in range(12)]
    assert history["skipped"] == [1.0]
    assert int(model.optimizer.iterations.numpy()) == 11
    # The skipped step's values are left out of the epoch's metrics.
    assert np.isfinite(history["loss"][0]) and history["loss"][0] < 1e3
    assert 0 < history["grad_norm"][0] < threshold


def test_the_same_run_without_skipping_takes_the_outlier_step():
    weights = np.ones(len(X), "float32")
    weights[4 * BATCH : 5 * BATCH] = 1e6
    model = small_vae()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=1)
    history, record = fit_recording(model, weights)
    assert changed(record.weights[3], record.weights[4])
    assert "skipped" not in history and "grad_norm" not in history


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_too_many_skips_in_a_row_stop_the_run(jit_compile):
    model = small_vae()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        skip_threshold=1e-9,  # every update is an "outlier"
        max_consecutive_skips=5,
        jit_compile=jit_compile,
    )
    initial = [w.numpy().copy() for w in model.trainable_weights]
    with pytest.raises(
        FloatingPointError,
        match=r"before update 1: the last \d+ steps were all skipped .* skip "
        r"threshold 1e-09.*max_consecutive_skips",
    ):
        model.fit(X, batch_size=BATCH, epochs=3, verbose=0)
    assert not changed(initial, [w.numpy() for w in model.trainable_weights])
    assert int(model.optimizer.iterations.numpy()) == 0


def test_skips_in_a_row_are_counted_from_the_last_applied_update():
    # Every other batch is an outlier: never more than 1 skip in a row.
    threshold = 100 * typical_norm()
    weights = np.ones(len(X), "float32")
    for batch in range(0, 12, 2):
        weights[batch * BATCH : (batch + 1) * BATCH] = 1e6
    model = small_vae()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        skip_threshold=threshold,
        max_consecutive_skips=1,
    )
    history = model.fit(
        X, sample_weight=weights, batch_size=BATCH, shuffle=False, verbose=0
    ).history
    assert history["skipped"] == [6.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"skip_threshold": 0.0}, "skip_threshold=0.0"),
        ({"skip_threshold": float("nan")}, "skip_threshold=nan"),
        ({"skip_threshold": "big"}, "skip_threshold='big'"),
        ({"skip_threshold": 1.0, "max_consecutive_skips": 0}, "must be an integer"),
    ],
)
def test_bad_skip_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_vae().compile(optimizer="adam", **kwargs)


def test_skipping_survives_a_keras_round_trip(tmp_path):
    model = small_vae()
    model.compile(optimizer="adam", skip_threshold=50.0, max_consecutive_skips=7)
    model.fit(X, batch_size=BATCH, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.skip_threshold == 50.0 and loaded.max_consecutive_skips == 7
    history = loaded.fit(X, batch_size=BATCH, verbose=0).history
    assert {"skipped", "grad_norm"} <= set(history)


# --- the moving average of the weights -----------------------------------------


class Probe(keras.callbacks.Callback):
    """Training weights after each batch, and the weights validation sees."""

    def __init__(self):
        super().__init__()
        self.trained, self.validated = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.trained.append([w.numpy().copy() for w in self.model.trainable_weights])

    def on_test_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.validated.append(
                [w.numpy().copy() for w in self.model.trainable_weights]
            )


def numpy_ema(trained, momentum):
    """Keras' average: the first step's weights, then m * average + (1 - m) * w."""
    average = [w.copy() for w in trained[0]]
    for weights in trained[1:]:
        average = [
            momentum * a + (1 - momentum) * w
            for a, w in zip(average, weights, strict=True)
        ]
    return average


def ema_model(momentum=0.9):
    model = small_vae()
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, use_ema=True, ema_momentum=momentum),
        steps_per_execution=1,
    )
    return model


def assert_weights_close(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("swap_back", [True, False])
@pytest.mark.parametrize("stop_early", [False, True])
def test_validation_and_the_final_model_see_the_averages(stop_early, swap_back):
    model = ema_model()
    ema = tfvae.callbacks.SwapEMAWeights()
    probe = Probe()
    run = [ema, probe, *([ema.swap_back()] if swap_back else [])]
    if stop_early:  # stops after epoch 2 of 3, as early stopping would
        run.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda e, logs: setattr(model, "stop_training", e == 1)
            )
        )
    model.fit(
        X,
        validation_data=X[:100],
        batch_size=BATCH,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=run,
    )
    epochs = 2 if stop_early else 3
    assert len(probe.trained) == 12 * epochs and len(probe.validated) == epochs
    for epoch in range(epochs):
        expected = numpy_ema(probe.trained[: 12 * (epoch + 1)], 0.9)
        assert_weights_close(probe.validated[epoch], expected)
        # ... and not the training weights, which differ from the averages.
        assert changed(probe.validated[epoch], probe.trained[12 * (epoch + 1) - 1])
    assert_weights_close(
        [w.numpy() for w in model.trainable_weights], numpy_ema(probe.trained, 0.9)
    )


def test_the_backup_holds_the_training_weights_and_checkpoints_the_averages(
    tmp_path,
):
    model = ema_model()
    ema = tfvae.callbacks.SwapEMAWeights()
    probe = Probe()
    model.fit(
        X,
        batch_size=BATCH,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[
            probe,
            ema,
            tfvae.callbacks.EpochCheckpoint(tmp_path / "checkpoints"),
            ema.swap_back(),
            tfvae.callbacks.BackupAndRestore(
                tmp_path / "backup", delete_checkpoint=False
            ),
        ],
    )
    averages = numpy_ema(probe.trained, 0.9)
    checkpoint = keras.saving.load_model(tmp_path / "checkpoints" / "epoch-002.keras")
    assert_weights_close([w.numpy() for w in checkpoint.trainable_weights], averages)
    # The backup resumes from the training weights, with the averages kept
    # in the optimizer.
    resumed = ema_model()
    backup = tfvae.callbacks.BackupAndRestore(tmp_path / "backup")
    backup.set_model(resumed)
    backup.on_train_begin()
    assert_weights_close(
        [w.numpy() for w in resumed.trainable_weights], probe.trained[-1]
    )
    resumed.optimizer.finalize_variable_values(resumed.trainable_weights)
    assert_weights_close([w.numpy() for w in resumed.trainable_weights], averages)


def test_swap_ema_weights_needs_an_averaging_optimizer():
    model = small_vae()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="use_ema=True"):
        model.fit(X, verbose=0, callbacks=[tfvae.callbacks.SwapEMAWeights()])
