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
:func:`op` builds any convention's op from its parameters (validated by that convention's
adapter, with the framework's wording); ``tconv shape`` is built on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import jax as jax_adapter
from . import keras as keras_adapter
from . import onnx as onnx_adapter
from . import torch as torch_adapter
from .checks import is_int
from .layer import KERAS, TORCH, Crops, KernelLayout, TransposedConv

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
    if not 3 <= w.ndim <= 5:
        raise ValueError(
            f"kernel must have 3 to 5 dimensions (1 to 3 spatial axes and two channel axes), "
            f"got shape {w.shape}"
        )
    if not is_int(groups) or groups <= 0:
        raise ValueError(f"groups must be a positive int, got groups={groups!r}")
    if groups != 1 and source not in GROUPED:
        raise ValueError(f"groups={groups} applies to a torch or onnx kernel, not {source!r}")
    if w.shape[0] % groups:
        raise ValueError(
            f"groups={groups} must divide the in_channels of a {source} weight (in_channels, "
            f"out_channels // groups, *kernel_size), got shape {w.shape}"
        )
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

PARAMETERS = {
    "keras": ("padding", "output_padding"),
    "torch": ("padding", "output_padding", "output_size"),
    "onnx": ("auto_pad", "pads", "output_padding", "output_shape"),
    "jax": ("padding", "use_consistent_padding"),
}
"""The padding parameters each convention takes (keyword arguments of :func:`op`)."""


def _per_axis(value: Any, rank: int, name: str) -> tuple[int, ...]:
    """An int or ``rank`` ints -> ``rank`` positive ints (``strides``, ``dilation``)."""
    values = (value,) * rank if is_int(value) else value
    try:
        values = tuple(values)
    except TypeError:
        values = ()
    if len(values) != rank or not all(is_int(v) for v in values):
        raise ValueError(f"{name} must be an int or {rank} ints (one per axis), got {value!r}")
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive, got {name}={value!r}")
    return tuple(int(v) for v in values)


def _kernel_size(kernel_size: Any) -> tuple[int, ...]:
    try:
        k = tuple(kernel_size)
    except TypeError:
        k = ()
    if not 1 <= len(k) <= 3 or not all(is_int(v) and v > 0 for v in k):
        raise ValueError(
            f"kernel_size must be 1 to 3 positive ints (one per spatial axis), got {kernel_size!r}"
        )
    return tuple(int(v) for v in k)


def op(
    convention: str,
    kernel_size: Sequence[int],
    strides: Any = 1,
    dilation: Any = 1,
    *,
    in_channels: int = 1,
    filters: int = 1,
    groups: int = 1,
    data_format: str | None = None,
    **params: Any,
) -> TransposedConv:
    """The op of ``convention`` with these parameters and a zero kernel, validated by the
    convention's own adapter (so its errors read as the framework's).

    ``kernel_size``: one int per spatial axis; ``strides``/``dilation``: an int or one per axis;
    ``params``: the convention's padding parameters (:data:`PARAMETERS`): keras ``padding``,
    ``output_padding`` (as ``keras.ops.conv_transpose``); torch ``padding``, ``output_padding``,
    ``output_size``; onnx ``auto_pad``, ``pads``, ``output_padding``, ``output_shape``; jax
    ``padding`` (``'SAME'``, ``'VALID'`` or ``(lo, hi)`` pairs), ``use_consistent_padding``.
    ``groups``: torch and onnx only; ``data_format``: keras only.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    unknown = sorted(set(params) - set(PARAMETERS[convention]))
    if unknown:
        raise TypeError(
            f"unexpected {convention} parameter(s) {unknown}; {convention} takes "
            f"{list(PARAMETERS[convention])}"
        )
    k = _kernel_size(kernel_size)
    rank = len(k)
    s, d = _per_axis(strides, rank, "strides"), _per_axis(dilation, rank, "dilation")
    if groups != 1 and convention not in GROUPED:
        raise ValueError(f"groups={groups!r} applies to torch and onnx, not {convention}")
    if data_format is not None and convention != "keras":
        raise ValueError(f"data_format applies to keras, not {convention}")
    if convention == "torch":
        weight = np.zeros((in_channels, filters // groups, *k), np.float32)
        return torch_adapter.op(
            weight,
            None,
            s,
            params.get("padding", 0),
            params.get("output_padding", 0),
            groups,
            d,
            output_size=params.get("output_size"),
        )
    if convention == "onnx":
        weight = np.zeros((in_channels, filters // groups, *k), np.float32)
        return onnx_adapter.op(weight, strides=list(s), dilations=list(d), group=groups, **params)
    if convention == "jax":
        rhs = np.zeros((*k, in_channels, filters), np.float32)
        return jax_adapter.op(
            rhs,
            s,
            params.get("padding", "VALID"),
            d,
            use_consistent_padding=bool(params.get("use_consistent_padding", False)),
        )
    padding = keras_adapter.standardize_padding(params.get("padding", "valid"))
    output_padding = keras_adapter.standardize_output_padding(params.get("output_padding"), s)
    rule = keras_adapter.crop_rule(k, s, d, padding, output_padding)
    kernel = np.zeros((*k, filters, in_channels), np.float32)
    return TransposedConv(
        kernel, None, s, d, rule, data_format=keras_adapter.standardize_data_format(data_format)
    )


def crops(
    convention: str,
    input_shape: Sequence[int],
    kernel_size: Sequence[int],
    strides: Any = 1,
    dilation: Any = 1,
    **params: Any,
) -> Crops:
    """The canonical ``(crop_start, crop_end)`` per axis of ``convention``'s padding ``params``
    (see :func:`op`) for the spatial input shape ``input_shape``; raises ``ValueError`` (or
    ``TypeError``) where the framework refuses the parameters or that input."""
    conv = op(convention, kernel_size, strides, dilation, **params)
    spatial = tuple(input_shape)
    if len(spatial) != conv.rank or not all(is_int(n) and n >= 0 for n in spatial):
        raise ValueError(
            f"input_shape must hold the {conv.rank} spatial sizes (ints >= 0) of a "
            f"kernel_size={tuple(kernel_size)}, got {input_shape!r}"
        )
    if convention == "torch":
        torch_adapter.check_input(conv, (1, 1, *spatial))
    return conv.crops(spatial)


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
    k = _kernel_size(kernel_size)
    rank = len(k)
    s, d = _per_axis(strides, rank, "strides"), _per_axis(dilation, rank, "dilation")
    try:
        pairs = [tuple(c) for c in crops]
    except TypeError:
        pairs = []
    if len(pairs) != rank or not all(len(c) == 2 and all(map(is_int, c)) for c in pairs):
        raise ValueError(
            f"crops must be {rank} (crop_start, crop_end) pairs of ints, one per axis of "
            f"kernel_size={k}, got {crops!r}"
        )
    crops = [(int(b), int(e)) for b, e in pairs]
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
    padding, output_padding, problems, actions = [], [], [], []
    for axis, ((b, e), s, d) in enumerate(zip(crops, strides, dilation, strict=True)):
        if b >= 0 and 0 <= b - e < max(s, d):
            padding.append(b)
            output_padding.append(b - e)
            continue
        if b < 0:
            problems.append(f"axis {axis}: crop_start={b} < 0")
        elif e > b:
            problems.append(f"axis {axis}: crop_end={e} > crop_start={b}")
        else:
            problems.append(f"axis {axis}: output_padding={b - e} >= stride={s}, dilation={d}")
        # The closest PyTorch crops (p, p - op), then the rest by hand on the result.
        p = max(0, min(b, e))
        op = min(-e, max(s, d) - 1) if e < 0 else 0
        padding.append(p)
        output_padding.append(op)
        start, end = b - p, e - (p - op)
        for count, what in (
            (start, "drop the first {} row(s)"),
            (end, "drop the last {} row(s)"),
            (-start, "prepend {} row(s) of activation(bias)"),
            (-end, "append {} row(s) of activation(bias)"),
        ):
            if count > 0:
                actions.append(f"axis {axis}: " + what.format(count))
    if problems:
        added = " (added rows are zero without bias)" if "activation" in str(actions) else ""
        raise NoEquivalentError(
            f"no PyTorch padding/output_padding gives the crops {list(crops)} (PyTorch crops "
            "`padding` >= 0 rows at both ends, and output_padding < stride or dilation gives "
            f"rows back at the end only): {'; '.join(problems)}. Run with "
            f"padding={tuple(padding)}, output_padding={tuple(output_padding)}, then on the "
            f"result: {'; '.join(actions)}{added}"
        )
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
    rank = len(crops)
    cut = [(max(b, 0), max(e, 0)) for b, e in crops]
    grow = [(max(-b, 0), max(-e, 0)) for b, e in crops]
    cropping = cut[0] if rank == 1 else tuple(cut)
    advice = f"then keras.layers.Cropping{rank}D(cropping={cropping})" if any(map(any, cut)) else ""
    if any(b or e for b, e in grow):
        advice += (
            f"{' and' if advice else 'then'} add rows of activation(bias) per axis (start, end) "
            f"{grow} (ZeroPadding{rank}D when the layer has no bias and activation(0) = 0)"
        )
    raise NoEquivalentError(
        f"no Keras padding ('valid'/'same') and output_padding (< strides) gives the crops "
        f"{list(crops)}: run Keras with padding='valid', output_padding=0 (the full result, "
        f"crops (0, 0)), {advice}"
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
