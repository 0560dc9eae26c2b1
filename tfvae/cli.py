"""The `tfvae` command line: train, evaluate, sample, reconstruct, traverse, export.

Every subcommand has `--help`. Errors print one line, `tfvae: error: ...`, and
exit with status 2, without a traceback.
"""

import argparse
import json
import os
import platform
import sys

from tfvae import _files
from tfvae.version import __version__

_TRAIN_DEFAULTS = {
    "model": "vae",
    "latent_dim": 50,
    "latent_dims": "100,50",
    "hidden_units": None,
    "activation": "tanh",
    "likelihood": "bernoulli",
    "beta": 1.0,
    "num_samples": 1,
    "free_bits": 0.0,
    "objective": "elbo",
    "inference": "bottom_up",
    "gated": False,
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
    "seed": 0,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(ValueError):
    """A problem with what the user asked for, reported in one line."""


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _parser():
    parser = _Parser(prog="tfvae", description="Variational autoencoders for Keras 3.")
    parser.add_argument("--version", action="version", version=f"tfvae {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    train = commands.add_parser("train", help="train a VAE or hierarchical VAE")
    train.add_argument("--config", help="JSON or YAML file of the options below")
    train.add_argument("--out", help="output folder (must not exist, unless --resume)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out from its last epoch",
    )
    train.add_argument("--model", choices=["vae", "hvae"])
    train.add_argument("--latent-dim", type=_positive_int, help="VAE latent size (50)")
    train.add_argument("--latent-dims", help="hvae latent sizes, z_1 first (100,50)")
    train.add_argument(
        "--hidden-units",
        help="widths, e.g. 200,200; for hvae per layer: 200,200;100,100",
    )
    train.add_argument("--activation")
    train.add_argument(
        "--gated",
        action="store_const",
        const=True,
        help="gated hidden layers, activation(W x + b) * sigmoid(V x + c)",
    )
    train.add_argument(
        "--likelihood",
        help="bernoulli, gaussian, gaussian-shared or gaussian-fixed:SIGMA",
    )
    train.add_argument("--beta", type=float)
    train.add_argument("--num-samples", type=_positive_int)
    train.add_argument("--free-bits", type=float)
    train.add_argument("--objective", choices=["elbo", "iwae"])
    train.add_argument(
        "--inference",
        choices=["bottom_up", "ladder"],
        help="hvae inference model: bottom_up (q(z_2|z_1), default) or ladder "
        "(top-down, Sønderby et al. 2016)",
    )
    train.add_argument(
        "--dataset", help="binarized_mnist, mnist, fashion_mnist, digits or a file"
    )
    train.add_argument("--binarize", choices=["dynamic"])
    train.add_argument(
        "--dequantize",
        choices=["uniform"],
        help="uniform dequantization of grey levels (digits, mnist, fashion_mnist)",
    )
    train.add_argument("--limit", type=_positive_int, help="use the first N examples")
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--batch-size", type=_positive_int)
    train.add_argument("--learning-rate", type=_positive_float)
    train.add_argument(
        "--warmup", type=_non_negative_int, help="KL warm-up epochs (0: none)"
    )
    train.add_argument(
        "--early-stopping",
        type=_non_negative_int,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a better validation bound (the "
        "ELBO, or the IWAE bound under --objective iwae) and keep the best "
        "epoch's weights (0: off)",
    )
    train.add_argument(
        "--lr-plateau",
        type=_non_negative_int,
        metavar="PATIENCE",
        help="halve the learning rate after PATIENCE epochs without a better "
        "validation bound, down to 1/64 of --learning-rate (0: off)",
    )
    train.add_argument("--seed", type=int)
    train.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)

    evaluate = commands.add_parser(
        "evaluate", help="ELBO, log-likelihood, active units"
    )
    evaluate.add_argument("model_path", metavar="MODEL")
    _data_arguments(evaluate)
    evaluate.add_argument("--num-samples", type=_positive_int, default=5000)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )

    sample = commands.add_parser("sample", help="a PNG grid of samples")
    sample.add_argument("model_path", metavar="MODEL")
    sample.add_argument("--num", type=_positive_int, default=64)
    sample.add_argument("--seed", type=int, default=0)
    _picture_arguments(sample, "samples.png")

    reconstruct = commands.add_parser(
        "reconstruct", help="originals above reconstructions"
    )
    reconstruct.add_argument("model_path", metavar="MODEL")
    _data_arguments(reconstruct)
    reconstruct.add_argument("--num", type=_positive_int, default=16)
    _picture_arguments(reconstruct, "reconstructions.png")

    traverse = commands.add_parser("traverse", help="a latent traversal grid")
    traverse.add_argument("model_path", metavar="MODEL")
    traverse.add_argument(
        "--dims", type=int, nargs=2, default=[0, 1], metavar=("I", "J")
    )
    traverse.add_argument("--steps", type=_positive_int, default=10)
    traverse.add_argument("--range", type=_positive_float, default=2.5, dest="extent")
    _picture_arguments(traverse, "traversal.png")

    zoo = commands.add_parser(
        "zoo", help="pretrained presets: list, info, verify, publish"
    )
    zoo_commands = zoo.add_subparsers(
        dest="zoo_command", parser_class=_Parser, required=True
    )
    zoo_commands.add_parser("list", help="the preset names")
    zoo_info = zoo_commands.add_parser("info", help="a preset's metadata (JSON)")
    zoo_info.add_argument("name", metavar="NAME")
    verify = zoo_commands.add_parser(
        "verify", help="recompute a preset's test numbers against its card"
    )
    verify.add_argument("name", metavar="NAME")
    verify.add_argument("--num-samples", type=_positive_int, default=5000)
    verify.add_argument(
        "--subset", type=_positive_int, help="a random subset of N test images"
    )
    verify.add_argument("--seed", type=int, default=0)
    publish = zoo_commands.add_parser(
        "publish", help="evaluate a finished training run and write a preset folder"
    )
    publish.add_argument("run_dir", metavar="RUN_DIR")
    publish.add_argument("folder", metavar="PRESET_FOLDER")
    publish.add_argument("--recipe", help="the recipe file the run was trained from")
    publish.add_argument("--description", default="")
    publish.add_argument("--num-samples", type=_positive_int, default=5000)
    publish.add_argument("--overwrite", action="store_true")

    export = commands.add_parser("export", help="a SavedModel for TF Serving")
    export.add_argument("model_path", metavar="MODEL")
    export.add_argument("export_dir", metavar="EXPORT_DIR")
    export.add_argument("--version", type=_non_negative_int, dest="export_version")
    export.add_argument("--overwrite", action="store_true")
    return parser


def _data_arguments(parser):
    parser.add_argument("--dataset", default="binarized_mnist")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=_positive_int)
    parser.add_argument("--binarize", choices=["dynamic"])
    parser.add_argument("--dequantize", choices=["uniform"])


def _picture_arguments(parser, default):
    parser.add_argument("--out", default=default)
    parser.add_argument("--columns", type=_positive_int, default=8)
    parser.add_argument("--overwrite", action="store_true")


# --- train ---------------------------------------------------------------


def _read_config(path):
    if not os.path.exists(path):
        raise UsageError(f"no such config file: {path}")
    with open(path) as file:
        text = file.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        config = yaml.safe_load(text)
    else:
        config = json.loads(text)
    if not isinstance(config, dict):
        raise UsageError(f"{path} must hold a mapping of options")
    config = {key.replace("-", "_"): value for key, value in config.items()}
    unknown = sorted(set(config) - set(_TRAIN_DEFAULTS))
    if unknown:
        raise UsageError(
            f"unknown options in {path}: {unknown}; valid: {sorted(_TRAIN_DEFAULTS)}"
        )
    return config


def _widths(text):
    try:
        return tuple(int(w) for w in str(text).split(",") if w.strip())
    except ValueError:
        raise UsageError(
            f"widths must be integers separated by commas, got {text!r}"
        ) from None


def _likelihood(text):
    from tfvae import heads

    if text in ("bernoulli", "gaussian"):
        return text
    if text == "gaussian-shared":
        return heads.GaussianHead(scale="shared")
    if str(text).startswith("gaussian-fixed:"):
        return heads.GaussianHead(scale=float(text.split(":", 1)[1]))
    raise UsageError(
        "--likelihood must be bernoulli, gaussian, gaussian-shared or "
        f"gaussian-fixed:SIGMA, got {text!r}"
    )


def build_model(config, input_shape):
    """A compiled-ready model from a run configuration."""
    import tfvae

    common = dict(
        input_shape=input_shape,
        activation=config["activation"],
        likelihood=_likelihood(config["likelihood"]),
        beta=config["beta"],
        num_samples=config["num_samples"],
        free_bits=config["free_bits"],
        objective=config["objective"],
        gated=config["gated"],
        seed=config["seed"],
    )
    if config["model"] == "vae":
        hidden = (
            config["hidden_units"] if config["hidden_units"] is not None else "200,200"
        )
        return tfvae.VAE(
            latent_dim=config["latent_dim"], hidden_units=_widths(hidden), **common
        )
    hidden = (
        config["hidden_units"]
        if config["hidden_units"] is not None
        else "200,200;100,100"
    )
    return tfvae.HierarchicalVAE(
        latent_dims=_widths(config["latent_dims"]),
        hidden_units=tuple(_widths(layer) for layer in str(hidden).split(";")),
        inference=config["inference"],
        **common,
    )


def _has_validation_split(dataset):
    from tfvae import data

    splits = getattr(data._SOURCES.get(dataset), "splits", ())
    return "valid" in splits or dataset == "digits"


def _check_train_config(config):
    """Refuses option combinations that cannot work, before any file is written."""
    if config["model"] == "vae" and config["inference"] != "bottom_up":
        raise UsageError(
            f"--inference {config['inference']} applies to --model hvae only; "
            "expected bottom_up (the default) for --model vae"
        )
    for option in ("early_stopping", "lr_plateau"):
        if config[option] and not _has_validation_split(config["dataset"]):
            raise UsageError(
                f"{option} needs a validation split; {config['dataset']!r} has none"
            )


def _train(args):
    import keras

    import tfvae
    from tfvae import data

    if not args.out:
        raise UsageError("train needs --out FOLDER")
    run_file = os.path.join(args.out, "run.json")
    if args.resume:
        if not os.path.exists(run_file):
            raise UsageError(f"nothing to resume in {args.out}: no run.json")
        with open(run_file) as file:
            # Options added since the run started take their defaults.
            config = {**_TRAIN_DEFAULTS, **json.load(file)}
        if os.path.exists(os.path.join(args.out, "model.keras")):
            raise UsageError(f"the run in {args.out} is already complete (model.keras)")
    else:
        if os.path.isdir(args.out) and os.listdir(args.out):
            raise UsageError(
                f"{args.out} exists and is not empty; pass --resume to continue "
                "its run, or choose another --out"
            )
        config = dict(_TRAIN_DEFAULTS)
        if args.config:
            config.update(_read_config(args.config))
        for key in _TRAIN_DEFAULTS:
            value = getattr(args, key, None)
            if value is not None:
                config[key] = value
        _check_train_config(config)
        os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(config["seed"])
    train = data.dataset(
        config["dataset"],
        "train",
        config["batch_size"],
        binarize=config["binarize"],
        dequantize=config["dequantize"],
        seed=config["seed"],
        limit=config["limit"],
    )
    validation = None
    if _has_validation_split(config["dataset"]):
        validation = data.dataset(
            config["dataset"],
            "valid",
            1000,
            shuffle=False,
            binarize=config["binarize"],
            dequantize=config["dequantize"],
            seed=config["seed"],
        )
    input_shape = tuple(train.element_spec.shape[1:])
    model = build_model(config, input_shape)
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))
    if not args.resume:
        _files.write_json(run_file, config)

    best_path = os.path.join(args.out, "best.weights.h5")
    history = tfvae.callbacks.HistoryFile(
        os.path.join(args.out, "history.json"),
        patience=config["early_stopping"],
        best_weights_path=best_path,
        # Early stopping watches the bound being trained.
        monitor=f"val_{config['objective']}",
    )
    checkpoints = os.path.join(args.out, "checkpoints")
    os.makedirs(checkpoints, exist_ok=True)
    # The backup comes last: an epoch is backed up only once its checkpoint and
    # history row are written, so a run killed at any moment resumes cleanly.
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            os.path.join(checkpoints, "epoch-{epoch:03d}.keras")
        ),
        keras.callbacks.TensorBoard(os.path.join(args.out, "logs")),
        history,
        tfvae.callbacks.BackupAndRestore(os.path.join(args.out, "backup")),
    ]
    if config["warmup"]:
        callbacks.insert(0, tfvae.callbacks.KLWarmup(epochs=config["warmup"]))
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
        callbacks.insert(callbacks.index(history), plateau)
    model.fit(
        train,
        epochs=config["epochs"],
        validation_data=validation,
        callbacks=callbacks,
        verbose=args.verbose,
        shuffle=False,  # the dataset reshuffles itself every epoch
    )
    if history.patience:
        model.load_weights(best_path)
        print(f"kept the weights of epoch {history.best_epoch}")
    model.save(os.path.join(args.out, "model.keras"))
    print(f"wrote {os.path.join(args.out, 'model.keras')}")
    return 0


# --- evaluate, pictures, export -----------------------------------------------


def _load_model(path):
    """A model from a .keras file or a preset name."""
    import keras

    from tfvae import zoo

    if os.path.exists(path):
        return keras.models.load_model(path)
    if path in zoo.list():
        return zoo.load(path)
    raise UsageError(f"no such model file or preset: {path} (presets: {zoo.list()})")


def _load_data(args, model):
    from tfvae import data

    x = data.load(
        args.dataset,
        args.split,
        binarize=args.binarize,
        dequantize=args.dequantize,
        limit=args.limit,
    )
    if x.shape[1:] != model.input_shape:
        raise UsageError(
            f"dataset {args.dataset!r} has examples of shape {x.shape[1:]}, the "
            f"model expects {model.input_shape}"
        )
    return x


def _evaluate(args):
    import tfvae
    from tfvae import data, estimators

    tfvae.use_evaluation_threads()
    model = _load_model(args.model_path)
    x = _load_data(args, model)
    result = tfvae.evaluate_log_likelihood(
        model, x, num_samples=args.num_samples, seed=args.seed, verbose=0
    )
    result["bits_per_dim"] = float(
        tfvae.bits_per_dim(
            result["log_likelihood"],
            model.input_shape,
            levels=data.dequantize_levels(args.dataset, args.dequantize),
        )
    )
    result["active_units"] = tfvae.diagnostics.active_units(model, x)["active_units"]
    result["kl_per_layer"] = [
        float(k.sum()) for k in tfvae.diagnostics.kl_per_dimension(model, x)
    ]
    result.update(
        dataset=str(args.dataset),
        split=args.split,
        # 0: TensorFlow's own choice (or TF_NUM_*_THREADS, which it reads).
        threads=estimators._thread_settings(),
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = [
        ("examples", f"{result['num_examples']} ({args.dataset}, {args.split})"),
        ("ELBO", f"{result['elbo']:.2f} +- {result['elbo_stderr']:.2f} nats"),
        (
            f"log-likelihood (K={args.num_samples})",
            f"{result['log_likelihood']:.2f} +- "
            f"{result['log_likelihood_stderr']:.2f} nats",
        ),
        ("NLL", f"{result['nll']:.2f} nats ({result['bits_per_dim']:.4f} bits/dim)"),
        ("active units", ", ".join(map(str, result["active_units"]))),
        ("KL per layer", ", ".join(f"{k:.2f}" for k in result["kl_per_layer"])),
        (
            "TF threads",
            "intra-op {intra_op}, inter-op {inter_op} (0: TensorFlow's choice)".format(
                **result["threads"]
            ),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _write_picture(args, images, model):
    from tfvae import _images

    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"{args.out} exists; pass --overwrite to replace it")
    picture = _images.grid(images, model.input_shape, args.columns)
    _images.write_png(picture, args.out)
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})")
    return 0


def _sample(args):
    model = _load_model(args.model_path)
    return _write_picture(args, model.sample(args.num, seed=args.seed).numpy(), model)


def _reconstruct(args):
    import numpy as np

    model = _load_model(args.model_path)
    x = _load_data(args, model)[: args.num]
    recon = model.reconstruct(x).numpy()
    rows = []
    for start in range(0, len(x), args.columns):  # a row of originals, then theirs
        rows += [x[start : start + args.columns], recon[start : start + args.columns]]
    return _write_picture(args, np.concatenate(rows), model)


def _traverse(args):
    import numpy as np

    model = _load_model(args.model_path)
    dim = model._noise_dims[0]
    i, j = args.dims
    if not (0 <= i < dim and 0 <= j < dim and i != j):
        raise UsageError(
            f"--dims must be two different latent dimensions in [0, {dim})"
        )
    values = np.linspace(-args.extent, args.extent, args.steps)
    z = np.zeros((args.steps * args.steps, dim), np.float32)
    z[:, i] = np.repeat(values[::-1], args.steps)  # rows: dimension i, top to bottom
    z[:, j] = np.tile(values, args.steps)  # columns: dimension j
    args.columns = args.steps
    return _write_picture(args, model.decode(z).mean().numpy(), model)


def _export(args):
    import tfvae

    model = _load_model(args.model_path)
    path = tfvae.export_saved_model(
        model, args.export_dir, version=args.export_version, overwrite=args.overwrite
    )
    print(f"wrote {path}")
    return 0


def _zoo(args):
    from tfvae import estimators, zoo

    if args.zoo_command in ("verify", "publish"):
        estimators.use_evaluation_threads()
    if args.zoo_command == "list":
        for name in zoo.list():
            print(name)
        return 0
    if args.zoo_command == "info":
        print(json.dumps(zoo.info(args.name), indent=2))
        return 0
    if args.zoo_command == "verify":
        recorded, measured = zoo.verify(
            args.name, num_samples=args.num_samples, subset=args.subset, seed=args.seed
        )
        print(
            f"{args.name}: test split, {measured['num_examples']} examples, "
            f"K = {args.num_samples}"
        )
        print(f"{'metric':<20} {'recorded':>10} {'measured':>10} {'stderr':>8}")
        for key, error in (
            ("elbo", "elbo_stderr"),
            ("log_likelihood", "log_likelihood_stderr"),
        ):
            print(
                f"{key:<20} {recorded.get(key, float('nan')):>10.2f} "
                f"{measured[key]:>10.2f} {measured[error]:>8.2f}"
            )
        return 0
    return _publish(args)


def _publish(args):
    import keras

    import tfvae
    from tfvae import data, zoo

    model_path = os.path.join(args.run_dir, "model.keras")
    if not os.path.exists(model_path):
        raise UsageError(f"no finished run in {args.run_dir}: no model.keras")
    with open(os.path.join(args.run_dir, "run.json")) as file:
        config = json.load(file)
    with open(os.path.join(args.run_dir, "history.json")) as file:
        history = json.load(file)
    model = keras.models.load_model(model_path)
    preprocessing = {key: config.get(key) for key in ("binarize", "dequantize")}
    x = data.load(config["dataset"], "test", seed=0, **preprocessing)
    measured = tfvae.evaluate_log_likelihood(
        model, x, num_samples=args.num_samples, seed=0
    )
    layers = tfvae.diagnostics.kl_per_dimension(model, x)
    metrics = {
        "elbo": round(measured["elbo"], 3),
        "elbo_stderr": round(measured["elbo_stderr"], 3),
        "log_likelihood": round(measured["log_likelihood"], 3),
        "log_likelihood_stderr": round(measured["log_likelihood_stderr"], 3),
        "nll": round(measured["nll"], 3),
        "bits_per_dim": round(
            float(
                tfvae.bits_per_dim(
                    measured["log_likelihood"],
                    model.input_shape,
                    levels=data.dequantize_levels(
                        config["dataset"], preprocessing["dequantize"]
                    ),
                )
            ),
            4,
        ),
        "num_samples": args.num_samples,
        "num_examples": measured["num_examples"],
        "active_units": tfvae.diagnostics.active_units(model, x)["active_units"],
        "kl_per_layer": [round(float(k.sum()), 3) for k in layers],
    }
    name = os.path.basename(os.path.abspath(args.folder))
    recipe = f"zoo/{name}/recipe.yaml" if args.recipe else "run.json"
    metadata = {
        "name": name,
        "description": args.description,
        "data": {"name": config["dataset"], **preprocessing},
        "dataset": f"{config['dataset']} (train split; test split for the metrics)",
        "preprocessing": ", ".join(f"{k}={v}" for k, v in preprocessing.items()),
        "objective": config["objective"],
        "recipe": config,
        "training_command": f"tfvae train --config {recipe} --out runs/{name}",
        "training_time": f"{sum(r.get('seconds', 0) for r in history) / 60:.1f} min",
        "epochs": len(history),
        "hardware": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "metrics": metrics,
        "evaluation_command": (
            f"tfvae zoo verify {name} --num-samples {args.num_samples}"
        ),
    }
    extra = {"recipe.yaml": args.recipe} if args.recipe else None
    zoo.save_preset(
        model, args.folder, metadata, overwrite=args.overwrite, extra_files=extra
    )
    print(json.dumps(metrics, indent=2))
    print(
        f"wrote {args.folder}; register its sha256 in tfvae/zoo.py: {name!r}: "
        f"{zoo.info(args.folder)['sha256']!r}"
    )
    return 0


_COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "sample": _sample,
    "reconstruct": _reconstruct,
    "traverse": _traverse,
    "export": _export,
    "zoo": _zoo,
}


def main(argv=None):
    """Entry point of the `tfvae` console script. Returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("tfvae: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line, no traceback
        message = (
            str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        )
        print(f"tfvae {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
