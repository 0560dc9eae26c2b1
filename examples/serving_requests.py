"""Exports a small VAE and prints TF Serving REST requests with their responses.

The responses are computed by the TensorFlow runtime from the exported
SavedModel (`tf.saved_model.load`) and printed the way TF Serving's REST API
formats a columnar `predict` response: {"outputs": value} for a signature with
one output, {"outputs": {name: value, ...}} for several. No model server runs
here.

Usage:
    python examples/serving_requests.py [EXPORT_BASE_PATH]
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfvae  # noqa: E402


def rounded(value):
    return np.round(np.asarray(value, dtype=np.float64), 4).tolist()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    base = os.path.abspath(argv[0] if argv else os.path.join(tempfile.mkdtemp(), "vae"))
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(input_shape=(6,), latent_dim=2, hidden_units=(8,), seed=0)
    path = tfvae.export_saved_model(model, base, version=1)
    served = tf.saved_model.load(path)

    print("$ tensorflow_model_server --rest_api_port=8501 --model_name=vae \\")
    print(f"    --model_base_path={base}")
    requests = {
        "serving_default": {"x": [[0, 1, 1, 0, 0, 1]]},
        "encode": {"x": [[0, 1, 1, 0, 0, 1], [1, 1, 0, 0, 0, 0]]},
        "sample": {"num_samples": 2, "seed": 7},
    }
    for name, inputs in requests.items():
        body = {"signature_name": name, "inputs": inputs}
        dtypes = {"num_samples": tf.int32, "seed": tf.int32}
        tensors = {
            key: tf.constant(value, dtypes.get(key, tf.float32))
            for key, value in inputs.items()
        }
        result = served.signatures[name](**tensors)
        outputs = {key: rounded(value) for key, value in sorted(result.items())}
        response = (
            {"outputs": next(iter(outputs.values()))}
            if len(outputs) == 1
            else {"outputs": outputs}
        )
        print()
        print(f"$ curl -d '{json.dumps(body)}' \\")
        print("    -X POST http://localhost:8501/v1/models/vae:predict")
        print(json.dumps(response))


if __name__ == "__main__":
    main()
