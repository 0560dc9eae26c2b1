"""The model zoo: presets that verify, refuse corruption, and load offline."""

import json
import math
import os
import shutil
import subprocess
import sys
import warnings

import h5py
import keras
import numpy as np
import pytest
from test_data import http_server

import tfvae
from tfvae import zoo


def zoo_registry():
    """The shipped registry, read as data."""
    with open(
        os.path.join(os.path.dirname(__file__), "..", "zoo", "registry.json")
    ) as file:
        return json.load(file)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X_BIN = (np.random.default_rng(8).random((20, 12)) < 0.3).astype("float32")


@pytest.fixture
def preset(tmp_path):
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(input_shape=(16,), latent_dim=2, hidden_units=(8,))
    meta = zoo.save_preset(
        model,
        tmp_path / "tiny",
        {"description": "a test preset", "metrics": {"elbo": -1.0}},
    )
    return model, tmp_path / "tiny", meta


def test_save_preset_writes_every_file_and_loads_back(preset):
    model, folder, meta = preset
    assert sorted(os.listdir(folder)) == [
        "README.md",
        "config.json",
        "metadata.json",
        "model.weights.h5",
        "samples.png",
    ]
    assert meta["parameters"] == model.count_params()
    assert meta["class_name"] == "VAE" and meta["name"] == "tiny"
    assert meta["tfvae_version"] == tfvae.__version__
    card = (folder / "README.md").read_text()
    assert meta["sha256"] in card and "a test preset" in card
    loaded = zoo.load(folder)
    x = np.random.default_rng(0).random((3, 16)).astype("float32")
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    assert zoo.info(folder)["metrics"] == {"elbo": -1.0}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        zoo.save_preset(model, folder)


def test_presets_keep_no_optimizer_state_and_load_compiled(tmp_path):
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(X_BIN, epochs=1, batch_size=10, verbose=0)
    zoo.save_preset(model, tmp_path / "trained", samples=False)
    with h5py.File(tmp_path / "trained" / "model.weights.h5") as file:
        assert "optimizer" not in file
    loaded = zoo.load(tmp_path / "trained")
    np.testing.assert_array_equal(
        loaded.predict(X_BIN, verbose=0), model.predict(X_BIN, verbose=0)
    )
    # Compiled as saved, with a fresh optimizer: it trains on at once.
    assert loaded.optimizer.learning_rate.numpy() == pytest.approx(3e-3)
    assert int(loaded.optimizer.iterations.numpy()) == 0
    loaded.fit(X_BIN, epochs=1, batch_size=10, verbose=0)


def test_presets_with_an_optimizer_state_still_load():
    # The shipped presets written before the state was left out hold one.
    path = os.path.join(ROOT, "zoo", "vae_bernoulli_bmnist_2d", "model.weights.h5")
    with h5py.File(path) as file:
        assert "optimizer" in file
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and without a warning
        model = zoo.load("vae_bernoulli_bmnist_2d")
    assert model.optimizer is not None and model.sample(2, seed=0).shape == (2, 784)


def test_corrupted_weights_are_refused(preset):
    _, folder, meta = preset
    weights = folder / "model.weights.h5"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(zoo.PresetError, match="nothing was loaded"):
        zoo.load(folder)


def test_presets_load_from_a_url_with_their_sha256(preset, tmp_path):
    _, folder, meta = preset
    with http_server(folder) as url:
        model = zoo.load(url, sha256=meta["sha256"], cache_dir=tmp_path / "cache")
        assert model.count_params() == meta["parameters"]
        with pytest.raises(zoo.PresetError, match="needs its sha256"):
            zoo.load(url, cache_dir=tmp_path / "cache2")
        with pytest.raises(zoo.PresetError, match="nothing was loaded"):
            zoo.load(url, sha256="0" * 64, cache_dir=tmp_path / "cache3")
    assert not os.listdir(tmp_path / "cache3")  # the refused download is gone


def test_from_preset_loads_its_class_and_refuses_the_other(preset, tmp_path):
    model, folder, _ = preset
    loaded = tfvae.VAE.from_preset(str(folder))
    np.testing.assert_array_equal(loaded.sample(2, seed=1), model.sample(2, seed=1))
    assert isinstance(tfvae.latent.LatentVariableModel.from_preset(folder), tfvae.VAE)
    with pytest.raises(zoo.PresetError, match="holds a 'VAE' model, not a Hier"):
        tfvae.HierarchicalVAE.from_preset(str(folder))
    hvae = tfvae.HierarchicalVAE.from_preset("hvae2_bernoulli_bmnist")
    assert hvae.latent_dims == (40, 40)
    with pytest.raises(zoo.PresetError, match="tfvae.HierarchicalVAE.from_preset"):
        tfvae.VAE.from_preset("hvae2_bernoulli_bmnist")
    with pytest.raises(zoo.PresetError, match="nothing was loaded"):
        tfvae.VAE.from_preset(str(folder), sha256="0" * 64)
    model.save_to_preset(tmp_path / "again", samples=False)
    assert zoo.info(tmp_path / "again")["sha256"] == zoo.info(folder)["sha256"]


def test_publish_certifies_a_run_and_writes_the_registry(tmp_path):
    run = tmp_path / "run"
    tfvae.runs.train(
        {
            "dataset": "digits",
            "likelihood": "gaussian-shared",
            "dequantize": "uniform",
            "latent_dim": 2,
            "hidden_units": "8",
            "epochs": 1,
        },
        run,
        verbose=0,
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("dataset: digits\n")
    # A zoo folder: its registry.json receives the new preset's sha256.
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / zoo.REGISTRY_FILE).write_text('{"other": "abc"}')
    meta = zoo.publish(
        run, tmp_path / "zoo" / "tiny_digits", recipe=recipe, num_samples=20
    )
    with open(tmp_path / "zoo" / zoo.REGISTRY_FILE) as file:
        assert json.load(file) == {"other": "abc", "tiny_digits": meta["sha256"]}
    folder = tmp_path / "zoo" / "tiny_digits"
    assert (folder / "recipe.yaml").read_text() == "dataset: digits\n"
    # Its metrics are the certificate of the run's model on the test split.
    model = keras.models.load_model(run / "model.keras")
    x = tfvae.data.load("digits", "test", seed=0, dequantize="uniform")
    expected = tfvae.certify(model, x, num_samples=20, seed=0, levels=17)
    metrics = meta["metrics"]
    assert metrics["log_likelihood"] == round(expected["log_likelihood"], 3)
    assert metrics["active_units"] == expected["active_units"]
    assert metrics["bits_per_dim"] == round(expected["bits_per_dim"], 4)
    assert zoo.load(folder).count_params() == meta["parameters"]
    # Elsewhere, no registry is written.
    zoo.publish(run, tmp_path / "loose" / "tiny", num_samples=20)
    assert not (tmp_path / "loose" / zoo.REGISTRY_FILE).exists()


def test_unknown_names_suggest_the_closest():
    with pytest.raises(
        zoo.PresetError, match="Unknown preset 'vae_bernoulli_bmnist2d'"
    ) as info:
        zoo.load("vae_bernoulli_bmnist2d")
    assert "vae_bernoulli_bmnist_2d" in str(info.value)
    with pytest.raises(zoo.PresetError, match="Presets:"):
        zoo.info("nothing_like_it")


@pytest.mark.parametrize("name", zoo.list())
def test_every_shipped_preset_matches_its_metadata_and_registry(name):
    meta = zoo.info(name)
    model = zoo.load(name)
    assert model.count_params() == meta["parameters"]
    assert meta["sha256"] == zoo_registry()[name]
    folder = os.path.join(ROOT, "zoo", name)
    for file in (
        "config.json",
        "model.weights.h5",
        "metadata.json",
        "README.md",
        "recipe.yaml",
    ):
        assert os.path.exists(os.path.join(folder, file)), file
    assert os.path.getsize(os.path.join(folder, "model.weights.h5")) < 10 * 2**20
    assert meta["metrics"]["num_samples"] == 5000


def test_the_zoo_has_the_promised_presets():
    assert zoo.list() == [
        "hvae2_bernoulli_bmnist",
        "vae_bernoulli_bmnist",
        "vae_bernoulli_bmnist_2d",
        "vae_gaussian_digits",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.list())
def test_test_elbo_on_500_random_images_agrees_with_the_card(name, binarized_mnist):
    recorded, measured = zoo.verify(name, num_samples=10, subset=500, seed=1)
    # The card's ELBO is over the 10,000 test images, this one over 500 of them:
    # they agree within 4 standard errors of their difference.
    error = math.hypot(measured["elbo_stderr"], recorded["elbo_stderr"])
    assert abs(measured["elbo"] - recorded["elbo"]) < 4 * error, (measured, recorded)


def test_the_offline_main_job_needs_no_data_and_no_network(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TFVAE_DATA_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "empty"), TF_CPP_MIN_LOG_LEVEL="3")
    env.update(http_proxy="http://127.0.0.1:1", https_proxy="http://127.0.0.1:1")
    command = shutil.which("tfvae", path=os.path.dirname(sys.executable))
    for args in (
        ["sample", "vae_bernoulli_bmnist", "--out", str(tmp_path / "s.png")],
        ["zoo", "list"],
        ["zoo", "info", "vae_bernoulli_bmnist_2d"],
    ):
        result = subprocess.run(
            [command, *args], capture_output=True, text=True, env=env, timeout=300
        )
        assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "s.png").exists()
    assert "vae_bernoulli_bmnist_2d" in result.stdout
    assert (
        json.loads(result.stdout)["sha256"] == zoo_registry()["vae_bernoulli_bmnist_2d"]
    )


@pytest.mark.slow
def test_a_non_editable_install_ships_the_presets(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            ROOT,
        ],
        check=True,
        capture_output=True,
    )
    script = (
        "import sys, tfvae\n"
        f"assert tfvae.__file__.startswith({str(target)!r}), tfvae.__file__\n"
        "m = tfvae.zoo.load('vae_bernoulli_bmnist_2d')\n"
        "print(m.count_params())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        int(result.stdout.split()[-1])
        == zoo.info("vae_bernoulli_bmnist_2d")["parameters"]
    )
