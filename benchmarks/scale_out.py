"""Training throughput of both models: references, replicas, XLA, CPU use.

One process, alternating runs (so that load on a shared machine hits every
variant alike); each figure is a median over rounds. For the 784-200-200-50
tanh VAE and the 2-layer HVAE x-200-200-z1(100)-100-100-z2(50) with Bernoulli
decoders, Adam, on binarized MNIST training images, at batch 100 and 1000:

- tfvae's `fit` against a hand-written Keras 3 model of the same layers and
  ELBO (its own `train_step`, no TFP, no data checks), in examples/s;
- the fraction of this machine's dense-matmul throughput that a training step
  reaches: the step's matmul FLOPs (forward and backward: 3 matmuls of each
  dense layer) per second, against the same matmuls alone, timed here;
- CPU seconds per wall second during `fit` (2.0 = both cores busy);
- `jit_compile=True` (XLA) and `steps_per_execution=10` against the default;
- 2 replicas (`MirroredStrategy` over two logical CPU devices) against 1.

Usage:
    TFVAE_DATA_DIR=../shared/data python benchmarks/scale_out.py
    python benchmarks/scale_out.py --rounds 3 --examples 10000 --models vae
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# Two logical CPU devices for the replica runs, before TensorFlow starts.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402
from train_throughput import load_data  # noqa: E402  (same folder)

import tfvae  # noqa: E402

PIXELS = 784
LATENTS = (100, 50)
HIDDEN = ((200, 200), (100, 100))
VAE_HIDDEN, VAE_LATENT = (200, 200), 50
LOG_2PI = float(np.log(2 * np.pi))


def mlp(widths, out):
    dense = keras.layers.Dense
    return keras.Sequential(
        [dense(u, activation="tanh") for u in widths] + [dense(out)]
    )


def gaussian(params, min_scale=1e-4):
    loc, raw = ops.split(params, 2, axis=-1)
    return loc, ops.softplus(raw) + min_scale


def log_normal(z, loc, scale):
    return ops.sum(
        -0.5 * ops.square((z - loc) / scale) - ops.log(scale) - 0.5 * LOG_2PI, axis=-1
    )


class Reference(keras.Model):
    """A hand-written Keras 3 VAE (L = 1) or Markov-chain HVAE (L = 2)."""

    def __init__(self, layers, **kwargs):
        super().__init__(**kwargs)
        latents = (VAE_LATENT,) if layers == 1 else LATENTS
        hidden = (VAE_HIDDEN,) if layers == 1 else HIDDEN
        self.latents = latents
        self.inference = [mlp(h, 2 * d) for h, d in zip(hidden, latents, strict=True)]
        outs = [PIXELS] + [2 * d for d in latents[:-1]]
        self.generative = [
            mlp(h[::-1], o) for h, o in zip(hidden, outs, strict=True)
        ]  # generative[l] maps z_{l+1} to the parameters of layer l (x for l = 0)
        self.seed_generator = keras.random.SeedGenerator(0)
        self.tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.tracker]

    def call(self, x):
        return x

    def train_step(self, x):
        with tf.GradientTape() as tape:
            h, log_q, zs, qs = x, 0.0, [], []
            for net in self.inference:
                loc, scale = gaussian(net(h))
                eps = keras.random.normal(ops.shape(loc), seed=self.seed_generator)
                h = loc + scale * eps
                log_q = log_q + log_normal(h, loc, scale)
                zs.append(h)
                qs.append((loc, scale))
            loc, scale = qs[-1]
            kl_top = 0.5 * ops.sum(
                ops.square(loc) + ops.square(scale) - 1.0 - 2.0 * ops.log(scale), -1
            )
            log_q_top = log_normal(zs[-1], loc, scale)
            log_p = 0.0
            for layer in range(len(self.latents) - 1):
                p_loc, p_scale = gaussian(self.generative[layer + 1](zs[layer + 1]))
                log_p = log_p + log_normal(zs[layer], p_loc, p_scale)
            logits = self.generative[0](zs[0])
            log_px = -ops.sum(
                tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), -1
            )
            elbo = log_px + log_p - (log_q - log_q_top) - kl_top
            loss = -ops.mean(elbo)
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        self.tracker.update_state(loss)
        return {"loss": self.tracker.result()}


def tfvae_model(layers):
    if layers == 1:
        return tfvae.VAE(
            input_shape=(PIXELS,),
            latent_dim=VAE_LATENT,
            hidden_units=VAE_HIDDEN,
            activation="tanh",
            seed=0,
        )
    return tfvae.HierarchicalVAE(
        input_shape=(PIXELS,),
        latent_dims=LATENTS,
        hidden_units=HIDDEN,
        activation="tanh",
        seed=0,
    )


def dense_shapes(model):
    """(fan_in, fan_out) of every dense kernel of the model."""
    return [tuple(w.shape) for w in model.trainable_weights if len(w.shape) == 2]


def matmul_rate(shapes, batch, repeats=20):
    """FLOP/s of the training step's matmuls alone: 3 per kernel (fwd, 2 bwd)."""
    rng = np.random.default_rng(0)
    kernels = [tf.constant(rng.normal(size=s).astype("float32")) for s in shapes]
    inputs = [
        tf.constant(rng.normal(size=(batch, s[0])).astype("float32")) for s in shapes
    ]
    grads = [
        tf.constant(rng.normal(size=(batch, s[1])).astype("float32")) for s in shapes
    ]

    @tf.function
    def run():
        total = 0.0
        for x, w, g in zip(inputs, kernels, grads, strict=True):
            total += tf.reduce_sum(tf.matmul(x, w))  # forward
            total += tf.reduce_sum(tf.matmul(g, w, transpose_b=True))  # d input
            total += tf.reduce_sum(tf.matmul(x, g, transpose_a=True))  # d kernel
        return total

    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run().numpy()
    seconds = (time.perf_counter() - start) / repeats
    return step_flops(shapes, batch) / seconds


def step_flops(shapes, batch):
    return sum(3 * 2 * batch * fan_in * fan_out for fan_in, fan_out in shapes)


def timed_fit(model, x, batch):
    """(examples per wall second, CPU seconds per wall second) of one epoch."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(x, batch_size=batch, epochs=1, verbose=0, shuffle=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(x) / wall, cpu / wall


def variants(layers, strategy):
    """name -> a compiled model."""

    def compiled(model, steps_per_execution=1, **kwargs):
        # One step per execution (Keras' default) unless named: the
        # comparisons with the reference are at the same settings.
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            steps_per_execution=steps_per_execution,
            **kwargs,
        )
        return model

    keras.utils.set_random_seed(0)
    models = {
        "reference": compiled(Reference(layers)),
        "tfvae": compiled(tfvae_model(layers)),
        "tfvae xla": compiled(tfvae_model(layers), jit_compile=True),
        "tfvae steps_per_execution=10": compiled(
            tfvae_model(layers), steps_per_execution=10
        ),
    }
    with strategy.scope():
        models["tfvae 2 replicas"] = compiled(tfvae_model(layers))
    return models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--models", nargs="+", default=["vae", "hvae"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args(argv)

    x, source = load_data(args.examples)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    strategy = tf.distribute.MirroredStrategy(devices)
    print(
        f"data: {source}, {len(x)} examples per run; {args.rounds} rounds; "
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; tensorflow "
        f"{tf.__version__}, keras {keras.__version__}, tfvae {tfvae.__version__}"
    )
    for kind in args.models:
        layers = 1 if kind == "vae" else 2
        models = variants(layers, strategy)
        shapes = dense_shapes(models["tfvae"])
        for batch in args.batch_sizes:
            for model in models.values():
                timed_fit(model, x[: 10 * batch], batch)  # warm-up and trace
            runs = {name: [] for name in models}
            cpu = {name: [] for name in models}
            rates = []
            for _ in range(args.rounds):
                for name, model in models.items():
                    speed, load = timed_fit(model, x, batch)
                    runs[name].append(speed)
                    cpu[name].append(load)
                rates.append(matmul_rate(shapes, batch))
            median = {name: statistics.median(v) for name, v in runs.items()}
            matmul = statistics.median(rates)
            print(f"\n{kind}, batch {batch}:")
            print(
                f"  {'variant':<30} {'examples/s':>10} {'vs tfvae':>9} "
                f"{'CPU s/s':>8} {'of matmul':>9}"
            )
            for name in models:
                achieved = median[name] / batch * step_flops(shapes, batch)
                print(
                    f"  {name:<30} {median[name]:>10.0f} "
                    f"{median[name] / median['tfvae']:>9.3f} "
                    f"{statistics.median(cpu[name]):>8.2f} "
                    f"{achieved / matmul:>9.3f}"
                )
            print(
                f"  dense matmuls alone at these shapes: {matmul / 1e9:.1f} GFLOP/s; "
                f"tfvae/reference per round: "
                + ", ".join(
                    f"{t / r:.3f}"
                    for t, r in zip(runs["tfvae"], runs["reference"], strict=True)
                )
            )


if __name__ == "__main__":
    main()
