"""Where one chunk of `log_likelihood` spends its time, against its matmuls.

One chunk of the K = 5000 estimate for the 784-200-200-50 tanh Bernoulli VAE
is one example x 5,000 samples. This times, in one process, the whole chunk
(in one block of 5,000 samples, and in blocks of 1,000) and its parts, each
a `tf.function` on the chunk's shapes: the counter-based noise, the
decoder's hidden layers (matmuls, biases, tanh), the fused Bernoulli
log-likelihood (last matmul, bias, normalizer), and the reference of
`log_likelihood_throughput.py` (the decoder's three matmuls alone). Rounds
alternate over the parts; each figure is the median over rounds of the median
of `--calls` calls.

Usage:
    python benchmarks/log_likelihood_breakdown.py
    python benchmarks/log_likelihood_breakdown.py --rounds 5 --calls 20
"""

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from serving_latency import median_seconds  # noqa: E402

import tfvae  # noqa: E402
from tfvae import estimators, heads  # noqa: E402
from tfvae import noise as noise_lib  # noqa: E402

SAMPLES, HIDDEN, LATENT, PIXELS = 5000, (200, 200), 50, 784


def parts(model, x):
    """name -> a no-argument callable that runs one piece and waits for it."""
    seed = tf.constant(1, tf.int64)
    index = tf.range(1)
    chunk = estimators.compiled_chunk(model)
    z = tf.random.normal((SAMPLES, LATENT))
    features = model.decoder(z)
    logits = tf.matmul(features, model.likelihood.kernel) + model.likelihood.bias
    shapes = [(LATENT, HIDDEN[1]), (HIDDEN[1], HIDDEN[0]), (HIDDEN[0], PIXELS)]
    weights = [tf.random.normal(shape) for shape in shapes]

    @tf.function
    def matmuls():
        h = z
        for w in weights:
            h = tf.matmul(h, w)
        return h[0, 0]

    noise = tf.function(
        lambda: noise_lib.counter_normal(seed, index, 0, SAMPLES, LATENT)[0, 0, 0]
    )
    hidden = tf.function(lambda: model.decoder(z)[0, 0])
    head = tf.function(lambda: model.likelihood.log_likelihood(features, x, SAMPLES)[0])
    last = tf.function(
        lambda: (tf.matmul(features, model.likelihood.kernel) + model.likelihood.bias)[
            0, 0
        ]
    )
    half_logits = 0.5 * logits
    normalizer = tf.function(lambda: heads.sum_softplus_of_double(half_logits)[0])
    return {
        "whole chunk (log_likelihood)": lambda: chunk(x, index, seed, SAMPLES, SAMPLES)[
            0
        ].numpy(),
        "  the same in blocks of 1000 samples": lambda: chunk(
            x, index, seed, SAMPLES, 1000
        )[0].numpy(),
        "three matmuls alone (reference)": lambda: matmuls().numpy(),
        "noise (counter_normal)": lambda: noise().numpy(),
        "decoder hidden layers": lambda: hidden().numpy(),
        "Bernoulli log-likelihood (fused)": lambda: head().numpy(),
        "  of it: last matmul + bias": lambda: last().numpy(),
        "  of it: normalizer": lambda: normalizer().numpy(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(
        input_shape=(PIXELS,),
        latent_dim=LATENT,
        hidden_units=HIDDEN,
        activation="tanh",
        seed=0,
    )
    x = tf.constant((np.random.default_rng(0).random((1, PIXELS)) < 0.13), "float32")
    pieces = parts(model, x)
    times = {name: [] for name in pieces}
    for _ in range(args.rounds):
        for name, run in pieces.items():
            times[name].append(median_seconds(run, calls=args.calls))
    medians = {name: statistics.median(values) for name, values in times.items()}
    chunk = medians["whole chunk (log_likelihood)"]
    print(
        f"one chunk: 1 example x {SAMPLES} samples; 784-200-200-50 tanh Bernoulli "
        f"VAE; {os.cpu_count()} CPUs; median of {args.rounds} rounds of "
        f"{args.calls} calls"
    )
    print(f"{'piece':<36} {'ms':>7} {'of chunk':>9}")
    for name, seconds in medians.items():
        print(f"{name:<36} {seconds * 1e3:>7.2f} {seconds / chunk:>9.2f}")
    reference = medians["three matmuls alone (reference)"]
    print(f"fraction of matmul throughput: {reference / chunk:.3f}")
    print(f"chunk time at a fraction of 0.60: {reference / 0.6 * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
