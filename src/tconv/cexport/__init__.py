"""Export a transposed convolution to dependency-free C99.

- :func:`export_c` writes one layer as a C project (library, weights, test harness with test
  vectors, Makefile, CMakeLists.txt, README) in style ``"fast"``, ``"reference"`` or
  ``"scatter"``.
- :func:`build_shared` compiles a layer's C into a shared library and loads it with ctypes
  (a :class:`CompiledLayer`, callable on NumPy arrays) — for ``method="native"`` and benchmarks.
- :func:`verify` builds and runs an export's harness; :func:`write_runtime` writes the runtime
  library ``tconv.h``/``tconv.c`` (one implementation for every layer).
"""

from __future__ import annotations

from ..kernels import STYLES, CompiledLayer, compile_c, find_compiler, verify
from .build import build_shared
from .project import export_c
from .runtime import write_runtime

__all__ = [
    "STYLES",
    "CompiledLayer",
    "build_shared",
    "compile_c",
    "export_c",
    "find_compiler",
    "verify",
    "write_runtime",
]
