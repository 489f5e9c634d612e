"""Export a transposed convolution to dependency-free C99.

- :func:`export_c` writes one layer or a whole model (:func:`tconv.keras.load_model`) as a C
  project (library, weights, test harness with test vectors, Makefile, CMakeLists.txt, README)
  through one pipeline (:mod:`tconv.cexport.model`): a layer is the one-node graph
  :meth:`tconv.graph.Graph.of_layer`.  Options for both: ``style`` ``"fast"``,
  ``"reference"`` or ``"scatter"``, ``weights`` ``"inline"`` or ``"file"``.
- :func:`build_shared` compiles a layer's C into a shared library and loads it with ctypes
  (a :class:`CompiledLayer`, callable on NumPy arrays) — for ``method="native"`` and benchmarks.
- :func:`verify` builds and runs an export's harness; :func:`write_runtime` writes the runtime
  library ``tconv.h``/``tconv.c`` (one implementation for every layer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..graph import Graph
from ..kernels import STYLES, CompiledLayer, compile_c, find_compiler, verify
from . import project
from .build import build_shared
from .model import export_model_c, verify_model
from .runtime import write_runtime


def export_c(layer: Any, out_dir: str | Path, **options: Any) -> list[Path]:
    """Export ``layer`` as a C99 project into ``out_dir``; return the files written.

    A layer (:class:`tconv.layer.TransposedConv`) goes to :func:`tconv.cexport.project.export_c`
    (options ``name="tconv_layer"``, ``style``, ``input_shape``, ``weights``, ``batch``,
    ``seed``, ``test_input``, ``force``), which writes its one-node graph with the model
    pipeline (a quantized :class:`tconv.quant.QuantizedTransposeConv` there gets integer-only
    C); a whole model (:class:`tconv.keras.Model`, or a :class:`tconv.graph.Graph`) to
    :func:`tconv.cexport.model.export_model_c` (options ``name="model"``, ``style``,
    ``weights``, ``batch``, ``seed``, ``test_input``, ``force``).
    """
    if isinstance(layer, Graph) or isinstance(getattr(layer, "graph", None), Graph):
        return export_model_c(layer, out_dir, **options)
    return project.export_c(layer, out_dir, **options)


__all__ = [
    "STYLES",
    "CompiledLayer",
    "build_shared",
    "compile_c",
    "export_c",
    "export_model_c",
    "find_compiler",
    "verify",
    "verify_model",
    "write_runtime",
]
