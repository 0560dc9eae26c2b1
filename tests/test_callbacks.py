import json
import os
import re
import warnings

import keras
import numpy as np
import pytest

import tfvae

X_BIN = (np.random.default_rng(3).random((400, 12)) < 0.3).astype("float32")


class RecordWeight(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_begin(self, batch, logs=None):
        self.weights.append(float(self.model.kl_weight.numpy()))


@pytest.mark.parametrize("steps_per_execution", [1, 2])
@pytest.mark.parametrize("model_class", [tfvae.VAE, tfvae.HierarchicalVAE])
def test_kl_warmup_ramps_linearly_to_beta(model_class, steps_per_execution):
    if model_class is tfvae.VAE:
        model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,), beta=0.8)
    else:
        model = tfvae.HierarchicalVAE(
            input_shape=(12,), latent_dims=(3, 2), hidden_units=((8,), (4,)), beta=0.8
        )
    model.compile(optimizer="adam", steps_per_execution=steps_per_execution)
    record = RecordWeight()
    history = model.fit(
        X_BIN,
        batch_size=100,  # 4 steps per epoch
        epochs=3,
        callbacks=[tfvae.callbacks.KLWarmup(epochs=2), record],
        verbose=0,
    )
    per_batch = [0.8 * min(1.0, (e + b / 4) / 2) for e in range(3) for b in range(4)]
    # Set before each call of the compiled step, which runs
    # `steps_per_execution` batches (each computes its own weight).
    np.testing.assert_allclose(
        record.weights, per_batch[::steps_per_execution], rtol=1e-6
    )
    np.testing.assert_allclose(
        history.history["kl_weight"], per_batch[3::4], rtol=1e-6
    )  # the history logs the weight of each epoch's last batch
    assert model.beta == 0.8  # the configured value is unchanged


@pytest.mark.parametrize("jit_compile", [False, True], ids=["default", "xla"])
@pytest.mark.parametrize("model_class", [tfvae.VAE, tfvae.HierarchicalVAE])
def test_kl_warmup_ramps_every_batch_whatever_the_steps_per_execution(
    model_class, jit_compile
):
    # Each batch of a 10-batch call computes its own weight: training gives the
    # weights of one batch per call (where the callback sets every weight),
    # also when the 10-batch calls are compiled with XLA.
    trained, initial = [], None
    for steps_per_execution in (1, 10):
        if model_class is tfvae.VAE:
            model = tfvae.VAE(
                input_shape=(12,), latent_dim=2, hidden_units=(8,), seed=0
            )
        else:
            model = tfvae.HierarchicalVAE(
                input_shape=(12,),
                latent_dims=(3, 2),
                hidden_units=((8,), (4,)),
                seed=0,
            )
        model.compile(
            optimizer="adam",
            steps_per_execution=steps_per_execution,
            jit_compile=jit_compile and steps_per_execution > 1,
        )
        if initial is None:
            initial = model.get_weights()
        model.set_weights(initial)
        history = model.fit(
            X_BIN,
            batch_size=20,  # 20 batches per epoch: 2 calls of 10
            epochs=2,
            shuffle=False,
            callbacks=[tfvae.callbacks.KLWarmup(epochs=3)],
            verbose=0,
        ).history
        trained.append((model, history))
    (one, one_history), (ten, ten_history) = trained
    for a, b in zip(one.get_weights(), ten.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ten_history["loss"], one_history["loss"], rtol=1e-5)
    assert ten_history["kl_weight"] == one_history["kl_weight"]


def test_kl_weight_stays_put_in_a_later_fit_without_warmup():
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,))
    model.compile(optimizer="adam")
    model.fit(
        X_BIN, batch_size=20, callbacks=[tfvae.callbacks.KLWarmup(epochs=4)], verbose=0
    )
    weight = float(model.kl_weight.numpy())
    assert 0.2 < weight < 0.25  # the weight of the epoch's last batch, 19/80
    model.fit(X_BIN, batch_size=20, verbose=0)
    assert float(model.kl_weight.numpy()) == weight


def test_kl_warmup_resumes_where_it_was():
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,))
    model.compile(optimizer="adam")
    record = RecordWeight()
    model.fit(
        X_BIN,
        batch_size=400,
        epochs=3,
        initial_epoch=2,
        callbacks=[tfvae.callbacks.KLWarmup(epochs=4), record],
        verbose=0,
    )
    assert record.weights == [0.5]


def test_kl_warmup_changes_the_loss_not_the_elbo():
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,))
    model.compile(optimizer="adam")
    history = model.fit(
        X_BIN,
        batch_size=400,
        callbacks=[tfvae.callbacks.KLWarmup(epochs=10)],
        verbose=0,
    ).history
    # One step at weight 0: the loss is -reconstruction alone.
    np.testing.assert_allclose(
        history["loss"], [-history["reconstruction"][0]], rtol=1e-6
    )
    np.testing.assert_allclose(
        history["elbo"], [history["reconstruction"][0] - history["kl"][0]], rtol=1e-6
    )
    assert history["kl"][0] > 0


def test_kl_weight_is_saved_with_the_model(tmp_path):
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,))
    model.kl_weight.assign(0.25)
    model.save(tmp_path / "m.keras")
    assert (
        float(keras.models.load_model(tmp_path / "m.keras").kl_weight.numpy()) == 0.25
    )


@pytest.mark.parametrize("epochs", [0, -1, 1.5])
def test_kl_warmup_rejects_bad_epochs(epochs):
    with pytest.raises(ValueError, match=f"epochs={epochs}"):
        tfvae.callbacks.KLWarmup(epochs=epochs)


class Snapshot(keras.callbacks.Callback):
    """Records the weights and optimizer state at the end of chosen epochs."""

    def __init__(self, epochs=()):
        super().__init__()
        self.epochs = set(epochs)
        self.states = {}

    def state(self):
        return [v.numpy().copy() for v in self.model.weights] + [
            v.numpy().copy() for v in self.model.optimizer.variables
        ]

    def on_train_begin(self, logs=None):
        self.states["begin"] = self.state()

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs:
            self.states[epoch + 1] = self.state()


@pytest.mark.parametrize("model_class", [tfvae.VAE, tfvae.HierarchicalVAE])
def test_backup_resumes_after_a_crash_while_saving(model_class, tmp_path):
    """A save cut short (a kill mid-write) leaves the last complete backup."""

    def build():
        keras.utils.set_random_seed(1)
        if model_class is tfvae.VAE:
            model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,))
        else:
            model = tfvae.HierarchicalVAE(
                input_shape=(12,), latent_dims=(3, 2), hidden_units=((8,), (4,))
            )
        model.compile(optimizer="adam")
        return model

    backup_dir = tmp_path / "backup"
    model = build()
    save_weights = model.save_weights
    calls = []

    def crash_on_third_save(filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 3:
            with open(filepath, "wb") as file:
                file.write(b"\x89HDF\r\n")  # a truncated file, as a kill leaves
            raise KeyboardInterrupt("killed while saving")
        save_weights(filepath, *args, **kwargs)

    model.save_weights = crash_on_third_save
    first = Snapshot(epochs=[2])
    with pytest.raises(KeyboardInterrupt):
        model.fit(
            X_BIN,
            batch_size=100,
            epochs=5,
            callbacks=[first, tfvae.callbacks.BackupAndRestore(str(backup_dir))],
            verbose=0,
        )
    assert len(calls) == 3, "epochs 1 and 2 were backed up, epoch 3 was cut short"

    model = build()
    second = Snapshot()
    history = model.fit(
        X_BIN,
        batch_size=100,
        epochs=5,
        callbacks=[tfvae.callbacks.BackupAndRestore(str(backup_dir)), second],
        verbose=0,
    )
    assert len(history.epoch) == 3  # epochs 3, 4, 5: resumed after epoch 2
    restored, saved = second.states["begin"], first.states[2]
    assert len(restored) == len(saved)
    for a, b in zip(restored, saved, strict=True):
        np.testing.assert_array_equal(a, b)  # weights and optimizer state
    assert int(model.optimizer.iterations.numpy()) == 5 * 4
    assert not backup_dir.exists()  # removed once training completes


def drive_history(callback, model, val_elbos, first_epoch=0):
    """Runs the callback over epochs with the given val_elbo; returns the weights."""
    callback.set_model(model)
    weights = {}
    for epoch, val_elbo in enumerate(val_elbos, start=first_epoch):
        if model.stop_training:
            break
        callback.on_epoch_begin(epoch)
        model.weights[0].assign(np.full(model.weights[0].shape, epoch, "float32"))
        weights[epoch + 1] = model.weights[0].numpy().copy()
        callback.on_epoch_end(epoch, {"loss": 1.0, "val_elbo": val_elbo})
    return weights


def small_vae():
    return tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,))


def test_history_file_stops_early_and_keeps_the_best_weights(tmp_path):
    path, best = tmp_path / "history.json", str(tmp_path / "best.weights.h5")
    model = small_vae()
    model.stop_training = False
    callback = tfvae.callbacks.HistoryFile(path, patience=2, best_weights_path=best)
    weights = drive_history(callback, model, [-10.0, -8.0, -9.0, -8.5, -1.0])
    assert model.stop_training, "2 epochs without a better val_elbo than epoch 2"
    rows = json.loads(path.read_text())
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert rows[1]["val_elbo"] == -8.0 and rows[0]["seconds"] >= 0
    assert callback.best_epoch == 2
    restored = small_vae()
    restored.load_weights(best)
    np.testing.assert_array_equal(restored.weights[0].numpy(), weights[2])


def test_the_best_weights_of_a_compiled_model_leave_out_the_optimizer(tmp_path):
    """A quarter of the file for Adam with a moving average; restored exactly."""
    import h5py

    rng = np.random.default_rng(0)
    x = (rng.random((200, 12)) > 0.5).astype("float32")
    path, best = tmp_path / "history.json", str(tmp_path / "best.weights.h5")
    model = small_vae()
    model.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True))
    callback = tfvae.callbacks.HistoryFile(path, patience=5, best_weights_path=best)
    model.fit(x, validation_data=x, epochs=1, batch_size=100, verbose=0)
    callback.set_model(model)
    callback.on_epoch_begin(0)
    callback.on_epoch_end(0, {"val_elbo": -1.0})
    saved = model.get_weights()
    with h5py.File(best) as file:
        assert "optimizer" not in file or not len(file["optimizer"]["vars"])
    optimizer_state = [v.numpy().copy() for v in model.optimizer.variables]
    model.fit(x, epochs=1, batch_size=100, verbose=0)  # moves weights and state
    state_now = [v.numpy().copy() for v in model.optimizer.variables]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # restore_best is quiet
        callback.restore_best()
    for restored, expected in zip(model.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(restored, expected)
    for value, variable in zip(state_now, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)  # left as it was
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(optimizer_state, state_now, strict=True)
    )


def test_history_file_resumes_its_rows_and_early_stopping(tmp_path):
    path, best = tmp_path / "history.json", str(tmp_path / "best.weights.h5")
    model = small_vae()
    model.stop_training = False
    first = tfvae.callbacks.HistoryFile(path, patience=3, best_weights_path=best)
    drive_history(first, model, [-10.0, -8.0, -9.0, -9.5])  # killed after epoch 4
    # A resumed run restarts at epoch 3 (its last backup): rows 3 and 4 are redone.
    second = tfvae.callbacks.HistoryFile(path, patience=3, best_weights_path=best)
    drive_history(second, model, [-9.0, -9.1, -9.2, -7.0], first_epoch=2)
    assert [row["epoch"] for row in json.loads(path.read_text())] == [1, 2, 3, 4, 5]
    assert model.stop_training and second.best_epoch == 2  # epoch 5 is 3 after 2


def test_history_file_monitors_another_bound(tmp_path):
    path, best = tmp_path / "history.json", str(tmp_path / "best.weights.h5")
    model = small_vae()
    model.stop_training = False
    callback = tfvae.callbacks.HistoryFile(
        path, patience=1, best_weights_path=best, monitor="val_iwae"
    )
    callback.set_model(model)
    for epoch, (elbo, iwae) in enumerate([(-9.0, -8.0), (-9.5, -7.0), (-9.6, -7.5)]):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"val_elbo": elbo, "val_iwae": iwae})
    assert callback.best_epoch == 2  # by val_iwae; val_elbo was best at epoch 1
    assert model.stop_training


def test_history_file_without_early_stopping_never_stops(tmp_path):
    model = small_vae()
    model.stop_training = False
    callback = tfvae.callbacks.HistoryFile(tmp_path / "h.json")
    drive_history(callback, model, [-1.0, -2.0, -3.0, -4.0])
    assert not model.stop_training
    assert len(json.loads((tmp_path / "h.json").read_text())) == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"patience": 2}, "needs `best_weights_path` ending in '.weights.h5'"),
        (
            {"patience": 2, "best_weights_path": "best.h5"},
            "best_weights_path='best.h5'",
        ),
        ({"patience": -1}, "`patience` must be an integer >= 0"),
    ],
)
def test_history_file_rejects_bad_arguments(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        tfvae.callbacks.HistoryFile(tmp_path / "h.json", **kwargs)


def test_history_file_early_stopping_needs_validation(tmp_path):
    model = small_vae()
    callback = tfvae.callbacks.HistoryFile(
        tmp_path / "h.json",
        patience=1,
        best_weights_path=str(tmp_path / "b.weights.h5"),
    )
    callback.set_model(model)
    callback.on_epoch_begin(0)
    with pytest.raises(ValueError, match="needs `val_elbo` in the logs"):
        callback.on_epoch_end(0, {"loss": 1.0})


# --- TensorBoardImages -----------------------------------------------------------

X_IMAGES = (np.random.default_rng(4).random((200, 16)) < 0.3).astype("float32")


def image_events(log_dir):
    """{tag: {step: picture}} of the event files in `log_dir/images`, read back
    with TensorFlow's own reader and the PNGs decoded."""
    import tensorflow as tf

    folder = log_dir / "images"
    found = {}
    for name in sorted(os.listdir(folder)):
        for event in tf.compat.v1.train.summary_iterator(str(folder / name)):
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "images"
                width, height, png = tf.make_ndarray(value.tensor)
                picture = tf.io.decode_png(png).numpy()
                assert picture.shape[:2] == (int(height), int(width))
                assert event.step not in found.setdefault(value.tag, {})
                found[value.tag][event.step] = picture
    return found


class RecordWeights(keras.callbacks.Callback):
    """The model's weights at the end of each epoch."""

    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = self.model.get_weights()


def picture(cells, side, rows, columns=8):
    """A grid drawn here, independently of tfvae: {(row, column): image in [0, 1]}
    of `side` x `side` pixels, 1-pixel white gaps, white where there is none."""
    out = np.full((rows * (side + 1) + 1, columns * (side + 1) + 1, 1), 255, np.uint8)
    for (row, column), image in cells.items():
        top, left = 1 + row * (side + 1), 1 + column * (side + 1)
        pixels = np.clip(np.reshape(image, (side, side, 1)), 0, 1)
        out[top : top + side, left : left + side] = np.round(pixels * 255)
    return out


def expected_grids(model, examples, seed, columns=8):
    """The two grids computed directly from the model: the samples of noise
    `seed`, and rows of originals each over their reconstructions."""
    samples = model.sample(64, seed=seed).numpy()
    recon = model.reconstruct(examples).numpy()
    sample_cells = {divmod(i, columns): image for i, image in enumerate(samples)}
    cells = {}
    for i, (original, reconstruction) in enumerate(zip(examples, recon, strict=True)):
        row, column = divmod(i, columns)
        cells[2 * row, column] = original
        cells[2 * row + 1, column] = reconstruction
    rows = 2 * -(-len(examples) // columns)
    return picture(sample_cells, 4, 8), picture(cells, 4, rows)


@pytest.mark.parametrize("shape", [(16,), (4, 4, 1)], ids=["flat", "image"])
def test_tensorboard_images_writes_the_grids_of_every_other_epoch(shape, tmp_path):
    x = X_IMAGES.reshape(-1, *shape)
    model = tfvae.VAE(input_shape=shape, latent_dim=2, hidden_units=(8,), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    record = RecordWeights()
    examples = x[:12]
    callback = tfvae.callbacks.TensorBoardImages(
        tmp_path, every=2, examples=examples, seed=7
    )
    model.fit(x, batch_size=50, epochs=5, callbacks=[callback, record], verbose=0)
    found = image_events(tmp_path)
    # Epochs 2 and 4, and the last (5), at Keras' 0-based epoch steps.
    assert sorted(found) == ["reconstructions", "samples"]
    assert sorted(found["samples"]) == sorted(found["reconstructions"]) == [1, 3, 4]
    # 64 samples in 8 rows of 8; 12 examples: 2 rows, each over its
    # reconstructions; 4x4 images with 1-pixel gaps.
    assert found["samples"][4].shape == (8 * 5 + 1, 8 * 5 + 1, 1)
    assert found["reconstructions"][4].shape == (4 * 5 + 1, 8 * 5 + 1, 1)
    for step, weights in record.weights.items():
        if step not in found["samples"]:
            continue
        model.set_weights(weights)  # the model as it was at that epoch's end
        samples, reconstructions = expected_grids(model, examples, seed=7)
        np.testing.assert_array_equal(found["samples"][step], samples)
        np.testing.assert_array_equal(found["reconstructions"][step], reconstructions)
    # The same noise, other weights: training shows in the grids.
    assert not np.array_equal(found["samples"][1], found["samples"][4])


def test_tensorboard_images_writes_the_epoch_that_stopped_training(tmp_path):
    class StopAfterThirdEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch == 2

    model = tfvae.VAE(input_shape=(16,), latent_dim=2, hidden_units=(8,), seed=0)
    model.compile(optimizer="adam")
    callback = tfvae.callbacks.TensorBoardImages(tmp_path, every=2, num_samples=3)
    model.fit(
        X_IMAGES,
        batch_size=100,
        epochs=10,
        callbacks=[callback, StopAfterThirdEpoch()],
        verbose=0,
    )
    found = image_events(tmp_path)
    assert list(found) == ["samples"]  # no examples: no reconstructions
    assert sorted(found["samples"]) == [1, 2]  # epoch 2, and 3 where it stopped
    cells = {(0, i): image for i, image in enumerate(model.sample(3, seed=0).numpy())}
    np.testing.assert_array_equal(found["samples"][2], picture(cells, 4, 1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every": 0}, "`every` must be an integer >= 1. Received: every=0"),
        ({"num_samples": 0}, "Received: num_samples=0"),
        ({"columns": 1.5}, "Received: columns=1.5"),
        ({"seed": None}, "Received: seed=None"),
        ({"examples": np.zeros((0, 16))}, "examples of shape (0, 16)"),
    ],
)
def test_tensorboard_images_rejects_bad_arguments(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=re.escape(match)):
        tfvae.callbacks.TensorBoardImages(tmp_path, **kwargs)


@pytest.mark.parametrize(
    "shape, examples, match",
    [
        ((12,), None, "Received: input_shape=(12,)"),
        ((16,), np.zeros((4, 9), "float32"), "examples of shape (4, 9)"),
    ],
)
def test_tensorboard_images_refuses_what_it_cannot_draw_before_training(
    shape, examples, match, tmp_path
):
    model = tfvae.VAE(input_shape=shape, latent_dim=2, hidden_units=(8,))
    model.compile(optimizer="adam")
    callback = tfvae.callbacks.TensorBoardImages(tmp_path / "logs", examples=examples)
    x = np.zeros((10, *shape), "float32")
    with pytest.raises(ValueError, match=re.escape(match)):
        model.fit(x, epochs=1, callbacks=[callback], verbose=0)
    assert not (tmp_path / "logs").exists()
    assert int(model.optimizer.iterations.numpy()) == 0


def test_history_file_logs_the_learning_rate_and_kl_weight(tmp_path):
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,), beta=0.5)
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    plateau = keras.callbacks.ReduceLROnPlateau("loss", factor=0.5, patience=0)
    path = tmp_path / "h.json"
    model.fit(X_BIN, epochs=2, callbacks=[tfvae.callbacks.HistoryFile(path)], verbose=0)
    rows = json.loads(path.read_text())
    assert [row["learning_rate"] for row in rows] == pytest.approx([0.02, 0.02])
    assert [row["kl_weight"] for row in rows] == [0.5, 0.5]  # beta, no warm-up
    # What callbacks before it logged wins: the warm-up's weight, the rate
    # the epoch ran at (the plateau halves it after a worse loss).
    path.unlink()
    warmup = tfvae.callbacks.KLWarmup(epochs=4)
    history = tfvae.callbacks.HistoryFile(path)
    fit = model.fit(
        X_BIN, epochs=3, callbacks=[warmup, plateau, history], verbose=0
    ).history
    rows = json.loads(path.read_text())
    assert [row["kl_weight"] for row in rows] == pytest.approx(fit["kl_weight"])
    assert [row["kl_weight"] for row in rows][0] < 0.5
    assert [row["learning_rate"] for row in rows] == pytest.approx(fit["learning_rate"])
