"""Per-op timings behind the log-likelihood benchmark, for one chunk of 5,000 rows.

Times, in one process, the pieces of the Bernoulli log-likelihood of the
784-200-200-50 decoder's last layer: its matmul, TFP's Independent(Bernoulli)
log_prob, tfvae's fused `BernoulliHead.log_likelihood`, and the two ways of
summing softplus over 784 logits. Each is a `tf.function`, timed as the mean of
50 calls after a warm-up.

Usage:
    python benchmarks/bernoulli_normalizer.py
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvae import heads  # noqa: E402

ROWS, HIDDEN, PIXELS, SAMPLES = 5000, 200, 784, 5000


def timed(function, *args, calls=50):
    function(*args)
    start = time.perf_counter()
    for _ in range(calls):
        function(*args)
    return (time.perf_counter() - start) / calls * 1000


def main():
    rng = np.random.default_rng(0)
    head = heads.BernoulliHead(event_shape=(PIXELS,))
    head.build((None, HIDDEN))
    features = tf.constant(rng.normal(size=(ROWS, HIDDEN)), tf.float32)
    x = tf.constant(rng.random((1, PIXELS)) < 0.13, tf.float32)
    logits = head.project(features)[0]

    cases = {
        "last matmul (200 -> 784) only": (
            tf.function(lambda f: tf.matmul(f, head.kernel)),
            features,
        ),
        "TFP Independent(Bernoulli).log_prob": (
            tf.function(lambda f: head(f).log_prob(tf.repeat(x, ROWS, axis=0))),
            features,
        ),
        "tfvae fused BernoulliHead.log_likelihood": (
            tf.function(lambda f: head.log_likelihood(f, x, SAMPLES)),
            features,
        ),
        "sum of tf.nn.softplus over 784 logits": (
            tf.function(lambda v: tf.reduce_sum(tf.nn.softplus(v), axis=-1)),
            logits,
        ),
        "tfvae sum_softplus (blocks of 56)": (
            tf.function(heads.sum_softplus),
            logits,
        ),
    }
    print(f"one chunk: {ROWS} rows x {PIXELS} pixels; tensorflow {tf.__version__}")
    for name, (function, argument) in cases.items():
        print(f"{name:42s} {timed(function, argument):6.2f} ms")


if __name__ == "__main__":
    main()
