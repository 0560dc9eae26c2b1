import os

import keras
import numpy as np

import tfvae

# Statically binarized MNIST: 784 bits per image, packed with np.packbits.
data = np.load(os.path.join(os.environ["TFVAE_DATA_DIR"], "binarized_mnist.npz"))
x_train, x_valid = (
    np.unpackbits(data[split], axis=1)[:, :784].astype("float32")
    for split in ("train", "valid")
)

model = tfvae.VAE(
    input_shape=(784,), latent_dim=50, hidden_units=(200, 200), activation="tanh"
)
model.compile(optimizer=keras.optimizers.Adam(1e-3))
model.fit(x_train, epochs=5, batch_size=100, validation_data=x_valid)

metrics = model.evaluate(x_valid, batch_size=1000, return_dict=True)
print(f"validation ELBO: {metrics['elbo']:.2f} nats per image")
samples = model.sample(16, seed=0)  # decoder means of prior draws, shape (16, 784)
