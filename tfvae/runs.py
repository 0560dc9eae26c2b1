"""A training run as a library: what `tfvae train` does, from Python.

A run trains a model described by a configuration (a dict of options, or a
JSON/YAML file of them; `DEFAULTS` lists every option and its default) and
writes a run folder:

- `run.json`: the resolved options;
- `history.json`: one row per epoch (`tfvae.callbacks.HistoryFile`);
- `logs/`: TensorBoard logs (`logs/images`: the grids of samples and
  reconstructions of `images_every`, `tfvae.callbacks.TensorBoardImages`);
- `checkpoints/epoch-NNN.keras`: a checkpoint per epoch;
- `backup/`: the state to resume from (`tfvae.callbacks.BackupAndRestore`);
- `best.weights.h5`: with early stopping, the best epoch's weights;
- `model.keras`: the trained model, once the run is complete.

`train(config, out_dir)` starts a run; `train(None, out_dir, resume=True)`
continues an interrupted one from its last completed epoch (model, optimizer
and KL weight restored) up to the same number of epochs.

Example:

```python
result = tfvae.runs.train(
    {"dataset": "binarized_mnist", "epochs": 10, "latent_dim": 50}, "runs/vae"
)
result.model.evaluate(x_valid)
```
"""

import dataclasses
import json
import math
import os
import shutil

import keras
import tensorflow as tf

from tfvae import _files, _images, callbacks, data, heads, priors
from tfvae.hvae import HierarchicalVAE
from tfvae.vae import VAE

__all__ = ["DEFAULTS", "RunResult", "build_model", "read_config", "resolve", "train"]

# Every option of a run, with its default.
DEFAULTS = {
    "model": "vae",
    "latent_dim": 50,
    "latent_dims": "100,50",
    "hidden_units": None,
    "activation": "tanh",
    "likelihood": "bernoulli",
    "prior": "standard_normal",
    "kl": None,
    "beta": 1.0,
    "num_samples": 1,
    "free_bits": 0.0,
    "objective": "elbo",
    "inference": "bottom_up",
    "gated": False,
    "skip": False,
    "architecture": "mlp",
    "conditional": False,
    "dataset": "binarized_mnist",
    "binarize": None,
    "dequantize": None,
    "limit": None,
    "epochs": 10,
    "batch_size": 100,
    "learning_rate": 1e-3,
    "warmup": 0,
    "early_stopping": 0,
    "lr_plateau": 0,
    "ema": 0.0,
    "grad_clip": 0.0,
    "skip_threshold": None,
    "max_consecutive_skips": 100,
    "images_every": 0,
    "xla": False,
    "init": None,
    "seed": 0,
}

# The default hidden widths of each model ("a;b" separates the layers of hvae).
_DEFAULT_HIDDEN_UNITS = {"vae": "200,200", "hvae": "200,200;100,100"}


@dataclasses.dataclass
class RunResult:
    """What `train` returns.

    Attributes:
        model: the trained model (the best epoch's weights with early
            stopping).
        model_path: the path of the `model.keras` it wrote.
        best_epoch: with early stopping, the epoch whose weights were kept;
            else None.
    """

    model: keras.Model
    model_path: str
    best_epoch: int | None = None


def read_config(path):
    """The options of a JSON or YAML (`.yaml`/`.yml`) run configuration file.

    Keys may use dashes or underscores. Raises `ValueError` for a missing
    file, a file that holds no mapping, or an unknown option.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"no such config file: {path}")
    with open(path) as file:
        text = file.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = (
                f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            )
            problem = getattr(error, "problem", None) or str(error)
            raise ValueError(
                f"{path} is not valid YAML{where}: {problem}"
                + (f" ({error.context})" if getattr(error, "context", None) else "")
            ) from None
    else:
        config = _files.parse_json(text, path)
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a mapping of options")
    return _known({key.replace("-", "_"): value for key, value in config.items()}, path)


def _known(options, where):
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown options in {where}: {unknown}; valid: {sorted(DEFAULTS)}"
        )
    return dict(options)


def resolve(config=None, **overrides):
    """The full options of a run: `DEFAULTS`, then `config`, then `overrides`.

    Args:
        config: a dict of options, a path to a JSON/YAML file of them, or None.
        **overrides: options that win over `config` (None values are
            ignored, as for command-line flags that were not given).

    Raises:
        ValueError: for an unknown option, or a combination that cannot work.
    """
    resolved = dict(DEFAULTS)
    if isinstance(config, (str, os.PathLike)):
        resolved.update(read_config(config))
    elif config is not None:
        resolved.update(_known(config, "the run configuration"))
    resolved.update(
        _known({k: v for k, v in overrides.items() if v is not None}, "the options")
    )
    check(resolved)
    return resolved


def _widths(text):
    try:
        return tuple(int(w) for w in str(text).split(",") if w.strip())
    except ValueError:
        raise ValueError(
            f"widths must be integers separated by commas, got {text!r}"
        ) from None


def build_model(config, input_shape, num_classes=0):
    """The model of a run configuration, for examples of `input_shape`.

    `num_classes`: the classes of the dataset's labels, for a conditional
    run (`conditional`), else 0.
    """
    common = dict(
        num_classes=num_classes,
        input_shape=input_shape,
        activation=config["activation"],
        likelihood=config["likelihood"],
        beta=config["beta"],
        num_samples=config["num_samples"],
        free_bits=config["free_bits"],
        objective=config["objective"],
        gated=config["gated"],
        prior=config["prior"],
        architecture=config["architecture"],
        seed=config["seed"],
    )
    hidden = config["hidden_units"]
    if hidden is None:
        hidden = _DEFAULT_HIDDEN_UNITS[config["model"]]
    if config["model"] == "vae":
        kl = config["kl"]
        if kl is None:  # the closed form where the prior has one
            kl = "analytic" if priors.get(config["prior"]).analytic_kl else "mc"
        return VAE(
            latent_dim=config["latent_dim"],
            hidden_units=_widths(hidden),
            kl=kl,
            **common,
        )
    return HierarchicalVAE(
        latent_dims=_widths(config["latent_dims"]),
        hidden_units=tuple(_widths(layer) for layer in str(hidden).split(";")),
        inference=config["inference"],
        skip=config["skip"],
        **common,
    )


def has_validation_split(dataset):
    """Whether a dataset name has a `valid` split."""
    return "valid" in data.splits(dataset)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# The type and range of each option, checked for every source alike (the
# command line, a config file, a dict): (test, what is expected).
_OPTION_TYPES = {
    "model": (lambda v: isinstance(v, str), "a string: vae or hvae"),
    "latent_dim": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "latent_dims": (
        lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
        'integers separated by commas, e.g. "100,50"',
    ),
    "hidden_units": (
        lambda v: v is None or (isinstance(v, (str, int)) and not isinstance(v, bool)),
        'widths separated by commas (";" between hvae layers), e.g. "200,200"',
    ),
    "activation": (lambda v: isinstance(v, str), "a Keras activation name"),
    "likelihood": (lambda v: isinstance(v, str), "a likelihood name"),
    "prior": (lambda v: isinstance(v, str), "a prior name"),
    "kl": (lambda v: v in (None, "analytic", "mc"), "analytic, mc or unset"),
    "beta": (lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a number >= 0"),
    "num_samples": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "free_bits": (
        lambda v: _is_number(v) and math.isfinite(v) and v >= 0,
        "a number >= 0",
    ),
    "objective": (lambda v: v in ("elbo", "iwae"), "elbo or iwae"),
    "inference": (
        lambda v: v in ("bottom_up", "ladder", "top_down"),
        "bottom_up, ladder or top_down",
    ),
    "gated": (lambda v: isinstance(v, bool), "true or false"),
    "skip": (lambda v: isinstance(v, bool), "true or false"),
    "architecture": (lambda v: v in ("mlp", "conv"), "mlp or conv"),
    "conditional": (lambda v: isinstance(v, bool), "true or false"),
    "dataset": (lambda v: isinstance(v, str), "a dataset name or file"),
    "binarize": (lambda v: v in (None, "dynamic"), "dynamic or unset"),
    "dequantize": (lambda v: v in (None, "uniform"), "uniform or unset"),
    "limit": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1"),
    "epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "learning_rate": (
        lambda v: _is_number(v) and math.isfinite(v) and v > 0,
        "a finite number > 0",
    ),
    "warmup": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "early_stopping": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "lr_plateau": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "ema": (lambda v: _is_number(v) and 0 <= v < 1, "a momentum in [0, 1)"),
    "grad_clip": (
        lambda v: _is_number(v) and math.isfinite(v) and v >= 0,
        "a finite number >= 0",
    ),
    "skip_threshold": (
        lambda v: v is None or (_is_number(v) and not math.isnan(v) and v > 0),
        "a number > 0 (inf allowed) or unset",
    ),
    "max_consecutive_skips": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "images_every": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "xla": (lambda v: isinstance(v, bool), "true or false"),
    "init": (
        lambda v: v is None or (isinstance(v, str) and v != ""),
        "a .keras file or a preset name, or unset",
    ),
    "seed": (lambda v: _is_int(v), "an integer"),
}


def check(config):
    """Refuses options that cannot work, before any file is written.

    Every option's type and range is checked, whatever its source (the
    command line, a config file or a dict), and then their combinations.
    """
    for option, (test, expected) in _OPTION_TYPES.items():
        value = config[option]
        if not test(value):
            raise ValueError(
                f"option {option!r} must be {expected}. Received: {option}={value!r}"
            )
    if config["model"] not in _DEFAULT_HIDDEN_UNITS:
        raise ValueError(
            f"model must be one of {sorted(_DEFAULT_HIDDEN_UNITS)}, got "
            f"{config['model']!r}"
        )
    if config["model"] == "vae" and config["inference"] != "bottom_up":
        raise ValueError(
            f"--inference {config['inference']} applies to --model hvae only; "
            "expected bottom_up (the default) for --model vae"
        )
    if config["model"] == "vae" and config["skip"]:
        raise ValueError(
            "--skip applies to --model hvae only (a VAE's decoder sees its one "
            "layer); expected it unset for --model vae"
        )
    for needs_images, what in (
        (config["architecture"] == "conv", "--architecture conv"),
        (_image_likelihood(config), f"--likelihood {config['likelihood']}"),
    ):
        if needs_images and data.image_shape(config["dataset"]) is None:
            raise ValueError(
                f"{what} needs a dataset of images, one of "
                f"{[n for n in data.names() if data.image_shape(n)]}; "
                f"{config['dataset']!r} has flat examples"
            )
    priors.get(config["prior"])  # a bad name is refused before any work
    if config["conditional"]:
        try:
            data.num_classes(config["dataset"])
        except (ValueError, OSError) as error:
            raise ValueError(
                f"--conditional needs a dataset with labels: {error}"
            ) from None
        if isinstance(priors.get(config["prior"]), priors.VampPrior):
            raise ValueError(
                "--conditional cannot take a VampPrior: its pseudo-inputs have "
                "no labels. Expected --prior standard_normal or mog:K. "
                f"Received: prior={config['prior']!r}"
            )
    if config["model"] != "vae" and config["kl"] is not None:
        raise ValueError(
            f"--kl {config['kl']} applies to --model vae only (the hierarchy "
            "uses the closed form where the prior has one); expected it unset "
            "for --model hvae"
        )
    if config["init"] is not None and not os.path.isfile(config["init"]):
        from tfvae import zoo

        if config["init"] not in zoo.list():
            raise ValueError(
                "option 'init' must be a .keras file or a preset name (presets: "
                f"{zoo.list()}); no such file or preset. Received: "
                f"init={config['init']!r}"
            )
    for option in ("early_stopping", "lr_plateau"):
        if config[option] and not has_validation_split(config["dataset"]):
            raise ValueError(
                f"{option} needs a validation split; {config['dataset']!r} has none"
            )


def _image_likelihood(config):
    """Whether the run's likelihood models images (`image_shaped`), not vectors."""
    return heads.get(config["likelihood"]).image_shaped


def _initialize(model, init):
    """Sets `model`'s weights to those of the model or preset `init`.

    The two must be the same model (class and every weight's shape); the
    options that do not shape weights (the objective, `num_samples`, the
    learning rate, `ema`, ...) may differ, which is what fine-tuning changes.
    Every weight is copied but the KL weight, which the run sets (`beta`, or
    its warm-up's schedule).
    """
    from tfvae import zoo

    source = zoo.load_model(init)
    if type(source) is not type(model):
        raise ValueError(
            f"option 'init' must be a {type(model).__name__}, the run's model; "
            f"{init} holds a {type(source).__name__}"
        )
    theirs, ours = source.weights, model.weights
    if len(theirs) != len(ours):
        raise ValueError(
            f"option 'init' must have the run's weights: {init} has "
            f"{len(theirs)} weight tensors, the run's model {len(ours)}"
        )
    for their, our in zip(theirs, ours, strict=True):
        if tuple(their.shape) != tuple(our.shape):
            raise ValueError(
                f"option 'init' must have the run's weights: {init}'s "
                f"{their.path} has shape {tuple(their.shape)}, the run's "
                f"{our.path} {tuple(our.shape)}"
            )
    # The KL weight is the run's own (beta, or its warm-up's), not init's.
    kl_weight = getattr(model, "kl_weight", None)
    for their, our in zip(theirs, ours, strict=True):
        if our is not kl_weight:
            our.assign(their)


def _backup(out_dir):
    return os.path.join(out_dir, "backup")


def _image_examples(config, input_shape, shape):
    """The examples whose reconstructions `images_every` draws, or a ValueError.

    32 examples of the validation split (of the training split where there is
    none), a seeded subset, the same when the run resumes; with their labels,
    `(x, labels)`, for a conditional run.
    """
    try:
        _images.image_shape(input_shape)
    except ValueError:
        raise ValueError(
            "images_every draws the examples as images: they must have a "
            "square number of values, or be images; "
            f"{config['dataset']!r} has examples of shape {input_shape}. "
            f"Received: images_every={config['images_every']}"
        ) from None
    split = "valid" if has_validation_split(config["dataset"]) else "train"
    return data.load(
        config["dataset"],
        split,
        binarize=config["binarize"],
        dequantize=config["dequantize"],
        seed=config["seed"],
        limit=32,
        shape=shape,
        labels=config["conditional"],
    )


def _callbacks(config, out_dir, examples=None):
    """The callbacks of a run, and its `HistoryFile`.

    `examples`: those whose reconstructions `images_every` draws.
    """
    best_path = os.path.join(out_dir, "best.weights.h5")
    history = callbacks.HistoryFile(
        os.path.join(out_dir, "history.json"),
        patience=config["early_stopping"],
        best_weights_path=best_path,
        # Early stopping watches the bound being trained.
        monitor=f"val_{config['objective']}",
    )
    checkpoints = os.path.join(out_dir, "checkpoints")
    os.makedirs(checkpoints, exist_ok=True)
    # The backup comes last: an epoch is backed up only once its checkpoint and
    # history row are written, so a run killed at any moment resumes cleanly.
    run_callbacks = [
        callbacks.EpochCheckpoint(checkpoints),
        keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")),
        history,
        callbacks.BackupAndRestore(_backup(out_dir)),
    ]
    if config["images_every"]:
        # Beside the epoch curves; between the EMA swaps, so the grids show
        # the weights that are validated and kept.
        images = callbacks.TensorBoardImages(
            os.path.join(out_dir, "logs"),
            every=config["images_every"],
            examples=examples,
            seed=config["seed"],
        )
        run_callbacks.insert(2, images)
    if config["ema"]:
        # The averages are validated, checkpointed and kept as the best
        # weights; the backup holds the training state (see SwapEMAWeights).
        ema = callbacks.SwapEMAWeights()
        run_callbacks.insert(0, ema)
        run_callbacks.insert(-1, ema.swap_back())
    if config["warmup"]:
        run_callbacks.insert(0, callbacks.KLWarmup(epochs=config["warmup"]))
    if config["lr_plateau"]:
        # Before the history, so that its rows hold the `learning_rate`. The
        # rate is saved with the backups; the plateau count restarts on resume.
        plateau = keras.callbacks.ReduceLROnPlateau(
            monitor=f"val_{config['objective']}",
            mode="max",
            factor=0.5,
            patience=config["lr_plateau"],
            min_delta=0.0,  # better means higher, as for early stopping
            min_lr=config["learning_rate"] / 64,
            verbose=1,
        )
        run_callbacks.insert(run_callbacks.index(history), plateau)
    return run_callbacks, history


def _remove_run(out_dir, created):
    """Removes what a run wrote into `out_dir` (the folder too if it made it)."""
    if created:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for name in os.listdir(out_dir):  # the folder was empty before the run
        path = os.path.join(out_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


def train(config, out_dir, resume=False, verbose=1):
    """Trains a model as `tfvae train` does, into the run folder `out_dir`.

    Args:
        config: a dict of options (see `DEFAULTS`), a path to a JSON/YAML
            file of them, or None for the defaults; None with `resume`.
        out_dir: the run folder. It must be empty or absent, unless `resume`.
        resume: continue the interrupted run in `out_dir` from its last
            completed epoch, with the options in its `run.json`.
        verbose: Keras' progress display, 0, 1 or 2.

    Returns:
        A `RunResult`.

    A run that stops before its first epoch is complete (bad data found by
    the steps, a diverged first step, an interrupt) removes what it wrote, so
    that the folder takes a fresh run.

    Raises:
        ValueError: for bad options, a folder that holds a run (without
            `resume`), nothing to resume, or a run that is already complete.
    """
    out_dir = os.fspath(out_dir)
    run_file = os.path.join(out_dir, "run.json")
    if resume:
        if config is not None:
            raise ValueError(
                "resume=True continues a run with the options in its run.json; "
                f"expected config=None. Received: config={config!r}"
            )
        if not os.path.exists(run_file):
            raise ValueError(f"nothing to resume in {out_dir}: no run.json")
        with open(run_file) as file:
            # Options added since the run started take their defaults.
            config = {**DEFAULTS, **json.load(file)}
        if os.path.exists(os.path.join(out_dir, "model.keras")):
            raise ValueError(f"the run in {out_dir} is already complete (model.keras)")
    else:
        if os.path.isdir(out_dir) and os.listdir(out_dir):
            raise ValueError(
                f"{out_dir} exists and is not empty; pass --resume to continue "
                "its run, or choose another --out"
            )
        config = resolve(config)
    keras.utils.set_random_seed(config["seed"])
    shape = None
    if config["architecture"] == "conv" or _image_likelihood(config):
        shape = data.image_shape(config["dataset"])  # image-shaped examples
    train_data = data.dataset(
        config["dataset"],
        "train",
        config["batch_size"],
        binarize=config["binarize"],
        dequantize=config["dequantize"],
        seed=config["seed"],
        limit=config["limit"],
        shape=shape,
        labels=config["conditional"],
    )
    validation = None
    if has_validation_split(config["dataset"]):
        validation = data.dataset(
            config["dataset"],
            "valid",
            1000,
            shuffle=False,
            # One fixed draw: early stopping and plateaus compare epochs on
            # the same validation data.
            redraw=False,
            binarize=config["binarize"],
            dequantize=config["dequantize"],
            seed=config["seed"],
            shape=shape,
            labels=config["conditional"],
        )
    spec = train_data.element_spec
    if config["conditional"]:  # (x, labels) pairs
        spec = spec[0]
    input_shape = tuple(spec.shape[1:])
    num_classes = data.num_classes(config["dataset"]) if config["conditional"] else 0
    try:
        model = build_model(config, input_shape, num_classes)
    except (tf.errors.ResourceExhaustedError, MemoryError):
        raise ValueError(
            "the model does not fit in memory: its weights are too many for "
            f"latent_dim={config['latent_dim']}, latent_dims="
            f"{config['latent_dims']!r}, hidden_units={config['hidden_units']!r}; "
            "use smaller sizes"
        ) from None
    if config["init"] is not None and not resume:  # a resumed run has its backup
        _initialize(model, config["init"])
    examples = None
    if config["images_every"]:
        examples = _image_examples(config, input_shape, shape)
    model.compile(
        optimizer=keras.optimizers.Adam(
            config["learning_rate"],
            global_clipnorm=config["grad_clip"] or None,
            use_ema=bool(config["ema"]),
            ema_momentum=config["ema"] or 0.99,
        ),
        skip_threshold=config["skip_threshold"],
        max_consecutive_skips=config["max_consecutive_skips"],
        jit_compile=config["xla"],
    )
    created = not os.path.exists(out_dir)
    if not resume:  # the data and the model are checked: the run can start
        os.makedirs(out_dir, exist_ok=True)
        _files.write_json(run_file, config)
    run_callbacks, history = _callbacks(config, out_dir, examples)
    try:
        model.fit(
            train_data,
            epochs=config["epochs"],
            validation_data=validation,
            callbacks=run_callbacks,
            verbose=verbose,
            shuffle=False,  # the dataset reshuffles itself every epoch
        )
    except BaseException:
        if not resume and not history.rows:
            # Stopped before its first epoch (bad data found by the steps, a
            # diverged first step, an interrupt): nothing to resume, so
            # nothing is left that would block a fresh run or replay it.
            _remove_run(out_dir, created)
        raise
    best_epoch = None
    if history.patience:
        history.restore_best()
        best_epoch = history.best_epoch
    model_path = os.path.join(out_dir, "model.keras")
    model.save(model_path)
    return RunResult(model=model, model_path=model_path, best_epoch=best_epoch)
