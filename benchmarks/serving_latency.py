"""Size and latency of the exported SavedModel against the in-memory Keras model.

The model is the 784-200-200-50 tanh Bernoulli VAE of the quickstart. The
SavedModel from `tfvae.export_saved_model` is loaded back with
`tf.saved_model.load` and its `serving_default` signature is timed against the
in-memory model's `predict_on_batch` (Keras' compiled predict step) on the same
inputs, alternating in rounds: latency at batch 1 (median of single calls) and
throughput at batch 256. The eager call `model(x)` is shown too. Sizes are the
SavedModel folder and the `.keras` file on disk.

Then the encoder and the decoder apart, in every format: the SavedModel's
`encode` and `decode` signatures, ONNX Runtime on the files of
`tfvae.export_onnx` and the LiteRT interpreter on those of
`tfvae.export_litert` (one session or interpreter per batch size, each on one
thread), each against `predict_on_batch` of a Keras model that computes the
same outputs (`tfvae.export.encode_outputs`, `decode_outputs`), in the same
rounds: file size, export time, and latency at batch 1 and throughput at
batch 256 as ratios to Keras (`--no-portable` skips them).

Usage:
    python benchmarks/serving_latency.py
    python benchmarks/serving_latency.py --rounds 5 --calls 300
"""

import argparse
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfvae  # noqa: E402


def folder_size(path):
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def median_seconds(function, *args, calls):
    """Median wall time of `calls` calls of `function(*args)`, after a warm-up."""
    function(*args)  # warm-up
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Part(keras.Model):
    """The encoder or decoder outputs of a tfvae model, as a Keras model."""

    def __init__(self, model, function, **kwargs):
        super().__init__(**kwargs)
        self.latent_model = model
        self.function = function
        self.built = True

    def call(self, inputs):
        return self.function(self.latent_model, inputs)


def timed(function, *args):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def portable_candidates(model, workdir, saved_path):
    """Per part: Keras, then each format, as (name, size, export seconds, call)."""
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    export_seconds = {}
    for fmt, export in [("onnx", tfvae.export_onnx), ("litert", tfvae.export_litert)]:
        export_seconds[fmt], _ = timed(export, model, os.path.join(workdir, fmt))
    export_seconds["savedmodel"], _ = timed(
        tfvae.export_saved_model, model, os.path.join(workdir, "timed_savedmodel")
    )
    signatures = tf.saved_model.load(saved_path).signatures
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    parts = {
        "encoder": (tfvae.export.encode_outputs, "encode", "x"),
        "decoder": (tfvae.export.decode_outputs, "decode", "z"),
    }
    candidates = {}
    for part, (function, signature, name) in parts.items():
        keras_part = Part(model, function, name=part)
        onnx_path = os.path.join(workdir, "onnx", f"{part}.onnx")
        litert_path = os.path.join(workdir, "litert", f"{part}.tflite")
        sessions = {}
        runners = {}

        def run_onnx(x, path=onnx_path, name=name, sessions=sessions):
            if len(x) not in sessions:
                sessions[len(x)] = onnxruntime.InferenceSession(
                    path, options, providers=["CPUExecutionProvider"]
                )
            return sessions[len(x)].run(None, {name: x})

        def run_litert(x, path=litert_path, name=name, runners=runners):
            if len(x) not in runners:
                runners[len(x)] = Interpreter(
                    path, num_threads=1
                ).get_signature_runner()
            return runners[len(x)](**{name: x})

        served = signatures[signature]
        candidates[part] = [
            ("Keras predict_on_batch", None, None, keras_part.predict_on_batch),
            (
                "SavedModel signature",
                folder_size(saved_path),  # the whole model's, six signatures
                export_seconds["savedmodel"],
                lambda x, served=served, name=name: served(**{name: tf.constant(x)}),
            ),
            (
                "ONNX Runtime",
                os.path.getsize(onnx_path),
                export_seconds["onnx"],
                run_onnx,
            ),
            (
                "LiteRT",
                os.path.getsize(litert_path),
                export_seconds["litert"],
                run_litert,
            ),
        ]
    return candidates


def portable_table(model, workdir, saved_path, rounds, calls, rng):
    """Prints the encoder and decoder of every format against Keras."""
    candidates = portable_candidates(model, workdir, saved_path)
    inputs = {
        "encoder": (rng.random((256, 784)) < 0.13).astype("float32"),
        "decoder": rng.standard_normal((256, model.decode_dim)).astype("float32"),
    }
    print(
        "\nencoder and decoder apart: ratios to Keras predict_on_batch of the same "
        "outputs (latency below 1 is faster, throughput above 1 is faster); "
        "export seconds for the whole model"
    )
    print(
        "| part | format | file size | export time | latency ratio, batch 1 | "
        "throughput ratio, batch 256 |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for part, entries in candidates.items():
        latency = {entry[0]: [] for entry in entries}
        throughput = {entry[0]: [] for entry in entries}
        one, batch = inputs[part][:1], inputs[part]
        for _ in range(rounds):
            for name, _, _, function in entries:
                latency[name].append(median_seconds(function, one, calls=calls))
                seconds = median_seconds(function, batch, calls=max(1, calls // 4))
                throughput[name].append(256 / seconds)
        reference = "Keras predict_on_batch"
        base_latency = statistics.median(latency[reference])
        base_throughput = statistics.median(throughput[reference])
        for name, size, seconds, _ in entries:
            if name == reference:
                print(
                    f"| {part} | {name} | - | - | {base_latency * 1e3:.3f} ms | "
                    f"{base_throughput:,.0f} examples/s |"
                )
                continue
            size_text = "-" if size is None else f"{size / 2**10:,.0f} KiB"
            print(
                f"| {part} | {name} | {size_text} | {seconds:.2f} s | "
                f"{statistics.median(latency[name]) / base_latency:.3f} | "
                f"{statistics.median(throughput[name]) / base_throughput:.3f} |"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--no-portable",
        dest="portable",
        action="store_false",
        help="skip the ONNX Runtime and LiteRT table",
    )
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    model = tfvae.VAE(
        input_shape=(784,), latent_dim=50, hidden_units=(200, 200), activation="tanh"
    )
    rng = np.random.default_rng(0)
    workdir = tempfile.mkdtemp()
    path = tfvae.export_saved_model(model, os.path.join(workdir, "vae"), version=1)
    model.save(os.path.join(workdir, "vae.keras"))
    served = tf.saved_model.load(path).signatures["serving_default"]

    candidates = {
        "SavedModel serving_default": lambda x: served(x=x)["reconstruction"],
        "Keras predict_on_batch": model.predict_on_batch,
        "Keras eager model(x)": model,
    }
    latency = {name: [] for name in candidates}
    throughput = {name: [] for name in candidates}
    one = tf.constant(rng.random((1, 784)) < 0.13, tf.float32)
    batch = tf.constant(rng.random((256, 784)) < 0.13, tf.float32)
    for _ in range(args.rounds):
        for name, function in candidates.items():
            latency[name].append(median_seconds(function, one, calls=args.calls))
            seconds = median_seconds(function, batch, calls=max(1, args.calls // 4))
            throughput[name].append(256 / seconds)

    print(
        f"model: 784-200-200-50 tanh Bernoulli VAE, {model.count_params():,} "
        f"parameters; SavedModel {folder_size(path) / 2**20:.2f} MiB, "
        f".keras {os.path.getsize(os.path.join(workdir, 'vae.keras')) / 2**20:.2f} MiB"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; tensorflow "
        f"{tf.__version__}, keras {keras.__version__}, tfvae {tfvae.__version__}"
    )
    for name in candidates:
        print(
            f"{name:28s} batch 1: {statistics.median(latency[name]) * 1e3:7.3f} ms"
            f"   batch 256: {statistics.median(throughput[name]):10,.0f} examples/s"
        )
    saved, keras_ = "SavedModel serving_default", "Keras predict_on_batch"
    latency_ratio = statistics.median(latency[saved]) / statistics.median(
        latency[keras_]
    )
    throughput_ratio = statistics.median(throughput[saved]) / statistics.median(
        throughput[keras_]
    )
    print(
        f"SavedModel / predict_on_batch: latency ratio {latency_ratio:.3f} "
        f"(below 1 is faster), throughput ratio {throughput_ratio:.3f} "
        "(above 1 is faster)"
    )
    if args.portable:
        portable_table(model, workdir, path, args.rounds, args.calls, rng)


if __name__ == "__main__":
    main()
