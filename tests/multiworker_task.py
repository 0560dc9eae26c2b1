"""One worker of the multi-worker test (tests/test_distribute.py runs two).

Usage: python multiworker_task.py OUT_DIR [PRIOR], with TF_CONFIG set. Trains a VAE
for a few steps under MultiWorkerMirroredStrategy, writing its files through
the tfvae callbacks and export into OUT_DIR/worker-<index>/, and its final
weights to OUT_DIR/weights-<index>.npz for the test to compare.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfvae  # noqa: E402

out = sys.argv[1]
prior = sys.argv[2] if len(sys.argv) > 2 else "standard_normal"
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
strategy = tf.distribute.MultiWorkerMirroredStrategy()
mine = os.path.join(out, f"worker-{index}")

x = (np.random.default_rng(0).random((400, 12)) < 0.3).astype("float32")
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = (
    tf.data.experimental.AutoShardPolicy.DATA
)
data = tf.data.Dataset.from_tensor_slices(x).batch(40).with_options(options)


class BackupSeen(keras.callbacks.Callback):
    """Records whether this worker's backup folder exists after each epoch."""

    seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(os.path.isdir(os.path.join(mine, "backup")))


with strategy.scope():
    keras.utils.set_random_seed(1)
    model = tfvae.VAE(
        input_shape=(12,),
        latent_dim=3,
        hidden_units=(8,),
        prior=prior,
        kl="analytic" if prior == "standard_normal" else "mc",
        seed=5,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
initial = [w.numpy() for w in model.trainable_weights]
model.fit(
    data,
    epochs=2,
    verbose=0,
    callbacks=[
        tfvae.callbacks.BackupAndRestore(os.path.join(mine, "backup")),
        tfvae.callbacks.HistoryFile(os.path.join(mine, "history.json")),
        BackupSeen(),
    ],
)
exported = tfvae.export_saved_model(model, os.path.join(mine, "export"), version=1)
np.savez(
    os.path.join(out, f"weights-{index}.npz"),
    *[w.numpy() for w in model.trainable_weights],
)
with open(os.path.join(out, f"result-{index}.json"), "w") as file:
    json.dump(
        {
            "chief": tfvae.distribute.is_chief(strategy),
            "exported": exported,
            "backup_seen": BackupSeen.seen,
            "steps": int(model.optimizer.iterations.numpy()),
            "moved": float(
                max(
                    np.abs(w.numpy() - w0).max()
                    for w, w0 in zip(model.trainable_weights, initial, strict=True)
                )
            ),
        },
        file,
    )
