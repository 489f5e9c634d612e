"""TFLite's ``TRANSPOSE_CONV`` as tconv layers: from a ``.tflite`` file or from parameters.

TFLite's op (2-D only): input ``(N, H, W, C)``, filter ``(F, kh, kw, C)`` (OHWI), optional bias
``(F,)``, an explicit ``output_shape (N, Ho, Wo, F)``, ``padding`` SAME or VALID and strides; no
dilation, no groups.  Per axis the padding is derived from the *output* length, as TFLite's
``ComputePaddingHeightWidth`` does::

    o     = ceil(out / s)                 (SAME)     trunc((out + s - k) / s)   (VALID)
    total = max((o - 1)*s + k - out, 0)
    pad   = total // 2

and ``y[i*s - pad + j] += x[i]·w[j]`` for the ``out`` outputs: in canonical terms (see
:mod:`tconv.geometry`) ``crop_start = pad`` and ``crop_end = (size - 1)*s + k - pad - out``
(negative when the output is longer than the scatter: those rows get the bias only).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..geometry import Axis, Geometry
from ..layer import KernelLayout, TransposedConv
from ..quant import QuantizedTransposeConv
from .model import (
    ACTIVATIONS,
    PADDINGS,
    TRANSPOSE_CONV,
    TRANSPOSE_CONV_OPTIONS,
    Model,
    Operator,
    Subgraph,
    Tensor,
    read_model,
)

Layer = TransposedConv | QuantizedTransposeConv
_FLOAT_ACTIVATIONS = {"NONE": None, "RELU": "relu", "RELU6": "relu6"}


def _to_canonical(w: np.ndarray, groups: int) -> np.ndarray:
    return np.moveaxis(w, 0, -2)


def _from_canonical(wc: np.ndarray, groups: int) -> np.ndarray:
    return np.moveaxis(wc, -2, 0)


TFLITE = KernelLayout(
    "tflite", _to_canonical, _from_canonical, "(filters, *kernel_size, in_channels)"
)
"""TFLite's filter layout OHWI."""


def _trunc_div(a: int, b: int) -> int:
    return a // b if a >= 0 else -((-a) // b)


def axis_crops(size: int, kernel: int, stride: int, out: int, padding: str) -> tuple[int, int]:
    """``(crop_start, crop_end)`` of one axis of TFLite's TRANSPOSE_CONV (module docstring)."""
    if padding == "SAME":
        o = (out + stride - 1) // stride
    elif padding == "VALID":
        o = _trunc_div(out + stride - kernel, stride)
    else:
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    pad = max((o - 1) * stride + kernel - out, 0) // 2
    return pad, (size - 1) * stride + kernel - pad - out


def geometry(
    in_shape: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    out_shape: Sequence[int],
    padding: str,
    in_channels: int,
    filters: int,
) -> Geometry:
    """The canonical geometry of a TFLite TRANSPOSE_CONV from its spatial input shape, kernel,
    strides, spatial output shape and padding."""
    for label, values in (("strides", strides), ("output_shape", out_shape)):
        if len(values) != len(in_shape) or any(
            int(v) < (1 if label == "strides" else 0) for v in values
        ):
            raise ValueError(
                f"{label} must hold {len(in_shape)} positive integers, got {tuple(values)}"
            )
    axes = tuple(
        Axis(int(n), int(k), int(s), 1, *axis_crops(int(n), int(k), int(s), int(o), padding))
        for n, k, s, o in zip(in_shape, kernel, strides, out_shape, strict=True)
    )
    return Geometry(axes, in_channels, filters)


def transpose_conv(
    input: Any,
    filter: Any,
    output_shape: Sequence[int],
    *,
    strides: Sequence[int] = (1, 1),
    padding: str = "SAME",
    bias: Any = None,
    input_scale: float,
    input_zero_point: int,
    filter_scale: float | Sequence[float],
    output_scale: float,
    output_zero_point: int,
    activation: str = "NONE",
    method: str = "fast",
) -> np.ndarray:
    """TFLite's quantized ``TRANSPOSE_CONV`` on explicit parameters, bit-exact with its
    reference kernel.

    Args:
        input: ``(N, H, W, C)`` int8 (int16 for a 16x8 op).
        filter: ``(F, kh, kw, C)`` int8, symmetric.
        output_shape: ``(N, Ho, Wo, F)`` (or the spatial ``(Ho, Wo)``).
        strides: ``(stride_h, stride_w)``.
        padding: ``"SAME"`` or ``"VALID"``.
        bias: ``(F,)`` int32 (int64 for 16x8) or None.
        input_scale, input_zero_point, output_scale, output_zero_point: per-tensor
            quantization of input and output.
        filter_scale: one scale, or one per output channel.
        activation: fused ``"NONE"``, ``"RELU"``, ``"RELU6"`` or ``"RELU_N1_TO_1"``.
        method: ``"fast"`` or ``"reference"``.

    Returns ``(N, Ho, Wo, F)`` in the input's dtype.
    """
    x, w = np.asarray(input), np.asarray(filter)
    if x.dtype not in (np.int8, np.int16):
        raise TypeError(f"input must be int8 or int16, got dtype={x.dtype.name}")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(
            f"input (N, H, W, C) and filter (F, kh, kw, C) must have rank 4, got shapes "
            f"{x.shape} and {w.shape}"
        )
    if w.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"filter {w.shape} has {w.shape[-1]} input channels, input {x.shape} has {x.shape[-1]}"
        )
    out = tuple(int(v) for v in output_shape)
    if len(out) == 4:
        if out[0] != x.shape[0] or out[3] != w.shape[0]:
            raise ValueError(f"output_shape {out} must be (N={x.shape[0]}, Ho, Wo, F={w.shape[0]})")
        out = out[1:3]
    g = geometry(x.shape[1:3], w.shape[1:3], strides, out, padding, x.shape[-1], w.shape[0])
    op = QuantizedTransposeConv(
        w,
        None if bias is None else np.asarray(bias),
        g,
        input_scale=input_scale,
        input_zero_point=input_zero_point,
        filter_scale=np.atleast_1d(np.asarray(filter_scale, np.float32)),
        output_scale=output_scale,
        output_zero_point=output_zero_point,
        activation=activation,
        dtype=x.dtype.name,
        padding=padding,
    )
    return op(x, method)


def load_layers(path: str | os.PathLike[str]) -> dict[str, Layer]:
    """Every ``TRANSPOSE_CONV`` of a ``.tflite`` file, in graph order, by the name of the op's
    output tensor: a :class:`tconv.quant.QuantizedTransposeConv` for int8 and 16x8 ops, a
    :class:`tconv.layer.TransposedConv` (TFLite layouts, the float engine) for float32 ones.

    No TensorFlow needed.  Raises ``ValueError`` naming the file for a malformed file and for an
    op tconv cannot reproduce (weights computed at run time, hybrid or uint8 quantization, a
    fused activation other than RELU, RELU6, RELU_N1_TO_1).
    """
    model = read_model(path)
    layers: dict[str, Layer] = {}
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if op.code == TRANSPOSE_CONV:
                name, layer = _layer(model, subgraph, op)
                layers[name] = layer
    return layers


def describe(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One summary per ``TRANSPOSE_CONV`` of a ``.tflite`` file (for ``tconv inspect``): name,
    kind (float32, int8, 16x8), input and output shapes, filter shape, strides, padding,
    activation, quantization, parameters."""
    model = read_model(path)
    rows = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if op.code != TRANSPOSE_CONV:
                continue
            name, layer = _layer(model, subgraph, op)
            padding, strides, activation = _options(model, op)
            t = subgraph.tensors
            row: dict[str, Any] = {
                "name": name,
                "operator": op.index,
                "input": list(t[op.inputs[2]].shape),
                "output": list(t[op.outputs[0]].shape),
                "filter": list(t[op.inputs[1]].shape),
                "strides": list(strides),
                "padding": padding,
                "activation": activation,
                "bias": len(op.inputs) > 3 and op.inputs[3] >= 0,
                "params": int(layer.kernel.size) + (0 if layer.bias is None else layer.bias.size),
            }
            if isinstance(layer, QuantizedTransposeConv):
                row["kind"] = "16x8" if layer.sixteen else "int8"
                row["input_quantization"] = [layer.input_scale, layer.input_zero_point]
                row["output_quantization"] = [layer.output_scale, layer.output_zero_point]
                row["filter_scales"] = "per-channel" if layer.per_channel else "per-tensor"
            else:
                row["kind"] = "float32"
                row["filter_scales"] = None
            rows.append(row)
    return rows


def _options(model: Model, op: Operator) -> tuple[str, tuple[int, int], str]:
    where = f"TRANSPOSE_CONV operator {op.index}"
    if op.options is None or op.options_type != TRANSPOSE_CONV_OPTIONS:
        raise model.fail(f"{where} has no TransposeConvOptions (options type {op.options_type})")
    padding = int(op.options.scalar(0, "b", 0))
    stride_w, stride_h = int(op.options.scalar(1, "i", 0)), int(op.options.scalar(2, "i", 0))
    activation = int(op.options.scalar(3, "b", 0))
    if padding not in PADDINGS:
        raise model.fail(f"{where} has padding {padding}, expected 0 (SAME) or 1 (VALID)")
    if stride_h < 1 or stride_w < 1:
        raise model.fail(f"{where} has strides ({stride_h}, {stride_w}), expected positive")
    if activation not in ACTIVATIONS:
        raise model.fail(
            f"{where} has fused activation {activation}, not an ActivationFunctionType"
        )
    return PADDINGS[padding], (stride_h, stride_w), ACTIVATIONS[activation]


def _layer(model: Model, subgraph: Subgraph, op: Operator) -> tuple[str, Layer]:
    where = f"TRANSPOSE_CONV operator {op.index}"
    if len(op.inputs) < 3 or len(op.outputs) != 1 or min(op.inputs[:3]) < 0 or op.outputs[0] < 0:
        raise model.fail(
            f"{where} has inputs {op.inputs} and outputs {op.outputs}; expected 3 or 4 and 1"
        )
    t = subgraph.tensors
    shape_t, filter_t, input_t = t[op.inputs[0]], t[op.inputs[1]], t[op.inputs[2]]
    out_t = t[op.outputs[0]]
    bias_t = t[op.inputs[3]] if len(op.inputs) > 3 and op.inputs[3] >= 0 else None
    padding, strides, activation = _options(model, op)
    name = out_t.name
    where = f"{where} ({name!r})"
    for label, tensor in (("input", input_t), ("filter", filter_t), ("output", out_t)):
        if len(tensor.shape) != 4:
            raise model.fail(
                f"{where}: the {label} tensor has shape {tensor.shape}, expected rank 4"
            )
    w = filter_t.data
    if w is None:
        raise ValueError(
            f"{model.path}: {where}: the filter {filter_t.name!r} is computed at run time (not a "
            f"constant), which tconv cannot load"
        )
    n, h, wd, c = input_t.shape
    f, kh, kw, c_w = w.shape
    _, ho, wo, f_out = out_t.shape
    if c_w != c or f_out != f:
        raise model.fail(
            f"{where}: filter {w.shape} (F, kh, kw, C) does not match input {input_t.shape} and "
            f"output {out_t.shape}"
        )
    if shape_t.data is not None:
        wanted = tuple(int(v) for v in shape_t.data.reshape(-1))
        if len(wanted) != 4 or wanted[1:] != (ho, wo, f):
            raise model.fail(
                f"{where}: output_shape {wanted} does not match the output tensor {out_t.shape}"
            )
    if min(kh, kw) < 1 or c < 1 or f < 1:
        raise model.fail(f"{where}: filter shape {w.shape} has an empty axis")
    try:
        g = geometry((h, wd), (kh, kw), strides, (ho, wo), padding, c, f)
    except ValueError as err:
        raise model.fail(f"{where}: {err}") from None
    bias = None if bias_t is None else bias_t.data
    if bias_t is not None and (bias is None or bias.shape != (f,)):
        raise model.fail(f"{where}: the bias {bias_t.name!r} must be a constant of shape ({f},)")
    kinds = (input_t.type_name, filter_t.type_name, out_t.type_name)
    if kinds == ("FLOAT32",) * 3:
        return name, _float_layer(
            model, where, w, bias, strides, padding, (ho, wo), activation, (h, wd, c)
        )
    if kinds in (("INT8", "INT8", "INT8"), ("INT16", "INT8", "INT16")):
        return name, _quantized_layer(
            model, where, w, bias, g, input_t, filter_t, out_t, activation, name, padding
        )
    raise ValueError(
        f"{model.path}: {where}: input, filter and output types {kinds} are not supported (tconv "
        f"reads float32, int8 and 16x8 = int16 activations with int8 weights; hybrid and uint8 "
        f"quantization are not)"
    )


def _float_layer(
    model: Model,
    where: str,
    w: np.ndarray,
    bias: np.ndarray | None,
    strides: tuple[int, int],
    padding: str,
    out: tuple[int, int],
    activation: str,
    input_shape: tuple[int, int, int],
) -> TransposedConv:
    if activation not in _FLOAT_ACTIVATIONS:
        raise ValueError(
            f"{model.path}: {where}: fused activation {activation} on a float TRANSPOSE_CONV is "
            f"not supported (NONE, RELU, RELU6 are)"
        )
    kernel_size = w.shape[1:3]

    def crops(spatial: Sequence[int]) -> list[tuple[int, int]]:
        return [
            axis_crops(int(n), int(k), s, o, padding)
            for n, k, s, o in zip(spatial, kernel_size, strides, out, strict=True)
        ]

    layer = TransposedConv(
        TFLITE.to_canonical(w, 1),
        None if bias is None else bias.astype(np.float32),
        strides,
        (1, 1),
        crops,
        activation=_FLOAT_ACTIVATIONS[activation],
        kernel_layout=TFLITE,
        framework="tflite",
    )
    layer.input_shape = input_shape
    return layer


def _quantized_layer(
    model: Model,
    where: str,
    w: np.ndarray,
    bias: np.ndarray | None,
    g: Geometry,
    input_t: Tensor,
    filter_t: Tensor,
    out_t: Tensor,
    activation: str,
    name: str,
    padding: str,
) -> QuantizedTransposeConv:
    for label, tensor in (("input", input_t), ("filter", filter_t), ("output", out_t)):
        if tensor.quantization is None:
            raise model.fail(f"{where}: the {label} tensor {tensor.name!r} has no quantization")
    fq = filter_t.quantization
    iq, oq = input_t.quantization, out_t.quantization
    assert fq is not None and iq is not None and oq is not None
    if iq.scale.size != 1 or oq.scale.size != 1:
        raise model.fail(f"{where}: input and output must be quantized per tensor")
    if np.any(fq.zero_point != 0):
        raise model.fail(
            f"{where}: the filter's zero points must be 0 (symmetric), got "
            f"{fq.zero_point.tolist()[:8]}"
        )
    if fq.scale.size not in (1, g.out_channels) or (fq.scale.size > 1 and fq.dimension != 0):
        raise model.fail(
            f"{where}: the filter must have 1 scale or {g.out_channels} along dimension 0, got "
            f"{fq.scale.size} along dimension {fq.dimension}"
        )
    if activation not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise ValueError(
            f"{model.path}: {where}: fused activation {activation} on a quantized TRANSPOSE_CONV "
            f"is not supported (NONE, RELU, RELU6, RELU_N1_TO_1 are)"
        )
    sixteen = input_t.type_name == "INT16"
    if bias is not None and bias.dtype != (np.int64 if sixteen else np.int32):
        raise model.fail(
            f"{where}: the bias must be {'int64' if sixteen else 'int32'}, got {bias.dtype.name}"
        )
    try:
        return QuantizedTransposeConv(
            w,
            bias,
            g,
            input_scale=float(iq.scale[0]),
            input_zero_point=int(iq.zero_point[0]),
            filter_scale=fq.scale,
            output_scale=float(oq.scale[0]),
            output_zero_point=int(oq.zero_point[0]),
            activation=activation,
            dtype="int16" if sixteen else "int8",
            name=name,
            padding=padding,
        )
    except (ValueError, TypeError) as err:
        raise model.fail(f"{where}: {err}") from None
