"""C kernels generated from a canonical geometry, and their compilation.

Below the layer objects: a :class:`~tconv.kernels.spec.Spec` is a geometry with its weights
and data layout, :mod:`~tconv.kernels.emit` writes its C in three styles, and
:mod:`~tconv.kernels.build` compiles C with the system compiler (a checked harness, or a
shared library called through ctypes).  :mod:`tconv.cexport` builds on it for layers and
projects; ``method="native"`` of :mod:`tconv.ops` uses it directly.
"""

from __future__ import annotations

from .build import CompiledLayer, build_spec, compile_c, find_compiler, verify
from .emit import STYLES
from .spec import Spec, check_name

__all__ = [
    "STYLES",
    "CompiledLayer",
    "Spec",
    "build_spec",
    "check_name",
    "compile_c",
    "find_compiler",
    "verify",
]
