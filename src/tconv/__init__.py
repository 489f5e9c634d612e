"""tconv: transposed convolution exactly as Keras, PyTorch, ONNX and JAX compute it.

The core is one canonical geometry (:mod:`tconv.geometry`), a reference implementation and a
fast path (:mod:`tconv.ops`), and the op object every adapter produces
(:class:`tconv.layer.TransposedConv`).  The framework adapters live in :mod:`tconv.keras`,
:mod:`tconv.torch`, :mod:`tconv.onnx` and :mod:`tconv.jax`; the explanation in
:mod:`tconv.explanation`, the C export in :mod:`tconv.cexport`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .geometry import Axis, Geometry
from .layer import TransposedConv

__version__ = "0.1.0"

# Loaded on first use, so that `import tconv` stays light (no framework, no matplotlib):
# functions and classes by name, and the public modules themselves (`tconv.keras.Conv2DTranspose`
# works after a plain `import tconv`, as `jax.lax` does).
_LAZY = {
    "explain": "tconv.explanation",
    "Explanation": "tconv.explanation",
    "export_c": "tconv.cexport",
}
_MODULES = (
    "activations",
    "cexport",
    "explanation",
    "geometry",
    "graph",
    "jax",
    "kernels",
    "keras",
    "layer",
    "layouts",
    "onnx",
    "ops",
    "quant",
    "tflite",
    "torch",
)

__all__ = ["Axis", "Geometry", "TransposedConv", "__version__", *_LAZY, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"tconv.{name}")
    raise AttributeError(f"module 'tconv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_MODULES})
