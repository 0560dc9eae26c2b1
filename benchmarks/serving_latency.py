"""Size and latency of the exported SavedModel against the in-memory Keras model.

The model is the 784-200-200-50 tanh Bernoulli VAE of the quickstart. The
SavedModel from `tfvae.export_saved_model` is loaded back with
`tf.saved_model.load` and its `serving_default` signature is timed against the
in-memory model's `predict_on_batch` (Keras' compiled predict step) on the same
inputs, alternating in rounds: latency at batch 1 (median of single calls) and
throughput at batch 256. The eager call `model(x)` is shown too. Sizes are the
SavedModel folder and the `.keras` file on disk.

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
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


if __name__ == "__main__":
    main()
