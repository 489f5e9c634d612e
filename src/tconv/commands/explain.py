"""``tconv explain``: how one output element of a transposed convolution is computed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

DESCRIPTION = """\
Explain one output element of a Keras Conv1D/2D/3DTranspose or an ONNX ConvTranspose: every
product that enters it, the taps grouped by kernel position, the crop/stride arithmetic that
picks them, bias, activation and the role of the filter.  The layer comes from a model file
(MODEL --layer NAME: a layer of a Keras .keras/.h5 model, or a ConvTranspose node of an ONNX
.onnx model, explained in ONNX's layouts X (N, C, *spatial) and W (C, M/group, *k); .onnx
needs the extra tconv[onnx]) or from Keras-style parameters (--input-shape 8,8,1024
--filters 512 --kernel-size 3 --strides 2 --padding same) with seeded random weights (--seed)
or --weights w.npz (kernel, bias).
Optional pictures (--png/--svg), animations (--gif/--gather-gif) and an interactive page
(--html) need the extra tconv[plot] (the page does not).

examples:
  tconv explain --input-shape 8,8,1024 --filters 512 --strides 2 --padding same --at 0,5,4,17
  tconv explain model.keras --layer up1 --input x.npy --html up1.html --png up1.png
  tconv explain model.onnx --layer up1 --at 0,3,5,5
  tconv explain --input-shape 3,16 --filters 4 --kernel-size 4 --strides 2 \\
      --data-format channels_first --json"""


def _optional(text: str | None, name: str) -> tuple[int, ...] | None:
    return None if text is None else _ints(text, name)


def _keras_arg(text: str, name: str) -> int | tuple[int, ...]:
    """One int (Keras repeats it per axis) or a tuple."""
    values = _ints(text, name)
    return values[0] if len(values) == 1 else values


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in str(text).replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}")
    return values


def add_layer_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that describe a layer (shared with ``tconv demo``)."""
    g = parser.add_argument_group("layer by Keras parameters (when no MODEL is given)")
    g.add_argument(
        "--input-shape", metavar="SHAPE", help="one input item, no batch axis, e.g. 8,8,1024"
    )
    g.add_argument("--filters", type=int, metavar="N", help="output channels (e.g. 512)")
    g.add_argument("--kernel-size", default="3", metavar="K", help="e.g. 3 or 3,3 (default 3)")
    g.add_argument("--strides", default="1", metavar="S", help="e.g. 2 or 2,2 (default 1)")
    g.add_argument(
        "--padding", default="valid", metavar="{valid,same}", help="'valid' (default) or 'same'"
    )
    g.add_argument(
        "--output-padding", metavar="P", help="e.g. 1 or 1,0 (default: None, Keras infers)"
    )
    g.add_argument("--dilation-rate", default="1", metavar="D", help="default 1")
    g.add_argument(
        "--data-format", metavar="FORMAT", help="channels_last (default) or channels_first"
    )
    g.add_argument("--activation", metavar="NAME", help="Keras activation name (default: linear)")
    g.add_argument(
        "--use-bias", action=argparse.BooleanOptionalAction, default=True, help="default: yes"
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random kernel (Keras' glorot_uniform), bias N(0, 0.1²) and input N(0, 1) from "
        "this seed (default 0)",
    )
    g.add_argument(
        "--weights", metavar="NPZ", help=".npz with 'kernel' (Keras layout) and optional 'bias'"
    )
    m = parser.add_argument_group("layer from a model file")
    m.add_argument("--layer", metavar="NAME", help="name of the transposed convolution in MODEL")
    parser.add_argument(
        "--input",
        metavar="NPY",
        help=".npy input in the layer's layout (batch axis optional; without --input-shape "
        "the file must have it); with MODEL --layer NAME, an input of the model's input shape "
        "is the model's input: the layer explains what the model feeds it",
    )


def _from_model(path: str, name: str | None) -> Any:
    from .inspect import load_layers

    layers = load_layers(path)
    if name is None:
        if len(layers) == 1:
            return next(iter(layers.values()))
        raise ValueError(
            f"{path} has {len(layers)} transposed convolutions; choose one with --layer: "
            f"{', '.join(layers)}"
        )
    if name not in layers:
        raise ValueError(
            f"no transposed convolution named {name!r} in {path}; the ones there are: "
            f"{', '.join(layers)}"
        )
    return layers[name]


def _from_parameters(args: argparse.Namespace, rng: np.random.Generator) -> Any:
    from .. import keras

    shape = _optional(args.input_shape, "--input-shape")
    if shape is None:
        raise ValueError("give --input-shape (one input item, e.g. 8,8,1024) or a MODEL file")
    if min(shape) < 0:
        raise ValueError(f"--input-shape {args.input_shape}: sizes must be >= 0")
    if args.filters is None:
        raise ValueError("give --filters (the number of output channels) or a MODEL file")
    rank = len(shape) - 1
    classes = {1: keras.Conv1DTranspose, 2: keras.Conv2DTranspose, 3: keras.Conv3DTranspose}
    if rank not in classes:
        raise ValueError(
            f"--input-shape {args.input_shape} must have 2 to 4 entries (1 to 3 spatial axes "
            "and the channels)"
        )
    layer = classes[rank](
        args.filters,
        _keras_arg(args.kernel_size, "--kernel-size"),
        strides=_keras_arg(args.strides, "--strides"),
        padding=args.padding,
        output_padding=None
        if args.output_padding is None
        else _keras_arg(args.output_padding, "--output-padding"),
        data_format=args.data_format,
        dilation_rate=_keras_arg(args.dilation_rate, "--dilation-rate"),
        activation=args.activation,
        use_bias=args.use_bias,
    )
    layer.input_shape = shape
    if args.weights:
        weights = _weights(args.weights, args.use_bias)
        try:
            layer.set_weights(weights)
        except ValueError as err:
            raise ValueError(f"--weights {args.weights}: {err}") from None
    else:
        layer.build((1, *shape), seed=args.seed)
        if layer.use_bias:
            kernel = layer.get_weights()[0]
            layer.set_weights([kernel, rng.normal(0, 0.1, layer.filters)])
    return layer


def _npy(path: str, option: str, suffix: str) -> Any:
    """``np.load`` of a user's file, its failures as one-line errors naming the option."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{option} {path}: no such file") from None
    except (OSError, ValueError, EOFError):
        raise ValueError(f"{option} {path}: not a NumPy {suffix} file") from None
    wanted = np.lib.npyio.NpzFile if suffix == ".npz" else np.ndarray
    if not isinstance(data, wanted):
        raise ValueError(f"{option} {path}: expected a NumPy {suffix} file")
    return data


def _weights(path: str, use_bias: bool) -> list[np.ndarray]:
    """``[kernel]`` or ``[kernel, bias]`` from an ``.npz`` with those names."""
    with _npy(path, "--weights", ".npz") as data:
        keys = sorted(data.keys())
        if "kernel" not in keys:
            raise ValueError(
                f"--weights {path}: no array named 'kernel' (Keras layout "
                f"(*kernel_size, filters, in_channels)); the file has {keys}"
            )
        if use_bias and "bias" not in keys:
            raise ValueError(
                f"--weights {path}: no array named 'bias'; add one or pass --no-use-bias "
                f"(the file has {keys})"
            )
        return [data["kernel"], data["bias"]] if use_bias else [data["kernel"]]


def _input(path: str, layer: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    """The ``--input`` array (batch axis added when missing), checked against the layer and
    the item ``shape`` of ``--input-shape`` (when given)."""
    x = _npy(path, "--input", ".npy")
    if x.dtype.kind != "f":
        raise ValueError(
            f"--input {path}: dtype {x.dtype} is not floating point; the layer takes float16, "
            "float32 or float64 data (convert it with x.astype('float32'))"
        )
    if x.ndim == layer.rank + 1:
        x = x[None]
    try:
        layer.spatial_shape(x.shape)
    except ValueError as err:
        raise ValueError(f"--input {path}: {err}") from None
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"--input {path} holds items of shape {tuple(x.shape[1:])} but --input-shape is "
            f"{','.join(map(str, shape))}: give matching shapes or leave --input-shape out"
        )
    return x


def load(args: argparse.Namespace, model: str | None) -> tuple[Any, np.ndarray]:
    """The layer and the input (``float32``, batch axis included) the options describe."""
    if args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {args.seed}")
    rng = np.random.default_rng(args.seed)
    if args.input and not model and args.input_shape is None:
        # Without --input-shape the file gives it: (batch, *spatial, channels).
        args.input_shape = ",".join(map(str, _npy(args.input, "--input", ".npy").shape[1:]))
    layer = _from_model(model, args.layer) if model else _from_parameters(args, rng)
    fed = None
    if args.input and model and args.layer and not model.lower().endswith((".onnx", ".tflite")):
        from .model import layer_input

        fed = layer_input(model, args.layer, _npy(args.input, "--input", ".npy"))
    if fed is not None:
        x = fed
    elif args.input:
        x = _input(args.input, layer, None if model else layer.input_shape)
    else:
        if layer.input_shape is None:
            raise ValueError(
                f"the model file does not record the input shape of layer "
                f"{getattr(layer, 'name', '')!r}: give --input x.npy"
            )
        x = rng.standard_normal((1, *layer.input_shape)).astype(np.float32)
    return layer, x


def central(layer: Any, x: np.ndarray) -> tuple[int, ...]:
    """A central output element: batch 0, middle position, middle filter."""
    shape = layer.output_shape(x.shape)
    return (0, *(n // 2 for n in shape[1:]))


def parse_at(text: str | None, layer: Any, x: np.ndarray) -> tuple[int, ...]:
    at = _optional(text, "--at")
    return central(layer, x) if at is None else at


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="explain how one output element of a transposed convolution is computed",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", nargs="?", metavar="MODEL", help="a .keras, .h5 or .onnx model file"
    )
    add_layer_arguments(parser)
    parser.add_argument(
        "--at",
        metavar="INDEX",
        help="output index in the layer's layout, e.g. n,oy,ox,f (channels_last) or n,f,oy,ox "
        "(channels_first); negative indices count from the end (write --at=-1,0,0,0); "
        "default: a central element",
    )
    parser.add_argument("--all", action="store_true", help="print every product, not a summary")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.add_argument("--png", metavar="PATH", help="write the element's picture (PNG)")
    parser.add_argument("--svg", metavar="PATH", help="write the element's picture (SVG)")
    parser.add_argument("--gif", metavar="PATH", help="write the scatter animation (GIF)")
    parser.add_argument("--gather-gif", metavar="PATH", help="write the gather animation (GIF)")
    parser.add_argument("--html", metavar="PATH", help="write the interactive page (HTML)")
    parser.set_defaults(func=main)


def write_outputs(e: Any, args: argparse.Namespace) -> list[str]:
    """The files the options ask for; returns their descriptions."""
    from ..explanation import QuantizedExplanation, page

    written = []
    wants_plots = args.png or args.svg or args.gif or args.gather_gif
    if isinstance(e, QuantizedExplanation) and (args.html or wants_plots):
        raise ValueError(
            "--html/--png/--svg/--gif/--gather-gif draw float layers; a quantized op is "
            "explained as text or --json"
        )
    if args.html:
        page.write(args.html, e.layer, e.x, e.at)
        written.append(f"interactive page: {args.html}")
    if wants_plots:
        from ..explanation import plots

        for path in (args.png, args.svg):
            if path:
                plots.element_figure(e, path)
                written.append(f"picture of {e.at_text}: {path}")
        if args.gif:
            plots.scatter_gif(e, args.gif)
            written.append(f"scatter animation: {args.gif}")
        if args.gather_gif:
            plots.gather_gif(e, args.gather_gif)
            written.append(f"gather animation: {args.gather_gif}")
    return written


def main(args: argparse.Namespace) -> int:
    layer, x = load(args, args.model)
    e = explain_at(layer, x, args.at)
    written = write_outputs(e, args)
    if args.json:
        print(e.to_json())
        for line in written:
            print(f"wrote {line}", file=sys.stderr)
    else:
        print(e.to_text(all=args.all))
        for line in written:
            print(f"wrote {line}")
    return 0


def explain_at(layer: Any, x: np.ndarray, at: str | None) -> Any:
    """:func:`tconv.explain` at the ``--at`` text (an out-of-range index is a ValueError here,
    so that the command line prints it as an error)."""
    from ..explanation import explain

    try:
        return explain(layer, x, parse_at(at, layer, x))
    except IndexError as err:
        raise ValueError(f"--at: {err}") from None
