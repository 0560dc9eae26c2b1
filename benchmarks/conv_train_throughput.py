"""Training throughput of a convolutional `tfvae.VAE` against the keras-io VAE.

The reference is the model of the keras-io example "Variational AutoEncoder"
(`examples/generative/vae.py`): its encoder Conv2D(32, 3, stride 2, relu) ->
Conv2D(64, 3, stride 2, relu) -> Flatten -> Dense(16, relu) -> z_mean,
z_log_var (latent_dim 2), its decoder Dense(7 * 7 * 64, relu) -> Reshape ->
Conv2DTranspose(64, 3, stride 2, relu) -> Conv2DTranspose(32, 3, stride 2,
relu) -> Conv2DTranspose(1, 3, sigmoid), and its own `train_step`: the summed
binary cross-entropy plus the closed-form KL. The tfvae model takes the same
layers as `encoder=` and `decoder=` (the last Conv2DTranspose without its
sigmoid: it gives the logits), a `DiagonalGaussianHead` in place of the two
Dense layers of z_mean and z_log_var, and a Bernoulli head with
`projection="pixel"` (a 1 x 1 linear map of the one channel, two weights).

Both train on the same 28 x 28 x 1 binarized MNIST with Adam at batch 128
(the example's), through `fit`, in the same process, with the same
`steps_per_execution` (1, Keras' default, unless `--steps-per-execution`).
Runs alternate (reference, tfvae, ...) after one warm-up run each, so that
load on a shared machine hits both alike. The figure reported is the median
of the per-round ratios tfvae / reference, by the wall clock and by the
process's CPU time (which a machine that stalls the process, as these shared
ones sometimes do for seconds, does not inflate).

Usage:
    TFVAE_DATA_DIR=../shared/data python benchmarks/conv_train_throughput.py
    python benchmarks/conv_train_throughput.py --rounds 5 --steps-per-execution 10
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402
from train_throughput import load_data  # noqa: E402

import tfvae  # noqa: E402

LATENT = 2


def keras_io_encoder():
    """The keras-io example's encoder, up to the layer before z_mean/z_log_var."""
    return keras.Sequential(
        [
            layers.Conv2D(32, 3, activation="relu", strides=2, padding="same"),
            layers.Conv2D(64, 3, activation="relu", strides=2, padding="same"),
            layers.Flatten(),
            layers.Dense(16, activation="relu"),
        ],
        name="encoder",
    )


def keras_io_decoder(sigmoid):
    """The keras-io example's decoder; the last layer's logits if not `sigmoid`."""
    return keras.Sequential(
        [
            layers.Dense(7 * 7 * 64, activation="relu"),
            layers.Reshape((7, 7, 64)),
            layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same"),
            layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same"),
            layers.Conv2DTranspose(
                1, 3, activation="sigmoid" if sigmoid else None, padding="same"
            ),
        ],
        name="decoder",
    )


class KerasIOVAE(keras.Model):
    """The keras-io example's VAE and `train_step`, as written there."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras_io_encoder()
        self.z_mean = layers.Dense(LATENT, name="z_mean")
        self.z_log_var = layers.Dense(LATENT, name="z_log_var")
        self.decoder = keras_io_decoder(sigmoid=True)
        self.seed_generator = keras.random.SeedGenerator(0)
        self.trackers = [
            keras.metrics.Mean(name=n)
            for n in ("total_loss", "reconstruction_loss", "kl_loss")
        ]

    @property
    def metrics(self):
        return self.trackers

    def call(self, x):
        return self.decoder(self.z_mean(self.encoder(x)))

    def train_step(self, data):
        with tf.GradientTape() as tape:
            h = self.encoder(data)
            z_mean, z_log_var = self.z_mean(h), self.z_log_var(h)
            epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
            z = z_mean + ops.exp(0.5 * z_log_var) * epsilon
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(
                ops.sum(
                    keras.losses.binary_crossentropy(data, reconstruction),
                    axis=(1, 2),
                )
            )
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        for tracker, value in zip(
            self.trackers, (total_loss, reconstruction_loss, kl_loss), strict=True
        ):
            tracker.update_state(value)
        return {t.name: t.result() for t in self.trackers}


def tfvae_model():
    return tfvae.VAE(
        input_shape=(28, 28, 1),
        latent_dim=LATENT,
        encoder=keras_io_encoder(),
        decoder=keras_io_decoder(sigmoid=False),
        likelihood=tfvae.heads.BernoulliHead(projection="pixel"),
        seed=0,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    args = parser.parse_args(argv)

    x, source = load_data(args.examples)
    x = x.reshape(-1, 28, 28, 1)
    keras.utils.set_random_seed(0)
    models = {"keras-io": KerasIOVAE(), "tfvae": tfvae_model()}
    for model in models.values():
        model.compile(
            optimizer=keras.optimizers.Adam(),
            steps_per_execution=args.steps_per_execution,
        )
        model.fit(x, batch_size=args.batch_size, epochs=1, verbose=0)  # warm-up

    throughput = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            model.fit(x, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True)
            throughput[name].append(len(x) / (time.perf_counter() - start))
            cpu[name].append(len(x) / (time.process_time() - start_cpu))

    print(
        f"data: {source} as 28 x 28 x 1, {len(x)} examples; batch "
        f"{args.batch_size}; the keras-io vae.py layers; "
        f"steps_per_execution={args.steps_per_execution}"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; "
        f"tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"tfvae {tfvae.__version__}"
    )
    for clock, rates in (("wall-clock", throughput), ("CPU-time", cpu)):
        ratios = [t / r for t, r in zip(rates["tfvae"], rates["keras-io"], strict=True)]
        print(f"{clock}:")
        for name, values in rates.items():
            print(
                f"  {name:>9}: median {statistics.median(values):8.0f} examples/s  "
                f"(runs: {', '.join(f'{v:.0f}' for v in values)})"
            )
        print(f"  per-round ratios: {', '.join(f'{r:.3f}' for r in ratios)}")
        median = statistics.median(ratios)
        print(f"  ratio tfvae/keras-io (median of rounds): {median:.3f}")


if __name__ == "__main__":
    main()
