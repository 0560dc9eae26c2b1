"""The Gaussian helpers against TFP and an independent numpy density."""

import numpy as np
from helpers import normal_log_density

from tfvae.distributions import (
    diagonal_normal,
    log_prob_of_noise,
    reparameterize,
    standard_normal_log_prob,
)


def test_log_q_from_the_noise_equals_the_density_of_the_sample():
    # `log_prob_of_noise` gives log q(z) of z = mu + sigma e without dividing.
    rng = np.random.default_rng(3)
    loc = rng.normal(size=(4, 6)).astype("float32")
    scale = np.exp(rng.normal(size=(4, 6))).astype("float32")
    noise = rng.normal(size=(5, 4, 6)).astype("float32")
    q = diagonal_normal(loc, scale)
    z = reparameterize(q, noise)
    np.testing.assert_allclose(
        log_prob_of_noise(q, noise), q.log_prob(z), rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(
        standard_normal_log_prob(z),
        normal_log_density(np.asarray(z), 0.0, 1.0).sum(-1),
        rtol=1e-5,
        atol=1e-4,
    )
