"""``tconv export-c``: write a layer as C99 (or the runtime library), optionally verified."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from typing import Any

import numpy as np

from . import explain

DESCRIPTION = """\
Write a transposed convolution as a small C99 project: NAME.h, NAME.c, NAME_weights.c (exact
hex-float weights, or a loader for NAME_weights.bin with --weights-file), test_NAME.c with test
vectors from tconv's engine, Makefile, CMakeLists.txt and README.md.  The layer comes from a
model file (MODEL --layer NAME) or Keras-style parameters (--input-shape 8,8,1024 --filters 512
--kernel-size 3 --strides 2 --padding same) with --seed or --weights w.npz.  --verify compiles
and runs the test ($CC, cc, gcc or clang) and compares with Keras when it is installed.
`tconv export-c --runtime DIR` writes the runtime library tconv.h/tconv.c instead.
`tconv export-c MODEL --out DIR` (a Keras file, no --layer) writes the whole model: one call
per layer, every intermediate in one arena planned by liveness (NAME_ARENA_BYTES); --verify
prints a per-layer table against tconv's NumPy model and Keras; --input x.npy (or .npz, one
array per input) gives the test vectors.  --style and --weights-file work for a whole model
too (a layer is exported as the one-node case of the model export)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-c",
        help="export a layer to C99 (fast or reference style), or the runtime C library",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", nargs="?", metavar="MODEL", help="a .keras, .h5, .onnx or .tflite model file"
    )
    explain.add_layer_arguments(parser)
    c = parser.add_argument_group("export")
    c.add_argument("--out", metavar="DIR", help="folder to write (new or empty)")
    c.add_argument("--name", help="C name prefix (default tconv_layer; model for a whole model)")
    c.add_argument(
        "--style",
        choices=("fast", "reference", "scatter"),
        default="fast",
        help="fast: stride-phase, register-blocked, OpenMP (default); reference: the gather "
        "loops of the definition; scatter: the plain port (a benchmark baseline)",
    )
    c.add_argument(
        "--weights-file",
        action="store_true",
        help="weights in NAME_weights.bin with a loader, instead of C literals (big layers)",
    )
    c.add_argument("--force", action="store_true", help="write into a non-empty folder")
    c.add_argument("--verify", action="store_true", help="compile and run the test harness")
    c.add_argument("--cc", help="C compiler for --verify (default: $CC, cc, gcc, clang)")
    c.add_argument("--runtime", metavar="DIR", help="write the runtime library tconv.h/tconv.c")
    c.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.set_defaults(func=main)


def _keras_error(layer: Any, x: np.ndarray, compiled: Any) -> tuple[float | None, str]:
    """Max |C - Keras| for ``x``, or ``(None, why not)``.  Keras runs in a child process
    (:mod:`tconv.peers`): where TensorFlow aborts on this CPU, tconv says so and carries on."""
    if layer.framework != "keras" or not hasattr(layer, "get_config"):
        return None, f"not a Keras layer ({layer.framework})"
    if importlib.util.find_spec("keras") is None:
        return None, "keras is not installed"
    from ..peers import KerasCall, keras_outputs

    call = KerasCall(type(layer).__name__, layer.get_config(), layer.get_weights(), x)
    (expected,) = keras_outputs([call])
    if isinstance(expected, str):
        return None, f"keras could not run the layer: {expected}"
    return float(np.max(np.abs(compiled(x) - expected), initial=0.0)), "keras"


def main(args: argparse.Namespace) -> int:
    from .. import cexport

    if args.runtime:
        files = cexport.write_runtime(args.runtime, force=args.force)
        summary: dict[str, Any] = {"files": [str(f) for f in files]}
        print(json.dumps(summary, indent=2) if args.json else f"wrote {', '.join(map(str, files))}")
        return 0
    if not args.out:
        raise ValueError("give --out DIR (the folder to write) or --runtime DIR")
    if args.model and not args.layer and not args.model.lower().endswith((".onnx", ".tflite")):
        from .model import export_c as export_model

        return export_model(args)  # the whole model
    args.name = args.name or "tconv_layer"
    layer, x = explain.load(args, args.model)
    files = cexport.export_c(
        layer,
        args.out,
        name=args.name,
        style=args.style,
        input_shape=x.shape[1:],
        weights="file" if args.weights_file else "inline",
        test_input=x,
        force=args.force,
    )
    summary = {"files": [str(f) for f in files], "style": args.style, "name": args.name}
    status = 0
    if args.verify:
        passed, text = cexport.verify(args.out, args.name, cc=args.cc)
        found = re.search(r"max abs error (\S+)", text)
        summary["verify"] = {
            "passed": passed,
            "harness": text,
            "max_abs_error_vs_engine": float(found.group(1)) if found else None,
        }
        if hasattr(layer, "framework"):
            compiled = cexport.build_shared(
                layer, x.shape[1:], style=args.style, cflags=("-O2",), cc=args.cc, name=args.name
            )
            error, source = _keras_error(layer, x.astype(np.float32), compiled)
        else:  # quantized: the harness compares every integer with tconv's (= TFLite's)
            error, source = None, "a quantized TFLite op (bit-exact harness)"
        summary["verify"]["max_abs_error_vs_keras"] = error
        summary["verify"]["keras"] = source if error is None else "compared"
        status = 0 if passed else 1
    if args.json:
        print(json.dumps(summary, indent=2))
        return status
    print(f"wrote {len(files)} files to {args.out}: {', '.join(f.name for f in files)}")
    if args.verify:
        v = summary["verify"]
        print(v["harness"])
        if v["max_abs_error_vs_keras"] is None:
            print(f"Keras comparison skipped: {v['keras']}")
        else:
            print(f"max abs error against Keras: {v['max_abs_error_vs_keras']:.3g}")
    return status
