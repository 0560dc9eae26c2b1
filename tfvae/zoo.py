"""The model zoo: pretrained presets with checksums and measured certificates of fit.

A preset is a folder: `config.json` (the serialized model),
`model.weights.h5`, `metadata.json` (parameter count, versions, data,
training recipe and measured metrics with the commands that measured them),
a `README.md` model card, optionally `recipe.yaml` and `samples.png`, and
`manifest.json`, the sha256 of every other file. The preset's sha256 is that
of its manifest: one hash pins every file (`tfvae._manifest`). The presets
ship inside the package (`zoo/` in the repository, installed as
`tfvae.presets`; a source checkout reads `zoo/` directly), and the shipped
registry, `registry.json` beside the preset folders, keeps each one's
sha256. Every load (a name, a folder, a URL, a cached URL) checks every file
before any of it is read as a model, and a mismatch names the file. The
registry is data: `publish` (`tfvae zoo publish`) writes the entry of a
preset it publishes into a zoo folder.

The models take presets the keras-hub way too: `tfvae.VAE.from_preset(name)`
and `model.save_to_preset(folder)`.
"""

import difflib
import hashlib
import importlib.resources
import json
import math
import os
import pathlib
import platform
import shutil
import urllib.parse
import urllib.request

import keras

from tfvae import _checks, _files, _manifest, certificate, conditional, data
from tfvae._manifest import PresetError
from tfvae.version import __version__

__all__ = [
    "list",
    "info",
    "summary",
    "load",
    "load_model",
    "publish",
    "save_preset",
    "verify",
    "PresetError",
    "REGISTRY_FILE",
]

# The registry of a zoo folder: {preset name: the preset's sha256 (of its
# manifest)}. A shipped preset is listed only once it is in the package's
# registry.
REGISTRY_FILE = "registry.json"

# The test protocol of a dynamically binarized dataset: the log-likelihood is
# the mean over this many seeded binarizations of the test set.
DEFAULT_BINARIZATIONS = 3


def _presets_root():
    """The folder of the shipped presets.

    Installed, the package `tfvae.presets`. In a source checkout, whose
    `tfvae/` shadows an installed tfvae (Python run in the clone's root), the
    checkout's `zoo/` folder, which is what `tfvae.presets` is installed from.
    """
    try:
        return importlib.resources.files("tfvae.presets")
    except ModuleNotFoundError:
        checkout = pathlib.Path(__file__).resolve().parents[1] / "zoo"
        if (checkout / REGISTRY_FILE).is_file():
            return checkout
        raise


def _registry():
    """The shipped registry: {name: the preset's sha256}."""
    return json.loads((_presets_root() / REGISTRY_FILE).read_text())


def list():  # noqa: A001 (the zoo's public verb, as in keras_hub)
    """The names of the presets shipped with tfvae, sorted."""
    return sorted(_registry())


def _unknown(name):
    close = difflib.get_close_matches(str(name), list(), n=3, cutoff=0.5)
    hint = f" Closest: {close}." if close else ""
    return PresetError(
        f"Unknown preset {name!r}.{hint} Presets: {list()}; or pass a preset "
        "folder path, or a URL of a preset folder with sha256=."
    )


def _folder(name, registry):
    """The local folder of a preset name or path, and its expected sha256."""
    if name in registry:
        return str(_presets_root() / name), registry[name]
    if os.path.isdir(os.fspath(name)):
        return os.fspath(name), None
    raise _unknown(name)


def _verified(name, sha256=None, cache_dir=None):
    """(folder, sha256) of a preset whose every file was checked.

    A shipped name is checked against the registry; a folder against
    `sha256` if given, and, if its metadata names a shipped preset, against
    the registry too (a copy of a shipped preset); a URL is downloaded
    (or taken from the cache) and checked against `sha256`.
    """
    name = os.fspath(name)
    if sha256 is not None:
        sha256 = _manifest.normalize_sha256(sha256)
    if name.startswith(("http://", "https://", "file://")):
        if sha256 is None:
            raise PresetError(
                "Loading a preset from a URL needs its sha256= (the sha256 of "
                f"its manifest.json). Received: {name}"
            )
        cache_dir = cache_dir or os.path.join(data.search_path()[-1], "presets")
        return _download_preset(name, sha256, cache_dir), sha256
    registry = _registry()
    folder, expected = _folder(name, registry)
    if expected is not None and sha256 is not None and sha256 != expected:
        raise PresetError(
            f"Preset {name!r} has sha256 {expected} in the registry; "
            f"sha256={sha256} was given. Nothing was loaded."
        )
    actual = _manifest.verify(folder, expected or sha256, what=f"preset {name!r}")
    with open(os.path.join(folder, "metadata.json")) as file:
        shipped_name = json.load(file).get("name")
    if expected is None and shipped_name in registry:
        if registry[shipped_name] != actual:
            raise PresetError(
                f"The preset in {folder} is named {shipped_name!r}, a shipped "
                f"preset, but its sha256 {actual} is not the registry's "
                f"{registry[shipped_name]}: it is a changed copy. Nothing was "
                "loaded; publish a changed model under a name of its own."
            )
    return folder, actual


def info(name, sha256=None, cache_dir=None):
    """The metadata of a preset (a dict), once every file of it is verified.

    As in `metadata.json`, with `sha256`, the preset's sha256 (that of its
    `manifest.json`, which the registry keeps and the card shows).
    """
    folder, actual = _verified(name, sha256, cache_dir)
    with open(os.path.join(folder, "metadata.json")) as file:
        return {**json.load(file), "sha256": actual}


def summary(name):
    """A preset's line in the catalogue: a dict of what users browse by.

    Keys: `name`; `dataset` (with its preprocessing: `mnist, binarize=dynamic
    (3 binarizations)`); `likelihood` (the decoder's, e.g. `bernoulli`);
    `nll` (test NLL of the discrete data in nats: for a density on
    dequantized data, the bound that bits/dim gives; None where the card has
    none); `bits_per_dim`;
    `parameters`; `size_bytes` (the preset's files on disk). Every file of
    the preset is verified first, as by `info`.
    """
    folder, _ = _verified(name)  # once: info would verify the files again
    with open(os.path.join(folder, "metadata.json")) as file:
        meta = json.load(file)
    preprocessing = meta.get("data", {})
    dataset = str(preprocessing.get("name", "?"))
    if preprocessing.get("binarize"):
        dataset += f", binarize={preprocessing['binarize']}"
        if preprocessing.get("binarizations"):
            dataset += f" ({preprocessing['binarizations']} binarizations)"
    if preprocessing.get("dequantize"):
        dataset += f", dequantize={preprocessing['dequantize']}"
    with open(os.path.join(folder, "config.json")) as file:
        head = json.load(file).get("config", {}).get("likelihood")
    metrics = meta.get("metrics", {})
    nll = metrics.get("nll")
    if preprocessing.get("dequantize") and metrics.get("bits_per_dim") is not None:
        # The density's NLL is not the discrete data's: bits/dim is (it
        # holds the log of the grey levels), in nats per example.
        dims = math.prod(meta["input_shape"])
        nll = metrics["bits_per_dim"] * dims * math.log(2.0)
    return {
        "name": meta["name"],
        "dataset": dataset,
        "likelihood": _likelihood_name(meta.get("recipe", {}), head),
        "nll": nll,
        "bits_per_dim": metrics.get("bits_per_dim"),
        "parameters": meta["parameters"],
        "size_bytes": sum(
            os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
        ),
    }


def _likelihood_name(recipe, head):
    """The likelihood's name: the recipe's, else the head's class."""
    if isinstance(recipe, dict) and recipe.get("likelihood"):
        return str(recipe["likelihood"])
    if isinstance(head, dict):
        return str(head.get("class_name", "?"))
    return str(head or "?")


def _download_preset(url, sha256, cache_dir):
    """The cached folder of a URL preset, downloaded if needed, verified.

    The cache is keyed by the URL and the sha256. A cached copy is verified
    on every use; one that fails is removed and downloaded again. A download
    that fails its check is never kept.
    """
    base = url if url.endswith("/") else url + "/"
    key = hashlib.sha256(base.encode()).hexdigest()[:16]
    target = os.path.join(cache_dir, f"{sha256}-{key}")
    if os.path.isdir(target):
        try:
            _manifest.verify(target, sha256, what=f"cached preset {url}")
            return target
        except PresetError:
            shutil.rmtree(target)  # damaged in the cache: fetch it again
    with _files.staged_folder(target, prefix=".download-") as staging:
        _fetch(base, _manifest.MANIFEST_FILE, staging)
        actual = _manifest.preset_sha256(staging)
        if actual != sha256:
            raise PresetError(
                f"The preset at {base} has sha256 {actual} (of its "
                f"{_manifest.MANIFEST_FILE}), expected {sha256}; nothing was "
                "loaded or kept."
            )
        with open(os.path.join(staging, _manifest.MANIFEST_FILE)) as file:
            listed = json.load(file).get("files", {})
        for relative in listed:
            parts = relative.split("/")
            if relative.startswith("/") or ".." in parts or "" in parts:
                raise PresetError(
                    f"The manifest at {base} lists the path {relative!r}, which "
                    "leaves the preset folder; nothing was loaded or kept."
                )
            _fetch(base, relative, staging)
        _manifest.verify(staging, sha256, what=f"preset at {base}")
    return target


def _fetch(base, relative, folder):
    """Downloads base + relative into folder/relative."""
    path = os.path.join(folder, *relative.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    url = base + urllib.parse.quote(relative)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            with open(path, "wb") as out:
                shutil.copyfileobj(response, out)
    except OSError as error:
        raise PresetError(
            f"Could not download {url}: {error}; nothing was loaded or kept."
        ) from None


def load(name, sha256=None, cache_dir=None, model_class=None):
    """A ready model from a preset name, a preset folder, or a URL of one.

    Every file of the preset is checked against its manifest, and the
    manifest against the registry (a shipped name, or a copy of a shipped
    preset), against `sha256` (a URL, or a folder when given), before the
    model is built; a mismatch raises `PresetError` naming the file, and
    nothing is loaded.

    Args:
        name: a name from `tfvae.zoo.list()`, a preset folder path, or an
            `http(s)://` or `file://` URL of a preset folder.
        sha256: the expected sha256 of the preset (of its `manifest.json`,
            as `tfvae.zoo.info(name)["sha256"]` and the card show), in either
            case; required for a URL.
        cache_dir: where URL presets are kept (default: the data cache,
            `~/.cache/tfvae/presets`), keyed by URL and sha256.
        model_class: refuse, before anything is deserialized, a preset whose
            model is not of this class (or a subclass), as
            `tfvae.VAE.from_preset` does.

    Example:

    ```python
    model = tfvae.zoo.load("vae_bernoulli_bmnist_2d")
    images = model.sample(16, seed=0)
    ```
    """
    folder, _ = _verified(name, sha256, cache_dir)
    with open(os.path.join(folder, "config.json")) as file:
        config = json.load(file)
    if model_class is not None:
        _check_class(config, model_class, name)
    # The weights first, into an uncompiled model: presets written before
    # optimizer states were left out still hold one, which is not restored.
    compile_config = config.pop("compile_config", None)
    model = keras.saving.deserialize_keras_object(config)
    model.load_weights(os.path.join(folder, "model.weights.h5"))
    if compile_config is not None:
        model.compile_from_config(compile_config)  # a fresh optimizer
    return model


def load_model(source):
    """A model from a `.keras` file, a preset name or a preset folder.

    What the command line's `MODEL` arguments and the `init` option of
    training recipes accept. A preset is loaded by `load`, with its checks.

    Raises:
        ValueError: `source` is none of these, naming the shipped presets.
    """
    if os.path.isfile(source):
        return keras.models.load_model(source)
    if source in list() or os.path.isdir(source):
        return load(source)
    raise ValueError(f"no such model file or preset: {source} (presets: {list()})")


def _card_samples(model):
    """The card's samples: 64, or 8 of each class of a conditional model."""
    if not model.num_classes:
        return model.sample(64, seed=0).numpy()
    labels = conditional.rows_of_classes(model.num_classes, 8)
    return model.sample(len(labels), seed=0, labels=labels).numpy()


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
        *(
            [
                f"- Class-conditional: p(x | z, y) and q(z | x, y) with the "
                f"label y of {metadata['num_classes']} classes (inputs "
                "`(x, labels)`; `sample(n, labels=...)`)."
            ]
            if metadata.get("num_classes")
            else []
        ),
        _manifest.card_line(),
        f"- sha256 of `model.weights.h5`: `{metadata['weights_sha256']}`",
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
        rows = " (a row of 8 per class, 0 first)" if metadata.get("num_classes") else ""
        lines += ["", "## Samples", "", f"![samples{rows}](samples.png)"]
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
        overwrite: replace an existing preset folder (or one that holds only
            a `recipe.yaml`). Otherwise a non-empty folder raises
            `FileExistsError` before anything is written, as does, even with
            it, a folder of other files or a symbolic link.
        extra_files: {name in the folder: path to copy}, e.g. the recipe.

    Returns:
        The metadata written, with `sha256`, the preset's sha256 (of its
        `manifest.json`, written last).
    """
    folder = os.fspath(folder)
    _files.check_target(folder, "preset", _replaceable_preset, overwrite)
    with _files.staged_folder(folder, prefix=".preset-") as staging:
        with open(os.path.join(staging, "config.json"), "w") as file:
            json.dump(keras.saving.serialize_keras_object(model), file, indent=2)
        weights = os.path.join(staging, "model.weights.h5")
        _files.save_model_weights(model, weights)
        meta = {
            "name": os.path.basename(os.path.abspath(folder)),
            "class_name": type(model).__name__,
            "parameters": int(model.count_params()),
            "input_shape": [int(d) for d in model.input_shape],
            "tfvae_version": __version__,
            "keras_version": keras.__version__,
            **{k: v for k, v in (metadata or {}).items() if k != "sha256"},
            "weights_sha256": _manifest.sha256_of_file(weights),
        }
        if model.num_classes:
            meta["num_classes"] = model.num_classes
        if samples:
            from tfvae import _images

            picture = _images.grid(_card_samples(model), model.input_shape, 8)
            _images.write_png(picture, os.path.join(staging, "samples.png"))
            meta["samples"] = "samples.png"
        with open(os.path.join(staging, "metadata.json"), "w") as file:
            json.dump(meta, file, indent=2)
        with open(os.path.join(staging, "README.md"), "w") as file:
            file.write(_card(meta))
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, os.path.join(staging, name))
        sha256 = _manifest.write(staging)
    return {**meta, "sha256": sha256}


def _replaceable_preset(folder):
    """None for a preset folder (or one that holds only its recipe)."""
    names = sorted(os.listdir(folder))
    if _manifest.MANIFEST_FILE in names or "metadata.json" in names:
        return None
    if names == ["recipe.yaml"]:  # a preset's recipe, waiting for its run
        return None
    return f"holds files that are not a preset ({names[:5]})"


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


def verify(name, num_samples=5000, subset=None, seed=0, data_dir=None, progress=None):
    """Recomputes a preset's test metrics: (recorded metrics, measured dict).

    The measured dict is the certificate of fit (`tfvae.certify`) on the
    test split, or on a seeded random `subset` of it: the ELBO and
    log-likelihood with their standard errors (0 for a single example), NLL,
    bits/dim, active units and KL per layer. With `progress` (a file path)
    the log-likelihood keeps its partial results there and a run killed
    midway goes on from them (`tfvae.certify`).
    """
    metadata = info(name)
    model = load(name)
    preprocessing = metadata["data"]
    binarizations = preprocessing.get("binarizations")
    x = data.load(
        preprocessing["name"],
        "test",
        data_dir=data_dir,
        limit=subset,
        seed=seed,
        # The protocol of binarizations draws its own binarizations.
        binarize=None if binarizations else preprocessing.get("binarize"),
        dequantize=preprocessing.get("dequantize"),
        shape=model.input_shape,
        labels=model.num_classes > 0,  # a conditional model's (x, labels)
    )
    measured = certificate.certify(
        model,
        x,
        num_samples=_checks.positive_int(num_samples, "num_samples"),
        seed=seed,
        levels=data.dequantize_levels(
            preprocessing["name"], preprocessing.get("dequantize")
        ),
        progress=progress,
        binarizations=binarizations,
    )
    for key in ("elbo_stderr", "log_likelihood_stderr"):
        measured[key] = certificate.stderr_or_zero(measured[key])
    return metadata.get("metrics", {}), measured


def publish(
    run_dir,
    folder,
    recipe=None,
    description="",
    num_samples=5000,
    overwrite=False,
    progress=None,
    binarizations=None,
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
        progress: None, or a file that keeps the evaluation's partial
            results, so that a killed publish goes on from them when run
            again.
        binarizations: for a run on dynamically binarized data, B, the
            number of seeded binarizations of the test set that the
            log-likelihood is averaged over (`tfvae.certify`); default
            `DEFAULT_BINARIZATIONS`. The card records it, and `verify`
            follows it.

    Returns:
        The metadata written.
    """
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.exists(model_path):
        raise PresetError(f"no finished run in {run_dir}: no model.keras")
    # Before the evaluation: a target that may not be written stops it.
    _files.check_target(os.fspath(folder), "preset", _replaceable_preset, overwrite)
    with open(os.path.join(run_dir, "run.json")) as file:
        config = json.load(file)
    with open(os.path.join(run_dir, "history.json")) as file:
        history = json.load(file)
    model = keras.models.load_model(model_path)
    preprocessing = {key: config.get(key) for key in ("binarize", "dequantize")}
    if preprocessing["binarize"] == "dynamic":
        binarizations = _checks.positive_int(
            binarizations or DEFAULT_BINARIZATIONS, "binarizations"
        )
    elif binarizations is not None:
        raise ValueError(
            "binarizations= is the test protocol of a dynamically binarized "
            f"run; the run in {run_dir} has binarize={preprocessing['binarize']!r}"
        )
    x = data.load(
        config["dataset"],
        "test",
        seed=0,
        shape=model.input_shape,
        dequantize=preprocessing["dequantize"],
        binarize=None if binarizations else preprocessing["binarize"],
        labels=model.num_classes > 0,  # a conditional model's (x, labels)
    )
    measured = certificate.certify(
        model,
        x,
        num_samples=num_samples,
        seed=0,
        levels=data.dequantize_levels(config["dataset"], preprocessing["dequantize"]),
        verbose="auto",
        progress=progress,
        binarizations=binarizations,
    )
    if binarizations:
        preprocessing["binarizations"] = binarizations
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
    if binarizations:
        metrics.update(
            binarizations=binarizations,
            log_likelihood_per_binarization=[
                round(v, 3) for v in measured["log_likelihood_per_binarization"]
            ],
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
