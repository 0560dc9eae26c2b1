"""Importance-sampled log-likelihood: the encoder as a certificate of fit.

With the inference network as proposal, the marginal likelihood of a trained
generative model can be estimated by anyone, whatever its ELBO:

    log p(x) ~= log (1/K) sum_k p(x, z_k) / q(z_k | x),   z_k ~ q(z | x).

For `tfvae.HierarchicalVAE`, z_k is a whole ancestral sample of the chain
z_1..z_L and p, q are the joint densities. The estimate is the K-sample
importance-weighted bound (IWAE) of Burda et al. (2015): it never exceeds
log p(x) on average and converges to it as K grows. Published VAE results
report it with K = 5000 on the test set.

Computation is chunked over examples (one call of a compiled function per
chunk) and, inside a call, over blocks of samples evaluated one after the
other, each within a memory budget. The noise of sample k of example i is a
fixed function of `(seed, i, k)`, so the estimate does not depend on the
chunking (or on `batch_size`); blocks are combined with log-sum-exp in float32.

An evaluation that takes hours (a convolutional decoder, K = 5000, 10,000
test images) can keep its partial results in a progress file
(`progress=`): the values of the examples done so far, written atomically
every `_PROGRESS_SECONDS` and at the end. Run again with the same file, it
goes on from there; since the noise of each example is fixed by its index,
the merged result is bit-identical to that of an uninterrupted run.
"""

import hashlib
import json
import math
import os
import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from tfvae import _checks, _files
from tfvae import noise as noise_lib

__all__ = [
    "evaluate_log_likelihood",
    "bits_per_dim",
    "log_sum_exp_weights",
    "log_weights",
    "summarize",
    "thread_settings",
    "use_evaluation_threads",
]

DEFAULT_MEMORY_BUDGET = 256 * 2**20

# How often a progress file is rewritten during an evaluation, in seconds.
_PROGRESS_SECONDS = 30.0
_PROGRESS_KIND = "tfvae log-likelihood progress"


_THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def use_evaluation_threads():
    """Sets TensorFlow's CPU thread pools for `log_likelihood`; True if it did.

    One intra-op thread, and one inter-op thread per core this process may
    run on: each block of samples then runs its ops on one core, and blocks
    run side by side, one per core. On the 2-core development machine this
    made the estimator about 1.2 times faster than TensorFlow's default pools,
    which split every op of every block across all cores
    (`benchmarks/log_likelihood_throughput.py`, see BENCHMARKS.md). Training,
    whose steps run one after the other, is better served by the defaults.

    TensorFlow fixes its thread pools when it runs its first op, so call this
    first thing in a process that evaluates. It changes nothing, and returns
    False, where `TF_NUM_INTRAOP_THREADS` or `TF_NUM_INTEROP_THREADS` is set
    (your settings win) or TensorFlow has already started. `tfvae evaluate`,
    `tfvae zoo verify` and `tfvae zoo publish` call it.
    """
    if any(os.environ.get(name) for name in _THREAD_VARIABLES):
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(cores)
    except RuntimeError:  # TensorFlow has started: its pools are fixed.
        return False
    return True


def thread_settings():
    """TensorFlow's intra- and inter-op pool sizes (0: its own choice)."""
    threading = tf.config.threading
    return {
        "intra_op": threading.get_intra_op_parallelism_threads(),
        "inter_op": threading.get_inter_op_parallelism_threads(),
    }


def log_weights(
    model, x, example_index, first_sample, seed, num_samples, prepared=None
):
    """log p(x, z) - log q(z|x) of samples first .. first + num_samples - 1.

    The noise is `tfvae.noise.counter_normal` keyed by (seed, example_index,
    sample); returns a (num_samples, batch) tensor. `prepared` is
    `model.prepare(x)`, or None.
    """
    noise = noise_lib.counter_normal(
        seed, example_index, first_sample, num_samples, sum(model.latent_dims)
    )
    return model.log_weights(
        x, noise_lib.split(noise, model.latent_dims), prepared=prepared
    )


# Example-sample pairs evaluated at once inside a call: few enough that a
# block's activations stay in the CPU caches, enough for efficient matmuls.
_BLOCK_PAIRS = 1024
# Pairs per call of the compiled function, which amortizes the per-call cost
# and the start and end of its loop, where fewer blocks can run side by side.
_CALL_PAIRS = 131072


def parallel_blocks():
    """Blocks evaluated side by side at most: TensorFlow's default for a loop
    (10), or more where there are more inter-op threads to run them."""
    return max(10, thread_settings()["inter_op"])


def log_sum_exp_weights(
    model, x, example_index, seed, num_samples, block, parallel_iterations=10
):
    """(logsumexp, sum) over samples 0 .. K-1 of each example's log-weights.

    The one importance-sampling loop: the estimator (`log_likelihood`) and the
    exported `log_likelihood` signature both run it. The K samples of each
    example are evaluated in blocks of `block` samples in a `tf.while_loop`,
    whose iterations TensorFlow runs side by side (up to
    `parallel_iterations`; memory holds the activations of those blocks
    only), and combined with log-sum-exp. What depends on x only
    (`model.prepare`) is computed once, before the loop.

    Args:
        model: a `tfvae.latent.LatentVariableModel`.
        x: a (B, *input_shape) float32 batch (or the structure of the
            model's inputs, `model.check_inputs` of a batch).
        example_index: (B,) int indices keying each example's noise.
        seed: an int64 scalar.
        num_samples: K, a Python int or an int32 scalar tensor (as in a
            SavedModel signature: the last block is then evaluated whole and
            its samples past K are left out).
        block: samples per block, a Python int.
        parallel_iterations: blocks evaluated side by side at most.

    Returns:
        Two (B,) float32 tensors: logsumexp_k log w_k and sum_k log w_k.
    """
    prepared = model.prepare(x)
    batch = tf.shape(tf.nest.flatten(x)[0])[0]

    def evaluate(first, count, valid=None):
        log_w = log_weights(
            model, x, example_index, first, seed, count, prepared=prepared
        )
        if valid is None:
            return tf.reduce_logsumexp(log_w, axis=0), tf.reduce_sum(log_w, axis=0)
        valid = valid[:, None]
        return (
            tf.reduce_logsumexp(tf.where(valid, log_w, -math.inf), axis=0),
            tf.reduce_sum(tf.where(valid, log_w, 0.0), axis=0),
        )

    def add(state, block_state):
        (lse, total), (block_lse, block_sum) = state, block_state
        return tf.reduce_logsumexp(tf.stack([lse, block_lse]), axis=0), (
            total + block_sum
        )

    full = num_samples // block
    state = (tf.fill([batch], -math.inf), tf.zeros([batch]))
    state = tf.while_loop(
        lambda i, lse, total: i < full,
        lambda i, lse, total: (
            i + 1,
            *add((lse, total), evaluate(i * block, block)),
        ),
        (tf.constant(0), *state),
        parallel_iterations=parallel_iterations,
    )[1:]
    first = full * block
    if isinstance(num_samples, int):
        if num_samples > first:
            state = add(state, evaluate(first, num_samples - first))
    else:
        valid = first + tf.range(block) < num_samples
        state = add(state, evaluate(first, block, valid))
    return tuple(state)


def compiled_chunk(model):
    """`log_sum_exp_weights` compiled: (x, example_index, seed, K, block)."""
    parallel = parallel_blocks()

    def chunk(x, example_index, seed, num_samples, block):
        return log_sum_exp_weights(
            model, x, example_index, seed, num_samples, block, parallel
        )

    return tf.function(chunk, reduce_retracing=True)


# Each model's compiled chunk function, kept as long as the model lives.
_CHUNK_FUNCTIONS = weakref.WeakKeyDictionary()


def chunk_sizes(model, num_examples, num_samples, batch_size, memory_budget):
    """(examples per call, samples per block) within the memory budget.

    A call evaluates all `num_samples` samples of its examples, a block of
    samples at a time; a block of examples x samples pairs stays within
    `memory_budget` and `_BLOCK_PAIRS`.
    """
    pairs = max(1, memory_budget // (4 * model.floats_per_sample()))
    if batch_size is None:
        examples = max(1, min(_CALL_PAIRS // num_samples, pairs))
    else:
        examples = batch_size
    examples = min(examples, num_examples)
    block = min(num_samples, max(1, min(pairs, _BLOCK_PAIRS) // examples))
    return examples, block


def log_likelihood(
    model,
    x,
    num_samples=5000,
    batch_size=None,
    seed=None,
    memory_budget=DEFAULT_MEMORY_BUDGET,
    verbose="auto",
    return_elbo=False,
    progress=None,
):
    """Importance-sampled log p(x) of each example; see `VAE.log_likelihood`.

    `progress`: None, or the path of a JSON file that keeps the results of
    the examples done so far (see the module docstring); it needs an integer
    `seed`. A file of another evaluation (other data, weights, K, seed or
    chunking) is refused, not overwritten.
    """
    num_samples = _checks.positive_int(num_samples, "num_samples")
    if batch_size is not None:
        batch_size = _checks.positive_int(batch_size, "batch_size")
    memory_budget = _checks.positive_int(memory_budget, "memory_budget")
    _checks.one_of(verbose, "verbose", ("auto", 0, 1, True, False))
    arrays = model.as_arrays(x)
    model.check_data(arrays)
    if progress is not None and not isinstance(seed, int):
        raise ValueError(
            "an evaluation with a progress file needs an integer seed, so that "
            f"a resumed run draws the same samples. Received: seed={seed!r}"
        )
    if seed is None:
        seed = int(keras.random.randint((), 0, 2**31 - 1, seed=model.seed_generator))
    num_examples = len(tf.nest.flatten(arrays)[0])
    examples, block = chunk_sizes(
        model, num_examples, num_samples, batch_size, memory_budget
    )
    done = {"log_likelihood": [], "elbo": []}
    if progress is not None:
        fingerprint = _fingerprint(model, arrays, num_samples, seed, examples, block)
        done = _read_progress(progress, fingerprint)
    seed = tf.constant(seed, dtype=tf.int64)
    if verbose == "auto":
        verbose = num_examples * num_samples >= 10**6
    bar = keras.utils.Progbar(num_examples, unit_name="example") if verbose else None
    chunk = _CHUNK_FUNCTIONS.get(model)
    if chunk is None:
        chunk = _CHUNK_FUNCTIONS[model] = compiled_chunk(model)

    log_likelihoods = [np.asarray(done["log_likelihood"], np.float32)]
    elbos = [np.asarray(done["elbo"], np.float32)]
    first = len(log_likelihoods[0])
    if bar is not None and first:
        bar.add(first)
    saved = time.monotonic()
    for start in range(first, num_examples, examples):
        part = examples_between(arrays, start, start + examples)
        count = len(tf.nest.flatten(part)[0])
        index = tf.range(start, start + count)
        x_chunk = model.check_inputs(part, values=False)  # checked in full above
        lse, total = chunk(x_chunk, index, seed, num_samples, block)
        log_likelihoods.append(lse.numpy() - math.log(num_samples))
        elbos.append(total.numpy() / num_samples)
        if bar is not None:
            bar.add(count)
        last = start + count >= num_examples
        if progress is not None and (
            last or time.monotonic() - saved >= _PROGRESS_SECONDS
        ):
            _write_progress(progress, fingerprint, log_likelihoods, elbos)
            saved = time.monotonic()
    result = np.concatenate(log_likelihoods)
    if return_elbo:
        return result, np.concatenate(elbos)
    return result


def _fingerprint(model, arrays, num_samples, seed, examples, block):
    """What makes an evaluation's values what they are: data, weights, K, seed."""
    data = hashlib.sha256()
    for array in tf.nest.flatten(arrays):
        data.update(np.ascontiguousarray(array, np.float32).tobytes())
    weights = hashlib.sha256()
    for weight in model.weights:
        weights.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return {
        "num_examples": len(tf.nest.flatten(arrays)[0]),
        "data_sha256": data.hexdigest(),
        "weights_sha256": weights.hexdigest(),
        "num_samples": num_samples,
        "seed": seed,
        "examples_per_call": examples,
        "samples_per_block": block,
    }


def _read_progress(path, fingerprint):
    """The values a progress file holds, or none for a file not yet written."""
    if not os.path.exists(path):
        return {"log_likelihood": [], "elbo": []}
    try:
        with open(path) as file:
            saved = json.load(file)
        kind, theirs = saved["kind"], saved["fingerprint"]
        values = {name: saved[name] for name in ("log_likelihood", "elbo")}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"the progress file {path} cannot be read as one ({error}); remove "
            "it, or choose another path"
        ) from None
    if kind != _PROGRESS_KIND or theirs != fingerprint:
        different = sorted(k for k in fingerprint if theirs.get(k) != fingerprint[k])
        raise ValueError(
            f"the progress file {path} belongs to another evaluation (it differs "
            f"in {', '.join(different) or 'kind'}); remove it, or choose another "
            "path"
        )
    return values


def _write_progress(path, fingerprint, log_likelihoods, elbos):
    _files.write_json(
        path,
        {
            "kind": _PROGRESS_KIND,
            "fingerprint": fingerprint,
            "log_likelihood": np.concatenate(log_likelihoods).tolist(),
            "elbo": np.concatenate(elbos).tolist(),
        },
    )


def examples_between(arrays, start, stop):
    """Examples start .. stop - 1 of an array, or of each array of a structure."""
    return tf.nest.map_structure(lambda a: a[start:stop], arrays)


def evaluate_log_likelihood(
    model,
    data,
    num_samples=5000,
    batch_size=None,
    seed=None,
    verbose="auto",
    progress=None,
):
    """Mean log-likelihood of a data set with its standard error, and its ELBO.

    The certificate of fit for a model card: the importance-sampled estimate of
    `model.log_likelihood` for every example, averaged, with the standard
    error of that mean over examples, and the ELBO estimated from the same
    samples (the mean of the log-weights).

    Args:
        model: a `tfvae.VAE` or `tfvae.HierarchicalVAE`.
        data: an array of examples, shape (n, *input_shape).
        num_samples: K, importance samples per example (papers use 5000).
        batch_size, seed, verbose: as for `model.log_likelihood`.
        progress: None, or a file that keeps the partial results (see
            `log_likelihood`).

    Returns:
        A dict of floats (nats per example): `log_likelihood` (mean),
        `log_likelihood_stderr`, `nll` (= -log_likelihood), `elbo` (mean),
        `elbo_stderr`, plus `num_samples` and `num_examples`.

    Example:

    ```python
    result = tfvae.evaluate_log_likelihood(model, x_test, num_samples=5000)
    print(f"test NLL {result['nll']:.2f} +- {result['log_likelihood_stderr']:.2f}")
    ```
    """
    values, elbo = log_likelihood(
        model,
        data,
        num_samples=num_samples,
        batch_size=batch_size,
        seed=seed,
        verbose=verbose,
        return_elbo=True,
        progress=progress,
    )

    return summarize(values, elbo, num_samples)


def summarize(log_likelihoods, elbos, num_samples):
    """The dict of `evaluate_log_likelihood` from per-example values.

    Args:
        log_likelihoods, elbos: numpy arrays of shape (n,), the per-example
            estimates of `log_likelihood(..., return_elbo=True)`.
        num_samples: the K they were estimated with.
    """

    def stderr(v):
        return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")

    return {
        "log_likelihood": float(log_likelihoods.mean()),
        "log_likelihood_stderr": stderr(log_likelihoods),
        "nll": float(-log_likelihoods.mean()),
        "elbo": float(elbos.mean()),
        "elbo_stderr": stderr(elbos),
        "num_samples": num_samples,
        "num_examples": len(log_likelihoods),
    }


def bits_per_dim(log_likelihood_nats, input_shape, levels=None):
    """Negative log-likelihood in bits per data dimension.

    bits/dim = -log p(x) / (D * ln 2), with D = prod(input_shape). For
    continuous data, the log-likelihood must be that of the discrete data, or
    the figure is meaningless: with `levels=L`, `log_likelihood_nats` is the
    log-density of uniformly dequantized data (`tfvae.data.uniform_dequantize`), and
    the result is that of the discrete data it bounds,
    -(log p(x) - D log L) / (D * ln 2).
    """
    dims = math.prod(_checks.shape_tuple(input_shape, "input_shape"))
    log_likelihood_nats = np.asarray(log_likelihood_nats)
    if levels is not None:
        levels = _checks.positive_int(levels, "levels", minimum=2)
        log_likelihood_nats = log_likelihood_nats - dims * math.log(levels)
    return -log_likelihood_nats / (dims * math.log(2.0))
