import numpy as np
import pytest

import tfvae
from tfvae import diagnostics

RNG = np.random.default_rng(5)
X_BIN = (RNG.random((200, 12)) < 0.3).astype("float32")


def test_active_units_counts_units_whose_posterior_mean_moves():
    model = tfvae.VAE(input_shape=(12,), latent_dim=4, hidden_units=())
    # Units 0 and 2: mean independent of x (zero kernel columns); 1 and 3 move.
    kernel = model.posterior.kernel.numpy()
    kernel[:, [0, 2]] = 0
    kernel[:, [1, 3]] = RNG.normal(size=(12, 2))
    model.posterior.kernel.assign(kernel)
    result = diagnostics.active_units(model, X_BIN)
    assert result["active_units"] == [2]
    activity = result["activity"][0]
    mean = model.encode(X_BIN)[0].mean().numpy()
    np.testing.assert_allclose(activity, mean.var(axis=0), rtol=1e-5, atol=1e-10)
    assert activity[0] < 1e-10 and activity[1] > 0.01
    assert diagnostics.active_units(model, X_BIN, threshold=1e9)["active_units"] == [0]


def test_vae_kl_per_dimension_is_the_closed_form_and_sums_to_kl():
    model = tfvae.VAE(input_shape=(12,), latent_dim=3, hidden_units=(8,))
    kl = diagnostics.kl_per_dimension(model, X_BIN)[0]
    (q,) = model.encode(X_BIN)
    mu, sigma = q.mean().numpy(), q.stddev().numpy()
    expected = (0.5 * (mu**2 + sigma**2 - 1 - np.log(sigma**2))).mean(axis=0)
    np.testing.assert_allclose(kl, expected, rtol=1e-4)
    model.compile()
    metric = model.evaluate(X_BIN, batch_size=200, verbose=0, return_dict=True)["kl"]
    np.testing.assert_allclose(kl.sum(), metric, rtol=1e-4)


def test_hierarchical_diagnostics_per_layer():
    model = tfvae.HierarchicalVAE(
        input_shape=(12,), latent_dims=(4, 2), hidden_units=((8,), (6,)), seed=0
    )
    kls = diagnostics.kl_per_dimension(model, X_BIN, num_samples=100, seed=1)
    assert [k.shape for k in kls] == [(4,), (2,)]
    # The per-layer sums estimate the kl_l terms: compare with a 100-sample
    # estimate from the model itself, within the Monte Carlo error.
    _, layer_kls = model.elbo_terms(X_BIN, 100, seed=2)
    for per_dim, layer in zip(kls, layer_kls, strict=True):
        layer = layer.numpy()
        error = layer.std(ddof=1) / np.sqrt(len(layer))
        assert abs(per_dim.sum() - layer.mean()) < 4 * error + 0.02
    active = diagnostics.active_units(model, X_BIN)
    assert len(active["active_units"]) == 2
    assert [a.shape for a in active["activity"]] == [(4,), (2,)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 0}, "num_samples=0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"x": X_BIN[:, :3]}, r"x.shape=\(200, 3\)"),
    ],
)
def test_bad_arguments(kwargs, match):
    model = tfvae.VAE(input_shape=(12,), latent_dim=3)
    kwargs = {"x": X_BIN, **kwargs}
    with pytest.raises(ValueError, match=match):
        diagnostics.active_units(model, **kwargs)
