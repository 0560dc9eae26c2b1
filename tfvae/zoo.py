"""The model zoo: pretrained presets with checksums and measured certificates of fit.

A preset is a folder of four files: `config.json` (the serialized model),
`model.weights.h5`, `metadata.json` (sha256 of the weights, parameter count,
versions, data, training recipe and measured metrics with the commands that
measured them) and a `README.md` model card. The presets ship inside the
package (`zoo/` in the repository, installed as `tfvae.presets`). The sha256
of every preset's weights is kept both in its metadata and in `_REGISTRY`
below, and is checked on every load before anything is loaded.
"""

import difflib
import hashlib
import importlib.resources
import json
import math
import os
import shutil
import urllib.request

import keras

from tfvae import _checks, _files
from tfvae.version import __version__

__all__ = ["list", "info", "load", "save_preset", "PresetError"]

# name -> sha256 of model.weights.h5. A preset is listed only once it is here.
_REGISTRY = {
    "hvae2_bernoulli_bmnist": (
        "352fa81b0179f689a5d044e68e263208c05aa7d5f68c8ac282208b7fb606a58a"
    ),
    "vae_bernoulli_bmnist": (
        "b625579e53fc70a6652ef1407fb8aad5b61a94b9d8dd7b50c0012970f7e048c0"
    ),
    "vae_bernoulli_bmnist_2d": (
        "d2fb2e2cc118f1ff919e2d7b80d8ad27fed10e85352b7cc7b250801d4905577c"
    ),
    "vae_gaussian_digits": (
        "9b0e87bcb5a1675069f33f1e73afe45fd979a46bfcf55cf5087aa579e13345f5"
    ),
}

_FILES = ("config.json", "model.weights.h5", "metadata.json", "README.md")


class PresetError(ValueError):
    """A preset that cannot be found or does not verify."""


def _presets_root():
    return importlib.resources.files("tfvae.presets")


def list():  # noqa: A001 (the zoo's public verb, as in keras_hub)
    """The names of the presets shipped with tfvae, sorted."""
    return sorted(_REGISTRY)


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
    if name in _REGISTRY:
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


def load(name, sha256=None, cache_dir=None):
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

    Example:

    ```python
    model = tfvae.zoo.load("vae_bernoulli_bmnist_2d")
    images = model.sample(16, seed=0)
    ```
    """
    name = os.fspath(name)
    if name.startswith(("http://", "https://", "file://")):
        from tfvae import data

        cache_dir = cache_dir or os.path.join(data.search_path()[-1], "presets")
        folder = _download_preset(name, sha256, cache_dir)
    else:
        folder = _folder(name)
    metadata = info(folder)
    weights = os.path.join(folder, "model.weights.h5")
    actual = _sha256(weights)
    expected = {metadata.get("sha256"), _REGISTRY.get(name, metadata.get("sha256"))}
    if sha256 is not None:
        expected.add(sha256)
    if expected != {actual}:
        raise PresetError(
            f"The weights of preset {name!r} have sha256 {actual}, expected "
            f"{sorted(e for e in expected if e)}; nothing was loaded."
        )
    with open(os.path.join(folder, "config.json")) as file:
        config = json.load(file)
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
        model: a `tfvae.VAE` or `tfvae.HierarchicalVAE`.
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


def verify(name, num_samples=5000, subset=None, seed=0, data_dir=None):
    """Recomputes a preset's test metrics: (recorded metrics, measured dict).

    The measured dict holds the test ELBO and log-likelihood with their
    standard errors, on the whole test split or a seeded random `subset`.
    """
    import tfvae
    from tfvae import data

    metadata = info(name)
    model = load(name)
    x = data.load(
        metadata["data"]["name"],
        "test",
        data_dir=data_dir,
        limit=subset,
        seed=seed,
        binarize=metadata["data"].get("binarize"),
        dequantize=metadata["data"].get("dequantize"),
    )
    measured = tfvae.evaluate_log_likelihood(
        model,
        x,
        num_samples=_checks.positive_int(num_samples, "num_samples"),
        seed=seed,
        verbose=0,
    )
    measured["nll_bits_per_dim"] = float(
        tfvae.bits_per_dim(
            measured["log_likelihood"],
            model.input_shape,
            levels=data.dequantize_levels(
                metadata["data"]["name"], metadata["data"].get("dequantize")
            ),
        )
    )
    if math.isnan(measured["log_likelihood_stderr"]):
        measured["log_likelihood_stderr"] = 0.0
    return metadata.get("metrics", {}), measured
