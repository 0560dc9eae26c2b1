"""The discretized logistic: a distribution over the grey levels, proved exact.

The reference is an independent computation: the difference of two logistic
CDFs in 60-digit decimal arithmetic (Python's `decimal`), with the edge bins
running to -inf and +inf, so it shares no formula with the float32
log-space form under test.
"""

import decimal

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip
from model_test_case import run_model_test

import tfvae
from tfvae import heads
from tfvae.discretized import (
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
    level_values,
)

decimal.getcontext().prec = 60
RNG = np.random.default_rng(0)


def _reference_log_prob(k, loc, scale, levels):
    """log P(level k) as a difference of logistic CDFs, in 60 digits.

    Above the location, the difference of the survival functions instead
    (the same number, without 60 digits of cancellation far in that tail).
    """
    loc, scale = decimal.Decimal(float(loc)), decimal.Decimal(float(scale))
    top = decimal.Decimal(levels - 1)
    half = decimal.Decimal(1) / (2 * top)
    center = decimal.Decimal(int(k)) / top
    lower = None if k == 0 else (center - half - loc) / scale
    upper = None if k == levels - 1 else (center + half - loc) / scale
    if center > loc:  # S(lower) - S(upper), S(t) = 1 / (1 + e^t)
        survival = [0 if t is None else 1 / (1 + t.exp()) for t in (upper, lower)]
        survival[1] = 1 if lower is None else survival[1]
        return float((survival[1] - survival[0]).ln())
    cdf = [1 / (1 + (-t).exp()) if t is not None else None for t in (upper, lower)]
    cdf = [1 if upper is None else cdf[0], 0 if lower is None else cdf[1]]
    return float((cdf[0] - cdf[1]).ln())


def _reference(k, loc, scale, levels):
    return np.array(
        [
            _reference_log_prob(*args, levels)
            for args in zip(k.ravel(), loc.ravel(), scale.ravel(), strict=True)
        ]
    ).reshape(k.shape)


def _log_probs(loc, scale, levels):
    """log P of every level (last axis) for each (loc, scale), in float32."""
    values = level_values(levels)
    d = DiscretizedLogistic(loc[..., None], scale[..., None], levels=levels)
    return d.log_prob(values).numpy()


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_the_probabilities_of_all_levels_sum_to_one(levels):
    loc = RNG.uniform(-0.5, 1.5, size=200).astype("float32")
    scale = np.exp(RNG.uniform(np.log(1e-3), np.log(3.0), size=200)).astype("float32")
    log_probs = _log_probs(loc, scale, levels)
    assert log_probs.shape == (200, levels)
    assert np.all(log_probs <= 0)
    # The float32 rounding of 256 terms of at most 1: well under 1e-5.
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-5)


def test_log_probs_match_an_independent_computation_with_edges():
    levels = 256
    # Every level, edges included, under locations inside and outside [0, 1]
    # and scales from a tenth of a bin to the whole range.
    k = np.array([0, 1, 2, 127, 128, 253, 254, 255] * 6)
    loc = np.repeat([0.0, 0.5, 1.0, -0.2, 1.3, 0.5017], 8).astype("float32")
    scale = np.repeat([0.1, 0.02, 0.3, 0.05, 0.5, 4e-4], 8).astype("float32")
    d = DiscretizedLogistic(loc, scale, levels=levels)
    got = d.log_prob(k / 255.0).numpy()
    expected = _reference(k, loc, scale, levels)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


def test_log_probs_are_float32_stable_far_in_the_tails():
    # Levels hundreds of scales from the location: probabilities near
    # exp(-2000), which a difference of CDFs in float32 would give as 0
    # (log = -inf); the log-space form keeps them, and their gradients.
    k = np.array([0, 1, 128, 254, 255, 255, 0, 128, 3])
    loc = np.array([1.0, 0.9, 0.0, 0.0, -1.0, 0.999, 0.001, 0.5, 0.0], "float32")
    scale = np.array([1e-3, 2e-3, 1e-3, 1e-3, 5e-4, 1e-3, 1e-3, 1e-3, 1e-3], "float32")
    loc_t, scale_t = tf.constant(loc), tf.constant(scale)
    with tf.GradientTape() as tape:
        tape.watch([loc_t, scale_t])
        got = DiscretizedLogistic(loc_t, scale_t, levels=256).log_prob(k / 255.0)
        total = tf.reduce_sum(got)
    gradients = tape.gradient(total, [loc_t, scale_t])
    expected = _reference(k, loc, scale, 256)
    assert np.all(np.isfinite(got.numpy()))
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients)
    # float32 rounds the level's value k / 255 by up to 3e-8, which a scale
    # of 1e-3 turns into 3e-5 in a and b: the conditioning of the inputs,
    # an absolute error of that order where the derivatives are O(1).
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-4)
    with np.errstate(divide="ignore"):
        naive = np.log(
            np.float32(1) / (1 + np.exp(-((k[2] / 255 + 1 / 510 - loc[2]) / scale[2])))
            - np.float32(1)
            / (1 + np.exp(-((k[2] / 255 - 1 / 510 - loc[2]) / scale[2])))
        )
    assert naive == -np.inf  # what the log-space form avoids


def test_values_are_scored_as_their_nearest_level():
    d = DiscretizedLogistic(0.3, 0.05, levels=256)
    level = d.log_prob(77 / 255).numpy()
    np.testing.assert_allclose(d.log_prob(77.4 / 255).numpy(), level)
    np.testing.assert_allclose(d.log_prob(-0.5).numpy(), d.log_prob(0.0).numpy())
    np.testing.assert_allclose(d.log_prob(1.5).numpy(), d.log_prob(1.0).numpy())


def test_mean_is_the_exact_mean_of_the_levels():
    loc = np.array([0.0, 0.3, 0.97, 1.2], "float32")
    scale = np.array([0.05, 0.1, 0.02, 0.3], "float32")
    probs = np.exp(_log_probs(loc, scale, 256).astype("float64"))
    expected = probs @ level_values(256).astype("float64")
    got = DiscretizedLogistic(loc, scale, levels=256).mean().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _assert_follows(levels, probs):
    """The draws' empirical CDF within the Kolmogorov-Smirnov bound of probs.

    1.95 / sqrt(n) bounds the largest CDF deviation of n draws with
    probability 0.999 (conservative for a discrete distribution).
    """
    observed = np.cumsum(np.bincount(levels, minlength=len(probs))) / len(levels)
    assert np.max(np.abs(observed - np.cumsum(probs))) < 1.95 / np.sqrt(len(levels))


def test_samples_are_levels_with_the_distributions_frequencies():
    loc, scale, n = 0.5, 3 / 255, 40000
    d = DiscretizedLogistic(tf.fill([n], loc), tf.fill([n], scale), levels=256)
    samples = d.sample(seed=(1, 2)).numpy()
    levels = np.round(samples * 255)
    np.testing.assert_array_equal(samples, levels.astype("float32") / np.float32(255))
    probs = np.exp(_log_probs(np.float32([loc]), np.float32([scale]), 256)[0])
    _assert_follows(levels.astype(int), probs)


def test_bad_levels_are_refused():
    with pytest.raises(ValueError, match="levels=1"):
        DiscretizedLogistic(0.0, 1.0, levels=1)
    with pytest.raises(ValueError, match="levels=1"):
        heads.DiscretizedLogisticHead(levels=1)
    with pytest.raises(ValueError, match="min_scale=-1"):
        heads.DiscretizedLogisticHead(min_scale=-1)


def test_level_values_are_the_loaded_data_values():
    pixels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(level_values(256), pixels.astype("float32") / 255.0)


def test_head_log_prob_is_the_sum_over_pixels_of_the_distribution():
    head = heads.DiscretizedLogisticHead(event_shape=(3, 4))
    features = RNG.normal(size=(5, 6)).astype("float32")
    p = head(features)
    x = RNG.integers(0, 256, size=(5, 3, 4)).astype("float32") / 255.0
    params = features @ head.kernel.numpy() + head.bias.numpy()
    loc, raw = np.split(params, 2, axis=-1)
    scale = np.log1p(np.exp(raw)) + head.min_scale
    k = np.round(x * 255).astype(int).reshape(5, -1)
    expected = _reference(k, loc, scale.astype("float32"), 256).sum(-1)
    assert p.event_shape == (3, 4)
    np.testing.assert_allclose(p.log_prob(x).numpy(), expected, rtol=1e-5)
    outputs = head.output_parameters(p)
    assert set(outputs) == {"mean", "loc", "scale"}
    np.testing.assert_allclose(outputs["loc"].numpy().reshape(5, -1), loc, rtol=1e-5)


def test_head_config_round_trip_and_name():
    head = heads.DiscretizedLogisticHead(levels=17, min_scale=0.01, event_shape=(5,))
    clone = assert_config_round_trip(head)
    assert clone.levels == 17 and clone.min_scale == 0.01
    assert type(heads.get("discretized-logistic")) is heads.DiscretizedLogisticHead
    assert heads.get(heads.serialize(head)).get_config() == head.get_config()


def test_a_vae_gives_grey_levels_an_exact_log_likelihood_and_bits_per_dim():
    # A trained-for-one-step model on 8-bit data: certify accepts the levels,
    # and refuses dequantized values, which are not levels.
    x = RNG.integers(0, 256, size=(100, 16)).astype("float32") / 255.0
    model = tfvae.VAE(
        input_shape=(16,),
        latent_dim=2,
        hidden_units=(8,),
        likelihood="discretized-logistic",
    )
    model.compile(optimizer="adam")
    model.fit(x, epochs=1, batch_size=100, verbose=0)
    result = tfvae.certify(model, x[:10], num_samples=20)
    assert result["elbo"] <= result["log_likelihood"] < 0
    np.testing.assert_allclose(
        result["bits_per_dim"], -result["log_likelihood"] / (16 * np.log(2)), rtol=1e-6
    )
    with pytest.raises(ValueError, match="256 levels"):
        tfvae.certify(model, x[:10] + 0.001, num_samples=2)


def _mixture_reference(k, logits, loc, scale, levels):
    """log sum_j softmax(logits)_j P_j(k), from the 60-digit components."""
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    components = np.stack(
        [
            _reference(k, loc[..., j], scale[..., j], levels)
            for j in range(loc.shape[-1])
        ],
        axis=-1,
    )
    top = components.max(-1)
    return top + np.log((weights * np.exp(components - top[..., None])).sum(-1))


def test_a_mixture_sums_to_one_and_matches_the_independent_computation():
    n, components = 40, 3
    logits = RNG.normal(size=(n, components)).astype("float32")
    loc = RNG.uniform(-0.2, 1.2, size=(n, components)).astype("float32")
    scale = np.exp(RNG.uniform(np.log(2e-3), np.log(0.5), (n, components)))
    scale = scale.astype("float32")
    d = DiscretizedLogisticMixture(
        logits[:, None], loc[:, None], scale[:, None], levels=256
    )
    all_levels = d.log_prob(level_values(256)).numpy()  # (n, 256)
    np.testing.assert_allclose(np.exp(all_levels).sum(-1), 1.0, atol=1e-5)
    k = RNG.choice([0, 1, 100, 254, 255], size=n)
    got = DiscretizedLogisticMixture(logits, loc, scale).log_prob(k / 255.0)
    expected = _mixture_reference(k, logits, loc, scale, 256)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-4)
    # Its mean is the weighted mean of the levels.
    probs = np.exp(all_levels.astype("float64"))
    np.testing.assert_allclose(
        d.mean().numpy()[:, 0], probs @ level_values(256), rtol=1e-5, atol=1e-6
    )


def test_a_mixtures_samples_follow_its_probabilities():
    n = 40000
    logits = np.tile(np.float32([[0.0, 1.0]]), (n, 1))
    loc = np.tile(np.float32([[0.2, 0.7]]), (n, 1))
    scale = np.tile(np.float32([[0.01, 0.03]]), (n, 1))
    d = DiscretizedLogisticMixture(logits, loc, scale, levels=256)
    levels = np.round(d.sample(seed=(3, 4)).numpy() * 255).astype(int)
    probs = np.exp(
        DiscretizedLogisticMixture(logits[:1, None], loc[:1, None], scale[:1, None])
        .log_prob(level_values(256))
        .numpy()[0]
    )
    _assert_follows(levels, probs)


def test_a_mixture_head_and_its_name():
    head = heads.get("discretized-logistic:3")
    assert type(head) is heads.DiscretizedLogisticHead and head.num_components == 3
    head.set_event_shape((4,))
    features = RNG.normal(size=(5, 6)).astype("float32")
    p = head(features)
    assert head.num_params == 9
    params = features @ head.kernel.numpy() + head.bias.numpy()
    logits, loc, raw = (
        np.stack(np.split(part, 3, axis=-1), axis=-1)
        for part in np.split(params, 3, axis=-1)
    )
    scale = (np.log1p(np.exp(raw)) + head.min_scale).astype("float32")
    x = RNG.integers(0, 256, size=(5, 4))
    expected = _mixture_reference(x, logits, loc, scale, 256).sum(-1)
    np.testing.assert_allclose(p.log_prob(x / 255.0).numpy(), expected, rtol=1e-5)
    outputs = head.output_parameters(p)
    assert outputs["logits"].shape == (5, 4, 3)
    clone = assert_config_round_trip(head)
    assert clone.num_components == 3
    for bad in ("discretized-logistic:0", "discretized-logistic:x"):
        with pytest.raises(ValueError, match="must be a positive integer"):
            heads.get(bad)


@pytest.mark.parametrize(
    "likelihood", ["discretized-logistic", "discretized-logistic:2"]
)
def test_the_shared_model_test_with_grey_levels(likelihood, tmp_path):
    # Every round trip (config, .keras, preset, SavedModel signatures) of a
    # VAE whose decoder is a discretized logistic, on 8-bit levels.
    x = RNG.integers(0, 256, size=(6, 12)).astype("float32") / 255.0
    config = dict(input_shape=(12,), latent_dim=3, hidden_units=(8,))
    run_model_test(tfvae.VAE, {**config, "likelihood": likelihood}, x, tmp_path)
