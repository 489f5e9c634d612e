"""tconv: transposed convolution exactly as Keras, PyTorch, ONNX and JAX compute it.

The core is one canonical geometry (:mod:`tconv.geometry`), a reference implementation and a
fast path (:mod:`tconv.ops`), and the op object every adapter produces
(:class:`tconv.layer.TransposedConv`).  The framework adapters live in :mod:`tconv.keras`,
:mod:`tconv.torch`, :mod:`tconv.onnx` and :mod:`tconv.jax`.
"""

from .geometry import Axis, Geometry
from .layer import TransposedConv

__version__ = "0.1.0"

__all__ = ["Axis", "Geometry", "TransposedConv", "__version__"]
