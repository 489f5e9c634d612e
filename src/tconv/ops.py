"""The canonical transposed convolution: the reference (the definition) and the fast path.

Layouts (channels last, whatever the framework):

- ``x``: ``(N, *geometry.in_shape, in_channels)``
- ``kernel``: ``geometry.kernel_shape`` = ``(*kernel_size, out_channels, in_channels // groups)``
- ``bias``: ``(out_channels,)`` or ``None``
- result: ``(N, *geometry.out_shape, out_channels)``

Both functions compute::

    y[n, o, f] = bias[f] + sum over taps (i, j) with i*stride + j*dilation == o + crop_start
                           of sum over c in group(f) of x[n, i, c] * kernel[j, f, c - group start]

then ``activation`` (a Keras activation name, see :mod:`tconv.activations`), in the input's
dtype (float16 and bfloat16 are computed in float32 and cast back).
"""

from __future__ import annotations

import numpy as np

from . import activations
from .geometry import Geometry

METHODS = ("fast", "reference")
Index = tuple[int | slice, ...]


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype arithmetic runs in for data of ``dtype``: float32 or float64.

    Raises ``TypeError`` for anything that is not a floating-point type.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return dtype
    if dtype.kind == "f" or dtype.name == "bfloat16":
        return np.dtype(np.float32)
    raise TypeError(
        f"transposed convolution needs floating-point data (float16, bfloat16, float32 or "
        f"float64), got dtype={dtype.name}"
    )


def _check(x: np.ndarray, kernel: np.ndarray, geometry: Geometry, bias: np.ndarray | None) -> None:
    expected = (geometry.in_shape, geometry.in_channels)
    if x.ndim != geometry.rank + 2 or (x.shape[1:-1], x.shape[-1]) != expected:
        raise ValueError(
            f"input shape {x.shape} does not match the geometry: expected "
            f"(N, {', '.join(map(str, geometry.in_shape))}, {geometry.in_channels})"
        )
    if kernel.shape != geometry.kernel_shape:
        raise ValueError(
            f"kernel shape {kernel.shape} does not match the geometry: expected "
            f"{geometry.kernel_shape} = (*kernel_size, out_channels, in_channels // groups)"
        )
    if bias is not None and bias.shape != (geometry.out_channels,):
        raise ValueError(f"bias shape {bias.shape} must be ({geometry.out_channels},)")


def reference(
    x: np.ndarray,
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None = None,
    activation: str | None = None,
) -> np.ndarray:
    """The definition, one output position at a time (slow: for tests and explanations).

    For every output position ``o`` it visits the taps that reach it and sums, per group, the
    channel dot products ``x[:, i, group] @ kernel[j, group's filters, :].T``.
    """
    _check(x, kernel, geometry, bias)
    dtype = compute_dtype(x.dtype)
    xc, kc = x.astype(dtype, copy=False), kernel.astype(dtype, copy=False)
    n, cin, cout = x.shape[0], geometry.in_per_group, geometry.out_per_group
    y = np.zeros((n, *geometry.out_shape, geometry.out_channels), dtype)
    for o in np.ndindex(*geometry.out_shape):
        for i, j in geometry.taps(o):
            for g in range(geometry.groups):
                source: Index = (slice(None), *i, slice(g * cin, (g + 1) * cin))
                tap: Index = (*j, slice(g * cout, (g + 1) * cout))
                target: Index = (slice(None), *o, slice(g * cout, (g + 1) * cout))
                y[target] += xc[source] @ kc[tap].T  # (N, cin) @ (cin, cout)
    if bias is not None:
        y += bias.astype(dtype)
    return activations.apply(activation, y).astype(x.dtype, copy=False)


def fast(
    x: np.ndarray,
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None = None,
    activation: str | None = None,
) -> np.ndarray:
    """Vectorized: one GEMM per kernel tap, added into the output through a strided view.

    Tap ``j`` sends input ``i`` to output ``o = i*stride + j*dilation - crop_start``; per axis the
    inputs that land inside the output form a range, and their outputs a strided range, so each
    tap costs one ``(N*|in|, C_in) @ (C_in, C_out)`` product and one strided add.  Extra memory:
    one GEMM result at a time.
    """
    _check(x, kernel, geometry, bias)
    dtype = compute_dtype(x.dtype)
    n, g = x.shape[0], geometry.groups
    cin, cout = geometry.in_per_group, geometry.out_per_group
    y = np.zeros((n, *geometry.out_shape, geometry.out_channels), dtype)
    if bias is not None:
        y += bias.astype(dtype)
    if y.size == 0 or x.size == 0:
        return activations.apply(activation, y).astype(x.dtype, copy=False)
    rows = x.astype(dtype, copy=False).reshape(-1, g, cin).transpose(1, 0, 2)  # (G, M, cin)
    # (*k, G, cin, cout): per tap and group, the matrix that maps input to output channels.
    weights = kernel.astype(dtype, copy=False).reshape(*kernel.shape[:-2], g, cout, cin)
    weights = np.ascontiguousarray(np.swapaxes(weights, -1, -2))
    for j in np.ndindex(*kernel.shape[:-2]):
        ranges = [axis.tap_range(t) for axis, t in zip(geometry.axes, j, strict=True)]
        if any(count == 0 for _, count, _ in ranges):
            continue
        product = np.matmul(rows, weights[j])  # (G, M, cout)
        product = product.transpose(1, 0, 2).reshape(n, *geometry.in_shape, g * cout)
        src = tuple(slice(i0, i0 + count) for i0, count, _ in ranges)
        dst = tuple(
            slice(o0, o0 + (count - 1) * axis.stride + 1, axis.stride)
            for (_, count, o0), axis in zip(ranges, geometry.axes, strict=True)
        )
        target, source = (slice(None), *dst), (slice(None), *src)
        y[target] += product[source]
    return activations.apply(activation, y).astype(x.dtype, copy=False)


def run(
    x: np.ndarray,
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None = None,
    activation: str | None = None,
    method: str = "fast",
) -> np.ndarray:
    """Dispatch to :func:`fast` or :func:`reference` by ``method``."""
    if method == "fast":
        return fast(x, kernel, geometry, bias, activation)
    if method == "reference":
        return reference(x, kernel, geometry, bias, activation)
    raise ValueError(f"method must be one of {METHODS}, got method={method!r}")
