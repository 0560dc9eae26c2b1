"""Training throughput of `tfvae.VAE.fit` against a hand-written Keras 3 VAE.

Both models are 784-500-500-50 tanh MLP VAEs with a Bernoulli decoder, trained
with Adam at batch 100 on the same data, through `fit`, in the same process.
Runs alternate (reference, tfvae, reference, ...) after one warm-up run each, so
that load on a shared machine hits both alike. The figure reported is the median
of the per-round ratios (tfvae / reference, each from two neighbouring runs);
the ratios of the median and of the best throughputs are shown beside it.

The reference writes its own `train_step`: closed-form KL, sigmoid
cross-entropy, z = mu + sigma * eps; no TFP distributions and no data checks.

Usage:
    TFVAE_DATA_DIR=../shared/data python benchmarks/train_throughput.py
    python benchmarks/train_throughput.py --rounds 5 --examples 50000 --jit-compile
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
from keras import ops  # noqa: E402

import tfvae  # noqa: E402

HIDDEN, LATENT, PIXELS = (500, 500), 50, 784


class ReferenceVAE(keras.Model):
    """A plain Keras 3 VAE with its own train_step, for comparison."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        dense = keras.layers.Dense
        self.encoder = keras.Sequential(
            [dense(u, activation="tanh") for u in HIDDEN] + [dense(2 * LATENT)]
        )
        self.decoder = keras.Sequential(
            [dense(u, activation="tanh") for u in HIDDEN[::-1]] + [dense(PIXELS)]
        )
        self.seed_generator = keras.random.SeedGenerator(0)
        self.trackers = [
            keras.metrics.Mean(name=n) for n in ("loss", "elbo", "reconstruction", "kl")
        ]

    @property
    def metrics(self):
        return self.trackers

    def call(self, x):
        mu, _ = ops.split(self.encoder(x), 2, axis=-1)
        return ops.sigmoid(self.decoder(mu))

    def train_step(self, x):
        with tf.GradientTape() as tape:
            mu, raw = ops.split(self.encoder(x), 2, axis=-1)
            sigma = ops.softplus(raw) + 1e-4
            eps = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
            logits = self.decoder(mu + sigma * eps)
            reconstruction = -ops.sum(
                tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits),
                axis=-1,
            )
            kl = 0.5 * ops.sum(mu**2 + sigma**2 - 1.0 - 2.0 * ops.log(sigma), axis=-1)
            loss = ops.mean(kl - reconstruction)
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        for tracker, value in zip(
            self.trackers,
            (kl - reconstruction, reconstruction - kl, reconstruction, kl),
            strict=True,
        ):
            tracker.update_state(value)
        return {t.name: t.result() for t in self.trackers}


def load_data(examples):
    path = os.path.join(os.environ.get("TFVAE_DATA_DIR", ""), "binarized_mnist.npz")
    if os.path.exists(path):
        with np.load(path) as data:
            bits = np.unpackbits(data["train"][:examples], axis=1)[:, :PIXELS]
        return bits.astype("float32"), "binarized MNIST (train)"
    rng = np.random.default_rng(0)
    return (rng.random((examples, PIXELS)) < 0.13).astype("float32"), "random bits"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=1,
        help="for both models (default 1, Keras' default; tfvae's is 10)",
    )
    args = parser.parse_args(argv)

    x, source = load_data(args.examples)
    keras.utils.set_random_seed(0)
    models = {
        "reference": ReferenceVAE(),
        "tfvae": tfvae.VAE(
            input_shape=(PIXELS,),
            latent_dim=LATENT,
            hidden_units=HIDDEN,
            activation="tanh",
            seed=0,
        ),
    }
    for model in models.values():
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            jit_compile=args.jit_compile,
            steps_per_execution=args.steps_per_execution,
        )
        model.fit(x, batch_size=args.batch_size, epochs=1, verbose=0)  # warm-up, trace

    throughput = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(x, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True)
            throughput[name].append(len(x) / (time.perf_counter() - start))

    ratios = [
        t / r for t, r in zip(throughput["tfvae"], throughput["reference"], strict=True)
    ]
    median = {name: statistics.median(v) for name, v in throughput.items()}
    print(
        f"data: {source}, {len(x)} examples; batch {args.batch_size}; "
        f"784-500-500-50 tanh; jit_compile={args.jit_compile}; "
        f"steps_per_execution={args.steps_per_execution}"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; "
        f"tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"tfvae {tfvae.__version__}"
    )
    for name, values in throughput.items():
        print(
            f"{name:>9}: median {median[name]:8.0f} examples/s  "
            f"(runs: {', '.join(f'{v:.0f}' for v in values)})"
        )
    print(f"per-round ratios: {', '.join(f'{r:.3f}' for r in ratios)}")
    best = {name: max(v) for name, v in throughput.items()}
    print(f"ratio tfvae/reference (median of rounds): {statistics.median(ratios):.3f}")
    print(
        f"ratio tfvae/reference (medians): {median['tfvae'] / median['reference']:.3f}"
    )
    print(f"ratio tfvae/reference (best runs): {best['tfvae'] / best['reference']:.3f}")


if __name__ == "__main__":
    main()
