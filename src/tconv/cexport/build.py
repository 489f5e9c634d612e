"""A layer's C compiled into a shared library and loaded with ctypes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..kernels.build import FAST_FLAGS, CompiledLayer, build_spec
from ..layer import TransposedConv
from .spec import from_layer


def build_shared(
    layer: TransposedConv,
    input_shape: Sequence[int] | None = None,
    *,
    style: str = "fast",
    cflags: Sequence[str] = FAST_FLAGS,
    openmp: bool = False,
    cc: str | None = None,
    cache_dir: str | Path | None = None,
    name: str = "tconv_layer",
) -> CompiledLayer:
    """Generate ``style`` C for ``layer`` at ``input_shape`` (one item, the layer's layout),
    compile it as a shared library and load it: :func:`tconv.kernels.build_spec` on the
    layer's spec."""
    spec = from_layer(layer, input_shape, name)
    return build_spec(spec, style=style, cflags=cflags, openmp=openmp, cc=cc, cache_dir=cache_dir)
