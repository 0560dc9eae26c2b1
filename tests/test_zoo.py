"""The model zoo: presets that verify, refuse corruption, and load offline."""

import hashlib
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import warnings

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from test_data import http_server

import tfvae
from tfvae import _images, zoo


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
        "manifest.json",
        "metadata.json",
        "model.weights.h5",
        "samples.png",
    ]
    assert meta["parameters"] == model.count_params()
    assert meta["class_name"] == "VAE" and meta["name"] == "tiny"
    assert meta["tfvae_version"] == tfvae.__version__
    card = (folder / "README.md").read_text()
    assert meta["sha256"] in card and "a test preset" in card
    assert meta["weights_sha256"] in card
    # The preset's sha256 is that of its manifest, which lists every other file.
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (
        sorted(manifest["files"])
        == sorted(os.listdir(folder))[:2] + sorted(os.listdir(folder))[3:]
    )
    assert (
        zoo.info(folder)["sha256"] == meta["sha256"] == sha256(folder / "manifest.json")
    )
    assert manifest["files"]["model.weights.h5"] == meta["weights_sha256"]
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


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def flip_a_byte(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def relu_instead_of_linear(path):
    """The probe's change: same weight shapes, another network."""
    text = path.read_text()
    assert '"activation": "tanh"' in text
    path.write_text(text.replace('"activation": "tanh"', '"activation": "relu"', 1))


def another_metric(path):
    path.write_text(path.read_text().replace('"elbo": -1.0', '"elbo": -0.5'))


def a_line_more(path):
    path.write_text(path.read_text() + "\nTrust me.\n")


# Every way a file of a preset can be changed after publishing: (file, change).
TAMPERS = [
    ("config.json", relu_instead_of_linear),
    ("model.weights.h5", flip_a_byte),
    ("metadata.json", another_metric),
    ("README.md", a_line_more),
    ("samples.png", flip_a_byte),
    ("recipe.yaml", a_line_more),
]


@pytest.fixture
def recipe_preset(tmp_path):
    """A preset with every kind of file, the recipe included."""
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(
        input_shape=(16,), latent_dim=2, hidden_units=(8,), activation="tanh"
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("latent_dim: 2\n")
    meta = zoo.save_preset(
        model,
        tmp_path / "tiny",
        {"description": "a test preset", "metrics": {"elbo": -1.0}},
        extra_files={"recipe.yaml": recipe},
    )
    return tmp_path / "tiny", meta


@pytest.mark.parametrize("file, change", TAMPERS, ids=[t[0] for t in TAMPERS])
def test_a_changed_file_of_a_folder_preset_is_named_and_nothing_loads(
    file, change, recipe_preset
):
    folder, meta = recipe_preset
    zoo.load(folder)  # it verifies before the change
    change(folder / file)
    for call in (zoo.load, zoo.info, tfvae.VAE.from_preset):
        with pytest.raises(zoo.PresetError, match=f"File '{file}' of the preset"):
            call(str(folder))


def test_a_missing_an_unlisted_or_a_linked_file_is_refused(recipe_preset, tmp_path):
    folder, meta = recipe_preset
    (folder / "notes.txt").write_text("extra")
    with pytest.raises(zoo.PresetError, match="'notes.txt'.*is not listed"):
        zoo.load(folder)
    (folder / "notes.txt").unlink()
    os.replace(folder / "samples.png", tmp_path / "samples.png")
    with pytest.raises(zoo.PresetError, match="'samples.png'.*is missing"):
        zoo.load(folder)
    os.symlink(tmp_path / "samples.png", folder / "samples.png")
    with pytest.raises(zoo.PresetError, match="'samples.png'.*symbolic link"):
        zoo.load(folder)
    (folder / "samples.png").unlink()
    os.replace(tmp_path / "samples.png", folder / "samples.png")
    (folder / "manifest.json").unlink()
    with pytest.raises(zoo.PresetError, match="has no manifest.json"):
        zoo.load(folder)


def test_the_card_must_show_the_true_sha256(recipe_preset):
    folder, meta = recipe_preset
    card = folder / "README.md"
    card.write_text(card.read_text().replace(meta["sha256"], "1" * 64))
    with pytest.raises(zoo.PresetError, match="'README.md'.*shows sha256"):
        zoo.load(folder)


def test_a_folder_checked_against_a_given_sha256_in_either_case(recipe_preset):
    folder, meta = recipe_preset
    assert zoo.load(folder, sha256=meta["sha256"].upper()) is not None
    with pytest.raises(zoo.PresetError, match="expected 0000"):
        zoo.load(folder, sha256="0" * 64)
    for bad in ("abc", 12, "g" * 64):
        with pytest.raises(zoo.PresetError, match="must be a sha256: 64 hex"):
            zoo.load(folder, sha256=bad)


def test_a_changed_copy_of_a_shipped_preset_is_refused(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(os.path.join(ROOT, "zoo", "vae_gaussian_digits"), copy)
    assert zoo.info(copy)["sha256"] == zoo_registry()["vae_gaussian_digits"]
    # Changed consistently, manifest and card rewritten: it verifies as a
    # folder, but it is not the shipped preset it names.
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"tanh"', '"relu"'))
    card = copy / "README.md"
    old = zoo_registry()["vae_gaussian_digits"]
    card.write_text(card.read_text().replace(old, "0" * 64))
    (copy / "manifest.json").unlink()
    tfvae._manifest.write(copy)
    with pytest.raises(zoo.PresetError, match="a shipped preset.*changed copy"):
        zoo.load(copy)


def test_presets_load_from_a_url_with_their_sha256(recipe_preset, tmp_path):
    folder, meta = recipe_preset
    cache = tmp_path / "cache"
    with http_server(folder) as url:
        model = zoo.load(url, sha256=meta["sha256"], cache_dir=cache)
        assert model.count_params() == meta["parameters"]
        # Either case; the same cached copy.
        zoo.load(url, sha256=meta["sha256"].upper(), cache_dir=cache)
        assert len(os.listdir(cache)) == 1
        with pytest.raises(zoo.PresetError, match="needs its sha256"):
            zoo.load(url, cache_dir=tmp_path / "cache2")
        with pytest.raises(zoo.PresetError, match="nothing was loaded or kept"):
            zoo.load(url, sha256="0" * 64, cache_dir=tmp_path / "cache3")
    assert not os.listdir(tmp_path / "cache3")  # the refused download is gone


@pytest.mark.parametrize("file, change", TAMPERS, ids=[t[0] for t in TAMPERS])
def test_a_tampered_url_is_refused_and_the_genuine_one_then_loads(
    file, change, recipe_preset, tmp_path
):
    folder, meta = recipe_preset
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    change(tampered / file)
    cache = tmp_path / "cache"
    with http_server(tampered) as url:
        with pytest.raises(zoo.PresetError, match=f"File '{file}'"):
            zoo.load(url, sha256=meta["sha256"], cache_dir=cache)
    assert not os.listdir(cache)  # nothing of it is kept
    with http_server(folder) as url:  # the genuine preset, same sha256
        model = zoo.load(url, sha256=meta["sha256"], cache_dir=cache)
    assert model.count_params() == meta["parameters"]


def test_a_cached_url_preset_is_verified_on_every_use(recipe_preset, tmp_path):
    folder, meta = recipe_preset
    cache = tmp_path / "cache"
    with http_server(folder) as url:
        zoo.load(url, sha256=meta["sha256"], cache_dir=cache)
        (cached,) = os.listdir(cache)
        relu_instead_of_linear(cache / cached / "config.json")
        # The damaged copy is dropped and the genuine preset fetched again.
        model = zoo.load(url, sha256=meta["sha256"], cache_dir=cache)
    assert model.get_config()["activation"] == "tanh"
    assert (cache / cached / "config.json").read_bytes() == (
        folder / "config.json"
    ).read_bytes()
    # Offline, a damaged cache cannot be repaired: refused, not loaded.
    relu_instead_of_linear(cache / cached / "config.json")
    with pytest.raises(zoo.PresetError, match="Could not download"):
        zoo.load(url, sha256=meta["sha256"], cache_dir=cache)
    # The cache is keyed by URL and sha256: another URL is another entry.
    with http_server(folder) as other:
        assert other != url
        zoo.load(other, sha256=meta["sha256"], cache_dir=cache)
    assert len(os.listdir(cache)) == 1  # the damaged entry was removed


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
    again = zoo.info(tmp_path / "again")
    assert again["weights_sha256"] == zoo.info(folder)["weights_sha256"]


def test_load_model_takes_a_keras_file_a_preset_folder_or_a_name(preset, tmp_path):
    model, folder, _ = preset
    model.save(tmp_path / "tiny.keras")
    expected = model.sample(2, seed=1)
    for source in (str(tmp_path / "tiny.keras"), str(folder), folder):
        loaded = zoo.load_model(source)
        np.testing.assert_array_equal(loaded.sample(2, seed=1), expected)
    assert zoo.load_model("vae_bernoulli_bmnist_2d").latent_dim == 2
    with pytest.raises(ValueError, match=r"no such model file or preset: nosuch \("):
        zoo.load_model("nosuch")
    with pytest.raises(zoo.PresetError):  # a folder is checked as a preset
        zoo.load_model(str(tmp_path))


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


def test_a_dynamically_binarized_preset_records_and_follows_its_protocol(tmp_path):
    run = tmp_path / "run"
    tfvae.runs.train(
        {
            "dataset": "digits",
            "binarize": "dynamic",
            "latent_dim": 2,
            "hidden_units": "8",
            "epochs": 1,
        },
        run,
        verbose=0,
    )
    meta = zoo.publish(run, tmp_path / "dyn", num_samples=10, binarizations=2)
    assert meta["data"]["binarizations"] == 2
    assert len(meta["metrics"]["log_likelihood_per_binarization"]) == 2
    model = keras.models.load_model(run / "model.keras")
    grey = tfvae.data.load("digits", "test")
    expected = tfvae.certify(model, grey, num_samples=10, seed=0, binarizations=2)
    assert meta["metrics"]["log_likelihood"] == round(expected["log_likelihood"], 3)
    # verify measures by the card's protocol: the same numbers.
    recorded, measured = zoo.verify(str(tmp_path / "dyn"), num_samples=10)
    assert recorded["log_likelihood"] == round(measured["log_likelihood"], 3)
    assert measured["binarizations"] == 2
    # The default protocol has DEFAULT_BINARIZATIONS draws.
    default = zoo.publish(run, tmp_path / "dyn3", num_samples=2)
    assert default["data"]["binarizations"] == zoo.DEFAULT_BINARIZATIONS
    # A run on fixed data has no protocol of binarizations.
    static = tmp_path / "static"
    tfvae.runs.train(
        {"dataset": "digits", "latent_dim": 2, "hidden_units": "8", "epochs": 1},
        static,
        verbose=0,
    )
    with pytest.raises(ValueError, match="has binarize=None"):
        zoo.publish(static, tmp_path / "static_preset", binarizations=2)
    assert not (tmp_path / "static_preset").exists()


def test_a_conditional_run_publishes_and_verifies_with_its_labels(tmp_path):
    run = tmp_path / "run"
    tfvae.runs.train(
        {
            "dataset": "digits",
            "conditional": True,
            "binarize": "dynamic",
            "latent_dim": 2,
            "hidden_units": "8",
            "epochs": 1,
        },
        run,
        verbose=0,
    )
    meta = zoo.publish(run, tmp_path / "cond", num_samples=10, binarizations=2)
    assert meta["num_classes"] == 10
    card = (tmp_path / "cond" / "README.md").read_text()
    assert "label y of 10 classes" in card and "a row of 8 per class" in card
    # The card's samples: a row of 8 per class, seed 0.
    model = keras.models.load_model(run / "model.keras")
    labels = np.repeat(np.arange(10), 8)
    expected = _images.grid(
        model.sample(80, seed=0, labels=labels).numpy(), model.input_shape, 8
    )
    picture = tf.io.decode_png(tf.io.read_file(str(tmp_path / "cond" / "samples.png")))
    np.testing.assert_array_equal(picture.numpy(), expected)
    # The log-likelihood is log p(x | y) of the test images with their labels.
    grey, y = tfvae.data.load("digits", "test", labels=True)
    certified = tfvae.certify(model, (grey, y), num_samples=10, seed=0, binarizations=2)
    assert meta["metrics"]["log_likelihood"] == round(certified["log_likelihood"], 3)
    recorded, measured = zoo.verify(str(tmp_path / "cond"), num_samples=10)
    assert recorded["log_likelihood"] == round(measured["log_likelihood"], 3)
    assert zoo.load(str(tmp_path / "cond")).num_classes == 10


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
        "manifest.json",
    ):
        assert os.path.exists(os.path.join(folder, file)), file
    assert sha256(os.path.join(folder, "manifest.json")) == zoo_registry()[name]
    assert os.path.getsize(os.path.join(folder, "model.weights.h5")) < 10 * 2**20
    assert meta["metrics"]["num_samples"] == 5000


def test_the_zoo_has_the_promised_presets():
    assert zoo.list() == [
        "cvae_bernoulli_fashion",
        "hvae2_bernoulli_bmnist",
        "hvae2_vampprior_bmnist",
        "hvae2_vampprior_dmnist",
        "pixelhvae2_vampprior_caltech",
        "vae_bernoulli_bmnist",
        "vae_bernoulli_bmnist_2d",
        "vae_gaussian_digits",
        "vae_vampprior_bmnist",
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


# Without the editable install's import hook, as after `pip install .`.
NON_EDITABLE = (
    "import sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
)


@pytest.mark.slow
def test_a_non_editable_install_ships_the_presets(tmp_path):
    """`pip install .`: the presets load, from anywhere and from the clone root.

    In the clone's root the source `tfvae/` shadows the installed package,
    which alone has `tfvae.presets`: the source tree reads its `zoo/`.
    """
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
    checkout = tmp_path / "clone"
    for part in ("tfvae", "zoo"):
        shutil.copytree(
            os.path.join(ROOT, part),
            checkout / part,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    env = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "3"}
    editable = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    cases = [
        (tmp_path, target, NON_EDITABLE, env),  # installed, used elsewhere
        (checkout, checkout, NON_EDITABLE, env),  # installed, in a clone's root
        (ROOT, ROOT, "", editable),  # `pip install -e .`, in the clone's root
    ]
    for cwd, home, prefix, env in cases:
        script = prefix + (
            "import tfvae\n"
            f"assert tfvae.__file__.startswith({str(home)!r}), tfvae.__file__\n"
            "m = tfvae.zoo.load('vae_bernoulli_bmnist_2d')\n"
            "print(m.count_params())\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert (
            int(result.stdout.split()[-1])
            == zoo.info("vae_bernoulli_bmnist_2d")["parameters"]
        )
