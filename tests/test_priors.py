"""Priors: the standard normal against closed forms, and a learned prior
plugged in without touching the models, the estimator or the export."""

import importlib.util
import math
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip, normal_log_density
from model_test_case import run_model_test

import tfvae
from tfvae import priors
from tfvae.distributions import diagonal_normal

ROOT = pathlib.Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(6)


def load_example():
    spec = importlib.util.spec_from_file_location(
        "extending", ROOT / "examples" / "extending.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_standard_normal_against_numpy():
    prior = priors.StandardNormal(latent_dim=4)
    z = RNG.normal(size=(3, 5, 4)).astype("float32")
    np.testing.assert_allclose(
        prior.log_prob(z), normal_log_density(z, 0.0, 1.0).sum(-1), rtol=1e-5
    )
    np.testing.assert_allclose(
        prior.distribution().log_prob(z), prior.log_prob(z), rtol=1e-5
    )
    loc = RNG.normal(size=(5, 4)).astype("float32")
    scale = np.exp(RNG.normal(size=(5, 4))).astype("float32")
    q = diagonal_normal(loc, scale)
    closed = 0.5 * (loc**2 + scale**2 - 1 - np.log(scale**2))
    np.testing.assert_allclose(prior.kl_per_dimension(q), closed, rtol=1e-5)
    np.testing.assert_allclose(prior.kl_divergence(q), closed.sum(-1), rtol=1e-5)
    noise = RNG.normal(size=(7, 4)).astype("float32")
    np.testing.assert_array_equal(prior.sample_from_noise(noise), noise)
    assert prior.analytic_kl and prior.noise_dim == 4


def test_get_serialize_and_bad_identifiers():
    assert isinstance(priors.get("standard_normal"), priors.StandardNormal)
    prior = priors.StandardNormal(latent_dim=3)
    assert priors.get(prior) is prior
    again = priors.get(priors.serialize(prior))
    assert isinstance(again, priors.StandardNormal) and again.latent_dim == 3
    assert_config_round_trip(prior)
    with pytest.raises(ValueError, match=r"Unknown prior 'vamp'. Valid names"):
        priors.get("vamp")
    with pytest.raises(ValueError, match="Received: prior=3"):
        priors.get(3)
    with pytest.raises(ValueError, match="latent_dim=3, but the model needs"):
        tfvae.VAE(input_shape=(6,), latent_dim=2, prior=priors.StandardNormal(3))


def test_analytic_kl_needs_a_prior_with_a_closed_form():
    class NoClosedForm(priors.StandardNormal):
        analytic_kl = False

        def kl_divergence(self, q):
            return None

        def kl_per_dimension(self, q):
            return None

    with pytest.raises(ValueError, match="kl='analytic' needs a prior"):
        tfvae.VAE(input_shape=(6,), latent_dim=2, prior=NoClosedForm())
    model = tfvae.VAE(input_shape=(6,), latent_dim=2, prior=NoClosedForm(), kl="mc")
    x = (RNG.random((20, 6)) < 0.5).astype("float32")
    reference = tfvae.VAE(input_shape=(6,), latent_dim=2, kl="mc")
    reference.set_weights(model.get_weights())
    np.testing.assert_array_equal(model.elbo(x, seed=1), reference.elbo(x, seed=1))
    # The diagnostics fall back to the sampled log-ratio: its sum over the
    # dimensions estimates the closed form within the Monte Carlo error.
    sampled = tfvae.diagnostics.kl_per_dimension(model, x, num_samples=400)[0]
    closed = tfvae.diagnostics.kl_per_dimension(reference, x)[0]
    (q,) = model.encode(x)
    z = q.sample(400, seed=2)
    ratio = q.log_prob(z).numpy() - normal_log_density(z.numpy(), 0.0, 1.0).sum(-1)
    error = ratio.std() / math.sqrt(ratio.size)
    assert abs(sampled.sum() - closed.sum()) < 4 * error


# --- The worked example of docs/architecture.md ---------------------------------


def test_the_example_prior_and_head_plug_in(tmp_path):
    example = load_example()
    x = RNG.normal(size=(6, 12)).astype("float32")
    model = run_model_test(tfvae.VAE, example.build_model().get_config(), x, tmp_path)
    assert isinstance(model.prior, example.LearnedGaussian)
    assert isinstance(model.likelihood, example.LaplaceHead)


def test_the_example_prior_learns_and_its_kl_is_the_closed_form():
    example = load_example()
    model = example.build_model()
    # Data whose latent code is offset: the learned prior mean moves.
    x = (RNG.normal(size=(400, 12)) + 2.0).astype("float32")
    model.compile(optimizer="adam")
    model.fit(x, epochs=3, batch_size=100, verbose=0)
    prior = model.prior
    assert np.abs(prior.loc.numpy()).max() > 0.01  # the prior trained
    # The ELBO's KL term equals the closed form of two diagonal Gaussians.
    (q,) = model.encode(x[:50])
    p = prior.distribution().distribution
    mu, sigma = q.mean().numpy(), q.stddev().numpy()
    m, s = p.loc.numpy(), p.scale.numpy()
    closed = (np.log(s / sigma) + (sigma**2 + (mu - m) ** 2) / (2 * s**2) - 0.5).sum(-1)
    np.testing.assert_allclose(prior.kl_divergence(q), closed, rtol=1e-4, atol=1e-5)
    # Samples come from the learned prior: their z has its mean and scale.
    noise = tf.random.normal((20_000, 3), seed=1)
    z = prior.sample_from_noise(noise).numpy()
    error = 4 * s / math.sqrt(len(z))
    assert np.all(np.abs(z.mean(0) - m) < error)
