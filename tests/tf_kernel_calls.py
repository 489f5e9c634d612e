"""Run in child processes by test_tf_cpu_kernels.py (not a test module): one
``keras.ops.conv_transpose`` call, under whichever TensorFlow kernels the environment selects."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def data(item: dict) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(item.get("seed", 0))
    x = rng.standard_normal(item["x"]).astype(np.float32)
    return x, rng.standard_normal(item["w"]).astype(np.float32)


def conv_transpose(item: dict) -> dict:
    """The call; returns the output's shape and values (small cases only)."""
    import keras

    x, w = data(item)
    op = None if item.get("output_padding") is None else item["output_padding"]
    y = np.asarray(keras.ops.conv_transpose(x, w, item["strides"], item["padding"], op))
    return {"shape": list(y.shape), "y": y.ravel().tolist()}
