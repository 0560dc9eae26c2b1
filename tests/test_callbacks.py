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


@pytest.mark.parametrize("model_class", [tfvae.VAE, tfvae.HierarchicalVAE])
def test_kl_warmup_ramps_linearly_to_beta(model_class):
    if model_class is tfvae.VAE:
        model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,), beta=0.8)
    else:
        model = tfvae.HierarchicalVAE(
            input_shape=(12,), latent_dims=(3, 2), hidden_units=((8,), (4,)), beta=0.8
        )
    model.compile(optimizer="adam")
    record = RecordWeight()
    history = model.fit(
        X_BIN,
        batch_size=100,  # 4 steps per epoch
        epochs=3,
        callbacks=[tfvae.callbacks.KLWarmup(epochs=2), record],
        verbose=0,
    )
    expected = [0.8 * min(1.0, (e + b / 4) / 2) for e in range(3) for b in range(4)]
    np.testing.assert_allclose(record.weights, expected, rtol=1e-6)
    np.testing.assert_allclose(
        history.history["kl_weight"], expected[3::4], rtol=1e-6
    )  # the history logs the weight of each epoch's last batch
    assert model.beta == 0.8  # the configured value is unchanged


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
