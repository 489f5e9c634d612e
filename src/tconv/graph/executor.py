"""Inference of a :class:`tconv.graph.Graph` in NumPy, op by op as Keras computes them.

Every op takes and returns a batch ``(N, *item)`` in float32 (the dtype Keras computes a
float32 model in); see :mod:`tconv.graph.graph` for the ops and their layouts.  The transposed
convolutions run tconv's engine (:meth:`tconv.layer.TransposedConv.forward`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from .. import activations
from .graph import Graph, Node

Op = Callable[[Node, list[np.ndarray]], np.ndarray]
DTYPE = np.dtype(np.float32)


def _activate(name: str, y: np.ndarray) -> np.ndarray:
    return activations.apply(name, y).astype(DTYPE, copy=False)


def _dense(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    y = np.matmul(xs[0], node.weights["kernel"])
    if "bias" in node.weights:
        y = y + node.weights["bias"]
    return _activate(node.params["activation"], y)


def _windows(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    out: Sequence[int],
) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """For each kernel tap ``t`` (all axes), the strided view ``x[:, o*s + t*d, ..., :]`` over
    the outputs ``o`` of a spatial batch ``x (N, *spatial, C)`` (already padded)."""
    views = []
    for tap in itertools.product(*(range(k) for k in kernel)):
        index: list[slice] = [slice(None)]
        for t, s, d, o in zip(tap, strides, dilation, out, strict=True):
            index.append(slice(t * d, t * d + (o - 1) * s + 1, s))
        index.append(slice(None))
        views.append((tap, x[tuple(index)]))
    return views


def _pad(x: np.ndarray, pads: Sequence[tuple[int, int]], value: float = 0.0) -> np.ndarray:
    if not any(lo or hi for lo, hi in pads):
        return x
    return np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=value)


def _conv(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    p = node.params
    kernel = node.weights["kernel"]  # (*k, cin_g, cout)
    groups = p["groups"]
    x = _pad(xs[0], p["pads"])
    k = kernel.shape[:-2]
    cin_g, cout = kernel.shape[-2:]
    out = node.shape[:-1]
    y = np.zeros((x.shape[0], *out, groups, cout // groups), DTYPE)
    w = kernel.reshape(*k, cin_g, groups, cout // groups)
    w = np.moveaxis(w, -2, -3)  # (*k, G, cin_g, cout_g)
    for tap, view in _windows(x, k, p["strides"], p["dilation"], out):
        xg = view.reshape(*view.shape[:-1], groups, 1, cin_g)
        y += np.matmul(xg, w[tap])[..., 0, :]
    y = y.reshape(*y.shape[:-2], cout)
    if "bias" in node.weights:
        y = y + node.weights["bias"]
    return _activate(p["activation"], y)


def _conv_transpose(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    return node.params["op"].forward(xs[0]).astype(DTYPE, copy=False)


def _channel_shape(node: Node, ndim: int, axes: Sequence[int]) -> tuple[int, ...]:
    """The broadcast shape of a per-``axes`` parameter for a batch of rank ``ndim``."""
    shape = [1] * ndim
    for a in axes:
        shape[a + 1] = node.shape[a]
    return tuple(shape)


def _batch_norm(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    x, w = xs[0], node.weights
    shape = _channel_shape(node, x.ndim, [node.params["axis"]])
    inv = 1.0 / np.sqrt(w["variance"] + np.float32(node.params["epsilon"]))
    if "gamma" in w:
        inv = inv * w["gamma"]
    shift = -w["mean"] * inv
    if "beta" in w:
        shift = shift + w["beta"]
    return (x * inv.reshape(shape) + shift.reshape(shape)).astype(DTYPE)


def _layer_norm(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    x, w, p = xs[0], node.weights, node.params
    axes = tuple(a + 1 for a in p["axes"])
    shape = _channel_shape(node, x.ndim, p["axes"])
    eps = np.float32(p["epsilon"])
    variance = np.var(x, axis=axes, keepdims=True, dtype=DTYPE)
    inv = (1.0 / np.sqrt(variance + eps)).astype(DTYPE)
    if p["rms_scaling"]:  # Keras' rms_scaling divides by the standard deviation, no centring
        y = x * inv
        return (y * w["gamma"].reshape(shape) if "gamma" in w else y).astype(DTYPE)
    mean = np.mean(x, axis=axes, keepdims=True, dtype=DTYPE)
    if "gamma" in w:
        inv = inv * w["gamma"].reshape(shape)
    shift = -mean * inv
    if "beta" in w:
        shift = shift + w["beta"].reshape(shape)
    return (x * inv + shift).astype(DTYPE)


def _relu(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    """Keras' ``activations.relu(x, negative_slope, max_value, threshold)``, step by step."""
    x, p = xs[0], node.params
    slope, top, threshold = p["negative_slope"], p["max_value"], p["threshold"]
    if slope != 0 and top is None and threshold == 0:
        return np.where(x >= 0, x, np.float32(slope) * x).astype(DTYPE)
    y = np.where(x > np.float32(threshold), x, 0) if threshold != 0 else np.maximum(x, 0)
    if top is not None:
        y = np.clip(y, 0, np.float32(top))
    if slope != 0:
        y = y - np.float32(slope) * np.maximum(np.float32(threshold) - x, 0)
    return y.astype(DTYPE)


def _prelu(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    return (np.maximum(x, 0) - node.weights["alpha"] * np.maximum(-x, 0)).astype(DTYPE)


def _softmax(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    axes = tuple(a + 1 for a in node.params["axes"])
    x = xs[0]
    e = np.exp(x - np.max(x, axis=axes, keepdims=True))
    return (e / np.sum(e, axis=axes, keepdims=True)).astype(DTYPE)


def _upsample(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    y = xs[0]
    sizes = node.params["size"]
    if node.params["interpolation"] == "nearest":
        for axis, s in enumerate(sizes, start=1):
            y = np.repeat(y, s, axis=axis)
        return y
    for axis, s in enumerate(sizes, start=1):  # bilinear, half-pixel centres, no antialias
        y = _linear_resize(y, axis, y.shape[axis] * s)
    return y.astype(DTYPE)


def _linear_resize(x: np.ndarray, axis: int, out: int) -> np.ndarray:
    """Linear interpolation of ``axis`` to ``out`` samples with half-pixel centres (as
    ``tf.image.resize``): source ``(o + 0.5) * n / out - 0.5``, clamped to the edges."""
    n = x.shape[axis]
    src = (np.arange(out, dtype=np.float64) + 0.5) * (n / out) - 0.5
    lower = np.floor(src)
    frac = (src - lower).astype(DTYPE)
    lo = np.clip(lower, 0, n - 1).astype(np.intp)
    hi = np.clip(lower + 1, 0, n - 1).astype(np.intp)
    shape = [1] * x.ndim
    shape[axis] = out
    a, b = np.take(x, lo, axis=axis), np.take(x, hi, axis=axis)
    return a + (b - a) * frac.reshape(shape)


def _pool(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    p = node.params
    out = node.shape[:-1]
    ones = (1,) * len(out)
    if p["kind"] == "max":
        x = _pad(xs[0], p["pads"], -np.inf)
        views = _windows(x, p["pool"], p["strides"], ones, out)
        return np.maximum.reduce([v for _, v in views]).astype(DTYPE)
    x = _pad(xs[0], p["pads"])
    total = np.add.reduce([v for _, v in _windows(x, p["pool"], p["strides"], ones, out)])
    valid = _pad(np.ones((1, *xs[0].shape[1:-1], 1), DTYPE), p["pads"])
    count = np.add.reduce([v for _, v in _windows(valid, p["pool"], p["strides"], ones, out)])
    return (total / count).astype(DTYPE)  # "same" divides by the valid elements only


def _global_pool(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    axes = tuple(range(1, x.ndim - 1))
    reduce = np.max if node.params["kind"] == "max" else np.mean
    return reduce(x, axis=axes, keepdims=node.params["keepdims"]).astype(DTYPE)


def _crop(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    index = [slice(None)]
    for (lo, hi), n in zip(node.params["crops"], xs[0].shape[1:-1], strict=True):
        index.append(slice(lo, n - hi))
    index.append(slice(None))
    return xs[0][tuple(index)]


def _space_to_depth(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    p = node.params
    rank = x.ndim - 2
    outs = node.shape[:-1]
    pads = []
    for n, s, lo, m in zip(x.shape[1:-1], p["block"], p["pads"], outs, strict=True):
        pads.append((lo, max(0, s * m - n - lo)))
    x = _pad(x, pads)
    keep = [slice(None)] + [slice(0, s * m) for s, m in zip(p["block"], outs, strict=True)]
    x = x[tuple(keep)]
    split = [x.shape[0]]
    for s, m in zip(p["block"], outs, strict=True):
        split += [m, s]
    x = x.reshape(*split, x.shape[-1])
    order = [0, *(1 + 2 * a for a in range(rank)), *(2 + 2 * a for a in range(rank)), 2 * rank + 1]
    return np.ascontiguousarray(x.transpose(order)).reshape(x.shape[0], *node.shape)


def _item_broadcast(x: np.ndarray, rank: int) -> np.ndarray:
    """``x`` ``(N, *item)`` with 1s inserted after the batch axis up to an item of ``rank``
    axes: Keras' merge layers expand a lower-rank input at axis 1 before broadcasting."""
    return x.reshape(x.shape[0], *(1,) * (rank + 1 - x.ndim), *x.shape[1:])


def _merge(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Op:
    def run(node: Node, xs: list[np.ndarray]) -> np.ndarray:
        rank = len(node.shape)
        y = _item_broadcast(xs[0], rank)
        for x in xs[1:]:
            y = fn(y, _item_broadcast(x, rank))
        return y.astype(DTYPE)

    return run


def _average(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    total = _merge(np.add)(node, xs)
    return (total / np.float32(len(xs))).astype(DTYPE)


OPS: dict[str, Op] = {
    "identity": lambda node, xs: xs[0],
    "dense": _dense,
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "activation": lambda node, xs: _activate(node.params["name"], xs[0]),
    "relu": _relu,
    "leaky_relu": lambda node, xs: np.where(
        xs[0] >= 0, xs[0], np.float32(node.params["negative_slope"]) * xs[0]
    ).astype(DTYPE),
    "elu": lambda node, xs: np.where(
        xs[0] > 0, xs[0], np.float32(node.params["alpha"]) * np.expm1(np.minimum(xs[0], 0))
    ).astype(DTYPE),
    "prelu": _prelu,
    "softmax": _softmax,
    "reshape": lambda node, xs: xs[0].reshape(xs[0].shape[0], *node.shape),
    "transpose": lambda node, xs: np.transpose(xs[0], (0, *(a + 1 for a in node.params["perm"]))),
    "upsample": _upsample,
    "pool": _pool,
    "global_pool": _global_pool,
    "pad": lambda node, xs: _pad(xs[0], node.params["pads"]),
    "crop": _crop,
    "concat": lambda node, xs: np.concatenate(xs, axis=node.params["axis"] + 1),
    "add": _merge(np.add),
    "subtract": _merge(np.subtract),
    "multiply": _merge(np.multiply),
    "average": _average,
    "maximum": _merge(np.maximum),
    "minimum": _merge(np.minimum),
    "space_to_depth": _space_to_depth,
    "rescale": lambda node, xs: (xs[0] * node.params["scale"] + node.params["offset"]).astype(
        DTYPE
    ),
}


def run_node(node: Node, inputs: list[np.ndarray]) -> np.ndarray:
    """One node on its input batches (float32), as a contiguous float32 batch."""
    return np.ascontiguousarray(OPS[node.op](node, inputs), dtype=DTYPE)


def run(graph: Graph, inputs: Sequence[np.ndarray], keep: str = "outputs") -> dict[str, np.ndarray]:
    """Run the graph on one batch per graph input (``(N, *item)``, any float dtype).

    Returns ``{node name: batch}`` for the graph's outputs (``keep="outputs"``) or for every
    node (``keep="all"``).  Each input must have the item shape of its input node; a
    ``ValueError`` names the input otherwise.
    """
    if len(inputs) != len(graph.inputs):
        raise ValueError(
            f"model {graph.name!r} takes {len(graph.inputs)} input(s) {graph.inputs}, "
            f"got {len(inputs)}"
        )
    values: dict[str, np.ndarray] = {}
    for name, x in zip(graph.inputs, inputs, strict=True):
        array = np.asarray(x)
        node = graph.node(name)
        if array.ndim == 0 or tuple(array.shape[1:]) != node.shape:
            raise ValueError(
                f"input {name!r} of model {graph.name!r} must have shape (batch, "
                f"{', '.join(map(str, node.shape))}), got {array.shape}"
            )
        if array.dtype.kind not in "fiub":
            raise TypeError(f"input {name!r} must be numbers, got dtype {array.dtype}")
        values[name] = np.ascontiguousarray(array, dtype=DTYPE)
    last_use = {}
    for i, node in enumerate(graph.nodes):
        for source in node.inputs:
            last_use[source] = i
    wanted = set(graph.outputs)
    for i, node in enumerate(graph.nodes):
        if node.op != "input":
            values[node.name] = run_node(node, [values[s] for s in node.inputs])
        if keep != "all":
            for source in set(node.inputs):
                if last_use[source] == i and source not in wanted:
                    del values[source]
    if keep == "all":
        return values
    return {name: values[name] for name in graph.outputs}
