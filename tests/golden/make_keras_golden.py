"""Write tests/golden/keras_golden.npz from the real Keras 3 (TensorFlow backend).

Run from the repository root: ``.venv/bin/python tests/golden/make_keras_golden.py``.
Each case stores ``<case>_x``, ``<case>_kernel``, optionally ``<case>_bias``, and the framework's
output ``<case>_y``; ``cases`` (JSON) lists every case's parameters and the Keras code path that
produced it: ``keras.ops`` / ``keras.layers`` (TensorFlow backend), or ``keras-jax`` (Keras' JAX
backend, for what TensorFlow's CPU kernel cannot run: dilation, channels_first, and ``same`` with
an even kernel and ``output_padding=0``).  tests/test_keras_golden.py checks tconv against it
without needing Keras.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras.src.backend.jax import nn as keras_jax  # noqa: E402

OUT = Path(__file__).with_name("keras_golden.npz")

# (name, input shape, kernel shape, parameters); layer cases add "activation".
CASES = [
    ("seed_like_same_k3_s2", (1, 4, 4, 6), (3, 3, 5, 6), dict(strides=2, padding="same")),
    (
        "same_k3_s2_op1",
        (2, 3, 4, 3),
        (3, 3, 4, 3),
        dict(strides=2, padding="same", output_padding=1),
    ),
    ("valid_k2_s3", (1, 3, 3, 2), (2, 2, 3, 2), dict(strides=3, padding="valid")),
    ("valid_k4_s2_op1", (1, 3, 2, 2), (4, 4, 2, 2), dict(strides=2, output_padding=1)),
    ("same_k4_s2", (1, 3, 3, 2), (4, 4, 3, 2), dict(strides=2, padding="same")),
    (
        "same_k4_s2_op1",
        (1, 3, 3, 2),
        (4, 4, 3, 2),
        dict(strides=2, padding="same", output_padding=1),
    ),
    ("1d_same_k5_s3_op2", (3, 5, 2), (5, 3, 2), dict(strides=3, padding="same", output_padding=2)),
    ("1d_valid_k1_s3", (1, 4, 3), (1, 2, 3), dict(strides=3)),
    ("1d_same_k1_s3_op0", (1, 4, 3), (1, 2, 3), dict(strides=3, padding="same", output_padding=0)),
    ("1d_one_pixel_same_k2", (2, 1, 3), (2, 2, 3), dict(strides=1, padding="same")),
    ("3d_same_k3_s2", (1, 2, 3, 2, 2), (3, 3, 3, 2, 2), dict(strides=2, padding="same")),
    ("3d_valid_mixed", (1, 2, 2, 3, 2), (2, 1, 3, 2, 2), dict(strides=(1, 2, 3))),
    (
        "2d_anisotropic_same_op",
        (1, 3, 4, 2),
        (3, 2, 3, 2),
        dict(strides=(2, 3), padding="same", output_padding=(1, 2)),
    ),
    (
        "float64_same_k3_s2",
        (1, 3, 3, 4),
        (3, 3, 3, 4),
        dict(strides=2, padding="same", dtype="float64"),
    ),
    ("zero_length_valid", (1, 0, 3), (3, 2, 3), dict(strides=2)),
    (
        "layer_gelu_same_k3_s2",
        (1, 3, 3, 4),
        (3, 3, 3, 4),
        dict(strides=2, padding="same", activation="gelu"),
    ),
    ("layer_sigmoid_valid_k2_s2", (2, 4, 3), (2, 2, 3), dict(strides=2, activation="sigmoid")),
    (
        "jax_1d_dilation2_same",
        (1, 6, 2),
        (3, 2, 2),
        dict(padding="same", dilation_rate=2, via="keras-jax"),
    ),
    (
        "jax_2d_dilation_valid",
        (1, 4, 3, 2),
        (3, 2, 2, 2),
        dict(dilation_rate=(2, 3), via="keras-jax"),
    ),
    (
        "jax_2d_channels_first_same",
        (1, 3, 4, 4),
        (3, 3, 2, 3),
        dict(strides=2, padding="same", data_format="channels_first", via="keras-jax"),
    ),
    (
        "jax_same_even_k4_s2_op0",
        (1, 3, 2),
        (4, 2, 2),
        dict(strides=2, padding="same", output_padding=0, via="keras-jax"),
    ),
]


def main() -> None:
    rng = np.random.default_rng(2026)
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for name, x_shape, k_shape, params in CASES:
        params = dict(params)
        dtype = params.pop("dtype", "float32")
        via = params.pop("via", "keras.layers" if "activation" in params else "keras.ops")
        x = rng.standard_normal(x_shape).astype(dtype)
        kernel = rng.standard_normal(k_shape).astype(dtype)
        if via == "keras.layers":
            rank = len(k_shape) - 2
            layer = getattr(keras.layers, f"Conv{rank}DTranspose")(
                filters=k_shape[-2], kernel_size=k_shape[:-2], **params
            )
            layer.build(x_shape)
            bias = rng.standard_normal(k_shape[-2]).astype(dtype)
            layer.set_weights([kernel, bias])
            y = np.asarray(layer(x))
            arrays[f"{name}_bias"] = bias
        elif via == "keras-jax":
            args = {"strides": 1, "padding": "valid", "output_padding": None,
                    "data_format": "channels_last", "dilation_rate": 1, **params}  # fmt: skip
            y = np.asarray(keras_jax.conv_transpose(x, kernel, **args))
        else:
            y = np.asarray(keras.ops.conv_transpose(x, kernel, **params))
        arrays[f"{name}_x"], arrays[f"{name}_kernel"], arrays[f"{name}_y"] = x, kernel, y
        meta.append({"name": name, "via": via, "params": params})
    arrays["cases"] = np.array(json.dumps(meta, indent=1))
    versions = {"keras": keras.__version__, "tensorflow": tf.__version__, "jax": jax.__version__}
    arrays["versions"] = np.array(json.dumps(versions))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(meta)} cases)")


if __name__ == "__main__":
    main()
