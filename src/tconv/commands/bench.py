"""``tconv bench``: time tconv against the frameworks and the same-FLOP GEMM bound."""

from __future__ import annotations

import argparse
import json
import sys

from .. import benchmark


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark tconv against Keras/TF, PyTorch, ONNX Runtime, JAX and the GEMM bound",
        description="Time every path on the fixed suite (or --case geometries) in one process: "
        "warm-up, interleaved rounds, median.  Every path is checked against tconv's result; a "
        "disagreement is marked in the table and makes the exit status 1.  For honest BLAS "
        "numbers run it as `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE tconv bench`.",
    )
    parser.add_argument(
        "--case",
        action="append",
        metavar="SPEC",
        help=f"a geometry to run instead of the suite, {benchmark.CASE_SYNTAX} "
        "(Keras Conv*DTranspose, float32), e.g. 1x8x8x1024:512:3:2; repeatable",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny cases, few rounds: a smoke run (CI)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed rounds per case (default 9, quick 2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of weights and inputs")
    parser.add_argument(
        "--cool-down",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"sleep before every timed round, so that the previous path's threads park "
        f"(default {benchmark.COOL_DOWN}, quick 0)",
    )
    parser.add_argument(
        "--tflite",
        action="store_true",
        help="instead: the quantized seed layer, tconv's integer C against TFLite's optimized "
        "int8 kernels (XNNPACK and builtin), 1 thread each (needs TensorFlow and a C compiler)",
    )
    parser.add_argument(
        "--model",
        metavar="MODEL",
        help="a Keras .keras/.h5 model: its exported C at 1 and 2 threads vs Keras (TensorFlow) "
        "and TFLite (XNNPACK), and its arena vs TFLite's",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch of --model (default 1)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plot", metavar="PNG", help="write a bar chart (log scale)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 9)
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    cool_down = args.cool_down
    if cool_down is None:
        cool_down = 0.0 if args.quick else benchmark.COOL_DOWN
    if cool_down < 0:
        raise ValueError(f"--cool-down must be >= 0 seconds, got {cool_down}")
    if args.tflite:
        from .. import benchmark_tflite

        result = benchmark_tflite.run(repeats=max(repeats, 5), seed=args.seed)
        print(benchmark_tflite.table(result))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(result, fh, indent=2)
        return 0 if result["c_bit_exact"] else 1
    if args.model:
        return _model(args, repeats)
    if args.case:
        cases = tuple(benchmark.parse_case(text) for text in args.case)
    else:
        cases = benchmark.QUICK if args.quick else benchmark.SUITE
    info, reports = benchmark.run(cases, repeats, args.seed, cool_down)
    print(benchmark.table(info, reports))
    if args.json:
        benchmark.write_json(args.json, info, reports)
    if args.plot:
        benchmark.plot(args.plot, reports)
    bad = benchmark.failed(reports)
    for line in bad:
        print(f"tconv bench: disagreement or failure: {line}", file=sys.stderr)
    return 1 if bad else 0


def _model(args: argparse.Namespace, repeats: int) -> int:
    import json

    from .. import model_bench

    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    report = model_bench.bench_model(args.model, args.batch, repeats, args.seed)
    print(model_bench.table(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0
