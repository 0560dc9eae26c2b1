"""The importance-sampled log-likelihood of a convolutional HVAE, against its decoder.

The model is a preset (`--preset NAME`) or, by default, the architecture of
the convolutional preset of issue #19 with fresh weights (the rate does not
depend on the weights): a two-layer `HierarchicalVAE` on 28 x 28 x 1 images,
`architecture="conv"` (tfvae.networks.conv_encoder / conv_decoder), latent
dims (40, 40), `hidden_units=((), (300, 300))`, gated linear layers,
top-down inference, skip connections and the VampPrior with 500
pseudo-inputs.

With an autoregressive head (`--preset pixelhvae2_vampprior_caltech`), the
decoder's plain forward pass is the teacher-forced one: every pixel's
factor given the pixels before it, at a test image.

One decoder evaluation is one (example, sample) pair. The estimator's rate
(`model.log_likelihood` on `--examples` test images with K = `--num-samples`)
is compared with the plain forward pass of the same decoder (`model.decode`
of random z, the likelihood head's parameters) at the estimator's own block
shapes, run the same way (a `tf.while_loop` over the blocks in one call),
timed in the same process and alternated with it. The fraction is
estimator / decoder; what the estimator adds is the encoder (once per
example), the prior, the posterior densities and the log-probabilities. The
projected time is that of the standard evaluation, K = 5000 on the 10,000
test images, at the estimator's rate. The decoder's and the encoder's
floating-point operations per evaluation are counted by TensorFlow's
profiler on their graphs.

Usage:
    TFVAE_DATA_DIR=../shared/data python benchmarks/conv_log_likelihood_throughput.py
    python benchmarks/conv_log_likelihood_throughput.py --examples 4 --rounds 2
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
from log_likelihood_throughput import load_test_images  # noqa: E402
from tensorflow.python.profiler import model_analyzer, option_builder  # noqa: E402

import tfvae  # noqa: E402
from tfvae import estimators  # noqa: E402
from tfvae.autoregressive import AutoregressiveHead  # noqa: E402


def default_model():
    return tfvae.HierarchicalVAE(
        input_shape=(28, 28, 1),
        latent_dims=(40, 40),
        hidden_units=((), (300, 300)),
        activation="linear",
        gated=True,
        architecture="conv",
        inference="top_down",
        skip=True,
        prior="vamp:500",
        seed=0,
    )


def flops(function, *specs):
    """Floating-point operations of one call of `function` on `specs`."""
    graph = tf.function(function).get_concrete_function(*specs).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return model_analyzer.profile(graph, options=options).total_float_ops


def test_images(preset, examples):
    """`examples` random test images of the preset's binary dataset (else of
    the binarized MNIST), (examples, 28, 28, 1), and where they are from."""
    name = tfvae.zoo.info(preset)["data"]["name"] if preset else "binarized_mnist"
    if name == "binarized_mnist" or not os.environ.get("TFVAE_DATA_DIR"):
        x, source = load_test_images(examples)
        return x.reshape(-1, 28, 28, 1), source
    x = tfvae.data.load(name, split="test", shape=(28, 28, 1))
    rows = np.random.default_rng(0).choice(len(x), examples, replace=False)
    return x[rows], f"{name} (test, random rows)"


def decoder_forward(model, x):
    """z -> the likelihood's parameters, the decoder's plain forward pass.

    For an autoregressive head (`tfvae.autoregressive.AutoregressiveHead`)
    that is the teacher-forced pass at the pixels of `x[:1]`: every factor
    given the pixels before it, the masked part computed once, as the
    estimator computes it once per example.
    """
    head = model.likelihood
    if isinstance(head, AutoregressiveHead):
        prepared = head.prepare(x[:1])
        return lambda z: head.factors(prepared, model.decode(z).conditioning).logits
    return lambda z: head.output_parameters(model.decode(z))["mean"]


def decoder_reference(model, forward, rows, blocks):
    """`forward` on `blocks` blocks of `rows` z, in one call."""
    z = tf.random.normal((rows, model.decode_dim))
    parallel = estimators.parallel_blocks()

    def block(i, total):
        parameters = forward(z + tf.cast(i, tf.float32))  # a new input per block
        return i + 1, total + tf.reduce_sum(parameters[:1])

    @tf.function
    def run():
        return tf.while_loop(
            lambda i, _: i < blocks, block, (0, 0.0), parallel_iterations=parallel
        )[1]

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", help="a zoo preset instead of fresh weights")
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    x, source = test_images(args.preset, args.examples)
    keras.utils.set_random_seed(0)
    model = tfvae.zoo.load(args.preset) if args.preset else default_model()
    name = args.preset or "the issue #19 architecture, fresh weights"
    examples, block = estimators.chunk_sizes(
        model, len(x), args.num_samples, None, estimators.DEFAULT_MEMORY_BUDGET
    )
    blocks = -(-args.num_samples // block)
    forward = decoder_forward(model, x)
    reference = decoder_reference(model, forward, examples * block, blocks)
    reference_rows = examples * block * blocks
    pairs = len(x) * args.num_samples
    decoder_flops = flops(forward, tf.TensorSpec((1, model.decode_dim)))
    encoder_flops = flops(
        lambda v: model.encode(v, sample=False)[0].mean(),
        tf.TensorSpec((1, *model.input_shape)),
    )

    model.log_likelihood(x, num_samples=args.num_samples, seed=0, verbose=0)
    reference()  # warm-up: traces
    estimator_rates, decoder_rates, cpu_ratios = [], [], []
    for round_ in range(args.rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        model.log_likelihood(x, num_samples=args.num_samples, seed=round_, verbose=0)
        estimator_rates.append(pairs / (time.perf_counter() - start))
        estimator_cpu = pairs / (time.process_time() - start_cpu)
        calls = max(1, round(pairs / reference_rows))
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            reference()
        decoder_rates.append(calls * reference_rows / (time.perf_counter() - start))
        decoder_cpu = calls * reference_rows / (time.process_time() - start_cpu)
        cpu_ratios.append(estimator_cpu / decoder_cpu)

    rate, decoder = statistics.median(estimator_rates), statistics.median(decoder_rates)
    ratios = [e / d for e, d in zip(estimator_rates, decoder_rates, strict=True)]
    print(
        f"model: {name}; {model.count_params():,} parameters; data: {source}, "
        f"{len(x)} examples, K = {args.num_samples}; chunks of {examples} "
        f"examples, blocks of {examples} x {block} pairs"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; tensorflow "
        f"{tf.__version__}, keras {keras.__version__}, tfvae {tfvae.__version__}"
    )
    print(
        f"FLOPs per evaluation (TensorFlow's profiler): decoder "
        f"{decoder_flops / 1e6:.1f} M, encoder (q(z_1|.) at the means) "
        f"{encoder_flops / 1e6:.1f} M"
    )
    print(
        f"log_likelihood: median {rate:,.0f} decoder evaluations/s "
        f"({rate * decoder_flops / 1e9:.1f} GFLOP/s in the decoder); runs: "
        f"{', '.join(f'{r:,.0f}' for r in estimator_rates)}"
    )
    print(
        f"decoder forward alone, same blocks: median {decoder:,.0f} evaluations/s; "
        f"fraction (medians) {rate / decoder:.3f}; per round "
        f"{', '.join(f'{r:.3f}' for r in ratios)}"
    )
    print(
        f"fraction by CPU time (median of rounds): {statistics.median(cpu_ratios):.3f};"
        f" per round {', '.join(f'{r:.3f}' for r in cpu_ratios)}"
    )
    print(
        "projected K = 5000 evaluation of the 10,000 test images: "
        f"{10_000 * 5000 / rate / 3600:.1f} hours at this rate "
        f"({np.round(10_000 * 5000 / decoder / 3600, 1)} hours of decoder alone)"
    )


if __name__ == "__main__":
    main()
