"""Kills lose nothing: SIGKILL `tfvae train`, `export` and `zoo publish`.

Each test starts the command in a subprocess, kills it with SIGKILL at a
chosen moment (watched from the files it writes), and then shows that no
half-written folder or file is taken for a complete one, that the next run of
the command removes what the killed one left, and that it completes.
"""

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
from helpers import subprocess_environment

import tfvae
from tfvae import cli, zoo

# A small Gaussian model on the dequantized digits: seconds per epoch.
DIGITS = [
    "--dataset", "digits", "--likelihood", "gaussian-shared",
    "--dequantize", "uniform", "--latent-dim", "2", "--hidden-units", "16",
    "--learning-rate", "0.03", "--verbose", "0", "--seed", "3",
]  # fmt: skip


def command(*args):
    tfvae_script = shutil.which("tfvae", path=os.path.dirname(sys.executable))
    return [tfvae_script, *map(str, args)]


def run(*args):
    result = subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        env=subprocess_environment(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def kill_when(args, ready, timeout=300):
    """Starts `tfvae ARGS`, SIGKILLs it as soon as `ready()`; whether it was."""
    process = subprocess.Popen(
        command(*args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=subprocess_environment(),
    )
    deadline = time.monotonic() + timeout
    caught = False
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            caught = True
            break
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return caught and process.returncode == -signal.SIGKILL


def weights_of(path):
    return keras.models.load_model(path).get_weights()


def test_a_killed_run_resumes_from_exactly_where_it_was_killed(tmp_path):
    """Killed mid-run, after its second epoch's backup, then resumed.

    Up to the kill, the run is that of the same seed never killed: its
    checkpoints are bit-identical. The resume restores the weights, the
    optimizer, the KL weight and the state of the model's noise, so it starts
    from exactly that point. What differs afterwards is the data order:
    tf.data draws each epoch's shuffle (and a dequantization or dynamic
    binarization) from a seed sequence that starts over in a new process (and
    Keras iterates a distributed copy of the dataset), so the epochs after a
    resume see another, equally random, order. The final ELBO is that of an
    unkilled run within the spread of training.
    """
    epochs = ["--epochs", "4"]
    run("train", *DIGITS, *epochs, "--out", tmp_path / "whole")
    out = tmp_path / "killed"
    history = out / "history.json"

    def second_epoch_backed_up():
        backup = out / "backup"
        if not backup.is_dir() or not history.exists():
            return False
        states = [n for n in os.listdir(backup) if n.startswith("state-")]
        return bool(states) and len(json.loads(history.read_text())) >= 2

    assert kill_when(["train", *DIGITS, *epochs, "--out", out], second_epoch_backed_up)
    assert not (out / "model.keras").exists()
    done = len(json.loads(history.read_text()))
    assert 2 <= done < 4
    backed_up = tfvae.callbacks.BackupAndRestore.completed_epochs(out / "backup")
    assert 1 <= backed_up <= done
    for epoch in range(1, done + 1):
        name = f"epoch-{epoch:03d}.keras"
        whole = weights_of(tmp_path / "whole" / "checkpoints" / name)
        killed = weights_of(out / "checkpoints" / name)
        for a, b in zip(whole, killed, strict=True):
            np.testing.assert_array_equal(b, a)
    run("train", "--resume", "--out", out)
    rows = json.loads(history.read_text())
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    whole_rows = json.loads((tmp_path / "whole" / "history.json").read_text())
    # The epochs before the resume point are the unkilled run's.
    for row, whole_row in zip(rows[:backed_up], whole_rows, strict=False):
        assert row["elbo"] == whole_row["elbo"] and row["epoch"] == whole_row["epoch"]
    spread = abs(whole_rows[-1]["val_elbo"] - whole_rows[-2]["val_elbo"])
    assert abs(rows[-1]["val_elbo"] - whole_rows[-1]["val_elbo"]) < max(2 * spread, 1)


def test_a_kill_during_a_checkpoint_write_leaves_no_truncated_checkpoint(tmp_path):
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"

    def writing_a_checkpoint():
        try:
            names = os.listdir(checkpoints)
        except FileNotFoundError:
            return False
        return any(name.endswith(".partial.keras") for name in names)

    caught = kill_when(
        ["train", *DIGITS, "--epochs", "30", "--out", out], writing_a_checkpoint
    )
    assert caught, "the kill must land while a checkpoint is being written"
    # Whatever the kill cut short has a partial name: every checkpoint under
    # its final name is complete and loads.
    for name in os.listdir(checkpoints):
        if not name.endswith(".partial.keras"):
            keras.models.load_model(checkpoints / name)
    run("train", "--resume", "--out", out)
    names = sorted(os.listdir(checkpoints))
    assert names == [f"epoch-{epoch:03d}.keras" for epoch in range(1, 31)]
    keras.models.load_model(checkpoints / names[-1])


def staging_in(folder, prefix):
    return [n for n in os.listdir(folder) if n.startswith(prefix)]


def test_a_killed_export_leaves_the_old_one_and_its_litter_is_removed(tmp_path):
    target = tmp_path / "exports"
    # The export to keep, in process (`cli.main`); the kill and the next
    # export are the command's.
    assert (
        cli.main(["export", "vae_gaussian_digits", str(target), "--version", "1"]) == 0
    )
    before = sorted(os.listdir(target / "1"))

    def staging():
        return bool(staging_in(target, ".tfvae-export-"))

    caught = kill_when(
        ["export", "vae_gaussian_digits", target, "--version", "1", "--overwrite"],
        staging,
    )
    assert caught
    assert staging_in(target, ".tfvae-export-")  # the kill left its staging
    assert sorted(os.listdir(target / "1")) == before  # the old export is whole
    run("export", "vae_gaussian_digits", target, "--version", "2")
    assert not staging_in(target, ".tfvae-export-")  # removed by the next export
    assert sorted(os.listdir(target)) == ["1", "2"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kills") / "run"
    # In process (`cli.main`): the run to publish; the kill is the command's.
    assert (
        cli.main(["train", *map(str, DIGITS), "--epochs", "1", "--out", str(out)]) == 0
    )
    return out


def test_a_killed_publish_writes_no_preset_and_its_litter_is_removed(
    finished_run, tmp_path
):
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    preset = zoo_dir / "tiny"

    def staging():
        return bool(staging_in(zoo_dir, ".preset-"))

    caught = kill_when(
        ["zoo", "publish", finished_run, preset, "--num-samples", "20"], staging
    )
    assert caught
    assert not preset.exists()  # nothing half-written under the preset's name
    assert staging_in(zoo_dir, ".preset-")
    run("zoo", "publish", finished_run, preset, "--num-samples", "20")
    assert not staging_in(zoo_dir, ".preset-")
    assert isinstance(zoo.load(preset), tfvae.VAE)
