"""The `tfvae` command line. Subcommands come with the data and training tools."""

import argparse

from tfvae.version import __version__


def _parser():
    parser = argparse.ArgumentParser(
        prog="tfvae",
        description="Variational autoencoders for TensorFlow and Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"tfvae {__version__}")
    return parser


def main(argv=None):
    """Entry point of the `tfvae` console script. Returns the exit status."""
    parser = _parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
