"""A layer's :class:`~tconv.kernels.spec.Spec`: its geometry at one input shape, for the C."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..graph.graph import layer_item_shape
from ..kernels.spec import Spec, check_name
from ..layer import TransposedConv

__all__ = ["Spec", "from_layer"]


def from_layer(layer: TransposedConv, input_shape: Sequence[int] | None, name: str) -> Spec:
    """The spec of ``layer`` on items of ``input_shape`` (no batch axis, the layer's layout;
    the layer's own input shape when None), with C prefix ``name``.

    Raises ``TypeError`` for anything but a tconv layer and ``ValueError`` for unknown or
    empty shapes and names that are no C identifier.
    """
    shape = layer_item_shape(layer, input_shape)
    geometry = layer.geometry(layer.spatial_shape((1, *shape)))
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
