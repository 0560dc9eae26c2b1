"""The README's promises: its quickstart is the example script, and it runs."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_block(heading):
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quickstart_is_the_example_script():
    assert (
        _readme_block("Quickstart") == (ROOT / "examples" / "quickstart.py").read_text()
    )


def test_ci_runs_the_readme_install_and_test_commands():
    development = (ROOT / "README.md").read_text().split("## Development\n", 1)[1]
    ci_lines = {
        line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
    }
    for command in ('pip install -e ".[test]"', "python -m pytest"):
        assert command in development
        assert command in ci_lines


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
