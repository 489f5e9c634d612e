"""``tconv inspect MODEL``: the transposed convolutions of a Keras model file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import keras


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="list the transposed convolutions of a Keras .keras/.h5 model file",
        description="Read a Keras 3 .keras archive or a legacy HDF5 .h5 model (Keras 3 or "
        "tf.keras 2.x) without TensorFlow and print every Conv1D/2D/3DTranspose layer (nested "
        "models included): shapes (one item, no batch axis, where the file records them), "
        "filters, kernel, strides, padding, output_padding, dilation, activation, parameters.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras or .h5 Keras model file")
    parser.add_argument("--json", action="store_true", help="print the layers as JSON")
    parser.set_defaults(func=main)


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


def _text(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, list):
        return "x".join(map(str, value)) if value else "()"
    return str(value)


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


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table (``?`` where the file does not record a shape)."""
    cells = [[title for _, title in COLUMNS]]
    for row in rows:
        cells.append(
            [
                "-" if key == "output_padding" and row[key] is None else _text(row[key])
                for key, _ in COLUMNS
            ]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        layers = keras.load_layers(args.model)
    except ImportError as err:  # h5py missing: the message names the extra
        raise RuntimeError(str(err)) from err
    rows = [describe(name, layer) for name, layer in layers.items()]
    if args.json:
        print(json.dumps({"model": args.model, "layers": rows}, indent=2))
        return 0
    print(table(rows))
    total = sum(row["params"] for row in rows)
    print(
        f"\n{len(rows)} transposed convolution layer(s), {total:,} parameters; "
        "shapes are one item (no batch axis), ? where the file does not record them"
    )
    return 0
