"""The importance-sampled log-likelihood, proven on models whose likelihood is exact."""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import softplus, subprocess_environment

import tfvae
from tfvae import heads

RNG = np.random.default_rng(4)
X_BIN = (RNG.random((40, 12)) < 0.3).astype("float32")


def small_models():
    return [
        tfvae.VAE(input_shape=(12,), latent_dim=3, hidden_units=(8,), seed=0),
        tfvae.HierarchicalVAE(
            input_shape=(12,), latent_dims=(4, 2), hidden_units=((8,), (6,)), seed=0
        ),
    ]


def gaussian_log_density(x, mean, cov):
    """log N(x; mean, cov) of each row of x, in float64."""
    d = x - mean
    _, logdet = np.linalg.slogdet(cov)
    mahalanobis = np.einsum("ij,ij->i", d, np.linalg.solve(cov, d.T).T)
    return -0.5 * (mahalanobis + logdet + len(mean) * math.log(2 * math.pi))


def shared_sigma(head):
    return softplus(head.raw_scale.numpy().astype("float64")) + head.min_scale


# --- The linear-Gaussian models and their exact marginals ---------------------


@pytest.fixture(scope="module")
def linear_vae():
    """A VAE with linear maps and a shared sigma, trained on data from pPCA."""
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(6, 2)), rng.normal(size=6)
    sigma = np.array([0.3, 0.5, 0.4, 0.6, 0.3, 0.5])

    def sample(n):
        return rng.normal(size=(n, 2)) @ w.T + b + sigma * rng.normal(size=(n, 6))

    keras.utils.set_random_seed(0)
    model = tfvae.VAE(
        input_shape=(6,),
        latent_dim=2,
        hidden_units=(),
        likelihood=heads.GaussianHead(scale="shared"),
        seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(sample(4000).astype("float32"), epochs=30, batch_size=100, verbose=0)
    # The trained decoder: x | z ~ N(W z + b, diag(sigma^2)), z ~ N(0, I), so
    # x ~ N(b, W W^T + diag(sigma^2)) exactly (probabilistic PCA).
    head = model.likelihood
    w_hat = head.kernel.numpy().astype("float64").T
    b_hat = head.bias.numpy().astype("float64")
    cov = w_hat @ w_hat.T + np.diag(shared_sigma(head) ** 2)
    x = sample(500)
    return model, x.astype("float32"), gaussian_log_density(x, b_hat, cov)


@pytest.fixture(scope="module")
def linear_vae_mog():
    """A linear-Gaussian decoder under a learned mixture-of-Gaussians prior.

    z ~ sum_k pi_k N(mu_k, diag(s_k^2)), x | z ~ N(W z + b, diag(sigma^2)), so
    x ~ sum_k pi_k N(W mu_k + b, W diag(s_k^2) W^T + diag(sigma^2)) exactly.
    Trained (every part of the prior learned) on data from such a model.
    """
    rng = np.random.default_rng(2)
    w, b = rng.normal(size=(6, 2)), rng.normal(size=6)
    sigma = np.array([0.3, 0.5, 0.4, 0.6, 0.3, 0.5])
    means = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])

    def sample(n):
        z = means[rng.choice(3, size=n, p=[0.5, 0.3, 0.2])]
        z = z + 0.5 * rng.normal(size=(n, 2))
        return z @ w.T + b + sigma * rng.normal(size=(n, 6))

    keras.utils.set_random_seed(2)
    model = tfvae.VAE(
        input_shape=(6,),
        latent_dim=2,
        hidden_units=(),
        likelihood=heads.GaussianHead(scale="shared"),
        prior=tfvae.priors.MixtureOfGaussians(3),
        kl="mc",
        seed=2,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(sample(4000).astype("float32"), epochs=30, batch_size=100, verbose=0)
    head = model.likelihood
    w_hat = head.kernel.numpy().astype("float64").T
    b_hat = head.bias.numpy().astype("float64")
    noise = np.diag(shared_sigma(head) ** 2)
    log_weights, loc, scale = (
        v.numpy().astype("float64") for v in model.prior.components()
    )
    x = sample(500)
    per_component = np.stack(
        [
            log_weights[k]
            + gaussian_log_density(
                x,
                w_hat @ loc[k] + b_hat,
                w_hat @ np.diag(scale[k] ** 2) @ w_hat.T + noise,
            )
            for k in range(3)
        ]
    )
    exact = np.logaddexp.reduce(per_component, axis=0)
    return model, x.astype("float32"), exact


class KeepLinear(keras.callbacks.Callback):
    """Projects the scale columns of p(z_1|z_2)'s projection back to 0 after
    every step, so its sigma stays constant and the chain linear-Gaussian."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def on_train_batch_end(self, batch, logs=None):
        kernel = self.head.kernel.numpy()
        kernel[:, kernel.shape[1] // 2 :] = 0
        self.head.kernel.assign(kernel)


@pytest.fixture(scope="module")
def linear_hvae():
    return train_linear_hvae("bottom_up")


@pytest.fixture(scope="module")
def linear_hvae_ladder():
    return train_linear_hvae("ladder")


def train_linear_hvae(inference):
    """A 2-layer HVAE with linear maps whose generative chain is linear-Gaussian.

    z_2 ~ N(0, I), z_1 | z_2 ~ N(A z_2 + a, diag(s^2)), x | z_1 ~ N(W z_1 + b,
    diag(sigma^2)); so x ~ N(W a + b, W (A A^T + diag(s^2)) W^T + diag(sigma^2)).
    Trained on data from such a chain with the given inference model; the
    parameters are read from the model.
    """
    rng = np.random.default_rng(1)
    a_true, a0 = rng.normal(size=(3, 2)), rng.normal(size=3)
    s0 = np.array([0.4, 0.7, 0.5])
    w0, b0 = rng.normal(size=(6, 3)), rng.normal(size=6)
    sigma0 = np.array([0.3, 0.5, 0.4, 0.6, 0.3, 0.5])

    def sample(n):
        z2 = rng.normal(size=(n, 2))
        z1 = z2 @ a_true.T + a0 + s0 * rng.normal(size=(n, 3))
        return z1 @ w0.T + b0 + sigma0 * rng.normal(size=(n, 6))

    keras.utils.set_random_seed(1)
    model = tfvae.HierarchicalVAE(
        input_shape=(6,),
        latent_dims=(3, 2),
        hidden_units=((), ()),
        likelihood=heads.GaussianHead(scale="shared"),
        inference=inference,
        seed=1,
    )
    keep_linear = KeepLinear(model.conditionals[0])
    keep_linear.on_train_batch_end(0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(
        sample(4000).astype("float32"),
        epochs=40,
        batch_size=100,
        verbose=0,
        callbacks=[keep_linear],
    )
    prior, head = model.conditionals[0], model.likelihood
    kernel, bias = (v.numpy().astype("float64") for v in (prior.kernel, prior.bias))
    np.testing.assert_array_equal(kernel[:, 3:], 0)  # sigma of z_1 is constant
    a_mat, a, s = kernel[:, :3].T, bias[:3], softplus(bias[3:]) + prior.min_scale
    w = head.kernel.numpy().astype("float64").T
    b = head.bias.numpy().astype("float64")
    cov = w @ (a_mat @ a_mat.T + np.diag(s**2)) @ w.T + np.diag(shared_sigma(head) ** 2)
    x = sample(500)
    return model, x.astype("float32"), gaussian_log_density(x, w @ a + b, cov)


@pytest.fixture(
    params=["linear_vae", "linear_hvae", "linear_hvae_ladder", "linear_vae_mog"]
)
def exact_model(request):
    return request.getfixturevalue(request.param)


def test_estimate_matches_the_exact_log_likelihood(exact_model):
    model, x, exact = exact_model
    estimate = model.log_likelihood(x, num_samples=1000, seed=3)
    error = estimate - exact
    # Each example's error is the estimator's own noise (the exact value is
    # subtracted), so its spread over the 500 examples gives the standard error
    # of the mean error. The O(1/K) downward bias of the IWAE estimator is far
    # below it at K = 1000.
    standard_error = error.std(ddof=1) / math.sqrt(len(error))
    assert abs(error.mean()) < 4 * standard_error, (error.mean(), standard_error)
    assert abs(error.mean()) < 0.05
    assert np.all(np.abs(error) < 0.5)


def test_elbo_below_iwae_bounds_rising_with_k_below_exact(exact_model):
    model, x, exact = exact_model
    # 40 replicas of each example: the noise is keyed by row, so each replica
    # draws its own samples. Means over 20,000 rows resolve gaps of 1e-3 nats.
    replicas = np.tile(x, (40, 1))
    exact_mean = exact.mean()
    bounds, errors = {}, {}
    for k in (1, 10, 100):
        values = model.log_likelihood(replicas, num_samples=k, seed=k) - np.tile(
            exact, 40
        )
        bounds[k] = values.mean()
        errors[k] = values.std(ddof=1) / math.sqrt(len(values))
    elbo = model.elbo(replicas, num_samples=1, seed=7).numpy() - np.tile(exact, 40)
    np.testing.assert_allclose(elbo.mean(), bounds[1], atol=4 * errors[1])
    assert bounds[1] < bounds[10] - 3 * math.hypot(errors[1], errors[10]), bounds
    if getattr(model, "inference", None) == "ladder":
        # The ladder posterior, a product of p(z_1|z_2) and a Gaussian in z_1,
        # has the form of the exact posterior here (up to the diagonal
        # covariances): the ELBO is within 0.02 nats of log p(x) (0.013 measured), and
        # K = 10 already resolves no gap to K = 100.
        assert bounds[10] < bounds[100] + 3 * math.hypot(errors[10], errors[100])
    else:
        assert bounds[10] < bounds[100] - 3 * math.hypot(errors[10], errors[100])
    assert bounds[100] < 3 * errors[100], (bounds, exact_mean)


# --- Chunking, stability, the companion function -------------------------


@pytest.mark.parametrize("model", small_models(), ids=["vae", "hvae"])
def test_result_does_not_depend_on_chunking(model):
    reference = model.log_likelihood(X_BIN, num_samples=450, seed=5)
    per_pair = 4 * model.floats_per_sample()
    for batch_size, budget in (
        (None, per_pair * 100),
        (7, per_pair * 250),
        (40, 2**30),
    ):
        chunked = model.log_likelihood(
            X_BIN, num_samples=450, seed=5, batch_size=batch_size, memory_budget=budget
        )
        np.testing.assert_allclose(chunked, reference, rtol=1e-6, atol=1e-5)
    other_seed = model.log_likelihood(X_BIN, num_samples=450, seed=6)
    assert not np.allclose(other_seed, reference)
    # An example's estimate does not depend on which rows come with it.
    np.testing.assert_allclose(
        model.log_likelihood(X_BIN[:5], num_samples=450, seed=5),
        reference[:5],
        rtol=1e-6,
    )


def test_stable_in_float32_for_k_5000():
    # 784 Bernoulli pixels and a large random decoder: log-weights near -2000,
    # whose exp underflows float32 (and float64); log-sum-exp must not.
    keras.utils.set_random_seed(2)
    model = tfvae.VAE(input_shape=(784,), latent_dim=10, hidden_units=(64,))
    for weight in model.likelihood.weights:
        weight.assign(weight.numpy() * 20)
    x = (RNG.random((3, 784)) < 0.5).astype("float32")
    values = model.log_likelihood(x, num_samples=5000, seed=0)
    elbo = model.elbo(x, num_samples=200, seed=0).numpy()
    assert np.all(np.isfinite(values))
    assert np.all(values < -500)
    assert np.all(values > elbo)  # the 5000-sample bound sits above the ELBO


def test_evaluate_log_likelihood_reports_mean_stderr_and_elbo():
    model = small_models()[0]
    result = tfvae.evaluate_log_likelihood(model, X_BIN, num_samples=200, seed=1)
    values = model.log_likelihood(X_BIN, num_samples=200, seed=1)
    np.testing.assert_allclose(result["log_likelihood"], values.mean(), rtol=1e-6)
    np.testing.assert_allclose(result["nll"], -values.mean(), rtol=1e-6)
    np.testing.assert_allclose(
        result["log_likelihood_stderr"], values.std(ddof=1) / math.sqrt(40), rtol=1e-5
    )
    # The ELBO from the same 200 samples: close to a 200-sample ELBO estimate.
    elbo = model.elbo(X_BIN, num_samples=200, seed=2).numpy().mean()
    assert abs(result["elbo"] - elbo) < 0.1
    assert result["elbo"] < result["log_likelihood"]
    assert result["num_samples"] == 200 and result["num_examples"] == 40


def test_progress_bar(capsys):
    model = small_models()[0]
    model.log_likelihood(X_BIN, num_samples=10, verbose=1, seed=0)
    assert "40/40" in capsys.readouterr().out
    model.log_likelihood(X_BIN, num_samples=10, seed=0)  # "auto": short, silent
    assert capsys.readouterr().out == ""


def test_bits_per_dim():
    np.testing.assert_allclose(
        tfvae.bits_per_dim(np.array([-784 * math.log(2)]), (28, 28)), [1.0]
    )
    np.testing.assert_allclose(
        tfvae.bits_per_dim(-88.0, (784,)), 88 / (784 * math.log(2))
    )


def test_bits_per_dim_of_dequantized_data():
    # The uniform density on [0, 1)^D (log p = 0) puts 1/17 on each of 17
    # levels per pixel: log2(17) bits per dimension.
    np.testing.assert_allclose(
        tfvae.bits_per_dim(0.0, (64,), levels=17), math.log2(17), rtol=1e-6
    )
    with pytest.raises(ValueError, match="levels=1"):
        tfvae.bits_per_dim(0.0, (64,), levels=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 0}, "num_samples=0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"memory_budget": -1}, "memory_budget=-1"),
        ({"x": X_BIN[:, :5]}, r"x.shape=\(40, 5\)"),
        ({"x": X_BIN + 1}, r"targets in \[0, 1\]"),
        ({"verbose": 2}, "verbose=2"),
    ],
)
def test_bad_arguments(kwargs, match):
    model = small_models()[0]
    kwargs = {"x": X_BIN, **kwargs}
    with pytest.raises(ValueError, match=match):
        model.log_likelihood(**kwargs)


def _thread_settings(env):
    """(returned value, intra-op, inter-op) of `use_evaluation_threads`, in
    a fresh interpreter with these environment variables."""
    code = (
        "import tensorflow as tf\n"
        "from tfvae import estimators\n"
        "first = estimators.use_evaluation_threads()\n"
        "t = tf.config.threading\n"
        "print(first, t.get_intra_op_parallelism_threads(),"
        " t.get_inter_op_parallelism_threads())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=subprocess_environment(**env),
        timeout=120,
        check=True,
    )
    return result.stdout.split()


def test_use_evaluation_threads_sets_one_intra_op_thread_per_block():
    cores = len(os.sched_getaffinity(0))
    assert _thread_settings({}) == ["True", "1", str(cores)]
    # The user's settings win: nothing changes.
    assert _thread_settings({"TF_NUM_INTRAOP_THREADS": "2"}) == ["False", "0", "0"]
    assert _thread_settings({"TF_NUM_INTEROP_THREADS": "3"}) == ["False", "0", "0"]


def test_use_evaluation_threads_after_tensorflow_started_changes_nothing():
    tf.constant(1.0) + 1.0  # this process has started TensorFlow
    before = tf.config.threading.get_intra_op_parallelism_threads()
    assert not tfvae.estimators.use_evaluation_threads()
    assert tf.config.threading.get_intra_op_parallelism_threads() == before


def test_an_interrupted_evaluation_goes_on_from_its_progress_file(
    tmp_path, monkeypatch
):
    """Killed after some chunks, run again: the same values, bit for bit."""
    from tfvae import estimators

    model = tfvae.VAE(input_shape=(12,), latent_dim=3, hidden_units=(8,), seed=0)
    x = (np.random.default_rng(0).random((40, 12)) < 0.3).astype("float32")
    whole = estimators.log_likelihood(
        model, x, num_samples=30, batch_size=8, seed=3, return_elbo=True
    )
    path = tmp_path / "progress.json"
    monkeypatch.setattr(estimators, "_PROGRESS_SECONDS", 0.0)  # save every chunk
    calls, dies_after = [], [2]
    compiled = estimators.compiled_chunk(model)

    def counted_chunk(*args):
        if len(calls) == dies_after[0]:
            raise RuntimeError("killed")  # as a kill after two chunks
        calls.append(1)
        return compiled(*args)

    monkeypatch.setitem(estimators._CHUNK_FUNCTIONS, model, counted_chunk)
    with pytest.raises(RuntimeError, match="killed"):
        estimators.log_likelihood(
            model, x, num_samples=30, batch_size=8, seed=3, progress=path
        )
    assert len(json.loads(path.read_text())["log_likelihood"]) == 16
    calls.clear()
    dies_after[0] = None
    resumed = estimators.log_likelihood(
        model, x, num_samples=30, batch_size=8, seed=3, progress=path, return_elbo=True
    )
    assert len(calls) == 3  # only the 24 examples left, in chunks of 8
    for a, b in zip(resumed, whole, strict=True):
        np.testing.assert_array_equal(a, b)
    # A complete file is the result: nothing is computed again.
    calls.clear()
    again = estimators.log_likelihood(
        model, x, num_samples=30, batch_size=8, seed=3, progress=path
    )
    np.testing.assert_array_equal(again, whole[0])
    assert calls == []


@pytest.mark.parametrize(
    "change, differs",
    [
        ({"seed": 4}, "seed"),
        ({"num_samples": 31}, "num_samples"),
        ({"x": "other"}, "data_sha256"),
    ],
)
def test_a_progress_file_of_another_evaluation_is_refused(change, differs, tmp_path):
    from tfvae import estimators

    model = tfvae.VAE(input_shape=(12,), latent_dim=3, hidden_units=(8,), seed=0)
    x = (np.random.default_rng(0).random((10, 12)) < 0.3).astype("float32")
    path = tmp_path / "progress.json"
    estimators.log_likelihood(model, x, num_samples=30, seed=3, progress=path)
    before = path.read_text()
    kwargs = {"num_samples": 30, "seed": 3, **change}
    data = 1 - x if kwargs.pop("x", None) else x
    with pytest.raises(ValueError, match=f"belongs to another evaluation.*{differs}"):
        estimators.log_likelihood(model, data, progress=path, **kwargs)
    assert path.read_text() == before
    with pytest.raises(ValueError, match="needs an integer seed"):
        estimators.log_likelihood(model, x, num_samples=30, progress=path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read as one"):
        estimators.log_likelihood(model, x, num_samples=30, seed=3, progress=path)
