"""Quantized transposed convolution, in integers exactly as TFLite's reference kernel computes it.

The contract is TFLite's ``TRANSPOSE_CONV`` with ``OpResolverType.BUILTIN_REF``
(``reference_integer_ops::TransposeConv``), for int8 activations ("int8") and int16 activations
with int8 weights ("16x8").  Layouts are TFLite's: input ``(N, *in_shape, C)``, filter
``(F, *kernel, C)`` (OHWI), bias ``(F,)``, output ``(N, *out_shape, F)``; the geometry (where
each tap lands) is the canonical :class:`tconv.geometry.Geometry`.  For output channel ``f``::

    acc   = sum over taps (i, j) of output o, over c, of (x[n, i, c] - zp_in) * w[f, j, c]
            (int32 for int8, int64 for 16x8), + bias[f]
    y     = MultiplyByQuantizedMultiplier(acc, multiplier[f], shift[f]) + zp_out
    y     = clamp(y, act_min, act_max)

``multiplier[f]``/``shift[f]`` come from the double ``s_in * s_w[f] / s_out`` through
:func:`quantize_multiplier`; the requantization is gemmlowp's (int8: a saturating rounding
doubling high multiply, then a rounding divide by a power of two) or TFLite's 16x8 variant
(:func:`multiply_by_quantized_multiplier_16x8`); ``act_min``/``act_max`` are the fused
activation's range (:func:`activation_range`).  Each step is a small function on Python ints
(the definition, read by :func:`reference` and the explanation) with a vectorised NumPy twin
used by :func:`fast`; the tests check them against each other and both against TFLite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import ops
from .geometry import Geometry

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
"""The fused activations of a quantized TRANSPOSE_CONV (TFLite's ``ActivationFunctionType``)."""
DTYPES: dict[str, np.dtype[Any]] = {"int8": np.dtype(np.int8), "int16": np.dtype(np.int16)}


def round_half_away(value: float) -> int:
    """``std::round``: to the nearest integer, halves away from zero."""
    magnitude = math.floor(abs(value) + 0.5)
    return int(-magnitude if value < 0 else magnitude)


def wrap32(value: int) -> int:
    """``value`` as a two's-complement int32 (how an int32 sum that overflows wraps)."""
    return (value + 2**31) % 2**32 - 2**31


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: ``real ~= multiplier * 2**(shift - 31)``.

    ``frexp`` splits ``real`` into a mantissa in [0.5, 1) and an exponent ``shift``; the
    mantissa times 2**31 is rounded half away from zero to the Q31 ``multiplier``; a result of
    2**31 is halved and ``shift`` incremented; below 2**-31 (``shift < -31``) the multiplier is
    flushed to ``(0, 0)``.
    """
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    q = round_half_away(mantissa * 2**31)
    if q == 2**31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul`` on int32: ``round(a*b / 2**31)``,
    halves away from zero (a nudge of ``±2**30``, then a division truncating toward zero); the
    one overflowing case ``a = b = -2**31`` saturates to ``2**31 - 1``."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    total = ab + nudge
    return total // 2**31 if total >= 0 else -((-total) // 2**31)


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded to nearest, halves away
    from zero (an arithmetic shift, plus one when the remainder exceeds the threshold)."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """TFLite's int32 ``MultiplyByQuantizedMultiplier`` (the int8 kernels): a left shift for a
    positive ``shift`` (wrapping as int32), the doubling high multiply, then a rounding right
    shift for a negative one."""
    left, right = max(shift, 0), max(-shift, 0)
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(wrap32(x * (1 << left)), multiplier), right
    )


def reduced_multiplier_16x8(multiplier: int) -> int:
    """The 16-bit multiplier of the 16x8 kernels: ``(multiplier + 2**15) >> 16``, saturated at
    ``0x7FFF``."""
    return (multiplier + (1 << 15)) >> 16 if multiplier < 0x7FFF0000 else 0x7FFF


def multiply_by_quantized_multiplier_16x8(x: int, multiplier: int, shift: int) -> int:
    """TFLite's int64 ``MultiplyByQuantizedMultiplier`` (the 16x8 kernels):
    ``(x * reduced + 2**(total - 1)) >> total`` with ``total = 15 - shift``, as int32."""
    total = 15 - shift
    return wrap32((x * reduced_multiplier_16x8(multiplier) + (1 << (total - 1))) >> total)


def quantize_value(value: float, scale: float, zero_point: int) -> int:
    """TFLite's ``Quantize`` of one float: ``zero_point + round(float32(value) / float32(scale))``
    (the division in float32, ``std::round``), unclamped."""
    ratio = float(np.float32(value) / np.float32(scale))
    return zero_point + round_half_away(ratio)


def activation_range(activation: str, scale: float, zero_point: int, dtype: Any) -> tuple[int, int]:
    """``(act_min, act_max)`` of a fused activation on an output of ``scale``/``zero_point``:
    TFLite's ``CalculateActivationRangeQuantized`` (RELU: ``[q(0), qmax]``, RELU6:
    ``[q(0), q(6)]``, RELU_N1_TO_1: ``[q(-1), q(1)]``, each inside the dtype's range)."""
    info = np.iinfo(dtype)
    qmin, qmax = int(info.min), int(info.max)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    low = {"RELU": 0.0, "RELU6": 0.0, "RELU_N1_TO_1": -1.0}.get(activation)
    high = {"RELU6": 6.0, "RELU_N1_TO_1": 1.0}.get(activation)
    act_min = qmin if low is None else max(qmin, quantize_value(low, scale, zero_point))
    act_max = qmax if high is None else min(qmax, quantize_value(high, scale, zero_point))
    return act_min, act_max


# Vectorised twins (int64 arrays; per-channel parameters broadcast along the last axis).


def _srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = a * b  # |a|, |b| <= 2**31: fits int64
    total = ab + np.where(ab >= 0, 2**30, 1 - 2**30)
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def _rdbpot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def _wrap32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int32).astype(np.int64)  # NumPy's cast wraps, as two's complement


def requantize(
    acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, sixteen: bool
) -> np.ndarray:
    """Vectorised :func:`multiply_by_quantized_multiplier` (``sixteen=False``) or
    :func:`multiply_by_quantized_multiplier_16x8`: int64 ``acc (..., F)``, per-channel int64
    ``multiplier``/``shift (F,)``; returns int64."""
    if sixteen:
        reduced = np.where(multiplier < 0x7FFF0000, (multiplier + (1 << 15)) >> 16, 0x7FFF)
        total = 15 - shift
        return _wrap32((acc * reduced + (np.int64(1) << (total - 1))) >> total)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return _rdbpot(_srdhm(_wrap32(acc << left), multiplier), right)


class QuantizedTransposeConv:
    """A quantized transposed convolution as TFLite runs it (see the module docstring).

    Args:
        filter: ``(F, *kernel, C)`` int8 (symmetric, zero point 0).
        bias: ``(F,)`` int32 (int64 for 16x8) or None.
        geometry: the canonical geometry (its ``in_shape``/``out_shape`` are the op's spatial
            shapes; one group).
        input_scale, input_zero_point, output_scale, output_zero_point: per-tensor
            quantization of the input and the output.
        filter_scale: one scale per output channel, or one for all.
        activation: the fused activation, one of :data:`ACTIVATIONS`.
        dtype: the activations' type, ``"int8"`` or ``"int16"`` (16x8: int8 weights, int64
            bias and accumulator, zero points 0).
        name: the op's name (its output tensor's name in a ``.tflite`` file).
        padding: the padding the geometry came from (``"SAME"``/``"VALID"`` for TFLite), for
            descriptions only (the geometry's crops are what is computed).

    Calling it on a quantized input ``(N, *in_shape, C)`` returns the quantized output
    ``(N, *out_shape, F)`` in ``dtype``.
    """

    def __init__(
        self,
        filter: np.ndarray,
        bias: np.ndarray | None,
        geometry: Geometry,
        *,
        input_scale: float,
        input_zero_point: int,
        filter_scale: Sequence[float] | np.ndarray,
        output_scale: float,
        output_zero_point: int,
        activation: str = "NONE",
        dtype: str = "int8",
        name: str = "transpose_conv",
        padding: str | None = None,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be 'int8' or 'int16', got {dtype!r}")
        self.dtype = DTYPES[dtype]
        self.sixteen = dtype == "int16"
        filter = np.asarray(filter)
        if filter.dtype != np.int8:
            raise TypeError(f"filter must be int8, got dtype={filter.dtype.name}")
        if geometry.groups != 1:
            raise ValueError(f"a quantized transposed convolution has one group, got {geometry}")
        expected = (geometry.out_channels, *(a.kernel for a in geometry.axes), geometry.in_channels)
        if filter.shape != expected:
            raise ValueError(
                f"filter shape {filter.shape} does not match the geometry: expected {expected} "
                f"= (filters, *kernel, in_channels)"
            )
        self.geometry = geometry
        self.filter = _frozen(filter)
        self.kernel = _frozen(np.moveaxis(filter, 0, -2))
        """The canonical kernel ``(*kernel, F, C)`` (a read-only view of ``filter``)."""
        self.bias = None if bias is None else self._bias(bias)
        self.activation = activation
        self.name = name
        self.padding = padding
        for label, value in (("input_scale", input_scale), ("output_scale", output_scale)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{label} must be a positive finite number, got {value!r}")
        self.input_scale, self.output_scale = float(input_scale), float(output_scale)
        info = np.iinfo(self.dtype)
        for label, zp in (
            ("input_zero_point", input_zero_point),
            ("output_zero_point", output_zero_point),
        ):
            if not info.min <= zp <= info.max or (self.sixteen and zp != 0):
                rule = "0 for int16" if self.sixteen else f"in [{info.min}, {info.max}]"
                raise ValueError(f"{label} must be {rule}, got {zp}")
        self.input_zero_point, self.output_zero_point = (
            int(input_zero_point),
            int(output_zero_point),
        )
        scales = np.asarray(filter_scale, np.float32).reshape(-1)
        f = geometry.out_channels
        if scales.size not in (1, f) or not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise ValueError(
                f"filter_scale must hold 1 or {f} positive finite scales, got {scales.tolist()[:8]}"
            )
        self.per_channel = scales.size == f and f > 1
        self.filter_scale = _frozen(np.broadcast_to(scales, (f,)).copy())
        pairs = [quantize_multiplier(m) for m in self.effective_scale]
        self.multiplier = _frozen(np.array([m for m, _ in pairs], np.int64))
        self.shift = _frozen(np.array([s for _, s in pairs], np.int64))
        self.act_min, self.act_max = activation_range(
            activation, self.output_scale, self.output_zero_point, self.dtype
        )

    def _bias(self, bias: np.ndarray) -> np.ndarray:
        bias = np.asarray(bias)
        want = np.int64 if self.sixteen else np.int32
        if bias.dtype != want or bias.shape != (self.geometry.out_channels,):
            raise ValueError(
                f"bias must be {np.dtype(want).name} of shape ({self.geometry.out_channels},), "
                f"got {bias.dtype.name} {bias.shape}"
            )
        return _frozen(bias)

    @property
    def rank(self) -> int:
        """Number of spatial axes."""
        return self.geometry.rank

    def spatial_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """The spatial part of an input shape ``(N, *in_shape, C)`` (checked: the op's shapes
        are fixed)."""
        self.output_shape(input_shape)
        return tuple(input_shape[1:-1])

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(a.stride for a in self.geometry.axes)

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(a.kernel for a in self.geometry.axes)

    @property
    def effective_scale(self) -> list[float]:
        """Per output channel, ``s_in * s_w[f] / s_out`` in double (as TFLite computes it)."""
        return [self.input_scale * float(s) / self.output_scale for s in self.filter_scale]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input item's shape ``(*in_shape, C)``."""
        return (*self.geometry.in_shape, self.geometry.in_channels)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """The output shape ``(N, *out_shape, F)`` for an input shape ``(N, *in_shape, C)``."""
        if tuple(input_shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.name}: input shape {tuple(input_shape)} must be "
                f"(N, {', '.join(map(str, self.input_shape))})"
            )
        return (int(input_shape[0]), *self.geometry.out_shape, self.geometry.out_channels)

    def check_input(self, x: Any) -> np.ndarray:
        """``x`` as an array, or a ``ValueError``/``TypeError`` naming what is wrong."""
        x = np.asarray(x)
        if x.dtype != self.dtype:
            raise TypeError(f"{self.name}: input must be {self.dtype.name}, got {x.dtype.name}")
        if x.ndim != self.geometry.rank + 2 or x.shape[1:] != self.input_shape:
            raise ValueError(
                f"{self.name}: input shape {x.shape} must be "
                f"(N, {', '.join(map(str, self.input_shape))})"
            )
        return x

    def accumulators(self, x: np.ndarray, method: str = "fast") -> np.ndarray:
        """The accumulators ``sum (x - zp_in)*w + bias`` as int64 ``(N, *out_shape, F)`` (for
        int8 wrapped as TFLite's int32 accumulator wraps)."""
        x = self.check_input(x)
        centered = x.astype(np.int64) - self.input_zero_point
        if method == "reference":
            acc = _reference_sums(centered, self.kernel.astype(np.int64), self.geometry)
        elif method == "fast":
            acc = self._fast_sums(centered)
        else:
            raise ValueError(f"method must be 'fast' or 'reference', got method={method!r}")
        if not self.sixteen:
            acc = _wrap32(acc)
        if self.bias is not None:
            acc = acc + self.bias.astype(np.int64)
            acc = acc if self.sixteen else _wrap32(acc)
        return acc

    def _fast_sums(self, centered: np.ndarray) -> np.ndarray:
        # Every product and partial sum is an integer below 2**53 in magnitude, so a float64
        # GEMM (the float engine's fast path) adds them exactly, in any order.
        terms = self.geometry.in_channels
        for a in self.geometry.axes:
            terms *= a.kernel
        bound = (2**16 if self.sixteen else 2**8) * 128 * terms
        if bound >= 2**53:
            raise ValueError(
                f"{self.name}: {terms} terms per output are too many for the exact float64 fast "
                f"path; use method='reference'"
            )
        y = ops.fast(centered.astype(np.float64), self.kernel.astype(np.float64), self.geometry)
        return y.astype(np.int64)

    def __call__(self, x: np.ndarray, method: str = "fast") -> np.ndarray:
        """The quantized output for the quantized input ``x`` (``method``: ``"fast"`` or
        ``"reference"``, the definition one output position at a time)."""
        acc = self.accumulators(x, method)
        y = requantize(acc, self.multiplier, self.shift, self.sixteen) + self.output_zero_point
        return np.clip(y, self.act_min, self.act_max).astype(self.dtype)

    def quantize(self, x: Any) -> np.ndarray:
        """The input quantization (TFLite's ``QUANTIZE``): ``clamp(round(x / s_in) + zp_in)``
        with the division in float32 and halves rounded away from zero."""
        return _quantize(x, self.input_scale, self.input_zero_point, self.dtype)

    def dequantize(self, y: Any) -> np.ndarray:
        """The output's real values (TFLite's ``DEQUANTIZE``): ``float32(s_out * (y - zp_out))``."""
        return _dequantize(y, self.output_scale, self.output_zero_point)

    def dequantize_input(self, x: Any) -> np.ndarray:
        """The input's real values ``float32(s_in * (x - zp_in))``."""
        return _dequantize(x, self.input_scale, self.input_zero_point)

    def real_filter(self) -> np.ndarray:
        """The filter's real values ``s_w[f] * w`` (float64, ``(F, *kernel, C)``)."""
        shape = (-1,) + (1,) * (self.filter.ndim - 1)
        return self.filter * self.filter_scale.astype(np.float64).reshape(shape)

    def real_bias(self) -> np.ndarray | None:
        """The bias's real values ``s_in * s_w[f] * bias`` (float64), or None."""
        if self.bias is None:
            return None
        return self.bias * (self.input_scale * self.filter_scale.astype(np.float64))

    def real_output(self, x: Any) -> np.ndarray:
        """What the op computes in real numbers (float64, the fused activation applied, no
        rounding) with the dequantized filter and bias, on ``x``: a quantized input (then
        dequantized) or a float one (taken as it is).  The value the quantized output
        approximates."""
        x = np.asarray(x)
        if x.dtype.kind == "f":
            if x.ndim != self.geometry.rank + 2 or x.shape[1:] != self.input_shape:
                self.check_input(x.astype(self.dtype))  # raises with the shape rule
            real_x = x.astype(np.float64)
        else:
            real_x = (
                self.check_input(x).astype(np.float64) - self.input_zero_point
            ) * self.input_scale
        kernel = np.moveaxis(self.real_filter(), 0, -2)
        y = ops.fast(real_x, np.ascontiguousarray(kernel), self.geometry, self.real_bias())
        low = {"RELU": 0.0, "RELU6": 0.0, "RELU_N1_TO_1": -1.0}.get(self.activation)
        high = {"RELU6": 6.0, "RELU_N1_TO_1": 1.0}.get(self.activation)
        return np.clip(y, low, high) if low is not None else y

    def __repr__(self) -> str:
        g = self.geometry
        kind = "16x8" if self.sixteen else "int8"
        return (
            f"QuantizedTransposeConv({self.name!r}, {kind}, "
            f"in {self.input_shape} -> out {(*g.out_shape, g.out_channels)}, kernel "
            f"{tuple(a.kernel for a in g.axes)}, strides {tuple(a.stride for a in g.axes)}, "
            f"{'per-channel' if self.per_channel else 'per-tensor'}, activation={self.activation})"
        )


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


def _quantize(x: Any, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    values = np.asarray(x, np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError("quantize: x must be finite (it holds NaN or infinity)")
    ratio = (values / np.float32(scale)).astype(np.float64)
    rounded = np.where(ratio >= 0, np.floor(ratio + 0.5), np.ceil(ratio - 0.5))
    info = np.iinfo(dtype)
    return np.clip(rounded + zero_point, info.min, info.max).astype(dtype)


def _dequantize(y: Any, scale: float, zero_point: int) -> np.ndarray:
    return (scale * (np.asarray(y).astype(np.float64) - zero_point)).astype(np.float32)


def _reference_sums(centered: np.ndarray, kernel: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The definition: for each output position, the taps that reach it (``geometry.taps``),
    each a ``(N, C) @ (C, F)`` integer product, summed in int64."""
    n = centered.shape[0]
    acc = np.zeros((n, *geometry.out_shape, geometry.out_channels), np.int64)
    for o in np.ndindex(*geometry.out_shape):
        target: ops.Index = (slice(None), *o)
        for i, j in geometry.taps(o):
            source: ops.Index = (slice(None), *i)
            acc[target] += centered[source] @ kernel[j].T
    return acc
