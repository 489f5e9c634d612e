"""The Keras convention: ``keras.ops.conv_transpose``, the ``Conv1D/2D/3DTranspose`` layers, and
Keras model files read without TensorFlow.

- :mod:`tconv.keras.layers`: the padding rule (:func:`crops`), the functional op and the layers;
- :mod:`tconv.keras.files`: :func:`load_layers` for ``.keras`` and ``.h5`` files.
"""

from __future__ import annotations

from .files import load_layers
from .layers import (
    LAYER_CLASSES,
    PADDINGS,
    BaseConvTranspose,
    Conv1DTranspose,
    Conv2DTranspose,
    Conv3DTranspose,
    check_output_padding,
    conv_transpose,
    crop_rule,
    crops,
    output_length,
    standardize_data_format,
    standardize_output_padding,
    standardize_padding,
    standardize_tuple,
)

__all__ = [
    "LAYER_CLASSES",
    "PADDINGS",
    "BaseConvTranspose",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "check_output_padding",
    "conv_transpose",
    "crop_rule",
    "crops",
    "load_layers",
    "output_length",
    "standardize_data_format",
    "standardize_output_padding",
    "standardize_padding",
    "standardize_tuple",
]
