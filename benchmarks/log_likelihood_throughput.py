"""Throughput of `log_likelihood` against dense matmuls at the same shapes.

The model is the 784-200-200-50 tanh Bernoulli VAE. One decoder evaluation is
one (example, sample) pair: the decoder's three matmuls (50x200, 200x200,
200x784), its activations and the Bernoulli log-probability, plus the
amortized encoder and noise. The reference, timed in the same process and
alternated with the estimator, is the three matmuls alone on the same blocks
of rows, run the same way (a `tf.while_loop` over blocks in one call per
chunk), so the ratio is the fraction of this machine's dense-matmul throughput
that the estimator reaches at its shapes. Under TensorFlow's default thread
pools, a second reference, the three matmuls on 5,000 rows per call (the
shape before the estimator evaluated blocks), shows the fraction against the
larger matmuls of that version.

It also projects the wall time of the standard evaluation: K = 5000 on the
10,000 test images.

`--threads` picks TensorFlow's thread pools for the whole process (estimator
and references alike): `tensorflow`, its defaults, or `evaluation`, those of
`tfvae.use_evaluation_threads` (one intra-op thread, one inter-op
thread per core), which `tfvae evaluate` and `tfvae zoo verify` use.

Usage:
    TFVAE_DATA_DIR=../shared/data python benchmarks/log_likelihood_throughput.py
    python benchmarks/log_likelihood_throughput.py --examples 100 --rounds 3
    python benchmarks/log_likelihood_throughput.py --threads evaluation
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


def matmul_reference(rows, blocks=1):
    """The decoder's three matmuls on `blocks` blocks of `rows` rows, one call.

    Compiled like the estimator: the blocks run in a `tf.while_loop` inside
    one `tf.function`, so the reference pays one call per chunk, as it does.
    """
    weights = [
        tf.random.normal((LATENT, HIDDEN[1])),
        tf.random.normal((HIDDEN[1], HIDDEN[0])),
        tf.random.normal((HIDDEN[0], PIXELS)),
    ]
    z = tf.random.normal((rows, LATENT))
    parallel = estimators.parallel_blocks()  # as many side by side as it runs

    def block(i, total):
        h = z + tf.cast(i, tf.float32)  # a new input per block
        for w in weights:
            h = tf.matmul(h, w)
        return i + 1, total + tf.reduce_sum(h[:, 0])

    @tf.function
    def run():
        return tf.while_loop(
            lambda i, _: i < blocks, block, (0, 0.0), parallel_iterations=parallel
        )[1]

    return run


def add_threads_argument(parser):
    """`--threads tensorflow|evaluation`: see the module docstring."""
    parser.add_argument(
        "--threads", choices=["tensorflow", "evaluation"], default="tensorflow"
    )


def apply_threads(parser, args):
    """Sets the pools `--threads` asks for; call before TensorFlow's first op."""
    if args.threads == "evaluation" and not estimators.use_evaluation_threads():
        parser.error("--threads evaluation: TF_NUM_*_THREADS is set")


def threads_description(args):
    """`threads NAME (intra-op N, inter-op M`, left open for the caller."""
    settings = estimators.thread_settings()
    return (
        f"threads {args.threads} (intra-op {settings['intra_op']}, "
        f"inter-op {settings['inter_op']}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--memory-budget", type=int, default=estimators.DEFAULT_MEMORY_BUDGET
    )
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    apply_threads(parser, args)

    x, source = load_test_images(args.examples)
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(
        input_shape=(PIXELS,), latent_dim=LATENT, hidden_units=HIDDEN, activation="tanh"
    )
    examples, block = estimators.chunk_sizes(
        model, len(x), args.num_samples, None, args.memory_budget
    )
    samples = args.num_samples
    rows = examples * samples
    blocks = -(-samples // block)
    references = {
        # the estimator's shapes: its blocks of examples x block rows
        "same shapes": matmul_reference(examples * block, blocks),
    }
    reference_rows = {"same shapes": examples * block * blocks}
    if args.threads == "tensorflow":
        # The reference of the version before blocks: one 5000-row matmul chain
        # per call. (With one intra-op thread it would run on one core.)
        references["5000-row matmuls"] = matmul_reference(5000, 1)
        reference_rows["5000-row matmuls"] = 5000
    pairs = len(x) * args.num_samples

    budget = {"memory_budget": args.memory_budget, "verbose": 0}
    # warm-up: traces the full chunk and the last, partial one
    model.log_likelihood(x, num_samples=args.num_samples, seed=0, **budget)
    for reference in references.values():
        reference()  # warm-up: trace
    estimator_rates, matmul_rates = [], {name: [] for name in references}
    for round_ in range(args.rounds):
        start = time.perf_counter()
        model.log_likelihood(x, num_samples=args.num_samples, seed=round_, **budget)
        estimator_rates.append(pairs / (time.perf_counter() - start))
        for name, reference in references.items():
            calls = max(1, round(pairs / reference_rows[name]))
            start = time.perf_counter()
            for _ in range(calls):
                reference()
            elapsed = time.perf_counter() - start
            matmul_rates[name].append(calls * reference_rows[name] / elapsed)

    rate = statistics.median(estimator_rates)
    print(
        f"data: {source}, {len(x)} examples, K = {args.num_samples}; "
        f"784-200-200-50 tanh Bernoulli VAE; chunks of {examples} examples x "
        f"{samples} samples = {rows} rows, in blocks of {examples} x {block}"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; tensorflow "
        f"{tf.__version__}, keras {keras.__version__}, tfvae {tfvae.__version__}; "
        f"{threads_description(args)}; 0: TensorFlow's choice)"
    )
    print(
        f"log_likelihood: median {rate:,.0f} decoder evaluations/s "
        f"({rate * 2 * MACS_PER_ROW / 1e9:.1f} GFLOP/s in the decoder's matmuls); "
        f"runs: {', '.join(f'{r:,.0f}' for r in estimator_rates)}"
    )
    for name, rates in matmul_rates.items():
        matmul = statistics.median(rates)
        ratios = [e / m for e, m in zip(estimator_rates, rates, strict=True)]
        print(
            f"dense matmuls alone, {name}: median {matmul:,.0f} rows/s "
            f"({matmul * 2 * MACS_PER_ROW / 1e9:.1f} GFLOP/s); fraction "
            f"(medians) {rate / matmul:.3f}; per round "
            f"{', '.join(f'{r:.3f}' for r in ratios)}"
        )
    print(
        "projected K = 5000 evaluation of the 10,000 test images: "
        f"{10_000 * 5000 / rate / 60:.1f} minutes"
    )


if __name__ == "__main__":
    main()
