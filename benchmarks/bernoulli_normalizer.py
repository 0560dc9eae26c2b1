"""The Bernoulli normalizer sum_i softplus(l_i): forms, speed and accuracy.

The normalizer is the one elementwise pass over every (sample, pixel) logit of
the Bernoulli log-likelihood, so its form sets much of the speed of
`log_likelihood` outside the matmuls. This times, on one block of the
estimator's shape (1,014 rows x 784 logits), the decoder's last matmul, TFP's
`Independent(Bernoulli).log_prob`, tfvae's fused `BernoulliHead.log_likelihood`
and four forms of the normalizer on the same logits:

- softplus: `tf.nn.softplus` per element, summed;
- exp blocks: relu(l) + the log of products of blocks of 56 factors
  1 + exp(-|l|) (tfvae's form before 2026-11-23);
- sigmoid blocks: relu(l) - the log of products of sigmoid(|l|);
- tanh blocks: tfvae's `sum_softplus_of_double` on m = l / 2, which takes
  products of 1 + |tanh m| (see its docstring).

Each is a `tf.function` of ten evaluations, timed as the median of `--calls`
calls, alternating, median over `--rounds`. It also prints each form's largest
error against float64 on logits like a trained decoder's (most far below 0).

Usage:
    python benchmarks/bernoulli_normalizer.py
    python benchmarks/bernoulli_normalizer.py --threads evaluation
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from log_likelihood_throughput import (  # noqa: E402
    add_threads_argument,
    apply_threads,
    threads_description,
)

from tfvae import heads  # noqa: E402

ROWS, HIDDEN, PIXELS, BLOCK = 1014, 200, 784, 56


def _blocks(factors):
    return tf.reshape(factors, (-1, PIXELS // BLOCK, BLOCK))


def softplus_form(logits):
    return tf.reduce_sum(tf.nn.softplus(logits), axis=-1)


def exp_form(logits):
    products = tf.reduce_prod(_blocks(1.0 + tf.exp(-tf.abs(logits))), axis=-1)
    return tf.reduce_sum(tf.nn.relu(logits), axis=-1) + tf.reduce_sum(
        tf.math.log(products), axis=-1
    )


def sigmoid_form(logits):
    products = tf.reduce_prod(_blocks(tf.sigmoid(tf.abs(logits))), axis=-1)
    return tf.reduce_sum(tf.nn.relu(logits), axis=-1) - tf.reduce_sum(
        tf.math.log(products), axis=-1
    )


FORMS = {
    "softplus": softplus_form,
    "exp blocks (before)": exp_form,
    "sigmoid blocks": sigmoid_form,
    "tanh blocks (tfvae)": heads.sum_softplus,
}


def _repeated(function, variable):
    """A tf.function of ten evaluations, so that the call overhead is small.

    Each reads the variable anew (a stateful op), so that the ten are not
    merged into one as common subexpressions.
    """

    @tf.function
    def run():
        total = 0.0
        for _ in range(10):
            total += tf.reduce_sum(function(variable.read_value()))
        return total

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    apply_threads(parser, args)

    rng = np.random.default_rng(0)
    head = heads.BernoulliHead(event_shape=(PIXELS,))
    head.build((None, HIDDEN))
    head.kernel.assign(rng.normal(scale=0.3, size=(HIDDEN, PIXELS)))
    head.bias.assign(rng.normal(-5, 3, size=(PIXELS,)))
    features = tf.Variable(np.tanh(rng.normal(size=(ROWS, HIDDEN))), dtype=tf.float32)
    x = tf.constant(rng.random((1, PIXELS)) < 0.13, tf.float32)
    logits = tf.Variable(head.project(features)[0])

    cases = {
        "last matmul (200 -> 784) + bias": _repeated(
            lambda f: tf.matmul(f, head.kernel) + head.bias, features
        ),
        "TFP Independent(Bernoulli).log_prob": _repeated(
            lambda f: head(f).log_prob(tf.repeat(x, ROWS, axis=0)), features
        ),
        "tfvae BernoulliHead.log_likelihood": _repeated(
            lambda f: head.log_likelihood(f, x, ROWS), features
        ),
    }
    for name, form in FORMS.items():
        cases[f"normalizer: {name}"] = _repeated(form, logits)
    for run in cases.values():
        run()  # trace
    times = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, run in cases.items():
            calls = []
            for _ in range(args.calls):
                start = time.perf_counter()
                run().numpy()
                calls.append((time.perf_counter() - start) / 10)
            times[name].append(statistics.median(calls))

    # Accuracy on logits like a trained decoder's: most pixels far below 0.
    test = rng.normal(-60, 30, size=(200, PIXELS)).astype("float32")
    test[:, :100] = rng.normal(3, 3, size=(200, 100))
    test[0, :4] = [-200, 200, 0, 1e-5]
    exact = np.logaddexp(0, test.astype("float64")).sum(-1)
    print(
        f"one block: {ROWS} rows x {PIXELS} logits; tensorflow {tf.__version__}; "
        f"{threads_description(args)}); median of {args.rounds} rounds of "
        f"{args.calls} calls"
    )
    print(f"{'piece':<44} {'ms':>7}  largest error against float64 (nats)")
    for name, values in times.items():
        line = f"{name:<44} {statistics.median(values) * 1e3:>7.3f}"
        if name.startswith("normalizer: "):
            form = FORMS[name.removeprefix("normalizer: ")]
            error = np.abs(form(tf.constant(test)).numpy() - exact).max()
            line += f"  {error:.1e}"
        print(line)


if __name__ == "__main__":
    main()
