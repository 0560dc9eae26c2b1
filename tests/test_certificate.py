"""The certificate of fit: one pass, the same numbers as its parts."""

import math

import numpy as np
import pytest

import tfvae
from tfvae import data, diagnostics, estimators

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


def test_the_protocol_of_binarizations_averages_each_example_over_seeded_draws():
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,), seed=0)
    grey = RNG.random((30, 12)).astype("float32")
    result = tfvae.certify(model, grey, num_samples=20, seed=3, binarizations=3)
    # By hand: binarization b is drawn with seed b, estimated with the seed
    # of the samples, and each example's three estimates are averaged.
    per_draw = [
        estimators.log_likelihood(
            model, data.binarized(grey, b), num_samples=20, seed=3, return_elbo=True
        )
        for b in range(3)
    ]
    values = np.mean([v for v, _ in per_draw], axis=0)
    elbos = np.mean([e for _, e in per_draw], axis=0)
    assert result["binarizations"] == 3
    np.testing.assert_allclose(result["log_likelihood"], values.mean(), rtol=1e-6)
    np.testing.assert_allclose(result["elbo"], elbos.mean(), rtol=1e-6)
    np.testing.assert_allclose(
        result["log_likelihood_stderr"], values.std(ddof=1) / math.sqrt(30), rtol=1e-5
    )
    np.testing.assert_allclose(
        result["log_likelihood_per_binarization"],
        [v.mean() for v, _ in per_draw],
        rtol=1e-6,
    )
    # The draws differ: three binarizations, not one three times.
    assert len({round(v, 6) for v in result["log_likelihood_per_binarization"]}) == 3
    # One binarization is the single seeded draw of load(binarize="dynamic").
    single = tfvae.certify(model, grey, num_samples=20, seed=3, binarizations=1)
    plain = tfvae.certify(model, data.binarized(grey, 0), num_samples=20, seed=3)
    assert single["log_likelihood"] == plain["log_likelihood"]


def test_binarizations_keep_a_progress_file_each(tmp_path):
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, hidden_units=(8,), seed=0)
    grey = RNG.random((10, 12)).astype("float32")
    progress = tmp_path / "progress.json"
    first = tfvae.certify(
        model, grey, num_samples=10, binarizations=2, progress=str(progress)
    )
    assert progress.exists() and (tmp_path / "progress.json.b1").exists()
    again = tfvae.certify(
        model, grey, num_samples=10, binarizations=2, progress=str(progress)
    )
    assert again["log_likelihood"] == first["log_likelihood"]


def test_binarizations_need_grey_levels():
    model = tfvae.VAE(input_shape=(12,), latent_dim=2, seed=0)
    with pytest.raises(ValueError, match=r"grey levels in \[0, 1\]"):
        tfvae.certify(model, X - 0.5, num_samples=2, binarizations=2)
