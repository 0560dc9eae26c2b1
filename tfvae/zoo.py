"""The model zoo: pretrained presets with checksums and measured certificates of fit.

A preset is a folder of four files: `config.json` (the serialized model),
`model.weights.h5`, `metadata.json` (sha256 of the weights, parameter count,
versions, data, training recipe and measured metrics with the commands that
measured them) and a `README.md` model card. The presets ship inside the
package (`zoo/` in the repository, installed as `tfvae.presets`). The sha256
of every preset's weights is kept both in its metadata and in the shipped
registry, `registry.json` beside the preset folders, and is checked on every
load before anything is loaded. The registry is data: `publish` (`tfvae zoo
publish`) writes the entry of a preset it publishes into a zoo folder.

The models take presets the keras-hub way too: `tfvae.VAE.from_preset(name)`
and `model.save_to_preset(folder)`.
"""

import difflib
import hashlib
import importlib.resources
import json
import os
import platform
import shutil
import urllib.request

import keras

from tfvae import _checks, _files, certificate, data
from tfvae.version import __version__

__all__ = [
    "list",
    "info",
    "load",
    "publish",
    "save_preset",
    "verify",
    "PresetError",
    "REGISTRY_FILE",
]

# The registry of a zoo folder: {preset name: sha256 of its model.weights.h5}.
# A shipped preset is listed only once it is in the package's registry.
REGISTRY_FILE = "registry.json"

_FILES = ("config.json", "model.weights.h5", "metadata.json", "README.md")


class PresetError(ValueError):
    """A preset that cannot be found or does not verify."""


def _presets_root():
    return importlib.resources.files("tfvae.presets")


def _registry():
    """The shipped registry: {name: sha256 of the weights}."""
    return json.loads((_presets_root() / REGISTRY_FILE).read_text())


def list():  # noqa: A001 (the zoo's public verb, as in keras_hub)
    """The names of the presets shipped with tfvae, sorted."""
    return sorted(_registry())


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unknown(name):
    close = difflib.get_close_matches(str(name), list(), n=3, cutoff=0.5)
    hint = f" Closest: {close}." if close else ""
    return PresetError(
        f"Unknown preset {name!r}.{hint} Presets: {list()}; or pass a preset "
        "folder path, or a URL of a preset folder with sha256=."
    )


def _folder(name):
    """The local folder of a preset name or path."""
    if name in _registry():
        return str(_presets_root() / name)
    if os.path.isdir(os.fspath(name)):
        return os.fspath(name)
    raise _unknown(name)


def info(name):
    """The metadata of a preset (a dict), from its `metadata.json`."""
    with open(os.path.join(_folder(name), "metadata.json")) as file:
        return json.load(file)


def _download_preset(url, sha256, cache_dir):
    if sha256 is None:
        raise PresetError(
            f"Loading a preset from a URL needs its sha256=. Received: {url}"
        )
    base = url if url.endswith("/") else url + "/"
    target = os.path.join(cache_dir, sha256)
    if os.path.isdir(target):
        return target
    with _files.staged_folder(target, prefix=".download-") as staging:
        for file in ("config.json", "model.weights.h5", "metadata.json"):
            with urllib.request.urlopen(base + file, timeout=60) as response:
                with open(os.path.join(staging, file), "wb") as out:
                    shutil.copyfileobj(response, out)
        actual = _sha256(os.path.join(staging, "model.weights.h5"))
        if actual != sha256:
            raise PresetError(
                f"The weights at {base} have sha256 {actual}, expected {sha256}; "
                "nothing was loaded."
            )
    return target


def load(name, sha256=None, cache_dir=None, model_class=None):
    """A ready model from a preset name, a preset folder, or a URL of one.

    The sha256 of the weights is checked against the preset's metadata (and,
    for a shipped preset, the registry; for a URL, `sha256`) before the model
    is built; a mismatch raises `PresetError` and nothing is loaded.

    Args:
        name: a name from `tfvae.zoo.list()`, a preset folder path, or an
            `http(s)://` or `file://` URL of a preset folder.
        sha256: the expected sha256 of the weights; required for a URL.
        cache_dir: where URL presets are kept (default: the data cache,
            `~/.cache/tfvae/presets`).
        model_class: refuse, before anything is deserialized, a preset whose
            model is not of this class (or a subclass), as
            `tfvae.VAE.from_preset` does.

    Example:

    ```python
    model = tfvae.zoo.load("vae_bernoulli_bmnist_2d")
    images = model.sample(16, seed=0)
    ```
    """
    name = os.fspath(name)
    if name.startswith(("http://", "https://", "file://")):
        cache_dir = cache_dir or os.path.join(data.search_path()[-1], "presets")
        folder = _download_preset(name, sha256, cache_dir)
    else:
        folder = _folder(name)
    metadata = info(folder)
    weights = os.path.join(folder, "model.weights.h5")
    actual = _sha256(weights)
    expected = {metadata.get("sha256"), _registry().get(name, metadata.get("sha256"))}
    if sha256 is not None:
        expected.add(sha256)
    if expected != {actual}:
        raise PresetError(
            f"The weights of preset {name!r} have sha256 {actual}, expected "
            f"{sorted(e for e in expected if e)}; nothing was loaded."
        )
    with open(os.path.join(folder, "config.json")) as file:
        config = json.load(file)
    if model_class is not None:
        _check_class(config, model_class, name)
    # The weights first, into an uncompiled model: presets written before
    # optimizer states were left out still hold one, which is not restored.
    compile_config = config.pop("compile_config", None)
    model = keras.saving.deserialize_keras_object(config)
    model.load_weights(weights)
    if compile_config is not None:
        model.compile_from_config(compile_config)  # a fresh optimizer
    return model


def _weights_only(model):
    """The model itself if uncompiled, else an uncompiled copy of its weights.

    A preset's weights leave out the optimizer's state (for Adam, twice the
    weights): a loaded preset gets a fresh optimizer, and the file is a third
    of the size.
    """
    if getattr(model, "optimizer", None) is None:
        return model
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def _card(metadata):
    """The model card, README.md, from the metadata."""
    metrics = metadata.get("metrics", {})
    lines = [
        f"# {metadata['name']}",
        "",
        metadata.get("description", ""),
        "",
        f"- Model: `{metadata['class_name']}`, {metadata['parameters']:,} parameters.",
        f"- Data: {metadata.get('dataset', '')}; {metadata.get('preprocessing', '')}",
        f"- Objective: {metadata.get('objective', '')}",
        f"- Training: `{metadata.get('training_command', '')}` "
        f"({metadata.get('training_time', '')} on {metadata.get('hardware', '')})",
        f"- sha256 of `model.weights.h5`: `{metadata['sha256']}`",
        f"- tfvae {metadata['tfvae_version']}, Keras {metadata['keras_version']}",
        "",
        "## Measured on the test split",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {key} | {value} |" for key, value in metrics.items()]
    if metadata.get("evaluation_command"):
        lines += [
            "",
            "Measured by:",
            "",
            "```bash",
            metadata["evaluation_command"],
            "```",
        ]
    if metadata.get("samples"):
        lines += ["", "## Samples", "", "![samples](samples.png)"]
    return "\n".join(lines) + "\n"


def save_preset(
    model, folder, metadata=None, samples=True, overwrite=False, extra_files=None
):
    """Writes a preset folder: config, weights, metadata and model card.

    Args:
        model: a `tfvae.latent.LatentVariableModel` (`tfvae.VAE`,
            `tfvae.HierarchicalVAE`, ...).
        folder: the preset folder to write.
        metadata: a dict merged into the metadata: `name`, `description`,
            `dataset`, `preprocessing`, `objective`, `training_command`,
            `training_time`, `hardware`, `metrics` (a dict), and
            `evaluation_command` are shown on the card.
        samples: also draw `samples.png` (64 samples, seed 0) for the card.
        overwrite: replace an existing non-empty folder; otherwise that raises
            `FileExistsError` before anything is written.
        extra_files: {name in the folder: path to copy}, e.g. the recipe.

    Returns:
        The metadata written.
    """
    folder = os.fspath(folder)
    if os.path.isdir(folder) and os.listdir(folder) and not overwrite:
        raise FileExistsError(
            f"The preset folder {folder!r} exists and is not empty; "
            "pass overwrite=True."
        )
    with _files.staged_folder(folder, prefix=".preset-") as staging:
        with open(os.path.join(staging, "config.json"), "w") as file:
            json.dump(keras.saving.serialize_keras_object(model), file, indent=2)
        weights = os.path.join(staging, "model.weights.h5")
        _weights_only(model).save_weights(weights)
        meta = {
            "name": os.path.basename(os.path.abspath(folder)),
            "class_name": type(model).__name__,
            "parameters": int(model.count_params()),
            "input_shape": [int(d) for d in model.input_shape],
            "tfvae_version": __version__,
            "keras_version": keras.__version__,
            **(metadata or {}),
            "sha256": _sha256(weights),
        }
        if samples:
            from tfvae import _images

            picture = _images.grid(
                model.sample(64, seed=0).numpy(), model.input_shape, 8
            )
            _images.write_png(picture, os.path.join(staging, "samples.png"))
            meta["samples"] = "samples.png"
        with open(os.path.join(staging, "metadata.json"), "w") as file:
            json.dump(meta, file, indent=2)
        with open(os.path.join(staging, "README.md"), "w") as file:
            file.write(_card(meta))
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, os.path.join(staging, name))
    return meta


def _check_class(config, model_class, name):
    """Refuses a preset config whose model is not a `model_class`."""
    found = keras.saving.get_registered_object(config.get("registered_name", ""))
    if found is None or not issubclass(found, model_class):
        raise PresetError(
            f"Preset {name!r} holds a {config.get('class_name')!r} model, not a "
            f"{model_class.__name__}: load it with "
            f"tfvae.{config.get('class_name')}.from_preset or tfvae.zoo.load; "
            "nothing was loaded."
        )


def verify(name, num_samples=5000, subset=None, seed=0, data_dir=None):
    """Recomputes a preset's test metrics: (recorded metrics, measured dict).

    The measured dict is the certificate of fit (`tfvae.certify`) on the
    test split, or on a seeded random `subset` of it: the ELBO and
    log-likelihood with their standard errors (0 for a single example), NLL,
    bits/dim, active units and KL per layer.
    """
    metadata = info(name)
    model = load(name)
    preprocessing = metadata["data"]
    x = data.load(
        preprocessing["name"],
        "test",
        data_dir=data_dir,
        limit=subset,
        seed=seed,
        binarize=preprocessing.get("binarize"),
        dequantize=preprocessing.get("dequantize"),
    )
    measured = certificate.certify(
        model,
        x,
        num_samples=_checks.positive_int(num_samples, "num_samples"),
        seed=seed,
        levels=data.dequantize_levels(
            preprocessing["name"], preprocessing.get("dequantize")
        ),
    )
    for key in ("elbo_stderr", "log_likelihood_stderr"):
        measured[key] = certificate.stderr_or_zero(measured[key])
    return metadata.get("metrics", {}), measured


def publish(
    run_dir, folder, recipe=None, description="", num_samples=5000, overwrite=False
):
    """Evaluates a finished training run and writes it as a preset folder.

    The run's `model.keras` is certified on the test split of its dataset
    (`tfvae.certify`, K = `num_samples`, seed 0), and the preset is written
    with its metadata and card (`save_preset`). Where the folder's parent is
    a zoo (it holds a `registry.json`, as `zoo/` in the repository does), the
    preset's sha256 is written into that registry.

    Args:
        run_dir: a run folder of `tfvae.runs.train` that holds `model.keras`.
        folder: the preset folder to write; its name is the preset's.
        recipe: the recipe file the run was trained from, copied into the
            preset as `recipe.yaml`.
        description: the card's description.
        num_samples: K of the log-likelihood.
        overwrite: replace an existing preset folder.

    Returns:
        The metadata written.
    """
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.exists(model_path):
        raise PresetError(f"no finished run in {run_dir}: no model.keras")
    with open(os.path.join(run_dir, "run.json")) as file:
        config = json.load(file)
    with open(os.path.join(run_dir, "history.json")) as file:
        history = json.load(file)
    model = keras.models.load_model(model_path)
    preprocessing = {key: config.get(key) for key in ("binarize", "dequantize")}
    x = data.load(config["dataset"], "test", seed=0, **preprocessing)
    measured = certificate.certify(
        model,
        x,
        num_samples=num_samples,
        seed=0,
        levels=data.dequantize_levels(config["dataset"], preprocessing["dequantize"]),
        verbose="auto",
    )
    metrics = {
        key: round(measured[key], 3)
        for key in ("elbo", "elbo_stderr", "log_likelihood", "log_likelihood_stderr")
    }
    metrics.update(
        nll=round(measured["nll"], 3),
        bits_per_dim=round(measured["bits_per_dim"], 4),
        num_samples=num_samples,
        num_examples=measured["num_examples"],
        active_units=measured["active_units"],
        kl_per_layer=[round(k, 3) for k in measured["kl_per_layer"]],
    )
    name = os.path.basename(os.path.abspath(folder))
    recipe_path = f"zoo/{name}/recipe.yaml" if recipe else "run.json"
    metadata = {
        "name": name,
        "description": description,
        "data": {"name": config["dataset"], **preprocessing},
        "dataset": f"{config['dataset']} (train split; test split for the metrics)",
        "preprocessing": ", ".join(f"{k}={v}" for k, v in preprocessing.items()),
        "objective": config["objective"],
        "recipe": config,
        "training_command": f"tfvae train --config {recipe_path} --out runs/{name}",
        "training_time": f"{sum(r.get('seconds', 0) for r in history) / 60:.1f} min",
        "epochs": len(history),
        "hardware": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "metrics": metrics,
        "evaluation_command": f"tfvae zoo verify {name} --num-samples {num_samples}",
    }
    extra = {"recipe.yaml": recipe} if recipe else None
    metadata = save_preset(
        model, folder, metadata, overwrite=overwrite, extra_files=extra
    )
    registry = os.path.join(os.path.dirname(os.path.abspath(folder)), REGISTRY_FILE)
    if os.path.exists(registry):
        with open(registry) as file:
            entries = json.load(file)
        entries[name] = metadata["sha256"]
        _files.write_json(registry, dict(sorted(entries.items())))
    return metadata
