"""A whole Keras model from a ``.keras`` or ``.h5`` file, run in NumPy as Keras runs it.

:func:`load_model` reads the model's config and weights with zipfile/h5py only (Keras 3 and
tf.keras 2.x files; Sequential and functional; nested models; several inputs and outputs) and
builds a framework-neutral :class:`tconv.graph.Graph`: every Keras layer becomes one or more
nodes in canonical channels-last layouts (a channels-first layer gets transposes around it, a
separable convolution its depthwise and pointwise steps).  :class:`Model` computes inference
(``training=False``) exactly as Keras does; the transposed convolutions are tconv's
:mod:`tconv.keras` layers.  Data is in Keras' layouts, batch first.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..graph import Graph, Node, executor, macs, output_shape
from .files import ModelFile, entry_groups, is_container, open_model
from .layers import LAYER_CLASSES, BaseConvTranspose, _activation_name

__all__ = ["SUPPORTED_CLASSES", "Layer", "Model", "load_model"]

TensorRef = tuple[str, int, int]  # (layer name, call index, output index), as Keras records it


@dataclass
class Layer:
    """One Keras layer of a loaded model (nested models are flattened into their layers).

    ``weights`` are in Keras' ``get_weights()`` order and layouts; ``nodes`` are the graph nodes
    it became (its output is the last); ``op`` is the tconv layer of a transposed convolution
    (``tconv.keras.Conv2DTranspose`` etc., in the layer's own data format), else ``None``.
    """

    name: str
    class_name: str
    config: dict[str, Any]
    weights: list[np.ndarray]
    nodes: list[str] = field(default_factory=list)
    output_shape: tuple[int | None, ...] = ()
    op: BaseConvTranspose | None = None

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.weights]

    def count_params(self) -> int:
        return int(sum(w.size for w in self.weights))


# --- config helpers ---------------------------------------------------------------------------


def _ints(value: Any, n: int, what: str, layer: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * n
    values = tuple(value)
    if len(values) != n or not all(isinstance(v, (int, np.integer)) for v in values):
        raise ValueError(f"layer {layer!r}: {what} must be {n} integers, got {value!r}")
    if any(v < 1 for v in values):
        raise ValueError(f"layer {layer!r}: {what} must be positive, got {value!r}")
    return tuple(int(v) for v in values)


def _pairs(value: Any, n: int, what: str, layer: str) -> list[tuple[int, int]]:
    """Keras' ``padding``/``cropping`` of ZeroPadding/Cropping: an int, one int per axis, or a
    ``(start, end)`` pair per axis (1D: one pair)."""
    if isinstance(value, (int, np.integer)):
        return [(int(value), int(value))] * n
    items = list(value)
    if n == 1 and len(items) == 2 and all(isinstance(v, (int, np.integer)) for v in items):
        return [(int(items[0]), int(items[1]))]
    if len(items) != n:
        raise ValueError(f"layer {layer!r}: {what} must have {n} entries, got {value!r}")
    out = []
    for item in items:
        if isinstance(item, (int, np.integer)):
            out.append((int(item), int(item)))
        else:
            lo, hi = item
            out.append((int(lo), int(hi)))
    return out


def _same_pads(
    sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilation: Sequence[int]
) -> list[tuple[int, int]]:
    """Keras/TensorFlow ``same`` padding of a forward window: ``ceil(n/s)`` outputs, the total
    pad split with the extra element at the end."""
    pads = []
    for n, k, s, d in zip(sizes, kernel, strides, dilation, strict=True):
        span = d * (k - 1) + 1
        total = max((-(-n // s) - 1) * s + span - n, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _window_pads(
    padding: str,
    sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    layer: str,
    causal: bool = False,
) -> list[tuple[int, int]]:
    padding = str(padding).lower()
    if padding == "valid":
        return [(0, 0)] * len(sizes)
    if padding == "same":
        return _same_pads(sizes, kernel, strides, dilation)
    if padding == "causal" and causal:
        return [(d * (k - 1), 0) for k, d in zip(kernel, dilation, strict=True)]
    allowed = "'valid', 'same', 'causal'" if causal else "'valid', 'same'"
    raise ValueError(f"layer {layer!r}: padding must be one of {allowed}, got {padding!r}")


def _data_format(config: dict[str, Any], layer: str) -> str:
    value = str(config.get("data_format") or "channels_last").lower()
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f"layer {layer!r}: unknown data_format {value!r}")
    return value


def _item_axis(axis: int, rank: int, layer: str) -> int:
    """A Keras axis (batch included; negative from the end) -> an item axis ``0..rank-1``."""
    full = axis + rank + 1 if axis < 0 else axis
    if not 1 <= full <= rank:
        raise ValueError(
            f"layer {layer!r}: axis {axis} is not an axis of an item of rank {rank} "
            "(the batch axis cannot be used)"
        )
    return full - 1


def _axes(value: Any, rank: int, layer: str) -> list[int]:
    values = [value] if isinstance(value, (int, np.integer)) else list(value)
    return sorted(_item_axis(int(a), rank, layer) for a in values)


def _dtype_check(config: dict[str, Any], layer: str) -> None:
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if dtype not in (None, "float32"):
        raise ValueError(
            f"layer {layer!r}: dtype policy {dtype!r}; tconv.keras.load_model runs float32 "
            "models (the transposed-convolution layers alone take every policy)"
        )


_NOISE = ("name", "trainable", "dtype", "seed", "quantization_config")


def _detail(config: dict[str, Any]) -> str:
    """A layer's options in a few words: its config without names, dtypes, initializers,
    regularizers and constraints."""
    items = []
    for key, value in config.items():
        if key in _NOISE or key.endswith(("_initializer", "_regularizer", "_constraint")):
            continue
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, (dict,)):
            continue
        items.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    return ", ".join(items)


# --- the builder ------------------------------------------------------------------------------


class _Builder:
    """Turns a model config into graph nodes, layer by layer."""

    def __init__(self, file: ModelFile) -> None:
        self.file = file
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.layers: dict[str, Layer] = {}
        self.inputs: list[str] = []
        self.current: Layer | None = None

    # nodes
    def _unique(self, name: str) -> str:
        if name not in self.shapes:
            return name
        i = 1
        while f"{name}#{i}" in self.shapes:
            i += 1
        return f"{name}#{i}"

    def emit(
        self,
        op: str,
        inputs: Sequence[str],
        params: dict[str, Any] | None = None,
        weights: dict[str, np.ndarray] | None = None,
        *,
        step: str = "",
        note: str = "",
    ) -> str:
        """Add a node of the current layer (``step`` names an intermediate one) -> its name."""
        layer = self.current
        assert layer is not None
        base = f"{layer.name}/{step}" if step else layer.name
        node = Node(
            self._unique(base),
            op,
            tuple(inputs),
            params or {},
            {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (weights or {}).items()},
            layer=layer.name,
            layer_class=layer.class_name,
            note=note,
            detail=_detail(layer.config),
        )
        node.shape = output_shape(node, [self.shapes[i] for i in inputs])
        self.nodes.append(node)
        self.shapes[node.name] = node.shape
        layer.nodes.append(node.name)
        return node.name

    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def to_last(self, x: str, step: str = "to_channels_last") -> str:
        rank = len(self.shape(x))
        return self.emit("transpose", [x], {"perm": [*range(1, rank), 0]}, step=step)

    def to_first(self, x: str) -> str:
        rank = len(self.shape(x))
        return self.emit("transpose", [x], {"perm": [rank - 1, *range(rank - 1)]})

    # layers
    def begin(self, entry: dict[str, Any], chain: tuple[str, ...], group: str | None) -> Layer:
        config = entry.get("config") or {}
        name = str(config.get("name") or entry.get("name"))
        key = name if name not in self.layers else "/".join((*chain, name))
        if key in self.layers:  # a shared layer called again: same weights, new nodes
            self.current = self.layers[key]
            return self.current
        weights = (
            self.file.weights(entry, chain, group)
            if group is not None or not self.file.archive
            else []
        )
        layer = Layer(key, str(entry.get("class_name")), config, weights)
        self.layers[key] = layer
        self.current = layer
        return layer

    def input(self, entry: dict[str, Any], chain: tuple[str, ...]) -> str:
        config = entry.get("config") or {}
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        name = str(config.get("name"))
        if not shape or any(not isinstance(v, int) for v in shape[1:]):
            raise ValueError(
                f"{self.file.path}: input {name!r} has shape {shape}: tconv needs every size "
                "of an item known (only the batch axis may be None)"
            )
        layer = self.begin(entry, chain, None)
        node = self.emit("input", [], {"shape": tuple(shape[1:]), "index": len(self.inputs)})
        layer.output_shape = (None, *self.shape(node))
        self.inputs.append(node)
        return node

    def leaf(
        self, entry: dict[str, Any], chain: tuple[str, ...], group: str | None, inputs: list[str]
    ) -> str:
        class_name = str(entry.get("class_name"))
        handler = _HANDLERS.get(class_name)
        config = entry.get("config") or {}
        name = str(config.get("name"))
        module = str(entry.get("module") or "")
        if ".ops" in module:  # a keras.ops call in a functional model (x + 1, ops.mean(x), ...)
            handler = None
            class_name = f"{class_name} operation ({module})"
        if handler is None:
            raise ValueError(
                f"{self.file.path}: layer {name!r} is a {class_name}, which tconv does not "
                f"support; supported classes: {', '.join(SUPPORTED_CLASSES)}"
            )
        _dtype_check(config, name)
        layer = self.begin(entry, chain, group)
        try:
            out = handler(self, config, layer.weights, inputs)
        except (KeyError, TypeError, IndexError) as err:
            raise ValueError(
                f"{self.file.path}: layer {name!r} ({class_name}) has a config or weights "
                f"tconv cannot read: {err!r}"
            ) from None
        except ValueError as err:
            raise ValueError(f"{self.file.path}: {err}") from None
        layer.output_shape = (None, *self.shape(out))
        return out

    # containers
    def container(
        self,
        entry: dict[str, Any],
        chain: tuple[str, ...],
        group: str | None,
        inputs: list[str] | None,
    ) -> list[str]:
        """Build a Sequential or functional model; ``inputs`` None for the root model."""
        if entry.get("class_name") == "Sequential":
            return [self._sequential(entry, chain, group, inputs)]
        return self._functional(entry, chain, group, inputs)

    def _sequential(
        self,
        entry: dict[str, Any],
        chain: tuple[str, ...],
        group: str | None,
        inputs: list[str] | None,
    ) -> str:
        config = entry.get("config") or {}
        layers = config.get("layers") or []
        x: str | None = inputs[0] if inputs else None
        for item, item_group in zip(layers, entry_groups(entry, group), strict=True):
            item_config = item.get("config") or {}
            if x is None:  # the root's input: an InputLayer, a batch_input_shape, or build shape
                if item.get("class_name") == "InputLayer":
                    x = self.input(item, chain)
                    continue
                shape = (
                    item_config.get("batch_input_shape")
                    or item_config.get("batch_shape")
                    or config.get("build_input_shape")
                )
                stand_in = {
                    "class_name": "InputLayer",
                    "config": {"name": f"{item_config.get('name')}_input", "batch_shape": shape},
                }
                x = self.input(stand_in, chain)
            if item.get("class_name") == "InputLayer":
                continue
            x = self._call(item, chain, item_group, [x])[0]
        if x is None:
            raise ValueError(f"{self.file.path}: Sequential {config.get('name')!r} has no layers")
        return x

    def _call(
        self, item: dict[str, Any], chain: tuple[str, ...], group: str | None, inputs: list[str]
    ) -> list[str]:
        if is_container(item):
            name = str((item.get("config") or {}).get("name"))
            return self.container(item, (*chain, name), group, inputs)
        return [self.leaf(item, chain, group, inputs)]

    def _functional(
        self,
        entry: dict[str, Any],
        chain: tuple[str, ...],
        group: str | None,
        inputs: list[str] | None,
    ) -> list[str]:
        config = entry.get("config") or {}
        layers = config.get("layers") or []
        tensors: dict[TensorRef, str] = {}
        input_refs = _refs(config.get("input_layers"))
        if inputs is not None and len(inputs) != len(input_refs):
            raise ValueError(
                f"{self.file.path}: model {config.get('name')!r} takes {len(input_refs)} "
                f"inputs but is called on {len(inputs)}"
            )
        pending: list[tuple[dict[str, Any], str | None, int, list[TensorRef]]] = []
        input_names = [r[0] for r in input_refs]
        input_items: dict[str, dict[str, Any]] = {}
        for item, item_group in zip(layers, entry_groups(entry, group), strict=True):
            name = str((item.get("config") or {}).get("name") or item.get("name"))
            if item.get("class_name") == "InputLayer":
                input_items[name] = item
                continue
            for call, node in enumerate(item.get("inbound_nodes") or []):
                pending.append((item, item_group, call, _node_refs(node)))
        # the model's inputs in the order of its config's input_layers (Keras' model.inputs),
        # whatever the order of the layers
        for name in input_names if input_refs else list(input_items):
            if name not in input_items:
                raise ValueError(
                    f"{self.file.path}: model {config.get('name')!r}: input {name!r} is not "
                    "one of its InputLayers"
                )
            tensors[(name, 0, 0)] = (
                inputs[input_names.index(name)]
                if inputs is not None
                else self.input(input_items[name], chain)
            )
        while pending:
            ready = [p for p in pending if all(r in tensors for r in p[3])]
            if not ready:
                missing = sorted({r[0] for p in pending for r in p[3] if r not in tensors})
                raise ValueError(
                    f"{self.file.path}: model {config.get('name')!r}: layers read tensors of "
                    f"{missing}, which no layer of the model computes"
                )
            item, item_group, call, refs = ready[0]
            pending.remove(ready[0])
            name = str((item.get("config") or {}).get("name") or item.get("name"))
            outs = self._call(item, chain, item_group, [tensors[r] for r in refs])
            for t, out in enumerate(outs):
                tensors[(name, call, t)] = out
        outputs = []
        for ref in _refs(config.get("output_layers")):
            if ref not in tensors:
                raise ValueError(f"{self.file.path}: output {ref} is not computed by the model")
            outputs.append(tensors[ref])
        return outputs


def _refs(value: Any) -> list[TensorRef]:
    """``[["a", 0, 0], ...]`` or a single ``["a", 0, 0]`` -> tensor refs."""
    if not value:
        return []
    if isinstance(value[0], str):
        value = [value]
    return [_ref(v) for v in value]


def _ref(value: Any) -> TensorRef:
    """``[layer name, node index, tensor index]`` (more items may follow) -> a tensor ref."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) < 3
        or not isinstance(value[0], str)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:3])
    ):
        raise ValueError(
            f"a tensor reference must be [layer name, node index, tensor index], got {value!r}"
        )
    return (value[0], value[1], value[2])


def _node_refs(node: Any) -> list[TensorRef]:
    """The tensors one call of a layer reads, in order (Keras 3 and tf.keras formats)."""
    refs: list[TensorRef] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                refs.append(_ref(value["config"]["keras_history"]))
            return
        if isinstance(value, (list, tuple)):
            for v in value:
                visit(v)

    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        visit(node.get("args") or [])
    else:  # tf.keras 2: [[name, call, index, kwargs], ...]
        for item in node:
            refs.append(_ref(item))
    return refs


# --- one handler per Keras class --------------------------------------------------------------

Handler = Callable[[_Builder, dict[str, Any], list[np.ndarray], list[str]], str]


def _spatial(b: _Builder, config: dict[str, Any], x: str, body: Callable[[str], str]) -> str:
    """Run ``body`` on channels-last data: transposes around it for a channels-first layer."""
    if _data_format(config, b.current.name if b.current else "") == "channels_first":
        return b.to_first(body(b.to_last(x)))
    return body(x)


def _take(
    weights: list[np.ndarray], flags: Sequence[tuple[str, bool]], layer: str
) -> dict[str, np.ndarray]:
    names = [n for n, present in flags if present]
    if len(weights) != len(names):
        raise ValueError(
            f"layer {layer!r}: expected {len(names)} weights ({', '.join(names)}), the file has "
            f"{len(weights)}"
        )
    return dict(zip(names, weights, strict=True))


def _identity(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    return b.emit("identity", xs[:1], note="an identity at inference")


def _dense(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    name = str(c["name"])
    weights = _take(w, [("kernel", True), ("bias", bool(c.get("use_bias", True)))], name)
    return b.emit("dense", xs, {"activation": _activation_name(c.get("activation"))}, weights)


def _conv(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    name = str(c["name"])
    weights = _take(w, [("kernel", True), ("bias", bool(c.get("use_bias", True)))], name)
    rank = weights["kernel"].ndim - 2
    groups = int(c.get("groups", 1))
    strides = _ints(c.get("strides", 1), rank, "strides", name)
    dilation = _ints(c.get("dilation_rate", 1), rank, "dilation_rate", name)
    kernel = weights["kernel"].shape[:-2]

    def body(x: str) -> str:
        pads = _window_pads(
            c.get("padding", "valid"),
            b.shape(x)[:-1],
            kernel,
            strides,
            dilation,
            name,
            causal=rank == 1,
        )
        params = {
            "strides": strides,
            "dilation": dilation,
            "pads": pads,
            "groups": groups,
            "activation": _activation_name(c.get("activation")),
        }
        return b.emit("conv", [x], params, weights)

    return _spatial(b, c, xs[0], body)


def _depthwise_node(
    b: _Builder,
    c: dict[str, Any],
    x: str,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    activation: str,
    step: str,
) -> str:
    """A depthwise convolution as a grouped one: kernel ``(*k, C, mult)`` -> ``(*k, 1, C*mult)``
    with ``groups=C`` (output channel ``c*mult + m``, as Keras orders them)."""
    name = str(c["name"])
    rank = kernel.ndim - 2
    channels, mult = kernel.shape[-2:]
    strides = _ints(c.get("strides", 1), rank, "strides", name)
    dilation = _ints(c.get("dilation_rate", 1), rank, "dilation_rate", name)
    pads = _window_pads(
        c.get("padding", "valid"),
        b.shape(x)[:-1],
        kernel.shape[:-2],
        strides,
        dilation,
        name,
        causal=rank == 1,
    )
    weights = {"kernel": kernel.reshape(*kernel.shape[:-2], 1, channels * mult)}
    if bias is not None:
        weights["bias"] = bias
    params = {
        "strides": strides,
        "dilation": dilation,
        "pads": pads,
        "groups": int(channels),
        "activation": activation,
    }
    return b.emit(
        "conv",
        [x],
        params,
        weights,
        step=step,
        note="depthwise: a grouped convolution, one group per input channel",
    )


def _depthwise(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    name = str(c["name"])
    weights = _take(w, [("kernel", True), ("bias", bool(c.get("use_bias", True)))], name)
    activation = _activation_name(c.get("activation"))
    return _spatial(
        b,
        c,
        xs[0],
        lambda x: _depthwise_node(b, c, x, weights["kernel"], weights.get("bias"), activation, ""),
    )


def _separable(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    name = str(c["name"])
    weights = _take(
        w, [("depthwise", True), ("pointwise", True), ("bias", bool(c.get("use_bias", True)))], name
    )

    def body(x: str) -> str:
        mid = _depthwise_node(b, c, x, weights["depthwise"], None, "linear", "depthwise")
        rank = weights["pointwise"].ndim - 2
        params = {
            "strides": (1,) * rank,
            "dilation": (1,) * rank,
            "pads": [(0, 0)] * rank,
            "groups": 1,
            "activation": _activation_name(c.get("activation")),
        }
        point = {"kernel": weights["pointwise"]}
        if "bias" in weights:
            point["bias"] = weights["bias"]
        return b.emit("conv", [mid], params, point, note="pointwise step (1x1 convolution)")

    return _spatial(b, c, xs[0], body)


def _conv_transpose(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    layer = b.current
    assert layer is not None
    cls = LAYER_CLASSES[layer.class_name]
    op = cls.from_config(c)
    op.set_weights(w)
    x = xs[0]
    first = op.data_format == "channels_first"
    op.input_shape = b.shape(x)
    layer.op = op
    canonical = cls.from_config({**c, "data_format": "channels_last"}) if first else op
    if first:
        canonical.set_weights(w)
    return _spatial(b, c, x, lambda x: b.emit("conv_transpose", [x], {"op": canonical}))


def _batch_norm(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    name = str(c["name"])
    if c.get("renorm"):
        raise ValueError(f"layer {name!r}: BatchNormalization with renorm=True is not supported")
    flags = [
        ("gamma", bool(c.get("scale", True))),
        ("beta", bool(c.get("center", True))),
        ("mean", True),
        ("variance", True),
    ]
    weights = _take(w, flags, name)
    axis = c.get("axis", -1)
    axes = _axes(axis, len(b.shape(xs[0])), name)
    if len(axes) != 1:
        raise ValueError(f"layer {name!r}: BatchNormalization over several axes {axis}")
    return b.emit(
        "batch_norm", xs, {"axis": axes[0], "epsilon": float(c.get("epsilon", 1e-3))}, weights
    )


def _layer_norm(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    name = str(c["name"])
    rms = bool(c.get("rms_scaling", False))
    flags = [
        ("gamma", bool(c.get("scale", True)) or rms),
        ("beta", bool(c.get("center", True)) and not rms),
    ]
    weights = _take(w, flags, name)
    axes = _axes(c.get("axis", -1), len(b.shape(xs[0])), name)
    params = {"axes": axes, "epsilon": float(c.get("epsilon", 1e-3)), "rms_scaling": rms}
    return b.emit("layer_norm", xs, params, weights)


def _activation(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    return b.emit("activation", xs, {"name": _activation_name(c.get("activation"))})


def _relu(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    top = c.get("max_value")
    params = {
        "max_value": None if top is None else float(top),
        "negative_slope": float(c.get("negative_slope", 0.0) or 0.0),
        "threshold": float(c.get("threshold", 0.0) or 0.0),
    }
    return b.emit("relu", xs, params)


def _leaky_relu(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    slope = c.get("negative_slope", c.get("alpha", 0.3))
    return b.emit("leaky_relu", xs, {"negative_slope": float(slope)})


def _elu(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    return b.emit("elu", xs, {"alpha": float(c.get("alpha", 1.0))})


def _prelu(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    weights = _take(w, [("alpha", True)], str(c["name"]))
    return b.emit("prelu", xs, {}, weights)


def _softmax(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    axes = _axes(c.get("axis", -1), len(b.shape(xs[0])), str(c["name"]))
    return b.emit("softmax", xs, {"axes": axes})


def _reshape(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    target = [int(v) for v in c["target_shape"]]
    size = math.prod(b.shape(xs[0]))
    if target.count(-1) == 1:
        known = math.prod(v for v in target if v != -1)
        target[target.index(-1)] = size // known if known else 0
    return b.emit("reshape", xs, {"shape": tuple(target)})


def _flatten(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    x = xs[0]
    if _data_format(c, str(c["name"])) == "channels_first" and len(b.shape(x)) > 1:
        x = b.to_last(x)
    return b.emit("reshape", [x], {"shape": (math.prod(b.shape(x)),)})


def _permute(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    perm = [int(d) - 1 for d in c["dims"]]
    return b.emit("transpose", xs, {"perm": perm})


def _upsampling(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    name = str(c["name"])
    rank = len(b.shape(xs[0])) - 1
    size = _ints(c.get("size", 2), rank, "size", name)
    interpolation = str(c.get("interpolation", "nearest")).lower()
    if interpolation not in ("nearest", "bilinear") or (interpolation != "nearest" and rank != 2):
        raise ValueError(
            f"layer {name!r}: interpolation {interpolation!r} is not supported (nearest in "
            "every rank, bilinear in 2D)"
        )
    return _spatial(
        b,
        c,
        xs[0],
        lambda x: b.emit("upsample", [x], {"size": size, "interpolation": interpolation}),
    )


def _pooling(kind: str) -> Handler:
    def handler(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
        name = str(c["name"])
        rank = len(b.shape(xs[0])) - 1
        pool = _ints(c.get("pool_size", 2), rank, "pool_size", name)
        strides = _ints(c.get("strides") or pool, rank, "strides", name)

        def body(x: str) -> str:
            pads = _window_pads(
                c.get("padding", "valid"), b.shape(x)[:-1], pool, strides, (1,) * rank, name
            )
            return b.emit(
                "pool", [x], {"kind": kind, "pool": pool, "strides": strides, "pads": pads}
            )

        return _spatial(b, c, xs[0], body)

    return handler


def _global_pooling(kind: str) -> Handler:
    def handler(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
        keepdims = bool(c.get("keepdims", False))
        if _data_format(c, str(c["name"])) == "channels_first":
            x = b.to_last(xs[0])
            y = b.emit("global_pool", [x], {"kind": kind, "keepdims": keepdims}, step="pool")
            return b.to_first(y) if keepdims else b.emit("identity", [y])
        return b.emit("global_pool", xs, {"kind": kind, "keepdims": keepdims})

    return handler


def _zero_padding(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    rank = len(b.shape(xs[0])) - 1
    pads = _pairs(c.get("padding", 1), rank, "padding", str(c["name"]))
    return _spatial(b, c, xs[0], lambda x: b.emit("pad", [x], {"pads": pads}))


def _cropping(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    rank = len(b.shape(xs[0])) - 1
    crops = _pairs(c.get("cropping", 1), rank, "cropping", str(c["name"]))
    return _spatial(b, c, xs[0], lambda x: b.emit("crop", [x], {"crops": crops}))


def _concatenate(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    axis = _item_axis(int(c.get("axis", -1)), len(b.shape(xs[0])), str(c["name"]))
    return b.emit("concat", xs, {"axis": axis})


def _merge(op: str) -> Handler:
    def handler(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
        if op == "subtract" and len(xs) != 2:
            raise ValueError(f"layer {c['name']!r}: Subtract takes exactly 2 inputs")
        return b.emit(op, xs)

    return handler


def _rescaling(b: _Builder, c: dict[str, Any], w: list[np.ndarray], xs: list[str]) -> str:
    scale = np.asarray(c.get("scale", 1.0), np.float32)
    offset = np.asarray(c.get("offset", 0.0), np.float32)
    return b.emit("rescale", xs, {"scale": scale, "offset": offset})


_HANDLERS: dict[str, Handler] = {
    "Dense": _dense,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Permute": _permute,
    **{f"Conv{r}D": _conv for r in (1, 2, 3)},
    **{f"Convolution{r}D": _conv for r in (1, 2, 3)},
    **{f"Conv{r}DTranspose": _conv_transpose for r in (1, 2, 3)},
    "DepthwiseConv1D": _depthwise,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv1D": _separable,
    "SeparableConv2D": _separable,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "Activation": _activation,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
    "PReLU": _prelu,
    "ELU": _elu,
    "Softmax": _softmax,
    **{
        cls: _identity
        for cls in (
            "Dropout",
            "SpatialDropout1D",
            "SpatialDropout2D",
            "SpatialDropout3D",
            "GaussianNoise",
            "GaussianDropout",
            "AlphaDropout",
            "ActivityRegularization",
        )
    },
    **{f"UpSampling{r}D": _upsampling for r in (1, 2, 3)},
    **{f"MaxPooling{r}D": _pooling("max") for r in (1, 2, 3)},
    **{f"AveragePooling{r}D": _pooling("avg") for r in (1, 2, 3)},
    **{f"GlobalMaxPooling{r}D": _global_pooling("max") for r in (1, 2, 3)},
    **{f"GlobalAveragePooling{r}D": _global_pooling("avg") for r in (1, 2, 3)},
    **{f"ZeroPadding{r}D": _zero_padding for r in (1, 2, 3)},
    **{f"Cropping{r}D": _cropping for r in (1, 2, 3)},
    "Concatenate": _concatenate,
    "Add": _merge("add"),
    "Subtract": _merge("subtract"),
    "Multiply": _merge("multiply"),
    "Average": _merge("average"),
    "Maximum": _merge("maximum"),
    "Minimum": _merge("minimum"),
    "Rescaling": _rescaling,
}
SUPPORTED_CLASSES = ("InputLayer", *sorted(_HANDLERS))
"""Every Keras layer class :func:`load_model` reads (nested Sequential/functional models too)."""


# --- the model --------------------------------------------------------------------------------


class Model:
    """A Keras model loaded by :func:`load_model`, computed in NumPy.

    ``model(x)`` takes one batch (``(N, *item)`` in Keras' layout) or a list of them (several
    inputs, in the model's input order) and returns an array, or a list for several outputs,
    float32.  :attr:`graph` is the framework-neutral graph it runs (and exports to C).
    """

    def __init__(self, graph: Graph, layers: dict[str, Layer], path: str = "") -> None:
        self.graph = graph
        self._layers = layers
        self.path = path

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def layers(self) -> list[Layer]:
        """Every layer (nested models flattened into theirs), in the order they are built."""
        return list(self._layers.values())

    def get_layer(self, name: str) -> Layer:
        """The layer called ``name`` (a nested model's layer whose name was taken before:
        ``"model/name"``); ``ValueError`` naming the layers otherwise."""
        if name in self._layers:
            return self._layers[name]
        raise ValueError(f"No such layer: {name}. Existing layers are: {list(self._layers)}.")

    @property
    def input_names(self) -> list[str]:
        return list(self.graph.inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self.graph.outputs)

    def _shapes(self, names: list[str]) -> Any:
        shapes = [(None, *self.graph.node(n).shape) for n in names]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input_shape(self) -> Any:
        """``(None, *item)``, or a list of them for several inputs."""
        return self._shapes(self.graph.inputs)

    @property
    def output_shape(self) -> Any:
        """``(None, *item)``, or a list of them for several outputs."""
        return self._shapes(self.graph.outputs)

    def _inputs(self, x: Any) -> list[np.ndarray]:
        if len(self.graph.inputs) == 1 and not isinstance(x, (list, tuple)):
            return [np.asarray(x)]
        if not isinstance(x, (list, tuple)):
            raise TypeError(
                f"model {self.name!r} has {len(self.graph.inputs)} inputs "
                f"{self.graph.inputs}: pass a list of arrays"
            )
        return [np.asarray(v) for v in x]

    def __call__(self, x: Any) -> Any:
        values = executor.run(self.graph, self._inputs(x))
        outs = [values[n] for n in self.graph.outputs]
        return outs[0] if len(outs) == 1 else outs

    predict = __call__

    def node_outputs(self, x: Any) -> dict[str, np.ndarray]:
        """Every graph node's output batch for input ``x``: ``{node name: array}``."""
        return executor.run(self.graph, self._inputs(x), keep="all")

    def layer_outputs(self, x: Any) -> dict[str, np.ndarray]:
        """Every layer's output batch for input ``x`` (``{layer name: array}``, Keras' layout)."""
        values = self.node_outputs(x)
        return {name: values[layer.nodes[-1]] for name, layer in self._layers.items()}

    def layer_input(self, x: Any, name: str) -> np.ndarray:
        """The input that reaches the transposed convolution ``name`` (in its own layout,
        batch first) when the model runs on ``x``; ``ValueError`` for any other layer."""
        found = self.get_layer(name)
        if found.op is None:
            raise ValueError(
                f"layer {name!r} is a {found.class_name}, not a transposed convolution; "
                "transposed convolutions of the model: "
                f"{[n for n, la in self._layers.items() if la.op is not None]}"
            )
        first = self.graph.node(found.nodes[0])
        return self.node_outputs(x)[first.inputs[0]]

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per layer: name, class, output shape, parameters, multiply-adds."""
        shapes = {n.name: n.shape for n in self.graph}
        rows = []
        for layer in self._layers.values():
            nodes = [self.graph.node(n) for n in layer.nodes]
            rows.append(
                {
                    "name": layer.name,
                    "class": layer.class_name,
                    "inputs": sorted({i for n in nodes for i in n.inputs if i not in layer.nodes}),
                    "output_shape": list(layer.output_shape),
                    "params": layer.count_params(),
                    "macs": sum(macs(n, shapes) for n in nodes),
                }
            )
        return rows

    def summary(self, print_fn: Callable[[str], Any] = print) -> None:
        """Print the layer table (name, class, output shape, parameters, multiply-adds per
        item) and the totals, one line per ``print_fn`` call."""
        for line in summary_lines(self.name, self.rows()):
            print_fn(line)

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self._layers.values())

    def __repr__(self) -> str:
        return (
            f"Model(name={self.name!r}, layers={len(self._layers)}, "
            f"inputs={self.input_shape}, outputs={self.output_shape})"
        )

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._layers.values())


def summary_lines(name: str, rows: list[dict[str, Any]]) -> list[str]:
    """The lines of :meth:`Model.summary` for the rows of :meth:`Model.rows`."""
    table = [("Layer", "Class", "Output shape", "Params", "Mult-adds")]
    for r in rows:
        shape = "(" + ", ".join("None" if v is None else str(v) for v in r["output_shape"]) + ")"
        table.append((r["name"], r["class"], shape, f"{r['params']:,}", f"{r['macs']:,}"))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = [f'Model: "{name}"']
    for i, row in enumerate(table):
        cells = [row[j].ljust(widths[j]) if j < 3 else row[j].rjust(widths[j]) for j in range(5)]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("-" * len(lines[-1]))
    total = sum(r["params"] for r in rows)
    lines.append(
        f"Total params: {total:,}; multiply-adds per item: {sum(r['macs'] for r in rows):,}"
    )
    return lines


def load_model(path: str | os.PathLike[str]) -> Model:
    """The whole Keras model of a ``.keras`` or ``.h5`` file (no TensorFlow needed).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for a
    file that is not a Keras model, and naming the layer, its class and the supported classes
    (:data:`SUPPORTED_CLASSES`) for a layer tconv cannot run.
    """
    with open_model(path) as file:
        root = file.config
        if not is_container(root):
            raise ValueError(f"{file.path}: the file holds a {root.get('class_name')}, not a model")
        builder = _Builder(file)
        try:
            outputs = builder.container(root, (), file.root_group(), None)
        except (KeyError, TypeError, IndexError, AttributeError) as err:
            raise ValueError(
                f"{file.path}: the model config cannot be read ({type(err).__name__}: {err})"
            ) from None
        except ValueError as err:
            if str(err).startswith(f"{file.path}:"):
                raise
            raise ValueError(f"{file.path}: the model config cannot be read: {err}") from None
        if not builder.inputs or not outputs:
            raise ValueError(
                f"{file.path}: the model config names no "
                f"{'inputs' if not builder.inputs else 'outputs'}: nothing to run"
            )
        graph = Graph(
            builder.nodes,
            builder.inputs,
            outputs,
            str((root.get("config") or {}).get("name") or "model"),
        )
        return Model(graph, builder.layers, file.path)
