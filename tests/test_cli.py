import os
import shutil
import subprocess
import sys

import tfvae


def test_version_from_the_console_script():
    # The script installed beside this interpreter, whether or not its venv is active.
    command = shutil.which("tfvae", path=os.path.dirname(sys.executable))
    assert command, "the tfvae console script is not installed"
    result = subprocess.run([command, "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tfvae {tfvae.__version__}"


def test_version_from_the_module():
    result = subprocess.run(
        [sys.executable, "-m", "tfvae.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tfvae {tfvae.__version__}"
