"""ONNX ``ConvTranspose`` (opset 11+), in NumPy, as onnxruntime computes it.

Layouts are ONNX's: ``X`` ``(N, C, *spatial)``, ``W`` ``(C, M // group, *kernel_shape)``, ``B``
``(M,)``, ``Y`` ``(N, M, *out)``.  Pads are ``[x1_begin, x2_begin, ..., x1_end, x2_end]``.

The rule per spatial axis, with ``span = dilation*(k-1) + 1``, ``full = (in-1)*stride + span``
and ``op = output_padding``; onnxruntime crops ``head`` rows at the start and ``tail`` rows from
the end of ``full + op`` rows (canonical ``crop_start = head``, ``crop_end = tail - op``):

- ``output_shape`` O given: ``T = max(0, full + op - O)``; ``head = T - T//2`` (the larger half at
  the start) for NOTSET, SAME_LOWER and VALID, ``head = T//2`` for SAME_UPPER; ``out = O``
  (``pads`` are ignored).
- ``SAME_UPPER`` / ``SAME_LOWER``: ``T = max(0, span + op - stride)``, ``head = T//2`` (UPPER) or
  ``T - T//2`` (LOWER); ``out = full + op - T``.  The spec says ``out = in*stride``; onnxruntime
  clamps ``T`` at 0, so the output is shorter than that when ``span + op < stride``.
- ``VALID``: ``head = tail = 0``; ``NOTSET``: ``head, tail`` from ``pads`` (negative pads add zero
  rows).

onnxruntime also rejects ``output_padding >= max(stride, dilation)``, an output length ``<= 0``,
and any output whose forward convolution would not give back the input length
(``trunc((out + head + tail - span) / stride) + 1 != in``): in effect ``output_padding`` must be
smaller than the stride.  tconv raises ``ValueError`` in exactly those cases.

:func:`load_layers` reads every ConvTranspose node of an ``.onnx`` file (with the ``onnx``
package, the ``onnx`` extra) as this op.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checks import is_int
from .layer import CropRule, Crops, TransposedConv, channels_first_op

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def pads_and_length(
    size: int,
    kernel: int,
    stride: int,
    dilation: int,
    auto_pad: str = "NOTSET",
    pads: tuple[int, int] = (0, 0),
    output_padding: int = 0,
    output_shape: int | None = None,
) -> tuple[int, int, int]:
    """onnxruntime's ``(head, tail, out)`` for one axis (see the module's rule).

    ``head``/``tail`` are onnxruntime's pads: the rows cropped from the start/end of the
    ``full + output_padding`` rows (with ``output_shape`` the crop is clamped at 0, and the output
    then ends in ``out - (full + op - head - tail)`` zero rows); ``out`` is the output length
    (not validated here).
    """
    grown = (size - 1) * stride + dilation * (kernel - 1) + 1 + output_padding  # full + op
    if output_shape is not None:
        total = max(0, grown - output_shape)
        head = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        return head, total - head, output_shape
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total = max(0, grown - size * stride)
        head = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        return head, total - head, grown - total
    head, tail = (0, 0) if auto_pad == "VALID" else pads
    return head, tail, grown - head - tail


def crops(
    size: int,
    kernel: int,
    stride: int,
    dilation: int,
    auto_pad: str = "NOTSET",
    pads: tuple[int, int] = (0, 0),
    output_padding: int = 0,
    output_shape: int | None = None,
) -> tuple[int, int]:
    """onnxruntime's canonical ``(crop_start, crop_end)`` for one axis: ``(head, tail - op)``,
    or with ``output_shape`` whatever ``crop_end`` gives that length (zero rows at the end when
    it exceeds ``full + op``)."""
    head, _, out = pads_and_length(
        size, kernel, stride, dilation, auto_pad, pads, output_padding, output_shape
    )
    return head, (size - 1) * stride + dilation * (kernel - 1) + 1 - head - out


def _trunc_div(a: int, b: int) -> int:
    """C++ integer division (rounds toward zero), as onnxruntime's check computes it."""
    return abs(a) // b * (1 if a >= 0 else -1)


def crop_rule(
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    auto_pad: str,
    pads: Sequence[int],
    output_padding: Sequence[int],
    output_shape: Sequence[int] | None,
) -> CropRule:
    """The :data:`tconv.layer.CropRule` of an ONNX ConvTranspose node; raises ``ValueError``
    where onnxruntime refuses the input shape."""
    rank = len(kernel_shape)

    def rule(spatial: Sequence[int]) -> Crops:
        result = []
        for i, (n, k, s, d) in enumerate(
            zip(spatial, kernel_shape, strides, dilations, strict=True)
        ):
            op = output_padding[i]
            # onnxruntime reads an output_shape entry of -1 as "not given" for that axis.
            o_req = None if output_shape is None or output_shape[i] == -1 else output_shape[i]
            if o_req is not None and n == 0:
                raise ValueError(f"Input spatial dimension must be positive. Got: {tuple(spatial)}")
            head, tail, out = pads_and_length(
                n, k, s, d, auto_pad, (pads[i], pads[i + rank]), op, o_req
            )
            if out <= 0:
                raise ValueError(
                    f"Computed output dimension is <= 0 for dim {i}. Input shape: {tuple(spatial)}"
                )
            span = d * (k - 1) + 1
            expected = _trunc_div(out + head + tail - span, s) + 1
            if expected != n:
                raise ValueError(
                    f"the output length {out} of spatial axis {i} is inconsistent with the input "
                    f"length {n}: its forward convolution gives {expected} (output_padding={op} "
                    f"may be too large for stride={s}, or output_shape={o_req} too large); "
                    "onnxruntime refuses it"
                )
            result.append((head, (n - 1) * s + span - head - out))
        return result

    return rule


def _ints(value: Any, count: int, name: str, default: int) -> tuple[int, ...]:
    if value is None:
        return (default,) * count
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"ConvTranspose attribute {name} must be a list of ints, got {value!r}")
    if not all(is_int(v) for v in value):
        raise TypeError(f"ConvTranspose attribute {name} must be a list of ints, got {value!r}")
    if len(value) != count:
        raise ValueError(
            f"{name} size ({len(value)}) does not match the expected size ({count}) for "
            f"{count if name != 'pads' else count // 2} spatial dimensions"
        )
    return tuple(int(v) for v in value)


def op(
    W: Any,
    B: Any = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    output_padding: Sequence[int] | None = None,
    output_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> TransposedConv:
    """The canonical op of a ConvTranspose node with weights ``W`` ``(C, M // group, *k)`` and
    bias ``B`` ``(M,)``; attributes as in ONNX (lists of ints, ``auto_pad`` a string).

    ``output_shape`` may hold the spatial sizes or the full ``(N, M, *spatial)`` shape.  The op has
    ``framework="onnx"``, the TORCH kernel layout (ONNX's is the same) and ``channels_first``
    data.
    """
    w = np.asarray(W)
    if w.ndim < 3 or w.ndim > 5:
        raise ValueError(
            f"W must have 3 to 5 dimensions (C x M/group x k1...kn, 1 to 3 spatial axes), got "
            f"shape {w.shape}"
        )
    rank = w.ndim - 2
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad not in AUTO_PADS:
        raise ValueError(
            f"Unknown AutoPadType String: auto_pad={auto_pad!r}, expected one of {AUTO_PADS}"
        )
    if pads is not None and auto_pad != "NOTSET":
        raise ValueError(
            f"A Conv/ConvTranspose node has both 'auto_pad' and 'pads' attributes "
            f"(auto_pad={auto_pad!r}, pads={list(pads)}): auto_pad must be NOTSET with pads"
        )
    strides_t = _ints(strides, rank, "strides", 1)
    dilations_t = _ints(dilations, rank, "dilations", 1)
    pads_t = _ints(pads, 2 * rank, "pads", 0)
    output_padding_t = _ints(output_padding, rank, "output_padding", 0)
    if kernel_shape is not None and tuple(kernel_shape) != w.shape[2:]:
        raise ValueError(
            f"kernel_shape is not compatible with W shape. kernel_shape: {list(kernel_shape)} "
            f"W: {w.shape}"
        )
    if any(k <= 0 for k in w.shape[2:]):
        raise ValueError(f"Kernel size must be positive. Got: W shape {w.shape}")
    if any(s <= 0 for s in strides_t):
        raise ValueError(f"All stride values must be positive, got strides={list(strides_t)}")
    if any(d <= 0 for d in dilations_t):
        raise ValueError(f"All dilation values must be positive, got dilations={list(dilations_t)}")
    for i, (p, s, d) in enumerate(zip(output_padding_t, strides_t, dilations_t, strict=True)):
        if p < 0:
            raise ValueError(f"Output padding must be non-negative. Got: output_padding={p}")
        if p >= max(s, d):
            raise ValueError(
                f"output_padding[{i}] ({p}) must be less than max(stride, dilation) "
                f"({max(s, d)}) for spatial dimension {i}."
            )
    out_shape_t: tuple[int, ...] | None = None
    if output_shape is not None:
        out_shape_t = _ints(list(output_shape), len(output_shape), "output_shape", 0)
        if len(out_shape_t) not in (rank, rank + 2):
            raise ValueError(
                f"output_shape attribute has {len(out_shape_t)} elements, expected {rank} or "
                f"{rank + 2}."
            )
        out_shape_t = out_shape_t[-rank:]
        if any(o <= 0 and o != -1 for o in out_shape_t):
            raise ValueError(
                "Explicit output size must be positive (or -1: computed from the other "
                f"attributes). Got: output_shape={list(out_shape_t)}"
            )
    if not is_int(group):
        raise TypeError(f"ConvTranspose attribute group must be an int, got {group!r}")
    if group <= 0:
        raise ValueError(f"group count is <= 0 group: {group}")
    if w.shape[0] % group:
        raise ValueError(
            f"Input channels is not divisible by group. W: {w.shape} (num_input_channels "
            f"{w.shape[0]}) group: {group}"
        )
    out_channels = w.shape[1] * group
    b = None if B is None else np.asarray(B)
    if b is not None and b.shape != (out_channels,):
        raise ValueError(
            "Bias shape is not compatible with number of output channels. It should be a 1-D "
            f"tensor with size num_output_channels(M). Bias: {b.shape} num_output_channels: "
            f"{out_channels}"
        )
    rule = crop_rule(
        w.shape[2:], strides_t, dilations_t, auto_pad, pads_t, output_padding_t, out_shape_t
    )
    return channels_first_op(w, b, strides_t, dilations_t, rule, int(group), "onnx")


def conv_transpose(
    X: Any, W: Any, B: Any = None, *, method: str = "fast", **attributes: Any
) -> np.ndarray:
    """ONNX ConvTranspose as onnxruntime computes it: ``X`` ``(N, C, *spatial)`` ->
    ``Y`` ``(N, M, *out)``; ``method`` is ``"fast"`` or ``"reference"``.

    ``attributes`` are the node's, keyword arguments of :func:`op` (``auto_pad``, ``dilations``,
    ``group``, ``kernel_shape``, ``output_padding``, ``output_shape``, ``pads``, ``strides``).
    """
    conv = op(W, B, **attributes)
    x = np.asarray(X)
    dtypes = {"X": x.dtype, "W": conv.kernel.dtype}
    if conv.bias is not None:
        dtypes["B"] = conv.bias.dtype
    if len(set(dtypes.values())) > 1:
        found = ", ".join(f"{k}: {v}" for k, v in dtypes.items())
        raise TypeError(
            f"Type parameter (T) of ConvTranspose bound to different types ({found}); ONNX "
            "requires one type for X, W and B: cast them with .astype()"
        )
    w_shape = conv.framework_kernel.shape
    if x.ndim < 3:
        raise ValueError(f"Input X must have at least 3 dimensions (N x C x D1...Dn). X: {x.shape}")
    if x.ndim != len(w_shape):
        raise ValueError(f"X num_dims does not match W num_dims. X: {x.shape} W: {w_shape}")
    if x.shape[1] % conv.groups:
        raise ValueError(
            f"Input channels is not divisible by group. num_input_channels: {x.shape[1]} "
            f"group: {conv.groups}"
        )
    if x.shape[1] != conv.in_channels:
        raise ValueError(
            f"filter number not equal to input channel number. filter_number: {w_shape[0]} "
            f"num_input_channels: {x.shape[1]}"
        )
    return conv.forward(x, method)


# --- model files ----------------------------------------------------------------------------


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "reading ONNX model files needs the onnx package: pip install 'tconv[onnx]'"
        ) from None
    return onnx


def _attribute(value: Any) -> Any:
    """An attribute value as plain Python: bytes -> str, repeated ints -> list."""
    if isinstance(value, bytes):
        return value.decode()
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value


def _static_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape without the batch axis, for every tensor whose shape the graph
    records with a fixed size on every non-batch axis."""
    shapes = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        tensor = info.type.tensor_type
        if not tensor.HasField("shape"):
            continue
        dims = tensor.shape.dim[1:]
        if all(dim.HasField("dim_value") for dim in dims):
            shapes[info.name] = tuple(int(dim.dim_value) for dim in dims)
    return shapes


def load_layers(path: str | os.PathLike[str]) -> dict[str, TransposedConv]:
    """Every ``ConvTranspose`` node of an ``.onnx`` model, as ``{node name: canonical op}``
    (the ops of :func:`load_nodes`)."""
    return {key: node.op for key, node in load_nodes(path).items()}


@dataclass
class Node:
    """One ``ConvTranspose`` node of a model file: its canonical op and the attributes the node
    sets (ONNX names; ``auto_pad`` a ``str``, lists of ints as lists; defaults left out)."""

    op: TransposedConv
    attributes: dict[str, Any]


def load_nodes(path: str | os.PathLike[str]) -> dict[str, Node]:
    """Every ``ConvTranspose`` node of an ``.onnx`` model, as ``{node name: Node}``.

    Read with the ``onnx`` package (the ``onnx`` extra); only the main graph is searched.  The
    weights ``W`` ``(C, M // group, *k)`` and bias ``B`` must be initializers or ``Constant``
    nodes of the main graph.  Unnamed nodes are keyed
    ``ConvTranspose_<i>`` (``i`` counts the graph's ConvTranspose nodes from 0).  Each op's
    ``input_shape`` is the shape of ``X`` without the batch axis, ``(C, *spatial)``, where the
    model (after ONNX shape inference) records it with fixed sizes, else ``None``.  Raises
    ``ValueError`` naming the file for a missing or unreadable file, a model without
    ``ConvTranspose``, or weights that are computed in the graph rather than stored.
    """
    onnx = _onnx()
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ValueError(f"{name}: no such file")
    try:
        model = onnx.load(name)
    except Exception as err:  # protobuf's DecodeError and external-data errors
        raise ValueError(
            f"{name}: not a readable ONNX model ({type(err).__name__}: {err})"
        ) from None
    if not model.HasField("graph"):
        raise ValueError(f"{name}: not an ONNX model (no graph)")
    recorded = _static_shapes(model.graph)
    try:
        shapes = _static_shapes(onnx.shape_inference.infer_shapes(model).graph)
    except Exception:  # an op the checker does not know: keep the recorded shapes only
        shapes = recorded
    graph = model.graph
    stored = {t.name: t for t in graph.initializer}
    for node in graph.node:  # Constant nodes holding a tensor count as stored weights
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            stored[node.output[0]] = node.attribute[0].t
    nodes = [n for n in graph.node if n.op_type == "ConvTranspose" and n.domain in ("", "ai.onnx")]
    if not nodes:
        found = sorted({n.op_type for n in graph.node})
        raise ValueError(f"{name}: no ConvTranspose node in the model's graph (found: {found})")
    layers: dict[str, Node] = {}
    for i, node in enumerate(nodes):
        key = node.name or f"ConvTranspose_{i}"
        while key in layers:
            key += "_"
        arrays = []
        for role, tensor in zip(("W", "B"), node.input[1:3], strict=False):
            if role == "B" and not tensor:  # an optional input left out
                continue
            if tensor not in stored:
                raise ValueError(
                    f"{name}: ConvTranspose node {key!r}: its {role} input {tensor!r} is "
                    "neither an initializer nor a Constant (it is computed in the graph, or fed "
                    "as a model input); tconv reads stored weights only"
                )
            try:
                arrays.append(onnx.numpy_helper.to_array(stored[tensor]))
            except Exception as err:  # data that does not fit its dims or type: a damaged file
                raise ValueError(
                    f"{name}: ConvTranspose node {key!r}: its {role} tensor {tensor!r} cannot "
                    f"be read ({type(err).__name__}: {err})"
                ) from None
        try:
            attrs = {a.name: _attribute(onnx.helper.get_attribute_value(a)) for a in node.attribute}
            conv = op(*arrays, **attrs)
            conv.kernel, conv.bias = conv.kernel, conv.bias  # a kept layer: read-only copies
            conv.input_shape = shapes.get(node.input[0])
            computed = None
            if conv.input_shape is not None:
                computed = conv.output_shape((1, *conv.input_shape))[1:]
        except (TypeError, ValueError, IndexError) as err:
            raise ValueError(f"{name}: ConvTranspose node {key!r}: {err}") from None
        layers[key] = Node(conv, attrs)
        output = node.output[0] if node.output else ""
        if computed is not None and shapes.get(output, computed) != computed:
            # ONNX shape inference and onnxruntime disagree (SAME_UPPER/SAME_LOWER with
            # output_padding): shapes inferred downstream are wrong, keep the recorded ones.
            shapes = recorded
    return layers
