"""The `tfvae` command line: train, evaluate, sample, reconstruct, traverse, export.

Every subcommand has `--help`. Errors print one line, `tfvae: error: ...`, and
exit with status 2, without a traceback.
"""

import argparse
import json
import math
import os
import re
import sys

from tfvae.version import __version__


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


def _non_negative_float(text):
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value}")
    return value


def _momentum(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _progress_argument(parser):
    """`--progress FILE`: an evaluation's partial results, to go on from."""
    parser.add_argument(
        "--progress",
        metavar="FILE",
        help="keep the partial results in FILE and go on from them when run "
        "again (an evaluation of hours, killed midway, loses nothing)",
    )


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
    train.add_argument(
        "--prior",
        help="p(z) of the top layer: standard_normal (default), mog:K (a learned "
        "mixture of K Gaussians) or vamp:K (a VampPrior with K pseudo-inputs)",
    )
    train.add_argument(
        "--kl",
        choices=["analytic", "mc"],
        help="vae KL term: the closed form (the default where the prior has one) "
        "or the sampled log-density ratio (mc, the default otherwise)",
    )
    train.add_argument("--beta", type=float)
    train.add_argument("--num-samples", type=_positive_int)
    train.add_argument("--free-bits", type=float)
    train.add_argument("--objective", choices=["elbo", "iwae"])
    train.add_argument(
        "--inference",
        choices=["bottom_up", "ladder", "top_down"],
        help="hvae inference model: bottom_up (q(z_2|z_1), default), ladder "
        "(top-down, Sønderby et al. 2016) or top_down (q(z_1|x, z_2) a learned "
        "network, Tomczak & Welling 2018)",
    )
    train.add_argument(
        "--architecture",
        choices=["mlp", "conv"],
        help="networks next to x: mlp (default) or conv (gated convolutions; "
        "the dataset's examples are images)",
    )
    train.add_argument(
        "--skip",
        action="store_const",
        const=True,
        help="hvae decoder p(x|z_1, ..., z_L), a function of every layer",
    )
    train.add_argument(
        "--dataset", help="binarized_mnist, mnist, fashion_mnist, digits or a file"
    )
    train.add_argument(
        "--conditional",
        action="store_const",
        const=True,
        help="a class-conditional model, p(x|z, y) and q(z|x, y), trained on the "
        "dataset's labels (mnist, fashion_mnist, caltech101_silhouettes, digits, "
        "or a file with labels)",
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
    train.add_argument(
        "--ema",
        type=_momentum,
        metavar="MOMENTUM",
        help="evaluate, checkpoint and keep an exponential moving average of the "
        "weights with this momentum, e.g. 0.999 (0: off)",
    )
    train.add_argument(
        "--grad-clip",
        type=_non_negative_float,
        metavar="NORM",
        help="clip the gradient's global norm to NORM (0: off)",
    )
    train.add_argument(
        "--skip-threshold",
        type=_positive_float,
        metavar="NORM",
        help="skip updates whose gradient norm exceeds NORM or is not finite "
        "(inf: only non-finite ones); the history gains grad_norm and skipped",
    )
    train.add_argument(
        "--max-consecutive-skips",
        type=_positive_int,
        metavar="N",
        help="stop the run after more than N skipped updates in a row (100)",
    )
    train.add_argument(
        "--images-every",
        type=_non_negative_int,
        metavar="N",
        help="every N epochs and after the last, write grids of samples (from "
        "fixed noise) and reconstructions to TensorBoard, in OUT/logs/images "
        "(0: off)",
    )
    train.add_argument(
        "--xla",
        action="store_true",
        default=None,
        help="compile the train and test steps with XLA (jit_compile=True)",
    )
    train.add_argument(
        "--init",
        metavar="MODEL",
        help="start from the weights of this .keras file or preset (the same "
        "model; the objective, --num-samples, the learning rate may differ)",
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
        "--binarizations",
        type=_positive_int,
        metavar="B",
        help="with --binarize dynamic: the test protocol of dynamically "
        "binarized data, the mean over B seeded binarizations (seeds 0..B-1)",
    )
    _progress_argument(evaluate)
    evaluate.add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )

    sample = commands.add_parser("sample", help="a PNG grid of samples")
    sample.add_argument("model_path", metavar="MODEL")
    sample.add_argument("--num", type=_positive_int, default=64)
    sample.add_argument("--seed", type=int, default=0)
    _label_argument(
        sample,
        "draw class N only (a conditional model draws a row "
        "of --columns samples per class without it)",
    )
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
    _label_argument(traverse, "the class to decode (a conditional model needs it)")
    _picture_arguments(traverse, "traversal.png")

    pseudo = commands.add_parser(
        "pseudo-inputs", help="the learned pseudo-inputs of a VampPrior model"
    )
    pseudo.add_argument("model_path", metavar="MODEL")
    _picture_arguments(pseudo, "pseudo_inputs.png")

    plot = commands.add_parser(
        "plot",
        help="a PNG of a run's training curves: bounds, KL, learning rate, KL weight",
    )
    plot.add_argument("run_dir", metavar="RUN_DIR", help="a tfvae train --out folder")
    plot.add_argument("--out", default="curves.png", help="the PNG (curves.png)")
    plot.add_argument("--overwrite", action="store_true")

    zoo = commands.add_parser(
        "zoo", help="pretrained presets: list, info, verify, publish"
    )
    zoo_commands = zoo.add_subparsers(
        dest="zoo_command", parser_class=_Parser, required=True
    )
    zoo_list = zoo_commands.add_parser(
        "list", help="the presets: dataset, likelihood, test NLL, bits/dim, size"
    )
    zoo_list.add_argument(
        "--names", action="store_true", help="the preset names only, a line each"
    )
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
    _progress_argument(verify)
    publish = zoo_commands.add_parser(
        "publish", help="evaluate a finished training run and write a preset folder"
    )
    publish.add_argument("run_dir", metavar="RUN_DIR")
    publish.add_argument("folder", metavar="PRESET_FOLDER")
    publish.add_argument("--recipe", help="the recipe file the run was trained from")
    publish.add_argument("--description", default="")
    publish.add_argument("--num-samples", type=_positive_int, default=5000)
    publish.add_argument(
        "--binarizations",
        type=_positive_int,
        metavar="B",
        help="a dynamically binarized run's test protocol: the mean over B "
        "seeded binarizations of the test set (default 3)",
    )
    publish.add_argument("--overwrite", action="store_true")
    _progress_argument(publish)

    export = commands.add_parser(
        "export",
        help="a SavedModel for TF Serving, or ONNX or LiteRT encoder and decoder files",
    )
    export.add_argument("model_path", metavar="MODEL")
    export.add_argument("export_dir", metavar="EXPORT_DIR")
    export.add_argument(
        "--format",
        choices=_EXPORT_FORMATS,
        default="savedmodel",
        help="savedmodel (TF Serving, the default), onnx (encoder.onnx and "
        "decoder.onnx) or litert (encoder.tflite and decoder.tflite)",
    )
    export.add_argument(
        "--version",
        type=_non_negative_int,
        dest="export_version",
        help="the TF Serving version folder N (savedmodel only)",
    )
    export.add_argument("--overwrite", action="store_true")
    return parser


def _label_argument(parser, help):
    parser.add_argument(
        "--label", type=_non_negative_int, metavar="N", help=f"conditional: {help}"
    )


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


def _train(args):
    from tfvae import runs

    if not args.out:
        raise UsageError("train needs --out FOLDER")
    if args.resume:
        given = sorted(
            f"--{key.replace('_', '-')}"
            for key in runs.DEFAULTS
            if getattr(args, key, None) is not None
        )
        if args.config:
            given.insert(0, "--config")
        if given:
            raise UsageError(
                f"--resume continues the run in {args.out} with the options of "
                f"its run.json; {', '.join(given)} would be ignored. Drop them, "
                "or start a new run with another --out"
            )
        result = runs.train(None, args.out, resume=True, verbose=args.verbose)
    else:
        # Only the options this command defines (every key of runs.DEFAULTS).
        flags = {key: getattr(args, key, None) for key in runs.DEFAULTS}
        config = runs.resolve(args.config, **flags)
        result = runs.train(config, args.out, verbose=args.verbose)
    if result.best_epoch is not None:
        print(f"kept the weights of epoch {result.best_epoch}")
    print(f"wrote {result.model_path}")
    return 0


# --- evaluate, pictures, export -----------------------------------------------


def _load_model(path):
    """A model from a .keras file or a preset (`tfvae.zoo.load_model`)."""
    from tfvae import zoo

    return zoo.load_model(path)


def _load_data(args, model, binarize=True):
    from tfvae import data

    loaded = data.load(
        args.dataset,
        args.split,
        binarize=args.binarize if binarize else None,
        dequantize=args.dequantize,
        limit=args.limit,
        labels=model.num_classes > 0,  # a conditional model's (x, labels)
    )
    x = loaded[0] if model.num_classes else loaded
    if x.shape[1:] != model.input_shape and x[0].size == math.prod(model.input_shape):
        x = x.reshape(len(x), *model.input_shape)  # e.g. images for a conv model
    if x.shape[1:] != model.input_shape:
        raise UsageError(
            f"dataset {args.dataset!r} has examples of shape {x.shape[1:]}, the "
            f"model expects {model.input_shape}"
        )
    return (x, loaded[1]) if model.num_classes else x


def _evaluate(args):
    from tfvae import certificate, data, estimators

    if args.binarizations and args.binarize != "dynamic":
        raise UsageError(
            "--binarizations is the protocol of dynamically binarized data: "
            "it needs --binarize dynamic"
        )
    estimators.use_evaluation_threads()
    model = _load_model(args.model_path)
    # B binarizations are drawn from the grey levels by certify itself.
    x = _load_data(args, model, binarize=not args.binarizations)
    result = certificate.certify(
        model,
        x,
        num_samples=args.num_samples,
        seed=args.seed,
        levels=data.dequantize_levels(args.dataset, args.dequantize),
        progress=args.progress,
        binarizations=args.binarizations,
    )
    result.update(
        dataset=str(args.dataset),
        split=args.split,
        # 0: TensorFlow's own choice (or TF_NUM_*_THREADS, which it reads).
        threads=estimators.thread_settings(),
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
        *(
            [
                (
                    f"per binarization ({args.binarizations})",
                    ", ".join(
                        f"{v:.2f}" for v in result["log_likelihood_per_binarization"]
                    ),
                )
            ]
            if args.binarizations
            else []
        ),
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

    picture = _images.grid(images, model.input_shape, args.columns)
    _images.write_png(picture, args.out)
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})")
    return 0


def _labels(args, model, count):
    """The labels of `count` pictures of a conditional model (`--label`), or None."""
    import numpy as np

    if not model.num_classes:
        if args.label is not None:
            raise UsageError(
                f"--label applies to a conditional model; {args.model_path} takes "
                "no labels (num_classes=0)"
            )
        return None
    if args.label is None:
        return None
    if args.label >= model.num_classes:
        raise UsageError(
            f"--label must be a class in [0, {model.num_classes}); got {args.label}"
        )
    return np.full((count,), args.label)


def _sample(args):
    from tfvae import conditional

    model = _load_model(args.model_path)
    labels = _labels(args, model, args.num)
    if model.num_classes and labels is None:  # a row per class
        labels = conditional.rows_of_classes(model.num_classes, args.columns)
    count = args.num if labels is None else len(labels)
    kwargs = {} if labels is None else {"labels": labels}
    images = model.sample(count, seed=args.seed, **kwargs).numpy()
    return _write_picture(args, images, model)


def _reconstruct(args):
    from tfvae import _images

    model = _load_model(args.model_path)
    inputs = _load_data(args, model)
    if model.num_classes:  # x with its labels
        inputs = tuple(part[: args.num] for part in inputs)
        x = inputs[0]
    else:
        inputs = x = inputs[: args.num]
    recon = model.reconstruct(inputs).numpy()
    # A row of originals, then the row of theirs.
    return _write_picture(args, _images.pairs(x, recon, args.columns), model)


def _pseudo_inputs(args):
    model = _load_model(args.model_path)
    if not hasattr(model.prior, "pseudo_inputs"):
        raise UsageError(
            f"{args.model_path} has a {type(model.prior).__name__} prior, which has "
            "no pseudo-inputs; expected a model with a VampPrior (--prior vamp:K)"
        )
    return _write_picture(args, model.prior.pseudo_inputs().numpy(), model)


def _traverse(args):
    import numpy as np

    model = _load_model(args.model_path)
    dim = model.decode_dim
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
    labels = _labels(args, model, len(z))
    if model.num_classes and labels is None:
        raise UsageError(
            f"{args.model_path} is conditional ({model.num_classes} classes): "
            "pass --label N, the class to decode"
        )
    conditions = () if labels is None else (labels,)
    return _write_picture(
        args, model.likelihood.picture(model.decode_given(z, conditions)).numpy(), model
    )


def _plot(args):
    from tfvae import plots

    print(f"wrote {plots.plot_history(args.run_dir, args.out, args.overwrite)}")
    return 0


# The formats of `tfvae export --format`.
_EXPORT_FORMATS = ("savedmodel", "onnx", "litert")


def _export(args):
    import tfvae

    if args.format != "savedmodel" and args.export_version is not None:
        raise UsageError(
            "--version N writes a TF Serving version folder of a SavedModel; "
            f"drop it for --format {args.format}"
        )
    model = _load_model(args.model_path)
    if args.format == "onnx":
        path = tfvae.export_onnx(model, args.export_dir, overwrite=args.overwrite)
    elif args.format == "litert":
        path = tfvae.export_litert(model, args.export_dir, overwrite=args.overwrite)
    else:
        path = tfvae.export_saved_model(
            model,
            args.export_dir,
            version=args.export_version,
            overwrite=args.overwrite,
        )
    print(f"wrote {path}")
    return 0


def _zoo(args):
    from tfvae import estimators, zoo

    if args.zoo_command in ("verify", "publish"):
        estimators.use_evaluation_threads()
    if args.zoo_command == "list":
        if args.names:
            print("\n".join(zoo.list()))
            return 0
        _print_table(_zoo_rows([zoo.summary(name) for name in zoo.list()]))
        return 0
    if args.zoo_command == "info":
        print(json.dumps(zoo.info(args.name), indent=2))
        return 0
    if args.zoo_command == "verify":
        recorded, measured = zoo.verify(
            args.name,
            num_samples=args.num_samples,
            subset=args.subset,
            seed=args.seed,
            progress=args.progress,
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


def _zoo_rows(summaries):
    """The rows of `tfvae zoo list`: a header, then a preset a row."""
    rows = [("preset", "dataset", "likelihood", "test NLL", "bits/dim", "size")]
    for entry in summaries:
        nll, bits = entry["nll"], entry["bits_per_dim"]
        rows.append(
            (
                entry["name"],
                entry["dataset"],
                entry["likelihood"],
                "-" if nll is None else f"{nll:.2f} nats",
                "-" if bits is None else f"{bits:.4f}",
                f"{entry['parameters'] / 1e6:.2f}M params, "
                f"{entry['size_bytes'] / 2**20:.1f} MiB",
            )
        )
    return rows


def _print_table(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def _publish(args):
    from tfvae import zoo

    metadata = zoo.publish(
        args.run_dir,
        args.folder,
        recipe=args.recipe,
        description=args.description,
        num_samples=args.num_samples,
        overwrite=args.overwrite,
        progress=args.progress,
        binarizations=args.binarizations,
    )
    print(json.dumps(metadata["metrics"], indent=2))
    parent = os.path.dirname(os.path.abspath(args.folder))
    registry = os.path.join(parent, zoo.REGISTRY_FILE)
    where = f"; its sha256 is in {registry}" if os.path.exists(registry) else ""
    print(f"wrote {args.folder}{where}: {metadata['sha256']}")
    return 0


_COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "sample": _sample,
    "reconstruct": _reconstruct,
    "traverse": _traverse,
    "pseudo-inputs": _pseudo_inputs,
    "plot": _plot,
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
        if args.command in _PICTURE_COMMANDS:  # before any work
            from tfvae import _images

            _images.check_png_path(args.out, overwrite=args.overwrite)
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("tfvae: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line, no traceback
        print(f"tfvae {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


# The commands that write a picture to --out.
_PICTURE_COMMANDS = ("sample", "reconstruct", "traverse", "pseudo-inputs")


def _one_line(error):
    """The whole message of an error on one line, without TensorFlow op text."""
    message = getattr(error, "message", None) or str(error)
    if not isinstance(message, str) or not message.strip():
        return repr(error)
    # A TensorFlow error names its op and graph node: not for the user.
    message = re.sub(r"\{\{function_node [^}]*\}\}", "", message)
    message = re.sub(r"\s*\[Op:[^\]]*\]", "", message)
    message = re.sub(r"\s*\[\[\{\{node [^}]*\}\}\]\]", "", message)
    return " ".join(message.split())


if __name__ == "__main__":
    raise SystemExit(main())
