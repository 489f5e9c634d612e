"""The Keras convention: ``keras.ops.conv_transpose``, the ``Conv1D/2D/3DTranspose`` layers, and
Keras model files read without TensorFlow.

- :mod:`tconv.keras.layers`: the padding rule (:func:`crops`), the functional op and the layers;
- :mod:`tconv.keras.files`: :func:`load_layers` for ``.keras`` and ``.h5`` files;
- :mod:`tconv.keras.model`: :func:`load_model`, the whole model run in NumPy.
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
from .model import SUPPORTED_CLASSES, Layer, Model, load_model

__all__ = [
    "LAYER_CLASSES",
    "PADDINGS",
    "SUPPORTED_CLASSES",
    "Layer",
    "Model",
    "BaseConvTranspose",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "check_output_padding",
    "conv_transpose",
    "crop_rule",
    "crops",
    "load_layers",
    "load_model",
    "output_length",
    "standardize_data_format",
    "standardize_output_padding",
    "standardize_padding",
    "standardize_tuple",
]
