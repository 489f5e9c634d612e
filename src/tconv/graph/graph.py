"""A framework-neutral inference graph: nodes in canonical layouts with their parameters.

Every tensor is one batch of items, ``(N, *item)``; spatial data is channels-last
``(N, *spatial, C)`` (a front end turns a channels-first layer into transposes around the
canonical op; only the one-node graph of a layer, :meth:`Graph.of_layer`, keeps a
channels-first layer's layout).  A node computes one tensor from the tensors of the nodes it
names in ``inputs``; graph inputs are nodes of op ``"input"``.  Ops and their
``params``/``weights``:

=================== ============================================================================
``input``           ``index``: position among the graph inputs
``identity``        (nothing): the input unchanged (dropout and noise layers at inference)
``dense``           ``kernel (in, units)``, ``bias``; ``activation`` — on the last axis
``conv``            ``kernel (*k, in/groups, out)``, ``bias``; ``strides``, ``dilation``,
                    ``pads`` ``[(lo, hi)]`` per axis (zeros), ``groups``, ``activation``
``conv_transpose``  ``op``: a :class:`tconv.layer.TransposedConv` (with its weights, bias and
                    activation); channels_last, except in the one-node graph of a
                    channels-first layer (:meth:`Graph.of_layer`), whose input and output
                    items keep the layer's ``(C, *spatial)`` layout
``batch_norm``      ``mean``, ``variance``, ``gamma``/``beta`` (optional); ``axis``, ``epsilon``
``layer_norm``      ``gamma``/``beta`` (optional); ``axes``, ``epsilon``, ``rms_scaling``
``activation``      ``name`` (a Keras activation name, :mod:`tconv.activations`)
``relu``            ``max_value`` (None), ``negative_slope``, ``threshold``
``leaky_relu``      ``negative_slope``;  ``elu``: ``alpha``;  ``prelu``: weight ``alpha``
``softmax``         ``axes``
``reshape``         (nothing: the output shape is the node's ``shape``)
``transpose``       ``perm``: the item axes' order (a permutation of ``0..rank-1``)
``upsample``        ``size`` per spatial axis, ``interpolation`` (``nearest``/``bilinear``)
``pool``            ``kind`` (``max``/``avg``), ``pool``, ``strides``, ``pads`` per spatial axis
``global_pool``     ``kind``, ``keepdims``
``pad``             ``pads`` per spatial axis (zeros);  ``crop``: ``crops`` per spatial axis
``concat``          ``axis`` (an item axis, ``>= 0``)
``add`` ...         ``add``, ``subtract``, ``multiply``, ``average``, ``maximum``, ``minimum``
``rescale``         ``scale``, ``offset`` (arrays broadcast against the item)
``space_to_depth``  ``block`` and ``pads`` (zeros before) per spatial axis, ``shape`` (the
                    output item): ``y[i, (r, c)] = x_padded[i*block + r, c]`` (export-time)
=================== ============================================================================

Axes in ``params`` count the item's axes (no batch axis).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..layer import TransposedConv

OPS = (
    "input",
    "identity",
    "dense",
    "conv",
    "conv_transpose",
    "batch_norm",
    "layer_norm",
    "activation",
    "relu",
    "leaky_relu",
    "elu",
    "prelu",
    "softmax",
    "reshape",
    "transpose",
    "upsample",
    "pool",
    "global_pool",
    "pad",
    "crop",
    "concat",
    "add",
    "subtract",
    "multiply",
    "average",
    "maximum",
    "minimum",
    "rescale",
    "space_to_depth",
)
MERGES = ("add", "subtract", "multiply", "average", "maximum", "minimum")
ALIASES = ("identity", "reshape")
"""Ops whose output is their input's data unchanged (a C export makes them aliases)."""


@dataclass
class Node:
    """One op of the graph.

    ``name`` is unique in the graph; ``layer`` is the framework layer it comes from (several
    nodes may share one, e.g. a separable convolution's two steps or a channels-first layer's
    transposes; the layer's output is its last node).  ``shape`` is one output item's shape
    (no batch axis), set when the graph is built.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    layer: str = ""
    layer_class: str = ""
    shape: tuple[int, ...] = ()
    note: str = ""
    """What the front end did to get here (e.g. "depthwise step of SeparableConv2D")."""
    detail: str = ""
    """The framework layer's options in a few words, for comments in generated code."""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"node {self.name!r}: unknown op {self.op!r}; known ops: {OPS}")

    @property
    def size(self) -> int:
        """Elements of one output item."""
        return math.prod(self.shape)

    def count_params(self) -> int:
        """Weights held by the node (a transposed convolution's kernel and bias included)."""
        if self.op == "conv_transpose":
            op = self.params["op"]
            return int(op.kernel.size + (0 if op.bias is None else op.bias.size))
        return int(sum(w.size for w in self.weights.values()))


@dataclass
class Graph:
    """Nodes in a topological order (every node after the nodes it reads), plus the names of the
    graph's inputs (op ``input``, in order) and outputs."""

    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    name: str = "model"

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"graph {self.name!r}: two nodes are named {node.name!r}")
            missing = [i for i in node.inputs if i not in seen]
            if missing:
                raise ValueError(
                    f"graph {self.name!r}: node {node.name!r} reads {missing} before they are "
                    "computed (not a topological order)"
                )
            seen.add(node.name)
        for name in (*self.inputs, *self.outputs):
            if name not in seen:
                raise ValueError(f"graph {self.name!r}: no node named {name!r}")

    def node(self, name: str) -> Node:
        """The node called ``name``; ``KeyError`` naming the known nodes otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in graph {self.name!r}; nodes: {self.names()}")

    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def readers(self) -> dict[str, list[str]]:
        """Node name -> the names of the nodes that read its output, in order."""
        out: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for node in self.nodes:
            for source in node.inputs:
                out[source].append(node.name)
        return out

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @classmethod
    def of_layer(
        cls, layer: TransposedConv, input_shape: Sequence[int] | None = None, name: str = ""
    ) -> Graph:
        """The one-node graph of a transposed convolution: an ``input`` node named ``"input"``
        of one item ``input_shape`` (no batch axis, the layer's layout; the layer's own input
        shape when None) and a ``conv_transpose`` node holding ``layer``, named ``name`` (the
        layer's ``name`` when it has one, else — and instead of ``"input"`` —
        ``"conv_transpose"``), which is the output; the graph has the node's name.

        A channels-first layer (PyTorch, ONNX) keeps its ``(C, *spatial)`` layout in both
        items: the C kernels and the executor run it natively, so no transposes are added.
        Raises ``TypeError`` for anything but a tconv layer and ``ValueError`` (see
        :func:`layer_item_shape`) for shapes the layer cannot take.
        """
        shape = layer_item_shape(layer, input_shape)
        node_name = name or str(getattr(layer, "name", "") or "conv_transpose")
        if node_name == "input":
            node_name = "conv_transpose"
        g = layer.geometry(layer.spatial_shape((1, *shape)))
        axes = "; ".join(
            f"{n}: kernel {a.kernel} stride {a.stride} dilation {a.dilation} crop "
            f"({a.crop_start}, {a.crop_end})"
            for n, a in zip("dhw"[3 - g.rank :], g.axes, strict=True)
        )
        x = Node("input", "input", (), {"shape": shape, "index": 0}, shape=shape)
        conv = Node(
            node_name,
            "conv_transpose",
            ("input",),
            {"op": layer},
            layer=node_name,
            layer_class=type(layer).__name__,
            note="channels_first: run in the layer's (C, *spatial) layout"
            if layer.channels_first
            else "",
            detail=f"{g.in_channels} -> {g.out_channels} channels, {g.groups} group(s); "
            f"{axes}; activation {layer.activation}",
        )
        conv.shape = output_shape(conv, [shape])
        return cls([x, conv], ["input"], [node_name], name=node_name)


def layer_item_shape(layer: TransposedConv, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    """One input item of ``layer`` (no batch axis, the layer's layout): ``input_shape``, or the
    layer's own input shape when None, checked to have every dimension and to give a
    non-empty output.  ``TypeError`` for anything but a tconv layer, ``ValueError`` naming the
    shape and the rule otherwise."""
    if not isinstance(layer, TransposedConv):
        raise TypeError(
            f"layer must be a tconv TransposedConv (e.g. tconv.keras.Conv2DTranspose), got "
            f"{type(layer).__name__}"
        )
    shape = layer.input_shape if input_shape is None else tuple(input_shape)
    if shape is None:
        raise ValueError(
            "input_shape is required: the layer does not know its input shape; pass the "
            "shape of one input item without the batch axis, e.g. input_shape=(8, 8, 1024)"
        )
    if any(v is None for v in shape):
        raise ValueError(
            f"input_shape={tuple(shape)} has unknown dimensions; C needs fixed sizes: pass "
            "input_shape with every dimension, e.g. input_shape=(8, 8, 1024)"
        )
    shape = tuple(int(v) for v in shape)
    geometry = layer.geometry(layer.spatial_shape((1, *shape)))
    if any(a.size < 1 for a in geometry.axes):
        raise ValueError(f"input_shape={shape} has an empty spatial axis; nothing to export")
    if any(a.out < 1 for a in geometry.axes):
        raise ValueError(
            f"input_shape={shape} gives the empty output shape {geometry.out_shape}; "
            "nothing to export"
        )
    return shape


def macs(node: Node, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-adds of one item through ``node`` (``shapes``: node name -> item shape)."""
    if node.op == "dense":
        return math.prod(node.shape) * int(node.weights["kernel"].shape[0])
    if node.op == "conv":
        kernel = node.weights["kernel"]
        return math.prod(node.shape) * math.prod(kernel.shape[:-1])
    if node.op == "conv_transpose":
        op = node.params["op"]
        return int(op.geometry(op.spatial_shape((1, *shapes[node.inputs[0]]))).macs())
    return 0


def conv_length(size: int, kernel: int, stride: int, dilation: int, pad: tuple[int, int]) -> int:
    """Output length of a forward convolution or pooling window on one padded axis."""
    span = dilation * (kernel - 1) + 1
    return max(0, (size + pad[0] + pad[1] - span) // stride + 1)


_SAME_SHAPE = (
    "identity",
    "batch_norm",
    "layer_norm",
    "activation",
    "relu",
    "leaky_relu",
    "elu",
    "prelu",
    "softmax",
    "rescale",
)


def output_shape(node: Node, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """One output item's shape of ``node`` for its inputs' item shapes ``shapes``.

    Raises ``ValueError`` naming the node when the inputs do not fit the op.
    """
    p, op = node.params, node.op
    x = shapes[0] if shapes else ()

    def fail(rule: str) -> ValueError:
        return ValueError(
            f"layer {node.layer or node.name!r} ({node.layer_class}): {rule}; "
            f"got input shape(s) {shapes}"
        )

    if op == "input":
        return tuple(p["shape"])
    if op in _SAME_SHAPE:
        return x
    if op == "dense":
        if x[-1:] != node.weights["kernel"].shape[:1]:
            raise fail(f"the last axis must have {node.weights['kernel'].shape[0]} elements")
        return (*x[:-1], int(node.weights["kernel"].shape[1]))
    if op == "conv":
        kernel = node.weights["kernel"]
        if len(x) != kernel.ndim - 1 or x[-1] != kernel.shape[-2] * p["groups"]:
            raise fail(f"expected (*spatial, {kernel.shape[-2] * p['groups']}) input items")
        out = [
            conv_length(n, k, s, d, pad)
            for n, k, s, d, pad in zip(
                x[:-1], kernel.shape[:-2], p["strides"], p["dilation"], p["pads"], strict=True
            )
        ]
        return (*out, int(kernel.shape[-1]))
    if op == "conv_transpose":
        try:
            return tuple(int(v) for v in p["op"].output_shape((1, *x))[1:])
        except ValueError as err:
            raise fail(str(err)) from None
    if op == "space_to_depth":
        return tuple(p["shape"])
    if op == "reshape":
        if math.prod(p["shape"]) != math.prod(x):
            raise fail(f"cannot reshape {math.prod(x)} elements to {tuple(p['shape'])}")
        return tuple(p["shape"])
    if op == "transpose":
        return tuple(x[a] for a in p["perm"])
    if op == "upsample":
        return (*(n * s for n, s in zip(x[:-1], p["size"], strict=True)), x[-1])
    if op == "pool":
        ones = (1,) * len(p["pool"])
        out = [
            conv_length(n, k, s, d, pad)
            for n, k, s, d, pad in zip(
                x[:-1], p["pool"], p["strides"], ones, p["pads"], strict=True
            )
        ]
        return (*out, x[-1])
    if op == "global_pool":
        return (*(1,) * (len(x) - 1), x[-1]) if p["keepdims"] else (x[-1],)
    if op in ("pad", "crop"):
        sign = 1 if op == "pad" else -1
        pairs = p["pads"] if op == "pad" else p["crops"]
        out = [n + sign * (lo + hi) for n, (lo, hi) in zip(x[:-1], pairs, strict=True)]
        if min(out, default=1) <= 0:
            raise fail("the cropping leaves no elements")
        return (*out, x[-1])
    if op == "concat":
        axis = p["axis"]
        rest = {s[:axis] + s[axis + 1 :] for s in shapes}
        if len(rest) != 1 or not all(len(s) == len(x) for s in shapes):
            raise fail(f"inputs must match except on axis {axis}")
        return (*x[:axis], sum(s[axis] for s in shapes), *x[axis + 1 :])
    if op in MERGES:
        try:
            return tuple(int(v) for v in np.broadcast_shapes(*shapes))
        except ValueError:
            raise fail("the inputs' shapes must be equal or broadcast") from None
    raise fail(f"no shape rule for op {op!r}")  # pragma: no cover - OPS lists every op
