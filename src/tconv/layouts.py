"""Kernel layouts and padding parameters across Keras, PyTorch, ONNX, JAX and TFLite.

Kernels (shown for 2D; every rank works):

========================= ======================================= ==========================
convention                kernel layout                           groups
========================= ======================================= ==========================
``keras`` (= canonical)   ``(kh, kw, filters, in_channels)``      no
``torch``, ``onnx``       ``(in_channels, filters // groups, kh, kw)`` yes
``jax``                   ``(kh, kw, I=in, O=filters)`` (HWIO), applied unflipped: no
                          the canonical kernel flipped spatially
``jax_transpose_kernel``  ``(kh, kw, I=filters, O=in)`` with ``transpose_kernel=True``:
                          the same array as Keras'
``tflite``                ``(filters, kh, kw, in_channels)``      no
========================= ======================================= ==========================

Every conversion goes through the canonical layout (:class:`tconv.layer.KernelLayout`), so
``convert_kernel(w, a, b)`` works for any pair; the named functions below are shortcuts.  A
grouped PyTorch/ONNX kernel converts to the others as the equivalent dense kernel (zeros off the
group blocks).

Padding: :func:`crops` reduces one convention's padding parameters to the canonical
``(crop_start, crop_end)`` per axis (each adapter's own rule); :func:`padding_for` finds the
parameters of another convention that give the same crops for every input length, or raises
:class:`NoEquivalentError` saying what to do instead.  :func:`convert_padding` chains them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import jax as jax_adapter
from . import keras as keras_adapter
from . import onnx as onnx_adapter
from . import torch as torch_adapter
from .layer import KERAS, TORCH, Crops, KernelLayout

CONVENTIONS = ("keras", "torch", "onnx", "jax")
KERNEL_LAYOUTS = ("keras", "torch", "onnx", "jax", "jax_transpose_kernel", "tflite")
GROUPED = ("torch", "onnx")


class NoEquivalentError(ValueError):
    """A convention cannot express these crops with its padding parameters."""


def _tflite_to(w: np.ndarray, groups: int) -> np.ndarray:
    return np.moveaxis(w, 0, -2)


def _tflite_from(wc: np.ndarray, groups: int) -> np.ndarray:
    return np.moveaxis(wc, -2, 0)


TFLITE = KernelLayout("tflite", _tflite_to, _tflite_from, "(filters, *kernel_size, in_channels)")


def kernel_layout(name: str, rank: int) -> KernelLayout:
    """The :class:`~tconv.layer.KernelLayout` named ``name`` (see :data:`KERNEL_LAYOUTS`)."""
    if name in ("jax", "jax_transpose_kernel"):
        rhs_spec = jax_adapter.DEFAULT_DIMENSION_NUMBERS[rank + 2][1]
        return jax_adapter.kernel_layout(rhs_spec, name == "jax_transpose_kernel")
    layouts = {"keras": KERAS, "torch": TORCH, "onnx": TORCH, "tflite": TFLITE}
    if name not in layouts:
        raise ValueError(f"unknown kernel layout {name!r}; expected one of {KERNEL_LAYOUTS}")
    return layouts[name]


def dense(kernel: np.ndarray, groups: int) -> np.ndarray:
    """A grouped canonical kernel ``(*k, out, in // groups)`` as the equivalent dense kernel
    ``(*k, out, in)``, zero outside each group's block."""
    *k, out, in_g = kernel.shape
    result = np.zeros((*k, out, in_g * groups), kernel.dtype)
    out_g = out // groups
    for g in range(groups):
        result[..., g * out_g : (g + 1) * out_g, g * in_g : (g + 1) * in_g] = kernel[
            ..., g * out_g : (g + 1) * out_g, :
        ]
    return result


def convert_kernel(kernel: Any, source: str, target: str, *, groups: int = 1) -> np.ndarray:
    """``kernel`` in layout ``source`` -> the same kernel in layout ``target``.

    ``groups`` describes the source (PyTorch/ONNX only); a grouped kernel converted to a layout
    without groups becomes dense, and to PyTorch/ONNX it stays grouped.
    """
    w = np.asarray(kernel)
    if groups != 1 and source not in GROUPED:
        raise ValueError(f"groups={groups} applies to a torch or onnx kernel, not {source!r}")
    canonical = kernel_layout(source, w.ndim - 2).to_canonical(w, groups)
    if target not in GROUPED and groups != 1:
        canonical, groups = dense(canonical, groups), 1
    return kernel_layout(target, w.ndim - 2).from_canonical(canonical, groups)


def keras_to_torch(kernel: Any) -> np.ndarray:
    """Keras ``(*k, filters, in)`` -> PyTorch/ONNX ``(in, filters, *k)``."""
    return convert_kernel(kernel, "keras", "torch")


def torch_to_keras(weight: Any, groups: int = 1) -> np.ndarray:
    """PyTorch/ONNX ``(in, filters // groups, *k)`` -> Keras ``(*k, filters, in)`` (dense)."""
    return convert_kernel(weight, "torch", "keras", groups=groups)


def keras_to_jax(kernel: Any, transpose_kernel: bool = False) -> np.ndarray:
    """Keras kernel -> ``lax.conv_transpose``'s default ``rhs`` (``HWIO``); with
    ``transpose_kernel=True`` that is the Keras array itself."""
    return convert_kernel(kernel, "keras", "jax_transpose_kernel" if transpose_kernel else "jax")


def jax_to_keras(rhs: Any, transpose_kernel: bool = False) -> np.ndarray:
    """``lax.conv_transpose``'s default ``rhs`` -> Keras kernel."""
    return convert_kernel(rhs, "jax_transpose_kernel" if transpose_kernel else "jax", "keras")


def torch_to_jax(weight: Any, groups: int = 1, transpose_kernel: bool = False) -> np.ndarray:
    """PyTorch/ONNX weight -> ``lax.conv_transpose``'s default ``rhs`` (dense)."""
    target = "jax_transpose_kernel" if transpose_kernel else "jax"
    return convert_kernel(weight, "torch", target, groups=groups)


def jax_to_torch(rhs: Any, transpose_kernel: bool = False) -> np.ndarray:
    """``lax.conv_transpose``'s default ``rhs`` -> PyTorch/ONNX weight."""
    return convert_kernel(rhs, "jax_transpose_kernel" if transpose_kernel else "jax", "torch")


def keras_to_tflite(kernel: Any) -> np.ndarray:
    """Keras ``(*k, filters, in)`` -> TFLite TRANSPOSE_CONV ``(filters, *k, in)``."""
    return convert_kernel(kernel, "keras", "tflite")


def tflite_to_keras(kernel: Any) -> np.ndarray:
    """TFLite ``(filters, *k, in)`` -> Keras ``(*k, filters, in)``."""
    return convert_kernel(kernel, "tflite", "keras")


def torch_to_tflite(weight: Any, groups: int = 1) -> np.ndarray:
    """PyTorch/ONNX weight -> TFLite ``(filters, *k, in)`` (dense)."""
    return convert_kernel(weight, "torch", "tflite", groups=groups)


# --- padding ------------------------------------------------------------------------------


def _per_axis(value: Any, rank: int) -> tuple[Any, ...]:
    if value is None or isinstance(value, (int, np.integer, str)):
        return (value,) * rank
    return tuple(value)


def crops(
    convention: str,
    input_shape: Sequence[int],
    kernel_size: Sequence[int],
    strides: Any = 1,
    dilation: Any = 1,
    **params: Any,
) -> Crops:
    """The canonical ``(crop_start, crop_end)`` per axis of ``convention``'s padding ``params``
    for spatial input shape ``input_shape``.

    ``params``: keras ``padding``, ``output_padding``; torch ``padding``, ``output_padding``,
    ``output_size``; onnx ``auto_pad``, ``pads``, ``output_padding``, ``output_shape``; jax
    ``padding`` (``'SAME'``, ``'VALID'`` or ``(lo, hi)`` pairs), ``use_consistent_padding``.
    ``strides``/``dilation``: an int or one per axis.
    """
    rank = len(kernel_size)
    k, s, d = tuple(kernel_size), _per_axis(strides, rank), _per_axis(dilation, rank)
    if convention == "keras":
        padding = str(params.get("padding", "valid")).lower()
        op = params.get("output_padding")
        rule = keras_adapter.crop_rule(
            k, s, d, padding, None if op is None else _per_axis(op, rank)
        )
    elif convention == "torch":
        rule = torch_adapter.crop_rule(
            k,
            s,
            _per_axis(params.get("padding", 0), rank),
            _per_axis(params.get("output_padding", 0), rank),
            d,
            params.get("output_size"),
        )
    elif convention == "onnx":
        pads = params.get("pads") or [0] * (2 * rank)
        op = params.get("output_padding") or [0] * rank
        rule = onnx_adapter.crop_rule(
            k, s, d, params.get("auto_pad", "NOTSET"), pads, op, params.get("output_shape")
        )
    elif convention == "jax":
        padding = params.get("padding", "VALID")
        rule = jax_adapter.crop_rule(
            k, s, d, padding, bool(params.get("use_consistent_padding", False))
        )
    else:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return rule(tuple(input_shape))


def padding_for(
    convention: str,
    crops: Sequence[tuple[int, int]],
    kernel_size: Sequence[int],
    strides: Any = 1,
    dilation: Any = 1,
) -> dict[str, Any]:
    """Parameters of ``convention`` that give these canonical crops for every input length.

    Returns the keyword arguments (keras: ``padding``, ``output_padding``; torch: ``padding``,
    ``output_padding``; onnx: ``pads``, ``output_padding`` or ``auto_pad``; jax: ``padding``).
    Raises :class:`NoEquivalentError` (a ``ValueError``) saying what to do when there are none.
    """
    rank = len(kernel_size)
    k, s, d = tuple(kernel_size), _per_axis(strides, rank), _per_axis(dilation, rank)
    crops = [(int(b), int(e)) for b, e in crops]
    spans = [dd * (kk - 1) + 1 for kk, dd in zip(k, d, strict=True)]
    if convention == "keras":
        return _keras_padding(crops, k, s, d)
    if convention == "torch":
        return _torch_padding(crops, s, d)
    if convention == "onnx":
        for auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
            if all(
                onnx_adapter.crops(1, kk, ss, dd, auto_pad) == c
                for kk, ss, dd, c in zip(k, s, d, crops, strict=True)
            ):
                return {"auto_pad": auto_pad}
        # Zero rows at the end are output_padding where it is allowed (< stride), else pads < 0.
        ops = [min(max(0, -e), ss - 1) for (_, e), ss in zip(crops, s, strict=True)]
        ends = [e + op for (_, e), op in zip(crops, ops, strict=True)]
        return {"pads": [b for b, _ in crops] + ends, "output_padding": ops}
    if convention == "jax":
        for padding in ("SAME", "VALID"):
            if all(
                jax_adapter.crops(1, kk, ss, dd, padding) == c
                for kk, ss, dd, c in zip(k, s, d, crops, strict=True)
            ):
                return {"padding": padding}
        return {
            "padding": [(sp - 1 - b, sp - 1 - e) for sp, (b, e) in zip(spans, crops, strict=True)]
        }
    raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def _torch_padding(
    crops: Sequence[tuple[int, int]], strides: Sequence[int], dilation: Sequence[int]
) -> dict[str, Any]:
    padding, output_padding = [], []
    for axis, ((b, e), s, d) in enumerate(zip(crops, strides, dilation, strict=True)):
        op = b - e
        if b < 0:
            raise NoEquivalentError(
                f"axis {axis}: crop_start={b} adds rows at the start, which PyTorch cannot do "
                f"(padding >= 0); run with padding=0, output_padding={max(0, -e)} if allowed and "
                f"prepend {-b} bias-only rows to the result"
            )
        if op < 0:
            raise NoEquivalentError(
                f"axis {axis}: crop_end={e} > crop_start={b} (e.g. Keras 'same' with an odd "
                f"total crop); PyTorch crops padding rows at both ends and output_padding only "
                f"gives rows back at the end: run with padding={b}, output_padding=0 and drop the "
                f"last {-op} row(s) of the result (y[..., :-{-op}] on that axis)"
            )
        if op >= s and op >= d:
            raise NoEquivalentError(
                f"axis {axis}: needs output_padding={op}, but PyTorch requires it smaller than "
                f"stride={s} or dilation={d}; run with padding={b}, output_padding=0 and append "
                f"{op} bias-only row(s) at the end"
            )
        padding.append(b)
        output_padding.append(op)
    return {"padding": tuple(padding), "output_padding": tuple(output_padding)}


def _keras_padding(
    crops: Sequence[tuple[int, int]],
    kernel_size: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> dict[str, Any]:
    axes = list(zip(kernel_size, strides, dilation, crops, strict=True))
    for padding in keras_adapter.PADDINGS:
        if all(keras_adapter.crops(1, k, s, d, padding, None) == c for k, s, d, c in axes):
            return {"padding": padding, "output_padding": None}
        ops = []
        for k, s, d, c in axes:
            # TensorFlow refuses 'same' with output_padding=0 and an even dilated kernel (its
            # output (n-1)*s is not a 'same' output length), so that pair is never proposed.
            tf_ok = [
                op for op in range(s) if not (padding == "same" and op == 0 and d * (k - 1) % 2)
            ]
            found = [op for op in tf_ok if keras_adapter.crops(1, k, s, d, padding, op) == c]
            if not found:
                break
            ops.append(found[0])
        else:
            return {"padding": padding, "output_padding": tuple(ops)}
    raise NoEquivalentError(
        f"no Keras padding ('valid'/'same') and output_padding (< strides) gives the crops "
        f"{list(crops)}; run Keras with padding='valid', output_padding=0 (crops (0, 0): the "
        "full result) and crop the result per axis (crop_start rows at the start, crop_end at "
        "the end, e.g. with a Cropping layer), or use tconv's op directly"
    )


def convert_padding(
    source: str,
    target: str,
    input_shape: Sequence[int],
    kernel_size: Sequence[int],
    strides: Any = 1,
    dilation: Any = 1,
    **params: Any,
) -> dict[str, Any]:
    """``source``'s padding ``params`` -> ``target``'s equivalent parameters.

    ``input_shape`` (spatial) is needed where the source's crops depend on it (ONNX
    ``output_shape``, PyTorch ``output_size``, JAX empty axes); the result is then exact for that
    input shape.
    """
    c = crops(source, input_shape, kernel_size, strides, dilation, **params)
    return padding_for(target, c, kernel_size, strides, dilation)
