"""GFLOP/s of the exported C on the seed layer, next to the baselines, in one run.

``python -m tconv.cexport.measure [--kernels 3 4] [--reps 15] [--threads 2]`` builds, for the seed
layer (1 x 8x8x1024 -> 16x16x512, stride 2, Keras ``same``) at each kernel size: style
``fast`` and ``reference`` with ``-O3 -march=native`` (1 thread), the plain scatter port with
``-O2``, style ``fast`` with OpenMP on ``--threads`` threads, and times them interleaved with a
single-threaded NumPy sgemm of the same FLOPs (``[64, 1024] @ [1024, k*k*512]``); medians.
For the benchmark only: run it with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..kernels.build import FAST_FLAGS
from ..layer import TransposedConv
from .build import build_shared
from .project import expected_output

PATHS = ("fast", "fast_omp", "reference", "scatter_O2", "sgemm_1thread")


def seed_layer(kernel: int, seed: int = 0) -> TransposedConv:
    """The seed layer with random weights and Keras ``same`` crops."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-0.05, 0.05, (kernel, kernel, 512, 1024)).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, 512).astype(np.float32)
    total = kernel - 2  # Keras same: crop K - s, the larger half at the end
    crops = [(max(total, 0) // 2, total - max(total, 0) // 2)] * 2
    return TransposedConv(w, b, (2, 2), (1, 1), lambda spatial: crops, activation="relu")


def _blas_info() -> tuple[str, Any]:
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return "unknown (threadpoolctl not installed)", None
    blas = [
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return ", ".join(blas) or "none found", threadpool_limits


def _measure_one(kernel: int, reps: int, threads: int, limits: Any) -> dict:
    layer = seed_layer(kernel)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 8, 8, 1024)).astype(np.float32)
    expected = expected_output(layer, x)  # float64 sums of the float32 weights
    flops = 2 * layer.geometry((8, 8)).macs(1)
    libs = {
        "fast": build_shared(layer, (8, 8, 1024), style="fast", cflags=FAST_FLAGS),
        "fast_omp": build_shared(layer, (8, 8, 1024), cflags=FAST_FLAGS, openmp=True),
        "reference": build_shared(layer, (8, 8, 1024), style="reference", cflags=FAST_FLAGS),
        "scatter_O2": build_shared(layer, (8, 8, 1024), style="scatter", cflags=("-O2",)),
    }
    libs["fast_omp"].set_threads(threads)
    errors = {name: float(np.max(np.abs(lib(x) - expected))) for name, lib in libs.items()}
    a = np.random.default_rng(2).random((64, 1024), dtype=np.float32)
    b = np.random.default_rng(3).random((1024, kernel * kernel * 512), dtype=np.float32)
    out = np.empty((1, 16, 16, 512), np.float32)
    runs: dict[str, Callable[[], Any]] = {
        name: functools.partial(lib, x, out) for name, lib in libs.items()
    }
    runs["sgemm_1thread"] = functools.partial(np.matmul, a, b)
    times: dict[str, list[float]] = {name: [] for name in runs}
    blas_1 = limits(limits=1, user_api="blas") if limits is not None else None
    with blas_1 or contextlib.nullcontext():  # OpenMP keeps its threads
        for fn in runs.values():  # warm-up
            fn()
        for rep in range(reps):
            for name, fn in runs.items():
                if name in ("reference", "scatter_O2") and rep >= max(3, reps // 5):
                    continue  # slow paths: fewer repetitions
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    gflops = {name: flops / float(np.median(t)) / 1e9 for name, t in times.items()}
    return {"kernel": kernel, "gflops": gflops, "max_abs_error": errors}


def measure(kernels: tuple[int, ...] = (3, 4), reps: int = 15, threads: int = 2) -> list[dict]:
    """One row per kernel size: GFLOP/s per path (medians of interleaved runs) and errors."""
    blas, limits = _blas_info()
    return [{**_measure_one(k, reps, threads, limits), "blas": blas} for k in kernels]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tconv.cexport.measure", description=__doc__)
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    rows = measure(tuple(args.kernels), args.reps, args.threads)
    print(f"BLAS: {rows[0]['blas']}")
    head = ["kernel", *PATHS, "fast/sgemm", "fast/scatter", f"omp x{args.threads}"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        g = row["gflops"]
        cells = [str(row["kernel"]), *(f"{g[p]:.1f}" for p in PATHS)]
        cells += [
            f"{g['fast'] / g['sgemm_1thread']:.2f}",
            f"{g['fast'] / g['scatter_O2']:.1f}",
            f"{g['fast_omp'] / g['fast']:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")
    print("(GFLOP/s of useful FLOPs, 2*8*8*1024*512*k*k per run; medians)")
    for row in rows:
        errs = ", ".join(f"{p} {e:.2e}" for p, e in row["max_abs_error"].items())
        print(f"k={row['kernel']} max abs error vs the float64 engine: {errs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
