"""Image grids for the command line, encoded as PNG with TensorFlow."""

import math
import os

import numpy as np
import tensorflow as tf


def image_shape(input_shape):
    """(height, width, channels) for data of `input_shape`, or a ValueError."""
    if len(input_shape) == 1:
        side = math.isqrt(input_shape[0])
        if side * side == input_shape[0]:
            return side, side, 1
    elif len(input_shape) == 2:
        return (*input_shape, 1)
    elif len(input_shape) == 3 and input_shape[-1] in (1, 3):
        return tuple(input_shape)
    raise ValueError(
        "Cannot draw examples of shape "
        f"{tuple(input_shape)} as images: expected a square number of pixels, "
        "(height, width) or (height, width, 1 or 3)."
    )


def grid(images, input_shape, columns, padding=1):
    """A uint8 (H, W, C) picture of `images` (values in [0, 1]) in rows."""
    height, width, channels = image_shape(input_shape)
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    images = images.reshape(len(images), height, width, channels)
    rows = -(-len(images) // columns)
    picture = np.ones(
        (
            rows * (height + padding) + padding,
            columns * (width + padding) + padding,
            channels,
        ),
        np.float32,
    )
    for i, image in enumerate(images):
        top = padding + (i // columns) * (height + padding)
        left = padding + (i % columns) * (width + padding)
        picture[top : top + height, left : left + width] = image
    return (picture * 255).round().astype(np.uint8)


def pairs(originals, reconstructions, columns):
    """Rows of `columns` originals, each followed by the row of their pictures.

    A last, shorter row is filled with blank (white) images, so that every
    picture sits below its original in `grid(..., columns)`.
    """
    originals = np.asarray(originals, np.float32)
    reconstructions = np.asarray(reconstructions, np.float32)
    blank = np.ones((-len(originals) % columns, *originals.shape[1:]), np.float32)
    rows = []
    for start in range(0, len(originals), columns):
        end = start + columns
        rows += [originals[start:end], reconstructions[start:end]]
    if len(blank):
        rows = [*rows[:-2], np.concatenate([rows[-2], blank])] + [
            np.concatenate([rows[-1], blank])
        ]
    return np.concatenate(rows)


def check_png_path(path, overwrite=True):
    """Refuses, before any work, a PNG path that cannot or must not be written.

    Raises `ValueError` for a name that does not end in `.png` (the file is
    PNG whatever its name), a folder that does not exist or is not writable,
    or an existing file without `overwrite`.
    """
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(
            f"the picture is written as PNG: give a path ending in .png. "
            f"Received: {path!r}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {path}: the folder {folder} is not writable")
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path}: it is a folder")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass --overwrite to replace it, or choose another"
        )


def write_png(picture, path):
    """Writes a PNG atomically (a temporary file renamed into place)."""
    write_bytes(tf.io.encode_png(picture).numpy(), path)


def write_bytes(data, path):
    """Writes `data` to `path` atomically (a temporary file renamed into place)."""
    path = os.fspath(path)
    partial = os.path.join(
        os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.partial"
    )
    try:
        with open(partial, "wb") as file:
            file.write(data)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
