"""The certificate of fit: one pass, the same numbers as its parts."""

import math

import numpy as np

import tfvae
from tfvae import diagnostics

RNG = np.random.default_rng(8)
X = (RNG.random((60, 12)) < 0.3).astype("float32")


def test_certify_reports_the_estimator_and_the_diagnostics_in_one_pass():
    model = tfvae.HierarchicalVAE(
        input_shape=(12,), latent_dims=(4, 2), hidden_units=((8,), (6,)), seed=0
    )
    result = tfvae.certify(model, X, num_samples=50, seed=3)
    expected = tfvae.evaluate_log_likelihood(model, X, num_samples=50, seed=3)
    for key, value in expected.items():
        assert result[key] == value, key
    assert result["bits_per_dim"] == -result["log_likelihood"] / (12 * math.log(2))
    active = diagnostics.active_units(model, X)["active_units"]
    kls = [float(k.sum()) for k in diagnostics.kl_per_dimension(model, X)]
    assert result["active_units"] == active
    assert result["kl_per_layer"] == kls


def test_bits_per_dim_of_dequantized_data():
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, likelihood="gaussian", seed=0)
    x = RNG.random((20, 12)).astype("float32")
    result = tfvae.certify(model, x, num_samples=10, levels=17)
    expected = tfvae.bits_per_dim(result["log_likelihood"], (12,), levels=17)
    assert result["bits_per_dim"] == float(expected)
