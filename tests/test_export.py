"""The SavedModel serving contract: every signature, in a TensorFlow-only process."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import heads

RNG = np.random.default_rng(6)
X_BIN = (RNG.random((7, 12)) < 0.3).astype("float32")
SIGNATURES = ["serving_default", "encode", "decode", "sample", "elbo", "log_likelihood"]

# Runs in a fresh process: imports tensorflow and numpy only, loads the export,
# calls every signature and saves what they return.
SERVE_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf

before = set(sys.modules)
path, inputs_path, outputs_path = sys.argv[1:]
loaded = tf.saved_model.load(path)
inputs = np.load(inputs_path)
calls = {
    "serving_default": {"x": inputs["x"]},
    "encode": {"x": inputs["x"]},
    "decode": {"z": inputs["z"]},
    "sample": {"num_samples": np.int32(5), "seed": np.int32(11)},
    "elbo": {"x": inputs["x"]},
    "log_likelihood": {"x": inputs["x"], "num_samples": np.int32(70)},
}
outputs = {}
for name, arguments in calls.items():
    tensors = {key: tf.constant(value) for key, value in arguments.items()}
    result = loaded.signatures[name](**tensors)
    outputs.update({f"{name}/{key}": value.numpy() for key, value in result.items()})
np.savez(outputs_path, **outputs)
new = sorted(set(sys.modules) - before)
print(json.dumps({"new_modules": new, "type": type(loaded).__name__}))
"""


def vae():
    return tfvae.VAE(input_shape=(12,), latent_dim=3, hidden_units=(8,), seed=0)


def hvae(inference="bottom_up"):
    return tfvae.HierarchicalVAE(
        input_shape=(12,),
        latent_dims=(4, 2),
        hidden_units=((8,), (6,)),
        likelihood=heads.GaussianHead(scale="shared"),
        inference=inference,
        seed=0,
    )


def hvae_ladder():
    return hvae(inference="ladder")


def vae_vamp():
    return tfvae.VAE(
        input_shape=(12,), latent_dim=3, hidden_units=(8,), prior="vamp:4", kl="mc"
    )


def hvae_ladder_vamp():
    return tfvae.HierarchicalVAE(
        input_shape=(12,),
        latent_dims=(4, 2),
        hidden_units=((8,), (6,)),
        inference="ladder",
        prior="vamp:4",
        seed=0,
    )


MODELS = {
    "vae": vae,
    "hvae": hvae,
    "hvae_ladder": hvae_ladder,
    # The VampPrior's mixture: log p(z) and ancestral draws, served without TFP.
    "vae_vamp": vae_vamp,
    "hvae_ladder_vamp": hvae_ladder_vamp,
}


def expected_outputs(model, x, z):
    """What each signature must return, computed by the in-memory model."""
    outputs = {"serving_default/reconstruction": model(x).numpy()}
    if isinstance(model, tfvae.HierarchicalVAE):
        for layer, q in enumerate(model.encode(x, sample=False), start=1):
            outputs[f"encode/loc_{layer}"] = q.mean().numpy()
            outputs[f"encode/scale_{layer}"] = q.stddev().numpy()
    else:
        (q,) = model.encode(x)
        outputs.update(
            {"encode/loc": q.mean().numpy(), "encode/scale": q.stddev().numpy()}
        )
    p = model.decode(z)
    outputs["decode/mean"] = p.mean().numpy()
    if isinstance(model.likelihood, heads.BernoulliHead):
        outputs["decode/probs"] = p.mean().numpy()
    else:
        outputs["decode/scale"] = p.stddev().numpy()
    outputs["sample/x"] = model.sample(5, seed=11).numpy()
    outputs["elbo/elbo"] = model.elbo(x, seed=0).numpy()
    outputs["log_likelihood/log_likelihood"] = model.log_likelihood(
        x, num_samples=70, seed=0
    )
    return outputs


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = MODELS[request.param]()
    for weight in model.trainable_weights:  # random biases: every weight matters
        if weight.path.endswith("bias"):
            weight.assign(RNG.normal(scale=0.3, size=weight.shape))
    base = tmp_path_factory.mktemp(request.param)
    path = tfvae.export_saved_model(model, base / "model", version=1)
    return model, path


def test_every_signature_in_a_tensorflow_only_process(exported, tmp_path):
    model, path = exported
    z = RNG.normal(size=(7, model.latent_dims[0])).astype("float32")
    np.savez(tmp_path / "inputs.npz", x=X_BIN, z=z)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_SCRIPT,
            path,
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "outputs.npz"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # Nothing of tfvae, TFP or Keras is imported to load and call the export
    # (`import tensorflow` itself imports keras; the load adds no module of it),
    # and the revived object is a plain TensorFlow object.
    forbidden = ("tfvae", "tensorflow_probability", "keras", "tf_keras")
    assert not [m for m in report["new_modules"] if m.startswith(forbidden)]
    assert report["type"] == "_UserObject"
    served = np.load(tmp_path / "outputs.npz")
    expected = expected_outputs(model, X_BIN, z)
    assert sorted(served.files) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(
            served[key], value, rtol=1e-5, atol=1e-5, err_msg=key
        )


def test_saved_model_cli_lists_every_signature(exported):
    _, path = exported
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    assert cli, "saved_model_cli is installed with tensorflow"
    result = subprocess.run(
        [cli, "show", "--dir", path, "--all"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in result.stdout, name


def test_signatures_have_dynamic_batches_and_reject_wrong_sizes(exported):
    model, path = exported
    loaded = tf.saved_model.load(path)
    for batch in (1, 7):
        out = loaded.signatures["serving_default"](x=tf.constant(X_BIN[:batch]))
        assert out["reconstruction"].shape == (batch, 12)
    wrong = tf.zeros((2, 11))
    for name in ("serving_default", "encode", "elbo"):
        with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
            loaded.signatures[name](x=wrong)
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        loaded.signatures["decode"](z=tf.zeros((2, model.latent_dims[0] + 1)))
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        loaded.signatures["log_likelihood"](x=wrong, num_samples=tf.constant(3))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="num_samples must be >= 1"
    ):
        loaded.signatures["sample"](num_samples=tf.constant(0), seed=tf.constant(1))
    one = loaded.signatures["sample"](num_samples=tf.constant(3), seed=tf.constant(1))
    two = loaded.signatures["sample"](num_samples=tf.constant(3), seed=tf.constant(1))
    other = loaded.signatures["sample"](num_samples=tf.constant(3), seed=tf.constant(2))
    np.testing.assert_array_equal(one["x"], two["x"])
    assert not np.allclose(one["x"], other["x"])


def test_model_reloaded_from_keras_file_exports_identically(exported, tmp_path):
    model, path = exported
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    again = tfvae.export_saved_model(reloaded, tmp_path / "again")
    first, second = tf.saved_model.load(path), tf.saved_model.load(again)
    x = tf.constant(X_BIN)
    z = tf.constant(RNG.normal(size=(3, model.latent_dims[0])), tf.float32)
    arguments = {
        "serving_default": {"x": x},
        "encode": {"x": x},
        "decode": {"z": z},
        "sample": {"num_samples": tf.constant(4), "seed": tf.constant(2)},
        "elbo": {"x": x},
        "log_likelihood": {"x": x, "num_samples": tf.constant(40)},
    }
    for name, kwargs in arguments.items():
        a, b = first.signatures[name](**kwargs), second.signatures[name](**kwargs)
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}/{key}")


def test_existing_exports_are_never_overwritten_silently(tmp_path):
    model = vae()
    path = tfvae.export_saved_model(model, tmp_path / "base", version=3)
    assert path == str(tmp_path / "base" / "3")
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert os.stat(path).st_mode & 0o777 == 0o755  # readable by a model server
    marker = os.path.join(path, "marker")
    open(marker, "w").close()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        tfvae.export_saved_model(model, tmp_path / "base", version=3)
    assert os.path.exists(marker)  # untouched
    tfvae.export_saved_model(model, tmp_path / "base", version=3, overwrite=True)
    assert not os.path.exists(marker)
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    # Another version beside it, and no staging folders left behind.
    tfvae.export_saved_model(model, tmp_path / "base", version=4)
    assert sorted(os.listdir(tmp_path / "base")) == ["3", "4"]
    # An existing empty folder is fine.
    os.makedirs(tmp_path / "empty")
    tfvae.export_saved_model(model, tmp_path / "empty")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"version": -1}, ValueError, "version=-1"),
        ({"version": "1"}, ValueError, "version='1'"),
        (
            {"model": keras.Sequential()},
            ValueError,
            "tfvae.VAE or tfvae.HierarchicalVAE",
        ),
    ],
)
def test_bad_export_arguments(kwargs, error, match, tmp_path):
    kwargs = {"model": vae(), "export_dir": tmp_path / "out", **kwargs}
    with pytest.raises(error, match=match):
        tfvae.export_saved_model(**kwargs)
    assert not os.path.exists(tmp_path / "out")
