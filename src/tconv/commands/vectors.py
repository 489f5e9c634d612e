"""``tconv vectors``: test vectors (input, kernel, bias, expected output) for your own code."""

from __future__ import annotations

import argparse
import json

from . import explain

DESCRIPTION = """\
Write test vectors to check your own C, HLS or Verilog implementation against tconv: for each
case the input, kernel (in the framework's layout), bias and expected output as .npy and raw
little-endian float32 .bin, a manifest.json (geometry with the crop per side, layouts, shapes)
and tconv_vectors.h with the arrays of the small cases.  The layer comes from a model file
(MODEL --layer NAME), Keras-style parameters (--input-shape 8,8,1024 --filters 512 ...), or
--suite edge: a curated set of tricky geometries (stride > kernel, even kernels with same,
output_padding, dilation, 1-pixel inputs, single channels, batch > 1, channels_first, 1D, 3D,
groups)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "vectors",
        help="write test vectors (inputs, weights, expected outputs, C header) for a layer",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", nargs="?", metavar="MODEL", help="a .keras, .h5, .onnx or .tflite model file"
    )
    explain.add_layer_arguments(parser)
    v = parser.add_argument_group("vectors")
    v.add_argument("--out", metavar="DIR", required=True, help="folder to write (new or empty)")
    v.add_argument("--suite", choices=("edge",), help="the curated edge cases instead of a layer")
    v.add_argument(
        "--name", default="layer", help="the case name for a single layer (default layer)"
    )
    v.add_argument("--force", action="store_true", help="write into a non-empty folder")
    v.add_argument("--json", action="store_true", help="print the manifest's case list as JSON")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..cexport import vectors

    if args.suite:
        cases = vectors.edge_suite()
    else:
        layer, x = explain.load(args, args.model)
        if not hasattr(layer, "framework"):  # quantized (a .tflite op): integer vectors
            from ..cexport import qvectors

            files = qvectors.write_vectors(args.name, layer, x, args.out, force=args.force)
            manifest = json.loads(files[-1].read_text())
            if args.json:
                print(json.dumps(manifest["cases"], indent=2))
            else:
                print(f"wrote {len(files)} files to {args.out}: {args.name} ({layer!r})")
            return 0
        cases = [(args.name, layer, x)]
    files = vectors.write_vectors(cases, args.out, force=args.force)
    if args.json:
        manifest = json.loads((files[-2]).read_text())
        print(json.dumps(manifest["cases"], indent=2))
        return 0
    print(f"wrote {len(cases)} case(s), {len(files)} files to {args.out}:")
    for name, layer, x in cases:
        out = layer.output_shape(x.shape)
        print(
            f"  {name}: {tuple(x.shape)} -> {tuple(out)} ({layer.framework}, {layer.data_format})"
        )
    return 0
