"""TFLite: ``TRANSPOSE_CONV`` read from ``.tflite`` files (no TensorFlow) and computed exactly.

- :func:`load_layers` -- every ``TRANSPOSE_CONV`` of a file, by its output tensor's name:
  :class:`tconv.quant.QuantizedTransposeConv` (int8, 16x8; bit-exact with TFLite's reference
  kernel) or :class:`tconv.layer.TransposedConv` (float32, the float engine).
- :func:`transpose_conv` -- the quantized op on explicit parameters.
- :func:`read_model` -- the parsed file (:mod:`tconv.tflite.model`), read by a bounds-checked
  flatbuffer reader (:mod:`tconv.tflite.flatbuffer`).
"""

from __future__ import annotations

from ..quant import QuantizedTransposeConv
from .layers import TFLITE, axis_crops, describe, geometry, load_layers, transpose_conv
from .model import Model, read_model

__all__ = [
    "TFLITE",
    "Model",
    "QuantizedTransposeConv",
    "axis_crops",
    "describe",
    "geometry",
    "load_layers",
    "read_model",
    "transpose_conv",
]
