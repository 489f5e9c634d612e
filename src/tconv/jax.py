"""``jax.lax.conv_transpose``, in NumPy.

Layouts follow ``dimension_numbers`` (default ``('NHC', 'HIO', 'NHC')``,
``('NHWC', 'HWIO', 'NHWC')``, ``('NHWDC', 'HWDIO', 'NHWDC')``; any string triple such as
``('NCHW', 'OIHW', 'NCHW')`` works).  The spatial axes are ordered as in the kernel spec.

JAX computes ``conv_general_dilated(lhs, rhs, window_strides=1, padding=(lo, hi),
lhs_dilation=strides, rhs_dilation)``: a cross-correlation of the stride-dilated input with the
kernel, **not flipped** unless ``transpose_kernel=True`` (which flips the spatial axes and swaps
``I`` and ``O``, giving Keras' ``Conv*DTranspose`` for a Keras kernel).  Per axis, with
``span = dilation*(k-1) + 1``, the canonical crops are ``crop_start = span-1-lo``,
``crop_end = span-1-hi``, where ``(lo, hi)``:

- ``'SAME'``: ``pad = span + s - 2``; ``lo = span-1`` if ``s > span-1`` else ``ceil(pad/2)``;
  ``hi = pad - lo`` (output ``in*s``).
- ``'VALID'``: ``lo = span-1``, ``hi = s-1 + max(span-s, 0)`` (output ``(in-1)*s + max(span, s)``).
- explicit pairs: ``(lo, hi)`` as given (JAX's legacy meaning: padding of the dilated input);
  with ``use_consistent_padding=True`` they are the forward conv's padding, PyTorch-like:
  ``crop_start = lo``, ``crop_end = hi``.
- any other string (``'same'``, ``'valid'``, ``'SAME_LOWER'``): JAX passes it on to
  ``conv_general_dilated`` as the *forward* padding of the dilated input (``lo, hi`` =
  ``(span-1)//2`` split, low half first for SAME, high half first for SAME_LOWER, or 0), a
  different result from ``'SAME'``/``'VALID'``.  tconv does the same.

The output length is ``max(0, L + lo + hi - span + 1)`` with ``L = max(0, (in-1)*s + 1)``: an
empty input axis gives ``span-1-crop_start-crop_end`` zero rows (bias-free), and an over-cropped
axis gives an empty output; JAX raises only when ``L + lo + hi < 0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .checks import is_int
from .layer import CropRule, KernelLayout, TransposedConv, per_axis_rule

Padding = str | Sequence[tuple[int, int]]

DEFAULT_DIMENSION_NUMBERS = {
    3: ("NHC", "HIO", "NHC"),
    4: ("NHWC", "HWIO", "NHWC"),
    5: ("NHWDC", "HWDIO", "NHWDC"),
}


# --- dimension numbers and kernel layouts ---------------------------------------------------


def dimension_specs(dimension_numbers: Any, ndim: int) -> tuple[str, str, str]:
    """``(lhs_spec, rhs_spec, out_spec)`` strings, validated as JAX validates them."""
    if dimension_numbers is None:
        if ndim not in DEFAULT_DIMENSION_NUMBERS:
            raise ValueError(
                f"1 to 3 spatial dimensions are supported: lhs and rhs must have 3 to 5 axes, "
                f"got {ndim}"
            )
        return DEFAULT_DIMENSION_NUMBERS[ndim]
    if not isinstance(dimension_numbers, (list, tuple)):
        raise TypeError(
            "convolution dimension_numbers must be tuple/list or None, got "
            f"{type(dimension_numbers)}."
        )
    if len(dimension_numbers) != 3:
        raise TypeError(
            f"convolution dimension_numbers list/tuple must be length 3, got "
            f"{len(dimension_numbers)}."
        )
    if not all(isinstance(s, str) for s in dimension_numbers):
        raise TypeError(
            "convolution dimension_numbers elements must be strings, got "
            f"{tuple(map(type, dimension_numbers))}."
        )
    for i, spec in enumerate(dimension_numbers):
        if len(spec) != ndim:
            raise TypeError(
                f"convolution dimension_numbers[{i}] must have len equal to the ndim of lhs and "
                f"rhs, got {len(spec)} for ndim {ndim}."
            )
    for i, (spec, pair) in enumerate(zip(dimension_numbers, ("NC", "OI", "NC"), strict=True)):
        if not spec.count(pair[0]) == spec.count(pair[1]) == 1:
            raise TypeError(
                f"convolution dimension_numbers[{i}] must contain the characters '{pair[0]}' and "
                f"'{pair[1]}' exactly once, got {spec}."
            )
        if len(set(spec)) != len(spec):
            raise TypeError(
                f"convolution dimension_numbers[{i}] cannot have duplicate characters, got {spec}."
            )
    lhs, rhs, out = dimension_numbers
    if not set(lhs) - set("NC") == set(rhs) - set("OI") == set(out) - set("NC"):
        raise TypeError(
            "convolution dimension_numbers elements must each have the same set of spatial "
            f"characters, got {tuple(dimension_numbers)}."
        )
    return lhs, rhs, out


def _spatial(rhs_spec: str) -> str:
    return "".join(c for c in rhs_spec if c not in "OI")


def _data_perm(spec: str, rhs_spec: str) -> tuple[int, ...]:
    """Axes of an lhs/out array in canonical order ``(N, *spatial in rhs order, C)``."""
    return (spec.index("N"), *(spec.index(c) for c in _spatial(rhs_spec)), spec.index("C"))


def kernel_layout(rhs_spec: str = "HWIO", transpose_kernel: bool = False) -> KernelLayout:
    """The :class:`~tconv.layer.KernelLayout` of a JAX kernel with spec ``rhs_spec``.

    Without ``transpose_kernel`` the ``O`` axis holds the output channels and the kernel is
    applied unflipped: canonical = the kernel flipped spatially, ``(*k, O, I)``.  With it, ``I``
    holds the output channels (Keras' kernel is ``HWIO`` with ``transpose_kernel=True``):
    canonical = the kernel as ``(*k, I, O)``.
    """
    spatial = _spatial(rhs_spec)
    perm = (*(rhs_spec.index(c) for c in spatial), rhs_spec.index("I"), rhs_spec.index("O"))
    inverse = tuple(int(i) for i in np.argsort(perm))
    flip_axes = tuple(range(len(spatial)))

    def to_canonical(w: np.ndarray, groups: int) -> np.ndarray:
        std = np.transpose(w, perm)  # (*k, I, O)
        return std if transpose_kernel else np.swapaxes(np.flip(std, flip_axes), -1, -2)

    def from_canonical(wc: np.ndarray, groups: int) -> np.ndarray:
        std = wc if transpose_kernel else np.flip(np.swapaxes(wc, -1, -2), flip_axes)
        return np.transpose(std, inverse)

    names = {c: f"k{c}" for c in spatial}
    names["I"] = "I=out_channels" if transpose_kernel else "I=in_channels"
    names["O"] = "O=in_channels" if transpose_kernel else "O=out_channels"
    axes = f"({', '.join(names[c] for c in rhs_spec)})"
    axes += " with transpose_kernel=True" if transpose_kernel else ", applied spatially flipped"
    name = f"jax:{rhs_spec}" + (":transpose_kernel" if transpose_kernel else "")
    return KernelLayout(name, to_canonical, from_canonical, axes)


# --- padding ------------------------------------------------------------------------------


def _transpose_padding(span: int, stride: int, padding: Any) -> tuple[int, int]:
    """JAX's ``_conv_transpose_padding``: ``(lo, hi)`` on the dilated input."""
    if padding == "SAME":
        total = span + stride - 2
        lo = span - 1 if stride > span - 1 else math.ceil(total / 2)
        return lo, total - lo
    if padding == "VALID":
        return span - 1, stride - 1 + max(span - stride, 0)
    if isinstance(padding, str):
        raise ValueError(f"Invalid padding mode: {padding}")
    lo, hi = padding
    return span - lo - 1, span - hi - 1


def _forward_padding(span: int, padding: str) -> tuple[int, int]:
    """``lax.padtype_to_pads`` for a stride-1 window of length ``span``."""
    kind = padding.upper()
    if kind == "VALID":
        return 0, 0
    if kind in ("SAME", "SAME_LOWER"):
        total = span - 1
        lo = total // 2 if kind == "SAME" else total - total // 2
        return lo, total - lo
    raise ValueError(
        f"Unrecognized padding type: expected 'VALID', 'SAME', or 'SAME_LOWER', got {padding}."
    )


def pads(
    kernel: int, stride: int, dilation: int, padding: Any, use_consistent_padding: bool = False
) -> tuple[int, int]:
    """JAX's ``(lo, hi)`` padding of the stride-dilated input for one axis."""
    span = dilation * (kernel - 1) + 1
    if use_consistent_padding or padding in ("SAME", "VALID"):
        return _transpose_padding(span, stride, padding)
    if isinstance(padding, str):
        return _forward_padding(span, padding)
    lo, hi = padding
    return int(lo), int(hi)


def crops(
    size: int,
    kernel: int,
    stride: int,
    dilation: int,
    padding: Any,
    use_consistent_padding: bool = False,
) -> tuple[int, int]:
    """JAX's canonical ``(crop_start, crop_end)`` for one axis and input length ``size``.

    ``padding`` is ``'SAME'``, ``'VALID'`` (or another padding string) or one ``(lo, hi)`` pair.
    ``crop_end`` is set so that the canonical length equals JAX's (see the module's rule);
    raises ``ValueError`` where JAX does.
    """
    span = dilation * (kernel - 1) + 1
    lo, hi = pads(kernel, stride, dilation, padding, use_consistent_padding)
    dilated = max(0, (size - 1) * stride + 1)
    if dilated + lo + hi < 0:
        raise ValueError(
            "Negative padding is larger than the size of the corresponding dimension: got "
            f"padding={(lo, hi)} for an axis of dilated length {dilated}"
        )
    out = max(0, dilated + lo + hi - span + 1)
    start = span - 1 - lo
    return start, (size - 1) * stride + span - start - out


def crop_rule(
    kernel_size: Sequence[int],
    strides: Sequence[int],
    rhs_dilation: Sequence[int],
    padding: Padding,
    use_consistent_padding: bool = False,
) -> CropRule:
    """The :data:`tconv.layer.CropRule` of ``lax.conv_transpose``: spatial shape -> crops."""
    rank = len(kernel_size)
    per_axis: Sequence[Any] = [padding] * rank if isinstance(padding, str) else padding
    consistent = (use_consistent_padding,) * rank
    return per_axis_rule(crops, kernel_size, strides, rhs_dilation, per_axis, consistent)


# --- the op ---------------------------------------------------------------------------------


def _positive(value: Any, rank: int, name: str) -> tuple[int, ...]:
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {rank} ints, got {value!r}") from None
    if not all(is_int(v) for v in values):
        raise ValueError(f"{name} must be a sequence of {rank} ints, got {value!r}")
    values = tuple(int(v) for v in values)
    if len(values) != rank:
        raise ValueError(f"{name} must have {rank} entries (one per spatial axis), got {value!r}")
    if any(v <= 0 for v in values):
        raise TypeError(f"All dilations must be positive, got {name}={values}.")
    return values


def op(
    rhs: Any,
    strides: Sequence[int],
    padding: Padding,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    transpose_kernel: bool = False,
    *,
    use_consistent_padding: bool = False,
) -> TransposedConv:
    """The canonical op of ``lax.conv_transpose`` with kernel ``rhs`` and these arguments.

    The data specs must be channels-last (``N...C``) or channels-first (``NC...``) with the
    spatial axes in the kernel spec's order (the defaults, ``NCHW``/``OIHW``, ...);
    :func:`conv_transpose` takes any.  The op has ``framework="jax"`` and the kernel layout of
    :func:`kernel_layout`.
    """
    w = np.asarray(rhs)
    lhs_spec, rhs_spec, out_spec = dimension_specs(dimension_numbers, w.ndim)
    spatial = _spatial(rhs_spec)
    formats = {f"N{spatial}C": "channels_last", f"NC{spatial}": "channels_first"}
    if lhs_spec not in formats or formats.get(out_spec) != formats[lhs_spec]:
        raise ValueError(
            f"op() needs lhs and out specs both N{spatial}C or both NC{spatial} for rhs spec "
            f"{rhs_spec!r}, got {lhs_spec!r} and {out_spec!r}; conv_transpose() takes any"
        )
    rank = w.ndim - 2
    strides_t = _positive(strides, rank, "strides")
    dilation_t = _positive(
        (1,) * rank if rhs_dilation is None else rhs_dilation, rank, "rhs_dilation"
    )
    layout = kernel_layout(rhs_spec, transpose_kernel)
    kernel = layout.to_canonical(w, 1)
    if any(k <= 0 for k in kernel.shape[:-2]):
        raise ValueError(f"kernel spatial sizes must be positive, got rhs shape {w.shape}")
    if not isinstance(padding, str):
        try:
            pairs = [tuple(p) for p in padding]
        except TypeError:
            pairs = [()]
        if any(len(p) != 2 or not all(is_int(v) for v in p) for p in pairs):
            raise ValueError(
                "padding argument to conv_general_dilated should be a string or a sequence of "
                f"(low, high) pairs of ints, got {padding!r}"
            )
        if len(pairs) != rank:
            raise TypeError(
                f"Wrong number of explicit pads for convolution: expected {rank} (lo, hi) pairs, "
                f"got {padding}."
            )
        padding = [(int(lo), int(hi)) for lo, hi in pairs]
    elif padding not in ("SAME", "VALID"):
        if use_consistent_padding:
            raise ValueError(f"Invalid padding mode: {padding}")
        if any(s != 1 for s in strides_t):
            raise ValueError(
                f"padding={padding!r}: JAX hands padding strings other than 'SAME' and 'VALID' to "
                "conv_general_dilated, which refuses them with strides > 1 (String padding is not "
                "implemented for transposed convolution using this op)"
            )
    rule = crop_rule(kernel.shape[:-2], strides_t, dilation_t, padding, use_consistent_padding)
    return TransposedConv(
        kernel,
        None,
        strides_t,
        dilation_t,
        rule,
        data_format=formats[lhs_spec],
        kernel_layout=layout,
        framework="jax",
        copy=False,  # the caller's arrays: no copy per call
    )


def conv_transpose(
    lhs: Any,
    rhs: Any,
    strides: Sequence[int],
    padding: Padding,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    transpose_kernel: bool = False,
    precision: Any = None,
    preferred_element_type: Any = None,
    use_consistent_padding: bool = False,
    *,
    method: str = "auto",
) -> np.ndarray:
    """``jax.lax.conv_transpose`` (eager, CPU semantics); ``method`` is ``"auto"``,
    ``"fast"``, ``"reference"`` or ``"native"`` (:mod:`tconv.ops`).  Layouts per
    ``dimension_numbers`` (see the module).

    ``precision`` is checked as JAX checks it and has no effect: JAX on CPU computes float32
    convolutions in full precision whatever it asks for (measured: ``"fastest"``,
    ``"bfloat16"`` and ``"highest"`` give identical results), and so does tconv.
    ``preferred_element_type`` (at least as wide as the inputs) is the dtype of the result and
    of the arithmetic: float16 or bfloat16 inputs with ``float32`` give a float32 result.
    """
    _check_precision(precision)
    x, w = np.asarray(lhs), np.asarray(rhs)
    if x.ndim != w.ndim:
        raise ValueError(
            f"lhs and rhs must have the same number of dimensions, got lhs shape {x.shape} and "
            f"rhs shape {w.shape}"
        )
    if x.dtype != w.dtype:
        raise TypeError(
            "lax.conv_general_dilated requires arguments to have the same dtypes, got "
            f"{x.dtype}, {w.dtype}."
        )
    if preferred_element_type is not None:
        x, w = _as_preferred(x, w, preferred_element_type)
    lhs_spec, rhs_spec, out_spec = dimension_specs(dimension_numbers, x.ndim)
    spatial = _spatial(rhs_spec)
    channels_last = (f"N{spatial}C", rhs_spec, f"N{spatial}C")
    conv = op(
        w,
        strides,
        padding,
        rhs_dilation,
        channels_last,
        transpose_kernel,
        use_consistent_padding=use_consistent_padding,
    )
    xc = np.transpose(x, _data_perm(lhs_spec, rhs_spec))
    if xc.shape[-1] != conv.in_channels:
        raise ValueError(
            "conv_general_dilated lhs feature dimension size divided by feature_group_count "
            "must equal the rhs input feature dimension size, but "
            f"{xc.shape[-1]} // 1 != {conv.in_channels}."
        )
    yc = conv.forward(xc, method)
    out_perm = _data_perm(out_spec, rhs_spec)
    return np.ascontiguousarray(np.transpose(yc, tuple(int(i) for i in np.argsort(out_perm))))


PRECISION_NAMES = (
    "highest",
    "float32",
    "high",
    "bfloat16_3x",
    "tensorfloat32",
    "default",
    "bfloat16",
    "fastest",
)
"""The strings ``jax.lax`` accepts as ``precision``."""


def _check_precision(precision: Any) -> None:
    """Refuse what ``jax.lax`` refuses as ``precision``: None, a name in
    :data:`PRECISION_NAMES`, a ``lax.Precision`` (or dot-algorithm) value, or a pair of them."""

    def one(p: Any) -> bool:
        if isinstance(p, str):
            return p in PRECISION_NAMES
        return type(p).__name__ in ("Precision", "DotAlgorithmPreset", "DotAlgorithm")

    pair = isinstance(precision, tuple) and len(precision) == 2 and all(map(one, precision))
    if not (precision is None or one(precision) or pair):
        raise ValueError(
            f"precision={precision!r} is not a precision: JAX takes None, one of "
            f"{list(PRECISION_NAMES)}, a lax.Precision value, a pair of those, or a "
            "lax.DotAlgorithm(Preset)"
        )


def _as_preferred(x: np.ndarray, w: np.ndarray, preferred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Inputs cast to ``preferred_element_type`` (floating, not narrower than the inputs)."""
    try:
        dtype = np.dtype(preferred)
    except TypeError as err:
        raise TypeError(f"preferred_element_type={preferred!r} is not a dtype") from err

    def floating(d: np.dtype) -> bool:
        return d.kind == "f" or d.name == "bfloat16"

    if not floating(dtype) or not (floating(x.dtype) or x.dtype.kind in "iu"):
        raise TypeError(
            f"preferred_element_type={dtype.name} is incompatible with inputs of dtype "
            f"{x.dtype.name}: JAX pairs floating or integer inputs with a floating "
            "preferred_element_type here (tconv computes floating point only)"
        )
    if floating(x.dtype) and dtype.itemsize < x.dtype.itemsize:
        raise TypeError(
            f"preferred_element_type={dtype.name} must not be narrower than the inputs' dtype "
            f"{x.dtype.name}"
        )
    return x.astype(dtype), w.astype(dtype)
