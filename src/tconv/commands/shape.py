"""``tconv shape``: output shape, canonical crops and equivalent parameters in every convention."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .. import layouts
from .. import onnx as onnx_adapter
from .. import torch as torch_adapter
from ..layer import TransposedConv

EPILOG = """\
Shapes include the batch axis and use the convention's own data layout: keras (N, *spatial, C)
(or --data-format channels_first), torch and onnx (N, C, *spatial), jax (N, *spatial, C).

examples:
  tconv shape --convention keras --input-shape 1,8,8,1024 --kernel-size 3 --strides 2 \\
      --padding same --filters 512
  tconv shape --convention torch --input-shape 1,1024,8,8 --kernel-size 3 --strides 2 \\
      --padding 1 --output-padding 1 --filters 512
  tconv shape --convention onnx --input-shape 1,1024,8,8 --kernel-size 3 --strides 2 \\
      --auto-pad SAME_UPPER --filters 512 --json
  tconv shape --convention jax --input-shape 1,8,8,1024 --kernel-size 3 --strides 2 \\
      --padding 1:2,1:2 --filters 512
"""


OPTIONS = {
    "groups": ("torch", "onnx"),
    "padding": ("keras", "torch", "jax"),
    "output_padding": ("keras", "torch", "onnx"),
    "data_format": ("keras",),
    "output_size": ("torch",),
    "auto_pad": ("onnx",),
    "pads": ("onnx",),
    "output_shape": ("onnx",),
    "use_consistent_padding": ("jax",),
}
"""The conventions each convention-specific option applies to."""


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{name} must be comma-separated integers, got {text!r}") from None


def _per_axis(values: list[int] | None, rank: int, name: str, default: int) -> list[int]:
    if values is None:
        return [default] * rank
    if len(values) == 1:
        return values * rank
    if len(values) != rank:
        counts = "1 value" if rank == 1 else f"1 or {rank} values"
        raise ValueError(f"--{name} needs {counts} (one per spatial axis), got {values}")
    return values


def _jax_padding(text: str) -> Any:
    if ":" not in text:
        return text
    try:
        return [tuple(int(v) for v in pair.split(":")) for pair in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--padding for jax: 'SAME', 'VALID' or lo:hi,lo:hi, got {text!r}"
        ) from None


def _build(args: argparse.Namespace) -> tuple[TransposedConv, tuple[int, ...], dict[str, Any]]:
    """The convention's op (zero kernel) for the arguments, the input shape and its params."""
    shape = tuple(_ints(args.input_shape, "input-shape"))
    if not 3 <= len(shape) <= 5:
        raise ValueError(
            f"--input-shape needs batch, 1 to 3 spatial axes and channels, got {shape}"
        )
    rank = len(shape) - 2
    for option, conventions in OPTIONS.items():
        value = getattr(args, option)
        if value not in (None, False, "NOTSET", 1) and args.convention not in conventions:
            flag = "--" + option.replace("_", "-")
            raise ValueError(
                f"{flag} applies to {', '.join(conventions)} only, not {args.convention}"
            )
    first = args.convention in layouts.GROUPED or args.data_format == "channels_first"
    cin = shape[1] if first else shape[-1]
    if min(shape) < 0 or cin == 0:
        raise ValueError(
            f"--input-shape needs sizes >= 0 and at least one input channel, got {shape}"
        )
    filters = cin if args.filters is None else args.filters
    if filters < 1:
        raise ValueError(f"--filters must be positive, got {filters}")
    if args.groups < 1:
        raise ValueError(f"--groups must be positive, got {args.groups}")
    if cin % args.groups or filters % args.groups:
        raise ValueError(
            f"in_channels={cin} and filters={filters} must be divisible by groups={args.groups}"
        )
    k = _per_axis(_ints(args.kernel_size, "kernel-size"), rank, "kernel-size", 1)
    s = _per_axis(args.strides and _ints(args.strides, "strides"), rank, "strides", 1)
    d = _per_axis(args.dilation and _ints(args.dilation, "dilation"), rank, "dilation", 1)
    op_values = args.output_padding and _ints(args.output_padding, "output-padding")
    params: dict[str, Any]
    if args.convention == "keras":
        op = None if op_values is None else _per_axis(op_values, rank, "output-padding", 0)
        params = {"padding": args.padding or "valid", "output_padding": op}
    elif args.convention == "torch":
        params = {
            "padding": _per_axis(
                args.padding and _ints(args.padding, "padding"), rank, "padding", 0
            ),
            "output_padding": _per_axis(op_values, rank, "output-padding", 0),
            "output_size": args.output_size and _ints(args.output_size, "output-size"),
        }
    elif args.convention == "onnx":
        params = {
            "auto_pad": args.auto_pad,
            "pads": args.pads and _ints(args.pads, "pads"),
            "output_padding": op_values and _per_axis(op_values, rank, "output-padding", 0),
            "output_shape": args.output_shape and _ints(args.output_shape, "output-shape"),
        }
    else:
        params = {
            "padding": _jax_padding(args.padding or "VALID"),
            "use_consistent_padding": args.use_consistent_padding,
        }
    conv = layouts.op(
        args.convention,
        k,
        s,
        d,
        in_channels=cin,
        filters=filters,
        groups=args.groups,
        data_format=args.data_format,
        **params,
    )
    return conv, shape, params


def _layout(convention: str, n: int, spatial: Sequence[int], channels: int) -> list[int]:
    if convention in ("torch", "onnx"):
        return [n, channels, *spatial]
    return [n, *spatial, channels]


def describe(args: argparse.Namespace) -> dict[str, Any]:
    """Everything ``tconv shape`` prints, as a JSON-ready dict."""
    conv, shape, params = _build(args)
    if args.convention == "torch":
        out_shape = list(torch_adapter.check_input(conv, shape))
    else:
        out_shape = list(conv.output_shape(shape))
    spatial = conv.spatial_shape(shape)
    geometry = conv.geometry(spatial)
    crops = [(a.crop_start, a.crop_end) for a in geometry.axes]
    axes = [
        {
            "input": a.size,
            "kernel": a.kernel,
            "stride": a.stride,
            "dilation": a.dilation,
            "crop_start": a.crop_start,
            "crop_end": a.crop_end,
            "output": a.out,
        }
        for a in geometry.axes
    ]
    keras_note = None
    if max(conv.strides) > 1 and max(conv.dilation) > 1:
        keras_note = (
            "Keras layers refuse strides > 1 with dilation_rate > 1; keras.ops.conv_transpose "
            "takes them"
        )
    equivalents: dict[str, Any] = {}
    for target in layouts.CONVENTIONS:
        if target == args.convention:
            continue
        try:
            found = layouts.padding_for(
                target, crops, conv.kernel_size, conv.strides, conv.dilation
            )
        except layouts.NoEquivalentError as err:
            equivalents[target] = {"error": str(err)}
            continue
        entry: dict[str, Any] = {
            "parameters": found,
            "output_shape": _layout(target, shape[0], geometry.out_shape, conv.filters),
        }
        notes = []
        if conv.groups > 1 and target not in layouts.GROUPED:
            notes.append(
                f"{target} has no groups: use the dense kernel (tconv.layouts.convert_kernel("
                f"weight, {args.convention!r}, {target!r}, groups={conv.groups}))"
            )
        if target == "keras" and keras_note:
            notes.append(keras_note)
        if notes:
            entry["note"] = "; ".join(notes)
        equivalents[target] = entry
    info = {
        "convention": args.convention,
        "parameters": params,
        "input_shape": list(shape),
        "output_shape": out_shape,
        "in_channels": conv.in_channels,
        "filters": conv.filters,
        "groups": conv.groups,
        "axes": axes,
        "equivalents": equivalents,
    }
    if args.convention == "keras" and keras_note:
        info["note"] = keras_note
    return info


def _format(info: dict[str, Any]) -> str:
    lines = [
        f"convention:   {info['convention']}  {_params(info['parameters'])}",
        f"input shape:  {tuple(info['input_shape'])}",
        f"output shape: {tuple(info['output_shape'])}",
        *([f"note:         {info['note']}"] if "note" in info else []),
        "",
        "axis  input  kernel  stride  dilation  crop_start  crop_end  output",
    ]
    for i, a in enumerate(info["axes"]):
        lines.append(
            f"{i:>4}  {a['input']:>5}  {a['kernel']:>6}  {a['stride']:>6}  {a['dilation']:>8}  "
            f"{a['crop_start']:>10}  {a['crop_end']:>8}  {a['output']:>6}"
        )
    lines += [
        "",
        "crop_start/crop_end: rows cut from the start/end of the full scatter result "
        "(negative: zero rows added).",
        "",
        "equivalent parameters:",
    ]
    for target, entry in info["equivalents"].items():
        if "error" in entry:
            lines.append(f"  {target:<6} none: {entry['error']}")
            continue
        lines.append(
            f"  {target:<6} {_params(entry['parameters'])}  -> {tuple(entry['output_shape'])}"
        )
        if "note" in entry:
            lines.append(f"         note: {entry['note']}")
    return "\n".join(lines)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items() if v is not None)


def run(args: argparse.Namespace) -> int:
    info = describe(args)
    print(json.dumps(info, indent=2) if args.json else _format(info))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "shape",
        help="output shape, canonical crops and equivalent parameters in other conventions",
        description="Compute the output shape of a transposed convolution given in one\n"
        "convention (keras, torch, onnx, jax), the canonical crop per axis, and the parameters\n"
        "that give the same result in the other conventions (or why none exist).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--convention",
        required=True,
        choices=layouts.CONVENTIONS,
        help="whose parameters and data layout the other options use",
    )
    parser.add_argument(
        "--input-shape", required=True, metavar="N,...", help="input shape with batch axis"
    )
    parser.add_argument(
        "--kernel-size", required=True, metavar="K[,K...]", help="one size, or one per axis"
    )
    parser.add_argument("--strides", "--stride", metavar="S[,S...]", help="default 1")
    parser.add_argument("--dilation", metavar="D[,D...]", help="dilation(_rate)/dilations")
    parser.add_argument("--filters", type=int, help="output channels (default: input channels)")
    parser.add_argument("--groups", type=int, default=1, help="torch/onnx groups (default 1)")
    parser.add_argument(
        "--padding",
        help="keras: same|valid; torch: P[,P...]; jax: SAME|VALID|lo:hi,lo:hi",
    )
    parser.add_argument(
        "--output-padding",
        metavar="OP[,OP...]",
        help="keras/torch/onnx output_padding (keras default None)",
    )
    parser.add_argument("--data-format", choices=["channels_last", "channels_first"], help="keras")
    parser.add_argument("--output-size", metavar="O[,O...]", help="torch forward(output_size=)")
    parser.add_argument(
        "--auto-pad", default="NOTSET", choices=onnx_adapter.AUTO_PADS, help="onnx auto_pad"
    )
    parser.add_argument("--pads", metavar="B1,..,E1,..", help="onnx pads (begins, then ends)")
    parser.add_argument("--output-shape", metavar="O[,O...]", help="onnx output_shape")
    parser.add_argument(
        "--use-consistent-padding", action="store_true", help="jax: PyTorch-like explicit pairs"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)
