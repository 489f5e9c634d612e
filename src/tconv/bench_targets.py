"""``tconv bench`` on an AVX-512 machine: the AVX2 build of the fast C, against OpenBLAS pinned
to its Haswell (AVX2) kernel, in a child process.

OpenBLAS picks its kernel once, when it is loaded, from ``OPENBLAS_CORETYPE`` or the CPU; so
the AVX2 bound needs a process of its own.  The child (``python -m tconv.bench_targets``)
rebuilds the case's layer and input from the same seed, builds the fast C with
:data:`AVX2_FLAGS` on 1 thread and with OpenMP on all cores, and measures them with the same
protocol as the parent (:func:`tconv.benchmark.measure_paths`) next to the same-FLOP matmul
bound on 1 thread and all; its ratios are against that Haswell bound.  The results come back as
JSON on stdout, read by :func:`tconv.benchmark.avx2_results`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import numpy as np

from . import benchmark

AVX2_FLAGS = ("-O3", "-mavx2", "-mfma", "-ffp-contract=fast")
AVX2_NAME = benchmark.AVX2_NAME


def _measure(request: dict[str, Any]) -> list[benchmark.Result]:
    case = benchmark.parse_case(request["case"])
    rng = np.random.default_rng(request["seed"])
    layer = case.layer(rng)  # the parent's layer and input: the same draws from the same seed
    x = case.input(rng)
    geometry = layer.geometry(case.spatial)
    cores = os.cpu_count() or 1
    builds = [
        (AVX2_NAME, "fast", AVX2_FLAGS, False, "1"),
        (AVX2_NAME, "fast", AVX2_FLAGS, True, str(cores)),
    ]
    failed: list[benchmark.Result] = []
    try:
        paths = benchmark._c_paths(layer, x, builds)
    except benchmark.Missing as why:
        return [benchmark.Result(AVX2_NAME, "c", "missing", note=str(why))]
    blas = _blas_kernel()
    try:
        for bound in benchmark._bounds(geometry, case.batch, rng):
            paths.append(dataclasses.replace(bound, name=f"{bound.name} [OpenBLAS {blas}]"))
    except benchmark.Missing as why:
        failed.append(benchmark.Result("bound: NumPy matmul", "bound", "missing", note=str(why)))
    taps = int(np.prod(case.kernel))
    tolerance = 1e-5 + (case.in_channels * taps + 1) * float(np.finfo(np.float32).eps)
    expected = layer(x, "fast").astype(np.float64)
    errors, measured = benchmark.measure_paths(
        paths,
        expected,
        tolerance,
        2 * geometry.macs(case.batch),
        request["repeats"],
        "",
        request["cool_down"],
    )
    for result in measured:
        result.note = "; ".join(filter(None, [result.note, f"own process, BLAS {blas}"]))
    return measured + errors + failed


def _blas_kernel() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    kinds = [str(i.get("architecture")) for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(kinds) or "none"


def main(argv: list[str] | None = None) -> int:
    request = json.loads((argv if argv is not None else sys.argv[1:])[0])
    results = _measure(request)
    print(json.dumps([dataclasses.asdict(r) for r in results]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
