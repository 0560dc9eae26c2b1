"""The ONNX and LiteRT exports: run without TensorFlow, equal to the Keras model."""

import json
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import subprocess_environment
from test_latent import LabelledLinearVAE

import tfvae
from tfvae import cli, heads
from tfvae.autoregressive import BernoulliPixelCNNHead, PixelCNNHead

ROOT = pathlib.Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(21)
FORMATS = {"onnx": tfvae.export_onnx, "litert": tfvae.export_litert}
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}

# Runs in a fresh process that must never import TensorFlow: feeds each file of
# each export its inputs by name, saves every output by name.
RUN_SCRIPT = r"""
import sys
import numpy as np

inputs_path, outputs_path, *exports = sys.argv[1:]
inputs = np.load(inputs_path)
outputs = {}
for export in exports:
    fmt, folder = export.split("=", 1)
    for part in ("encoder", "decoder"):
        feed = {
            key.split("/", 1)[1]: inputs[key]
            for key in inputs.files
            if key.startswith(part + "/")
        }
        if fmt == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(f"{folder}/{part}.onnx")
            names = [output.name for output in session.get_outputs()]
            result = dict(zip(names, session.run(names, feed)))
        else:
            from ai_edge_litert.interpreter import Interpreter

            runner = Interpreter(f"{folder}/{part}.tflite").get_signature_runner()
            result = runner(**feed)
        outputs.update({f"{fmt}/{part}/{key}": value for key, value in result.items()})
np.savez(outputs_path, **outputs)
assert "tensorflow" not in sys.modules, sorted(sys.modules)
"""


def run_without_tensorflow(inputs, exports, tmp_path):
    """Runs `exports` ({format: folder}) on `inputs` in a TensorFlow-free process."""
    np.savez(tmp_path / "inputs.npz", **inputs)
    arguments = [f"{fmt}={folder}" for fmt, folder in exports.items()]
    result = subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT, str(tmp_path / "inputs.npz")]
        + [str(tmp_path / "outputs.npz"), *arguments],
        capture_output=True,
        text=True,
        env=subprocess_environment(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(tmp_path / "outputs.npz") as outputs:
        return dict(outputs)


def vae():
    return tfvae.VAE(input_shape=(12,), latent_dim=3, hidden_units=(8,), seed=0)


def ladder_hvae():
    return tfvae.HierarchicalVAE(
        input_shape=(12,),
        latent_dims=(4, 2),
        hidden_units=((8,), (6,)),
        likelihood=heads.GaussianHead(scale="shared"),
        inference="ladder",
        skip=True,
        seed=0,
    )


def conv_vae():
    return tfvae.VAE(
        input_shape=(8, 8, 1),
        latent_dim=3,
        hidden_units=(),
        activation="tanh",
        architecture="conv",
        likelihood="discretized-logistic",
        seed=0,
    )


def pixelcnn_vae():
    """The autoregressive head: the decoder's sequential mean is a while loop."""
    return tfvae.VAE(
        input_shape=(6, 6, 1),
        latent_dim=2,
        hidden_units=(8,),
        likelihood=PixelCNNHead(filters=4, num_components=2, kernel_size=3),
        seed=0,
    )


def bernoulli_pixelcnn_hvae():
    return tfvae.HierarchicalVAE(
        input_shape=(6, 6, 1),
        latent_dims=(3, 2),
        hidden_units=((8,), (6,)),
        likelihood=BernoulliPixelCNNHead(filters=4, kernel_size=3, num_layers=1),
        inference="top_down",
        skip=True,
        seed=0,
    )


def labelled():
    return LabelledLinearVAE((10,), 2, seed=0)


def class_conditional_hvae():
    """`num_classes=3`: an int32 `label` beside x and z."""
    return tfvae.HierarchicalVAE(
        input_shape=(10,),
        latent_dims=(3, 2),
        hidden_units=((8,), (6,)),
        inference="ladder",
        skip=True,
        num_classes=3,
        seed=0,
    )


def example_inputs(model, specs, count=5):
    """Random named arrays for `specs`: images in [0, 1], labels (class
    indices for an int32 spec, else one-hot rows)."""
    arrays = {}
    for spec in specs:
        shape = (count, *spec.shape[1:])
        if spec.name == "label" and spec.dtype.is_integer:
            arrays[spec.name] = RNG.integers(0, model.num_classes, count, "int32")
            continue
        if spec.name == "label":
            arrays[spec.name] = np.eye(shape[-1], dtype="float32")[
                RNG.integers(0, shape[-1], count)
            ]
        elif spec.name == "z":
            arrays[spec.name] = RNG.normal(size=shape).astype("float32")
        else:
            arrays[spec.name] = np.round(RNG.random(shape) * 255) / 255
    return {
        name: value if value.dtype == np.int32 else np.asarray(value, "float32")
        for name, value in arrays.items()
    }


def expected_outputs(model, encoder_inputs, decoder_inputs):
    """What the encoder and decoder must return, from the Keras model itself."""
    packed = model.pack_inputs([tf.constant(a) for a in encoder_inputs.values()])
    posteriors = model.encode(packed, sample=False)
    outputs = {}
    for layer, q in enumerate(posteriors, start=1):
        suffix = "" if len(posteriors) == 1 else f"_{layer}"
        outputs[f"encoder/loc{suffix}"] = q.mean().numpy()
        outputs[f"encoder/scale{suffix}"] = q.stddev().numpy()
    z, *conditions = (tf.constant(a) for a in decoder_inputs.values())
    p = model.decode(z, conditions=tuple(conditions)) if conditions else model.decode(z)
    for name, value in model.likelihood.output_parameters(p).items():
        outputs[f"decoder/{name}"] = value.numpy()
    return outputs


@pytest.mark.parametrize(
    "build",
    [
        vae,
        ladder_hvae,
        conv_vae,
        pixelcnn_vae,
        bernoulli_pixelcnn_hvae,
        labelled,
        class_conditional_hvae,
    ],
    ids=lambda build: build.__name__,
)
def test_onnx_and_litert_equal_the_keras_model_without_tensorflow(build, tmp_path):
    keras.utils.set_random_seed(1)
    model = build()
    for weight in model.trainable_weights:  # not the initial zeros of biases
        weight.assign(weight + RNG.normal(scale=0.1, size=weight.shape))
    exports = {fmt: export(model, tmp_path / fmt) for fmt, export in FORMATS.items()}
    for fmt, folder in exports.items():
        assert sorted(os.listdir(folder)) == [
            f"decoder{SUFFIXES[fmt]}",
            f"encoder{SUFFIXES[fmt]}",
        ]
    encoder_inputs = example_inputs(model, model.input_signature())
    decoder_specs = tfvae.export.decode_signature(model)
    decoder_inputs = example_inputs(model, decoder_specs)
    inputs = {f"encoder/{k}": v for k, v in encoder_inputs.items()}
    inputs.update({f"decoder/{k}": v for k, v in decoder_inputs.items()})

    got = run_without_tensorflow(inputs, exports, tmp_path)
    expected = expected_outputs(model, encoder_inputs, decoder_inputs)
    assert "encoder/loc" in expected or "encoder/loc_2" in expected
    assert "decoder/mean" in expected or "decoder/sequential_mean" in expected
    for fmt in FORMATS:
        names = sorted(key.split("/", 1)[1] for key in got if key.startswith(fmt))
        assert names == sorted(expected), fmt
        for name, value in expected.items():
            np.testing.assert_allclose(
                got[f"{fmt}/{name}"], value, rtol=1e-5, atol=1e-5, err_msg=fmt
            )


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_no_silent_overwrite_and_overwrite_replaces(fmt, tmp_path):
    model, export = vae(), FORMATS[fmt]
    target = tmp_path / "export"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        export(model, target)
    with pytest.raises(FileExistsError, match="not a .* export"):
        export(model, target, overwrite=True)  # not an export of this format
    assert os.listdir(target) == ["notes.txt"]

    other = tmp_path / "other"
    export(model, other)
    decoder = other / f"decoder{SUFFIXES[fmt]}"
    before = decoder.read_bytes()
    model.likelihood.bias.assign(model.likelihood.bias + 1.0)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export(model, other)
    assert decoder.read_bytes() == before
    assert export(model, other, overwrite=True) == str(other)
    assert decoder.read_bytes() != before
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


@pytest.mark.parametrize(
    "fmt, package, extra",
    [
        ("onnx", "tf2onnx", "onnx"),
        ("onnx", "onnxruntime", "onnx"),
        ("litert", "ai_edge_litert", "litert"),
    ],
)
def test_a_missing_package_names_the_extra_before_any_work(
    fmt, package, extra, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` fails
    with pytest.raises(ImportError, match=rf'pip install "tfvae\[{extra}\]"'):
        FORMATS[fmt](vae(), tmp_path / "export")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_not_a_model_is_refused(fmt, tmp_path):
    with pytest.raises(ValueError, match="Received: model="):
        FORMATS[fmt](keras.Sequential([keras.layers.Dense(2)]), tmp_path / "e")


def test_cli_export_formats(tmp_path, capsys):
    path = tmp_path / "vae.keras"
    vae().save(path)
    out = tmp_path / "onnx"
    assert cli.main(["export", str(path), str(out), "--format", "onnx"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["decoder.onnx", "encoder.onnx"]
    # --version belongs to the SavedModel: refused before any work.
    refused = tmp_path / "versioned"
    argv = ["export", str(path), str(refused), "--format", "litert", "--version", "1"]
    assert cli.main(argv) == 2
    assert "--version" in capsys.readouterr().err
    assert not refused.exists()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", str(path), str(tmp_path / "x"), "--format", "pb"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'pb'" in capsys.readouterr().err


# --- The README's client snippets ----------------------------------------------


def readme_snippets():
    """The python blocks of the README's serving section, in order."""
    text = (ROOT / "README.md").read_text()
    heading = "## Serving: TF Serving, ONNX Runtime and LiteRT\n"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_serving_snippets_run_as_written(tmp_path):
    snippets = readme_snippets()
    assert len(snippets) == 3
    assert "tf.saved_model.load" in snippets[0]
    assert "onnxruntime.InferenceSession" in snippets[1]
    assert "ai_edge_litert.interpreter import Interpreter" in snippets[2]
    model = tfvae.zoo.load("vae_bernoulli_bmnist")
    tfvae.export_saved_model(model, tmp_path / "export" / "savedmodel")
    tfvae.export_onnx(model, tmp_path / "export" / "onnx")
    tfvae.export_litert(model, tmp_path / "export" / "litert")
    check = (
        "\nimport json, sys\n"
        "np.savez('result.npz', x=x, mean=np.asarray(mean))\n"
        "print(json.dumps({'tensorflow': 'tensorflow' in sys.modules}))\n"
    )
    for index, snippet in enumerate(snippets):
        result = subprocess.run(
            [sys.executable, "-c", snippet + check],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=subprocess_environment(),
            timeout=120,
        )
        assert result.returncode == 0, (index, result.stderr[-3000:])
        lines = result.stdout.splitlines()
        assert lines[0] == "(4, 784)"
        assert json.loads(lines[-1]) == {"tensorflow": index == 0}
        with np.load(tmp_path / "result.npz") as saved:
            x, mean = saved["x"], saved["mean"]
        (q,) = model.encode(x, sample=False)
        np.testing.assert_allclose(
            mean, model.decode(q.mean()).mean(), rtol=1e-5, atol=1e-5, err_msg=index
        )
