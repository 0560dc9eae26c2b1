"""Throughput of `log_likelihood` against dense matmuls at the same shapes.

The model is the 784-200-200-50 tanh Bernoulli VAE. One decoder evaluation is
one (example, sample) pair: the decoder's three matmuls (50x200, 200x200,
200x784), its activations and the Bernoulli log-probability, plus the
amortized encoder and noise. The reference, timed in the same process and
alternated with the estimator, is the three matmuls alone on the same number
of rows per chunk, so the ratio is the fraction of this machine's dense-matmul
throughput that the estimator reaches at its shapes.

It also projects the wall time of the standard evaluation: K = 5000 on the
10,000 test images.

Usage:
    TFVAE_DATA_DIR=../shared/data python benchmarks/log_likelihood_throughput.py
    python benchmarks/log_likelihood_throughput.py --examples 100 --rounds 3
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfvae  # noqa: E402
from tfvae import estimators  # noqa: E402

HIDDEN, LATENT, PIXELS = (200, 200), 50, 784
MACS_PER_ROW = LATENT * HIDDEN[1] + HIDDEN[1] * HIDDEN[0] + HIDDEN[0] * PIXELS


def load_test_images(examples):
    path = os.path.join(os.environ.get("TFVAE_DATA_DIR", ""), "binarized_mnist.npz")
    if os.path.exists(path):
        with np.load(path) as data:
            rows = np.random.default_rng(0).choice(10_000, examples, replace=False)
            bits = np.unpackbits(data["test"][rows], axis=1)[:, :PIXELS]
        return bits.astype("float32"), "binarized MNIST (test, random rows)"
    rng = np.random.default_rng(0)
    return (rng.random((examples, PIXELS)) < 0.13).astype("float32"), "random bits"


def matmul_reference(rows):
    """The decoder's three matmuls on `rows` rows, compiled like the estimator."""
    weights = [
        tf.random.normal((LATENT, HIDDEN[1])),
        tf.random.normal((HIDDEN[1], HIDDEN[0])),
        tf.random.normal((HIDDEN[0], PIXELS)),
    ]
    z = tf.random.normal((rows, LATENT))

    @tf.function
    def run():
        h = z
        for w in weights:
            h = tf.matmul(h, w)
        return tf.reduce_sum(h[:, 0])

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--memory-budget", type=int, default=estimators.DEFAULT_MEMORY_BUDGET
    )
    args = parser.parse_args(argv)

    x, source = load_test_images(args.examples)
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(
        input_shape=(PIXELS,), latent_dim=LATENT, hidden_units=HIDDEN, activation="tanh"
    )
    examples, samples = estimators._chunk_sizes(
        model, len(x), args.num_samples, None, args.memory_budget
    )
    rows = examples * samples
    reference = matmul_reference(rows)
    pairs = len(x) * args.num_samples
    chunks = pairs / rows

    budget = {"memory_budget": args.memory_budget, "verbose": 0}
    model.log_likelihood(x[:examples], num_samples=args.num_samples, seed=0, **budget)
    reference()  # warm-up: trace both
    estimator_rates, matmul_rates = [], []
    for round_ in range(args.rounds):
        start = time.perf_counter()
        model.log_likelihood(x, num_samples=args.num_samples, seed=round_, **budget)
        estimator_rates.append(pairs / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(round(chunks)):
            reference()
        matmul_rates.append(round(chunks) * rows / (time.perf_counter() - start))

    ratios = [e / m for e, m in zip(estimator_rates, matmul_rates, strict=True)]
    rate, matmul = statistics.median(estimator_rates), statistics.median(matmul_rates)
    print(
        f"data: {source}, {len(x)} examples, K = {args.num_samples}; "
        f"784-200-200-50 tanh Bernoulli VAE; chunks of {examples} examples x "
        f"{samples} samples = {rows} rows"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; tensorflow "
        f"{tf.__version__}, keras {keras.__version__}, tfvae {tfvae.__version__}"
    )
    print(
        f"log_likelihood: median {rate:,.0f} decoder evaluations/s "
        f"({rate * 2 * MACS_PER_ROW / 1e9:.1f} GFLOP/s in the decoder's matmuls); "
        f"runs: {', '.join(f'{r:,.0f}' for r in estimator_rates)}"
    )
    print(
        f"dense matmuls alone, same shapes: median {matmul:,.0f} rows/s "
        f"({matmul * 2 * MACS_PER_ROW / 1e9:.1f} GFLOP/s)"
    )
    print(f"per-round fractions: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"fraction of matmul throughput (medians): {rate / matmul:.3f}")
    print(
        "projected K = 5000 evaluation of the 10,000 test images: "
        f"{10_000 * 5000 / rate / 60:.1f} minutes"
    )


if __name__ == "__main__":
    main()
