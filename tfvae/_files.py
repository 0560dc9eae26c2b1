"""Writing folders atomically: nothing half-written is ever left in place."""

import contextlib
import json
import os
import shutil
import tempfile


@contextlib.contextmanager
def staged_folder(target, prefix=".tfvae-"):
    """Yields a temporary sibling folder of `target` to fill.

    When the block ends normally, the folder replaces `target` (readable by
    all, as `mkdtemp` makes it private); when it raises, the folder is removed
    and `target` is untouched.
    """
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield staging
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.chmod(staging, 0o755)
        os.replace(staging, target)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)


def write_json(path, value):
    """Writes `value` as JSON to `path` through a temporary file and a rename."""
    partial = f"{path}.part"
    with open(partial, "w") as file:
        json.dump(value, file, indent=2)
    os.replace(partial, path)
