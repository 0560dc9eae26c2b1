"""Where the idle CPU time of `fit` goes: threads, steps per execution, batch.

TensorFlow's thread pools are fixed when it starts, so each configuration runs
in a child process of its own (this script, with --child). The parent starts
the configurations in turn, round after round, so that load on a shared
machine hits them alike, and prints the median examples per wall second and
CPU seconds per wall second (2.0 = both cores busy) of each: the
784-200-200-50 tanh Bernoulli VAE on binarized MNIST, Adam, one epoch of
--examples examples per measurement, after a warm-up epoch.

Usage:
    TFVAE_DATA_DIR=../shared/data python benchmarks/threads.py
    python benchmarks/threads.py --rounds 3 --examples 10000
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# name -> (environment, steps_per_execution, batch size). Keras' default is one
# step per execution; tfvae's `compile` defaults to 10.
ONE_THREAD_POOLS = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2"}
CONFIGS = {
    "1 step/execution (Keras)": ({}, 1, 100),
    "intra-op 2, inter-op 1": (
        {"TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "1"},
        1,
        100,
    ),
    "intra-op 1, inter-op 2": (ONE_THREAD_POOLS, 1, 100),
    "intra-op 1, inter-op 1": (
        {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"},
        1,
        100,
    ),
    "oneDNN off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, 1, 100),
    "10 steps (tfvae default)": ({}, 10, 100),
    "10 steps, intra 1 inter 2": (ONE_THREAD_POOLS, 10, 100),
    "10 steps, oneDNN off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, 10, 100),
    "50 steps/execution": ({}, 50, 100),
    "batch 1000, 1 step": ({}, 1, 1000),
    "batch 1000, 10 steps": ({}, 10, 1000),
    "batch 1000, 10, intra 1": (ONE_THREAD_POOLS, 10, 1000),
}


def child(examples, steps_per_execution, batch):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from train_throughput import load_data

    import tfvae

    x, _ = load_data(examples)
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(
        input_shape=(784,),
        latent_dim=50,
        hidden_units=(200, 200),
        activation="tanh",
        seed=0,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        steps_per_execution=steps_per_execution,
    )
    model.fit(x, batch_size=batch, epochs=1, verbose=0)  # warm-up, trace
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(x, batch_size=batch, epochs=1, verbose=0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    threads = (
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    )
    print(json.dumps({"speed": len(x) / wall, "cpu": cpu / wall, "threads": threads}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=list(CONFIGS),
        default=list(CONFIGS),
        help="the configurations to run (all by default; the first is the baseline)",
        metavar="NAME",
    )
    parser.add_argument("--child", nargs=2, type=int, metavar=("SPE", "BATCH"))
    args = parser.parse_args(argv)
    if args.child:
        return child(args.examples, *args.child)

    results = {name: [] for name in args.configs}
    for _ in range(args.rounds):
        for name in args.configs:
            env, steps, batch = CONFIGS[name]
            output = subprocess.run(
                [sys.executable, __file__, "--examples", str(args.examples)]
                + ["--child", str(steps), str(batch)],
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[name].append(json.loads(output.strip().splitlines()[-1]))
    print(
        f"784-200-200-50 tanh Bernoulli VAE, Adam; {args.examples} examples per "
        f"run; median of {args.rounds} rounds; {os.cpu_count()} CPUs"
    )
    base = statistics.median(r["speed"] for r in results[args.configs[0]])
    print(f"{'configuration':<26} {'examples/s':>10} {'vs first':>10} {'CPU s/s':>8}")
    for name, runs in results.items():
        speed = statistics.median(r["speed"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(f"{name:<26} {speed:>10.0f} {speed / base:>10.3f} {cpu:>8.2f}")


if __name__ == "__main__":
    main()
