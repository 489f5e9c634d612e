"""``tconv inspect MODEL``: the transposed convolutions of a Keras, ONNX or TFLite model file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import keras


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="list the transposed convolutions of a Keras .keras/.h5 or an ONNX .onnx model file",
        description="Read a Keras 3 .keras archive or a legacy HDF5 .h5 model (Keras 3 or "
        "tf.keras 2.x) without TensorFlow and print every Conv1D/2D/3DTranspose layer (nested "
        "models included): shapes (one item, no batch axis, where the file records them), "
        "filters, kernel, strides, padding, output_padding, dilation, activation, parameters.  "
        "Or read an ONNX .onnx model (needs the extra tconv[onnx]) and print every "
        "ConvTranspose node: shapes (C, *spatial, no batch axis, where the model records or "
        "infers them), filters, kernel, strides, auto_pad, pads, the canonical crops (rows cut "
        "from the start and end of each axis, where the input shape is known), "
        "output_padding, dilations, group, parameters.  Or read a TFLite .tflite flatbuffer "
        "(no TensorFlow) and print every TRANSPOSE_CONV: float32, int8 or 16x8, shapes, "
        "filter (F, kh, kw, C), strides, padding, fused activation, quantization.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras, .h5, .onnx or .tflite model file")
    parser.add_argument("--json", action="store_true", help="print the layers as JSON")
    parser.add_argument(
        "--all",
        action="store_true",
        help="every layer of a Keras model (name, class, output shape, parameters, "
        "multiply-adds) and the memory plan of its C export",
    )
    parser.set_defaults(func=main)


def is_onnx(path: str) -> bool:
    """Whether ``path`` names an ONNX model (by its ``.onnx`` suffix)."""
    return path.lower().endswith(".onnx")


def is_tflite(path: str) -> bool:
    """Whether ``path`` names a TFLite model (by its ``.tflite`` suffix)."""
    return path.lower().endswith(".tflite")


def load_layers(path: str) -> dict[str, Any]:
    """The transposed convolutions of a Keras (``.keras``/``.h5``), ONNX (``.onnx``) or TFLite
    (``.tflite``: quantized ones are :class:`tconv.quant.QuantizedTransposeConv`) model file,
    ``{name: op}``, in the file's layouts."""
    if is_tflite(path):
        from .. import tflite

        return tflite.load_layers(path)
    if is_onnx(path):
        from .. import onnx

        return onnx.load_layers(path)
    return dict(keras.load_layers(path))


def describe(name: str, layer: keras.BaseConvTranspose) -> dict[str, Any]:
    """One layer as a JSON-ready dict (shapes are one item, no batch axis, or None)."""
    return {
        "name": name,
        "class": type(layer).__name__,
        "input_shape": None if layer.input_shape is None else list(layer.input_shape),
        "output_shape": None if layer.input_shape is None else list(layer.output_item_shape or ()),
        "filters": layer.filters,
        "kernel_size": list(layer.kernel_size),
        "in_channels": layer.in_channels,
        "strides": list(layer.strides),
        "padding": layer.padding,
        "output_padding": None if layer.output_padding is None else list(layer.output_padding),
        "dilation_rate": list(layer.dilation_rate),
        "data_format": layer.data_format,
        "activation": layer.activation,
        "use_bias": layer.use_bias,
        "params": layer.count_params(),
    }


def describe_onnx(name: str, node: Any) -> dict[str, Any]:
    """One ``ConvTranspose`` node (a :class:`tconv.onnx.Node`) as a JSON-ready dict: shapes
    ``(C, *spatial)`` (no batch axis) or None, attributes with ONNX's defaults filled in, and
    ``crops``, the canonical ``[crop_start, crop_end]`` per spatial axis (None without an input
    shape)."""
    conv, attrs = node.op, node.attributes
    rank = conv.rank
    shape = conv.input_shape
    return {
        "name": name,
        "class": "ConvTranspose",
        "input_shape": None if shape is None else list(shape),
        "output_shape": None if shape is None else list(conv.output_shape((1, *shape))[1:]),
        "filters": conv.filters,
        "kernel_size": list(conv.kernel_size),
        "in_channels": conv.in_channels,
        "strides": list(conv.strides),
        "auto_pad": attrs.get("auto_pad", "NOTSET"),
        "pads": list(attrs.get("pads", [0] * (2 * rank))),
        "crops": None if shape is None else [list(c) for c in conv.crops(shape[1:])],
        "output_padding": list(attrs.get("output_padding", [0] * rank)),
        "output_shape_attribute": attrs.get("output_shape"),
        "dilations": list(conv.dilation),
        "group": conv.groups,
        "params": conv.kernel.size + (0 if conv.bias is None else conv.bias.size),
    }


def _text(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, list):
        if value and isinstance(value[0], list):  # crops: one (start, end) pair per axis
            return "x".join(f"({start},{end})" for start, end in value)
        return "x".join(map(str, value)) if value else "()"
    return str(value)


def _cell(key: str, value: Any) -> str:
    if key == "output_padding" and value is None:
        return "-"
    if key == "pads":  # ONNX's [x1_begin, x2_begin, ..., x1_end, x2_end]
        return ",".join(map(str, value))
    return _text(value)


COLUMNS = (
    ("name", "name"),
    ("class", "layer"),
    ("input_shape", "input"),
    ("output_shape", "output"),
    ("filters", "filters"),
    ("kernel_size", "kernel"),
    ("strides", "strides"),
    ("padding", "padding"),
    ("output_padding", "out_pad"),
    ("dilation_rate", "dilation"),
    ("activation", "activation"),
    ("params", "params"),
)
ONNX_COLUMNS = (
    ("name", "name"),
    ("input_shape", "input"),
    ("output_shape", "output"),
    ("filters", "filters"),
    ("kernel_size", "kernel"),
    ("strides", "strides"),
    ("auto_pad", "auto_pad"),
    ("pads", "pads"),
    ("crops", "crops"),
    ("output_padding", "out_pad"),
    ("dilations", "dilation"),
    ("group", "group"),
    ("params", "params"),
)


TFLITE_COLUMNS = (
    ("name", "name"),
    ("kind", "kind"),
    ("input", "input"),
    ("output", "output"),
    ("filter", "filter"),
    ("strides", "strides"),
    ("padding", "padding"),
    ("activation", "activation"),
    ("filter_scales", "scales"),
    ("params", "params"),
)


def table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...] = COLUMNS) -> str:
    """The rows as an aligned text table (``?`` where the file does not record a shape)."""
    cells = [[title for _, title in columns]]
    for row in rows:
        cells.append([_cell(key, row[key]) for key, _ in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.all:
        if is_onnx(args.model) or is_tflite(args.model):
            raise ValueError("--all reads Keras .keras/.h5 models (ONNX, TFLite graphs: not yet)")
        from .model import inspect_all

        return inspect_all(args)
    if is_tflite(args.model):
        from .. import tflite

        rows = tflite.describe(args.model)
        if args.json:
            print(json.dumps({"model": args.model, "layers": rows}, indent=2))
        else:
            print(table(rows, TFLITE_COLUMNS))
            total = sum(row["params"] for row in rows)
            print(f"\n{len(rows)} TRANSPOSE_CONV op(s), {total:,} parameters; shapes NHWC")
        return 0
    try:
        if is_onnx(args.model):
            from .. import onnx

            nodes = onnx.load_nodes(args.model)
            rows = [describe_onnx(name, node) for name, node in nodes.items()]
        else:
            layers = keras.load_layers(args.model)
            rows = [describe(name, layer) for name, layer in layers.items()]
    except ImportError as err:  # h5py or onnx missing: the message names the extra
        raise RuntimeError(str(err)) from err
    if args.json:
        print(json.dumps({"model": args.model, "layers": rows}, indent=2))
        return 0
    print(table(rows, ONNX_COLUMNS if is_onnx(args.model) else COLUMNS))
    total = sum(row["params"] for row in rows)
    kind = "ConvTranspose node(s)" if is_onnx(args.model) else "transposed convolution layer(s)"
    print(
        f"\n{len(rows)} {kind}, {total:,} parameters; "
        "shapes are one item (no batch axis), ? where the file does not record them"
    )
    return 0
