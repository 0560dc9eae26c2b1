"""tf.distribute, mixed precision, XLA and divergence: the custom steps hold up."""

import functools
import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import tfvae

X = (np.random.default_rng(0).random((200, 12)) < 0.3).astype("float32")
MODELS = {
    "vae": lambda **kw: tfvae.VAE(
        input_shape=(12,), latent_dim=3, hidden_units=(8,), seed=5, **kw
    ),
    "hvae": lambda **kw: tfvae.HierarchicalVAE(
        input_shape=(12,), latent_dims=(4, 2), hidden_units=((8,), (6,)), seed=5, **kw
    ),
    # Ladder inference and gated layers, the architecture of a zoo preset.
    "ladder": lambda **kw: tfvae.HierarchicalVAE(
        input_shape=(12,),
        latent_dims=(4, 2),
        hidden_units=((8,), (6,)),
        inference="ladder",
        gated=True,
        seed=5,
        **kw,
    ),
    # Learned priors: the VampPrior runs the encoder on its pseudo-inputs.
    "vamp": lambda **kw: tfvae.VAE(
        input_shape=(12,),
        latent_dim=3,
        hidden_units=(8,),
        prior="vamp:4",
        kl="mc",
        seed=5,
        **kw,
    ),
    "ladder_vamp": lambda **kw: tfvae.HierarchicalVAE(
        input_shape=(12,),
        latent_dims=(4, 2),
        hidden_units=((8,), (6,)),
        inference="ladder",
        prior="vamp:4",
        seed=5,
        **kw,
    ),
    "mog": lambda **kw: tfvae.VAE(
        input_shape=(12,),
        latent_dim=3,
        hidden_units=(8,),
        prior="mog:3",
        kl="mc",
        seed=5,
        **kw,
    ),
}
# The model kinds the steps are checked on.
KINDS = ["vae", "hvae", "ladder", "vamp", "ladder_vamp", "mog"]


@functools.cache
def mirrored():
    """One strategy for the whole session: several in one process can clash."""
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest.py sets up two logical CPU devices"
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


def build(kind, optimizer="sgd", **kwargs):
    keras.utils.set_random_seed(1)
    model = MODELS[kind](**kwargs)
    if optimizer == "sgd":
        optimizer = keras.optimizers.SGD(0.1)
    model.compile(optimizer=optimizer)
    return model


def trainable(model):
    return [w.numpy() for w in model.trainable_weights]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_mirrored_step_equals_the_single_device_step(kind, objective):
    """2 replicas of a global batch of 200 update the weights as 1 device does.

    A loss averaged per replica and then summed over replicas would double the
    update; noise shared between replicas would change it.
    """
    kwargs = {"objective": objective, "num_samples": 3 if objective == "iwae" else 1}
    single = build(kind, **kwargs)
    before = trainable(single)
    single_history = single.fit(X, batch_size=200, epochs=1, verbose=0, shuffle=False)
    with mirrored().scope():
        replicated = build(kind, **kwargs)
    for weight, value in zip(replicated.trainable_weights, before, strict=True):
        weight.assign(value)
    history = replicated.fit(X, batch_size=200, epochs=1, verbose=0, shuffle=False)
    largest = 0.0
    for a, b, w0 in zip(trainable(single), trainable(replicated), before, strict=True):
        np.testing.assert_allclose(b - w0, a - w0, rtol=1e-4, atol=1e-6)
        largest = max(largest, float(np.abs(a - w0).max()))
    assert largest > 1e-3, "the step must move the weights for the check to mean much"
    for name in ("loss", "elbo", "kl"):
        np.testing.assert_allclose(
            history.history[name], single_history.history[name], rtol=1e-5
        )


def test_mirrored_skips_the_step_one_device_skips():
    """`compile(skip_threshold=)`: the norm is that of the global update, so
    2 replicas skip the outlier batch that 1 device skips, and no other."""
    weights = np.ones(len(X), "float32")
    weights[100:150] = 1e6  # batch 2 of 4: its gradient is 1e6 times larger
    results = []
    for scope in (tf.distribute.get_strategy().scope(), mirrored().scope()):
        with scope:
            model = build("ladder", optimizer=keras.optimizers.SGD(0.1))
            model.compile(optimizer=model.optimizer, skip_threshold=1e4)
        if results:  # the same starting weights
            for weight, value in zip(
                model.trainable_weights, results[0][2], strict=True
            ):
                weight.assign(value)
        before = trainable(model)
        history = model.fit(
            X, sample_weight=weights, batch_size=50, verbose=0, shuffle=False
        ).history
        results.append((history, trainable(model), before))
    (one, one_weights, start), (two, two_weights, _) = results
    assert one["skipped"] == two["skipped"] == [1.0]
    np.testing.assert_allclose(two["grad_norm"], one["grad_norm"], rtol=1e-5)
    for a, b, w0 in zip(one_weights, two_weights, start, strict=True):
        np.testing.assert_allclose(b - w0, a - w0, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["vae", "hvae", "ladder", "vamp"])
def test_mirrored_fit_evaluate_log_likelihood_and_save(kind, tmp_path):
    with mirrored().scope():
        model = build(kind, optimizer="adam")
        history = model.fit(
            X, batch_size=50, epochs=2, validation_data=X[:100], verbose=0
        )
        metrics = model.evaluate(X, batch_size=100, return_dict=True, verbose=0)
        log_px = model.log_likelihood(X[:20], num_samples=50, seed=0)
        model.save(tmp_path / "m.keras")
    assert np.isfinite(history.history["val_elbo"]).all()
    assert np.isfinite(metrics["elbo"]) and metrics["kl"] > 0
    assert log_px.shape == (20,) and np.isfinite(log_px).all()
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(
        restored.log_likelihood(X[:20], num_samples=50, seed=0), log_px, rtol=1e-5
    )
    np.testing.assert_allclose(
        restored.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-5
    )


@pytest.fixture
def policy():
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("kind", ["vae", "hvae", "ladder", "vamp", "mog"])
@pytest.mark.parametrize("name", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_float32_distributions(kind, name, policy):
    policy(name)
    model = build(kind, optimizer=keras.optimizers.Adam(1e-2))
    if name == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    compute = {layer.compute_dtype for layer in model._flatten_layers()}
    assert name.removeprefix("mixed_") in compute  # the networks run in low precision
    before = float(ops.mean(model.elbo(X, num_samples=10, seed=0)))
    history = model.fit(X, batch_size=50, epochs=10, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = float(ops.mean(model.elbo(X, num_samples=10, seed=0)))
    assert after > before + 0.5, (before, after)  # it learns
    q = model.encode(X[:4])[0]
    assert q.dtype == tf.float32
    z = q.sample(seed=0)
    p = model.decode(z)
    assert p.dtype == tf.float32 and p.log_prob(X[:4]).dtype == tf.float32
    assert model.elbo(X[:4]).dtype == tf.float32
    for weight in model.trainable_weights:
        assert weight.dtype == "float32"  # float32 master weights


@pytest.mark.parametrize("kind", KINDS)
def test_xla_step_equals_the_default_step(kind):
    default = build(kind)
    before = trainable(default)
    default.fit(X, batch_size=100, epochs=2, verbose=0, shuffle=False)
    xla = build(kind)
    xla.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
    for weight, value in zip(xla.trainable_weights, before, strict=True):
        weight.assign(value)
    history = xla.fit(X, batch_size=100, epochs=2, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    for a, b in zip(trainable(default), trainable(xla), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["vae", "hvae"])
def test_a_diverged_step_stops_training_before_its_update(kind):
    model = build(kind)
    model.fit(X, batch_size=100, epochs=1, verbose=0)  # steps 1 and 2
    # A NaN bias of the likelihood head makes the next step's loss NaN.
    bias = model.likelihood.trainable_weights[-1]
    assert bias.path.endswith("bias")
    bias.assign(np.full(bias.shape, np.nan, "float32"))
    before = trainable(model)
    with pytest.raises(
        FloatingPointError, match=r"training stopped at step 3: `loss` is nan"
    ):
        model.fit(X, batch_size=100, epochs=1, verbose=0)
    for a, b in zip(trainable(model), before, strict=True):
        np.testing.assert_array_equal(a, b)  # no update was applied
    assert int(model.optimizer.iterations.numpy()) == 2


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_huge_learning_rate_is_reported_not_silent(jit_compile):
    model = build("vae")
    model.compile(optimizer=keras.optimizers.SGD(1e12), jit_compile=jit_compile)
    with pytest.raises(
        FloatingPointError, match=r"training stopped at step \d+: `\w+` is"
    ):
        model.fit(X, batch_size=20, epochs=20, verbose=0)
    if not jit_compile:  # checked in the step, before its update
        assert all(np.isfinite(w).all() for w in trainable(model))


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.parametrize("prior", ["standard_normal", "vamp:4"])
def test_multi_worker_training_on_two_local_processes(prior, tmp_path):
    """Two workers on 127.0.0.1 train to the same weights; the chief writes."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    script = os.path.join(os.path.dirname(__file__), "multiworker_task.py")
    workers = []
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(config),
            "CUDA_VISIBLE_DEVICES": "",
        }
        workers.append(
            subprocess.Popen(
                [sys.executable, script, str(tmp_path), prior],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=300)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:  # a worker that hangs: stop them all
                worker.kill()
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
    results = [json.loads((tmp_path / f"result-{i}.json").read_text()) for i in (0, 1)]
    weights = [np.load(tmp_path / f"weights-{i}.npz") for i in (0, 1)]
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
    # 400 examples in global batches of 40 (20 per worker), 2 epochs.
    assert [r["steps"] for r in results] == [20, 20]
    assert results[0]["moved"] > 1e-2
    assert [r["chief"] for r in results] == [True, False]
    # The chief alone wrote the backups, the history and the export.
    assert results[0]["backup_seen"] == [True, True]
    assert results[1]["backup_seen"] == [False, False]
    assert results[0]["exported"] == str(tmp_path / "worker-0" / "export" / "1")
    assert results[1]["exported"] is None
    assert sorted(os.listdir(tmp_path / "worker-0")) == ["export", "history.json"]
    assert not (tmp_path / "worker-1").exists()
    # The export holds the trained weights.
    model = tfvae.VAE(
        input_shape=(12,),
        latent_dim=3,
        hidden_units=(8,),
        prior=prior,
        kl="analytic" if prior == "standard_normal" else "mc",
    )
    for weight, name in zip(model.trainable_weights, weights[0].files, strict=True):
        weight.assign(weights[0][name])
    served = tf.saved_model.load(results[0]["exported"])
    np.testing.assert_allclose(
        served.signatures["serving_default"](x=tf.constant(X[:5]))["reconstruction"],
        model.predict(X[:5], verbose=0),
        rtol=1e-5,
    )
