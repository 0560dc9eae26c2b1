"""Writing folders and files atomically: nothing half-written is ever left in place.

A folder is written into a staging sibling, `<prefix><pid>-<random>`, and
renamed into place when complete. A process killed while writing leaves its
staging folder behind; the next `staged_folder` of the same prefix in the same
parent removes those whose process is gone, so kills leave no litter for long.
"""

import contextlib
import json
import os
import shutil
import tempfile
import warnings


def _process_is_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def remove_stale_staging(parent, prefix):
    """Removes the staging folders of `prefix` in `parent` left by dead processes."""
    if not os.path.isdir(parent):
        return
    for name in os.listdir(parent):
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and _process_is_gone(int(pid_text)):
            path = os.path.join(parent, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)


def check_target(target, what, is_replaceable, overwrite):
    """Refuses, before any work, a target folder that must not be replaced.

    Args:
        target: the folder to write.
        what: what the folder holds, for the messages (e.g. "export").
        is_replaceable: a function of the folder's path: None if `overwrite`
            may replace it, else the reason it may not.
        overwrite: whether the user asked to replace an existing folder.

    Raises:
        FileExistsError: the target is a link, a file, or a non-empty folder
            without `overwrite`, or one `is_replaceable` refuses.
    """
    if os.path.islink(target):
        raise FileExistsError(
            f"The {what} target {target!r} is a symbolic link; give the folder "
            f"it points to ({os.path.realpath(target)!r}) or another path."
        )
    if os.path.exists(target) and not os.path.isdir(target):
        raise FileExistsError(f"The {what} target {target!r} is a file, not a folder.")
    if os.path.isdir(target) and os.listdir(target):
        if not overwrite:
            raise FileExistsError(
                f"The {what} target {target!r} exists and is not empty. Pass "
                "overwrite=True (--overwrite) to replace it, or choose another."
            )
        reason = is_replaceable(target)
        if reason is not None:
            raise FileExistsError(
                f"The {what} target {target!r} {reason}; overwrite replaces a "
                f"{what} only, so nothing was written or removed."
            )


@contextlib.contextmanager
def staged_folder(target, prefix=".tfvae-"):
    """Yields a temporary sibling folder of `target` to fill.

    When the block ends normally, the folder replaces `target` (readable by
    all, as `mkdtemp` makes it private): the old `target` is first renamed
    aside, so that at every moment one complete folder is in place or aside;
    it is removed last. When the block raises, the folder is removed and
    `target` is untouched. Staging folders of dead processes are removed
    first.
    """
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    remove_stale_staging(parent, prefix)
    staging = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    try:
        yield staging
        os.chmod(staging, 0o755)
        old = None
        if os.path.isdir(target):
            old = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
            os.replace(target, os.path.join(old, "replaced"))
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)


def save_model_weights(model, path):
    """Saves the model's own weights to `path` (`.weights.h5`), not its optimizer's.

    `model.save_weights` of a compiled model also saves the optimizer's
    variables (for Adam with a moving average, three times the weights); a
    preset or the best weights of a run need only the model's. A compiled
    model's weights go through an uncompiled copy (`from_config`).
    """
    if getattr(model, "optimizer", None) is not None:
        copy = type(model).from_config(model.get_config())
        copy.set_weights(model.get_weights())
        model = copy
    model.save_weights(path)


def load_model_weights(model, path):
    """Loads weights that `save_model_weights` wrote into a model, compiled or
    not; a compiled model's optimizer keeps its state (the file has none)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
        model.load_weights(path)


def write_json(path, value):
    """Writes `value` as JSON to `path` through a temporary file and a rename."""
    partial = f"{path}.part"
    with open(partial, "w") as file:
        json.dump(value, file, indent=2)
    os.replace(partial, path)


def parse_json(text, path):
    """The value of JSON `text` read from `path`, or a `ValueError` naming the
    file, the line and the column of the first error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON at line {error.lineno}, column "
            f"{error.colno}: {error.msg}"
        ) from None
