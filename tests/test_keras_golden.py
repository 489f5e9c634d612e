"""tconv.keras against stored Keras outputs (tests/golden/keras_golden.npz): no Keras needed.

The file is written by tests/golden/make_keras_golden.py from the real Keras 3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close

import tconv.keras as tk

GOLDEN = np.load(Path(__file__).parent / "golden" / "keras_golden.npz")
CASES = json.loads(str(GOLDEN["cases"]))


def test_golden_file_is_complete():
    assert len(CASES) >= 20
    assert {case["via"] for case in CASES} == {"keras.ops", "keras.layers", "keras-jax"}


@pytest.mark.parametrize("method", ["fast", "reference"])
@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_golden(case, method):
    name, params = case["name"], dict(case["params"])
    x, kernel, expected = (GOLDEN[f"{name}_{key}"] for key in ("x", "kernel", "y"))
    if case["via"] == "keras.layers":
        layer = tk.LAYER_CLASSES[f"Conv{kernel.ndim - 2}DTranspose"](
            kernel.shape[-2], kernel.shape[:-2], dtype=str(x.dtype), **params
        )
        layer.set_weights([kernel, GOLDEN[f"{name}_bias"]])
        actual = layer(x, method=method)
    else:
        actual = tk.conv_transpose(x, kernel, **params, method=method)
    assert actual.dtype == expected.dtype
    assert_close(actual, expected, int(np.prod(kernel.shape[:-2])) * kernel.shape[-1])
