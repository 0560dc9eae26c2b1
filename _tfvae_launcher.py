"""The `tfvae` command's entry point: TensorFlow's start-up noise kept quiet.

Importing TensorFlow prints absl, CUDA and oneDNN lines from C++ straight to
the process's standard error, before any Python logging setting can act.
The command imports TensorFlow (and tfvae) with file descriptor 2 sent to a
temporary file, and sets `TF_CPP_MIN_LOG_LEVEL=3` unless the user set it, so
that its output is its own. If the import fails, what it printed is shown.
This module lives outside the `tfvae` package because importing
`tfvae.cli` runs `tfvae/__init__.py`, which imports TensorFlow.

`TFVAE_TF_LOGS=1` shows TensorFlow's start-up lines and leaves its log level
to `TF_CPP_MIN_LOG_LEVEL` (for diagnosing an install, a GPU, ...).
"""

import os
import sys
import tempfile


def _import_quietly():
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401

            from tfvae import cli
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.buffer.write(captured.read())
            sys.stderr.flush()
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return cli


def main():
    if os.environ.get("TFVAE_TF_LOGS") == "1":
        from tfvae import cli

        return cli.main()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return _import_quietly().main()


if __name__ == "__main__":
    raise SystemExit(main())
