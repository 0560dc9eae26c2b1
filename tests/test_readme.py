"""The README's promises: its quickstart is the example script, and it runs."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import subprocess_environment

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_block(heading):
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quickstart_is_the_example_script():
    assert (
        _readme_block("Python quickstart")
        == (ROOT / "examples" / "quickstart.py").read_text()
    )


def test_ci_runs_the_readme_install_and_test_commands():
    development = (ROOT / "README.md").read_text().split("## Development\n", 1)[1]
    ci_lines = {
        line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
    }
    for command in ('pip install -e ".[test]"', "python -m pytest -n 2"):
        assert command in development
        assert command in ci_lines
    # The install-and-test line near the top runs the same test command.
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    first = next(block for block in blocks if "pip install -e" in block)
    assert first.endswith(" && TFVAE_DATA_DIR=../shared/data python -m pytest -n 2")


@pytest.mark.slow
def test_quickstart_runs_as_written(binarized_mnist, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    elbo = float(re.search(r"validation ELBO: (-?[\d.]+) nats", result.stdout).group(1))
    # Five epochs of a 784-200-200-50 VAE are well past -130 nats; untrained is -543.
    assert -130 < elbo < 0, elbo


def test_serving_example_prints_what_the_readme_shows(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "serving_requests.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    readme = (ROOT / "README.md").read_text()
    printed = [line for line in result.stdout.splitlines() if line.strip()]
    shown_responses = re.findall(r'^(\{"outputs".*)$', readme, re.M)
    responses = [line for line in printed if line.startswith('{"outputs"')]
    assert len(responses) == len(shown_responses) == 3
    for shown, computed in zip(shown_responses, responses, strict=True):
        shown, computed = json.loads(shown)["outputs"], json.loads(computed)["outputs"]
        if isinstance(shown, dict):
            assert sorted(shown) == sorted(computed)
            shown, computed = list(shown.values()), list(computed.values())
        np.testing.assert_allclose(np.array(shown), np.array(computed), atol=2e-3)
    for line in printed:
        if line.startswith("$ curl"):
            assert line in readme


@pytest.mark.slow
def test_readme_training_quickstart_runs_as_written(binarized_mnist, tmp_path):
    """The tfvae steps of the README's first command, in a fresh folder."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    command = next(block for block in blocks if "tfvae train" in block)
    steps = [step.strip() for step in command.split("&&")]
    assert steps[2] == "pip install ." and steps[3].startswith("export TFVAE_DATA_DIR=")
    tfvae_steps = [step for step in steps if step.startswith("tfvae ")]
    assert [step.split()[1] for step in tfvae_steps] == ["train", "evaluate", "sample"]
    tfvae_command = os.path.join(os.path.dirname(sys.executable), "tfvae")
    printed = {}
    for step in tfvae_steps:
        result = subprocess.run(
            [tfvae_command, *step.split()[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            timeout=900,
        )
        assert result.returncode == 0, (step, result.stderr[-3000:])
        printed[step.split()[1]] = result.stdout
    assert (tmp_path / "runs" / "quickstart" / "model.keras").exists()
    assert (tmp_path / "samples.png").exists()
    # Five epochs: an NLL near the README's 118 nats (untrained: 543).
    nll = float(re.search(r"NLL\s+([\d.]+) nats", printed["evaluate"]).group(1))
    assert 95 < nll < 120, nll


def test_first_readme_command_is_the_offline_preset_job(tmp_path):
    text = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)\n```", text, re.S).group(1)
    steps = [step.strip() for step in first.split("&&")]
    assert steps[:3] == [
        "python3 -m venv .venv",
        ". .venv/bin/activate",
        "pip install .",
    ]
    assert steps[3].startswith("tfvae sample ") and len(steps) == 4
    env = {k: v for k, v in os.environ.items() if k != "TFVAE_DATA_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "empty"), TF_CPP_MIN_LOG_LEVEL="3")
    tfvae_command = os.path.join(os.path.dirname(sys.executable), "tfvae")
    result = subprocess.run(
        [tfvae_command, *steps[3].split()[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "samples.png").exists()


def test_evaluation_threads_snippet_runs_as_written():
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(
        r"```python\n(import tfvae\n\ntfvae\.use_evaluation_threads\(\).*?)```",
        readme,
        re.S,
    ).group(1)
    check = (
        "import tensorflow as tf\n"
        "print(model.name, tf.config.threading.get_intra_op_parallelism_threads())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", snippet + check],
        capture_output=True,
        text=True,
        env=subprocess_environment(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    name, intra_op = result.stdout.split()[-2:]
    assert intra_op == "1" and name


def test_the_architecture_example_is_the_example_file():
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert block in (ROOT / "examples" / "extending.py").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "docs/architecture.md" in readme


def test_the_extending_example_runs_as_written(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "extending.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=subprocess_environment(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"log p\(x\), K = 200: -?[\d.]+ nats", result.stdout)


def test_the_priors_example_runs_as_written():
    """The README's VampPrior snippet, on 200 random binary images, 1 epoch."""
    import keras

    import tfvae

    block = _readme_block("Priors: N(0, I), a mixture of Gaussians, the VampPrior")
    assert "epochs=10" in block
    x_train = (np.random.default_rng(0).random((200, 784)) < 0.2).astype("float32")
    scope = {"tfvae": tfvae, "keras": keras, "x_train": x_train}
    exec(block.replace("epochs=10", "epochs=1"), scope)
    assert scope["u"].shape == (500, 784)
    assert 0.0 <= float(np.min(scope["u"])) and float(np.max(scope["u"])) <= 1.0
    assert scope["loc"].shape == scope["scale"].shape == (500, 40)


def test_the_long_runs_example_runs_as_written(tmp_path, monkeypatch):
    """The README's stability snippet, on 300 random binary images, 2 epochs."""
    import keras

    import tfvae

    block = _readme_block("Long runs: weight averages, clipping and skipped updates")
    assert "epochs=100" in block
    x = (np.random.default_rng(0).random((300, 12)) < 0.3).astype("float32")
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,))
    monkeypatch.chdir(tmp_path)
    scope = {"tfvae": tfvae, "keras": keras, "model": model}
    scope.update(x_train=x[:200], x_valid=x[200:])
    exec(block.replace("epochs=100", "epochs=2"), scope)
    assert sorted(os.listdir("run/checkpoints")) == [
        "epoch-001.keras",
        "epoch-002.keras",
    ]
    assert model.optimizer.use_ema and model.skip_threshold == 400.0


def test_the_convolutional_example_runs_as_written(monkeypatch):
    """The README's conv snippet on 200 training images, 1 epoch."""
    import keras

    import tfvae

    block = _readme_block("Convolutional networks")
    assert "epochs=10" in block
    load = tfvae.data.load
    monkeypatch.setattr(tfvae.data, "load", lambda *a, **k: load(*a, **k, limit=200))
    scope = {"tfvae": tfvae, "keras": keras}
    exec(block.replace("epochs=10", "epochs=1"), scope)
    assert scope["x_train"].shape == (200, 28, 28, 1)
    assert scope["hvae"].decode_dim == 48


def test_the_conditional_example_runs_as_written(monkeypatch):
    """The README's class-conditional snippet on 200 images, 1 epoch, K = 20."""
    import tfvae

    block = _readme_block("Class-conditional models")
    assert "epochs=10" in block and "num_samples=5000" in block
    load = tfvae.data.load
    monkeypatch.setattr(tfvae.data, "load", lambda *a, **k: load(*a, **k, limit=200))
    block = block.replace("epochs=10", "epochs=1").replace("=5000", "=20")
    scope = {}
    exec(block, scope)
    assert scope["log_px"].shape == (200,)
    assert scope["dresses"].shape == (16, 784)
    assert scope["recon"].shape == (8, 784)
    assert scope["p"].mean().shape == (2, 784)
