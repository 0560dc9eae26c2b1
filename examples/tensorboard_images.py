"""The image grids of a run as TensorBoard holds them, drawn into one PNG.

`tfvae train --images-every N` (`tfvae.callbacks.TensorBoardImages`) writes
grids of samples and reconstructions into `RUN/logs/images`. This script
reads them back with TensorBoard's own event reader, the one behind its
image dashboard, and draws each tag (a row) at each step (a column):

    python examples/tensorboard_images.py runs/watch/logs --out grids.png

Needs matplotlib (`pip install "tfvae[plot]"`).
"""

import argparse
import io
import os

import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing import event_accumulator


def read_images(log_dir):
    """{tag: {step: uint8 picture}} of the images in `log_dir/images`."""
    accumulator = event_accumulator.EventAccumulator(
        os.path.join(log_dir, "images"),
        size_guidance={event_accumulator.TENSORS: 0},  # keep every step
    )
    accumulator.Reload()
    images = {}
    for tag in accumulator.Tags()[event_accumulator.TENSORS]:
        for event in accumulator.Tensors(tag):
            # An image summary's tensor: width, height, then the PNG.
            png = tf.make_ndarray(event.tensor_proto)[2]
            images.setdefault(tag, {})[event.step] = tf.io.decode_png(png).numpy()
    return images


def draw(images, steps, dpi=100):
    """A figure of each tag (a row) at each of `steps` (a column), each grid
    at about its own size in pixels (`dpi` pixels an inch)."""
    tags = [tag for tag in ("samples", "reconstructions") if tag in images]
    height = max(images[tag][step].shape[0] for tag in tags for step in steps)
    width = max(images[tag][step].shape[1] for tag in tags for step in steps)
    figure = Figure(
        figsize=(len(steps) * (width + 16) / dpi, len(tags) * (height + 40) / dpi),
        dpi=dpi,
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(tags), len(steps), squeeze=False)
    for row, tag in enumerate(tags):
        for column, step in enumerate(steps):
            ax = axes[row, column]
            picture = images[tag][step]
            ax.imshow(
                picture[..., 0] if picture.shape[-1] == 1 else picture,
                cmap="gray",
                vmin=0,
                vmax=255,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{tag}\nstep {step} (epoch {step + 1})", fontsize=8)
    return figure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log_dir", help="a run's TensorBoard folder, RUN/logs")
    parser.add_argument("--out", default="tensorboard_images.png")
    parser.add_argument("--steps", type=int, nargs="+", help="the steps (all)")
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    images = read_images(args.log_dir)
    if not images:
        parser.error(f"no images in {os.path.join(args.log_dir, 'images')}")
    held = sorted(set.intersection(*(set(steps) for steps in images.values())))
    missing = sorted(set(args.steps or ()) - set(held))
    if missing:
        parser.error(f"no images at steps {missing}; the steps are {held}")
    buffer = io.BytesIO()
    draw(images, args.steps or held, args.dpi).savefig(buffer, format="png")
    # Every colour of the figure is a grey: one channel, a third of the bytes.
    rgb = tf.io.decode_png(buffer.getvalue(), channels=3)
    grey = tf.image.rgb_to_grayscale(tf.cast(rgb, "float32"))
    grey = tf.cast(tf.round(grey), "uint8")
    tf.io.write_file(args.out, tf.io.encode_png(grey, compression=9))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
