"""A training run from Python: `tfvae.runs`, what `tfvae train` runs."""

import json
import os

import keras
import numpy as np
import pytest

import tfvae
from tfvae import _images, callbacks, data, heads, runs

# A small Gaussian model on the dequantized digits (offline), with a
# validation split.
DIGITS = {
    "dataset": "digits",
    "likelihood": "gaussian-shared",
    "dequantize": "uniform",
    "latent_dim": 2,
    "hidden_units": "16",
    "learning_rate": 0.03,
    "epochs": 2,
}


def test_a_run_writes_its_folder_and_returns_the_model(tmp_path):
    out = tmp_path / "run"
    result = runs.train(DIGITS, out, verbose=0)
    assert isinstance(result.model, tfvae.VAE) and result.best_epoch is None
    assert result.model_path == os.path.join(out, "model.keras")
    for name in ("model.keras", "run.json", "history.json", "logs"):
        assert (out / name).exists(), name
    assert not (out / "backup").exists()  # removed once the run is complete
    assert sorted(os.listdir(out / "checkpoints")) == [
        "epoch-001.keras",
        "epoch-002.keras",
    ]
    with open(out / "run.json") as file:
        assert json.load(file) == runs.resolve(DIGITS)
    with open(out / "history.json") as file:
        assert [row["epoch"] for row in json.load(file)] == [1, 2]
    head = result.model.likelihood
    assert isinstance(head, heads.GaussianHead) and head.scale == "shared"
    with pytest.raises(ValueError, match="already complete"):
        runs.train(None, out, resume=True)
    with pytest.raises(ValueError, match="exists and is not empty"):
        runs.train(DIGITS, out)


def test_an_interrupted_run_resumes_to_its_last_epoch(tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = callbacks.HistoryFile.on_epoch_end

    def stop_after_the_first_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            raise KeyboardInterrupt  # as a kill after epoch 1 was backed up

    monkeypatch.setattr(
        callbacks.HistoryFile, "on_epoch_end", stop_after_the_first_epoch
    )
    with pytest.raises(KeyboardInterrupt):
        runs.train({**DIGITS, "epochs": 3}, out, verbose=0)
    assert not (out / "model.keras").exists()
    monkeypatch.setattr(callbacks.HistoryFile, "on_epoch_end", original)
    with pytest.raises(ValueError, match="expected config=None"):
        runs.train(DIGITS, out, resume=True)
    result = runs.train(None, out, resume=True, verbose=0)
    with open(out / "history.json") as file:
        assert [row["epoch"] for row in json.load(file)] == [1, 2, 3]
    assert int(result.model.optimizer.iterations.numpy()) == 3 * 13  # 1,257 / 100


def test_early_stopping_returns_the_best_epoch(tmp_path):
    result = runs.train(
        {**DIGITS, "epochs": 3, "early_stopping": 5}, tmp_path / "run", verbose=0
    )
    with open(tmp_path / "run" / "history.json") as file:
        rows = json.load(file)
    assert result.best_epoch == max(rows, key=lambda r: r["val_elbo"])["epoch"]


def test_resolve_merges_defaults_file_and_overrides(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("latent-dim: 7\nepochs: 4\nmodel: hvae\n")
    config = runs.resolve(str(path), epochs=9, beta=None)
    assert config == {**runs.DEFAULTS, "latent_dim": 7, "epochs": 9, "model": "hvae"}
    assert runs.read_config(path) == {"latent_dim": 7, "epochs": 4, "model": "hvae"}


@pytest.mark.parametrize(
    "config, match",
    [
        ({"epoch": 3}, r"unknown options in the run configuration: \['epoch'\]"),
        ({"inference": "ladder"}, "applies to --model hvae only"),
        ({"model": "gan"}, "model must be one of"),
        (
            {"dataset": "no_valid_split.npz", "early_stopping": 3},
            "needs a validation split",
        ),
        ({"prior": "vamp:0"}, r"The K of vamp:K must be a positive integer"),
        ({"prior": "flat"}, r"Unknown prior 'flat'"),
        ({"model": "hvae", "kl": "mc"}, "applies to --model vae only"),
        # Found when the model is built, still before the run folder.
        (
            {
                **DIGITS,
                "model": "hvae",
                "latent_dims": "2,2",
                "prior": "vamp:3",
                "hidden_units": "8;8",
            },
            "inference='ladder'",
        ),
        ({**DIGITS, "prior": "mog:2", "kl": "analytic"}, "needs a prior with a"),
    ],
)
def test_bad_configurations_fail_before_any_file_is_written(config, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        runs.train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "likelihood, scale",
    [
        ("gaussian", "diagonal"),
        ("gaussian-shared", "shared"),
        ("gaussian-fixed:0.5", 0.5),
    ],
)
def test_build_model_takes_every_likelihood_name(likelihood, scale):
    config = runs.resolve(likelihood=likelihood, model="hvae", latent_dims="3,2")
    model = runs.build_model(config, (12,))
    assert isinstance(model, tfvae.HierarchicalVAE) and model.latent_dims == (3, 2)
    assert model.hidden_units == ((200, 200), (100, 100))
    assert model.likelihood.scale == scale
    vae = runs.build_model(runs.resolve(), (12,))
    assert vae.hidden_units == (200, 200) and isinstance(
        vae.likelihood, heads.BernoulliHead
    )
    assert np.isfinite(vae.count_params())


@pytest.mark.parametrize(
    "config, prior, kl",
    [
        ({}, tfvae.priors.StandardNormal, "analytic"),
        ({"prior": "mog:4"}, tfvae.priors.MixtureOfGaussians, "mc"),
        ({"prior": "vamp:6", "kl": "mc"}, tfvae.priors.VampPrior, "mc"),
        ({"kl": "mc"}, tfvae.priors.StandardNormal, "mc"),
    ],
)
def test_build_model_takes_the_prior_and_picks_the_kl(config, prior, kl):
    model = runs.build_model(runs.resolve(config), (12,))
    assert type(model.prior) is prior and model.kl == kl
    hvae = runs.build_model(
        runs.resolve({"model": "hvae", "inference": "ladder", "prior": "vamp:6"}),
        (12,),
    )
    assert isinstance(hvae.prior, tfvae.priors.VampPrior)
    assert hvae.prior.num_pseudo_inputs == 6


def test_a_run_with_a_vampprior_trains_and_resumes_its_pseudo_inputs(tmp_path):
    config = {**DIGITS, "prior": "vamp:10", "epochs": 1}
    result = runs.train(config, tmp_path / "run", verbose=0)
    u = result.model.prior.pseudo_inputs().numpy()
    assert u.shape == (10, 64) and 0.0 <= u.min() and u.max() <= 1.0
    with open(tmp_path / "run" / "run.json") as file:
        assert json.load(file)["prior"] == "vamp:10"


def test_a_run_with_the_stability_options(tmp_path):
    out = tmp_path / "run"
    config = {
        **DIGITS,
        "ema": 0.9,
        "grad_clip": 5.0,
        "skip_threshold": 1e4,
        "max_consecutive_skips": 3,
    }
    result = runs.train(config, out, verbose=0)
    optimizer = result.model.optimizer
    assert optimizer.use_ema and optimizer.ema_momentum == 0.9
    assert optimizer.global_clipnorm == 5.0
    assert result.model.skip_threshold == 1e4
    assert result.model.max_consecutive_skips == 3
    with open(out / "history.json") as file:
        rows = json.load(file)
    assert [row["skipped"] for row in rows] == [0.0, 0.0]
    assert all(row["grad_norm"] > 0 for row in rows)
    # The last checkpoint holds the averages, and so does the returned model.
    checkpoint = keras.saving.load_model(out / "checkpoints" / "epoch-002.keras")
    for a, b in zip(
        checkpoint.trainable_weights, result.model.trainable_weights, strict=True
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The averages are swapped in for the checkpoints and the best weights,
    # and the training weights back for the backup (tests/test_stability.py).
    run_callbacks, _ = runs._callbacks(runs.resolve(config), tmp_path / "again")
    kinds = [type(c).__name__ for c in run_callbacks]
    assert kinds.index("SwapEMAWeights") < kinds.index("EpochCheckpoint")
    assert kinds.index("HistoryFile") < kinds.index("_SwapBack")
    assert kinds.index("_SwapBack") == kinds.index("BackupAndRestore") - 1


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("ema", 1.0, "'ema' must be a momentum in"),
        ("grad_clip", -1.0, "'grad_clip' must be a finite number >= 0"),
        ("skip_threshold", 0, "'skip_threshold' must be a number > 0"),
        ("max_consecutive_skips", 0, "'max_consecutive_skips' must be an integer"),
    ],
)
def test_bad_stability_options(option, value, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        runs.train({**DIGITS, option: value}, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_a_convolutional_run_takes_images(tmp_path):
    config = {**DIGITS, "architecture": "conv", "epochs": 1}
    result = runs.train(config, tmp_path / "run", verbose=0)
    assert result.model.architecture == "conv"
    assert result.model.input_shape == (8, 8, 1)
    assert result.model.likelihood.projection == "pixel"
    hvae = runs.train(
        {
            **config,
            "model": "hvae",
            "latent_dims": "3,2",
            "hidden_units": ";8",
            "inference": "top_down",
            "skip": True,
        },
        tmp_path / "hvae",
        verbose=0,
    )
    assert hvae.model.architecture == "conv" and hvae.model.skip


def test_a_convolutional_run_needs_images(tmp_path):
    path = tmp_path / "flat.npy"
    np.save(path, np.random.default_rng(0).random((20, 16)).astype("float32"))
    with pytest.raises(ValueError, match="--architecture conv needs a dataset of"):
        runs.train(
            {**DIGITS, "dataset": str(path), "architecture": "conv"},
            tmp_path / "run",
            verbose=0,
        )
    assert not (tmp_path / "run").exists()


def test_an_autoregressive_likelihood_gives_an_mlp_run_images(tmp_path):
    config = {**DIGITS, "likelihood": "pixelcnn:2", "epochs": 1}
    result = runs.train(config, tmp_path / "run", verbose=0)
    assert result.model.architecture == "mlp"
    assert result.model.input_shape == (8, 8, 1)
    assert result.model.likelihood.image_shaped
    path = tmp_path / "flat.npy"
    np.save(path, np.random.default_rng(0).random((20, 16)).astype("float32"))
    with pytest.raises(ValueError, match="--likelihood pixelcnn:2 needs a dataset of"):
        runs.train({**config, "dataset": str(path)}, tmp_path / "flat", verbose=0)
    assert not (tmp_path / "flat").exists()


def image_steps(log_dir):
    """{tag: sorted steps} of the images in `log_dir/images` (every event file)."""
    import tensorflow as tf

    steps = {}
    folder = os.path.join(log_dir, "images")
    for name in os.listdir(folder):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return {tag: sorted(found) for tag, found in steps.items()}


def test_images_every_writes_the_grids_and_survives_a_resume(tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = callbacks.BackupAndRestore.on_epoch_end

    def stop_after_the_second_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt  # a kill once epoch 2 is backed up

    monkeypatch.setattr(
        callbacks.BackupAndRestore, "on_epoch_end", stop_after_the_second_epoch
    )
    config = {**DIGITS, "epochs": 5, "images_every": 2}
    with pytest.raises(KeyboardInterrupt):
        runs.train(config, out, verbose=0)
    assert image_steps(out / "logs") == {"samples": [1], "reconstructions": [1]}
    monkeypatch.setattr(callbacks.BackupAndRestore, "on_epoch_end", original)
    runs.train(None, out, resume=True, verbose=0)
    with open(out / "run.json") as file:
        assert json.load(file)["images_every"] == 2
    # Epochs 2 and 4, and the last (5): Keras' 0-based steps 1, 3 and 4.
    assert image_steps(out / "logs") == {
        "samples": [1, 3, 4],
        "reconstructions": [1, 3, 4],
    }


def test_images_every_needs_examples_it_can_draw(tmp_path):
    path = tmp_path / "flat.npz"
    np.savez(path, train=np.zeros((20, 12), "float32"))
    with pytest.raises(ValueError, match=r"Received: images_every=3"):
        runs.train({"dataset": str(path), "images_every": 3}, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_conditional_run_draws_a_row_per_class_and_reconstructs_with_labels(
    tmp_path,
):
    import tensorflow as tf

    out = tmp_path / "run"
    result = runs.train({**DIGITS, "conditional": True, "images_every": 1}, out)
    model = result.model
    assert model.num_classes == 10
    pictures = {}
    folder = out / "logs" / "images"
    for name in os.listdir(folder):
        for event in tf.compat.v1.train.summary_iterator(str(folder / name)):
            for value in event.summary.value:
                pictures[value.tag] = tf.io.decode_png(value.tensor.string_val[2])
    # The samples of the last epoch: a row of 8 per class, from seed 0.
    labels = np.repeat(np.arange(10), 8)
    expected = _images.grid(model.sample(80, seed=0, labels=labels), (8, 8, 1), 8)
    np.testing.assert_array_equal(pictures["samples"].numpy(), expected)
    # The reconstructions: 32 validation images with their labels.
    x, y = data.load(
        "digits", "valid", dequantize="uniform", seed=0, limit=32, labels=True
    )
    recon = model.reconstruct(x, labels=y).numpy()
    expected = _images.grid(_images.pairs(x, recon, 8), (8, 8, 1), 8)
    np.testing.assert_array_equal(pictures["reconstructions"].numpy(), expected)


def _weights(model):
    return [w.numpy() for w in model.weights]


def test_init_starts_a_run_from_the_weights_of_another(tmp_path):
    first = runs.train({**DIGITS, "epochs": 1}, tmp_path / "first", verbose=0)
    # Another objective and K, and a learning rate too small to move the
    # weights: the run ends where its init began.
    tuned = {
        **DIGITS,
        "epochs": 1,
        "objective": "iwae",
        "num_samples": 3,
        "learning_rate": 1e-12,
    }
    init = str(tmp_path / "first" / "model.keras")
    second = runs.train({**tuned, "init": init}, tmp_path / "second", verbose=0)
    for a, b in zip(_weights(first.model), _weights(second.model), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-8)
    with open(tmp_path / "second" / "run.json") as file:
        assert json.load(file)["init"] == init
    # Without init the same options start from a fresh initialization.
    fresh = runs.train(tuned, tmp_path / "fresh", verbose=0)
    assert any(
        not np.allclose(a, b, atol=1e-3)
        for a, b in zip(_weights(first.model), _weights(fresh.model), strict=True)
    )


def test_init_takes_a_preset_name(tmp_path):
    recipe = runs.read_config(os.path.join("zoo", "vae_gaussian_digits", "recipe.yaml"))
    config = {
        **recipe,
        "epochs": 1,
        "learning_rate": 1e-12,
        "init": "vae_gaussian_digits",
    }
    result = runs.train(config, tmp_path / "run", verbose=0)
    preset = tfvae.zoo.load("vae_gaussian_digits")
    for a, b in zip(preset.weights, result.model.weights, strict=True):
        if b is result.model.kl_weight:
            # The run's own, not the preset's 1.0: the 20-epoch warm-up's
            # ramp at the last of epoch 1's 13 batches (1,257 examples).
            assert a.numpy() == 1.0
            assert b.numpy() == pytest.approx(12 / 13 / 20)
        else:
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-8)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"latent_dim": 3}, r"'init' must have the run's weights: .* has shape"),
        (
            {"model": "hvae", "hidden_units": "16;16", "latent_dims": "2,2"},
            "'init' must be a HierarchicalVAE, the run's model",
        ),
    ],
)
def test_init_refuses_another_model_before_any_file_is_written(
    changes, match, tmp_path
):
    runs.train({**DIGITS, "epochs": 1}, tmp_path / "first", verbose=0)
    init = str(tmp_path / "first" / "model.keras")
    with pytest.raises(ValueError, match=match):
        runs.train({**DIGITS, **changes, "init": init}, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("init", "no/such/model.keras", "'init' must be a .keras file or a preset"),
        ("init", 3, "'init' must be a .keras file or a preset name, or unset"),
        ("xla", "yes", "'xla' must be true or false"),
    ],
)
def test_bad_init_and_xla_options(option, value, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        runs.train({**DIGITS, option: value}, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_xla_compiles_the_steps(tmp_path):
    result = runs.train(
        {**DIGITS, "epochs": 1, "xla": True}, tmp_path / "run", verbose=0
    )
    assert result.model.jit_compile is True
    with open(tmp_path / "run" / "history.json") as file:
        (row,) = json.load(file)
    assert np.isfinite(row["loss"]) and np.isfinite(row["val_elbo"])
