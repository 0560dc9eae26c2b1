import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip, log_sigmoid, normal_log_density, softplus

import tfvae
from tfvae import heads

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(4, 5)).astype("float32")


def _params(head, features):
    """The head's affine projection, recomputed in numpy."""
    flat = features.reshape(len(features), -1)
    params = flat @ head.kernel.numpy() + head.bias.numpy()
    return np.split(params, head.num_params, axis=-1)


def test_bernoulli_log_prob_matches_hand_computation():
    head = heads.BernoulliHead(event_shape=(2, 3))
    p = head(FEATURES)
    x = (RNG.random((4, 2, 3)) < 0.5).astype("float32")
    (logits,) = _params(head, FEATURES)
    logits = logits.reshape(4, 2, 3)
    expected = (x * log_sigmoid(logits) + (1 - x) * log_sigmoid(-logits)).sum((1, 2))
    assert p.event_shape == (2, 3)
    np.testing.assert_allclose(p.log_prob(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.mean().numpy(), 1 / (1 + np.exp(-logits)), rtol=1e-5)


@pytest.mark.parametrize("scale", ["diagonal", "shared", 0.3])
def test_gaussian_log_prob_matches_hand_computation(scale):
    head = heads.GaussianHead(scale=scale, event_shape=(6,))
    p = head(FEATURES)
    if scale == "shared":
        head.raw_scale.assign(RNG.normal(size=(6,)))
    p = head(FEATURES)
    params = _params(head, FEATURES)
    loc = params[0]
    if scale == "diagonal":
        sigma = softplus(params[1]) + head.min_scale
    elif scale == "shared":
        sigma = np.broadcast_to(
            softplus(head.raw_scale.numpy()) + head.min_scale, loc.shape
        )
    else:
        sigma = np.full_like(loc, scale)
    x = RNG.normal(size=(4, 6)).astype("float32")
    expected = normal_log_density(x, loc, sigma).sum(-1)
    np.testing.assert_allclose(p.log_prob(x).numpy(), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(p.stddev().numpy(), sigma, rtol=1e-5)
    np.testing.assert_allclose(p.mean().numpy(), loc, rtol=1e-5, atol=1e-6)


def test_learned_scales_are_floored():
    head = heads.GaussianHead(scale="diagonal", min_scale=0.01, event_shape=(3,))
    head.build((None, 2))
    head.kernel.assign(np.zeros((2, 6)))
    head.bias.assign(np.array([0, 0, 0, -100, -100, -100], "float32"))
    scale = head(np.ones((1, 2), "float32")).stddev().numpy()
    np.testing.assert_allclose(scale, 0.01, rtol=1e-6)


def test_shared_scale_is_one_weight_per_dimension_shared_by_examples():
    head = heads.GaussianHead(scale="shared", event_shape=(3,))
    scale = head(FEATURES).stddev().numpy()
    assert head.raw_scale.shape == (3,)
    np.testing.assert_array_equal(scale, np.broadcast_to(scale[0], scale.shape))


def test_posterior_head_is_a_diagonal_gaussian():
    head = heads.DiagonalGaussianHead(event_shape=(2,))
    q = head(FEATURES)
    assert q.event_shape == (2,) and q.batch_shape == (4,)
    assert head.min_scale == 1e-4
    assert "scale" not in head.get_config()


@pytest.mark.parametrize(
    "head",
    [
        heads.BernoulliHead(event_shape=(28, 28, 1)),
        heads.GaussianHead(scale="diagonal", event_shape=(5,)),
        heads.GaussianHead(scale="shared", min_scale=0.05, event_shape=(5,)),
        heads.GaussianHead(scale=0.5, event_shape=(5,)),
        heads.DiagonalGaussianHead(event_shape=(7,)),
    ],
    ids=["bernoulli", "diagonal", "shared", "fixed", "posterior"],
)
def test_heads_config_round_trip(head):
    clone = assert_config_round_trip(head)
    assert heads.get(heads.serialize(head)).get_config() == head.get_config()
    assert clone.event_shape == head.event_shape


def test_log_probs_are_float32_under_mixed_precision():
    head = heads.GaussianHead(scale="shared", event_shape=(3,), dtype="mixed_bfloat16")
    p = head(FEATURES)
    assert head.compute_dtype == "bfloat16"
    assert p.log_prob(np.zeros((4, 3), "float32")).dtype == "float32"


def test_get_accepts_names_heads_and_configs():
    assert type(heads.get("bernoulli")) is heads.BernoulliHead
    gaussian = heads.get("Gaussian")
    assert type(gaussian) is heads.GaussianHead and gaussian.scale == "diagonal"
    head = heads.GaussianHead(scale=0.1)
    assert heads.get(head) is head


def test_get_rejects_unknown_names_listing_valid_ones():
    with pytest.raises(
        ValueError, match=r"Unknown likelihood 'poisson'.*bernoulli.*gaussian"
    ):
        heads.get("poisson")
    with pytest.raises(ValueError, match="likelihood=42"):
        heads.get(42)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": "full"}, "scale='full'"),
        ({"scale": -1.0}, "scale=-1.0"),
        ({"scale": float("nan")}, "scale=nan"),
        ({"min_scale": -0.1}, "min_scale=-0.1"),
        ({"event_shape": (0, 3)}, r"event_shape=\(0, 3\)"),
    ],
)
def test_bad_head_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        heads.GaussianHead(**kwargs)


def test_head_without_event_shape_fails_clearly():
    with pytest.raises(ValueError, match="has no event_shape"):
        heads.BernoulliHead()(FEATURES)


def test_head_event_shape_must_match_model():
    with pytest.raises(ValueError, match=r"event_shape=\(10,\)"):
        tfvae.VAE(input_shape=(6,), latent_dim=2, likelihood=heads.BernoulliHead((10,)))


def test_heads_serialize_inside_keras_objects():
    config = keras.saving.serialize_keras_object(
        heads.GaussianHead(0.25, event_shape=(4,))
    )
    assert config["registered_name"] == "tfvae>GaussianHead"


@pytest.mark.parametrize(
    "head",
    [
        heads.BernoulliHead(event_shape=(4, 7)),
        heads.GaussianHead(scale="diagonal", event_shape=(5,)),
        heads.GaussianHead(scale=0.5, event_shape=(5,)),
    ],
    ids=["bernoulli-fused", "gaussian-diagonal", "gaussian-fixed"],
)
@pytest.mark.parametrize("num_samples", [1, 3])
def test_log_likelihood_of_several_samples_per_example(head, num_samples):
    # num_samples samples of features for each of two examples, sample-major.
    features = RNG.normal(size=(2 * num_samples, 5)).astype("float32")
    features = tf.constant(features)
    x = (RNG.random((2, *head.event_shape)) < 0.4).astype("float32")
    repeated = np.tile(x, (num_samples,) + (1,) * (x.ndim - 1))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        fused = head.log_likelihood(features, x, num_samples)
        reference = head(features).log_prob(repeated)
    np.testing.assert_allclose(fused.numpy(), reference.numpy(), rtol=1e-5, atol=1e-4)
    for weight in [features, *head.trainable_weights]:
        np.testing.assert_allclose(
            tape.gradient(fused, weight),
            tape.gradient(reference, weight),
            rtol=1e-4,
            atol=1e-5,
        )


@pytest.mark.parametrize(
    "head",
    [
        heads.BernoulliHead(event_shape=(4, 7)),
        heads.GaussianHead(scale="diagonal", event_shape=(5,)),
    ],
    ids=["bernoulli", "gaussian"],
)
@pytest.mark.parametrize("num_samples", [1, 3])
def test_prepared_log_likelihood_is_the_same(head, num_samples):
    # What the estimator computes once per chunk gives the same values.
    features = tf.constant(RNG.normal(size=(2 * num_samples, 5)), tf.float32)
    x = (RNG.random((2, *head.event_shape)) < 0.4).astype("float32")
    plain = head.log_likelihood(features, x, num_samples)
    prepared = head.log_likelihood(
        features, x, num_samples, prepared=head.prepare(tf.constant(x))
    )
    np.testing.assert_array_equal(prepared.numpy(), plain.numpy())


def test_prepare_of_an_unbuilt_bernoulli_head_fails_clearly():
    with pytest.raises(ValueError, match="needs a built head"):
        heads.BernoulliHead(event_shape=(3,)).prepare(np.zeros((2, 3), "float32"))


@pytest.mark.parametrize("size", [784, 97])  # blocks of 56; a prime falls back
def test_sum_softplus_is_accurate_for_extreme_logits(size):
    logits = RNG.normal(scale=30, size=(50, size)).astype("float32")
    logits[0, :7] = [-200, 200, 0, -90, 90, 1e-5, -3e-4]
    expected = np.logaddexp(0, logits.astype("float64")).sum(-1)
    value = heads.sum_softplus(tf.constant(logits)).numpy()
    np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-3)
    with tf.GradientTape() as tape:
        variable = tf.constant(logits)
        tape.watch(variable)
        total = tf.reduce_sum(heads.sum_softplus(variable))
    np.testing.assert_allclose(
        tape.gradient(total, variable),
        1 / (1 + np.exp(-logits.astype("float64"))),
        rtol=1e-6,
        atol=1e-30,  # float32 flushes sigmoid(-200) = 1e-87 to 0
    )


def test_sum_softplus_of_mostly_saturated_logits_is_float32_accurate():
    # A trained decoder's logits: mostly far below 0 (the background), where
    # softplus is tiny; the sum must not carry errors of the size of |l|.
    logits = RNG.normal(-60, 30, size=(200, 784)).astype("float32")
    logits[:, :100] = RNG.normal(3, 3, size=(200, 100))
    expected = np.logaddexp(0, logits.astype("float64")).sum(-1)
    value = heads.sum_softplus(tf.constant(logits)).numpy()
    # float32 rounding of a sum of 784 terms, the largest about 10.
    np.testing.assert_allclose(value, expected, rtol=0, atol=2e-4)
