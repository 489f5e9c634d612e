"""Export-time rewrites of a graph: strided convolutions as stride-1 ones on a space-to-depth
input, BatchNormalization folded into the convolution or dense layer before it, element-wise
activations fused into its store, and a per-pixel layer (a 1x1 convolution, a dense layer) or a
merge that reads nearest upsamplings run before them (on fewer pixels; the same products, the
same bits).

:func:`fuse` returns a new graph computing the same values: a folded or fused node becomes an
``identity`` of the node it went into (so every node name still exists and the executor still
runs the graph), and that node gets the new weights or activation and a note saying so.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ..kernels import cactivations
from ..layer import TransposedConv
from .graph import MERGES, Graph, Node

PRODUCERS = ("conv", "dense", "conv_transpose")
"""Ops whose weights a BatchNormalization can be folded into and whose store can apply an
element-wise activation."""


def fused_activation(node: Node) -> str | None:
    """The Keras activation name an activation node computes, when a C store can apply it
    element-wise (``None`` otherwise)."""
    p = node.params
    if node.op == "activation" and not cactivations.is_rowwise(p["name"]):
        return str(p["name"])
    if node.op == "relu" and p["negative_slope"] == 0 and p["threshold"] == 0:
        if p["max_value"] is None:
            return "relu"
        if p["max_value"] == 6:
            return "relu6"
    if node.op == "leaky_relu" and np.float32(p["negative_slope"]) == np.float32(0.2):
        return "leaky_relu"
    if node.op == "elu" and p["alpha"] == 1.0:
        return "elu"
    return None


def _activation_of(node: Node) -> str:
    if node.op == "conv_transpose":
        return str(node.params["op"].activation)
    return str(node.params["activation"])


def _set_activation(node: Node, name: str) -> None:
    if node.op == "conv_transpose":
        op = node.params["op"]
        node.params["op"] = _conv_transpose(op, op.kernel, op.bias, name)
    else:
        node.params["activation"] = name


def _conv_transpose(
    op: TransposedConv, kernel: np.ndarray, bias: np.ndarray | None, activation: str
) -> TransposedConv:
    """A transposed convolution like ``op`` (its data format too) with other weights or
    activation."""
    new = TransposedConv(
        kernel,
        bias,
        op.strides,
        op.dilation,
        op.crops,
        groups=op.groups,
        activation=activation,
        data_format=op.data_format,
        kernel_layout=op.kernel_layout,
        framework=op.framework,
    )
    new.input_shape = op.input_shape
    return new


def _fold(producer: Node, bn: Node) -> None:
    """``bn(producer(x))`` -> ``producer'(x)``: per output channel ``f``, scale ``s = gamma /
    sqrt(var + eps)`` multiplies the weights of ``f`` and the bias becomes ``(b - mean)*s +
    beta`` (computed in float64, rounded once to float32)."""
    w = {k: np.asarray(v, np.float64) for k, v in bn.weights.items()}
    scale = 1.0 / np.sqrt(w["variance"] + bn.params["epsilon"])
    if "gamma" in w:
        scale = scale * w["gamma"]
    shift = -w["mean"] * scale + w.get("beta", 0.0)
    if producer.op == "conv_transpose":
        op = producer.params["op"]
        kernel = np.asarray(op.kernel, np.float64) * scale[:, None]  # (*k, out, in)
        bias = 0.0 if op.bias is None else np.asarray(op.bias, np.float64)
        producer.params["op"] = _conv_transpose(
            op,
            kernel.astype(np.float32),
            (bias * scale + shift).astype(np.float32),
            str(op.activation),
        )
    else:
        kernel = producer.weights["kernel"].astype(np.float64) * scale  # (..., out)
        bias = producer.weights.get("bias", np.zeros(scale.shape, np.float32)).astype(np.float64)
        producer.weights = {
            "kernel": kernel.astype(np.float32),
            "bias": (bias * scale + shift).astype(np.float32),
        }


MAX_INFLATION = 2.0
"""A strided convolution becomes space-to-depth + stride-1 when that multiplies its
multiply-adds (the zero taps of the rearranged kernel) by at most this much."""


def _space_to_depth(node: Node, x: tuple[int, ...]) -> list[Node] | None:
    """A strided convolution (groups 1, no dilation) as a ``space_to_depth`` node and a
    stride-1 valid convolution of kernel ``ceil(k/s)`` on ``prod(s)*C`` channels, or None.

    With ``j = j'*s + r``: ``y[o] = sum_j xpad[o*s + j] w[j] = sum_j' x'[o + j', r] w'[j', r]``
    where ``x'[i, r] = xpad[i*s + r]`` and ``w'[j', r] = w[j'*s + r]`` (0 past the kernel)."""
    p = node.params
    strides, kernel = p["strides"], node.weights["kernel"]
    if p["groups"] != 1 or any(d != 1 for d in p["dilation"]) or all(s == 1 for s in strides):
        return None
    rank = kernel.ndim - 2
    ks = kernel.shape[:-2]
    kp = [-(-k // s) for k, s in zip(ks, strides, strict=True)]
    if math.prod(k * s for k, s in zip(kp, strides, strict=True)) > MAX_INFLATION * math.prod(ks):
        return None
    outs = node.shape[:-1]
    sizes = [o + k - 1 for o, k in zip(outs, kp, strict=True)]
    channels, filters = kernel.shape[-2:]
    block = math.prod(strides)
    s2d = Node(
        f"{node.name}/space_to_depth",
        "space_to_depth",
        node.inputs,
        {
            "block": tuple(strides),
            "pads": tuple(lo for lo, _ in p["pads"]),
            "shape": (*sizes, block * channels),
        },
        layer=node.layer,
        layer_class=node.layer_class,
        shape=(*sizes, block * channels),
        note=f"the input of the stride-{tuple(strides)} convolution rearranged: each "
        f"{'x'.join(map(str, strides))} block of pixels becomes one pixel of {block} x "
        f"{channels} channels",
        detail=node.detail,
    )
    w = np.pad(
        kernel,
        [(0, k * s - kk) for k, s, kk in zip(kp, strides, ks, strict=True)] + [(0, 0), (0, 0)],
    )
    split = []
    for k, s in zip(kp, strides, strict=True):
        split += [k, s]
    w = w.reshape(*split, channels, filters)
    order = [
        *(2 * a for a in range(rank)),
        *(2 * a + 1 for a in range(rank)),
        2 * rank,
        2 * rank + 1,
    ]
    w = np.ascontiguousarray(w.transpose(order)).reshape(*kp, block * channels, filters)
    conv = copy.copy(node)
    conv.inputs = (s2d.name,)
    conv.params = {**p, "strides": (1,) * rank, "pads": [(0, 0)] * rank}
    conv.weights = {**node.weights, "kernel": w.astype(np.float32)}
    what = f"stride-{tuple(strides)} convolution run as a stride-1 one on the space-to-depth input"
    conv.note = f"{conv.note}; {what}" if conv.note else what
    return [s2d, conv]


def _rewrite_strided(graph: Graph) -> list[Node]:
    nodes: list[Node] = []
    shapes = {n.name: n.shape for n in graph}
    for node in graph:
        pair = _space_to_depth(node, shapes[node.inputs[0]]) if node.op == "conv" else None
        nodes.extend(pair or [node])
    return nodes


def _per_pixel(node: Node) -> bool:
    """A layer whose output pixel depends only on the same input pixel: a dense layer, or a
    convolution of kernel 1 and stride 1 with no padding."""
    if node.op == "dense":
        return True
    p = node.params
    return (
        node.op == "conv"
        and all(k == 1 for k in node.weights["kernel"].shape[:-2])
        and all(s == 1 for s in p["strides"])
        and all(lo == hi == 0 for lo, hi in p["pads"])
    )


def _upsample_after(nodes: list[Node], outputs: list[str]) -> list[Node]:
    """``layer(upsample(x))`` -> ``upsample(layer(x))`` for a per-pixel layer reading a nearest
    upsampling, and ``merge(upsample(a), upsample(b), ...)`` -> ``upsample(merge(a, b, ...))``
    for a merge of equal upsamplings of equal shapes, when nothing else reads the upsamplings:
    each output element is the same sum of the same products (or the same sum), computed once
    per input pixel instead of once per copy.  The upsampling nodes disappear (nothing reads
    them); the layer's name now holds the upsampled value."""
    readers: dict[str, int] = {}
    for n in nodes:
        for source in n.inputs:
            readers[source] = readers.get(source, 0) + 1
    by_name = {n.name: n for n in nodes}
    out: list[Node] = []
    dropped: set[str] = set()
    for node in nodes:
        ups = [by_name[i] for i in node.inputs]
        kind = _per_pixel(node) if len(ups) == 1 else node.op in MERGES
        if not (
            kind
            and ups
            and len(set(node.inputs)) == len(ups)
            and all(
                u.op == "upsample"
                and u.params == ups[0].params
                and u.params["interpolation"] == "nearest"
                and by_name[u.inputs[0]].shape == by_name[ups[0].inputs[0]].shape
                and readers.get(u.name) == 1
                and u.name not in outputs
                for u in ups
            )
        ):
            out.append(node)
            continue
        small = (*by_name[ups[0].inputs[0]].shape[:-1], node.shape[-1])
        inner = copy.copy(node)
        inner.name = f"{node.name}/before_upsample"
        inner.inputs = tuple(u.inputs[0] for u in ups)
        inner.shape = small
        names = ", ".join(f"'{u.layer}'" for u in ups)
        what = f"the upsampling {names} moved after it (run on the {small[:-1]} pixels)"
        inner.note = f"{node.note}; {what}" if node.note else what
        moved = Node(
            node.name,
            "upsample",
            (inner.name,),
            dict(ups[0].params),
            layer=node.layer,
            layer_class=node.layer_class,
            shape=node.shape,
            note=f"the upsampling {names} of the output of '{inner.name}'",
        )
        dropped.update(u.name for u in ups)
        by_name[inner.name], by_name[moved.name] = inner, moved
        out += [inner, moved]
    return [n for n in out if n.name not in dropped]


def fuse(graph: Graph) -> Graph:
    """The graph with strided convolutions rewritten, BatchNormalization folds and activation
    fusions applied (a copy).

    A node is folded or fused into the producer it reads when the tensors between them have
    no other reader and are no graph output, the normalization is on the channel axis, and the
    producer's activation is still linear.
    """
    nodes = [copy.copy(n) for n in _rewrite_strided(graph)]
    for n in nodes:
        n.params = dict(n.params)
        n.weights = dict(n.weights)
    by_name = {n.name: n for n in nodes}
    readers = Graph(nodes, list(graph.inputs), list(graph.outputs), graph.name).readers()
    outputs = set(graph.outputs)

    def producer_of(name: str) -> Node | None:
        """The producer behind ``name`` through single-reader identities, or None."""
        while True:
            if name in outputs or len(readers[name]) != 1:
                return None
            node = by_name[name]
            if node.op in PRODUCERS:
                return node
            if node.op != "identity":
                return None
            name = node.inputs[0]

    for i, node in enumerate(nodes):
        if len(node.inputs) != 1:
            continue
        source = producer_of(node.inputs[0])
        if source is None or _activation_of(source) != "linear":
            continue
        if node.op == "batch_norm" and node.params["axis"] == len(node.shape) - 1:
            if source.op == "conv_transpose" and source.params["op"].channels_first:
                continue  # the last axis is spatial there
            _fold(source, node)
            what = f"{node.layer_class} '{node.layer}' folded into the weights and bias"
        else:
            name = fused_activation(node)
            if name is None:
                continue
            _set_activation(source, name)
            what = f"{node.layer_class} '{node.layer}' ({name}) fused at the store"
        source.note = f"{source.note}; {what}" if source.note else what
        nodes[i] = Node(
            node.name,
            "identity",
            node.inputs,
            layer=node.layer,
            layer_class=node.layer_class,
            shape=node.shape,
            note=f"computed by '{source.name}' ({what})",
        )
        by_name[node.name] = nodes[i]
    nodes = _upsample_after(nodes, list(graph.outputs))
    return Graph(nodes, list(graph.inputs), list(graph.outputs), graph.name)
