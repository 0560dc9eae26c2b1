"""Priors: the standard normal against closed forms, the mixture priors against
numpy and their moments, the VampPrior against the encoder, an exact
log-likelihood under a mixture prior, and a learned prior plugged in without
touching the models, the estimator or the export."""

import importlib.util
import math
import pathlib

import keras
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
    with pytest.raises(ValueError, match=r"Unknown prior 'gauss'. Valid names"):
        priors.get("gauss")
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


# --- Mixture priors ------------------------------------------------------------


def numpy_mixture_log_prob(z, log_weights, loc, scale):
    """log sum_k pi_k N(z; loc_k, scale_k^2), float64, by log-sum-exp."""
    z, loc, scale = (np.asarray(v, "float64") for v in (z, loc, scale))
    per_component = normal_log_density(z[..., None, :], loc, scale).sum(-1)
    joint = per_component + np.asarray(log_weights, "float64")
    top = joint.max(-1, keepdims=True)
    return (top + np.log(np.exp(joint - top).sum(-1, keepdims=True)))[..., 0]


def randomized_mixture(num_components, latent_dim, seed=0):
    """A `MixtureOfGaussians` with random weights, means and scales."""
    rng = np.random.default_rng(seed)
    prior = priors.MixtureOfGaussians(num_components, latent_dim=latent_dim)
    prior.build()
    prior.logits.assign(rng.normal(size=num_components))
    prior.loc.assign(3 * rng.normal(size=(num_components, latent_dim)))
    prior.raw_scale.assign(rng.normal(size=(num_components, latent_dim)))
    return prior


@pytest.mark.parametrize("shape", [(7,), (3, 5)])
def test_mixture_log_prob_against_numpy(shape):
    prior = randomized_mixture(6, 4)
    log_weights, loc, scale = (v.numpy() for v in prior.components())
    np.testing.assert_allclose(np.exp(log_weights).sum(), 1.0, rtol=1e-6)
    # Points near the components (where float32 cancellation would show) and
    # far from them (where the log-sum-exp must not underflow).
    z = np.concatenate(
        [
            loc[RNG.integers(6, size=shape)] + 0.01 * RNG.normal(size=(*shape, 4)),
            30 * RNG.normal(size=(*shape, 4)),
        ],
        axis=-2 if len(shape) > 1 else 0,
    ).astype("float32")
    expected = numpy_mixture_log_prob(z, log_weights, loc, scale)
    got = prior.log_prob(z)
    assert got.shape == z.shape[:-1] and got.dtype == tf.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(prior.distribution().log_prob(z), expected, rtol=1e-5)


def test_mixture_samples_match_the_weights_and_moments():
    prior = priors.MixtureOfGaussians(3, latent_dim=2)
    prior.build()
    weights = np.array([0.2, 0.5, 0.3])
    prior.logits.assign(np.log(weights))
    loc = np.array([[-20.0, 0.0], [0.0, 20.0], [20.0, -5.0]])
    prior.loc.assign(loc)
    prior.raw_scale.assign(np.log(np.expm1([[0.5, 1.0], [2.0, 0.3], [1.0, 1.0]])))
    n = 40_000
    z = prior.sample_from_noise(tf.random.normal((n, prior.noise_dim), seed=3)).numpy()
    # The components are 20 apart and at most 2 wide: the nearest mean names
    # the component of each draw.
    nearest = np.argmin(((z[:, None, :] - loc) ** 2).sum(-1), axis=1)
    frequency = np.bincount(nearest, minlength=3) / n
    binomial = np.sqrt(weights * (1 - weights) / n)
    assert np.all(np.abs(frequency - weights) < 4 * binomial), frequency
    _, _, scale = (v.numpy().astype("float64") for v in prior.components())
    mean = weights @ loc
    variance = weights @ (scale**2 + loc**2) - mean**2
    assert np.all(np.abs(z.mean(0) - mean) < 4 * np.sqrt(variance / n))
    for k in range(3):  # each component's draws have its mean and scale
        mine = z[nearest == k]
        error = 4 * scale[k] / np.sqrt(len(mine))
        assert np.all(np.abs(mine.mean(0) - loc[k]) < error)
        # The sample variance's standard error is about var * sqrt(2 / n).
        assert np.all(
            np.abs(mine.var(0) - scale[k] ** 2)
            < 4 * scale[k] ** 2 * np.sqrt(2 / len(mine))
        )


def test_mixture_of_gaussians_get_serialize_and_errors():
    prior = priors.get("mog:4")
    assert isinstance(prior, priors.MixtureOfGaussians) and prior.num_components == 4
    assert isinstance(priors.get("MOG:4"), priors.MixtureOfGaussians)
    again = priors.get(priors.serialize(randomized_mixture(2, 3)))
    assert isinstance(again, priors.MixtureOfGaussians) and again.latent_dim == 3
    assert not prior.analytic_kl and prior.kl_divergence(None) is None
    for name in ("mog:0", "mog:x", "mog:", "mog:2.5", "vamp:-1"):
        with pytest.raises(ValueError, match=r"must be a positive integer.*Received"):
            priors.get(name)
    with pytest.raises(ValueError, match="num_components"):
        priors.MixtureOfGaussians(0)
    with pytest.raises(ValueError, match="init_stddev"):
        priors.MixtureOfGaussians(2, init_stddev=-1.0)


# --- The VampPrior ---------------------------------------------------------------


def vamp_vae(**kwargs):
    return tfvae.VAE(
        input_shape=(12,),
        latent_dim=3,
        hidden_units=(8,),
        prior=priors.VampPrior(num_pseudo_inputs=5, **kwargs),
        kl="mc",
        seed=0,
    )


def vamp_ladder():
    return tfvae.HierarchicalVAE(
        input_shape=(12,),
        latent_dims=(4, 2),
        hidden_units=((8,), (6,)),
        inference="ladder",
        prior="vamp:5",
        seed=0,
    )


@pytest.mark.parametrize("build", [vamp_vae, vamp_ladder], ids=["vae", "ladder"])
def test_vampprior_components_are_the_encoder_at_the_pseudo_inputs(build):
    model = build()
    helpers_randomize(model)
    u = model.prior.pseudo_inputs().numpy()
    assert u.shape == (5, 12)
    q = model.encode(u, sample=False)[-1]  # the top layer, z_L
    log_weights, loc, scale = model.prior.components()
    np.testing.assert_allclose(np.exp(log_weights), np.full(5, 0.2), rtol=1e-6)
    np.testing.assert_allclose(loc, q.mean(), rtol=1e-6)
    np.testing.assert_allclose(scale, q.stddev(), rtol=1e-6)
    z = RNG.normal(size=(9, model.latent_dims[-1])).astype("float32")
    expected = numpy_mixture_log_prob(z, np.log(np.full(5, 0.2)), q.mean(), q.stddev())
    np.testing.assert_allclose(model.prior.log_prob(z), expected, rtol=1e-6)


def helpers_randomize(model):
    """Random biases and pseudo-inputs spread over [0, 1]."""
    from helpers import randomize_biases

    randomize_biases(model, np.random.default_rng(3))
    raw = model.prior.raw_pseudo_inputs
    raw.assign(np.random.default_rng(4).uniform(-0.2, 1.2, size=raw.shape))


def test_pseudo_inputs_start_in_and_stay_in_the_data_range():
    model = vamp_vae(data_range=(0.0, 1.0))
    u = model.prior.pseudo_inputs().numpy()
    assert 0.0 <= u.min() and u.max() <= 1.0  # drawn from N(0.05, 0.01^2), clipped
    np.testing.assert_allclose(u.mean(), 0.05, atol=0.01)
    x = (RNG.random((300, 12)) < 0.5).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(0.1))  # a large rate
    before = model.prior.raw_pseudo_inputs.numpy().copy()
    model.fit(x, epochs=3, batch_size=100, verbose=0)
    raw = model.prior.raw_pseudo_inputs.numpy()
    assert np.abs(raw - before).max() > 0.05  # the pseudo-inputs learn
    assert raw.min() < 0.0 or raw.max() > 1.0  # and w leaves the range
    u = model.prior.pseudo_inputs().numpy()
    assert 0.0 <= u.min() and u.max() <= 1.0  # but u does not


def test_vampprior_errors():
    with pytest.raises(ValueError, match="kl='analytic' needs a prior"):
        tfvae.VAE(input_shape=(12,), latent_dim=3, prior="vamp:5")
    with pytest.raises(ValueError, match="inference='ladder'"):
        tfvae.HierarchicalVAE(input_shape=(12,), latent_dims=(4, 2), prior="vamp:5")
    # One layer: q(z_1|x) depends on x alone under either inference.
    tfvae.HierarchicalVAE(
        input_shape=(12,), latent_dims=(2,), hidden_units=((4,),), prior="vamp:3"
    )
    for bad in ((1.0, 0.0), (0.0,), "ab", (0.0, float("inf"))):
        with pytest.raises(ValueError, match="data_range"):
            priors.VampPrior(3, data_range=bad)
    with pytest.raises(ValueError, match="init_mean"):
        priors.VampPrior(3, init_mean=float("nan"))
    with pytest.raises(ValueError, match="init_mean"):
        priors.VampPrior(3, init_mean="a")
    with pytest.raises(ValueError, match="pass it as `prior=`"):
        priors.VampPrior(3, latent_dim=2).build()
    prior = priors.get("vamp:7")
    assert isinstance(prior, priors.VampPrior) and prior.num_pseudo_inputs == 7


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (tfvae.VAE, dict(latent_dim=3, hidden_units=(8,), prior="mog:3", kl="mc")),
        (tfvae.VAE, dict(latent_dim=3, hidden_units=(8,), prior="vamp:4", kl="mc")),
        (
            tfvae.HierarchicalVAE,
            dict(
                latent_dims=(4, 2),
                hidden_units=((8,), (6,)),
                inference="ladder",
                gated=True,
                prior="vamp:4",
            ),
        ),
    ],
    ids=["vae-mog", "vae-vamp", "ladder-vamp"],
)
def test_the_shared_model_test_with_a_learned_prior(cls, kwargs, tmp_path):
    """Config, .keras, preset and SavedModel round trips, the protocol's shapes."""
    x = (RNG.random((6, 12)) < 0.5).astype("float32")
    model = run_model_test(cls, dict(input_shape=(12,), seed=0, **kwargs), x, tmp_path)
    assert type(model.prior).__name__ in ("MixtureOfGaussians", "VampPrior")
    assert model.generation_dims[-1] == model.latent_dims[-1] + 1


@pytest.mark.parametrize("prior", ["mog:3", "vamp:4"])
def test_learned_priors_train_with_warmup_free_bits_and_diagnostics(prior):
    model = tfvae.VAE(
        input_shape=(12,),
        latent_dim=3,
        hidden_units=(8,),
        prior=prior,
        kl="mc",
        free_bits=0.5,
        seed=0,
    )
    x = (RNG.random((300, 12)) < 0.3).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    weights = [w.numpy().copy() for w in model.prior.trainable_weights]
    history = model.fit(
        x,
        epochs=3,
        batch_size=100,
        verbose=0,
        callbacks=[tfvae.callbacks.KLWarmup(epochs=2)],
    )
    ramp = history.history["kl_weight"]
    assert ramp[0] < ramp[1] < ramp[2] == 1.0, ramp
    assert np.isfinite(history.history["loss"]).all()
    for before, after in zip(weights, model.prior.trainable_weights, strict=True):
        assert np.abs(after.numpy() - before).max() > 0  # the prior trains
    _, (kl,) = tfvae.diagnostics.latent_statistics(model, x, num_samples=50)
    assert kl.shape == (3,) and np.isfinite(kl).all()
    # The diagnostics' KL of the layer (50 draws per example) and the ELBO's
    # KL term (one draw each of 50 replicas) estimate the same mean.
    _, (single,) = model.elbo_terms(tf.constant(np.tile(x, (50, 1))), 1, seed=2)
    error = float(np.std(single)) / math.sqrt(single.shape[0])
    assert abs(kl.sum() - float(np.mean(single))) < 4 * math.sqrt(2) * error
