"""Every bad input, tried: the command line, the Python API and the SavedModel.

Each row is one bad input a hostile but realistic user would try (the
hardening probe's among them). Each must give a clear error that names the
problem, before any work, and leave no file behind: the test folder holds the
same files after the call as before it.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import cli, zoo

X = (np.random.default_rng(0).random((20, 12)) < 0.3).astype("float32")


def snapshot(folder):
    """Every path under `folder`, with the size of each file."""
    found = {}
    for root, directories, files in os.walk(folder):
        for name in directories + files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = (
                None if os.path.isdir(path) else os.path.getsize(path)
            )
    return found


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder of files the rows refer to, as the current directory."""
    monkeypatch.chdir(tmp_path)
    np.savez("empty.npz", train=np.zeros((0, 12), "float32"))
    (tmp_path / "corrupt.npz").write_text("not a zip file")
    np.savez("nan.npz", train=np.full((200, 12), np.nan, "float32"))
    np.savez("grey.npz", train=np.full((200, 12), 3.0, "float32"))
    configs = {
        "broken.yaml": "epochs: [1, 2\nlatent_dim: 3\n",
        "broken.json": '{"epochs": 1,}',
        "negative.yaml": "epochs: -1\n",
        "fraction.yaml": "epochs: 1.5\n",
        "null.yaml": "epochs:\n",
        "ascent.yaml": "learning_rate: -1\n",
        "unknown.yaml": "epoch: 3\n",
        "list.yaml": "- 1\n- 2\n",
        "flag.yaml": "gated: yes please\n",
    }
    for name, text in configs.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("user file")
    (tmp_path / "exports" / "1").mkdir(parents=True)
    (tmp_path / "exports" / "2").mkdir()
    (tmp_path / "exports" / "1" / "saved_model.pb").write_text("v1")
    (tmp_path / "exports" / "2" / "saved_model.pb").write_text("v2")
    os.symlink(tmp_path / "full", tmp_path / "link")
    (tmp_path / "taken.png").write_bytes(b"png")
    (tmp_path / "a_file").write_text("file")
    (tmp_path / "fake_run").mkdir()
    (tmp_path / "fake_run" / "model.keras").write_text("")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps({"epochs": 2}))
    np.savez("flat.npz", train=X)  # 12 values an example: not an image
    (tmp_path / "images.yaml").write_text("images_every: -2\n")
    (tmp_path / "curves").mkdir()
    (tmp_path / "curves" / "history.json").write_text('[{"epoch": 1, "elbo": -9}]')
    (tmp_path / "no_rows").mkdir()
    (tmp_path / "no_rows" / "history.json").write_text("[]")
    return tmp_path


DIGITS = ["--dataset", "digits", "--out", "new_run", "--verbose", "0"]

# (arguments of `tfvae`, a part of the one-line error).
CLI_ROWS = [
    (["train", "--epochs", "0", "--out", "r"], "--epochs: must be >= 1"),
    (["train", "--epochs", "x", "--out", "r"], "argument --epochs"),
    (["train", "--epochs", "-1", "--out", "r"], "--epochs: must be >= 1"),
    (["train", "--batch-size", "0", "--out", "r"], "--batch-size: must be >= 1"),
    (["train", "--learning-rate", "0", "--out", "r"], "--learning-rate: must be > 0"),
    (["train", "--learning-rate", "-1", "--out", "r"], "--learning-rate"),
    (["train", "--learning-rate", "nan", "--out", "r"], "--learning-rate"),
    (["train", "--latent-dim", "0", "--out", "r"], "--latent-dim: must be >= 1"),
    (["train", "--num-samples", "0", "--out", "r"], "--num-samples: must be >= 1"),
    (["train", "--model", "gan"], "--model: invalid choice"),
    (["train", "--objective", "mle"], "--objective: invalid choice"),
    (["train", "--inference", "up"], "--inference: invalid choice"),
    (["train"], "train needs --out FOLDER"),
    (["train", "--resume", "--out", "nothing"], "nothing to resume"),
    (["train", "--resume", "--out", "run", "--epochs", "5"], "--epochs would be"),
    (
        ["train", "--resume", "--out", "run", "--learning-rate", "0.5"],
        "--learning-rate would be ignored",
    ),
    (["train", "--config", "missing.yaml", "--out", "r"], "no such config file"),
    (["train", "--config", "broken.yaml", "--out", "r"], "not valid YAML at line 2"),
    (["train", "--config", "broken.json", "--out", "r"], "not valid JSON at line 1"),
    (["train", "--config", "negative.yaml", "--out", "r"], "'epochs' must be an int"),
    (["train", "--config", "fraction.yaml", "--out", "r"], "Received: epochs=1.5"),
    (["train", "--config", "null.yaml", "--out", "r"], "Received: epochs=None"),
    (
        ["train", "--config", "ascent.yaml", "--out", "r"],
        "'learning_rate' must be a finite number > 0",
    ),
    (["train", "--config", "unknown.yaml", "--out", "r"], "unknown options in"),
    (["train", "--config", "list.yaml", "--out", "r"], "must hold a mapping"),
    (["train", "--config", "flag.yaml", "--out", "r"], "'gated' must be true or"),
    (["train", "--dataset", "cifar10", "--out", "r"], "Unknown dataset 'cifar10'"),
    (["train", "--dataset", "empty.npz", "--out", "r"], "holds no examples"),
    (["train", "--dataset", "corrupt.npz", "--out", "r"], "Cannot read the data"),
    (["train", "--dataset", "missing.npz", "--out", "r"], "No such data file"),
    (
        ["train", "--likelihood", "gaussian-fixed:abc", *DIGITS],
        "sigma of gaussian-fixed:SIGMA",
    ),
    (["train", "--likelihood", "poisson", *DIGITS], "Unknown likelihood 'poisson'"),
    (["train", "--prior", "vamp:0", *DIGITS], "K of vamp:K must be a positive"),
    (["train", "--prior", "flat", *DIGITS], "Unknown prior 'flat'"),
    (
        ["train", "--model", "hvae", "--prior", "vamp:5", *DIGITS],
        "inference='ladder'",
    ),
    (["train", "--model", "hvae", "--kl", "mc", *DIGITS], "applies to --model vae"),
    (["train", "--inference", "ladder", *DIGITS], "applies to --model hvae only"),
    (["train", "--skip", *DIGITS], "--skip applies to --model hvae only"),
    (["train", "--ema", "1.5", "--out", "r"], "--ema: must be in [0, 1)"),
    (["train", "--grad-clip", "-1", "--out", "r"], "--grad-clip: must be a finite"),
    (["train", "--skip-threshold", "0", "--out", "r"], "--skip-threshold: must be > 0"),
    (
        ["train", "--max-consecutive-skips", "0", "--out", "r"],
        "--max-consecutive-skips: must be >= 1",
    ),
    (
        ["train", "--dataset", "grey.npz", "--early-stopping", "3", "--out", "r"],
        "needs a validation split",
    ),
    (
        ["train", "--model", "hvae", "--latent-dims", "3,x", *DIGITS],
        "widths must be integers",
    ),
    (["train", "--hidden-units", "a,b", *DIGITS], "widths must be integers"),
    (["train", "--activation", "nosuch", *DIGITS], "activation function"),
    (["train", "--latent-dim", "100000000", *DIGITS], "does not fit in memory"),
    (
        ["train", "--binarize", "dynamic", "--dequantize", "uniform", *DIGITS],
        "exclude each other",
    ),
    (["train", "--dataset", "digits", "--out", "full"], "exists and is not empty"),
    (["train", "--free-bits", "-1", *DIGITS], "'free_bits' must be a number >= 0"),
    (["train", "--beta", "-1", *DIGITS], "'beta' must be a number >= 0"),
    (["train", "--warmup", "-1", "--out", "r"], "--warmup: must be >= 0"),
    (["train", "--limit", "0", "--out", "r"], "--limit: must be >= 1"),
    (
        ["train", "--learning-rate", "1e6", "--epochs", "1", *DIGITS],
        "beyond the divergence limit",
    ),
    (["train", "--dataset", "nan.npz", "--out", "new_run"], "NaN"),
    (["train", "--dataset", "grey.npz", "--out", "new_run"], "needs targets in [0, 1]"),
    (["train", "--images-every", "-1", "--out", "r"], "--images-every: must be >= 0"),
    (["train", "--images-every", "two", "--out", "r"], "argument --images-every"),
    (
        ["train", "--config", "images.yaml", "--out", "r"],
        "'images_every' must be an integer >= 0. Received: images_every=-2",
    ),
    (
        ["train", "--resume", "--out", "run", "--images-every", "2"],
        "--images-every would be ignored",
    ),
    (
        ["train", "--dataset", "flat.npz", "--images-every", "1", *DIGITS[2:]],
        "images_every draws the examples as images",
    ),
    (
        ["train", "--conditional", "--dataset", "binarized_mnist", "--out", "r"],
        "--conditional needs a dataset with labels",
    ),
    (
        ["train", "--conditional", "--prior", "vamp:5", "--kl", "mc", *DIGITS],
        "--conditional cannot take a VampPrior",
    ),
    (
        ["sample", "vae_bernoulli_bmnist", "--label", "3", "--out", "s.png"],
        "--label applies to a conditional model",
    ),
    (["traverse", "vae_bernoulli_bmnist", "--label", "-1"], "argument --label"),
    (["plot", "nothing"], "no such run folder or history.json"),
    (["plot", "full"], "no history.json in the run folder"),
    (["plot", "no_rows"], "the history has no rows"),
    (["plot", "curves", "--out", "curves.jpg"], "give a path ending in .png"),
    (["plot", "curves", "--out", "taken.png"], "taken.png exists; pass --overwrite"),
    (["plot", "curves", "--out", "nowhere/c.png"], "does not exist"),
    (["evaluate", "missing.keras"], "missing.keras"),
    (["evaluate", "vae_bernoulli_bmnist", "--num-samples", "0"], "--num-samples"),
    (
        ["evaluate", "vae_bernoulli_bmnist", "--dataset", "mnist", "--limit", "5"],
        "Binarize the data first",
    ),
    (
        ["evaluate", "vae_bernoulli_bmnist_2", "--limit", "5"],
        "no such model file or preset",
    ),
    (["evaluate", "vae_bernoulli_bmnist", "--split", "nosuch"], "`split` must be"),
    (
        ["evaluate", "vae_bernoulli_bmnist", "--binarizations", "3"],
        "needs --binarize dynamic",
    ),
    (
        ["evaluate", "vae_bernoulli_bmnist", "--binarize", "dynamic"]
        + ["--binarizations", "0"],
        "argument --binarizations",
    ),
    (["sample", "vae_bernoulli_bmnist", "--num", "-3"], "argument --num"),
    (["sample", "vae_bernoulli_bmnist", "--out", "s.jpg"], "ending in .png"),
    (["sample", "vae_bernoulli_bmnist", "--out", "nowhere/s.png"], "does not exist"),
    (["sample", "vae_bernoulli_bmnist", "--out", "taken.png"], "pass --overwrite"),
    (["sample", "vae_bernoulli_bmnist", "--out", "full"], "ending in .png"),
    (
        ["sample", "nosuch_model", "--out", "s.png"],
        "no such model file or preset: nosuch_model",
    ),
    (["reconstruct", "vae_bernoulli_bmnist", "--num", "0"], "argument --num"),
    (
        ["traverse", "vae_bernoulli_bmnist", "--dims", "0", "0", "--out", "t.png"],
        "two different latent dimensions",
    ),
    (["traverse", "vae_bernoulli_bmnist", "--steps", "0"], "argument --steps"),
    (["export", "vae_gaussian_digits", "full"], "exists and is not empty"),
    (
        ["export", "vae_gaussian_digits", "exports", "--overwrite"],
        "holds TF Serving versions ['1', '2']",
    ),
    (
        ["export", "vae_gaussian_digits", "full", "--overwrite"],
        "not a SavedModel",
    ),
    (["export", "vae_gaussian_digits", "link", "--overwrite"], "symbolic link"),
    (["export", "vae_gaussian_digits", "e", "--version", "-1"], "--version"),
    (["export", "vae_gaussian_digits", "a_file"], "is a file"),
    (["zoo", "info", "nosuch"], "Unknown preset 'nosuch'"),
    (["zoo", "verify", "nosuch"], "Unknown preset 'nosuch'"),
    (["zoo", "verify", "vae_gaussian_digits", "--num-samples", "0"], "--num-samples"),
    (["zoo", "publish", "run", "p"], "no finished run"),
    (["zoo", "publish", "fake_run", "full", "--overwrite"], "not a preset"),
    (["zoo", "publish", "fake_run", "link", "--overwrite"], "symbolic link"),
    (["zoo", "publish", "fake_run", "full"], "exists and is not empty"),
]


@pytest.mark.parametrize(
    "args, match", CLI_ROWS, ids=[" ".join(args)[:60] for args, _ in CLI_ROWS]
)
def test_the_command_line_refuses_bad_input(args, match, workdir, capsys):
    before = snapshot(workdir)
    try:
        status = cli.main(args)
    except SystemExit as exit_:  # argparse's own refusals
        status = exit_.code
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and match in error[0], error
    assert error[0].startswith("tfvae")
    assert "Traceback" not in error[0] and "[Op:" not in error[0]
    assert snapshot(workdir) == before  # no file written, none removed


# --- The Python API ------------------------------------------------------------


def vae():
    return tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,), seed=0)


def compiled():
    model = vae()
    model.compile(optimizer="adam")
    return model


API_ROWS = [
    (lambda: compiled().fit(np.full((20, 12), np.nan, "float32")), "NaN"),
    (lambda: compiled().fit(X * 3.0), "needs targets in [0, 1]"),
    (lambda: compiled().fit(X[:, :5]), "(batch, 12)"),
    (lambda: compiled().evaluate(X[:, :5]), "(batch, 12)"),
    (lambda: vae().log_likelihood(X, num_samples=0), "num_samples"),
    (lambda: vae().log_likelihood(X[:, :5]), "(batch, 12)"),
    (lambda: vae().log_likelihood(X, batch_size=0), "batch_size"),
    (lambda: vae().sample(0), "num_samples"),
    (lambda: vae().sample(1.5), "num_samples"),
    (lambda: vae().encode(X[:, :5]), "12"),
    (lambda: vae().elbo(X, num_samples=0), "num_samples"),
    (lambda: vae().reconstruct(X * 2), "needs targets in [0, 1]"),
    (lambda: tfvae.VAE(input_shape=(12,), latent_dim=0), "latent_dim"),
    (lambda: tfvae.VAE(input_shape=(12,), latent_dim=2, prior="vamp:0"), "vamp:K"),
    (lambda: tfvae.VAE(input_shape=(12,), latent_dim=2, prior="mog:3"), "kl='mc'"),
    (lambda: tfvae.VAE.from_preset("nosuch"), "Unknown preset"),
    (lambda: tfvae.VAE.from_preset("vae_gaussian_digits", sha256="xyz"), "64 hex"),
    (lambda: zoo.load("http://127.0.0.1:1/p/"), "needs its sha256"),
    (lambda: tfvae.export_saved_model("model", "out"), "must be a tfvae model"),
    (lambda: tfvae.export_saved_model(vae(), "out", version="a"), "version"),
    (lambda: zoo.publish("nothing", "p"), "no finished run"),
    (lambda: tfvae.runs.train({"epochs": -1}, "r"), "'epochs' must be an integer"),
    (lambda: tfvae.runs.train({"seed": "a"}, "r"), "'seed' must be an integer"),
    (
        lambda: tfvae.runs.train({"images_every": 1.5}, "r"),
        "'images_every' must be an integer >= 0",
    ),
    (
        lambda: tfvae.callbacks.TensorBoardImages("logs", every=0),
        "Received: every=0",
    ),
    (lambda: tfvae.plots.plot_history("nothing", "c.png"), "no such run folder"),
    (lambda: tfvae.plots.plot_history("curves", "taken.png"), "taken.png exists"),
    (lambda: tfvae.plots.history_figure([]), "the history has no rows"),
    (lambda: tfvae.data.load("empty.npz"), "holds no examples"),
    (lambda: tfvae.data.load(X, labels=True), "an array has none"),
    (lambda: tfvae.data.dataset("digits", redraw="no"), "redraw='no'"),
    (lambda: tfvae.certify(vae(), X, binarizations=0), "binarizations"),
    (lambda: tfvae.certify(vae(), X * 3, binarizations=2), "grey levels in [0, 1]"),
    (lambda: tfvae.heads.DiscretizedLogisticHead(levels=1), "levels=1"),
]


@pytest.mark.parametrize("call, match", API_ROWS, ids=range(len(API_ROWS)))
def test_the_python_api_refuses_bad_input(call, match, workdir):
    before = snapshot(workdir)
    with pytest.raises((ValueError, FileExistsError)) as info:
        call()
    assert match in str(info.value), str(info.value)
    assert snapshot(workdir) == before


# --- The SavedModel's signatures -------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model = vae()
    path = tfvae.export_saved_model(model, tmp_path_factory.mktemp("e") / "m")
    return tf.saved_model.load(path).signatures


SIGNATURE_ROWS = [
    ("serving_default", {"x": X * 3.0}, "needs targets in [0, 1]"),
    ("serving_default", {"x": X[:, :5]}, ""),
    ("encode", {"x": np.full((2, 12), np.nan, "float32")}, "NaN"),
    ("encode", {"x": X - 1.0}, "needs targets in [0, 1]"),
    ("elbo", {"x": X * 3.0}, "needs targets in [0, 1]"),
    ("decode", {"z": np.full((2, 2), np.nan, "float32")}, "z must be finite"),
    ("log_likelihood", {"x": X, "num_samples": np.int32(0)}, "num_samples"),
    (
        "log_likelihood",
        {"x": X * 2, "num_samples": np.int32(5)},
        "needs targets in [0, 1]",
    ),
    ("sample", {"num_samples": np.int32(0), "seed": np.int32(0)}, "num_samples"),
]


@pytest.mark.parametrize(
    "name, inputs, match", SIGNATURE_ROWS, ids=[r[0] for r in SIGNATURE_ROWS]
)
def test_the_signatures_refuse_what_the_python_api_refuses(name, inputs, match, served):
    tensors = {key: tf.constant(value) for key, value in inputs.items()}
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError, TypeError)) as info:
        served[name](**tensors)
    assert match in str(info.value)


def test_the_table_is_at_least_80_bad_inputs():
    assert len(CLI_ROWS) + len(API_ROWS) + len(SIGNATURE_ROWS) >= 80
