"""The training curves of a run, drawn with matplotlib from its `history.json`.

Four panels, one row of the history per epoch (`tfvae.callbacks.HistoryFile`):

- the bounds: the training and validation ELBO, and the IWAE bound where the
  history has it;
- the KL: its total, and per layer (`kl_1`, `kl_2`, ...) for a hierarchy;
- the learning rate (a log scale);
- the KL weight (the warm-up's ramp, else beta).

Training values are solid lines, validation values (`val_...`) dashed lines
of the same colour; each line is labelled with the history's name for it.
matplotlib is an optional dependency: `pip install "tfvae[plot]"`. The
figures are drawn without pyplot (no window, no global state), on the Agg
canvas.

Example:

```python
tfvae.plots.plot_history("runs/watch", "curves.png")
figure = tfvae.plots.history_figure("runs/watch/history.json")  # a notebook's
```
"""

import io
import numbers
import os
import re

from tfvae import _files, _images

__all__ = ["history_figure", "plot_history", "read_history"]

_INSTALL = 'pip install "tfvae[plot]"'


def _matplotlib():
    """matplotlib's Figure and Agg canvas, or an ImportError naming the install."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            f"tfvae.plots draws with matplotlib, which is not installed: "
            f"{_INSTALL}. Received: {error}"
        ) from None
    return Figure, FigureCanvasAgg


def _history_path(run_dir_or_history_json):
    path = os.fspath(run_dir_or_history_json)
    if os.path.isdir(path):
        path = os.path.join(path, "history.json")
        if not os.path.exists(path):
            raise ValueError(
                f"no history.json in the run folder {os.path.dirname(path)}: is it "
                "a tfvae train run that finished an epoch? Received: "
                f"run_dir={run_dir_or_history_json!r}"
            )
    elif not os.path.exists(path):
        raise ValueError(
            "no such run folder or history.json. Received: "
            f"run_dir={run_dir_or_history_json!r}"
        )
    return path


def read_history(run_dir_or_history_json):
    """The rows of a run's `history.json` (a run folder, or the file itself).

    Raises:
        ValueError: a missing folder or file, a file that is not JSON, not a
            list of rows of numbers, or that has no rows.
    """
    path = _history_path(run_dir_or_history_json)
    with open(path) as file:
        rows = _files.parse_json(file.read(), path)
    return _rows(rows, path)


def _rows(history, where):
    """The history as a list of rows, each a dict of numbers with an `epoch`."""
    if hasattr(history, "history") and isinstance(history.history, dict):
        history = history.history  # a `keras.callbacks.History`
    if isinstance(history, dict):  # Keras' {name: [value per epoch]}
        lengths = {len(values) for values in history.values()}
        if len(lengths) > 1:
            raise ValueError(
                "a history of {name: values} needs as many values per name. "
                f"Received: lengths {sorted(lengths)} in {where}"
            )
        count = lengths.pop() if lengths else 0
        history = [
            {"epoch": i + 1, **{k: v[i] for k, v in history.items()}}
            for i in range(count)
        ]
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise ValueError(
            "a history is a list of rows, one dict per epoch, as history.json "
            f"holds. Received: {type(history).__name__} in {where}"
        )
    if not history:
        raise ValueError(
            f"the history has no rows: no epoch has finished yet. Received: {where}"
        )
    rows = []
    for number, row in enumerate(history, start=1):
        row = {"epoch": number, **row}
        bad = [
            k
            for k, v in row.items()
            if isinstance(v, bool) or not isinstance(v, numbers.Real)
        ]
        if bad:
            raise ValueError(
                f"the values of a history are numbers; row {number} has "
                f"{bad[0]}={row[bad[0]]!r}. Received: {where}"
            )
        rows.append(row)
    return rows


def _series(rows, name):
    """(epochs, values) of the rows that hold `name`."""
    pairs = [(row["epoch"], row[name]) for row in rows if name in row]
    return [e for e, _ in pairs], [v for _, v in pairs]


def _layers(rows):
    """The per-layer KL names, kl_1, kl_2, ..., in order."""
    found = {int(m.group(1)) for row in rows for k in row if (m := _LAYER.match(k))}
    return [f"kl_{layer}" for layer in sorted(found)]


_LAYER = re.compile(r"kl_(\d+)$")

# (title, y label, names) of each panel; "kl_layers" stands for kl_1, kl_2, ...
_PANELS = (
    ("Bounds", "nats per example", ("elbo", "iwae")),
    ("KL divergence", "nats per example", ("kl", "kl_layers")),
    ("Learning rate", "learning rate", ("learning_rate",)),
    ("KL weight", "weight of the KL term", ("kl_weight",)),
)


def history_figure(history):
    """A matplotlib figure of the training curves of a run.

    Args:
        history: the rows of a `history.json` (a list of dicts), a path to
            a run folder or its `history.json`, a `keras.callbacks.History`
            or its `.history` dict.

    Returns:
        A `matplotlib.figure.Figure` with four axes (the bounds, the KL, the
        learning rate, the KL weight), one line per logged name, labelled
        with it; a panel whose values the history lacks says so.

    Raises:
        ImportError: matplotlib is not installed (`pip install "tfvae[plot]"`).
        ValueError: a history that is missing, empty or not rows of numbers.

    Example:

    ```python
    figure = tfvae.plots.history_figure("runs/watch")
    figure.savefig("curves.svg")
    ```
    """
    if isinstance(history, (str, os.PathLike)):
        rows = read_history(history)
    else:
        rows = _rows(history, "the history")
    Figure, FigureCanvasAgg = _matplotlib()
    figure = Figure(figsize=(10, 7), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2, sharex=True).ravel()
    colours = [f"C{i}" for i in range(10)]
    for ax, (title, ylabel, names) in zip(axes, _PANELS, strict=True):
        if "kl_layers" in names:
            names = (*names[:-1], *_layers(rows))
        drawn = 0
        for i, name in enumerate(names):
            for prefix, style in (("", "-"), ("val_", "--")):
                epochs, values = _series(rows, prefix + name)
                if epochs:
                    ax.plot(
                        epochs,
                        values,
                        style,
                        color=colours[i % len(colours)],
                        label=prefix + name,
                        marker="." if len(epochs) < 30 else None,
                    )
                    drawn += 1
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if not drawn:
            ax.text(
                0.5,
                0.5,
                f"not in the history: {', '.join(names)}",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
            continue
        if "learning_rate" in names:
            ax.set_yscale("log")
        if drawn > 1:
            ax.legend(fontsize="small")
    for ax in axes[2:]:
        ax.set_xlabel("epoch")
    figure.suptitle(f"Training curves, {len(rows)} epochs")
    return figure


def plot_history(run_dir_or_history_json, out, overwrite=False):
    """Draws the training curves of a run into a PNG file.

    The file is written atomically (a temporary file renamed into place),
    never over an existing one unless `overwrite`. Everything is checked
    before anything is drawn.

    Args:
        run_dir_or_history_json: a run folder of `tfvae train` (or
            `tfvae.runs.train`), or its `history.json`.
        out: the PNG file to write (a name ending in `.png`).
        overwrite: replace `out` if it exists.

    Returns:
        The path written, `out`.

    Raises:
        ImportError: matplotlib is not installed (`pip install "tfvae[plot]"`).
        ValueError: a missing run folder or history, an empty one, an `out`
            that is not a `.png` in a writable folder.
        FileExistsError: `out` exists and `overwrite` is False.

    Example:

    ```python
    tfvae.plots.plot_history("runs/watch", "curves.png")
    ```
    """
    out = os.fspath(out)
    _images.check_png_path(out, overwrite=overwrite)
    rows = read_history(run_dir_or_history_json)
    _matplotlib()
    figure = history_figure(rows)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    if not overwrite and os.path.exists(out):  # written while we drew
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    _images.write_bytes(buffer.getvalue(), out)
    return out
