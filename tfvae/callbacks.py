"""Keras callbacks for training the tfvae models."""

import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfvae import _checks, _files, _images, conditional, distribute

__all__ = [
    "BackupAndRestore",
    "EpochCheckpoint",
    "HistoryFile",
    "KLWarmup",
    "SwapEMAWeights",
    "TensorBoardImages",
]


@keras.saving.register_keras_serializable(package="tfvae")
class KLWarmup(keras.callbacks.Callback):
    """Ramps the KL weight linearly from 0 up to the model's `beta`.

    Deep hierarchies collapse (upper layers carry no information) when the KL
    term weighs fully from the first step; warming it up lets the layers learn
    to encode first (Sønderby et al. 2016; Bowman et al. 2016). The weight,
    `model.kl_weight`, is beta * min(1, (epoch + batch / steps_per_epoch) / epochs) at
    every training batch (`tfvae.training.kl_warmup_weight`), so it is 0 at the start of
    training and reaches `beta` after `epochs` epochs. The callback sets it before each
    call of the compiled step; when a call runs several batches (`steps_per_execution`,
    10 by default in tfvae's `compile`), the later batches compute their own weight in
    the graph from the same formula, so the ramp is the same whatever
    `steps_per_execution`. It is logged as `kl_weight` in the history at the end of each
    epoch. Resuming with `initial_epoch` continues the ramp where it was.

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
        steps = (self.params or {}).get("steps")
        if not steps:
            batch = 0  # unknown epoch length: the ramp moves once per epoch
        # `tfvae.training.kl_warmup_weight`, for this batch and the later
        # batches of this call of the compiled step.
        self.model.schedule_kl_warmup(self._epoch, batch, steps, self.epochs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["kl_weight"] = float(self.model.kl_weight.numpy())

    def get_config(self):
        return {"epochs": self.epochs}


class SwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """Evaluates and saves the moving average of the weights, in a run that resumes.

    The average is Keras' own: an optimizer with `use_ema=True` (and
    `ema_momentum`, e.g. 0.999) keeps an exponential moving average of the
    weights as optimizer state, updated in the compiled step, saved with the
    optimizer in backups, and the same under `tf.distribute`. Why not a
    callback that averages the weights itself: it would run outside the
    compiled step (slow with `steps_per_execution`), and its state would need
    saving of its own. This callback decides which weights are seen where:

    - validation during `fit` sees the averages (as Keras' callback does);
    - with `swap_back()`, a second callback placed after the ones that save
      weights and before `BackupAndRestore`: at each epoch's end the
      averages are in the model for the callbacks between the two
      (checkpoints, the best weights of `HistoryFile`), and the training
      weights are back for the backup, so a resumed run goes on exactly as
      an uninterrupted one (without it, epoch-end callbacks see the
      training weights);
    - when `fit` returns, the model holds the averages (Keras'
      `finalize_variable_values`), also when training stopped early. Keras'
      own callback with `swap_on_epoch=True` leaves the training weights in
      the model after an early stop, and backs up the swapped state.

    Example:

    ```python
    model.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True,
                                                  ema_momentum=0.999))
    ema = tfvae.callbacks.SwapEMAWeights()
    model.fit(x, validation_data=x_valid, epochs=100, callbacks=[
        ema, tfvae.callbacks.EpochCheckpoint("checkpoints"), ema.swap_back(),
        tfvae.callbacks.BackupAndRestore("backup"),
    ])
    ```
    """

    def __init__(self):
        super().__init__(swap_on_epoch=False)
        self._swapped_back = False

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        if not getattr(optimizer, "use_ema", False):
            raise ValueError(
                "SwapEMAWeights needs an optimizer that keeps a moving average "
                "of the weights: compile with e.g. keras.optimizers.Adam(..., "
                f"use_ema=True). Received: {type(optimizer).__name__} with "
                f"use_ema={getattr(optimizer, 'use_ema', None)}"
            )

    def _swap(self, averages_in_model):
        if self._ema_weights_in_model != averages_in_model:
            self._swap_variables()
            self._ema_weights_in_model = averages_in_model

    def on_epoch_begin(self, epoch, logs=None):
        self._swap(False)  # train the training weights, whatever came before

    def on_epoch_end(self, epoch, logs=None):
        # Only with a `swap_back` to undo it: else `fit`'s end would put the
        # training weights (then the optimizer's copy) into the model.
        if self._swapped_back:
            self._swap(True)

    def swap_back(self):
        """The callback that puts the training weights back after an epoch."""
        self._swapped_back = True
        return _SwapBack(self)


class _SwapBack(keras.callbacks.Callback):
    def __init__(self, owner):
        super().__init__()
        self.owner = owner

    def on_epoch_end(self, epoch, logs=None):
        self.owner._swap(False)


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backups survive a kill.

    Keras writes its backup in place, so a process killed while writing (a
    preempted job, a `SIGKILL`) leaves a truncated `latest.weights.h5` that the
    next run cannot read. This callback writes each backup (weights, optimizer
    state and the epoch counter) into a new folder that is renamed into place
    when complete, and only then removes the previous one: at every moment the
    backup folder holds one complete, self-consistent state, and a resumed run
    continues from the last one that was finished. The state of the model's
    noise (`model.seed_generator`, which Keras keeps out of the weights) is
    backed up too, so that a resumed tfvae run draws the noise an unkilled
    one would.

    In a multi-worker cluster only the chief writes the backup
    (`tfvae.distribute.is_chief`); every worker restores from it, so
    `backup_dir` must be a folder all workers can read.

    The arguments are those of `keras.callbacks.BackupAndRestore`
    (`double_checkpoint` is accepted but not needed); `backup_dir` must be a
    local path.

    Example:

    ```python
    backup = tfvae.callbacks.BackupAndRestore("runs/mnist/backup")
    model.fit(x, epochs=100, callbacks=[backup])  # run again after a crash
    ```
    """

    _PREFIX = "state-"

    @classmethod
    def completed_epochs(cls, backup_dir):
        """The epochs completed by the state a run in `backup_dir` resumes from."""
        states = cls._states_in(backup_dir)
        if not states:
            return 0
        path = os.path.join(backup_dir, states[-1], "training_metadata.json")
        with open(path) as file:
            return int(json.load(file)["epoch"])

    @classmethod
    def _states_in(cls, backup_dir):
        """The complete backup states in `backup_dir`, oldest first."""
        if not os.path.isdir(backup_dir):
            return []
        return sorted(n for n in os.listdir(backup_dir) if n.startswith(cls._PREFIX))

    def _states(self):
        return self._states_in(self.backup_dir)

    def _use(self, name):
        folder = os.path.join(self.backup_dir, name)
        self._weights_path = os.path.join(folder, "latest.weights.h5")
        self._training_metadata_path = os.path.join(folder, "training_metadata.json")

    def on_train_begin(self, logs=None):
        if os.path.isdir(self.backup_dir):
            for name in os.listdir(self.backup_dir):
                if name.startswith(".partial-"):  # a save that was cut short
                    shutil.rmtree(os.path.join(self.backup_dir, name))
        states = self._states()
        if states:
            self._use(states[-1])
            self._load_model()
            with open(self._training_metadata_path) as file:
                seed_state = json.load(file).get("seed_state")
            generator = getattr(self.model, "seed_generator", None)
            if seed_state is not None and generator is not None:
                # The model's noise goes on from where the backed-up run was.
                generator.state.assign(np.asarray(seed_state, generator.state.dtype))

    def _save_model(self):
        if not distribute.is_chief(self.model.distribute_strategy):
            return  # in a multi-worker cluster, the chief alone writes
        os.makedirs(self.backup_dir, exist_ok=True)
        previous = self._states()
        self._sequence = getattr(self, "_sequence", 0) + 1
        name = (
            f"{self._PREFIX}{self._current_epoch:06d}-{self._last_batch_seen:09d}"
            f"-{self._sequence:06d}"
        )
        staging = tempfile.mkdtemp(prefix=".partial-", dir=self.backup_dir)
        try:
            self._use(os.path.basename(staging))
            self.model.save_weights(self._weights_path)
            metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
            generator = getattr(self.model, "seed_generator", None)
            if generator is not None:  # a tfvae model's noise state
                metadata["seed_state"] = generator.state.numpy().tolist()
            with open(self._training_metadata_path, "w") as file:
                json.dump(metadata, file)
            os.replace(staging, os.path.join(self.backup_dir, name))
        finally:
            if os.path.isdir(staging):
                shutil.rmtree(staging)
        for old in previous:
            if old != name:
                shutil.rmtree(os.path.join(self.backup_dir, old), ignore_errors=True)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the model to `folder/epoch-NNN.keras` after every epoch, atomically.

    Each file is written as `.epoch-NNN.partial.keras` and renamed into place
    when complete, so a process killed while saving never leaves a truncated
    `epoch-NNN.keras`; the partial files of a killed run are removed when
    training begins again. In a multi-worker cluster only the chief writes.

    Args:
        folder: the folder of the checkpoints.
    """

    def __init__(self, folder):
        super().__init__()
        self.folder = os.fspath(folder)

    def path(self, epoch):
        """The checkpoint of `epoch` (counted from 1)."""
        return os.path.join(self.folder, f"epoch-{epoch:03d}.keras")

    def on_train_begin(self, logs=None):
        if os.path.isdir(self.folder):
            for name in os.listdir(self.folder):
                if name.endswith(".partial.keras"):  # a save cut short
                    os.remove(os.path.join(self.folder, name))

    def on_epoch_end(self, epoch, logs=None):
        if not distribute.is_chief(self.model.distribute_strategy):
            return
        os.makedirs(self.folder, exist_ok=True)
        final = self.path(epoch + 1)
        partial = os.path.join(self.folder, f".epoch-{epoch + 1:03d}.partial.keras")
        self.model.save(partial)
        os.replace(partial, final)


class HistoryFile(keras.callbacks.Callback):
    """Writes each epoch's logs to a JSON file; optionally stops early.

    After every epoch the file at `path` is rewritten atomically with one row
    per epoch (`{"epoch": 1, "loss": ..., "val_elbo": ..., "seconds": ...}`).
    Each row also holds the epoch's `learning_rate` (the optimizer's, unless a
    callback before this one logged it, as `ReduceLROnPlateau` does) and
    `kl_weight` (the model's KL weight, unless `KLWarmup` logged it), so that
    `tfvae.plots` can draw them.
    Rows of a previous run with an epoch at or below the one training starts
    from are kept, so a run resumed with `keras.callbacks.BackupAndRestore`
    (or `initial_epoch`) continues the same file.

    With `patience` > 0, it also does early stopping on `monitor` (the
    validation ELBO by default): the weights of the epoch with the highest
    value so far are saved to
    `best_weights_path` (the model's weights, not the optimizer's: a quarter
    of the file for Adam with a moving average), and training stops once
    `patience` epochs have passed without a better one. The state is the file
    itself, so early stopping resumes correctly after an interruption.
    Restore the best weights after `fit` with `restore_best()` (or
    `model.load_weights(best_weights_path)`, which warns that the file holds
    no optimizer state); `best_epoch` says which epoch they are from. In a
    multi-worker cluster only the chief writes (`tfvae.distribute.is_chief`);
    every worker stops at the same epoch.

    Args:
        path: the JSON file (its folder must exist).
        patience: epochs without a better `val_elbo` before training stops;
            0 turns early stopping off.
        best_weights_path: where the best weights go (a `.weights.h5` file);
            required when `patience` > 0.
        monitor: the logged value to maximize, `"val_elbo"` by default;
            `"val_iwae"` for a model trained on the IWAE bound.

    Example:

    ```python
    history = tfvae.callbacks.HistoryFile(
        "run/history.json", patience=50, best_weights_path="run/best.weights.h5"
    )
    model.fit(x, validation_data=x_valid, epochs=1000, callbacks=[history])
    history.restore_best()
    ```
    """

    def __init__(self, path, patience=0, best_weights_path=None, monitor="val_elbo"):
        super().__init__()
        self.path = str(path)
        self.monitor = monitor
        self.patience = _checks.positive_int(patience, "patience", minimum=0)
        if self.patience and not str(best_weights_path or "").endswith(".weights.h5"):
            raise ValueError(
                "Early stopping (patience > 0) needs `best_weights_path` ending in "
                f"'.weights.h5'. Received: best_weights_path={best_weights_path!r}"
            )
        self.best_weights_path = best_weights_path
        self.rows = None

    @property
    def best_epoch(self):
        """The epoch (1-based) with the highest `monitor` value, or None."""
        rows = [row for row in self.rows or () if self.monitor in row]
        if not rows:
            return None
        return max(rows, key=lambda row: row[self.monitor])["epoch"]

    def restore_best(self):
        """Loads the best epoch's weights into the model (see the class)."""
        _files.load_model_weights(self.model, self.best_weights_path)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        if self.rows is None:
            self.rows = []
            if os.path.exists(self.path):
                with open(self.path) as file:
                    self.rows = [
                        row for row in json.load(file) if row["epoch"] <= epoch
                    ]

    def _schedules(self):
        """The learning rate and KL weight the model holds now, where it has them."""
        values = {}
        optimizer = getattr(self.model, "optimizer", None)
        rate = getattr(optimizer, "learning_rate", None)
        if rate is not None:
            values["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
        weight = getattr(self.model, "kl_weight", None)
        if weight is not None:
            values["kl_weight"] = float(keras.ops.convert_to_numpy(weight))
        return values

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        row.update({k: v for k, v in self._schedules().items() if k not in row})
        row["seconds"] = time.perf_counter() - self._epoch_start
        self.rows.append(row)
        chief = distribute.is_chief(self.model.distribute_strategy)
        if chief:
            _files.write_json(self.path, self.rows)
        if not self.patience:
            return
        if self.monitor not in row:
            raise ValueError(
                f"Early stopping needs `{self.monitor}` in the logs: pass "
                f"`validation_data` to `fit`. Logs of epoch {epoch + 1}: {sorted(row)}"
            )
        best = self.best_epoch
        if best == epoch + 1 and chief:
            partial = (
                self.best_weights_path[: -len(".weights.h5")] + ".partial.weights.h5"
            )
            _files.save_model_weights(self.model, partial)
            os.replace(partial, self.best_weights_path)
        elif epoch + 1 - best >= self.patience:
            print(f"early stopping: no better {self.monitor} since epoch {best}")
            self.model.stop_training = True


class TensorBoardImages(keras.callbacks.Callback):
    """Writes grids of samples and reconstructions to TensorBoard during training.

    Every `every` epochs, and after the last epoch (also one that stopped
    training early), it writes two images to `log_dir/images` with
    `tf.summary.image`:

    - `samples`: `model.sample(num_samples, seed=seed)`, decoder means of
      prior draws from the same noise every time, so that the grids show
      how training changes what one set of latent values decodes to (of a
      class-conditional model: a row of `columns` samples per class, class
      0 first, `num_samples` aside);
    - `reconstructions`: with `examples`, rows of originals each followed by
      the row of their reconstructions, `model.reconstruct(examples)`.

    The step of an image is the epoch as Keras counts it, from 0: the step of
    `keras.callbacks.TensorBoard`'s epoch curves, so with
    `TensorBoard(log_dir)` beside it, TensorBoard shows the images of an
    epoch beside its curves (as the run `images`). Examples are drawn as
    square images when flat (784 values: 28x28), or as (height, width) or
    (height, width, 1 or 3) images. In a multi-worker cluster only the chief
    writes. A run resumed by `BackupAndRestore` redoes the epochs after its
    last backup, and writes their images again at the same steps, as
    `keras.callbacks.TensorBoard` does its curves: the later ones are those of
    the weights it goes on from.

    Args:
        log_dir: the TensorBoard log folder (the images go to its `images`
            folder).
        every: write every `every` epochs (and after the last), >= 1.
        num_samples: the number of samples in the grid, >= 1.
        examples: an array of examples of the model's `input_shape` to
            reconstruct (of a class-conditional model: the pair `(x,
            labels)`), or None for no reconstructions.
        columns: images per row of a grid, >= 1.
        seed: the integer seed of the samples' noise.

    Example:

    ```python
    model.fit(x, epochs=20, callbacks=[
        keras.callbacks.TensorBoard("logs"),
        tfvae.callbacks.TensorBoardImages("logs", every=5, examples=x_valid[:32]),
    ])
    ```
    """

    def __init__(
        self, log_dir, every=1, num_samples=64, examples=None, columns=8, seed=0
    ):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.every = _checks.positive_int(every, "every")
        self.num_samples = _checks.positive_int(num_samples, "num_samples")
        self.columns = _checks.positive_int(columns, "columns")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(
                f"`seed` must be an integer (the same noise every epoch). "
                f"Received: seed={seed!r}"
            )
        self.seed = int(seed)
        self.labels = None
        if isinstance(examples, tuple) and len(examples) == 2:  # (x, labels)
            examples, self.labels = examples[0], np.asarray(examples[1])
        if examples is not None:
            examples = np.asarray(examples, np.float32)
            if examples.ndim < 2 or not len(examples):
                raise ValueError(
                    "`examples` must be a non-empty array of examples, shape "
                    f"(n, *input_shape). Received: examples of shape {examples.shape}"
                )
        self.examples = examples
        self._writer = None
        self._last_epoch = None
        self._last_written = None

    @property
    def images_dir(self):
        """The folder of the event files, `log_dir/images`."""
        return os.path.join(self.log_dir, "images")

    def sample_images(self):
        """The images of the `samples` grid: decoder means from fixed noise.

        A row of `columns` per class for a class-conditional model.
        """
        if not self.model.num_classes:
            return self.model.sample(self.num_samples, seed=self.seed)
        labels = conditional.rows_of_classes(self.model.num_classes, self.columns)
        return self.model.sample(len(labels), seed=self.seed, labels=labels)

    def reconstruction_images(self):
        """The images of the `reconstructions` grid: originals, then theirs.

        Each row of `columns` originals is followed by the row of their
        reconstructions; None without `examples`.
        """
        if self.examples is None:
            return None
        inputs = self.examples
        if self.model.num_classes:
            inputs = (self.examples, self.labels)
        reconstructions = keras.ops.convert_to_numpy(self.model.reconstruct(inputs))
        return _images.pairs(self.examples, reconstructions, self.columns)

    def on_train_begin(self, logs=None):
        shape = tuple(self.model.input_shape)
        try:
            _images.image_shape(shape)
        except ValueError:
            raise ValueError(
                "TensorBoardImages draws examples as images: the model's "
                "examples must have a square number of values, or shape "
                f"(height, width) or (height, width, 1 or 3). Received: "
                f"input_shape={shape}"
            ) from None
        if self.examples is not None and self.examples.shape[1:] != shape:
            raise ValueError(
                f"`examples` must have the model's input shape {shape}. "
                f"Received: examples of shape {self.examples.shape}"
            )
        if self.examples is not None and self.model.num_classes:
            if self.labels is None:
                raise ValueError(
                    "a class-conditional model reconstructs examples with their "
                    "labels: pass examples=(x, labels). Received: examples "
                    f"without labels, shape {self.examples.shape}"
                )
            self.model.checked_labels(self.labels, count=len(self.examples))
        self._last_epoch = self._last_written = None
        if distribute.is_chief(self.model.distribute_strategy):
            self._writer = tf.summary.create_file_writer(self.images_dir)

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        last = epoch + 1 == (self.params or {}).get("epochs")
        if (epoch + 1) % self.every == 0 or last:
            self._write(epoch)

    def on_train_end(self, logs=None):
        if self._last_epoch is not None and self._last_written != self._last_epoch:
            self._write(self._last_epoch)  # training stopped early
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write(self, epoch):
        self._last_written = epoch
        if self._writer is None:  # not the chief
            return
        grids = {"samples": self.sample_images()}
        reconstructions = self.reconstruction_images()
        if reconstructions is not None:
            grids["reconstructions"] = reconstructions
        shape = self.model.input_shape
        with self._writer.as_default():
            for name, images in grids.items():
                picture = _images.grid(
                    keras.ops.convert_to_numpy(images), shape, self.columns
                )
                tf.summary.image(name, picture[None], step=epoch)
        self._writer.flush()
