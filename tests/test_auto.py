"""The default method, ``"auto"``: NumPy while a geometry's C is built in the background, the C
after; NumPy for good without a compiler, for small layers, other dtypes, or a failed build."""

from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close

from tconv import jax as tjax
from tconv import keras as tk
from tconv import onnx as tonnx
from tconv import ops
from tconv import torch as ttorch
from tconv.geometry import Axis, Geometry
from tconv.layer import TransposedConv

GEOMETRY = Geometry((Axis(5, 3, 2, 1, 1, 0), Axis(4, 4, 2, 1, 1, 1)), 6, 4, 2)
HAVE_CC = bool(shutil.which("cc") or shutil.which("gcc"))


def _data(dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, *GEOMETRY.in_shape, GEOMETRY.in_channels)).astype(dtype)
    kernel = rng.standard_normal(GEOMETRY.kernel_shape).astype(dtype)
    return x, kernel, rng.standard_normal(GEOMETRY.out_channels).astype(dtype)


@pytest.fixture
def fresh(tmp_path, monkeypatch):  # noqa: ANN001
    """An empty library cache, no loaded or pending builds, every layer large enough."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    names = ("_native_cache", "_native_built", "_native_pending", "_native_failed", "_native_seen")
    for name in names:
        monkeypatch.setattr(ops, name, type(getattr(ops, name))())
    monkeypatch.setattr(ops, "AUTO_NATIVE_MACS", 0)
    return tmp_path


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler")
def test_numpy_first_then_the_c(fresh) -> None:  # noqa: ANN001
    x, kernel, bias = _data()
    assert ops.auto_path(x, kernel, GEOMETRY, bias).endswith("from the second call on)")
    for _ in range(2):  # the default method; the second call starts the build
        first = ops.run(x, kernel, GEOMETRY, bias, "relu")
        np.testing.assert_array_equal(first, ops.fast(x, kernel, GEOMETRY, bias, "relu"))
    assert ops.auto_path(x, kernel, GEOMETRY, bias, "relu", wait=True) == "native"
    later = ops.auto(x, kernel, GEOMETRY, bias, "relu")
    np.testing.assert_array_equal(later, ops.native(x, kernel, GEOMETRY, bias, "relu"))
    assert_close(later, ops.reference(x, kernel, GEOMETRY, bias, "relu"), 6 * 12 + 1)
    kernel[0, 0] += 1.0  # new weights, same geometry: the built library is reused at once
    assert_close(
        ops.auto(x, kernel, GEOMETRY, bias, "relu"),
        ops.reference(x, kernel, GEOMETRY, bias, "relu"),
        6 * 12 + 1,
    )
    assert not ops._native_pending


def test_no_compiler_is_numpy(fresh, monkeypatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PATH", str(tmp_path))
    x, kernel, bias = _data()
    for _ in range(2):
        np.testing.assert_array_equal(
            ops.auto(x, kernel, GEOMETRY, bias), ops.fast(x, kernel, GEOMETRY, bias)
        )
    assert ops.auto_path(x, kernel, GEOMETRY, bias, wait=True) == "fast (no C compiler)"
    assert not ops._native_pending and not ops._native_cache


def test_a_failing_build_stays_on_numpy(fresh, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    cc = tmp_path / "broken-cc"
    cc.write_text("#!/bin/sh\necho 'broken-cc: cannot compile' >&2\nexit 1\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    x, kernel, bias = _data()
    for _ in range(2):
        np.testing.assert_array_equal(ops.auto(x, kernel, GEOMETRY), ops.fast(x, kernel, GEOMETRY))
    why = ops.auto_path(x, kernel, GEOMETRY, wait=True)
    assert why.startswith("fast (building the C failed") and "cannot compile" in why, why
    np.testing.assert_array_equal(ops.auto(x, kernel, GEOMETRY), ops.fast(x, kernel, GEOMETRY))
    assert not ops._native_pending


def test_small_layers_and_other_dtypes_stay_on_numpy(fresh, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(ops, "AUTO_NATIVE_MACS", GEOMETRY.macs(2) + 1)
    x, kernel, bias = _data()
    np.testing.assert_array_equal(
        ops.auto(x, kernel, GEOMETRY, bias), ops.fast(x, kernel, GEOMETRY, bias)
    )
    assert ops.auto_path(x, kernel, GEOMETRY, bias).startswith("fast (fewer than")
    x64, k64, b64 = _data(np.float64)
    assert ops.auto(x64, k64, GEOMETRY, b64).dtype == np.float64
    assert ops.auto_path(x64, k64, GEOMETRY, b64).startswith("fast (dtype float64")
    assert not ops._native_pending and not ops._native_built
    with pytest.raises(ValueError, match="kernel shape"):
        ops.auto(x, kernel[:1], GEOMETRY, bias)


def test_auto_is_every_default() -> None:
    """``method`` left out is ``"auto"`` in the engine, the layer and every adapter."""
    assert ops.DEFAULT_METHOD == "auto" and "auto" in ops.METHODS
    functions = [
        ops.run,
        TransposedConv.forward,
        TransposedConv.__call__,
        tk.conv_transpose,
        tk.Conv2DTranspose.forward,
        ttorch.conv_transpose2d,
        ttorch.ConvTranspose2d.forward,
        ttorch.ConvTranspose2d.__call__,
        tonnx.conv_transpose,
        tjax.conv_transpose,
    ]
    for fn in functions:
        assert inspect.signature(fn).parameters["method"].default == "auto", fn


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler")
def test_a_single_call_builds_nothing(fresh) -> None:  # noqa: ANN001
    """A geometry called once (a script that exits) starts no build, so exit does not wait."""
    x, kernel, bias = _data()
    ops.auto(x, kernel, GEOMETRY, bias)
    assert not ops._native_pending and not ops._native_built
    assert ops.auto_path(x, kernel, GEOMETRY, bias).endswith("from the next call on)")


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler")
def test_a_forked_child_builds_its_own(fresh) -> None:  # noqa: ANN001
    """A child forked while the parent builds has no builder thread: it starts its own."""
    x, kernel, bias = _data()
    for _ in range(2):
        ops.auto(x, kernel, GEOMETRY, bias)  # now the parent's build is under way
    pid = os.fork()
    if pid == 0:  # the child: its build must finish too
        code = 1
        try:
            ops.auto(x, kernel, GEOMETRY, bias)
            code = 0 if ops.auto_path(x, kernel, GEOMETRY, bias, wait=True) == "native" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ops.auto_path(x, kernel, GEOMETRY, bias, wait=True) == "native"
