"""A layer's :class:`~tconv.kernels.spec.Spec`: its geometry at one input shape, for the C."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..kernels.spec import Spec, check_name
from ..layer import TransposedConv

__all__ = ["Spec", "from_layer"]


def from_layer(layer: TransposedConv, input_shape: Sequence[int] | None, name: str) -> Spec:
    """The spec of ``layer`` on items of ``input_shape`` (no batch axis, the layer's layout;
    the layer's own input shape when None), with C prefix ``name``.

    Raises ``TypeError`` for anything but a tconv layer and ``ValueError`` for unknown or
    empty shapes and names that are no C identifier.
    """
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
    kernel = np.asarray(layer.kernel, dtype=np.float32)
    bias = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float32)
    return Spec(
        check_name(name),
        geometry,
        kernel,
        bias,
        layer.activation,
        layer.channels_first,
        layer.framework,
        layer.kernel_layout.name,
    )
