"""Keras callbacks for training the tfvae models."""

import keras

from tfvae import _checks

__all__ = ["KLWarmup"]


@keras.saving.register_keras_serializable(package="tfvae")
class KLWarmup(keras.callbacks.Callback):
    """Ramps the KL weight linearly from 0 up to the model's `beta`.

    Deep hierarchies collapse (upper layers carry no information) when the KL
    term weighs fully from the first step; warming it up lets the layers learn
    to encode first (Sønderby et al. 2016; Bowman et al. 2016). The weight,
    `model.kl_weight`, is updated before every training batch:
    beta * min(1, (epoch + batch / steps_per_epoch) / epochs), so it is 0 at the
    start of training and reaches `beta` after `epochs` epochs. It is logged
    as `kl_weight` in the history at the end of each epoch. Resuming with
    `initial_epoch` continues the ramp where it was.

    Only the training loss is affected: the reported `elbo` always has weight 1.

    Args:
        epochs: number of epochs of the ramp, >= 1.

    Example:

    ```python
    model.fit(x, epochs=20, callbacks=[tfvae.callbacks.KLWarmup(epochs=10)])
    ```
    """

    def __init__(self, epochs):
        super().__init__()
        self.epochs = _checks.positive_int(epochs, "epochs")
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        steps = (self.params or {}).get("steps") or 1
        if not (self.params or {}).get("steps"):
            batch = 0  # unknown epoch length: the ramp moves once per epoch
        progress = min(1.0, (self._epoch + batch / steps) / self.epochs)
        self.model.kl_weight.assign(self.model.beta * progress)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["kl_weight"] = float(self.model.kl_weight.numpy())

    def get_config(self):
        return {"epochs": self.epochs}
