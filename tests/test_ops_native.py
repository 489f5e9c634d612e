"""``method="native"``: tconv's fast C through ctypes, and its fallback to NumPy."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import assert_close

from tconv import keras as tk
from tconv import ops
from tconv.geometry import Axis, Geometry
from tconv.layer import TransposedConv

GEOMETRY = Geometry((Axis(5, 3, 2, 1, 1, 0), Axis(4, 4, 2, 1, 1, 1)), 6, 4, 2)


def _data(dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, *GEOMETRY.in_shape, GEOMETRY.in_channels)).astype(dtype)
    kernel = rng.standard_normal(GEOMETRY.kernel_shape).astype(dtype)
    return x, kernel, rng.standard_normal(GEOMETRY.out_channels).astype(dtype)


@pytest.fixture
def cache(tmp_path, monkeypatch):  # noqa: ANN001
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(ops, "_native_cache", type(ops._native_cache)())
    return tmp_path


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler")
def test_native_matches_reference_and_sees_new_weights(cache) -> None:  # noqa: ANN001
    x, kernel, bias = _data()
    terms = GEOMETRY.in_per_group * 12 + 1
    for activation in (None, "relu"):
        expected = ops.reference(x, kernel, GEOMETRY, bias, activation)
        actual = ops.run(x, kernel, GEOMETRY, bias, activation, method="native")
        assert actual.dtype == np.float32
        assert_close(actual, expected, terms)
    assert list((cache / "tconv").iterdir()), "the compiled library is cached on disk"
    kernel[0, 0] += 1.0  # changed in place: the loaded copy must not be reused
    assert_close(
        ops.native(x, kernel, GEOMETRY, bias), ops.reference(x, kernel, GEOMETRY, bias), terms
    )


def test_native_falls_back_to_numpy_without_a_compiler(cache, monkeypatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PATH", str(tmp_path))
    x, kernel, bias = _data()
    assert_close(
        ops.native(x, kernel, GEOMETRY, bias, "tanh"),
        ops.reference(x, kernel, GEOMETRY, bias, "tanh"),
        GEOMETRY.in_per_group * 12 + 1,
    )
    assert not ops._native_cache


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_native_falls_back_for_other_dtypes(cache, dtype) -> None:  # noqa: ANN001
    x, kernel, bias = _data(dtype)
    actual = ops.native(x, kernel, GEOMETRY, bias)
    assert actual.dtype == dtype
    np.testing.assert_array_equal(actual, ops.fast(x, kernel, GEOMETRY, bias))
    assert not ops._native_cache


def test_native_checks_shapes_first(cache) -> None:  # noqa: ANN001
    x, kernel, bias = _data()
    with pytest.raises(ValueError, match="kernel shape"):
        ops.native(x, kernel[:1], GEOMETRY, bias)


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler")
def test_layer_weights_are_frozen_and_not_compared(cache) -> None:  # noqa: ANN001
    """A layer's weights are read-only copies: native reuses its library for them without a
    pass over the kernel, and a newly assigned kernel is noticed."""
    rng = np.random.default_rng(4)
    source = rng.standard_normal((3, 3, 4, 3)).astype(np.float32)
    layer = tk.Conv2DTranspose(4, 3, strides=2, padding="same")
    layer.set_weights([source, rng.standard_normal(4).astype(np.float32)])
    source[...] = 0  # the layer copied its weights: the caller's array is the caller's
    assert layer.kernel.any()
    with pytest.raises(ValueError, match="read-only"):
        layer.kernel[0, 0, 0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        layer.bias[0] = 1.0
    op = TransposedConv(source, None, (2, 2), (1, 1), lambda spatial: [(0, 1), (0, 1)])
    assert not op.kernel.flags.writeable and op.kernel is not source
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    expected = layer(x, method="reference")
    assert_close(layer(x, method="native"), expected, 4 * 3 + 1)  # builds the library

    def no_pass(*args):  # noqa: ANN002, ANN202
        raise AssertionError("frozen weights need no comparison")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np, "array_equal", no_pass)
        assert_close(layer(x, method="native"), expected, 4 * 3 + 1)
    layer.kernel = -layer.kernel  # a new kernel: noticed
    assert_close(layer(x, method="native"), -expected + 2 * layer.bias, 4 * 3 + 1)


def test_functional_ops_keep_the_callers_arrays() -> None:
    """An op made for one call holds the caller's arrays (no copy of the weights per call);
    an op object made to keep is frozen."""
    from tconv import jax as tj
    from tconv import onnx as tx
    from tconv import torch as tt

    w = np.ones((2, 3, 3, 3), np.float32)
    assert np.shares_memory(tx.op(w, strides=(2, 2)).framework_kernel, w)
    assert np.shares_memory(tt.op(w, None, 2).framework_kernel, w)
    k = np.ones((3, 3, 2, 3), np.float32)
    assert np.shares_memory(tj.op(k, (2, 2), "SAME").kernel, k)
    kept = TransposedConv(k, None, (1, 1), (1, 1), lambda spatial: [(0, 0), (0, 0)])
    assert not np.shares_memory(kept.kernel, k) and not kept.kernel.flags.writeable
