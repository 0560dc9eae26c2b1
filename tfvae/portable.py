"""Export to ONNX and LiteRT: the encoder and decoder, served without TensorFlow.

`export_onnx` writes `encoder.onnx` and `decoder.onnx` (for ONNX Runtime),
`export_litert` writes `encoder.tflite` and `decoder.tflite` (for the LiteRT
interpreter, `ai_edge_litert`). Both convert through Keras' own exporters
(`keras.Model.export(path, format="onnx")`, which runs tf2onnx, and
`format="litert"`, which runs the TensorFlow Lite converter), and their
inputs and outputs have the names of the SavedModel's `encode` and `decode`
signatures (`tfvae.export_saved_model`):

- the encoder: `model.input_signature()` (`x`, and what else the model takes
  per example, such as `label`) -> `loc`, `scale` (one latent layer);
  `loc_1`, `scale_1`, ... (several), the posterior means followed up a
  hierarchy;
- the decoder: `z` (`model.decode_dim` wide) and `model.condition_signature()`
  -> the likelihood head's `output_parameters` (`mean`, and `probs`,
  `scale`, `loc`, ... by head).

The batch dimension is dynamic. Unlike the SavedModel's signatures, these
files do not check the values they are given (NaN, values outside the
likelihood's support, labels out of range): their runtimes have no
assertions, so the client checks its inputs.
"""

import importlib
import os
import warnings

import keras

from tfvae import _files, distribute
from tfvae import export as export_lib
from tfvae.latent import LatentVariableModel

__all__ = ["export_litert", "export_onnx"]

# Per format: the file suffix, the packages it needs (the converter and the
# runtime that checks the files load) and the extra that installs them.
_FORMATS = {
    "onnx": (".onnx", ("tf2onnx", "onnx", "onnxruntime"), "onnx"),
    "litert": (".tflite", ("ai_edge_litert",), "litert"),
}
_NAMES = {"onnx": "ONNX", "litert": "LiteRT"}
_PARTS = ("encoder", "decoder")


class _Endpoint(keras.Model):
    """One function of a tfvae model as a Keras model that Keras can export.

    `call` takes the list of tensors of the endpoint's input signature and
    returns `function(*tensors)`, a dict of named outputs.
    """

    def __init__(self, model, function, **kwargs):
        super().__init__(**kwargs)
        self.latent_model = model  # tracked, so that its weights are exported
        self.function = function
        self.built = True

    def call(self, inputs):
        return self.function(*inputs)


def _endpoints(model):
    """(part, function, input signature) of the encoder and the decoder."""

    def encoder(*inputs):
        # values=False: shapes only, as the runtimes have no assertions.
        inputs = model.check_inputs(model.pack_inputs(inputs), values=False)
        return export_lib.encode_outputs(model, inputs)

    def decoder(z, *conditions):
        return export_lib.decode_outputs(model, z, conditions)

    return [
        ("encoder", encoder, model.input_signature()),
        ("decoder", decoder, export_lib.decode_signature(model)),
    ]


def _require(packages, extra):
    """Imports `packages`; an `ImportError` naming the extra if one is missing."""
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError as error:
            raise ImportError(
                f"Exporting to {_NAMES[extra]} needs the package `{package}`: "
                f'install it with `pip install "tfvae[{extra}]"`. '
                f"Received: missing={package!r} ({error})"
            ) from error


def _output_names(function, signature):
    """The names of what `function` returns, from a call on one zero example."""
    zeros = [
        keras.ops.zeros(
            [1 if size is None else size for size in spec.shape], spec.dtype
        )
        for spec in signature
    ]
    return sorted(function(*zeros))


def _runtime_names(path, fmt):
    """The (input names, output names) of a written file, in its own runtime."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        inputs = sorted(item.name for item in session.get_inputs())
        return inputs, sorted(item.name for item in session.get_outputs())
    from ai_edge_litert import interpreter

    (signature,) = (
        interpreter.Interpreter(model_path=path).get_signature_list().values()
    )
    return sorted(signature["inputs"]), sorted(signature["outputs"])


def _replaceable(suffix):
    names = {f"{part}{suffix}" for part in _PARTS}

    def is_replaceable(folder):
        """None for an export of this format; else why it may not be replaced."""
        found = sorted(os.listdir(folder))
        if set(found) <= names:
            return None
        return f"holds files that are not a {suffix} export ({found[:5]})"

    return is_replaceable


def _export(model, export_dir, fmt, overwrite):
    if not isinstance(model, LatentVariableModel):
        raise ValueError(
            "`model` must be a tfvae model (a tfvae.latent.LatentVariableModel, "
            "such as tfvae.VAE or tfvae.HierarchicalVAE). "
            f"Received: model={model!r}"
        )
    suffix, packages, extra = _FORMATS[fmt]
    _require(packages, extra)
    target = os.fspath(export_dir)
    _files.check_target(target, f"{fmt} export", _replaceable(suffix), overwrite)
    if not distribute.is_chief(model.distribute_strategy):
        return None

    options = {}
    if fmt == "litert":
        import tensorflow as tf

        # Built-in operators only: the LiteRT runtime has no TensorFlow ops.
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    with _files.staged_folder(target, prefix=f".tfvae-{fmt}-") as staging:
        for part, function, signature in _endpoints(model):
            path = os.path.join(staging, f"{part}{suffix}")
            with warnings.catch_warnings():
                # Keras' tf2onnx patch probes `np.object`, which numpy 2 warns of.
                warnings.filterwarnings("ignore", category=FutureWarning)
                _Endpoint(model, function, name=part).export(
                    path,
                    format=fmt,
                    input_signature=[list(signature)],
                    verbose=False,
                    **options,
                )
            expected = (
                sorted(spec.name for spec in signature),
                _output_names(function, signature),
            )
            names = _runtime_names(path, fmt)
            if names != expected:
                raise RuntimeError(
                    f"The {_NAMES[fmt]} {part} does not have the input and output "
                    f"names of the SavedModel's signature, {expected}. "
                    f"Received: names={names}"
                )
    return target


def export_onnx(model, export_dir, overwrite=False):
    """Writes the encoder and decoder of `model` as ONNX files; returns the folder.

    `export_dir/encoder.onnx` and `export_dir/decoder.onnx` run in ONNX
    Runtime, with no TensorFlow, tfvae or Keras, and take and return what the
    SavedModel's `encode` and `decode` signatures do, by the same names (see
    the module docstring), with a dynamic batch dimension. They are converted
    by Keras' `model.export(..., format="onnx")` (tf2onnx) and checked to
    load in ONNX Runtime with those names. They do not check the values of
    their inputs (the SavedModel's signatures do).

    Args:
        model: a `tfvae.latent.LatentVariableModel`, such as a `tfvae.VAE` or a
            `tfvae.HierarchicalVAE`; with a label or other inputs, they are
            inputs of the files too.
        export_dir: the folder to write.
        overwrite: replace an existing ONNX export at `export_dir`. Without
            it, an existing non-empty folder raises `FileExistsError` before
            any work; with it, so does a folder that holds other files. The
            files are written to a temporary sibling folder and moved in
            place, so an interrupted export leaves the old one intact.

    Returns:
        The path of the folder; `None` on a worker that is not the chief of a
        multi-worker cluster, which writes nothing.

    Raises:
        ImportError: tf2onnx, onnx or onnxruntime is missing (install them
            with `pip install "tfvae[onnx]"`).

    Example:

    ```python
    folder = tfvae.export_onnx(model, "export")
    # In any process, with onnxruntime and numpy only:
    session = onnxruntime.InferenceSession("export/decoder.onnx")
    (mean,) = session.run(["mean"], {"z": np.zeros((4, 40), "float32")})
    ```
    """
    return _export(model, export_dir, "onnx", overwrite)


def export_litert(model, export_dir, overwrite=False):
    """Writes the encoder and decoder of `model` as LiteRT files; returns the folder.

    `export_dir/encoder.tflite` and `export_dir/decoder.tflite` run in the
    LiteRT interpreter (`ai_edge_litert`), with no TensorFlow, tfvae or
    Keras: each has one signature whose inputs and outputs have the names of
    the SavedModel's `encode` and `decode` signatures (see the module
    docstring), with a dynamic batch dimension. They are converted by Keras'
    `model.export(..., format="litert")` (the TensorFlow Lite converter) to
    LiteRT's built-in operators only, in float32 (no quantization), and
    checked to load in the interpreter with those names. They do not check
    the values of their inputs (the SavedModel's signatures do).

    Args:
        model: a `tfvae.latent.LatentVariableModel`, such as a `tfvae.VAE` or a
            `tfvae.HierarchicalVAE`; with a label or other inputs, they are
            inputs of the files too.
        export_dir: the folder to write.
        overwrite: replace an existing LiteRT export at `export_dir`. Without
            it, an existing non-empty folder raises `FileExistsError` before
            any work; with it, so does a folder that holds other files. The
            files are written to a temporary sibling folder and moved in
            place, so an interrupted export leaves the old one intact.

    Returns:
        The path of the folder; `None` on a worker that is not the chief of a
        multi-worker cluster, which writes nothing.

    Raises:
        ImportError: ai-edge-litert is missing (install it with
            `pip install "tfvae[litert]"`).

    Example:

    ```python
    folder = tfvae.export_litert(model, "export")
    # In any process, with ai-edge-litert and numpy only:
    from ai_edge_litert.interpreter import Interpreter

    decode = Interpreter("export/decoder.tflite").get_signature_runner()
    mean = decode(z=np.zeros((4, 40), "float32"))["mean"]
    ```
    """
    return _export(model, export_dir, "litert", overwrite)
