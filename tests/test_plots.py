"""The training curves: `tfvae.plots`, and `tfvae plot` from Python."""

import importlib.util
import json
import os
import pathlib
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import cli, plots

# A resumed hierarchy's history: the IWAE bound from epoch 2 on, a KL per
# layer, a warm-up ramp and a halved learning rate.
ROWS = [
    {
        "epoch": e,
        "elbo": -150.0 + 10 * e,
        "val_elbo": -140.0 + 9 * e,
        **({"iwae": -145.0 + 10 * e, "val_iwae": -138.0 + 9 * e} if e > 1 else {}),
        "kl": 20.0 + e,
        "kl_1": 15.0 + e,
        "kl_2": 5.0,
        "val_kl": 21.0 + e,
        "val_kl_1": 16.0 + e,
        "val_kl_2": 5.0,
        "loss": 140.0 - 10 * e,
        "learning_rate": 1e-3 if e < 3 else 5e-4,
        "kl_weight": min(1.0, e / 3),
        "seconds": 1.5,
    }
    for e in range(1, 5)
]


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def assert_line(ax, name, rows=ROWS):
    line = lines_by_label(ax)[name]
    held = [row for row in rows if name in row]
    np.testing.assert_array_equal(line.get_xdata(), [row["epoch"] for row in held])
    np.testing.assert_array_equal(line.get_ydata(), [row[name] for row in held])


def test_the_figure_draws_every_value_of_the_history():
    figure = plots.history_figure(ROWS)
    bounds, kl, rate, weight = figure.axes
    assert sorted(lines_by_label(bounds)) == ["elbo", "iwae", "val_elbo", "val_iwae"]
    assert sorted(lines_by_label(kl)) == [
        "kl",
        "kl_1",
        "kl_2",
        "val_kl",
        "val_kl_1",
        "val_kl_2",
    ]
    assert list(lines_by_label(rate)) == ["learning_rate"]
    assert list(lines_by_label(weight)) == ["kl_weight"]
    for ax, names in [
        (bounds, ["elbo", "val_elbo", "iwae", "val_iwae"]),
        (kl, ["kl", "kl_1", "kl_2", "val_kl", "val_kl_1", "val_kl_2"]),
        (rate, ["learning_rate"]),
        (weight, ["kl_weight"]),
    ]:
        for name in names:
            assert_line(ax, name)
    assert len(lines_by_label(bounds)["iwae"].get_xdata()) == 3  # from epoch 2
    assert lines_by_label(bounds)["val_elbo"].get_linestyle() == "--"
    assert rate.get_yscale() == "log"
    assert [ax.get_title() for ax in figure.axes] == [
        "Bounds",
        "KL divergence",
        "Learning rate",
        "KL weight",
    ]


def test_the_figure_takes_a_keras_history_and_says_what_is_missing():
    history = {"elbo": [-9.0, -8.0, -7.5], "kl": [1.0, 2.0, 2.5]}
    figure = plots.history_figure(history)
    bounds, kl, rate, weight = figure.axes
    np.testing.assert_array_equal(lines_by_label(bounds)["elbo"].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines_by_label(kl)["kl"].get_ydata(), [1.0, 2.0, 2.5])
    assert not rate.get_lines()
    assert "not in the history: learning_rate" in rate.texts[0].get_text()


def test_plot_history_writes_a_png_and_never_overwrites_silently(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(json.dumps(ROWS))
    out = tmp_path / "curves.png"
    assert plots.plot_history(run, out) == str(out)
    picture = tf.io.decode_png(out.read_bytes()).numpy()
    assert picture.shape[:2] == (560, 800)  # 10 x 7 inches at 80 dpi
    assert picture.std() > 0  # not blank
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "run"]  # nothing partial
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        plots.plot_history(run, out)
    assert out.read_bytes() == before
    (run / "history.json").write_text(json.dumps(ROWS[:2]))
    plots.plot_history(run / "history.json", out, overwrite=True)
    assert out.read_bytes() != before


@pytest.mark.parametrize(
    "history, out, error, match",
    [
        ("nothing", "c.png", ValueError, "no such run folder or history.json"),
        ("empty_folder", "c.png", ValueError, "no history.json in the run folder"),
        ("no_rows", "c.png", ValueError, "the history has no rows"),
        ("broken", "c.png", ValueError, "is not valid JSON at line 1"),
        ("words", "c.png", ValueError, "row 1 has elbo='high'"),
        ("good", "c.jpg", ValueError, "give a path ending in .png"),
        ("good", "missing/c.png", ValueError, "does not exist"),
        ("good", "taken.png", FileExistsError, "taken.png exists"),
    ],
)
def test_plot_history_refuses_bad_input_before_drawing(
    history, out, error, match, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    os.mkdir("empty_folder")
    files = {
        "no_rows/history.json": "[]",
        "broken/history.json": "[{",
        "words/history.json": '[{"elbo": "high"}]',
        "good/history.json": json.dumps(ROWS),
        "taken.png": "png",
    }
    for path, text in files.items():
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        (tmp_path / path).write_text(text)
    with pytest.raises(error, match=match):
        plots.plot_history(history, out)
    assert not os.path.exists("c.png") and not os.path.exists("c.jpg")
    assert (tmp_path / "taken.png").read_text() == "png"


def test_without_matplotlib_the_error_says_how_to_install_it(monkeypatch):
    for name in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # an import that fails
    with pytest.raises(ImportError, match=r'pip install "tfvae\[plot\]"'):
        plots.history_figure(ROWS)


def test_the_plot_command_draws_a_run_and_refuses_what_plot_history_refuses(
    tmp_path, capsys
):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(json.dumps(ROWS))
    out = tmp_path / "curves.png"
    assert cli.main(["plot", str(run), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert tf.io.decode_png(out.read_bytes()).shape[:2] == (560, 800)
    assert cli.main(["plot", str(run), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("tfvae plot: error: ") and "pass --overwrite" in error
    assert cli.main(["plot", str(run), "--out", str(out), "--overwrite"]) == 0
    other = str(tmp_path / "other.png")
    assert cli.main(["plot", str(tmp_path / "nothing"), "--out", other]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_a_run_logs_what_the_curves_draw(tmp_path):
    """A real run's history has every panel's values (`HistoryFile`)."""
    config = {
        "dataset": "digits",
        "likelihood": "gaussian-shared",
        "dequantize": "uniform",
        "model": "hvae",
        "latent_dims": "3,2",
        "hidden_units": "16;8",
        "learning_rate": 0.01,
        "warmup": 2,
        "epochs": 2,
    }
    tfvae.runs.train(config, tmp_path / "run", verbose=0)
    rows = plots.read_history(tmp_path / "run")
    for name in ("elbo", "val_elbo", "kl_1", "kl_2", "learning_rate", "kl_weight"):
        assert all(name in row for row in rows), name
    assert [row["learning_rate"] for row in rows] == pytest.approx([0.01, 0.01])
    # The warm-up's weight at each epoch's last batch, 13 batches an epoch.
    assert [row["kl_weight"] for row in rows] == pytest.approx(
        [(epoch + 12 / 13) / 2 for epoch in (0, 1)]
    )
    figure = plots.history_figure(tmp_path / "run")
    assert_line(figure.axes[1], "val_kl_2", rows)
    assert_line(figure.axes[3], "kl_weight", rows)


ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_readme_pictures_come_from_the_commands_beside_them():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Watching training\n", 1)[1].split("\n## ", 1)[0]
    run = re.search(r"^tfvae train .*--images-every 2 --out runs/watch$", section, re.M)
    assert run, "the run behind the pictures"
    for command, picture in [
        (
            "tfvae plot runs/watch --out docs/images/watch_curves.png",
            "docs/images/watch_curves.png",
        ),
        (
            "python examples/tensorboard_images.py runs/watch/logs --out "
            "docs/images/watch_tensorboard.png",
            "docs/images/watch_tensorboard.png",
        ),
    ]:
        assert f"```bash\n{command}\n```\n\n![" in section, command
        assert f"]({picture})" in section
        assert (ROOT / picture).stat().st_size < 200_000
        assert tf.io.decode_png((ROOT / picture).read_bytes()).shape[0] > 400


def test_the_tensorboard_example_draws_the_images_tensorboard_holds(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "tensorboard_images", ROOT / "examples" / "tensorboard_images.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    x = (np.random.default_rng(0).random((100, 16)) < 0.3).astype("float32")
    model = tfvae.VAE(input_shape=(16,), latent_dim=2, hidden_units=(8,), seed=0)
    model.compile(optimizer="adam")
    callback = tfvae.callbacks.TensorBoardImages(tmp_path, examples=x[:8], seed=3)
    model.fit(x, batch_size=50, epochs=3, callbacks=[callback], verbose=0)
    images = example.read_images(tmp_path)
    assert {tag: sorted(steps) for tag, steps in images.items()} == {
        "samples": [0, 1, 2],
        "reconstructions": [0, 1, 2],
    }
    last = images["samples"][2][1:5, 1:5, 0]  # the first sample, 4x4 pixels
    first = np.clip(model.sample(64, seed=3).numpy()[0].reshape(4, 4), 0, 1)
    np.testing.assert_array_equal(last, np.round(first * 255))
    out = tmp_path / "grids.png"
    example.main([str(tmp_path), "--steps", "0", "2", "--out", str(out)])
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert tf.io.decode_png(out.read_bytes()).shape[-1] == 1  # grey
    with pytest.raises(SystemExit):
        example.main([str(tmp_path), "--steps", "5", "--out", str(out)])
    assert "no images at steps [5]; the steps are [0, 1, 2]" in capsys.readouterr().err
