"""Training throughput of each prior against N(0, I), on the presets' architectures.

The models are those of the zoo's static-MNIST presets: the one-layer VAE
(784-300-300-40, gated linear layers) and the two-layer HVAE of
`hvae2_vampprior_bmnist` (40, 40; 300-300 per layer; top-down inference and
skip connections, `inference="top_down", skip=True`), Bernoulli decoder, the
IWAE bound with K = 5, Adam, batch 100, tfvae's default of 10 steps per
execution. For each architecture the same network is trained with each prior,
in the same process: after one warm-up epoch each, runs alternate (N(0, I),
then each prior, round after round), so that load on a shared machine hits all
alike. The figure reported for a prior is the median of its per-round ratios
(its throughput over N(0, I)'s in the same round), by the wall clock and by
the process's CPU time (which a machine that stalls the process, as these
shared ones sometimes do for seconds, does not inflate).

Usage:
    TFVAE_DATA_DIR=../shared/data python benchmarks/prior_throughput.py
    python benchmarks/prior_throughput.py --rounds 3 --examples 5000 --models vae
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from train_throughput import load_data  # noqa: E402

import tfvae  # noqa: E402

PRIORS = ("standard_normal", "mog:10", "mog:500", "vamp:500")
COMMON = dict(
    input_shape=(784,),
    activation="linear",
    gated=True,
    objective="iwae",
    num_samples=5,
    seed=0,
)


def build(kind, prior):
    """The preset architecture `kind` ("vae" or "hvae") with `prior`."""
    if kind == "vae":
        kl = "analytic" if prior == "standard_normal" else "mc"
        return tfvae.VAE(
            latent_dim=40, hidden_units=(300, 300), prior=prior, kl=kl, **COMMON
        )
    return tfvae.HierarchicalVAE(
        latent_dims=(40, 40),
        hidden_units=((300, 300), (300, 300)),
        inference="top_down",
        skip=True,
        prior=prior,
        **COMMON,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--models", default="vae,hvae", help="vae, hvae or both")
    args = parser.parse_args(argv)

    x, source = load_data(args.examples)
    print(
        f"data: {source}, {len(x)} examples; batch 100; IWAE K = 5; "
        f"{args.rounds} rounds"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; "
        f"tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"tfvae {tfvae.__version__}"
    )
    for kind in args.models.split(","):
        keras.utils.set_random_seed(0)
        models = {prior: build(kind, prior) for prior in PRIORS}
        for model in models.values():
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
            model.fit(x, batch_size=100, epochs=1, verbose=0)  # warm-up, trace
        throughput = {prior: [] for prior in PRIORS}
        cpu = {prior: [] for prior in PRIORS}
        for _ in range(args.rounds):
            for prior, model in models.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                model.fit(x, batch_size=100, epochs=1, verbose=0)
                throughput[prior].append(len(x) / (time.perf_counter() - start))
                cpu[prior].append(len(x) / (time.process_time() - start_cpu))
        for clock, rates in (("wall-clock", throughput), ("CPU-time", cpu)):
            print(f"\n{kind}, {clock}: examples/s (median of rounds), ratio to N(0, I)")
            reference = rates["standard_normal"]
            for prior, values in rates.items():
                ratios = [v / r for v, r in zip(values, reference, strict=True)]
                print(
                    f"  {prior:>15}: {statistics.median(values):7.0f} examples/s  "
                    f"ratio {statistics.median(ratios):.3f}  "
                    f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
                )


if __name__ == "__main__":
    main()
