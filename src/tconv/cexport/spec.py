"""Everything the C generators need to know about one layer at one input shape.

A :class:`Spec` is built from a :class:`tconv.layer.TransposedConv` and the shape of one input
item (no batch axis, in the layer's layout).  It reads the layer's canonical geometry and adds
the memory layout of the data as C sees it: flat float arrays, item after item, in the layer's
``data_format``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..geometry import Axis, Geometry
from ..layer import TransposedConv

C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch typedef "
    "union unsigned void volatile while _Bool _Complex _Imaginary main".split()
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_name(name: str) -> str:
    """Return ``name`` if it can prefix every C symbol of the export, else raise ``ValueError``."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(
            f"name={name!r} is not a C identifier: use letters, digits and '_', not starting "
            "with a digit"
        )
    if name in C_KEYWORDS:
        raise ValueError(f"name={name!r} is a C keyword; choose another name")
    if name.startswith("__") or re.match(r"_[A-Z]", name):
        raise ValueError(f"name={name!r} is reserved in C (leading '__' or '_' + capital)")
    return name


@dataclass(frozen=True)
class Spec:
    """One layer at one input shape, in the terms of the generated C.

    ``kernel`` is canonical ``(*kernel_size, out_channels, in_channels // groups)`` float32,
    ``bias`` is ``(out_channels,)`` float32 or ``None``.  ``in_item``/``out_item`` are the shapes
    of one batch item in the layer's layout.
    """

    name: str
    geometry: Geometry
    kernel: np.ndarray
    bias: np.ndarray | None
    activation: str
    channels_first: bool
    framework: str
    kernel_layout: str

    @classmethod
    def from_layer(
        cls, layer: TransposedConv, input_shape: Sequence[int] | None, name: str
    ) -> Spec:
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
        return cls(
            check_name(name),
            geometry,
            kernel,
            bias,
            layer.activation,
            layer.channels_first,
            layer.framework,
            layer.kernel_layout.name,
        )

    @property
    def rank(self) -> int:
        return self.geometry.rank

    @property
    def axes(self) -> tuple[Axis, ...]:
        return self.geometry.axes

    @property
    def macro(self) -> str:
        """Upper-case prefix for the macros of this export."""
        return self.name.upper()

    @property
    def data_format_name(self) -> str:
        return "channels_first" if self.channels_first else "channels_last"

    @property
    def in_item(self) -> tuple[int, ...]:
        g = self.geometry
        sp = g.in_shape
        return (g.in_channels, *sp) if self.channels_first else (*sp, g.in_channels)

    @property
    def out_item(self) -> tuple[int, ...]:
        g = self.geometry
        sp = g.out_shape
        return (g.out_channels, *sp) if self.channels_first else (*sp, g.out_channels)

    @property
    def in_count(self) -> int:
        return math.prod(self.in_item)

    @property
    def out_count(self) -> int:
        return math.prod(self.out_item)

    @property
    def max_terms(self) -> int:
        """The most products summed into one output element (for the rounding bound)."""
        per_axis = [max(len(a.taps(o)) for o in range(a.out)) for a in self.axes]
        return max(1, math.prod(per_axis) * self.geometry.in_per_group)

    def data_strides(self, spatial: Sequence[int], channels: int) -> tuple[list[int], int]:
        """Element strides of the spatial axes and of the channel axis for one item."""
        n = len(spatial)
        if self.channels_first:
            strides = [math.prod(spatial[a + 1 :]) for a in range(n)]
            return strides, math.prod(spatial)
        return [math.prod(spatial[a + 1 :]) * channels for a in range(n)], 1
