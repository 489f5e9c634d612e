"""Shared test helpers.

``peer(name)`` imports a peer framework (tensorflow, keras, torch, jax, onnx, onnxruntime, ...).
Without it the test is skipped, unless ``TCONV_REQUIRE_PEERS=1`` (CI sets it), where a missing
peer is a failure.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow runs its oneDNN kernels on CPUs with AVX-512 and Eigen's elsewhere, and they differ
# (oneDNN's Conv2DBackpropInput aborts the whole process on a negative stride, raises
# AbortedError for `same` with an even kernel and output_padding=0, and accepts a zero kernel
# size or zero filters that Eigen refuses).  Every comparison with TensorFlow in this suite is
# with one TensorFlow, the same on every CPU: Eigen's.  TensorFlow reads this when it is first
# imported, so it is set here, before any test imports it, whatever the environment says.
# tests/test_tf_cpu_kernels.py runs the oneDNN kernels in child processes to pin down what
# they do differently (README, "Where frameworks disagree").
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REQUIRE_PEERS = os.environ.get("TCONV_REQUIRE_PEERS") == "1"


def peer(name: str) -> ModuleType:
    """Import peer ``name``; skip the test if it is missing, fail under TCONV_REQUIRE_PEERS=1."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        if REQUIRE_PEERS:
            pytest.fail(f"peer {name!r} is required (TCONV_REQUIRE_PEERS=1) but missing: {err}")
        pytest.skip(f"peer {name!r} not installed")
        raise  # unreachable


def assert_close(actual: np.ndarray, expected: np.ndarray, terms: int = 1) -> None:
    """The accuracy bound of the suite.

    Shapes must match exactly.  float64: ``|a - e| <= 1e-12 * max(1, max|e|) * terms``.
    float32 (and lower precisions, compared in float32): ``|a - e| <= 1e-5 * max(1, max|e|)``
    plus ``terms * eps32 * max|e|`` for the rounding of a sum of ``terms`` products.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    if actual.size == 0:
        return
    scale = max(1.0, float(np.max(np.abs(expected))))
    if actual.dtype == np.float64 and expected.dtype == np.float64:
        bound = 1e-12 * scale * max(1, terms)
    else:
        bound = 1e-5 * scale + max(1, terms) * float(np.finfo(np.float32).eps) * scale
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    nan_match = np.isnan(actual) == np.isnan(expected)
    assert nan_match.all(), "NaN positions differ"
    diff = np.where(np.isnan(diff), 0, diff)
    assert float(diff.max()) <= bound, f"max |diff| {float(diff.max()):.3e} > bound {bound:.3e}"
