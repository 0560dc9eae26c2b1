"""The `tfvae` command, driven in subprocesses on small data."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import subprocess_environment

import tfvae
from tfvae import cli

SMALL = [
    "--limit",
    "400",
    "--latent-dim",
    "4",
    "--hidden-units",
    "32",
    "--verbose",
    "2",
]


# A small Gaussian model on the dequantized digits, with a validation split.
DIGITS_SMALL = [
    "--dataset", "digits", "--likelihood", "gaussian-shared",
    "--dequantize", "uniform", "--latent-dim", "2", "--hidden-units", "16",
    "--learning-rate", "0.03", "--verbose", "0",
]  # fmt: skip


def tfvae_command():
    # The script installed beside this interpreter, whether or not its venv is active.
    command = shutil.which("tfvae", path=os.path.dirname(sys.executable))
    assert command, "the tfvae console script is not installed"
    return command


def run(*args, check=True, timeout=300):
    result = subprocess.run(
        [tfvae_command(), *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_environment(),  # thread settings left to the commands
        timeout=timeout,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_one_line_error(result, match):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert lines and match in lines[-1], result.stderr
    assert lines[-1].startswith("tfvae")


def read_png(path):
    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, binarized_mnist):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = run(
        "train", "--dataset", "binarized_mnist", "--epochs", "1", "--out", out, *SMALL
    )
    assert "4/4" in result.stdout and "elbo:" in result.stdout  # Keras' progress
    return out


def test_commands_print_nothing_of_tensorflow(tmp_path):
    """No absl, CUDA or oneDNN start-up lines: the output is the commands' own.

    The commands run one after the other in one fresh process, through the
    console script's entry point (`_tfvae_launcher.main`, all the script
    calls), which imports TensorFlow once for all of them: the test is about
    what they print, not about starting up.
    """
    env = {
        k: v for k, v in subprocess_environment().items() if k != "TF_CPP_MIN_LOG_LEVEL"
    }
    png = tmp_path / "s.png"
    commands = [
        (["zoo", "list", "--names"], "vae_bernoulli_bmnist_2d\n"),
        (["--help"], "usage: tfvae"),
        (["sample", "vae_bernoulli_bmnist_2d", "--out", png], f"wrote {png}"),
        (
            ["export", "vae_bernoulli_bmnist_2d", tmp_path / "e"],
            f"wrote {tmp_path / 'e'}",
        ),
    ]
    argvs = [["tfvae", *map(str, args)] for args, _ in commands]
    script = (
        "import sys\n"
        "import _tfvae_launcher\n"
        f"for sys.argv in {argvs!r}:\n"
        "    try:\n"
        "        status = _tfvae_launcher.main()\n"
        "    except SystemExit as exit:  # --help\n"
        "        status = exit.code\n"
        "    print(f'-- exit status {status} --', flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]
    outputs = result.stdout.split("-- exit status ")
    assert len(outputs) == len(commands) + 1, result.stdout
    for i, (args, out) in enumerate(commands):
        assert out in outputs[i], (args, outputs[i])
        assert outputs[i + 1].startswith("0 --"), (args, outputs[i + 1])


def test_tensorflow_logs_on_request():
    env = {
        **{
            k: v
            for k, v in subprocess_environment().items()
            if k != "TF_CPP_MIN_LOG_LEVEL"
        },
        "TFVAE_TF_LOGS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "0",
    }
    result = subprocess.run(
        [tfvae_command(), "zoo", "list"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0 and result.stderr.strip(), result.stderr


def test_a_failed_import_still_shows_what_it_printed(tmp_path):
    """The launcher hides TensorFlow's start-up lines, not its failures."""
    (tmp_path / "tensorflow.py").write_text(
        "import os\nos.write(2, b'the real cause\\n')\nraise ImportError('no tf')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import _tfvae_launcher; _tfvae_launcher.main()"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**subprocess_environment(), "PYTHONPATH": str(tmp_path)},
        timeout=300,
    )
    assert result.returncode != 0
    assert "the real cause" in result.stderr and "ImportError: no tf" in result.stderr


def test_version():
    result = run("--version")
    assert result.stdout.strip() == f"tfvae {tfvae.__version__}"


def test_help_from_the_command():
    assert "usage: tfvae train" in run("train", "--help").stdout


@pytest.mark.parametrize(
    "command",
    [
        "train",
        "evaluate",
        "sample",
        "reconstruct",
        "traverse",
        "pseudo-inputs",
        "plot",
        "export",
    ],
)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: tfvae " + command in capsys.readouterr().out


@pytest.mark.slow
def test_train_writes_model_history_logs_and_checkpoints(trained):
    assert sorted(os.listdir(trained)) == [
        "checkpoints",
        "history.json",
        "logs",
        "model.keras",
        "run.json",
    ]
    history = json.loads((trained / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1]
    assert {"loss", "elbo", "kl", "val_elbo"} <= set(history[0])
    assert os.listdir(trained / "checkpoints") == ["epoch-001.keras"]
    events = [f for _, _, files in os.walk(trained / "logs") for f in files]
    assert any(f.startswith("events.out.tfevents") for f in events)
    config = json.loads((trained / "run.json").read_text())
    assert config["latent_dim"] == 4 and config["limit"] == 400


@pytest.mark.slow
def test_evaluate_prints_a_table_and_json(trained):
    model = trained / "model.keras"
    table = run("evaluate", model, "--limit", "50", "--num-samples", "20").stdout
    for row in ("ELBO", "log-likelihood (K=20)", "NLL", "active units", "KL per layer"):
        assert row in table
    result = json.loads(
        run("evaluate", model, "--limit", "50", "--num-samples", "20", "--json").stdout
    )
    assert result["num_examples"] == 50 and result["num_samples"] == 20
    assert result["log_likelihood"] > result["elbo"] - 3 * result["elbo_stderr"]
    assert len(result["active_units"]) == 1 and np.isfinite(result["bits_per_dim"])
    # The estimator's thread pools (`use_evaluation_threads`).
    cores = len(os.sched_getaffinity(0))
    assert result["threads"] == {"intra_op": 1, "inter_op": cores}
    assert f"intra-op 1, inter-op {cores}" in table


def test_evaluate_keeps_its_progress_in_a_file(trained, tmp_path):
    model, progress = trained / "model.keras", tmp_path / "progress.json"
    args = ["evaluate", model, "--limit", "50", "--num-samples", "20", "--json"]
    first = json.loads(run(*args, "--progress", progress).stdout)
    assert len(json.loads(progress.read_text())["log_likelihood"]) == 50
    again = json.loads(run(*args, "--progress", progress).stdout)
    assert again["log_likelihood"] == first["log_likelihood"]
    other = run(*args[:-2], "30", "--progress", progress, check=False)
    assert other.returncode != 0
    assert "belongs to another evaluation (it differs in num_samples)" in other.stderr


@pytest.mark.slow
def test_sample_reconstruct_and_traverse_write_pngs(trained, tmp_path):
    model = trained / "model.keras"
    run("sample", model, "--num", "12", "--columns", "4", "--out", tmp_path / "s.png")
    picture = read_png(tmp_path / "s.png")
    assert picture.shape == (3 * 29 + 1, 4 * 29 + 1, 1)  # 28-pixel images, 1-pixel gaps
    run(
        "reconstruct",
        model,
        "--num",
        "6",
        "--columns",
        "3",
        "--limit",
        "20",
        "--out",
        tmp_path / "r.png",
    )
    assert read_png(tmp_path / "r.png").shape == (4 * 29 + 1, 3 * 29 + 1, 1)
    run(
        "traverse",
        model,
        "--steps",
        "5",
        "--dims",
        "1",
        "2",
        "--out",
        tmp_path / "t.png",
    )
    assert read_png(tmp_path / "t.png").shape == (5 * 29 + 1, 5 * 29 + 1, 1)
    again = run("sample", model, "--out", tmp_path / "s.png", check=False)
    assert_one_line_error(again, "exists; pass --overwrite")


@pytest.mark.slow
def test_export(trained, tmp_path):
    run("export", trained / "model.keras", tmp_path / "serving", "--version", "2")
    assert (tmp_path / "serving" / "2" / "saved_model.pb").exists()
    again = run(
        "export",
        trained / "model.keras",
        tmp_path / "serving",
        "--version",
        "2",
        check=False,
    )
    assert_one_line_error(again, "overwrite=True")


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_train_from_a_config_file(tmp_path, suffix, binarized_mnist):
    config = {
        "model": "hvae",
        "latent_dims": "4,2",
        "hidden_units": "16;8",
        "dataset": "binarized_mnist",
        "limit": 300,
        "epochs": 1,
        "warmup": 2,
        "objective": "iwae",
        "num_samples": 3,
        "inference": "top_down",
        "skip": True,
        "gated": True,
    }
    path = tmp_path / f"config.{suffix}"
    if suffix == "json":
        path.write_text(json.dumps(config))
    else:
        path.write_text("".join(f"{key}: {value}\n" for key, value in config.items()))
    run("train", "--config", path, "--out", tmp_path / "run", "--verbose", "2")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert {"iwae", "kl_1", "kl_2", "kl_weight"} <= set(history[0])
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["model"] == "hvae" and saved["warmup"] == 2
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert model.inference == "top_down" and model.skip and model.gated is True


@pytest.mark.slow
def test_resume_after_a_kill_reaches_the_same_number_of_epochs(
    tmp_path, binarized_mnist, capsys
):
    out = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "binarized_mnist",
        "--epochs",
        "10",
        "--out",
        out,
        *SMALL,
    ]
    process = subprocess.Popen(
        [tfvae_command(), *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    history, backup = out / "history.json", out / "backup"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        # Killed once an epoch is backed up (the backup is written last).
        if backup.is_dir() and any(n.startswith("state-") for n in os.listdir(backup)):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(json.loads(history.read_text()))
    assert 1 <= done < 10, "the run must be killed mid-way"
    assert not (out / "model.keras").exists()
    # A run started before an option existed resumes with its default.
    config = json.loads((out / "run.json").read_text())
    del config["inference"]
    (out / "run.json").write_text(json.dumps(config))

    result = run("train", "--resume", "--out", out, "--verbose", "2")
    epochs = [row["epoch"] for row in json.loads(history.read_text())]
    assert epochs == list(range(1, 11))
    first = [line for line in result.stdout.splitlines() if line.startswith("Epoch ")][
        0
    ]
    assert first != "Epoch 1/10", "resumed from the last checkpoint, not from scratch"
    assert (out / "model.keras").exists()
    # In process (`cli.main`): the command's one-line error, on standard error.
    capsys.readouterr()
    status = cli.main(["train", "--resume", "--out", str(out)])
    again = subprocess.CompletedProcess([], status, "", capsys.readouterr().err)
    assert_one_line_error(again, "already complete")


def test_early_stopping_keeps_the_best_epoch(tmp_path, capsys):
    out = tmp_path / "run"
    result = run(
        "train", *DIGITS_SMALL, "--epochs", "40", "--early-stopping", "2",
        "--out", out,
    )  # fmt: skip
    history = json.loads((out / "history.json").read_text())
    best = max(history, key=lambda row: row["val_elbo"])["epoch"]
    assert f"kept the weights of epoch {best}" in result.stdout
    if len(history) < 40:  # stopped early: exactly `patience` epochs after the best
        assert history[-1]["epoch"] == best + 2
        assert f"no better val_elbo since epoch {best}" in result.stdout
    assert (out / "best.weights.h5").exists()
    # The saved model holds the best epoch's weights: those of its checkpoint.
    model = keras.models.load_model(out / "model.keras")
    checkpoint = keras.models.load_model(
        out / "checkpoints" / f"epoch-{best:03d}.keras"
    )
    for a, b in zip(model.weights, checkpoint.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    # Dequantized digits: bits/dim is that of the discrete data, 17 levels.
    # (In process, `cli.main`: the training above ran the command itself.)
    assert json.loads((out / "run.json").read_text())["dequantize"] == "uniform"
    assert cli.main([
        "evaluate", str(out / "model.keras"), "--dataset", "digits",
        "--num-samples", "10", "--dequantize", "uniform", "--json",
    ]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    expected = tfvae.bits_per_dim(result["log_likelihood"], (64,), levels=17)
    assert result["bits_per_dim"] == pytest.approx(float(expected), rel=1e-6)
    assert 0 < result["bits_per_dim"] < np.log2(17)  # better than uniform


def test_lr_plateau_halves_the_rate_after_epochs_without_a_better_bound(tmp_path):
    out = tmp_path / "run"
    run("train", *DIGITS_SMALL, "--epochs", "20", "--lr-plateau", "1", "--out", out)
    rows = json.loads((out / "history.json").read_text())
    rates = [row["learning_rate"] for row in rows]  # the rate each epoch ran at
    assert rates[0] == pytest.approx(0.03)
    halvings = 0
    for epoch in range(1, len(rows)):
        # Patience 1: an epoch whose val_elbo beats none before it halves the
        # rate of the next one, down to 0.03 / 64.
        best_before = max(row["val_elbo"] for row in rows[: epoch - 1] or rows[:1])
        stalled = epoch > 1 and rows[epoch - 1]["val_elbo"] <= best_before
        expected = max(rates[epoch - 1] / 2, 0.03 / 64) if stalled else rates[epoch - 1]
        assert rates[epoch] == pytest.approx(expected, rel=1e-6), (epoch, rates)
        halvings += stalled
    assert halvings >= 1, rates  # the run did reach a plateau


def test_train_images_every_writes_grids_to_tensorboard_and_plot_draws_the_run(
    tmp_path,
):
    out = tmp_path / "run"
    run("train", *DIGITS_SMALL, "--epochs", "3", "--images-every", "2", "--out", out)
    assert json.loads((out / "run.json").read_text())["images_every"] == 2
    found = {}
    for name in os.listdir(out / "logs" / "images"):
        path = str(out / "logs" / "images" / name)
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                png = tf.make_ndarray(value.tensor)[2]
                found[value.tag, event.step] = tf.io.decode_png(png).numpy()
    # Epoch 2 and the last (3), at steps 1 and 2. The digits are 8x8: 64
    # samples in 8 rows of 8; 32 validation examples, 4 rows each over theirs.
    assert sorted(found) == [
        ("reconstructions", 1),
        ("reconstructions", 2),
        ("samples", 1),
        ("samples", 2),
    ]
    assert found["samples", 2].shape == (8 * 9 + 1, 8 * 9 + 1, 1)
    assert found["reconstructions", 2].shape == (8 * 9 + 1, 8 * 9 + 1, 1)
    # The grids of the last epoch are the trained model's, same noise (seed 0).
    model = keras.models.load_model(out / "model.keras")
    samples = model.sample(64, seed=0).numpy().reshape(8, 8, 8, 8)
    expected = np.full((73, 73), 255, np.uint8)
    for row in range(8):
        for column in range(8):
            top, left = 1 + 9 * row, 1 + 9 * column
            pixels = np.clip(samples[row, column], 0, 1) * 255
            expected[top : top + 8, left : left + 8] = np.round(pixels)
    np.testing.assert_array_equal(found["samples", 2][..., 0], expected)
    printed = run("plot", out, "--out", tmp_path / "curves.png").stdout
    assert printed == f"wrote {tmp_path / 'curves.png'}\n"
    assert read_png(tmp_path / "curves.png").shape[:2] == (560, 800)


@pytest.mark.parametrize(
    "args, match",
    [
        (["evaluate", "missing.keras"], "no such model file or preset: missing.keras"),
        (
            ["train", "--dataset", "cifar10", "--out", "OUT"],
            "Unknown dataset 'cifar10'",
        ),
        (["train", "--epochs", "0", "--out", "OUT"], "argument --epochs: must be >= 1"),
        (["train", "--epochs", "x", "--out", "OUT"], "argument --epochs"),
        (["train", "--model", "gan"], "argument --model: invalid choice"),
        (["train"], "train needs --out FOLDER"),
        (["train", "--resume", "--out", "OUT"], "nothing to resume"),
        (["train", "--config", "missing.yaml", "--out", "OUT"], "no such config file"),
        (["sample", "m.keras", "--num", "-3"], "argument --num"),
        (
            ["train", "--early-stopping", "-1", "--out", "OUT"],
            "argument --early-stopping: must be >= 0",
        ),
        (
            ["train", "--inference", "ladder", "--out", "OUT"],
            "--inference ladder applies to --model hvae only",
        ),
        (
            [
                "train",
                "--dataset",
                "no_valid_split.npz",
                "--lr-plateau",
                "5",
                "--out",
                "OUT",
            ],
            "lr_plateau needs a validation split",
        ),
    ],
)
def test_errors_print_one_line_without_a_traceback(args, match, tmp_path):
    args = [str(tmp_path / "OUT") if a == "OUT" else a for a in args]
    result = subprocess.run(
        [tfvae_command(), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert_one_line_error(result, match)


def test_pseudo_inputs_draws_the_vampprior_pseudo_inputs(tmp_path, capsys):
    model = tfvae.VAE(
        input_shape=(784,), latent_dim=2, hidden_units=(8,), prior="vamp:5", kl="mc"
    )
    raw = model.prior.raw_pseudo_inputs
    raw.assign(np.random.default_rng(0).uniform(-0.5, 1.5, raw.shape))
    model.save(tmp_path / "vamp.keras")
    out = tmp_path / "u.png"
    assert (
        cli.main(["pseudo-inputs", str(tmp_path / "vamp.keras"), "--out", str(out)])
        == 0
    )
    picture = read_png(out)
    assert picture.shape[0] == 28 + 2 and picture.shape[1] > 5 * 28  # one row of 5
    # The grid shows u = clip(w, 0, 1): its grey levels span [0, 255].
    assert picture.min() == 0 and picture.max() == 255
    other = str(tmp_path / "v.png")
    assert cli.main(["pseudo-inputs", "vae_gaussian_digits", "--out", other]) == 2
    assert "no pseudo-inputs" in capsys.readouterr().err


def test_zoo_list_shows_dataset_likelihood_nll_and_size(capsys):
    from tfvae import zoo

    assert cli.main(["zoo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["preset", "dataset", "likelihood", "test"]
    assert len(lines) == len(zoo.list()) + 1
    for name, line in zip(zoo.list(), lines[1:], strict=True):
        meta = zoo.info(name)
        assert line.split()[0] == name
        assert meta["data"]["name"] in line
        bits = meta["metrics"].get("bits_per_dim")
        assert (f"{bits:.4f}" if bits is not None else "  -  ") in line
        assert f"{meta['parameters'] / 1e6:.2f}M params" in line
        if meta["data"].get("dequantize"):
            # The discrete data's NLL, from bits/dim: not the density's.
            dims = np.prod(meta["input_shape"])
            nll = meta["metrics"]["bits_per_dim"] * dims * np.log(2)
            assert f"{nll:.2f} nats" in line
        else:
            assert f"{meta['metrics']['nll']:.2f} nats" in line
    assert cli.main(["zoo", "list", "--names"]) == 0
    assert capsys.readouterr().out.split() == zoo.list()


def test_a_conditional_run_samples_reconstructs_evaluates_and_traverses_by_class(
    tmp_path, capsys
):
    """In process (`cli.main`): `--conditional` on the labelled digits."""
    out = tmp_path / "run"
    assert cli.main(["train", "--conditional", "--epochs", "2", "--out", str(out),
                     *DIGITS_SMALL]) == 0  # fmt: skip
    model = keras.models.load_model(out / "model.keras")
    assert model.num_classes == 10
    path = str(out / "model.keras")
    # Without --label: a row of --columns samples per class, class 0 first.
    assert cli.main(["sample", path, "--columns", "3", "--out",
                     str(tmp_path / "rows.png")]) == 0  # fmt: skip
    labels = np.repeat(np.arange(10), 3)
    expected = tfvae._images.grid(
        model.sample(30, seed=0, labels=labels).numpy(), model.input_shape, 3
    )
    np.testing.assert_array_equal(read_png(tmp_path / "rows.png"), expected)
    # --label N: class N only.
    assert cli.main(["sample", path, "--label", "7", "--num", "4", "--out",
                     str(tmp_path / "seven.png")]) == 0  # fmt: skip
    expected = tfvae._images.grid(
        model.sample(4, seed=0, labels=7).numpy(), model.input_shape, 8
    )
    np.testing.assert_array_equal(read_png(tmp_path / "seven.png"), expected)
    assert cli.main(["reconstruct", path, "--dataset", "digits", "--num", "4",
                     "--out", str(tmp_path / "r.png")]) == 0  # fmt: skip
    assert cli.main(["traverse", path, "--label", "2", "--steps", "3",
                     "--out", str(tmp_path / "t.png")]) == 0  # fmt: skip
    capsys.readouterr()
    # evaluate scores log p(x | y) of the test images with their labels.
    assert cli.main(["evaluate", path, "--dataset", "digits", "--dequantize",
                     "uniform", "--num-samples", "20", "--json"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    data = tfvae.data.load("digits", "test", dequantize="uniform", labels=True)
    expected = tfvae.certify(model, data, num_samples=20, seed=0, levels=17)
    assert printed["log_likelihood"] == pytest.approx(expected["log_likelihood"])
    # A conditional traversal needs its class.
    assert cli.main(["traverse", path, "--out", str(tmp_path / "t2.png")]) != 0
    assert "pass --label N" in capsys.readouterr().err
    assert not (tmp_path / "t2.png").exists()
