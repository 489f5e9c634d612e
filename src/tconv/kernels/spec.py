"""Everything the C generators need to know about one layer at one input shape.

A :class:`Spec` holds a canonical geometry, the weights in the canonical layout, and the memory
layout of the data as C sees it: flat float arrays, item after item, channels last or first.
It knows nothing of layer objects: :func:`tconv.cexport.spec.from_layer` builds one from a
:class:`tconv.layer.TransposedConv`, and ``method="native"`` builds one from a geometry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..geometry import Axis, Geometry

C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch typedef "
    "union unsigned void volatile while _Bool _Complex _Imaginary main".split()
)
C_INT_MAX = 2**31 - 1
"""The most elements one item may have in the generated C (it indexes within an item with
``int``, 32 bits on every target tconv knows, microcontrollers included)."""
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
    out_row: int = 0
    """Channels-last only: floats between consecutive output pixels when the output is a slice
    of a wider tensor (a model's concatenation); 0: ``out_channels`` (contiguous)."""

    def __post_init__(self) -> None:
        for what, count in (("input", self.in_count), ("output", self.out_count)):
            if count > C_INT_MAX:
                raise ValueError(
                    f"one {what} item of {self.name!r} holds {count} floats "
                    f"({'x'.join(map(str, self.in_item if what == 'input' else self.out_item))}); "
                    f"the generated C indexes an item with int: at most {C_INT_MAX}"
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
