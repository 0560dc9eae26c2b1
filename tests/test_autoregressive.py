"""The autoregressive head: exact, normalized, causal, and a full model part."""

import itertools

import helpers
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from model_test_case import run_model_test

import tfvae
from tfvae import heads
from tfvae.autoregressive import (
    AutoregressivePixels,
    BernoulliPixelCNNHead,
    PixelCNNHead,
    raster_mask,
)


def built_head(shape=(5, 5, 1), features=6, seed=0, binary=False, **kwargs):
    """A head on flat features, its biases random so that every weight matters.

    `binary`: a `BernoulliPixelCNNHead`, else a `PixelCNNHead`.
    """
    kwargs = {"filters": 4, "kernel_size": 3, **kwargs}
    if binary:
        head = BernoulliPixelCNNHead(event_shape=shape, **kwargs)
    else:
        head = PixelCNNHead(event_shape=shape, **{"num_components": 3, **kwargs})
    head.build((None, features))
    helpers.randomize_biases(head, np.random.default_rng(seed))
    return head


def levels_of_image(rng, shape, levels=256, count=3):
    return (rng.integers(0, levels, (count, *shape)) / (levels - 1)).astype("float32")


def factor_parameters(factors):
    """The parameters of every pixel's factor, (batch, H, W, P), either head."""
    if isinstance(factors, tfp.distributions.Bernoulli):
        return factors.logits[..., None]
    return tf.concat([factors.logits, factors.loc, factors.scale], axis=-1)


def numpy_mixture_log_prob(k, logits, loc, scale, levels):
    """log P(level k) of a mixture of discretized logistics, in float64 numpy."""
    top = levels - 1.0
    k, logits, loc, scale = (np.asarray(v, np.float64) for v in (k, logits, loc, scale))
    sigmoid = lambda t: 1.0 / (1.0 + np.exp(-t))  # noqa: E731
    upper = np.where(
        k[..., None] >= top,
        1.0,
        sigmoid((k[..., None] / top + 0.5 / top - loc) / scale),
    )
    lower = np.where(
        k[..., None] <= 0, 0.0, sigmoid((k[..., None] / top - 0.5 / top - loc) / scale)
    )
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.log(np.sum(weights * (upper - lower), axis=-1))


def test_the_masks_see_only_earlier_pixels():
    np.testing.assert_array_equal(
        raster_mask(3, include_center=False)[..., 0, 0],
        [[1, 1, 1], [1, 0, 0], [0, 0, 0]],
    )
    np.testing.assert_array_equal(
        raster_mask(3, include_center=True)[..., 0, 0],
        [[1, 1, 1], [1, 1, 0], [0, 0, 0]],
    )


@pytest.mark.parametrize("binary", [False, True])
def test_the_factor_of_a_pixel_depends_on_the_pixels_before_it_only(binary):
    head = built_head(num_layers=2, binary=binary)
    levels = 2 if binary else 256
    x = levels_of_image(np.random.default_rng(1), (5, 5, 1), levels=levels, count=1)
    x = tf.constant(x)
    c = head.conditioning(tf.random.stateless_normal((1, 6), (0, 1)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        params = factor_parameters(head.conditionals(x, c))
    width = params.shape[-1]
    jacobian = tape.jacobian(params, x).numpy().reshape(25, width, 25)  # raster
    influence = np.abs(jacobian).max(axis=1)  # [i, j]: does x_j move pixel i's factor
    later = np.triu(np.ones((25, 25), bool))  # j >= i
    assert influence[later].max() == 0.0
    assert (influence[np.tril(np.ones((25, 25), bool), -1)] > 0).mean() > 0.3


def test_every_factor_is_normalized_over_the_levels_edges_included():
    head = built_head()
    rng = np.random.default_rng(2)
    x = levels_of_image(rng, (5, 5, 1), count=2)
    factors = head.conditionals(x, head.conditioning(rng.normal(size=(2, 6))))
    levels = np.arange(256, dtype="float32") / 255
    probs = np.exp(factors.log_prob(levels.reshape(256, 1, 1, 1)).numpy())
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=2e-5)
    assert np.all(probs > 0)


def test_log_prob_is_the_sum_of_the_factors_computed_in_numpy():
    head = built_head()
    rng = np.random.default_rng(3)
    x = levels_of_image(rng, (5, 5, 1))
    x[0, 0, :3, 0] = [0.0, 1.0, 0.0]  # the edge levels
    features = rng.normal(size=(3, 6)).astype("float32")
    p = head(features)
    assert isinstance(p, AutoregressivePixels)
    factors = head.conditionals(x, head.conditioning(features))
    expected = numpy_mixture_log_prob(
        np.round(x[..., 0] * 255), factors.logits, factors.loc, factors.scale, 256
    ).sum(axis=(1, 2))
    np.testing.assert_allclose(p.log_prob(x), expected, rtol=1e-5)


@pytest.mark.parametrize("binary", [False, True])
def test_the_joint_of_every_image_sums_to_one_and_samples_follow_it(binary):
    """On 2 x 2 images of 3 levels (81 images) or binary ones (16), exactly."""
    if binary:
        head, levels = built_head(shape=(2, 2, 1), binary=True), 2
    else:
        head = built_head(shape=(2, 2, 1), levels=3, num_components=2)
        levels = 3
    p = head(np.random.default_rng(4).normal(size=(1, 6)).astype("float32"))
    codes_of = levels ** np.arange(3, -1, -1)  # raster order, most significant first
    images = np.array(list(itertools.product(range(levels), repeat=4)), "float32")
    images /= levels - 1
    log_probs = np.array([p.log_prob(image.reshape(1, 2, 2, 1))[0] for image in images])
    probs = np.exp(log_probs)
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
    n = 4000
    draws = p.sample(n, seed=(5, 6)).numpy().reshape(n, 4)
    codes = np.round(draws * (levels - 1)) @ codes_of
    frequencies = np.bincount(codes.astype(int), minlength=levels**4) / n
    sigma = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(frequencies - probs) <= 5 * sigma + 1e-3)


def test_the_binary_log_prob_is_the_sum_of_bernoulli_factors_in_numpy():
    head = built_head(binary=True)
    rng = np.random.default_rng(12)
    x = levels_of_image(rng, (5, 5, 1), levels=2)
    features = rng.normal(size=(3, 6)).astype("float32")
    logits = np.float64(head.conditionals(x, head.conditioning(features)).logits)
    log_sigmoid = lambda t: -np.logaddexp(0.0, -t)  # noqa: E731
    x64 = np.float64(x[..., 0])
    expected = x64 * log_sigmoid(logits) + (1 - x64) * log_sigmoid(-logits)
    np.testing.assert_allclose(
        head(features).log_prob(x), expected.sum(axis=(1, 2)), rtol=1e-5
    )
    assert head.discrete_values.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("binary", [False, True])
def test_log_likelihood_with_and_without_prepared_is_the_distribution_s(binary):
    head = built_head(binary=binary)
    rng = np.random.default_rng(7)
    x = levels_of_image(rng, (5, 5, 1), levels=2 if binary else 256, count=2)
    features = rng.normal(size=(3 * 2, 6)).astype("float32")  # S = 3, sample-major
    expected = head(features).log_prob(np.tile(x, (3, 1, 1, 1)))
    np.testing.assert_allclose(head.log_likelihood(features, x, 3), expected, rtol=1e-6)
    fused = head.log_likelihood(features, x, 3, prepared=head.prepare(x))
    np.testing.assert_allclose(fused, expected, rtol=1e-6)


@pytest.mark.parametrize("binary", [False, True])
def test_the_sequential_mean_is_the_mean_of_each_factor_given_it(binary):
    head = built_head(binary=binary)
    p = head(np.random.default_rng(8).normal(size=(2, 6)).astype("float32"))
    m = p.sequential_mean()
    # Pixel i's factor depends on m_<i only, so m_i is its mean at m itself.
    factors = head.conditionals(m, p.conditioning)
    np.testing.assert_allclose(m[..., 0], factors.mean(), atol=1e-6)
    np.testing.assert_array_equal(head.picture(p), m)
    with pytest.raises(NotImplementedError, match="sequential_mean"):
        p.mean()


@pytest.mark.parametrize("binary", [False, True])
def test_samples_are_levels_and_seeded(binary):
    head = built_head(binary=binary)
    top = 1 if binary else 255
    p = head(np.random.default_rng(9).normal(size=(2, 6)).astype("float32"))
    a, b = p.sample(3, seed=(1, 2)), p.sample(3, seed=(1, 2))
    assert a.shape == (3, 2, 5, 5, 1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.round(a.numpy() * top) / top, a.numpy())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"event_shape": (784,)}, r"input_shape=\(28, 28, 1\)"),
        ({"event_shape": (8, 8, 3)}, "one-channel images"),
        ({"kernel_size": 4}, "`kernel_size` must be odd"),
        ({"num_layers": -1}, "`num_layers` must be an integer >= 0"),
        ({"filters": 0}, "filters"),
        ({"min_scale": -1.0}, "`min_scale` must be"),
        ({"levels": 1}, "`levels` must be an integer >= 2"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PixelCNNHead(**kwargs)
    if "levels" not in kwargs and "min_scale" not in kwargs:
        with pytest.raises(ValueError, match=match):
            BernoulliPixelCNNHead(**kwargs)


def test_a_flat_model_is_refused_before_any_weight():
    with pytest.raises(ValueError, match=r"image-shaped data, e.g. input_shape"):
        tfvae.VAE(input_shape=(64,), latent_dim=2, likelihood="pixelcnn")


def test_names_give_the_head():
    head = heads.get("pixelcnn:3")
    assert isinstance(head, PixelCNNHead) and head.num_components == 3
    assert heads.get("pixelcnn").num_components == 5
    head = heads.get("pixelcnn:3:16")
    assert (head.num_components, head.filters) == (3, 16)
    for name in ("pixelcnn:0", "pixelcnn:3:", "pixelcnn:3:16:2", "pixelcnn:x"):
        with pytest.raises(ValueError, match=r"The K and F of pixelcnn:K\[:F\]"):
            heads.get(name)
    assert isinstance(heads.get("pixelcnn-bernoulli"), BernoulliPixelCNNHead)
    assert heads.get("pixelcnn-bernoulli:8").filters == 8
    for name in ("pixelcnn-bernoulli:0", "pixelcnn-bernoulli:", "pixelcnn-bernoulli:x"):
        with pytest.raises(ValueError, match=r"The F of pixelcnn-bernoulli:F"):
            heads.get(name)


@pytest.mark.parametrize(
    ("architecture", "binary"), [("mlp", False), ("conv", False), ("mlp", True)]
)
def test_a_vae_with_the_head_keeps_every_promise(architecture, binary, tmp_path):
    rng = np.random.default_rng(10)
    x = levels_of_image(rng, (8, 8, 1), levels=2 if binary else 256, count=6)
    sizes = dict(
        filters=4,
        kernel_size=3,
        num_layers=1,
        projection="pixel" if architecture == "conv" else "dense",
    )
    if binary:
        likelihood = BernoulliPixelCNNHead(**sizes)
    else:
        likelihood = PixelCNNHead(num_components=2, **sizes)
    config = {
        "input_shape": (8, 8, 1),
        "latent_dim": 2,
        "hidden_units": (8,),
        "likelihood": likelihood,
        "architecture": architecture,
    }
    run_model_test(tfvae.VAE, config, x, tmp_path)


@pytest.mark.parametrize("likelihood", ["pixelcnn:2", "pixelcnn-bernoulli:4"])
def test_a_hierarchical_vae_with_the_head_trains_and_certifies(likelihood):
    rng = np.random.default_rng(11)
    levels = 2 if "bernoulli" in likelihood else 256
    x = levels_of_image(rng, (8, 8, 1), levels=levels, count=200)
    model = tfvae.HierarchicalVAE(
        input_shape=(8, 8, 1),
        latent_dims=(3, 2),
        hidden_units=((16,), (8,)),
        likelihood=likelihood,
        prior="vamp:4",
        inference="top_down",
        skip=True,
        objective="iwae",
        num_samples=2,
    )
    model.compile(optimizer="adam")
    history = model.fit(x, batch_size=100, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    result = tfvae.certify(model, x[:20], num_samples=10)
    assert result["log_likelihood"] >= result["elbo"] - 3 * result["elbo_stderr"]
    assert model.sample(2, seed=0).shape == (2, 8, 8, 1)
