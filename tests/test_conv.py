"""The convolutional networks: gated convolutions, the per-pixel projection of
the heads, `tfvae.networks.conv_encoder`/`conv_decoder`, the models'
`architecture="conv"` and the per-layer networks of `HierarchicalVAE`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    as_json,
    assert_config_round_trip,
    assert_keras_round_trip,
    log_sigmoid,
    normal_log_density,
    softplus,
)
from model_test_case import run_model_test

import tfvae
from tfvae import heads
from tfvae.layers import GatedConv2D, GatedConv2DTranspose
from tfvae.networks import conv_decoder, conv_encoder

RNG = np.random.default_rng(7)
IMAGE = (8, 8, 1)
X_IMAGES = (RNG.random((64, *IMAGE)) < 0.3).astype("float32")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def conv_vae(**kwargs):
    config = dict(
        input_shape=IMAGE,
        latent_dim=3,
        hidden_units=(),
        activation="tanh",
        architecture="conv",
    )
    return tfvae.VAE(**{**config, **kwargs})


def conv_hvae(**kwargs):
    config = dict(
        input_shape=IMAGE,
        latent_dims=(4, 3),
        hidden_units=((), (6,)),
        activation="tanh",
        architecture="conv",
        inference="top_down",
        skip=True,
    )
    return tfvae.HierarchicalVAE(**{**config, **kwargs})


# --- Gated convolutions ---------------------------------------------------------


@pytest.mark.parametrize(
    "cls, reference, strides",
    [
        (GatedConv2D, keras.layers.Conv2D, 1),
        (GatedConv2D, keras.layers.Conv2D, 2),
        (GatedConv2DTranspose, keras.layers.Conv2DTranspose, 2),
    ],
)
@pytest.mark.parametrize("activation", [None, "tanh"])
def test_gated_convolution_equals_two_keras_convolutions(
    cls, reference, strides, activation
):
    layer = cls(3, 3, strides=strides, activation=activation)
    x = RNG.normal(size=(2, 6, 6, 4)).astype("float32")
    layer.build(x.shape)
    kernel = layer.projection.kernel.numpy()
    bias = RNG.normal(size=6).astype("float32")
    layer.projection.bias.assign(bias)
    # The value's channels come first in the shared kernel, the gate's second
    # (the output-channel axis: last for Conv2D, third for the transpose).
    axis = -1 if reference is keras.layers.Conv2D else -2
    halves = np.split(kernel, 2, axis=axis)
    value, gate = (reference(3, 3, strides=strides, padding="same") for _ in "vg")
    for conv, half, half_bias in zip(
        (value, gate), halves, np.split(bias, 2), strict=True
    ):
        conv.build(x.shape)
        conv.set_weights([half, half_bias])
    v = value(x).numpy()
    expected = (np.tanh(v) if activation == "tanh" else v) * sigmoid(gate(x).numpy())
    y = layer(x).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape(x.shape) == y.shape
    assert layer.compute_output_shape((None, 6, 6, 4))[1:] == y.shape[1:]


def test_gated_convolution_equals_numpy():
    # A 1x1 kernel: the convolution is a matmul at each location.
    layer = GatedConv2D(2, 1, activation="tanh")
    x = RNG.normal(size=(3, 4, 5, 3)).astype("float32")
    layer.build(x.shape)
    layer.projection.bias.assign(RNG.normal(size=4))
    kernel = layer.projection.kernel.numpy()[0, 0]  # (3, 4)
    projected = x @ kernel + layer.projection.bias.numpy()
    expected = np.tanh(projected[..., :2]) * sigmoid(projected[..., 2:])
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [GatedConv2D, GatedConv2DTranspose])
def test_gated_convolution_config_round_trip(cls, tmp_path):
    layer = cls(4, (3, 2), strides=2, padding="valid", activation="relu", name="g")
    clone = assert_config_round_trip(layer)
    assert clone.kernel_size == (3, 2) and clone.strides == (2, 2)
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == f"tfvae>{cls.__name__}"
    model = keras.Sequential([keras.Input((6, 6, 2)), layer])
    loaded = assert_keras_round_trip(model, RNG.normal(size=(2, 6, 6, 2)), tmp_path)
    assert type(loaded.layers[0]) is cls


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 0}, "Received: filters=0"),
        ({"filters": 2.5}, "Received: filters=2.5"),
        ({"padding": "full"}, "Received: padding='full'"),
    ],
)
def test_gated_convolution_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GatedConv2D(**{"filters": 3, "kernel_size": 3, **kwargs})


# --- The per-pixel projection of the heads --------------------------------------

EVENT = (3, 4, 2)  # two channels: the split is along the channel axis
FEATURE_MAPS = RNG.normal(size=(5, 3, 4, 6)).astype("float32")


def pixel_params(head, features):
    """The per-pixel projection in numpy: one matmul at every location."""
    params = np.einsum("bhwf,fp->bhwp", features, head.kernel.numpy())
    params = params + head.bias.numpy()
    return np.split(params, head.num_params, axis=-1)


def built(head):
    head(FEATURE_MAPS)
    for weight in head.weights:  # random biases and shared scales
        if weight.path.endswith(("bias", "raw_scale")):
            weight.assign(RNG.normal(scale=0.5, size=weight.shape))
    return head


def test_pixel_projection_bernoulli_equals_numpy():
    head = built(heads.BernoulliHead(event_shape=EVENT, projection="pixel"))
    assert head.kernel.shape == (6, 2) and head.bias.shape == (2,)
    (logits,) = pixel_params(head, FEATURE_MAPS)
    x = (RNG.random((5, *EVENT)) < 0.4).astype("float32")
    p = head(FEATURE_MAPS)
    assert p.event_shape == EVENT and p.batch_shape == (5,)
    expected = (x * log_sigmoid(logits) + (1 - x) * log_sigmoid(-logits)).sum((1, 2, 3))
    np.testing.assert_allclose(p.log_prob(x), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(p.mean(), sigmoid(logits), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", ["diagonal", "shared", 0.3, "posterior"])
def test_pixel_projection_gaussian_equals_numpy(scale):
    if scale == "posterior":
        head = heads.DiagonalGaussianHead(event_shape=EVENT, projection="pixel")
    else:
        head = heads.GaussianHead(scale=scale, event_shape=EVENT, projection="pixel")
    head = built(head)
    params = pixel_params(head, FEATURE_MAPS)
    loc = params[0]
    if head.scale == "diagonal":
        # Means and scales are the two halves of the channels at each pixel.
        assert head.kernel.shape == (6, 4)
        sigma = softplus(params[1]) + head.min_scale
    elif scale == "shared":
        assert head.raw_scale.shape == EVENT
        sigma = softplus(head.raw_scale.numpy()) + head.min_scale
    else:
        sigma = scale
    x = RNG.normal(size=(5, *EVENT)).astype("float32")
    p = head(FEATURE_MAPS)
    expected = normal_log_density(x, loc, sigma).sum((1, 2, 3))
    np.testing.assert_allclose(p.log_prob(x), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(p.mean(), loc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.stddev(), np.broadcast_to(sigma, loc.shape), rtol=1e-5)


@pytest.mark.parametrize(
    "head",
    [
        heads.BernoulliHead(event_shape=EVENT, projection="pixel"),
        heads.GaussianHead(scale="diagonal", event_shape=EVENT, projection="pixel"),
        heads.GaussianHead(scale="shared", event_shape=EVENT, projection="pixel"),
    ],
    ids=["bernoulli-fused", "gaussian-diagonal", "gaussian-shared"],
)
@pytest.mark.parametrize("num_samples", [1, 3])
def test_pixel_log_likelihood_of_several_samples_per_example(head, num_samples):
    features = tf.constant(
        RNG.normal(size=(2 * num_samples, 3, 4, 6)).astype("float32")
    )
    x = (RNG.random((2, *EVENT)) < 0.4).astype("float32")
    repeated = np.tile(x, (num_samples, 1, 1, 1))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        fused = head.log_likelihood(features, x, num_samples)
        reference = head(features).log_prob(repeated)
    np.testing.assert_allclose(fused, reference, rtol=1e-5, atol=1e-4)
    for weight in [features, *head.trainable_weights]:
        np.testing.assert_allclose(
            tape.gradient(fused, weight),
            tape.gradient(reference, weight),
            rtol=1e-4,
            atol=1e-5,
        )
    prepared = head.log_likelihood(
        features, x, num_samples, prepared=head.prepare(tf.constant(x))
    )
    np.testing.assert_allclose(prepared, fused, rtol=1e-6, atol=1e-5)


def test_pixel_projection_config_and_the_old_configs():
    head = heads.GaussianHead(scale="shared", event_shape=EVENT, projection="pixel")
    assert assert_config_round_trip(head).projection == "pixel"
    assert heads.get(heads.serialize(head)).projection == "pixel"
    # A config written before `projection` existed is a dense head.
    config = heads.BernoulliHead(event_shape=(6,)).get_config()
    assert config.pop("projection") == "dense"
    assert heads.BernoulliHead.from_config(config).projection == "dense"
    assert heads.get("gaussian-fixed:0.5", projection="pixel").projection == "pixel"
    assert heads.get("bernoulli").projection == "dense"


def test_pixel_projection_refuses_mismatched_features_and_flat_events():
    head = heads.BernoulliHead(event_shape=EVENT, projection="pixel")
    with pytest.raises(
        ValueError,
        match=r"event_shape=\(3, 4, 2\).*\(batch, 3, 4, features\).*"
        r"Received: features.shape=\(5, 4, 3, 6\)",
    ):
        head(np.zeros((5, 4, 3, 6), "float32"))
    with pytest.raises(ValueError, match=r"features.shape=\(5, 72\)"):
        head(np.zeros((5, 72), "float32"))
    head(FEATURE_MAPS)  # built: a call with other maps is refused too
    with pytest.raises(ValueError, match=r"features.shape=\(5, 6, 8, 6\)"):
        head(np.zeros((5, 6, 8, 6), "float32"))
    with pytest.raises(ValueError, match=r"rank >= 2.*Received: event_shape=\(12,\)"):
        heads.BernoulliHead(event_shape=(12,), projection="pixel")
    with pytest.raises(ValueError, match=r"Received: event_shape=\(12,\)"):
        heads.GaussianHead(projection="pixel").set_event_shape((12,))
    with pytest.raises(ValueError, match="Received: projection='conv'"):
        heads.BernoulliHead(projection="conv")


# --- The networks ---------------------------------------------------------------


def test_conv_encoder_and_decoder_shapes_and_layers():
    encoder = conv_encoder((12, 16, 3), filters=(4, 8), name="e")
    assert encoder.name == "e"
    assert encoder(np.zeros((2, 12, 16, 3), "float32")).shape == (2, 3 * 4 * 8)
    kinds = [type(layer) for layer in encoder.layers]
    assert kinds == [GatedConv2D] * 3 + [keras.layers.Flatten]
    assert [layer.strides for layer in encoder.layers[:3]] == [(1, 1), (2, 2), (2, 2)]
    decoder = conv_decoder((12, 16, 3), filters=(4, 8))
    maps = decoder(np.zeros((2, 5), "float32"))
    assert maps.shape == (2, 12, 16, 4)  # feature maps, for a pixel head
    kinds = [type(layer) for layer in decoder.layers]
    assert kinds == [
        tfvae.layers.GatedDense,
        keras.layers.Reshape,
        GatedConv2DTranspose,
        GatedConv2DTranspose,
        GatedConv2D,
    ]
    assert decoder.layers[1].target_shape == (3, 4, 8)  # a quarter of H and W
    # hidden_units: dense layers after the encoder's convolutions, before the
    # decoder's map; gated=True makes them GatedDense.
    encoder = conv_encoder((8, 8, 1), hidden_units=(10,), gated=True)
    assert isinstance(encoder.layers[-1], tfvae.layers.GatedDense)
    assert encoder(X_IMAGES[:2]).shape == (2, 10)
    decoder = conv_decoder((8, 8, 1), hidden_units=(10,))
    assert isinstance(decoder.layers[0], keras.layers.Dense)
    # Three stages need H and W divisible by 8.
    assert conv_encoder((8, 8, 1), filters=(2, 4, 8))(X_IMAGES[:1]).shape == (1, 8)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: conv_encoder((784,)), r"conv_encoder: `input_shape`.*\(784,\)"),
        (lambda: conv_encoder((10, 8, 1)), r"divisible by 4.*\(10, 8, 1\)"),
        (lambda: conv_encoder((12, 12, 1), filters=(2, 4, 8)), "divisible by 8"),
        (lambda: conv_decoder((8, 8)), r"conv_decoder: `output_shape`.*\(8, 8\)"),
        (lambda: conv_decoder((8, 8, 1), filters=()), r"Received: filters=\(\)"),
    ],
)
def test_conv_networks_refuse_bad_shapes(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# --- The models -----------------------------------------------------------------


def test_the_shared_model_test_conv_vae(tmp_path):
    model = run_model_test(
        tfvae.VAE,
        dict(
            input_shape=IMAGE,
            latent_dim=3,
            hidden_units=(),
            activation="tanh",
            architecture="conv",
        ),
        X_IMAGES[:4],
        tmp_path,
    )
    assert isinstance(model.encoder.layers[0], GatedConv2D)
    assert model.likelihood.projection == "pixel"
    assert model.likelihood.kernel.shape == (32, 1)  # 32 features per pixel


def test_the_shared_model_test_conv_hvae(tmp_path):
    model = run_model_test(
        tfvae.HierarchicalVAE,
        dict(
            input_shape=IMAGE,
            latent_dims=(4, 3),
            hidden_units=((), (6,)),
            activation="tanh",
            architecture="conv",
            inference="top_down",
            skip=True,
        ),
        X_IMAGES[:4],
        tmp_path,
    )
    # The networks that touch x are convolutional; the one between the
    # latent layers is an MLP.
    assert isinstance(model.inference_networks[0].layers[0], GatedConv2D)
    assert isinstance(model.generative_networks[0].layers[-1], GatedConv2D)
    assert isinstance(model.generative_networks[1].layers[0], keras.layers.Dense)
    assert model.generative_networks[0].layers[0].projection.kernel.shape[0] == 7


@pytest.mark.parametrize("build", [conv_vae, conv_hvae], ids=["vae", "hvae"])
def test_conv_models_fit_one_epoch(build):
    model = build(seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.evaluate(X_IMAGES, batch_size=64, verbose=0, return_dict=True)
    history = model.fit(X_IMAGES, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["elbo"][0])
    after = model.evaluate(X_IMAGES, batch_size=64, verbose=0, return_dict=True)
    assert after["elbo"] > before["elbo"]
    assert model.sample(2, seed=0).shape == (2, *IMAGE)


def test_hidden_units_are_dense_layers_between_the_convolutions_and_z():
    model = conv_vae(hidden_units=(16, 8), gated=True)
    assert [layer.units for layer in model.encoder.layers[-2:]] == [16, 8]
    assert [layer.units for layer in model.decoder.layers[:2]] == [8, 16]
    assert model.posterior.kernel.shape == (8, 6)
    hvae = conv_hvae(hidden_units=((10,), (6,)))
    assert hvae.inference_networks[0].layers[-1].units == 10
    assert hvae.generative_networks[0].layers[0].units == 10


@pytest.mark.parametrize("build", [conv_vae, conv_hvae], ids=["vae", "hvae"])
def test_conv_heads_from_names_instances_and_refusals(build):
    model = build(likelihood="gaussian-shared")
    assert model.likelihood.projection == "pixel"
    assert model.likelihood.raw_scale.shape == IMAGE
    head = heads.GaussianHead(scale=0.3, projection="pixel")
    assert build(likelihood=head).likelihood is head
    with pytest.raises(
        ValueError,
        match=r"projection='pixel'.*Received: likelihood=GaussianHead with "
        r"projection='dense'",
    ):
        build(likelihood=heads.GaussianHead(scale="shared"))


@pytest.mark.parametrize("build", [conv_vae, conv_hvae], ids=["vae", "hvae"])
@pytest.mark.parametrize(
    "input_shape", [(64,), (8, 8), (10, 8, 1), (8, 6, 1), (8, 8, 1, 1)]
)
def test_conv_architecture_refuses_shapes_that_are_not_images(build, input_shape):
    pattern = (
        r"architecture='conv': `input_shape` must be of the form \(height, "
        r"width, channels\), with height and width divisible by 4.*"
        rf"Received: input_shape={re_escape(input_shape)}"
    )
    with pytest.raises(ValueError, match=pattern):
        build(input_shape=input_shape)


def re_escape(value):
    return str(value).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("build", [conv_vae, conv_hvae], ids=["vae", "hvae"])
def test_unknown_architecture(build):
    with pytest.raises(ValueError, match=r"Received: architecture='cnn'"):
        build(architecture="cnn")


def test_old_configs_load_as_mlp():
    vae = tfvae.VAE(input_shape=(12,), latent_dim=3, hidden_units=(8,))
    config = vae.get_config()
    assert config.pop("architecture") == "mlp"
    assert tfvae.VAE.from_config(config).architecture == "mlp"
    hvae = tfvae.HierarchicalVAE(
        input_shape=(12,), latent_dims=(4, 2), hidden_units=((8,), (6,))
    )
    config = hvae.get_config()
    assert config.pop("architecture") == "mlp"
    assert config.pop("inference_networks") is None
    assert config.pop("generative_networks") is None
    clone = tfvae.HierarchicalVAE.from_config(config)
    assert clone.architecture == "mlp"
    assert [w.shape for w in clone.weights] == [w.shape for w in hvae.weights]


def test_floats_per_sample_bounds_the_conv_decoder_activations():
    model = conv_vae()
    shape, activations = (model.latent_dim,), 0
    for layer in model.decoder.layers:
        inner = getattr(layer, "projection", layer)  # the gates' pre-activations
        activations += np.prod(inner.compute_output_shape((None, *shape))[1:])
        shape = layer.compute_output_shape((None, *shape))[1:]
        activations += np.prod(shape)
    assert model.floats_per_sample() >= activations


# --- Per-layer networks of the hierarchical VAE ---------------------------------


def small_hvae(**kwargs):
    config = dict(
        input_shape=IMAGE,
        latent_dims=(4, 2),
        hidden_units=((8,), (6,)),
        activation="tanh",
    )
    return tfvae.HierarchicalVAE(**{**config, **kwargs})


def custom_decoder():
    return keras.Sequential(
        [keras.layers.Dense(16, activation="relu"), keras.layers.Dense(8)],
        name="my_decoder",
    )


@pytest.mark.parametrize("skip", [False, True])
def test_custom_generative_network_of_layer_1_trains_and_saves(skip, tmp_path):
    decoder = custom_decoder()
    model = small_hvae(generative_networks=[decoder, None], skip=skip, seed=0)
    assert model.generative_networks[0] is decoder
    assert decoder.layers[0].kernel.shape == (6 if skip else 4, 16)
    assert model.likelihood.kernel.shape == (8, 64)
    model.compile(optimizer="adam")
    before = decoder.get_weights()
    model.fit(X_IMAGES, batch_size=16, epochs=1, verbose=0)
    assert not np.array_equal(decoder.get_weights()[0], before[0])
    config = model.get_config()
    assert config["generative_networks"][1] is None
    assert config["generative_networks"][0]["config"]["name"] == "my_decoder"
    assert config["inference_networks"] is None
    loaded = assert_keras_round_trip(model, X_IMAGES[:4], tmp_path)
    assert loaded.generative_networks[0].name == "my_decoder"
    np.testing.assert_array_equal(
        loaded.elbo(X_IMAGES[:4], seed=1), model.elbo(X_IMAGES[:4], seed=1)
    )
    clone = tfvae.HierarchicalVAE.from_config(as_json(config))
    assert clone.count_params() == model.count_params()


def test_custom_networks_replace_only_their_layer():
    encoder = keras.Sequential(
        [keras.layers.Flatten(), keras.layers.Dense(5, activation="tanh")]
    )
    model = small_hvae(inference_networks=(encoder, None), inference="ladder")
    default = small_hvae(inference="ladder")
    assert model.inference_networks[0] is encoder
    assert model.posteriors[0].kernel.shape == (5, 8)
    # The other networks are the defaults: the upward one takes the 5
    # features of d_1, and the generative ones are the same.
    assert model.inference_networks[1].layers[0].kernel.shape == (5, 6)
    pairs = zip(model.generative_networks, default.generative_networks, strict=True)
    for mine, theirs in pairs:
        assert [w.shape for w in mine.weights] == [w.shape for w in theirs.weights]
    assert model(X_IMAGES[:3]).shape == (3, *IMAGE)


def test_custom_conv_decoder_with_a_pixel_head_under_mlp():
    # Any architecture takes custom networks; the head's projection must suit
    # the decoder's output.
    model = small_hvae(
        generative_networks=[conv_decoder(IMAGE, filters=(4, 8)), None],
        likelihood=heads.BernoulliHead(projection="pixel"),
    )
    assert model.architecture == "mlp"
    assert model.likelihood.kernel.shape == (4, 1)
    model.compile(optimizer="adam")
    history = model.fit(X_IMAGES, batch_size=32, epochs=1, verbose=0).history
    assert np.isfinite(history["elbo"][0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"generative_networks": [None]},
            r"`generative_networks` must be a list of one Keras layer.*2 for "
            r"latent_dims=\(4, 2\). Received: generative_networks=\[None\]",
        ),
        (
            {"inference_networks": [None, None, None]},
            r"Received: inference_networks=\[None, None, None\]",
        ),
        (
            {"inference_networks": ["dense", None]},
            r"Received: inference_networks=\['str', None\]",
        ),
        (
            {"generative_networks": custom_decoder()},
            r"Received: generative_networks=Sequential",
        ),
    ],
)
def test_bad_per_layer_networks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_hvae(**kwargs)
