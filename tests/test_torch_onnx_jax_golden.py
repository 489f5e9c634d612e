"""tconv.torch, tconv.onnx and tconv.jax against stored framework outputs: no framework needed.

tests/golden/{torch,onnx,jax}_golden.npz are written by tests/golden/make_adapter_golden.py from
PyTorch, onnxruntime and jax.lax; each case keeps the keyword arguments of the call.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close

import tconv.jax as tj
import tconv.onnx as to
import tconv.torch as tt

GOLDEN = {
    name: np.load(Path(__file__).parent / "golden" / f"{name}_golden.npz")
    for name in ("torch", "onnx", "jax")
}
CASES = [(name, case) for name, data in GOLDEN.items() for case in json.loads(str(data["cases"]))]


def _call(convention, x, w, b, kwargs, method):
    if convention == "torch":
        return getattr(tt, f"conv_transpose{w.ndim - 2}d")(x, w, b, **kwargs, method=method)
    if convention == "onnx":
        return to.conv_transpose(x, w, b, **kwargs, method=method)
    kwargs = dict(kwargs)
    strides, padding = kwargs.pop("strides"), kwargs.pop("padding")
    return tj.conv_transpose(x, w, strides, padding, **kwargs, method=method)


def test_golden_files_are_complete():
    assert {name for name, _ in CASES} == {"torch", "onnx", "jax"} and len(CASES) >= 30


@pytest.mark.parametrize("method", ["fast", "reference"])
@pytest.mark.parametrize("convention,case", CASES, ids=[f"{n}-{c['name']}" for n, c in CASES])
def test_golden(convention, case, method):
    data, name = GOLDEN[convention], case["name"]
    x, w, expected = (data[f"{name}_{key}"] for key in ("x", "w", "y"))
    b = data[f"{name}_b"] if f"{name}_b" in data else None
    actual = _call(convention, x, w, b, case["kwargs"], method)
    assert actual.dtype == expected.dtype
    assert_close(actual, expected, int(np.prod(w.shape)))
